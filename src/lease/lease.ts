/**
 * A node's lease: the core (core.ts) driven against a lease service
 * (service.ts: etcd, or the in-memory one of the simulations) with an
 * injected clock and timers, so that the daemon and a virtual-time world run
 * the same code.
 *
 * How a node uses it:
 *  - to guard output: `mayRelease()` before every frame it releases, and
 *    `lease.lost` (the node stops output and the domain, then rejoins as a
 *    backup); the guard does not depend on the event being timely: it reads
 *    the clock itself;
 *  - to become primary: `campaign()` keeps trying (a read of the holder, then
 *    grant + compare-and-swap when the key is free) until `lease.acquired`;
 *    `stopCampaign()` gives up; a single attempt is `tryAcquire`;
 *  - to follow: `follow(onHolder)` reads the leader key and watches it; the
 *    record carries the holder's replication address;
 *  - to stop: `release()` (planned: output stops at once, then the lease is
 *    revoked so the other node can take over without waiting for the TTL).
 *
 * Every request has a timeout (`requestTimeoutMs`); an answer after it is
 * ignored, except a keep-alive's (its deadline counts from when it was sent,
 * so a slow service still renews). At most one keep-alive is in flight at a
 * time, though a late one may still be answered. A lease lost, released or
 * whose acquisition failed half-way is revoked, best effort, so that its key
 * goes at once rather than at the end of its TTL.
 */
import { LeaseCore, type LeaseEvent, type LeaseState } from "./core.js";
import type { Candidate, LeaderRecord } from "./record.js";
import {
  type Answer,
  type CampaignResult,
  type Cancel,
  fail,
  type KeepAlive,
  type LeaseService,
  type Reply,
} from "./service.js";
import type { LeaseTiming } from "./spec.js";

/** The node's clock: monotonic ms, timers on it, and the wall clock for the record's `since`. */
export interface LeaseClock {
  now(): number;
  after(ms: number, fn: () => void): Cancel;
  wallTime(): string;
}

/** The process's own clock: performance.now() (monotonic: it keeps running while the process is stopped). */
export const realClock: LeaseClock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(t) };
  },
  wallTime: () => new Date().toISOString(),
};

export interface LeaseOptions {
  readonly service: LeaseService;
  readonly timing: LeaseTiming;
  readonly candidate: Candidate;
  readonly clock?: LeaseClock;
  readonly onEvent?: (e: LeaseEvent) => void;
}

export class Lease {
  readonly core: LeaseCore;
  private readonly service: LeaseService;
  private readonly clock: LeaseClock;
  private readonly timing: LeaseTiming;
  private readonly candidate: Candidate;
  private readonly listeners: ((e: LeaseEvent) => void)[] = [];
  private leaseId: string | undefined;
  private timer: Cancel | undefined;
  private retryTimer: Cancel | undefined;
  private watch: Cancel | undefined;
  private onHolder: ((h: LeaderRecord | undefined) => void) | undefined;
  private attempt = 0;
  private campaigning = false;
  /**
   * Leases of attempts this node abandoned (a swap lost, late or refused):
   * a counter last set under one of them was moved by our own swap, with
   * nothing run under it, so it is not another lineage.
   */
  private readonly abandoned = new Set<string>();
  private stepping = false;
  private closed = false;
  private known: LeaderRecord | undefined;
  /** The campaign's lineage (`campaign(from)`), and who hears that it is stale. */
  private from: number | undefined;
  private onStale: ((current: number) => void) | undefined;

  constructor(o: LeaseOptions) {
    this.service = o.service;
    this.clock = o.clock ?? realClock;
    this.timing = o.timing;
    this.candidate = o.candidate;
    if (o.onEvent) this.listeners.push(o.onEvent);
    this.core = new LeaseCore(o.timing, (e) => this.onCoreEvent(e));
  }

  /** Adds a listener of `lease.*` events. */
  on(fn: (e: LeaseEvent) => void): void {
    this.listeners.push(fn);
  }

  get state(): LeaseState {
    return this.core.state;
  }

  get generation(): number | undefined {
    return this.core.generation;
  }

  /** The deadline on this node's monotonic clock while held. */
  get deadline(): number | undefined {
    return this.core.deadline;
  }

  /** The holder as last seen (our own record while we hold it). */
  get holder(): LeaderRecord | undefined {
    return this.core.state === "held" ? this.core.record : this.known;
  }

  /** This node's name in the lease record. */
  get name(): string {
    return this.candidate.nodeId;
  }

  get isCampaigning(): boolean {
    return this.campaigning;
  }

  /** Whether output may leave now (see core.ts for why this is safe). */
  mayRelease(now = this.clock.now()): boolean {
    return this.core.mayRelease(now);
  }

  /**
   * One acquisition attempt: grant, then the swap; `done(true)` once held.
   * With `from`, only while the generation counter is still `from` (else
   * `done(false, current)`: the candidate's image is of an older lineage).
   */
  tryAcquire(done: (won: boolean, stale?: number) => void = () => {}, from?: number): void {
    const now = this.clock.now();
    this.core.poll(now);
    if (this.closed || this.core.state === "held" || this.core.state === "acquiring") {
      done(this.core.state === "held");
      return;
    }
    const attempt = ++this.attempt;
    this.core.beginAcquire(now);
    const grantSentAt = now;
    this.call<{ leaseId: string; ttlMs: number }>(
      (r) => this.service.grant(this.timing.ttlMs, r),
      (g) => {
        if (!g.ok) {
          if (attempt === this.attempt) this.core.acquireFailed();
          done(false);
          return;
        }
        const id = g.value.leaseId;
        if (attempt !== this.attempt) {
          this.revoke(id);
          done(false);
          return;
        }
        this.call<CampaignResult>(
          (r) => this.service.campaign(id, this.candidate, this.clock.wallTime(), r, from),
          (c) => {
            const won =
              c.ok &&
              c.value.won &&
              attempt === this.attempt &&
              this.core.acquired(this.clock.now(), grantSentAt, g.value.ttlMs, c.value.record);
            if (!won) {
              // Why revoke: a swap whose answer was lost may have taken the key under this lease.
              this.revoke(id);
              this.abandoned.add(id);
              if (this.abandoned.size > 64)
                this.abandoned.delete(this.abandoned.values().next().value as string);
              if (attempt === this.attempt) this.core.acquireFailed();
              if (c.ok && !c.value.won) {
                if (c.value.stale !== undefined) {
                  const by = c.value.staleBy;
                  if (by !== undefined && this.abandoned.has(by) && from === this.from) {
                    // Our own abandoned swap moved the counter: the lineage is ours still.
                    this.from = c.value.stale;
                    done(false);
                    return;
                  }
                  done(false, c.value.stale);
                  return;
                }
                this.learn(c.value.holder);
              }
              done(false);
              return;
            }
            this.leaseId = id;
            this.campaigning = false;
            this.cancelRetry();
            this.schedule();
            done(true);
          },
        );
      },
    );
  }

  /**
   * Keeps trying to acquire until held (or `stopCampaign`, `release`,
   * `close`). With `from`: only from that lineage; once the counter has moved
   * past it the campaign ends and `onStale` hears the counter.
   */
  campaign(from?: number, onStale?: (current: number) => void): void {
    if (this.closed || this.campaigning) return;
    this.campaigning = true;
    this.from = from;
    this.onStale = onStale;
    if (this.watch === undefined) this.startWatch();
    this.step();
  }

  /**
   * Stops campaigning. An acquisition in flight is abandoned: if its swap
   * still wins, its lease is revoked at once and the node never holds it.
   */
  stopCampaign(): void {
    this.campaigning = false;
    this.onStale = undefined;
    this.cancelRetry();
    if (this.core.state === "acquiring") {
      this.attempt++;
      this.core.acquireFailed();
    }
  }

  /**
   * Moves the lineage on while held (service.ts `advance`): the counter from
   * `from` to `from + 1`. `done(record)` with the new record, or undefined
   * when refused, not held, or unanswered.
   */
  advance(from: number, done: (record: LeaderRecord | undefined) => void): void {
    const id = this.leaseId;
    if (id === undefined || !this.core.mayRelease(this.clock.now())) {
      done(undefined);
      return;
    }
    this.call<LeaderRecord | undefined>(
      (r) => this.service.advance(id, from, r),
      (a) => {
        const rec = a.ok && this.leaseId === id ? a.value : undefined;
        if (rec) this.core.advanced(rec);
        done(rec);
      },
    );
  }

  /**
   * Reads the holder now and watches the leader key: `onHolder` hears every
   * change seen (undefined: nobody holds the lease).
   */
  follow(onHolder: (h: LeaderRecord | undefined) => void): void {
    this.onHolder = onHolder;
    // The holder already read (a campaign, a readHolder) is reported first: no change would report it.
    if (this.known !== undefined) onHolder(this.known);
    if (this.watch === undefined) this.startWatch();
    this.readHolder(() => {});
  }

  /** Reads the current holder from the service. */
  readHolder(done: (a: Answer<LeaderRecord | undefined>) => void): void {
    this.call<LeaderRecord | undefined>(
      (r) => this.service.holder(r),
      (a) => {
        if (a.ok) this.learn(a.value);
        done(a);
      },
    );
  }

  /**
   * A planned release: output stops now (mayRelease is false from this call
   * on), then the lease is revoked; `done` when the service answered (or not).
   */
  release(done: () => void = () => {}): void {
    this.stopCampaign();
    this.attempt++;
    this.core.release(this.clock.now());
    this.cancelTimer();
    const id = this.leaseId;
    this.leaseId = undefined;
    if (id === undefined) {
      done();
      return;
    }
    this.call<void>(
      (r) => this.service.revoke(id, r),
      () => done(),
    );
  }

  /** Stops every timer and the watch, and closes the service client (after `release` on a planned stop). */
  close(): void {
    if (this.closed) return;
    this.stopCampaign();
    this.attempt++;
    this.core.release(this.clock.now());
    this.cancelTimer();
    this.watch?.cancel();
    this.watch = undefined;
    this.closed = true;
    this.service.close();
  }

  /**
   * The process is gone (a simulated kill): every timer and the watch stop,
   * nothing is sent, not even a revoke; the lease expires at the service.
   */
  abandon(): void {
    if (this.closed) return;
    this.campaigning = false;
    this.attempt++;
    this.cancelRetry();
    this.cancelTimer();
    this.watch?.cancel();
    this.watch = undefined;
    this.closed = true;
    this.service.close();
  }

  // ---- internals ----

  private onCoreEvent(e: LeaseEvent): void {
    if (e.event === "lease.lost") {
      this.cancelTimer();
      const id = this.leaseId;
      this.leaseId = undefined;
      if (id !== undefined) this.revoke(id);
    }
    for (const l of this.listeners) l(e);
  }

  /** One campaign step: if the key looks free, try; otherwise look again later. */
  private step(): void {
    if (!this.campaigning || this.closed || this.stepping) return;
    this.cancelRetry();
    this.stepping = true;
    this.readHolder((a) => {
      if (!this.campaigning) {
        this.stepping = false;
        return;
      }
      if (a.ok && a.value === undefined) {
        this.tryAcquire((won, stale) => {
          this.stepping = false;
          if (stale !== undefined && this.campaigning) {
            const tell = this.onStale;
            this.stopCampaign();
            tell?.(stale);
            return;
          }
          if (!won) this.retryLater();
        }, this.from);
      } else {
        this.stepping = false;
        this.retryLater();
      }
    });
  }

  private retryLater(): void {
    if (!this.campaigning || this.closed) return;
    this.cancelRetry();
    this.retryTimer = this.clock.after(this.timing.retryMs, () => {
      this.retryTimer = undefined;
      this.step();
    });
  }

  private cancelRetry(): void {
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
  }

  private startWatch(): void {
    this.watch = this.service.watchHolder((h) => {
      this.learn(h);
      // The key went away: try at once rather than at the next retry.
      if (h === undefined && this.campaigning) this.step();
    });
  }

  private learn(h: LeaderRecord | undefined): void {
    const changed =
      h?.nodeId !== this.known?.nodeId ||
      h?.generation !== this.known?.generation ||
      h?.address !== this.known?.address;
    this.known = h;
    if (changed) this.onHolder?.(h);
  }

  /** Arms the timer for the next renewal or the end of the lease. */
  private schedule(): void {
    this.cancelTimer();
    const wake = this.core.nextWake();
    if (wake === Number.POSITIVE_INFINITY) return;
    this.timer = this.clock.after(Math.max(0, wake - this.clock.now()), () => {
      this.timer = undefined;
      this.tick();
    });
  }

  private tick(): void {
    const now = this.clock.now();
    this.core.poll(now);
    if (this.core.state !== "held") return;
    if (now >= this.core.renewalDueAt()) this.renew(now);
    this.schedule();
  }

  private renew(now: number): void {
    const id = this.leaseId;
    const sentAt = this.core.renewalSent(now);
    if (id === undefined || sentAt === undefined) return;
    let answered = false;
    // No answer in time: retry soon; but a late answer still counts (below).
    const timer = this.clock.after(this.timing.requestTimeoutMs, () => {
      if (answered || this.leaseId !== id) return;
      this.core.renewalFailed(this.clock.now(), sentAt);
      if (this.core.state === "held") this.schedule();
    });
    const onAnswer = (a: Answer<KeepAlive>): void => {
      if (answered) return;
      answered = true;
      timer.cancel();
      if (this.leaseId !== id) return;
      const at = this.clock.now();
      // Why a late answer is safe to use: the deadline it gives is sentAt + TTL, from when this
      // keep-alive was sent, and the core judges expiry before it looks at any answer.
      if (a.ok) this.core.renewed(at, sentAt, a.value.ttlMs);
      else if (a.error.kind === "lease-not-found") this.core.refused(at);
      else this.core.renewalFailed(at, sentAt);
      if (this.core.state === "held") this.schedule();
    };
    try {
      this.service.keepAlive(id, onAnswer);
    } catch (e) {
      onAnswer(fail("unavailable", e instanceof Error ? e.message : String(e), e));
    }
  }

  private revoke(id: string): void {
    this.call<void>(
      (r) => this.service.revoke(id, r),
      () => {},
    );
  }

  /** Runs one request with a timeout; `done` hears exactly one answer. */
  private call<T>(op: (reply: Reply<T>) => void, done: (a: Answer<T>) => void): void {
    let answered = false;
    const timer = this.clock.after(this.timing.requestTimeoutMs, () => {
      if (answered) return;
      answered = true;
      done(fail("timeout", `no answer from the lease service in ${this.timing.requestTimeoutMs} ms`));
    });
    try {
      op((a) => {
        if (answered) return;
        answered = true;
        timer.cancel();
        done(a);
      });
    } catch (e) {
      if (answered) return;
      answered = true;
      timer.cancel();
      done(fail("unavailable", e instanceof Error ? e.message : String(e), e));
    }
  }

  private cancelTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }
}
