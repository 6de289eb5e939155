/**
 * Prometheus metrics (prom-client) on the daemon's own Registry, prefix
 * `remusd_`, base units (seconds, bytes). Histogram buckets are sized for
 * millisecond work, not web latencies. Every bounded label set is exported at
 * zero from the start so dashboards and alerts see the series before the
 * first event.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { METRIC_LABELS } from "./contract.js";
import type { ReplicationEvent } from "./replication/events.js";
import { STATES } from "./states.js";

/** Seconds, from 0.1 ms to 2.5 s: pauses, checkpoint round trips, output release delays. */
export const MS_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];
/** Dirty pages per checkpoint. */
export const PAGE_BUCKETS = [0, 1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000];
/** Seconds, from 50 us to 1 s: heartbeat round trips. */
export const RTT_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
];

/** Seconds, from 10 ms to 10 s: event-loop stalls (a tenth of the default heartbeat interval and up). */
export const STALL_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The output buffer's depth, read at every scrape and by /v1/status. */
export interface NetbufStats {
  /** Frames held until their epoch commits. */
  readonly packets: number;
  readonly bytes: number;
  /** How long the oldest held frame has waited, in ms (0 when empty). */
  readonly oldestAgeMs: number;
}

/** What COLO compared and checkpointed so far (cumulative), read at every scrape. */
export interface ColoStats {
  readonly compared: Readonly<Record<(typeof METRIC_LABELS.coloCompareResult)[number], number>>;
  readonly checkpoints: Readonly<Record<(typeof METRIC_LABELS.coloCheckpointReason)[number], number>>;
}

/** The daemon's metrics on their own Registry, fed by replication events. */
export class Metrics {
  readonly registry = new Registry();
  readonly checkpoints: Counter<"result">;
  readonly pause: Histogram;
  readonly duration: Histogram;
  readonly dirtyPages: Histogram;
  readonly bytes: Counter<"stage">;
  readonly epochCommitted: Gauge;
  readonly netbufPackets: Gauge;
  readonly netbufBytes: Gauge;
  readonly releaseDelay: Histogram;
  readonly failovers: Counter<"reason">;
  readonly peerUp: Gauge;
  readonly rtt: Histogram;
  readonly loopStall: Histogram;
  readonly role: Gauge<"role">;
  readonly lastCheckpoint: Gauge;
  readonly buildInfo: Gauge<"version" | "node">;
  readonly state: Gauge<"state">;
  readonly coloCompared: Counter<"result">;
  readonly coloCheckpoints: Counter<"reason">;
  readonly coloReleaseDelay: Histogram;
  /** With a lease (NODE_METRICS): 1 while held, and the leases lost. */
  leaseHeld: Gauge | undefined;
  leaseLost: Counter | undefined;
  /** Where the netbuf gauges read from at each scrape (the daemon sets it). */
  netbufSource: (() => NetbufStats) | undefined;
  /** Where the COLO counters read from at each scrape (the daemon sets it). */
  coloSource: (() => ColoStats) | undefined;

  constructor(version: string, withDefaults = true) {
    const r = this.registry;
    const self = this;
    const reg = { registers: [r] };
    this.checkpoints = new Counter({
      name: "remusd_checkpoints_total",
      help: "Checkpoints by result: committed (acked), failed (lost with the link), aborted",
      labelNames: ["result"],
      ...reg,
    });
    this.pause = new Histogram({
      name: "remusd_checkpoint_pause_seconds",
      help: "Time the domain was paused to capture a checkpoint",
      buckets: MS_BUCKETS,
      ...reg,
    });
    this.duration = new Histogram({
      name: "remusd_checkpoint_duration_seconds",
      help: "Time from a checkpoint's pause to its acknowledgement",
      buckets: MS_BUCKETS,
      ...reg,
    });
    this.dirtyPages = new Histogram({
      name: "remusd_checkpoint_dirty_pages",
      help: "Dirty pages per checkpoint",
      buckets: PAGE_BUCKETS,
      ...reg,
    });
    this.bytes = new Counter({
      name: "remusd_replication_bytes_total",
      help: "Replicated bytes: raw (pages and blocks before compression) and wire (frames sent)",
      labelNames: ["stage"],
      ...reg,
    });
    this.epochCommitted = new Gauge({
      name: "remusd_epoch_committed",
      help: "Last committed (acknowledged or applied) epoch",
      ...reg,
    });
    this.netbufPackets = new Gauge({
      name: "remusd_netbuf_packets",
      help: "Guest frames held in the output buffer until their epoch commits",
      collect() {
        if (self.netbufSource) this.set(self.netbufSource().packets);
      },
      ...reg,
    });
    this.netbufBytes = new Gauge({
      name: "remusd_netbuf_bytes",
      help: "Bytes held in the output buffer until their epoch commits",
      collect() {
        if (self.netbufSource) this.set(self.netbufSource().bytes);
      },
      ...reg,
    });
    this.releaseDelay = new Histogram({
      name: "remusd_output_release_delay_seconds",
      help: "Time a guest frame was held before release",
      buckets: MS_BUCKETS,
      ...reg,
    });
    this.failovers = new Counter({
      name: "remusd_failovers_total",
      help: "Activations of this daemon as primary, by reason",
      labelNames: ["reason"],
      ...reg,
    });
    this.peerUp = new Gauge({
      name: "remusd_peer_up",
      help: "1 when the replication peer is connected",
      ...reg,
    });
    this.rtt = new Histogram({
      name: "remusd_heartbeat_rtt_seconds",
      help: "Round-trip time of replication heartbeats",
      buckets: RTT_BUCKETS,
      ...reg,
    });
    this.leaseHeld = undefined;
    this.leaseLost = undefined;
    this.loopStall = new Histogram({
      name: "remusd_loop_stall_seconds",
      help: "Stalls of the daemon's loop longer than a tenth of the heartbeat interval, by length (they do not count as the peer's silence)",
      buckets: STALL_BUCKETS,
      ...reg,
    });
    this.role = new Gauge({
      name: "remusd_role",
      help: "1 for the daemon's current role",
      labelNames: ["role"],
      ...reg,
    });
    this.lastCheckpoint = new Gauge({
      name: "remusd_last_checkpoint_timestamp_seconds",
      help: "Unix time of the last committed (primary) or applied (backup) checkpoint",
      ...reg,
    });
    this.buildInfo = new Gauge({
      name: "remusd_build_info",
      help: "Build information; the value is 1",
      labelNames: ["version", "node"],
      ...reg,
    });
    this.state = new Gauge({
      name: "remusd_state",
      help: "1 for the daemon's current state (protected, unprotected, syncing, standby, ...)",
      labelNames: ["state"],
      ...reg,
    });
    // Counters fed from cumulative counts: each scrape adds what happened since the last one.
    const seen = new Map<string, number>();
    const catchUp = (c: Counter<string>, label: string, key: string, total: number): void => {
      const k = `${label}:${key}`;
      const d = total - (seen.get(k) ?? 0);
      if (d > 0) c.inc({ [label]: key }, d);
      seen.set(k, total);
    };
    this.coloCompared = new Counter({
      name: "remusd_colo_compared_packets_total",
      help: "COLO: the primary's output frames by comparison result (match: released as the secondary produced the same; mismatch; timeout: held past the comparator's timeout)",
      labelNames: ["result"],
      collect() {
        const s = self.coloSource?.();
        if (s) for (const r of METRIC_LABELS.coloCompareResult) catchUp(this, "result", r, s.compared[r]);
      },
      ...reg,
    });
    this.coloCheckpoints = new Counter({
      name: "remusd_colo_checkpoints_total",
      help: "COLO: checkpoints taken, by reason (mismatch, timeout, periodic, queue_full, requested)",
      labelNames: ["reason"],
      collect() {
        const s = self.coloSource?.();
        if (s)
          for (const r of METRIC_LABELS.coloCheckpointReason) catchUp(this, "reason", r, s.checkpoints[r]);
      },
      ...reg,
    });
    this.coloReleaseDelay = new Histogram({
      name: "remusd_colo_release_delay_seconds",
      help: "COLO: how long a frame of the primary's output waited for the secondary's twin before release",
      buckets: MS_BUCKETS,
      ...reg,
    });
    for (const result of METRIC_LABELS.coloCompareResult) this.coloCompared.inc({ result }, 0);
    for (const reason of METRIC_LABELS.coloCheckpointReason) this.coloCheckpoints.inc({ reason }, 0);
    this.buildInfo.set({ version, node: process.version }, 1);
    for (const result of METRIC_LABELS.checkpointResult) this.checkpoints.inc({ result }, 0);
    for (const stage of METRIC_LABELS.replicationStage) this.bytes.inc({ stage }, 0);
    for (const reason of METRIC_LABELS.failoverReason) this.failovers.inc({ reason }, 0);
    for (const role of METRIC_LABELS.role) this.role.set({ role }, 0);
    for (const state of STATES) this.state.set({ state }, 0);
    this.netbufPackets.set(0);
    this.netbufBytes.set(0);
    this.peerUp.set(0);
    this.epochCommitted.set(0);
    this.lastCheckpoint.set(0);
    // Unprefixed (process_cpu_seconds_total, nodejs_heap_size_used_bytes, ...): the names
    // that standard Node.js dashboards and alerts expect.
    if (withDefaults) collectDefaultMetrics({ register: r });
  }

  setRole(role: "primary" | "backup"): void {
    for (const r of METRIC_LABELS.role) this.role.set({ role: r }, r === role ? 1 : 0);
  }

  setState(state: string): void {
    for (const s of STATES) this.state.set({ state: s }, s === state ? 1 : 0);
  }

  /** Updates the metrics from a replication event. */
  onEvent(e: ReplicationEvent): void {
    switch (e.type) {
      case "checkpoint.committed":
        this.checkpoints.inc({ result: "committed" });
        this.pause.observe(e.pauseMs / 1000);
        this.duration.observe(e.durationMs / 1000);
        this.dirtyPages.observe(e.dirtyPages);
        this.epochCommitted.set(e.epoch);
        this.lastCheckpoint.set(Date.now() / 1000);
        return;
      case "checkpoint.failed":
        this.checkpoints.inc({ result: "failed" });
        return;
      case "checkpoint.discarded":
        this.checkpoints.inc({ result: "aborted" });
        return;
      case "checkpoint.applied":
        this.checkpoints.inc({ result: "committed" });
        this.dirtyPages.observe(e.pages);
        this.epochCommitted.set(e.epoch);
        this.lastCheckpoint.set(Date.now() / 1000);
        return;
      case "replication.bytes":
        this.bytes.inc({ stage: "raw" }, e.raw);
        this.bytes.inc({ stage: "wire" }, e.wire);
        return;
      case "peer.connected":
        this.peerUp.set(1);
        return;
      case "peer.lost":
        this.peerUp.set(0);
        return;
      case "heartbeat.rtt":
        this.rtt.observe(e.ms / 1000);
        return;
      case "failover.activated":
        this.failovers.inc({ reason: e.reason });
        this.epochCommitted.set(e.epoch);
        return;
      case "state.changed":
        this.setState(e.to);
        return;
      default:
        return;
    }
  }

  async exposition(): Promise<string> {
    return this.registry.metrics();
  }

  /** Registers the lease metrics of NODE_METRICS (a daemon with a lease). */
  enableLease(): void {
    if (this.leaseHeld) return;
    const reg = { registers: [this.registry] };
    this.leaseHeld = new Gauge({
      name: "remusd_lease_held",
      help: "1 while this node holds the domain's lease (its output may leave)",
      ...reg,
    });
    this.leaseLost = new Counter({
      name: "remusd_lease_lost_total",
      help: "Leases this node lost: not renewed before the deadline, or refused by the service",
      ...reg,
    });
  }
}
