/**
 * What a drill measured, and the pure computations behind it: latency
 * percentiles over a window of requests, the timeline's bins, and the
 * difference of the checking client's counters between two instants.
 */
import { percentile } from "../bench/stats.js";
import type { KvLoadSummary } from "../client/kvload.js";
import type { Samples } from "./clients.js";
import type { DrillFault } from "./plan.js";

/** Request latency over a set of requests. */
export interface LatencyStats {
  readonly requests: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** Latency stats of the requests for which `keep(sentAt, doneAt)` holds. */
export function latencyStats(s: Samples, keep: (sent: number, done: number) => boolean): LatencyStats {
  const lat: number[] = [];
  for (let i = 0; i < s.sent.length; i++) {
    const sent = s.sent[i] as number;
    const l = s.latency[i] as number;
    if (keep(sent, sent + l)) lat.push(l);
  }
  if (lat.length === 0) return { requests: 0, p50Ms: null, p99Ms: null, maxMs: null };
  return {
    requests: lat.length,
    p50Ms: round(percentile(lat, 50)),
    p99Ms: round(percentile(lat, 99)),
    maxMs: round(Math.max(...lat)),
  };
}

/** One bin of the timeline: replies completed in it (per second), and latency of requests sent in it. */
export interface TimelineBin {
  /** Start of the bin, ms after the drill's start. */
  readonly t: number;
  readonly repliesPerSec: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
}

/** The timeline from `start` to `end` (wall ms) in bins of `binMs`. */
export function timeline(s: Samples, start: number, end: number, binMs: number): TimelineBin[] {
  const n = Math.max(1, Math.ceil((end - start) / binMs));
  const done = new Array<number>(n).fill(0);
  const lat: number[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < s.sent.length; i++) {
    const sent = s.sent[i] as number;
    const l = s.latency[i] as number;
    const a = Math.floor((sent - start) / binMs);
    const b = Math.floor((sent + l - start) / binMs);
    if (a >= 0 && a < n) (lat[a] as number[]).push(l);
    if (b >= 0 && b < n) done[b] = (done[b] as number) + 1;
  }
  return done.map((d, i) => {
    const l = lat[i] as number[];
    return {
      t: i * binMs,
      repliesPerSec: round((d * 1000) / binMs, 0),
      p50Ms: l.length ? round(percentile(l, 50)) : null,
      p99Ms: l.length ? round(percentile(l, 99)) : null,
      maxMs: l.length ? round(Math.max(...l)) : null,
    };
  });
}

/** A bin width that keeps the timeline to at most `maxBins` bins (a multiple of 100 ms). */
export function binWidth(durationMs: number, maxBins = 600): number {
  return Math.max(100, Math.ceil(durationMs / maxBins / 100) * 100);
}

/** What the checking client counted between two instants. */
export interface ClientDelta {
  readonly requests: number;
  readonly replies: number;
  readonly resets: number;
  readonly wrongReads: number;
  readonly protocolErrors: number;
  readonly lostWrites: number;
  readonly verifiedKeys: number;
  /** The client's error messages that came in between. */
  readonly errors: string[];
}

export function clientDelta(a: KvLoadSummary, b: KvLoadSummary): ClientDelta {
  return {
    requests: b.requests - a.requests,
    replies: b.replies - a.replies,
    resets: b.resets - a.resets,
    wrongReads: b.wrongReads - a.wrongReads,
    protocolErrors: b.protocolErrors - a.protocolErrors,
    lostWrites: b.lostWrites - a.lostWrites,
    verifiedKeys: b.verifiedKeys - a.verifiedKeys,
    errors: b.errors.slice(a.errors.length),
  };
}

/** What became of the old primary after the backup activated. */
export type OldPrimaryFate =
  /** Its process is gone (SIGKILL, crash). */
  | "gone"
  /** It met the newer generation and stopped its domain. */
  | "fenced"
  /** It stopped its domain itself (a planned switchover). */
  | "stopped"
  /** It still ran its domain as a primary when the drill stopped waiting: two primaries. */
  | "running"
  /** It did not answer (still stalled, or cut off) when the drill stopped waiting. */
  | "silent"
  /** It came back as a backup of the new primary by itself (a self-healing pair). */
  | "rejoined";

/** One rehearsed failover. Times are ms after the fault unless named otherwise; null: not observed. */
export interface FailoverRecord {
  readonly index: number;
  readonly fault: DrillFault;
  /** Stall or link-cut duration. */
  readonly faultMs: number | null;
  /** The sides: the primary before and after. */
  readonly from: string;
  readonly to: string;
  /** When the fault was injected, ms after the drill's start. */
  readonly at: number;
  /** The old primary's last committed epoch before the fault. */
  readonly committedBefore: number | null;
  readonly activated: boolean;
  /** Why the backup activated (peer_lost, heartbeat_timeout, manual, planned). */
  readonly reason: string | null;
  /** The epoch the new primary resumed from. */
  readonly resumedEpoch: number | null;
  /** The backup saw the primary go (its peer.lost). */
  readonly detectionMs: number | null;
  /** The backup activated (failover.activated). */
  readonly activationMs: number | null;
  /** The new primary released its first guest frame (output.resumed). */
  readonly firstOutputMs: number | null;
  /** The checking client's first reply after the activation. */
  readonly firstReplyMs: number | null;
  /** Latency of the requests in flight across the event (from the fault to 1 s after the activation). */
  readonly stall: LatencyStats;
  /** Latency in the protected steady state just before the fault. */
  readonly baseline: LatencyStats;
  /** What the checking client counted from this fault to the next (its audit included). */
  readonly client: ClientDelta | null;
  /** The user's command: error lines and exits from this fault to the next. */
  readonly commandErrors: number;
  readonly oldPrimary: OldPrimaryFate | null;
  /**
   * The old primary went `unprotected` after the fault (its held output released, new output sent at once)
   * while the backup activated: ms after the fault, and for how long (null: not fenced or stopped yet).
   */
  readonly oldPrimaryUnprotected: { readonly afterMs: number; readonly forMs: number | null } | null;
  /** Re-protected: from the fault to the new primary reporting `protected`. */
  readonly protectedMs: number | null;
  /** The full resync of the new backup: its duration and bytes on the wire (sync.completed). */
  readonly resyncMs: number | null;
  readonly resyncBytes: number | null;
  /** What went wrong; empty when the failover passed. */
  readonly problems: string[];
  readonly ok: boolean;
}

/** The whole drill, as `--json` writes it. */
export interface DrillReport {
  readonly tool: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly pair: string;
  readonly settings: Record<string, unknown>;
  readonly failovers: FailoverRecord[];
  readonly totals: {
    readonly failovers: number;
    readonly passed: number;
    readonly lostWrites: number;
    readonly resets: number;
    readonly wrongReads: number;
    readonly errors: number;
    readonly maxStallMs: number | null;
    readonly medianActivationMs: number | null;
  };
  /** The checking client over the whole drill (null when it did not run). */
  readonly client: (KvLoadSummary & { readonly finished: boolean }) | null;
  readonly command: {
    readonly command: string;
    readonly runs: number;
    readonly exits: number;
    readonly errorLines: string[];
    readonly rates: { t: number; rps: number; avgMs: number }[];
  } | null;
  readonly timeline: { readonly binMs: number; readonly bins: TimelineBin[] };
  readonly problems: string[];
  readonly ok: boolean;
}
