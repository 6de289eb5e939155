/**
 * GET /v1/status and GET /v1/config: what the daemon and its replication
 * machine report, in the shapes of `schemas.ts`; PATCH /v1/config.
 */
import type { Daemon } from "../daemon/daemon.js";
import { configSummary } from "../domain/config.js";
import type { HeartbeatConfig } from "../replication/heartbeat.js";
import { VERSION } from "../version.js";
import type { Config, ConfigPatch, Status } from "./schemas.js";

const msAgo = (now: number, t: number | undefined): number | null =>
  t === undefined ? null : Math.round(now - t);

/** How the daemon is fenced, and its lease. */
function fencingOf(d: Daemon, now: number): Pick<Status, "fencing" | "lease"> {
  const l = d.lease;
  if (!l) return { fencing: "generation-only", lease: null };
  const deadline = l.deadline;
  return {
    fencing: "lease",
    lease: {
      state: l.state,
      generation: l.generation ?? null,
      holder: l.holder ?? null,
      deadlineInMs: deadline === undefined ? null : Math.round(deadline - now),
      ttlMs: l.core.grantedTtlMs,
      marginMs: l.core.timing.marginMs,
    },
  };
}

/** The full status of a daemon (DESIGN.md Part 1: `role`, `state`, `epoch.committed`, `peer.connected`, ...). */
export function statusOf(d: Daemon): Status {
  const now = performance.now();
  const netbuf = d.netbufStats();
  const digest = d.lastDigest
    ? { digestEpoch: d.lastDigest.epoch, digest: d.lastDigest.digest }
    : { digestEpoch: null, digest: null };
  const common = {
    version: VERSION,
    intervalMs: d.primary?.config.intervalMs ?? d.runtime.intervalMs,
    lastCheckpoint: d.lastCheckpoint ?? null,
    netbuf: {
      packets: netbuf.packets,
      bytes: netbuf.bytes,
      oldestAgeMs: netbuf.oldestAgeMs,
      outputCommit: d.node.dev.outputCommit,
      holding: d.node.dev.outputCommit && (d.primary?.outputMustWait ?? false),
      attached: d.net.attached,
    },
    lastRoleChange: d.lastRoleChange,
    pid: process.pid,
    mode: d.node.mode,
    colo: coloOf(d),
    ...fencingOf(d, now),
  };
  const cfg = d.node.domainConfig;
  const geometry = {
    pages: d.domain.pages,
    pageSize: 4096,
    diskBlocks: d.domain.disk.blocks,
    generationId: d.domain.device.generationId.toString("hex"),
    config: cfg ? configSummary(cfg) : null,
  };
  if (d.primary) {
    const s = d.primary.status();
    return {
      role: "primary",
      state: s.state,
      generation: s.generation,
      epoch: { current: s.epoch, committed: s.committed },
      peer: {
        connected: s.peerConnected,
        lastSeenMsAgo: msAgo(now, s.peerLastSeen),
        heartbeatRttMs: s.heartbeatRttMs ?? null,
      },
      // Disk writes stream as they happen and belong to the open epoch.
      disk: { epoch: s.epoch, pendingWrites: s.diskPendingBlocks },
      domain: { ...geometry, imageValid: true, running: s.running, ...digest },
      lastStateChange: s.lastChange,
      ...common,
    };
  }
  const b = d.backup;
  if (!b) throw new Error("the daemon has no replication machine (not started)");
  const s = b.status();
  const current = s.stagingEpoch ?? s.committed;
  return {
    role: "backup",
    state: s.state,
    generation: s.generation,
    epoch: { current, committed: s.committed },
    peer: {
      connected: s.peerConnected,
      lastSeenMsAgo: msAgo(now, s.peerLastSeen),
      heartbeatRttMs: s.heartbeatRttMs ?? null,
    },
    disk: { epoch: current, pendingWrites: s.stagedDiskWrites },
    domain: { ...geometry, imageValid: s.imageValid, running: false, ...digest },
    lastStateChange: s.lastChange,
    ...common,
  };
}

/** COLO mode's counts and divergence rate (null in Remus mode). */
function coloOf(d: Daemon): Status["colo"] {
  if (d.node.mode !== "colo") return null;
  const c = d.node.coloCounts();
  const r = d.node.coloDivergence();
  const rw = d.node.coloSecondary?.rewriter ?? d.node.coloEdge;
  return {
    rewriter: rw
      ? {
          connections: rw.size,
          offsets: rw.entries().filter((e) => e.learned && e.delta !== 0).length,
          failedOver: rw.failedOver,
        }
      : null,
    compared: c.compared,
    checkpoints: c.checkpoints,
    divergencePerSecond: r.checkpointsPerSecond,
    mismatchRatio: r.mismatchRatio,
  };
}

/** The run-time configuration as set (flags, then PATCH). */
export function configOf(d: Daemon): Config {
  const r = d.runtime;
  return {
    intervalMs: r.intervalMs,
    compress: r.compress,
    heartbeat: { intervalMs: r.heartbeat.intervalMs, misses: r.heartbeat.misses },
    peer: d.peerUrl ?? null,
    pending: d.primary?.pendingConfig !== undefined,
  };
}

/**
 * PATCH /v1/config (already validated against the CLI's bounds). On a primary
 * the interval and compression take effect when the open epoch ends; on a
 * backup they are kept and apply when it becomes primary. Heartbeat settings
 * apply at once, to the live link too.
 */
export function applyConfig(d: Daemon, patch: ConfigPatch): Config {
  const r = d.runtime;
  const change: { intervalMs?: number; compress?: boolean; heartbeat?: HeartbeatConfig } = {};
  if (patch.intervalMs !== undefined) change.intervalMs = patch.intervalMs;
  if (patch.compress !== undefined) change.compress = patch.compress;
  if (patch.heartbeat && (patch.heartbeat.intervalMs !== undefined || patch.heartbeat.misses !== undefined)) {
    // A new object: the old one may be shared with the settings and with connections.
    change.heartbeat = {
      intervalMs: patch.heartbeat.intervalMs ?? r.heartbeat.intervalMs,
      misses: patch.heartbeat.misses ?? r.heartbeat.misses,
    };
  }
  d.node.reconfigure(change);
  if (patch.peer !== undefined) d.setPeer(patch.peer);
  const now = configOf(d);
  d.log.info({ change: patch, config: now }, "configuration changed");
  return now;
}
