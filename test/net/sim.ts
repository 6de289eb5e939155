/**
 * A deterministic little world for network-stack tests: hosts, each a
 * `NetStack` over its own `PlainMemory` + standalone heap, joined by an
 * in-memory Ethernet segment that can drop, duplicate, reorder (jitter) and
 * delay frames from a seeded PRNG, and a virtual clock advanced by an
 * event-driven loop (next frame delivery or next stack timer). No real
 * sleeps, no wall clock.
 */
import { GuestMemory, PlainMemory } from "../../src/domain/memory.js";
import { formatStandaloneHeap, Heap } from "../../src/guest/mm.js";
import { type NetConfig, type NetEnv, NetStack } from "../../src/net/stack.js";
import { formatMac, parseIpv4 } from "../../src/net/wire.js";

/** mulberry32: small, fast, good enough for fault injection. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  }
  float(): number {
    return this.u32() / 2 ** 32;
  }
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  clone(): Rng {
    const r = new Rng(0);
    r.s = this.s;
    return r;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(Math.ceil(n / 4) * 4);
    for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(this.u32(), i);
    return b.subarray(0, n);
  }
}

export interface LinkFaults {
  /** Base one-way delay, ms (at least 1). */
  delayMs: number;
  /** Extra uniform delay in [0, jitterMs), which reorders frames. */
  jitterMs: number;
  /** Probability a frame is lost. */
  loss: number;
  /** Probability a frame is delivered twice. */
  dup: number;
}

export const CLEAN: LinkFaults = { delayMs: 1, jitterMs: 0, loss: 0, dup: 0 };

export interface TapEvent {
  at: number;
  from: Host;
  frame: Uint8Array;
  fate: "deliver" | "drop";
}

interface InFlight {
  at: number;
  seq: number;
  to: Host;
  frame: Uint8Array;
}

export interface Checkpoint {
  image: Buffer;
  rng: Rng;
  clock: number;
}

export class Host {
  mem: PlainMemory;
  heap: Heap;
  stack: NetStack;
  readonly env: NetEnv;
  /** When set and returning true, this host's NIC refuses frames (transmit ring full). */
  blocked: ((now: number) => boolean) | null = null;
  /** Frames this host's NIC accepted, with their time. */
  readonly sent: { at: number; frame: Uint8Array }[] = [];
  recordSent = false;
  /** When false, the host's frames vanish (a dead or partitioned host). */
  up = true;
  /** The host's clock is `world.now - clockOffset` (a restored guest resumes its own, earlier, time). */
  clockOffset = 0;
  /** Output commit: while set, frames the NIC accepts are kept in `held` instead of going on the wire. */
  holdOutput = false;
  held: Uint8Array[] = [];
  /** The RNG behind `env.random32` (on a guest it lives in the vCPU, so tests checkpoint it too). */
  rng: Rng;

  constructor(
    readonly world: World,
    readonly name: string,
    readonly mac: Uint8Array,
    readonly ip: number,
    cfg: Partial<NetConfig>,
    memBytes: number,
    seed: number,
    guest = false,
  ) {
    this.mem = guest ? new GuestMemory(memBytes) : new PlainMemory(memBytes);
    this.heap = formatStandaloneHeap(this.mem);
    this.rng = new Rng(seed);
    const self = this;
    this.env = {
      get mem() {
        return self.mem;
      },
      get heap() {
        return self.heap;
      },
      now: () => world.now - self.clockOffset,
      random32: () => self.rng.u32(),
      transmit: (frame) => world.transmit(self, frame),
    };
    const root = NetStack.format(this.env, { mac, ip, ...cfg });
    this.stack = new NetStack(this.env, root);
  }

  /** A checkpoint: a copy of the host's whole memory, its RNG state and its clock. */
  snapshot(): Checkpoint {
    return { image: Buffer.from(this.mem.buf), rng: this.rng.clone(), clock: this.env.now() };
  }

  /**
   * Replaces this host's memory by the checkpoint's and takes a fresh handle on
   * the stack in it (a restore on the backup). With `resumeClock` the host's
   * clock continues from the checkpoint's time, as a restored vCPU clock would.
   */
  restore(ck: Checkpoint, resumeClock = false): void {
    const root = this.stack.root;
    this.rng = ck.rng.clone();
    if (resumeClock) this.clockOffset = this.world.now - ck.clock;
    this.mem = new PlainMemory(Buffer.from(ck.image));
    this.heap = new Heap(this.mem, this.heap.hdr);
    this.stack = new NetStack(this.env, root);
  }
}

/** A set of hosts on one Ethernet segment, with a virtual clock. */
export class World {
  now = 0;
  readonly rng: Rng;
  readonly hosts: Host[] = [];
  faults: LinkFaults = { ...CLEAN };
  /** Per-frame veto for targeted drops: return true to drop. */
  filter: ((from: Host, to: Host, frame: Uint8Array, now: number) => boolean) | null = null;
  tap: ((e: TapEvent) => void) | null = null;
  /** Application callbacks, run once per loop iteration (after input, before poll). */
  readonly apps: (() => void)[] = [];
  /** Times at which the loop must run even if nothing else happens. */
  readonly wakeups: number[] = [];
  private queue: InFlight[] = [];
  private seq = 0;
  delivered = 0;
  dropped = 0;

  constructor(seed: number) {
    this.rng = new Rng(seed);
  }

  /** Adds a host; with `guest` its memory is a dirty-logging `GuestMemory`. */
  addHost(name: string, ip: string, cfg: Partial<NetConfig> = {}, memBytes = 4 << 20, guest = false): Host {
    const n = this.hosts.length + 1;
    const mac = Uint8Array.from([0x02, 0, 0, 0, 0, n]);
    const h = new Host(this, name, mac, parseIpv4(ip), cfg, memBytes, this.rng.u32(), guest);
    this.hosts.push(h);
    return h;
  }

  transmit(from: Host, frame: Uint8Array): boolean {
    if (from.blocked?.(this.now)) return false;
    const copy = Uint8Array.from(frame);
    if (from.recordSent) from.sent.push({ at: this.now, frame: copy });
    if (from.holdOutput) {
      from.held.push(copy);
      return true;
    }
    this.release(from, copy);
    return true;
  }

  /** Puts a frame `from` sent on the wire (faults apply). */
  release(from: Host, copy: Uint8Array): void {
    if (!from.up) return;
    const bcast = copy.subarray(0, 6).every((b) => b === 0xff);
    for (const to of this.hosts) {
      if (to === from || !to.up) continue;
      if (!bcast && !to.mac.every((b, i) => b === copy[i])) continue;
      this.send(from, to, copy);
    }
  }

  private send(from: Host, to: Host, frame: Uint8Array): void {
    const f = this.faults;
    const drop = this.rng.float() < f.loss || (this.filter?.(from, to, frame, this.now) ?? false);
    this.tap?.({ at: this.now, from, frame, fate: drop ? "drop" : "deliver" });
    if (drop) {
      this.dropped++;
      return;
    }
    const copies = this.rng.float() < f.dup ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const at = this.now + Math.max(1, f.delayMs) + (f.jitterMs > 0 ? this.rng.int(f.jitterMs) : 0);
      this.enqueue({ at, seq: this.seq++, to, frame });
    }
  }

  /** Delivers `frame` to `to` at `at` (bypassing faults). */
  inject(to: Host, frame: Uint8Array, at = this.now + 1): void {
    this.enqueue({ at, seq: this.seq++, to, frame: Uint8Array.from(frame) });
  }

  private enqueue(p: InFlight): void {
    const q = this.queue;
    let lo = 0;
    let hi = q.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const x = q[mid] as InFlight;
      if (x.at < p.at || (x.at === p.at && x.seq < p.seq)) lo = mid + 1;
      else hi = mid;
    }
    q.splice(lo, 0, p);
  }

  /** Drops every frame in flight (to `to`, or to anybody). */
  clearInFlight(to?: Host): void {
    this.queue = to ? this.queue.filter((p) => p.to !== to) : [];
  }

  get inFlight(): number {
    return this.queue.length;
  }

  /**
   * Runs the world until `done()` holds (true) or `maxMs` of virtual time pass
   * or nothing is left to happen (false).
   */
  run(done: () => boolean, maxMs = 600_000): boolean {
    const deadline = this.now + maxMs;
    for (;;) {
      while (this.queue.length > 0 && (this.queue[0] as InFlight).at <= this.now) {
        const p = this.queue.shift() as InFlight;
        if (!p.to.up) continue;
        this.delivered++;
        p.to.stack.input(p.frame);
      }
      for (const app of this.apps) app();
      for (const h of this.hosts) if (h.up) h.stack.poll();
      if (done()) return true;
      let next = Number.POSITIVE_INFINITY;
      if (this.queue.length > 0) next = (this.queue[0] as InFlight).at;
      for (const h of this.hosts) {
        if (!h.up) continue;
        const t = h.stack.nextTimerAt();
        if (t !== null && t + h.clockOffset < next) next = t + h.clockOffset;
        if (h.stack.pendingOutput()) next = Math.min(next, this.now + 1);
      }
      for (const w of this.wakeups) if (w > this.now && w < next) next = w;
      if (next === Number.POSITIVE_INFINITY) return done();
      if (next > deadline) {
        this.now = deadline;
        return done();
      }
      this.now = Math.max(next, this.now + 1);
    }
  }

  /** Runs for `ms` of virtual time. */
  runFor(ms: number): void {
    const end = this.now + ms;
    this.wakeups.push(end);
    this.run(() => this.now >= end, ms + 1);
    this.wakeups.splice(this.wakeups.indexOf(end), 1);
  }
}

/** Feeds `data` into socket `s` of `h` as fast as the send buffer allows; optionally shuts down when done. */
export class Sender {
  offset = 0;
  constructor(
    readonly h: Host,
    readonly s: number,
    readonly data: Uint8Array,
    readonly shutdownWhenDone = false,
  ) {}
  pump = (): void => {
    if (this.shut || (this.done && !this.shutdownWhenDone)) return;
    const st = this.h.stack;
    while (this.offset < this.data.length) {
      const n = st.send(
        this.s,
        this.data.subarray(this.offset, Math.min(this.data.length, this.offset + 16384)),
      );
      if (n <= 0) break;
      this.offset += n;
    }
    if (this.shutdownWhenDone && this.offset === this.data.length && !this.shut) {
      this.shut = true;
      st.shutdown(this.s);
    }
  };
  shut = false;
  get done(): boolean {
    return this.offset === this.data.length;
  }
}

/** Reads everything socket `s` of `h` receives (while `reading`). */
export class Receiver {
  chunks: Buffer[] = [];
  length = 0;
  reading = true;
  eof = false;
  constructor(
    readonly h: Host,
    readonly s: number,
  ) {}
  pump = (): void => {
    if (!this.reading || this.eof) return;
    const st = this.h.stack;
    for (;;) {
      const b = st.recv(this.s, 65536);
      if (b === null) break;
      this.chunks.push(b);
      this.length += b.length;
    }
    if (st.eof(this.s)) this.eof = true;
  };
  data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export function macStr(h: Host): string {
  return formatMac(h.mac);
}

/** Connects `a` to a listener on `b:port`, runs the handshake, returns [client socket, server socket]. */
export function establish(w: World, a: Host, b: Host, port: number, backlog = 16): [number, number, number] {
  const l = b.stack.listen(port, backlog);
  const cs = a.stack.connect(b.ip, port);
  let ss = 0;
  const ok = w.run(() => {
    if (ss === 0) ss = b.stack.accept(l);
    return ss !== 0 && a.stack.state(cs) === "ESTABLISHED";
  }, 60_000);
  if (!ok) throw new Error(`handshake did not complete: client ${a.stack.state(cs)}`);
  return [cs, ss, l];
}
