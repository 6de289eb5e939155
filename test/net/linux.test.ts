/**
 * Interoperability with a real Linux TCP/IP stack, through a TAP device: the
 * kernel's own sockets (Node's `net`) talk to a `NetStack` driven by the real
 * clock, as the load-generating client will. Needs root, /dev/net/tun,
 * python3 (only to open the TAP device: Node has no ioctl) and `ip`; skipped
 * otherwise. The device lives only as long as the helper process.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { PlainMemory } from "../../src/domain/memory.js";
import { formatStandaloneHeap } from "../../src/guest/mm.js";
import { type NetEnv, NetStack } from "../../src/net/stack.js";
import { parseIpv4 } from "../../src/net/wire.js";
import { Prng } from "../../src/prng.js";

const DEV = `rtap${process.pid % 10000}`;
const LINUX_IP = "10.77.0.1";
const OUR_IP = "10.77.0.2";

function skipReason(): string | false {
  // With CI set a machine without root, /dev/net/tun or ip fails this suite instead of skipping it.
  if (process.env.CI) return false;
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return "needs root for a TAP device";
  if (!existsSync("/dev/net/tun")) return "no /dev/net/tun";
  for (const tool of ["python3", "ip"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      return `no ${tool}`;
    }
  }
  return false;
}

// Opens the TAP device, configures the Linux side, then relays frames between
// the device and stdin/stdout, each frame prefixed by its 2-byte length.
const RELAY = `
import fcntl, os, struct, sys, select
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), 0x0002 | 0x1000))
os.system('sysctl -qw net.ipv6.conf.%s.disable_ipv6=1 2>/dev/null' % sys.argv[1])
if os.system('ip addr add %s dev %s && ip link set %s mtu 1500 up' % (sys.argv[2], sys.argv[1], sys.argv[1])) != 0:
    sys.exit(3)
out = sys.stdout.buffer
out.write(b'R'); out.flush()
buf = b''
while True:
    r, _, _ = select.select([fd, 0], [], [])
    if fd in r:
        f = os.read(fd, 65536)
        out.write(struct.pack('>H', len(f)) + f); out.flush()
    if 0 in r:
        d = os.read(0, 65536)
        if not d:
            break
        buf += d
        while len(buf) >= 2:
            n = struct.unpack('>H', buf[:2])[0]
            if len(buf) < 2 + n:
                break
            os.write(fd, buf[2:2 + n]); buf = buf[2 + n:]
`;

/** A NetStack on the TAP device, polled every millisecond by the real clock. */
class TapHost {
  readonly mem = new PlainMemory(16 << 20);
  readonly heap = formatStandaloneHeap(this.mem);
  readonly stack: NetStack;
  readonly apps: (() => void)[] = [];
  /** Fraction of frames lost in each direction (seeded). */
  loss = 0;
  private readonly lossRng = new Prng(99);
  private timer: NodeJS.Timeout | null = null;
  private pending = Buffer.alloc(0);

  constructor(relay: ChildProcessWithoutNullStreams) {
    const rng = new Prng(42);
    const env: NetEnv = {
      mem: this.mem,
      heap: this.heap,
      now: () => performance.now(),
      random32: () => rng.u32(),
      transmit: (frame) => {
        if (this.loss > 0 && this.lossRng.float() < this.loss) return true;
        const hdr = Buffer.alloc(2);
        hdr.writeUInt16BE(frame.length);
        relay.stdin.write(Buffer.concat([hdr, frame]));
        return true;
      },
    };
    this.stack = new NetStack(
      env,
      NetStack.format(env, { mac: Uint8Array.from([2, 0, 0, 0x77, 0, 2]), ip: parseIpv4(OUR_IP) }),
    );
    relay.stdout.on("data", (d: Buffer) => {
      this.pending = Buffer.concat([this.pending, d]);
      while (this.pending.length >= 2) {
        const n = this.pending.readUInt16BE(0);
        if (this.pending.length < 2 + n) break;
        if (!(this.loss > 0 && this.lossRng.float() < this.loss))
          this.stack.input(this.pending.subarray(2, 2 + n));
        this.pending = this.pending.subarray(2 + n);
      }
      this.step();
    });
    const loop = (): void => {
      this.step();
      this.timer = setTimeout(loop, 1);
    };
    loop();
  }

  step(): void {
    for (const app of this.apps) app();
    this.stack.poll();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

const reason = skipReason();

describe("interop with the Linux kernel's TCP over a TAP device", { skip: reason }, () => {
  let relay: ChildProcessWithoutNullStreams;
  let host: TapHost;

  before(async () => {
    relay = spawn("python3", ["-c", RELAY, DEV, `${LINUX_IP}/24`]);
    await new Promise<void>((resolve, reject) => {
      relay.once("exit", (code) => reject(new Error(`TAP relay exited with ${code}`)));
      relay.stdout.once("data", (d: Buffer) => {
        if (d[0] !== 0x52) reject(new Error("relay did not start"));
        relay.stdout.unshift(d.subarray(1));
        resolve();
      });
    });
    host = new TapHost(relay);
    host.stack.announce();
  });

  after(() => {
    host?.stop();
    relay?.kill();
  });

  async function echo(port: number, size: number, seed: number): Promise<void> {
    const l = host.stack.listen(port);
    host.apps.push(() => {
      for (let s = host.stack.accept(l); s !== 0; s = host.stack.accept(l)) {
        let backlog: Buffer = Buffer.alloc(0);
        host.apps.push(() => {
          const st = host.stack;
          if (!st.sockets().some((x) => x.id === s && x.owned)) return;
          for (;;) {
            if (backlog.length === 0) {
              const r = st.recv(s, 65536);
              if (r === null) break;
              backlog = r;
            }
            const n = st.send(s, backlog);
            if (n <= 0) break;
            backlog = backlog.subarray(n);
          }
          if (backlog.length === 0 && st.eof(s) && st.state(s) === "CLOSE_WAIT") st.close(s);
        });
      }
    });
    const data = new Prng(seed).bytes(size);
    const got: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      const sock = net.connect({ host: OUR_IP, port }, () => {
        sock.end(data);
      });
      sock.on("data", (d) => got.push(d));
      sock.on("end", () => resolve());
      sock.on("error", reject);
      sock.setTimeout(60_000, () => reject(new Error("timed out")));
    });
    const echoed = Buffer.concat(got);
    assert.equal(echoed.length, data.length);
    assert.ok(echoed.equals(data));
    assert.equal(host.stack.stats().tcpBadChecksums, 0);
  }

  it("a Linux client gets its bytes echoed by our server (2 MiB each way)", async () => {
    await echo(7, 2 << 20, 7);
  });

  it("the same with 3% of frames lost in each direction", async () => {
    host.loss = 0.03;
    try {
      const before = host.stack.stats();
      await echo(8, 512 << 10, 9);
      const st = host.stack.stats();
      assert.ok(st.tcpRetransmits > before.tcpRetransmits);
      assert.ok(st.tcpOooSegments > before.tcpOooSegments);
    } finally {
      host.loss = 0;
    }
  });

  it("our client sends to a Linux server and reads its reply", async () => {
    const data = new Prng(8).bytes(1 << 20);
    const server = net.createServer((sock) => {
      const h = createHash("sha256");
      sock.on("data", (d) => h.update(d));
      sock.on("end", () => sock.end(h.digest()));
    });
    await new Promise<void>((r) => server.listen(9000, LINUX_IP, r));
    try {
      const s = host.stack.connect(parseIpv4(LINUX_IP), 9000);
      let off = 0;
      let reply: Buffer = Buffer.alloc(0);
      let shut = false;
      const done = new Promise<void>((resolve, reject) => {
        const deadline = performance.now() + 20_000;
        host.apps.push(() => {
          const st = host.stack;
          if (!st.sockets().some((x) => x.id === s && x.owned)) return;
          while (off < data.length) {
            const n = st.send(s, data.subarray(off, off + 65536));
            if (n <= 0) break;
            off += n;
          }
          if (off === data.length && !shut) {
            st.shutdown(s);
            shut = true;
          }
          const r = st.recv(s);
          if (r) reply = Buffer.concat([reply, r]);
          if (st.eof(s)) {
            st.close(s);
            resolve();
          }
          if (performance.now() > deadline) reject(new Error(`timed out in ${st.state(s)}`));
        });
      });
      await done;
      assert.deepEqual(reply, createHash("sha256").update(data).digest());
    } finally {
      server.close();
    }
  });

  it("Linux gets ECONNREFUSED from a closed port, and an answer to ping", async () => {
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const sock = net.connect({ host: OUR_IP, port: 4321 });
      sock.on("error", resolve);
    });
    assert.equal(err.code, "ECONNREFUSED");
    // An ICMP echo from the kernel (raw socket; Python because Node has none). Async: our
    // stack answers from this event loop.
    const PING = String.raw`
import socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(3)
data = b'remusd-ping-0123456789abcdef'
hdr = struct.pack('!BBHHH', 8, 0, 0, 0x1234, 1)
s.sendto(struct.pack('!BBHHH', 8, 0, csum(hdr + data), 0x1234, 1) + data, (sys.argv[1], 0))
while True:
    pkt, addr = s.recvfrom(2048)
    icmp = pkt[(pkt[0] & 15) * 4:]
    if addr[0] == sys.argv[1] and icmp[0] == 0 and icmp[4:8] == b'\x12\x34\x00\x01':
        assert icmp[8:] == data and csum(icmp) == 0
        print('pong'); break
`;
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn("python3", ["-c", PING, OUR_IP]);
      let text = "";
      p.stdout.on("data", (d: Buffer) => {
        text += d.toString();
      });
      p.on("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`ping helper exited ${code}`))));
    });
    assert.equal(out.trim(), "pong");
    assert.ok(host.stack.stats().icmpEchoReplies >= 1);
  });
});
