/**
 * The simulated world's core: one virtual clock, one event queue ordered by
 * (time, seq), and the seeded PRNG of src/prng.ts. Everything that happens in
 * a simulation is an event here: a node's step, a frame's delivery, a store
 * commit completing, a fault. Nothing reads the wall clock or sleeps, so a
 * seed replays exactly.
 *
 * Two ways to drive time, which compose:
 *  - events (`at`, `after`, `every`): the replication world steps each node
 *    every millisecond and delivers frames at their own (fractional) times;
 *  - pollers: run after every instant and say when they next need to run (the
 *    TCP world jumps from one stack timer to the next).
 */
import { Prng } from "../../src/prng.js";

/** A scheduled event; `cancel` keeps it from running. */
export interface Scheduled {
  cancel(): void;
}

interface Ev extends Scheduled {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/** Something that runs after every instant and names the next time it needs (Infinity: none). */
export interface Poller {
  poll(now: number): void;
  nextWake(now: number): number;
}

export interface WorldOptions {
  /**
   * Time advances at least this much between instants (1 in an integer-ms
   * world whose pollers may ask for "now"; 0 where every event has its time).
   */
  readonly minStepMs?: number;
}

export class World {
  now = 0;
  /** The world's own seeded choices (tests draw from it too). */
  readonly rng: Prng;
  private readonly heap: Ev[] = [];
  private seq = 0;
  private readonly pollers: Poller[] = [];
  private readonly minStepMs: number;

  constructor(
    readonly seed: number,
    opts: WorldOptions = {},
  ) {
    this.rng = new Prng(seed);
    this.minStepMs = opts.minStepMs ?? 0;
  }

  /**
   * An independent generator for one component, reproducible from the seed
   * and `label`, so that a component's draws do not shift everyone else's.
   */
  stream(label: string): Prng {
    let h = this.seed ^ 0x9e3779b9;
    for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
    return new Prng(h >>> 0);
  }

  /** Runs `fn` at `time` (not before now; same-time events run in the order they were scheduled). */
  at(time: number, fn: () => void): Scheduled {
    const ev: Ev = {
      at: Math.max(time, this.now),
      seq: this.seq++,
      fn,
      cancelled: false,
      cancel() {
        this.cancelled = true;
      },
    };
    this.push(ev);
    return ev;
  }

  after(ms: number, fn: () => void): Scheduled {
    return this.at(this.now + ms, fn);
  }

  /** Runs `fn` every `periodMs`, first at `first` (default: the next multiple of the period), until cancelled. */
  every(
    periodMs: number,
    fn: () => void,
    first = (Math.floor(this.now / periodMs) + 1) * periodMs,
  ): Scheduled {
    let next: Scheduled | undefined;
    let cancelled = false;
    const run = (): void => {
      if (cancelled) return;
      fn();
      if (!cancelled) next = this.after(periodMs, run);
    };
    next = this.at(first, run);
    return {
      cancel: () => {
        cancelled = true;
        next?.cancel();
      },
    };
  }

  addPoller(p: Poller): void {
    this.pollers.push(p);
  }

  /**
   * Runs until `until()` holds after an instant (true), or `maxMs` of virtual
   * time passed or nothing is left to happen (what `until` says then).
   */
  run(until: () => boolean = () => false, maxMs = Number.POSITIVE_INFINITY): boolean {
    const deadline = this.now + maxMs;
    for (;;) {
      for (let ev = this.peek(); ev && ev.at <= this.now; ev = this.peek()) {
        this.pop();
        if (!ev.cancelled) ev.fn();
      }
      for (const p of this.pollers) p.poll(this.now);
      if (until()) return true;
      let next = this.peek()?.at ?? Number.POSITIVE_INFINITY;
      for (const p of this.pollers) next = Math.min(next, p.nextWake(this.now));
      if (next === Number.POSITIVE_INFINITY) return until();
      if (next > deadline) {
        this.now = deadline;
        return until();
      }
      this.now = Math.max(next, this.now + this.minStepMs);
    }
  }

  /**
   * Runs the next event if it is due by `limit` (time moves to it); false when
   * none is. For drivers that look at the world after every single event.
   */
  next(limit: number): boolean {
    for (;;) {
      const ev = this.peek();
      if (!ev || ev.at > limit) return false;
      this.pop();
      this.now = Math.max(this.now, ev.at);
      if (ev.cancelled) continue;
      ev.fn();
      return true;
    }
  }

  /** Runs for `ms` of virtual time. */
  runFor(ms: number): void {
    const end = this.now + ms;
    const wake = this.at(end, () => {});
    this.run(() => this.now >= end, ms);
    wake.cancel();
  }

  // ---- the binary heap, ordered by (at, seq) ----

  private peek(): Ev | undefined {
    return this.heap[0];
  }

  private push(ev: Ev): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(ev, h[parent] as Ev)) break;
      h[i] = h[parent] as Ev;
      i = parent;
    }
    h[i] = ev;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop() as Ev;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && before(h[r] as Ev, h[l] as Ev) ? r : l;
      if (!before(h[c] as Ev, last)) break;
      h[i] = h[c] as Ev;
      i = c;
    }
    h[i] = last;
  }
}

function before(a: Ev, b: Ev): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
