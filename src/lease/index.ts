/**
 * The lease that guards a primary's output (DESIGN.md "Fencing and roles"):
 * spec.ts parses `--lease` and the timing, core.ts is the sans-IO state
 * machine, lease.ts drives it against a LeaseService (service.ts), which is
 * etcd (etcd.ts) in the daemon and memory.ts in simulations.
 */
import { EtcdLeaseService } from "./etcd.js";
import type { LeaseService } from "./service.js";
import type { LeaseSpec, LeaseTiming } from "./spec.js";

export { LEASE_STATES, LeaseCore, type LeaseEvent, type LeaseLossReason, type LeaseState } from "./core.js";
export { EtcdLeaseService, leaseKeys } from "./etcd.js";
export { Lease, type LeaseClock, type LeaseOptions, realClock } from "./lease.js";
export { MemoryLeaseStore, type Scheduler, type StoreEntry } from "./memory.js";
export type { Candidate, LeaderRecord } from "./record.js";
export * from "./service.js";
export * from "./spec.js";

/** The service behind a `--lease` spec: an etcd client, or undefined for `none`. */
export function leaseServiceFor(spec: LeaseSpec, timing: LeaseTiming): LeaseService | undefined {
  return spec.kind === "etcd"
    ? new EtcdLeaseService(spec, { requestTimeoutMs: timing.requestTimeoutMs })
    : undefined;
}
