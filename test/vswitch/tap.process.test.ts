/**
 * `remusd vswitch --tap`: bad values are usage errors (exit 2); a host that
 * cannot give a TAP device (no permission, no /dev/net/tun, no namespace) is a
 * runtime failure (exit 1) whose line names what is missing; a device is
 * created in its namespace with its address, carries frames both ways
 * between the kernel and the switch's UDP ports, and is gone after SIGTERM
 * and after SIGKILL.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { after, describe, test } from "node:test";
import {
  ARP_OP,
  decodeArp,
  decodeEth,
  ETHERTYPE,
  encodeArp,
  encodeEth,
  formatIpv4,
  parseIpv4,
} from "../../src/net/wire.js";
import { UdpLink } from "../../src/vswitch/udp.js";
import { kill, killAll, REMUSD, waitFor } from "../helpers/procs.js";
import { deviceExists, makeNetns, requireTapHost, startTapVswitch } from "./netns.js";

after(killAll);

/** Runs a command to completion (its output drained); returns its exit code and output. */
function run(cmd: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    p.on("close", (code) => resolve({ code, stderr }));
  });
}

const vswitch = (...tap: string[]): [string, string[]] => [
  process.execPath,
  [REMUSD, "vswitch", "--listen", "127.0.0.1:0", ...tap],
];

describe("vswitch --tap: refusals", () => {
  test("bad values are usage errors (exit 2) naming the option", async () => {
    for (const [spec, says] of [
      ["", "bad device name"],
      ["has space", "bad device name"],
      ["waytoolongname123", "bad device name"],
      ["t0,ip=10.0.0.1", "bad ip"],
      ["t0,ip=10.0.0.300/24", "bad ip"],
      ["t0,ip=10.0.0.1/33", "bad ip"],
      ["t0,netns=a/b", "bad namespace"],
      ["t0,color=red", "unknown option 'color'"],
      ["t0,ip=10.0.0.1/24,ip=10.0.0.2/24", "'ip' given twice"],
    ] as const) {
      const r = await run(...vswitch("--tap", spec));
      assert.equal(r.code, 2, `--tap '${spec}': ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^remusd: --tap: .*${says}`), `--tap '${spec}'`);
      assert.equal(r.stderr.split("\n").length, 2, "one line");
    }
  });

  test("without permission, without /dev/net/tun, without the namespace: exit 1 naming what is missing", async () => {
    requireTapHost(["setpriv", "unshare"]);
    const [node, args] = vswitch("--tap", "rtapperm0");
    const noPerm = await run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", node, ...args]);
    assert.equal(noPerm.code, 1, noPerm.stderr);
    assert.match(noPerm.stderr, /^remusd: REMUSD_ERR_FORBIDDEN: TAP: no permission to open \/dev\/net\/tun /);
    // A private mount namespace where /dev/net is empty.
    const quoted = [node, ...args].map((a) => `'${a}'`).join(" ");
    const noTun = await run("unshare", ["-m", "sh", "-c", `mount -t tmpfs none /dev/net && exec ${quoted}`]);
    assert.equal(noTun.code, 1, noTun.stderr);
    assert.match(noTun.stderr, /^remusd: REMUSD_ERR_NOT_FOUND: TAP: \/dev\/net\/tun is missing /);
    const noNs = await run(...vswitch("--tap", `rtapns0,netns=remusd-absent-${process.pid}`));
    assert.equal(noNs.code, 1, noNs.stderr);
    assert.match(noNs.stderr, /network namespace 'remusd-absent-\d+' does not exist/);
    for (const dev of ["rtapperm0", "rtapns0"]) {
      assert.throws(
        () => execFileSync("ip", ["link", "show", "dev", dev], { stdio: "ignore" }),
        `${dev} left behind`,
      );
    }
  });
});

describe("vswitch --tap: a device in a namespace", () => {
  test("created with its address, carries frames both ways, removed on SIGTERM and on SIGKILL", async () => {
    requireTapHost();
    const net = makeNetns("tap");
    try {
      const sw = await startTapVswitch(`${net.dev},netns=${net.ns},ip=10.0.0.1/24`);
      assert.ok(deviceExists(net.ns, net.dev), "the device is in the namespace");
      assert.throws(() => execFileSync("ip", ["link", "show", "dev", net.dev], { stdio: "ignore" }));
      const addr = execFileSync("ip", ["-n", net.ns, "-o", "addr", "show", "dev", net.dev]).toString();
      assert.match(addr, /inet 10\.0\.0\.1\/24 /);
      assert.match(
        execFileSync("ip", ["-n", net.ns, "link", "show", "dev", net.dev]).toString(),
        /[<,]UP[,>]/,
      );

      // A UDP port asks the namespace's kernel who has 10.0.0.1: the kernel answers through the TAP port.
      const link = await UdpLink.open({ host: "127.0.0.1", port: sw.port });
      const mac = Buffer.from([2, 0, 0, 0, 0x77, 1]);
      const replies: string[] = [];
      link.onFrame = (f) => {
        const eth = decodeEth(f);
        if (eth?.type !== ETHERTYPE.ARP) return;
        const arp = decodeArp(f, 14);
        if (arp?.op === ARP_OP.REPLY && Buffer.from(eth.dst).equals(mac)) replies.push(formatIpv4(arp.spa));
      };
      const frame = Buffer.alloc(42);
      encodeEth({ dst: Buffer.alloc(6, 0xff), src: mac, type: ETHERTYPE.ARP }, frame);
      encodeArp(
        {
          op: ARP_OP.REQUEST,
          sha: mac,
          spa: parseIpv4("10.0.0.77"),
          tha: Buffer.alloc(6),
          tpa: parseIpv4("10.0.0.1"),
        },
        frame,
        14,
      );
      await waitFor("an ARP reply from the namespace's kernel", () => {
        link.send(frame);
        return replies.length > 0;
      });
      assert.equal(replies[0], "10.0.0.1");
      link.close();

      assert.equal(await kill(sw.proc, "SIGTERM"), 0);
      assert.equal(deviceExists(net.ns, net.dev), false, "SIGTERM removes the device");

      const again = await startTapVswitch(`${net.dev},netns=${net.ns}`);
      assert.ok(deviceExists(net.ns, net.dev));
      await kill(again.proc, "SIGKILL");
      await waitFor(
        "the kernel to remove the device of a killed vswitch",
        () => !deviceExists(net.ns, net.dev),
      );
    } finally {
      await killAll();
      net.remove();
    }
  });
});
