/**
 * The lease's sans-IO core: which state the lease is in, until when it is
 * surely ours, and when the next renewal is due. No I/O and no clock of its
 * own: every call takes `now`, the node's monotonic time in ms.
 *
 * Data flow: the driver (lease.ts) sends a grant, then a compare-and-swap on
 * the leader key; on success it tells the core `acquired(now, grantSentAt,
 * ttl)`. From then on it sends a keep-alive whenever `renewalDueAt()` comes,
 * tells the core `renewalSent(now)` as it sends it, and `renewed(now, sentAt,
 * ttl)` or `renewalFailed` when the answer (or its absence) is known. The node
 * asks `mayRelease(now)` before every output it releases.
 *
 * Invariants (why the node may trust `mayRelease`):
 *  - deadline = sentAt + ttl, where sentAt is when the grant or keep-alive
 *    that the service answered was SENT, never when the answer came. The
 *    service starts the new TTL when the request reaches it, which is later,
 *    so the service cannot expire the lease, and no one else can take it,
 *    before our deadline. The margin absorbs clock-rate differences between
 *    this node and the service (a tenth of the TTL by default) and frames
 *    already on their way out.
 *  - mayRelease(now) ⇔ held ∧ now < deadline − margin.
 *  - Expiry is judged first, at every entry point: once now ≥ deadline −
 *    margin the lease is lost, and no answer that arrives later revives it. A
 *    paused process (SIGSTOP, a VM stall, a long GC) wakes up with its
 *    monotonic clock far ahead and finds the lease lost: a pause can only
 *    shorten the lease, never extend it.
 *  - Time never runs backwards for the core: a `now` below one already seen
 *    counts as the latest seen.
 */
import type { LeaderRecord } from "./record.js";
import type { LeaseTiming } from "./spec.js";

/** none: not held, nothing in progress · acquiring · held · lost: it lapsed or the service refused it. */
export type LeaseState = "none" | "acquiring" | "held" | "lost";

export const LEASE_STATES: readonly LeaseState[] = ["none", "acquiring", "held", "lost"];

/** expired: no renewal was answered in time · refused: the service said the lease is gone. */
export type LeaseLossReason = "expired" | "refused";

/** What the lease reports (DESIGN.md Part 1: event names `lease.*`). */
export type LeaseEvent =
  | {
      readonly event: "lease.acquired";
      readonly generation: number;
      /** The TTL the service granted. */
      readonly ttlMs: number;
      readonly record: LeaderRecord;
    }
  | { readonly event: "lease.lost"; readonly generation: number; readonly reason: LeaseLossReason }
  | { readonly event: "lease.released"; readonly generation: number };

export class LeaseCore {
  private st: LeaseState = "none";
  private rec: LeaderRecord | undefined;
  private ttlMs = 0;
  private dl = Number.NEGATIVE_INFINITY;
  private lastSentAt = Number.NEGATIVE_INFINITY;
  private inFlight: number | undefined;
  private failedAt: number | undefined;
  private latest = Number.NEGATIVE_INFINITY;
  private until = Number.NEGATIVE_INFINITY;

  constructor(
    readonly timing: LeaseTiming,
    private readonly emit: (e: LeaseEvent) => void = () => {},
  ) {}

  get state(): LeaseState {
    return this.st;
  }

  /** The generation of the lease held or last held. */
  get generation(): number | undefined {
    return this.rec?.generation;
  }

  /** Our record in the leader key while held (or last held). */
  get record(): LeaderRecord | undefined {
    return this.rec;
  }

  /** The deadline (monotonic ms) while held: the service cannot expire the lease before it. */
  get deadline(): number | undefined {
    return this.st === "held" ? this.dl : undefined;
  }

  /**
   * Until when (monotonic ms, exclusive) output could leave under the lease
   * held or last held: deadline − margin while held; once lost or released,
   * the instant that ended it. For event logs and checkers.
   */
  get releasableUntil(): number {
    return this.st === "held" ? this.dl - this.timing.marginMs : this.until;
  }

  /** The TTL the service granted (0 before the first acquisition). */
  get grantedTtlMs(): number {
    return this.ttlMs;
  }

  /**
   * Whether output may leave now. Why: until deadline − margin nobody else can
   * hold the lease, whatever happened since our last answered renewal.
   */
  mayRelease(now: number): boolean {
    const t = this.clock(now);
    return this.st === "held" && t < this.dl - this.timing.marginMs;
  }

  /** Judges expiry at `now` (call it before acting on a timer). */
  poll(now: number): void {
    const t = this.clock(now);
    if (this.st === "held" && t >= this.dl - this.timing.marginMs) this.lose("expired");
  }

  /** An acquisition starts (from none or lost). */
  beginAcquire(now: number): void {
    this.poll(now);
    if (this.st === "held" || this.st === "acquiring")
      throw new Error(`lease: cannot start an acquisition while ${this.st}`);
    this.st = "acquiring";
  }

  /**
   * The grant sent at `grantSentAt` (TTL `ttlMs`) and the swap that followed
   * it succeeded with `record`. Returns false, and stays not held, when the
   * acquisition took so long that the lease is already past its margin.
   */
  acquired(now: number, grantSentAt: number, ttlMs: number, record: LeaderRecord): boolean {
    const t = this.clock(now);
    if (this.st !== "acquiring") return false;
    if (!(ttlMs > 0) || t >= grantSentAt + ttlMs - this.timing.marginMs) {
      this.st = "none";
      return false;
    }
    this.st = "held";
    this.rec = record;
    this.ttlMs = ttlMs;
    this.dl = grantSentAt + ttlMs;
    this.lastSentAt = grantSentAt;
    this.inFlight = undefined;
    this.failedAt = undefined;
    this.emit({ event: "lease.acquired", generation: record.generation, ttlMs, record });
    return true;
  }

  /** The holder moved the lineage on (`advance`): the record now carries the new generation. */
  advanced(record: LeaderRecord): void {
    if (this.st === "held" && record.nodeId === this.rec?.nodeId) this.rec = record;
  }

  /** The acquisition failed (refused, lost the race, no answer). */
  acquireFailed(): void {
    if (this.st === "acquiring") this.st = "none";
  }

  /** When the next keep-alive should go out (Infinity: none, or one is in flight). */
  renewalDueAt(): number {
    if (this.st !== "held" || this.inFlight !== undefined) return Number.POSITIVE_INFINITY;
    const regular = this.lastSentAt + this.timing.renewEveryMs;
    return this.failedAt === undefined ? regular : Math.min(regular, this.failedAt + this.timing.retryMs);
  }

  /** The next time something is due: a renewal or the end of the lease. */
  nextWake(): number {
    if (this.st !== "held") return Number.POSITIVE_INFINITY;
    return Math.min(this.renewalDueAt(), this.dl - this.timing.marginMs);
  }

  /**
   * A keep-alive goes out now. Returns its send time (the token of its
   * answer), or undefined when the lease is not held (nothing to send).
   */
  renewalSent(now: number): number | undefined {
    this.poll(now);
    if (this.st !== "held") return undefined;
    const t = this.clock(now);
    this.inFlight = t;
    this.lastSentAt = t;
    return t;
  }

  /** The keep-alive sent at `sentAt` was answered with `ttlMs` (0: the lease is gone). */
  renewed(now: number, sentAt: number, ttlMs: number): void {
    if (this.inFlight === sentAt) this.inFlight = undefined;
    // Why first: a late answer must not revive a lease whose margin has passed.
    this.poll(now);
    if (this.st !== "held") return;
    if (!(ttlMs > 0)) {
      this.lose("refused");
      return;
    }
    this.failedAt = undefined;
    this.ttlMs = ttlMs;
    this.dl = Math.max(this.dl, sentAt + ttlMs);
  }

  /** The keep-alive sent at `sentAt` failed or got no answer in time. */
  renewalFailed(now: number, sentAt: number): void {
    if (this.inFlight === sentAt) this.inFlight = undefined;
    this.poll(now);
    if (this.st === "held") this.failedAt = this.clock(now);
  }

  /** The service said the lease is gone (e.g. a swap under it was refused). */
  refused(now: number): void {
    this.poll(now);
    if (this.st === "held") this.lose("refused");
  }

  /** A planned release: output stops now, before the service hears of it. */
  release(now: number): void {
    this.poll(now);
    if (this.st === "held") {
      this.until = Math.min(this.dl - this.timing.marginMs, this.clock(now));
      this.st = "none";
      this.emit({ event: "lease.released", generation: this.rec?.generation ?? 0 });
    } else if (this.st === "acquiring" || this.st === "lost") {
      this.st = "none";
    }
  }

  private lose(reason: LeaseLossReason): void {
    this.until = Math.min(this.dl - this.timing.marginMs, this.latest);
    this.st = "lost";
    this.inFlight = undefined;
    this.emit({ event: "lease.lost", generation: this.rec?.generation ?? 0, reason });
  }

  private clock(now: number): number {
    if (now > this.latest) this.latest = now;
    return this.latest;
  }
}
