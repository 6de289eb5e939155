/**
 * The TCP world: hosts, each a `NetStack` over its own `PlainMemory` and
 * standalone heap, on one Ethernet segment, in the simulated world of
 * test/sim (its event queue, its seeded PRNG, the segment's faults from
 * `LinkFaults`: drop, delay with jitter, duplicate, reorder, dropIf). Time
 * jumps from one frame delivery or stack timer to the next (at least 1 ms).
 * No real sleeps, no wall clock.
 */
import { GuestMemory, PlainMemory } from "../../src/domain/memory.js";
import { formatStandaloneHeap, Heap } from "../../src/guest/mm.js";
import { type NetConfig, type NetEnv, NetStack } from "../../src/net/stack.js";
import { formatMac, parseIpv4 } from "../../src/net/wire.js";
import { Prng } from "../../src/prng.js";
import { LinkFaults } from "../sim/faults.js";
import { type Scheduled, World } from "../sim/world.js";

/** What the segment's fault rules see of a frame. */
export interface SegmentFrame {
  readonly from: Host;
  readonly to: Host;
  readonly frame: Uint8Array;
  readonly now: number;
}

export interface Checkpoint {
  image: Buffer;
  rng: Prng;
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
  rng: Prng;

  constructor(
    readonly world: TcpWorld,
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
    this.rng = new Prng(seed);
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

/** A set of hosts on one Ethernet segment, in a simulated world. */
export class TcpWorld {
  /** The event queue and clock (integer milliseconds). */
  readonly world: World;
  readonly hosts: Host[] = [];
  /** The segment's faults (every frame between hosts; clean: 1 ms, no loss). */
  readonly segment: LinkFaults<SegmentFrame>;
  /** Application callbacks, run once per instant (after input, before the stacks' polls). */
  readonly apps: (() => void)[] = [];
  private readonly wakeups: number[] = [];
  private readonly inFlight = new Map<Scheduled, Host>();
  delivered = 0;

  constructor(seed: number) {
    this.world = new World(seed, { minStepMs: 1 });
    this.segment = new LinkFaults<SegmentFrame>(this.world.rng, {
      delayMs: 1,
      jitterMs: 0,
      wholeMs: true,
      reorder: true,
    });
    this.world.addPoller({ poll: () => this.poll(), nextWake: (now) => this.nextWake(now) });
  }

  get now(): number {
    return this.world.now;
  }

  /** The world's seeded PRNG (faults, host seeds and the tests' data come from it). */
  get rng(): Prng {
    return this.world.rng;
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
      const fate = this.segment.fate(this.now, { from, to, frame: copy, now: this.now });
      for (const at of fate.times) this.deliverAt(to, copy, at);
    }
  }

  /** Delivers `frame` to `to` at `at` (bypassing faults). */
  inject(to: Host, frame: Uint8Array, at = this.now + 1): void {
    this.deliverAt(to, Uint8Array.from(frame), at);
  }

  private deliverAt(to: Host, frame: Uint8Array, at: number): void {
    const ev = this.world.at(at, () => {
      this.inFlight.delete(ev);
      if (!to.up) return;
      this.delivered++;
      to.stack.input(frame);
    });
    this.inFlight.set(ev, to);
  }

  /** Drops every frame in flight (to `to`, or to anybody). */
  clearInFlight(to?: Host): void {
    for (const [ev, dst] of this.inFlight) {
      if (to && dst !== to) continue;
      ev.cancel();
      this.inFlight.delete(ev);
    }
  }

  /** Frames lost by the segment's faults. */
  get dropped(): number {
    return this.segment.dropped;
  }

  /** Makes the world run at `t` even if nothing else happens then. */
  wakeAt(t: number): void {
    this.wakeups.push(t);
  }

  private poll(): void {
    for (const app of this.apps) app();
    for (const h of this.hosts) if (h.up) h.stack.poll();
  }

  private nextWake(now: number): number {
    let next = Number.POSITIVE_INFINITY;
    for (const h of this.hosts) {
      if (!h.up) continue;
      const t = h.stack.nextTimerAt();
      if (t !== null && t + h.clockOffset < next) next = t + h.clockOffset;
      if (h.stack.pendingOutput()) next = Math.min(next, now + 1);
    }
    // Wakeups that passed are forgotten; a reader that asks every few ms keeps the list short.
    let k = 0;
    for (const w of this.wakeups) {
      if (w <= now) continue;
      this.wakeups[k++] = w;
      if (w < next) next = w;
    }
    this.wakeups.length = k;
    return next;
  }

  /**
   * Runs the world until `done()` holds (true) or `maxMs` of virtual time pass
   * or nothing is left to happen (false).
   */
  run(done: () => boolean, maxMs = 600_000): boolean {
    return this.world.run(done, maxMs);
  }

  /** Runs for `ms` of virtual time. */
  runFor(ms: number): void {
    this.world.runFor(ms);
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
export function establish(
  w: TcpWorld,
  a: Host,
  b: Host,
  port: number,
  backlog = 16,
): [number, number, number] {
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
