/**
 * The external contract of DESIGN.md Part 1 in one place: default ports, the
 * control API's routes and the metric names. The daemon, remusctl, the deploy
 * files' tests and the docs all read from here, so they cannot drift apart.
 */

/** Default ports. Replication and control are TCP; the vswitch is UDP. */
export const DEFAULT_PORTS = {
  replication: 7780,
  control: 7781,
  vswitch: 7790,
} as const;

export const DEFAULT_LISTEN = `0.0.0.0:${DEFAULT_PORTS.replication}`;
export const DEFAULT_CONTROL = `127.0.0.1:${DEFAULT_PORTS.control}`;

/** Routes of the control API. `mutating` routes need the bearer token. */
export const ROUTES = [
  { method: "GET", url: "/v1/status", mutating: false },
  { method: "POST", url: "/v1/failover", mutating: true },
  { method: "POST", url: "/v1/checkpoint", mutating: true },
  { method: "GET", url: "/v1/config", mutating: false },
  { method: "PATCH", url: "/v1/config", mutating: true },
  { method: "GET", url: "/v1/domain/digest", mutating: false },
  { method: "GET", url: "/v1/domain/processes", mutating: false },
  { method: "GET", url: "/v1/domain/counter", mutating: false },
  { method: "GET", url: "/metrics", mutating: false },
  { method: "GET", url: "/healthz", mutating: false },
  { method: "GET", url: "/readyz", mutating: false },
  { method: "GET", url: "/docs", mutating: false },
  { method: "GET", url: "/v1/events", mutating: false },
  { method: "POST", url: "/v1/faults/crash", mutating: true },
  { method: "POST", url: "/v1/faults/stall", mutating: true },
  { method: "POST", url: "/v1/faults/link-cut", mutating: true },
] as const;

/** The fault-injection routes: refused (403) unless the daemon runs with --allow-fault-injection. */
export const FAULT_KINDS = ["crash", "stall", "link-cut"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const HEALTH_PATH = "/healthz";
export const READY_PATH = "/readyz";
export const METRICS_PATH = "/metrics";

/** Required metrics (DESIGN.md Part 1) and their Prometheus types. */
export const METRICS = {
  remusd_checkpoints_total: "counter",
  remusd_checkpoint_pause_seconds: "histogram",
  remusd_checkpoint_duration_seconds: "histogram",
  remusd_checkpoint_dirty_pages: "histogram",
  remusd_replication_bytes_total: "counter",
  remusd_epoch_committed: "gauge",
  remusd_netbuf_packets: "gauge",
  remusd_netbuf_bytes: "gauge",
  remusd_output_release_delay_seconds: "histogram",
  remusd_failovers_total: "counter",
  remusd_peer_up: "gauge",
  remusd_heartbeat_rtt_seconds: "histogram",
  remusd_role: "gauge",
  remusd_last_checkpoint_timestamp_seconds: "gauge",
  remusd_build_info: "gauge",
  remusd_colo_compared_packets_total: "counter",
  remusd_colo_checkpoints_total: "counter",
  remusd_colo_release_delay_seconds: "histogram",
} as const;

/**
 * Metrics of `remusd node` with a lease (DESIGN.md "Fencing and roles"),
 * registered by the node; the alert rules of deploy/ use them.
 * remusd_lease_held: 1 while this node holds the domain's lease;
 * remusd_lease_lost_total: leases this node lost (not renewed in time, or
 * refused); remusd_loop_stall_seconds: each event-loop stall longer than a
 * tenth of the heartbeat interval, by its length.
 */
export const NODE_METRICS = {
  remusd_lease_held: "gauge",
  remusd_lease_lost_total: "counter",
  remusd_loop_stall_seconds: "histogram",
} as const;

/** Label values of the bounded label sets, exported at zero from the start. */
export const METRIC_LABELS = {
  checkpointResult: ["committed", "failed", "aborted"],
  replicationStage: ["raw", "wire"],
  failoverReason: ["peer_lost", "heartbeat_timeout", "manual", "planned"],
  role: ["primary", "backup"],
  coloCompareResult: ["match", "mismatch", "timeout"],
  coloCheckpointReason: ["mismatch", "timeout", "periodic", "queue_full", "requested"],
} as const;

/** Event names that DESIGN.md Part 1 requires in the event log. */
export const REQUIRED_EVENTS = [
  "peer.connected",
  "peer.lost",
  "checkpoint.sent",
  "checkpoint.committed",
  "checkpoint.applied",
  "failover.activated",
  "role.changed",
] as const;

/** Every event name the daemon writes to its event log: the required ones and the rest. */
export const EVENTS = [
  ...REQUIRED_EVENTS,
  "peer.refused",
  "state.changed",
  "sync.started",
  "sync.completed",
  "checkpoint.failed",
  "checkpoint.discarded",
  "failover.impossible",
  "fenced",
  "daemon.stopped",
  "fault.injected",
  "output.resumed",
  "domain.config",
  "config.conflict",
  "rewind.refused",
] as const;
