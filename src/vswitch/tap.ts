/**
 * A Linux TAP device as a switch port, so that the host (or a network
 * namespace) reaches the guest with the kernel's own TCP/IP stack.
 *
 *   remusd vswitch --tap NAME[,netns=NS][,ip=CIDR]
 *
 * Data flow: the kernel routes a packet for the guest's subnet to the TAP
 * device and writes the Ethernet frame into our descriptor; the native
 * binding reads it when the descriptor is readable (a libuv poll on Node's
 * loop, never a blocking read) and the port hands it to the learning switch;
 * frames the switch sends to this port are written back to the descriptor,
 * where the kernel receives them as if they came off a wire.
 *
 * Setup, in this order: open /dev/net/tun and TUNSETIFF (creates the device,
 * or attaches to an existing persistent one, e.g. made by root with
 * `ip tuntap add dev NAME mode tap user USER` for an unprivileged vswitch);
 * with `netns=`, move it into that namespace (`ip link set dev NAME netns
 * NS`; the descriptor keeps working across the move); bring it up; with
 * `ip=`, add the address. iproute2's `ip` does the configuration.
 *
 * Cleanup: closing the descriptor makes the kernel delete a device this
 * process created, wherever it is, with its addresses and routes; that also
 * happens when the process is killed. A persistent device stays.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { type ErrorCode, RemusError, usageError } from "../errors.js";
import { formatIpv4, parseIpv4 } from "../net/wire.js";
import type { SwitchPort } from "./switch.js";
import { type TapBinding, type TapHandle, tapBinding } from "./tapdev.js";

const run = promisify(execFile);

/** A parsed `--tap` value. */
export interface TapSpec {
  /** Device name (1-15 bytes). */
  readonly name: string;
  /** Network namespace to move the device into (a name under /run/netns, as `ip netns` makes). */
  readonly netns?: string;
  /** Address to give the device. */
  readonly ip?: { readonly addr: number; readonly prefix: number };
}

const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const NSNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

function usage(msg: string): never {
  throw usageError(msg);
}

/** Parses `NAME[,netns=NS][,ip=CIDR]`; a RemusError REMUSD_ERR_BAD_USAGE on bad input. */
export function parseTapSpec(s: string, what = "--tap"): TapSpec {
  const [name, ...opts] = s.split(",");
  if (name === undefined || !IFNAME.test(name)) {
    usage(
      `${what}: bad device name '${name ?? ""}' (1-15 characters of letters, digits, '_', '.', '-'; want NAME[,netns=NS][,ip=CIDR])`,
    );
  }
  let netns: string | undefined;
  let ip: TapSpec["ip"];
  const seen = new Set<string>();
  for (const o of opts) {
    const eq = o.indexOf("=");
    const key = eq < 0 ? o : o.slice(0, eq);
    const value = eq < 0 ? "" : o.slice(eq + 1);
    if (seen.has(key)) usage(`${what}: '${key}' given twice`);
    seen.add(key);
    if (key === "netns") {
      if (!NSNAME.test(value)) usage(`${what}: bad namespace name '${value}'`);
      netns = value;
    } else if (key === "ip") {
      const m = /^([0-9.]+)\/(\d{1,2})$/.exec(value);
      let addr: number | undefined;
      try {
        addr = m ? parseIpv4(m[1] as string) : undefined;
      } catch {
        addr = undefined;
      }
      const prefix = m ? Number(m[2]) : -1;
      if (addr === undefined || prefix < 1 || prefix > 32) {
        usage(`${what}: bad ip '${value}' (want an IPv4 address with a prefix length, e.g. 10.0.0.1/24)`);
      }
      ip = { addr, prefix };
    } else {
      usage(`${what}: unknown option '${key}' (want NAME[,netns=NS][,ip=CIDR])`);
    }
  }
  return { name, ...(netns !== undefined ? { netns } : {}), ...(ip ? { ip } : {}) };
}

/** `ip=` as text. */
export function formatCidr(ip: NonNullable<TapSpec["ip"]>): string {
  return `${formatIpv4(ip.addr)}/${ip.prefix}`;
}

/** A failure to set up the device: something missing on the host (NOT_FOUND), a privilege (FORBIDDEN), or else. */
function runtime(msg: string, cause?: unknown, code: ErrorCode = "REMUSD_ERR_INTERNAL"): RemusError {
  return new RemusError(code, msg, { cause });
}

/** Turns the binding's errno errors into a sentence naming what is missing. */
function openError(name: string, e: unknown): RemusError {
  const err = e as { code?: string; syscall?: string; message?: string };
  if (err.syscall === "open") {
    if (err.code === "ENOENT" || err.code === "ENODEV" || err.code === "ENXIO") {
      return runtime(
        "TAP: /dev/net/tun is missing (load the tun module with 'modprobe tun'; in a container pass --device /dev/net/tun)",
        e,
        "REMUSD_ERR_NOT_FOUND",
      );
    }
    if (err.code === "EACCES" || err.code === "EPERM") {
      return runtime(
        "TAP: no permission to open /dev/net/tun (run as root or with CAP_NET_ADMIN, or have root create the device with 'ip tuntap add dev NAME mode tap user USER')",
        e,
        "REMUSD_ERR_FORBIDDEN",
      );
    }
  }
  if (err.syscall === "ioctl" && err.code === "EPERM") {
    return runtime(
      `TAP: creating or attaching device '${name}' needs CAP_NET_ADMIN (run as root, or have root create it with 'ip tuntap add dev ${name} mode tap user USER')`,
      e,
      "REMUSD_ERR_FORBIDDEN",
    );
  }
  if (err.syscall === "ioctl" && err.code === "EBUSY") {
    return runtime(`TAP: device '${name}' is already attached to another process`, e);
  }
  if (err.syscall === "ioctl" && err.code === "EINVAL") {
    return runtime(`TAP: a network device named '${name}' exists and is not a TAP device`, e);
  }
  return runtime(`TAP: cannot open device '${name}': ${err.message ?? String(e)}`, e);
}

async function ip(args: string[]): Promise<void> {
  try {
    await run("ip", args, { timeout: 10_000 });
  } catch (e) {
    const err = e as { code?: string | number; stderr?: string; message: string };
    if (err.code === "ENOENT") {
      throw runtime(
        "TAP: the 'ip' command (iproute2) is needed to configure the device but is not on PATH",
        e,
        "REMUSD_ERR_NOT_FOUND",
      );
    }
    const why = (err.stderr ?? "").trim() || err.message;
    throw runtime(`TAP: 'ip ${args.join(" ")}' failed: ${why}`, e);
  }
}

function isUp(name: string): boolean {
  try {
    return (Number.parseInt(readFileSync(`/sys/class/net/${name}/flags`, "utf8"), 16) & 1) === 1;
  } catch {
    return false;
  }
}

/** Counters of a TAP port (the switch counts the frames it forwards). */
export interface TapCounters {
  readonly rxFrames: number;
  readonly txFrames: number;
  readonly txErrors: number;
}

/** An open TAP device acting as a switch port. */
export class TapPort implements SwitchPort {
  readonly id: string;
  /** Never expires from the switch for silence: it is local, not a UDP peer that may have gone. */
  readonly permanent = true;
  /** Frames read from the device. Set before the first frame can arrive. */
  onFrames: (frames: Buffer[]) => void = () => {};
  /** Reading stopped with an error (the device was deleted under us, for example). */
  onError: (reason: string) => void = () => {};
  private rx = 0;
  private tx = 0;
  private txErr = 0;
  private closed = false;

  private constructor(
    readonly spec: TapSpec,
    readonly persistent: boolean,
    private readonly dev: TapBinding,
    private readonly h: TapHandle,
  ) {
    this.id = `tap:${spec.name}`;
  }

  /** Opens and configures the device described by `spec`, then starts reading. */
  static async open(spec: TapSpec): Promise<TapPort> {
    if (!existsSync("/dev/net/tun")) throw openError(spec.name, { syscall: "open", code: "ENOENT" });
    const ns = spec.netns;
    if (ns !== undefined && !existsSync(`/run/netns/${ns}`)) {
      throw runtime(
        `TAP: network namespace '${ns}' does not exist (create it with 'ip netns add ${ns}')`,
        undefined,
        "REMUSD_ERR_NOT_FOUND",
      );
    }
    const dev = tapBinding();
    let h: TapHandle;
    try {
      h = dev.open(spec.name);
    } catch (e) {
      throw openError(spec.name, e);
    }
    const port = new TapPort(spec, dev.info(h).persistent, dev, h);
    try {
      if (ns !== undefined) {
        await ip(["link", "set", "dev", spec.name, "netns", ns]);
        await ip(["-n", ns, "link", "set", "dev", spec.name, "up"]);
      } else if (!isUp(spec.name)) {
        await ip(["link", "set", "dev", spec.name, "up"]);
      }
      if (spec.ip) {
        await ip([
          ...(ns !== undefined ? ["-n", ns] : []),
          "addr",
          "add",
          formatCidr(spec.ip),
          "dev",
          spec.name,
        ]);
      }
    } catch (e) {
      port.close();
      throw e;
    }
    dev.start(h, (err, frames) => {
      if (err !== null) {
        if (!port.closed) port.onError(err);
        return;
      }
      if (frames) {
        port.rx += frames.length;
        port.onFrames(frames);
      }
    });
    return port;
  }

  send(frame: Buffer): void {
    if (this.closed) return;
    if (this.dev.write(this.h, frame) < 0) this.txErr++;
    else this.tx++;
  }

  get counters(): TapCounters {
    return { rxFrames: this.rx, txFrames: this.tx, txErrors: this.txErr };
  }

  /** Stops reading and closes the device (the kernel deletes it unless it is persistent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dev.close(this.h);
  }
}
