/**
 * Virtual time for the lease tests: one event queue ordered by (time, seq),
 * and nodes whose clocks can be paused (a SIGSTOP: nothing of theirs runs,
 * their monotonic clock keeps going) or jump forward. The simulated world of
 * test/sim offers the same `now`/`after` shape.
 */
import type { LeaseClock } from "../../src/lease/lease.js";
import type { Scheduler } from "../../src/lease/memory.js";
import type { Cancel, LeaseService } from "../../src/lease/service.js";

interface Ev {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export class VirtualTime implements Scheduler {
  private t = 0;
  private seq = 0;
  private q: Ev[] = [];
  /** Called after every event (the invariant checkers). */
  afterEach: (() => void) | undefined;

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): Cancel {
    const ev: Ev = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    // Insert keeping the queue sorted by (at, seq).
    let i = this.q.length;
    while (i > 0 && (this.q[i - 1] as Ev).at > ev.at) i--;
    this.q.splice(i, 0, ev);
    return {
      cancel: () => {
        ev.cancelled = true;
      },
    };
  }

  /** Runs events until `until` holds or `ms` of virtual time passed. */
  run(ms: number, until: () => boolean = () => false): boolean {
    const end = this.t + ms;
    for (;;) {
      if (until()) return true;
      const ev = this.q[0];
      if (!ev || ev.at > end) {
        this.t = end;
        return until();
      }
      this.q.shift();
      this.t = Math.max(this.t, ev.at);
      if (ev.cancelled) continue;
      ev.fn();
      this.afterEach?.();
    }
  }
}

/** A node's clock on virtual time: pauses (SIGSTOP) and forward jumps. */
export class NodeClock implements LeaseClock {
  private offset = 0;
  private pausedUntil = Number.NEGATIVE_INFINITY;
  private held: (() => void)[] = [];

  constructor(
    readonly vt: VirtualTime,
    readonly name: string,
  ) {}

  now(): number {
    return this.vt.now() + this.offset;
  }

  wallTime(): string {
    return new Date(Date.UTC(2025, 0, 1) + this.now()).toISOString();
  }

  get paused(): boolean {
    return this.vt.now() < this.pausedUntil;
  }

  /** Defers `fn` while the node is paused (its process does not run). */
  gate(fn: () => void): () => void {
    return () => {
      if (this.paused) this.held.push(fn);
      else fn();
    };
  }

  after(ms: number, fn: () => void): Cancel {
    let cancelled = false;
    const c = this.vt.after(
      ms,
      this.gate(() => {
        if (!cancelled) fn();
      }),
    );
    return {
      cancel: () => {
        cancelled = true;
        c.cancel();
      },
    };
  }

  /** Stops the node for `ms`: what was due meanwhile runs when it resumes, in order. */
  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.vt.now() + ms);
    this.vt.after(ms, () => {
      if (this.paused) return;
      const fns = this.held;
      this.held = [];
      for (const f of fns) f();
    });
  }

  /** The node's monotonic clock leaps forward by `ms`. */
  jump(ms: number): void {
    this.offset += ms;
  }

  /** The node's view of a service: answers wait while it is paused. */
  wrap(s: LeaseService): LeaseService {
    const g =
      <A>(reply: (a: A) => void) =>
      (a: A) =>
        this.gate(() => reply(a))();
    return {
      grant: (ttl, r) => s.grant(ttl, g(r)),
      keepAlive: (id, r) => s.keepAlive(id, g(r)),
      revoke: (id, r) => s.revoke(id, g(r)),
      campaign: (id, c, since, r) => s.campaign(id, c, since, g(r)),
      holder: (r) => s.holder(g(r)),
      watchHolder: (fn) => s.watchHolder((h) => this.gate(() => fn(h))()),
      close: () => s.close(),
    };
  }
}
