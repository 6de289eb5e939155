/**
 * Virtual time for the lease tests, on the simulated world of test/sim (its
 * event queue ordered by (time, seq)), and nodes whose clocks can be paused
 * (a SIGSTOP: nothing of theirs runs, their monotonic clock keeps going) or
 * jump forward.
 */
import type { LeaseClock } from "../../src/lease/lease.js";
import type { Scheduler } from "../../src/lease/memory.js";
import type { Cancel, LeaseService } from "../../src/lease/service.js";
import { World } from "../sim/world.js";

export class VirtualTime implements Scheduler {
  readonly world = new World(0);
  /** Called after every event (the invariant checkers). */
  afterEach: (() => void) | undefined;

  now(): number {
    return this.world.now;
  }

  after(ms: number, fn: () => void): Cancel {
    return this.world.after(Math.max(0, ms), fn);
  }

  /** Runs events until `until` holds or `ms` of virtual time passed. */
  run(ms: number, until: () => boolean = () => false): boolean {
    const end = this.world.now + ms;
    for (;;) {
      if (until()) return true;
      if (!this.world.next(end)) {
        this.world.now = Math.max(this.world.now, end);
        return until();
      }
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
      campaign: (id, c, since, r, from) => s.campaign(id, c, since, g(r), from),
      advance: (id, from, r) => s.advance(id, from, g(r)),
      holder: (r) => s.holder(g(r)),
      watchHolder: (fn) => s.watchHolder((h) => this.gate(() => fn(h))()),
      close: () => s.close(),
    };
  }
}
