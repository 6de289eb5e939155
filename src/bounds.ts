/**
 * Bounds and defaults of the settings that both the command line (the option specs)
 * and the control API (PATCH /v1/config, src/api/schemas.ts) accept, so the two
 * validate alike.
 */

/** The range and default of one numeric setting. */
export interface Bound {
  readonly min: number;
  readonly max: number;
  readonly default: number;
}

/** Checkpoint interval (epoch length) in ms: `--interval-ms`, `intervalMs`. */
export const INTERVAL_MS: Bound = { min: 1, max: 60_000, default: 25 };
/** Heartbeat interval in ms: `--heartbeat-ms`, `heartbeat.intervalMs`. */
export const HEARTBEAT_MS: Bound = { min: 5, max: 60_000, default: 100 };
/** Heartbeats missed before the peer counts as lost: `--heartbeat-misses`, `heartbeat.misses`. */
export const HEARTBEAT_MISSES: Bound = { min: 2, max: 1000, default: 10 };
