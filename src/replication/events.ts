/**
 * What the replication state machines report. The daemon turns these into the
 * event log (DESIGN.md Part 1), metrics and log lines; tests read them directly.
 */

import type { BackupStateName, PrimaryStateName } from "../states.js";

export type { BackupStateName, PrimaryStateName };
/** How a sync brings the backup's image up to date: every page, what changed since its image, or a rewind (rewind.ts). */
export type SyncMode = "full" | "incremental" | "rewind";
export type FailoverReason = "peer_lost" | "heartbeat_timeout" | "manual" | "planned";

export type ReplicationEvent =
  | { type: "peer.connected"; remote: string; peerNode: string; peerGeneration: number }
  | { type: "peer.lost"; reason: string; planned: boolean }
  | { type: "peer.refused"; remote: string; reason: string }
  | { type: "state.changed"; from: string; to: string; reason: string }
  | { type: "sync.started"; epoch: number; mode: SyncMode; pages: number }
  | { type: "sync.completed"; epoch: number; mode: SyncMode; durationMs: number }
  /** A primary refused a former primary's offer to be rewound (it syncs it in full instead). */
  | { type: "rewind.refused"; reason: string }
  /** The primary sends again, from live memory, the pages written during the sync so far. */
  | { type: "sync.round"; epoch: number; round: number; pages: number }
  | {
      type: "checkpoint.sent";
      epoch: number;
      dirtyPages: number;
      diskWrites: number;
      pauseMs: number;
      sync: boolean;
      final: boolean;
      digest?: string;
    }
  | {
      type: "checkpoint.committed";
      epoch: number;
      dirtyPages: number;
      pauseMs: number;
      durationMs: number;
      wireBytes: number;
      rawBytes: number;
    }
  | { type: "checkpoint.failed"; epoch: number; reason: string }
  | {
      type: "checkpoint.applied";
      epoch: number;
      pages: number;
      diskWrites: number;
      applyMs: number;
      digest?: string;
    }
  | { type: "checkpoint.discarded"; epoch: number; reason: string }
  | { type: "failover.activated"; epoch: number; digest: string; reason: FailoverReason; generation: number }
  | { type: "failover.impossible"; reason: string }
  | { type: "heartbeat.rtt"; ms: number }
  | { type: "fenced"; reason: string; peerGeneration: number }
  | { type: "replication.bytes"; raw: number; wire: number }
  /** A backup took its primary's domain configuration (DOMAIN_CONFIG); `reshaped`: its memory and disk were resized for it. */
  | {
      type: "domain.config";
      memoryMiB: number;
      diskMiB: number;
      intervalMs: number;
      guestMac: string;
      guestIp: string;
      workload: string;
      reshaped: boolean;
    }
  /** The primary's DOMAIN_CONFIG contradicts a setting this backup was given (or its image): nothing changed. */
  | {
      type: "config.conflict";
      message: string;
      conflicts: { option: string; local: string; stream: string }[];
    };

export type EventSink = (e: ReplicationEvent) => void;
