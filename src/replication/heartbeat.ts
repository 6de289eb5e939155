/**
 * The replication link's heartbeat: a small state machine with an injected
 * clock. Each side pings every `intervalMs`; the peer echoes the ping, which
 * gives a round-trip time. Any valid frame from the peer counts as a sign of
 * life; the peer is lost when nothing valid arrived for `intervalMs * misses`.
 */

export interface HeartbeatConfig {
  readonly intervalMs: number;
  readonly misses: number;
}

export const DEFAULT_HEARTBEAT: HeartbeatConfig = { intervalMs: 100, misses: 10 };

export class Heartbeat {
  private lastHeard: number;
  private lastSent: number;
  private nextPingId = 1;
  /** Round-trip time of the last answered ping, in ms. */
  lastRttMs: number | undefined;

  constructor(
    public config: HeartbeatConfig,
    now: number,
  ) {
    this.lastHeard = now;
    this.lastSent = Number.NEGATIVE_INFINITY;
  }

  /** Something valid arrived from the peer. */
  heard(now: number): void {
    this.lastHeard = Math.max(this.lastHeard, now);
  }

  /**
   * The node itself was stalled for `ms` up to `now`: that time is not the
   * peer's silence (a frozen node hears nothing, whoever is alive).
   */
  credit(ms: number, now: number): void {
    this.lastHeard = Math.min(now, this.lastHeard + ms);
  }

  get lastHeardAt(): number {
    return this.lastHeard;
  }

  /** Whether a ping is due now. */
  due(now: number): boolean {
    return now - this.lastSent >= this.config.intervalMs;
  }

  /** Takes the next ping to send and notes the time. */
  ping(now: number): { pingId: number; sentAtUs: number } {
    this.lastSent = now;
    const pingId = this.nextPingId;
    this.nextPingId = (this.nextPingId + 1) >>> 0 || 1;
    return { pingId, sentAtUs: Math.max(0, Math.round(now * 1000)) };
  }

  /** The peer echoed a ping sent at `sentAtUs`; returns the RTT in ms (undefined if nonsensical). */
  reply(sentAtUs: number, now: number): number | undefined {
    const rtt = now - sentAtUs / 1000;
    if (!(rtt >= 0) || rtt > 3_600_000) return undefined;
    this.lastRttMs = rtt;
    return rtt;
  }

  /** True when nothing valid arrived for `intervalMs * misses`. */
  expired(now: number): boolean {
    return now - this.lastHeard > this.config.intervalMs * this.config.misses;
  }

  /** The next time `poll` has something to do (a ping or the expiry). */
  nextDeadline(): number {
    return Math.min(
      this.lastSent + this.config.intervalMs,
      this.lastHeard + this.config.intervalMs * this.config.misses,
    );
  }
}
