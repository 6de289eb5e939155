/**
 * The vswitch's transport: UDP datagrams on loopback, one Ethernet frame per
 * datagram. Datagrams shorter than an Ethernet header (14 bytes) are control
 * messages: "ATTACH" registers the sender as a port, "PING" keeps it alive,
 * "BYE" detaches it. UDP keeps frame boundaries and, like a real LAN, may lose
 * frames: TCP in the guest and the clients recovers.
 */
import { createSocket, type Socket } from "node:dgram";
import { lookup } from "node:dns/promises";
import type { HostPort } from "../net/addr.js";
import { LearningSwitch, type SwitchPort } from "./switch.js";

export const CTL_ATTACH = Buffer.from("ATTACH");
export const CTL_PING = Buffer.from("PING");
export const CTL_BYE = Buffer.from("BYE");
const KEEPALIVE_MS = 5_000;
const PORT_TIMEOUT_MS = 30_000;

/** Something that sends and receives Ethernet frames (a NIC's view of the LAN). */
export interface FrameLink {
  send(frame: Uint8Array): void;
  onFrame: (frame: Buffer) => void;
  close(): void;
}

export interface VswitchServer {
  readonly port: number;
  readonly sw: LearningSwitch;
  /** Adds a local port (a TAP device) whose frames `input` feeds to the switch. */
  attach(port: SwitchPort): { input: (frame: Buffer) => void };
  close(): Promise<void>;
}

/** Runs a vswitch on `addr`. */
export async function startVswitch(addr: HostPort, agingMs = 300_000): Promise<VswitchServer> {
  const sock: Socket = createSocket({ type: "udp4", reuseAddr: false });
  const sw = new LearningSwitch({ agingMs });
  const ports = new Map<string, SwitchPort>();
  const portFor = (address: string, port: number): SwitchPort => {
    const id = `${address}:${port}`;
    let p = ports.get(id);
    if (!p) {
      p = {
        id,
        send: (frame: Buffer) => {
          sock.send(frame, port, address);
        },
      };
      ports.set(id, p);
    }
    return p;
  };
  sock.on("message", (msg, rinfo) => {
    const now = performance.now();
    const p = portFor(rinfo.address, rinfo.port);
    if (msg.length < 14) {
      if (msg.equals(CTL_BYE)) {
        sw.removePort(p.id);
        ports.delete(p.id);
      } else if (msg.equals(CTL_ATTACH) || msg.equals(CTL_PING)) {
        sw.addPort(p, now);
      }
      return;
    }
    if (!sw.hasPort(p.id)) sw.addPort(p, now);
    sw.input(p.id, msg, now);
  });
  await new Promise<void>((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(addr.port, addr.host, () => resolve());
  });
  const timer = setInterval(() => {
    for (const id of sw.expire(performance.now(), PORT_TIMEOUT_MS)) ports.delete(id);
  }, 1000);
  timer.unref();
  return {
    port: sock.address().port,
    sw,
    attach: (port) => {
      sw.addPort(port, performance.now());
      return { input: (frame) => sw.input(port.id, frame, performance.now()) };
    },
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(timer);
        sock.close(() => resolve());
      }),
  };
}

/** A NIC's attachment to a vswitch over UDP. */
export class UdpLink implements FrameLink {
  private readonly sock: Socket;
  private timer: NodeJS.Timeout | undefined;
  onFrame: (frame: Buffer) => void = () => {};
  sent = 0;
  received = 0;

  private constructor(
    readonly sw: HostPort,
    sock: Socket,
    private readonly addr: string,
  ) {
    this.sock = sock;
  }

  static async open(sw: HostPort): Promise<UdpLink> {
    // Resolve a host name once: dgram would look it up again for every frame.
    const host = sw.host === "0.0.0.0" ? "127.0.0.1" : sw.host;
    const addr = (await lookup(host, { family: 4 })).address;
    const sock = createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(0, "127.0.0.1", () => resolve());
    });
    const l = new UdpLink(sw, sock, addr);
    sock.on("message", (msg) => {
      if (msg.length < 14) return;
      l.received++;
      l.onFrame(msg);
    });
    sock.on("error", () => {});
    l.ctl(CTL_ATTACH);
    l.timer = setInterval(() => l.ctl(CTL_PING), KEEPALIVE_MS);
    l.timer.unref();
    return l;
  }

  private ctl(b: Buffer): void {
    this.sock.send(b, this.sw.port, this.addr);
  }

  send(frame: Uint8Array): void {
    this.sent++;
    this.sock.send(frame, this.sw.port, this.addr);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    try {
      this.ctl(CTL_BYE);
    } catch {
      // closing anyway
    }
    setTimeout(() => this.sock.close(), 10).unref();
  }
}
