/**
 * Replication connections in the simulated world: each one a pair of
 * `SimPort`s (the `Port` a node's machine sends on), carried like a WebSocket
 * over TCP: in order, with a seeded delay, closed after the frames sent before
 * the close. Faults come from the `LinkFaults` of each direction between two
 * endpoints (`link(from, to)`), which outlive connections; `cut` resets
 * connections; a partition holds frames in transit (TCP retransmits them
 * after `heal`) and refuses new connections across it.
 */
import { HEADER_SIZE, RECORD_TYPE_NAME, type RecordType } from "../../src/protocol/constants.js";
import type { Port } from "../../src/replication/conn.js";
import { LinkFaults, type Partitions } from "./faults.js";
import type { World } from "./world.js";

/** Who is at one end: its name, and its input gate (a paused node queues, a dead one drops). */
export interface Endpoint {
  readonly name: string;
  input(fn: () => void): void;
  /** Whether it accepts a new connection now (alive, listening). */
  readonly reachable: boolean;
}

/** What the fault API and observers see of a replication frame. */
export interface ReplFrame {
  readonly from: string;
  readonly to: string;
  /** The record type from the frame header (undefined for bytes that are no frame). */
  readonly type: RecordType | undefined;
  readonly data: Uint8Array;
}

/** The epoch a checkpoint record (PAGE_BATCH .. CHECKPOINT_END) belongs to: its body starts with it. */
export function epochOf(data: Uint8Array): number {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).readUInt32LE(HEADER_SIZE);
}

function frameOf(from: SimPort, data: Uint8Array): ReplFrame {
  return { from: from.owner.name, to: from.peer.owner.name, type: RECORD_TYPE_NAME.get(data[3] ?? -1), data };
}

type Item = { kind: "frame"; data: Buffer } | { kind: "close"; reason: string };

/** One end of a simulated replication connection. */
export class SimPort implements Port {
  peer!: SimPort;
  open = true;
  /** Bytes sent and not yet delivered. */
  queued = 0;
  /** Arrival time of the last frame sent this way (a stream keeps order). */
  lastAt = Number.NEGATIVE_INFINITY;
  /** Items that reached a partition, in order, waiting for `heal`. */
  held: Item[] = [];
  onFrame: (data: Buffer) => void = () => {};
  onClose: (reason: string) => void = () => {};

  constructor(
    private readonly net: ReplNet,
    readonly owner: Endpoint,
    readonly remote: string,
  ) {}

  get buffered(): number {
    return this.queued;
  }

  send(frame: Buffer): void {
    if (this.open) this.net.transmit(this, Buffer.from(frame));
  }

  close(reason: string): void {
    if (this.open) this.net.close(this, reason);
  }
}

type Observer = (f: ReplFrame, phase: "sent" | "delivered") => void;

export class ReplNet {
  private readonly links = new Map<string, LinkFaults<ReplFrame>>();
  private readonly ports = new Set<SimPort>();
  private readonly observers: Observer[] = [];

  constructor(
    private readonly world: World,
    private readonly partitions: Partitions,
    /** One-way delay of a clean link: `delayMs` plus up to `jitterMs`. */
    private readonly base = { delayMs: 0.15, jitterMs: 0.3 },
  ) {
    partitions.onHeal(() => this.release());
  }

  /** The faults of the direction `from` -> `to` (every connection between them, now and later). */
  link(from: string, to: string): LinkFaults<ReplFrame> {
    const k = `${from}>${to}`;
    let l = this.links.get(k);
    if (!l) {
      l = new LinkFaults<ReplFrame>(this.world.stream(`repl:${k}`), this.base);
      this.links.set(k, l);
    }
    return l;
  }

  /** Sees every frame sent (before its faults) and delivered. */
  observe(fn: Observer): void {
    this.observers.push(fn);
  }

  /**
   * Opens a connection from `a` to `b`; undefined when `b` cannot be reached
   * (dead, not listening, or across a partition). The caller wires both ends.
   */
  connect(a: Endpoint, b: Endpoint): [SimPort, SimPort] | undefined {
    if (!b.reachable || this.partitions.blocked(a.name, b.name)) return undefined;
    const pa = new SimPort(this, a, b.name);
    const pb = new SimPort(this, b, a.name);
    pa.peer = pb;
    pb.peer = pa;
    this.ports.add(pa);
    this.ports.add(pb);
    return [pa, pb];
  }

  transmit(from: SimPort, data: Buffer): void {
    const f = frameOf(from, data);
    for (const o of this.observers) o(f, "sent");
    // A GOODBYE is spared the link's faults: it is the last frame before a graceful close, whose
    // FIN follows it on the same stream (a WebSocket close handshake keeps reading, so no reset
    // discards it); losing it but not the close has no counterpart on a real link, and would
    // pass a live backup off as a dead one.
    const fate =
      f.type === "goodbye"
        ? { times: [Math.max(this.world.now + this.base.delayMs, from.lastAt)], corrupt: false }
        : this.link(f.from, f.to).fate(this.world.now, f, from.lastAt);
    const payload = fate.corrupt ? this.link(f.from, f.to).flip(data) : data;
    for (const at of fate.times) {
      from.lastAt = at;
      from.queued += payload.length;
      this.world.at(at, () => this.arrive(from, { kind: "frame", data: payload }));
    }
  }

  /** Closes `from`'s end; the peer sees the close after the frames sent before it. */
  close(from: SimPort, reason: string): void {
    from.open = false;
    const at = Math.max(this.world.now + this.base.delayMs, from.lastAt) + 0.001;
    from.lastAt = at;
    this.world.at(at, () => this.arrive(from, { kind: "close", reason }));
  }

  /**
   * Resets every open connection of `name` (with `other`: only those between
   * the two). Both ends see it closed now; frames in transit are lost.
   */
  cut(name: string, reason: string, other?: string): void {
    for (const p of [...this.ports]) {
      if (p.owner.name === name && (other === undefined || p.peer.owner.name === other))
        this.reset(p, reason);
    }
  }

  /** Closes every open connection of `name` from its side: the peers see the close after the data in transit. */
  closeAll(name: string, reason: string): void {
    for (const p of [...this.ports]) if (p.owner.name === name && p.open) p.close(reason);
  }

  /** Resets one connection. */
  reset(p: SimPort, reason: string): void {
    for (const s of [p, p.peer]) {
      this.ports.delete(s);
      s.held = [];
      s.queued = 0;
      if (s.open) {
        s.open = false;
        s.owner.input(() => s.onClose(reason));
      }
    }
  }

  /** The number of open connections `name` has. */
  openPorts(name: string): number {
    let n = 0;
    for (const p of this.ports) if (p.owner.name === name && p.open) n++;
    return n;
  }

  private arrive(from: SimPort, item: Item): void {
    const to = from.peer;
    if (!this.ports.has(to)) return; // reset meanwhile: lost
    if (from.held.length > 0 || this.partitions.blocked(from.owner.name, to.owner.name)) {
      from.held.push(item);
      return;
    }
    this.deliver(from, item);
  }

  private deliver(from: SimPort, item: Item): void {
    const to = from.peer;
    if (item.kind === "close") {
      this.ports.delete(from);
      if (!to.open) {
        this.ports.delete(to);
        return;
      }
      // Through the receiver's gate, like the frames before it: a paused node reads what was
      // sent before the close (it waits in its socket) before it sees the close.
      to.owner.input(() => {
        if (!to.open) return;
        to.open = false;
        this.ports.delete(to);
        to.onClose(item.reason);
      });
      return;
    }
    from.queued = Math.max(0, from.queued - item.data.length);
    if (!to.open) return;
    to.owner.input(() => {
      if (to.open) to.onFrame(item.data);
    });
    if (this.observers.length > 0) {
      const f = frameOf(from, item.data);
      for (const o of this.observers) o(f, "delivered");
    }
  }

  /** After a heal: what waited at the partition goes on, in order. */
  private release(): void {
    for (const p of this.ports) {
      const items = p.held;
      if (items.length === 0) continue;
      p.held = [];
      // This instant, in order, before anything sent later.
      for (const item of items) this.world.at(this.world.now, () => this.deliver(p, item));
    }
  }
}
