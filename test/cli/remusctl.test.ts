import assert from "node:assert/strict";
import { test } from "node:test";
import { parseExposition } from "../../src/api/promtext.js";
import type { Status } from "../../src/api/schemas.js";
import { configPatchOf, formatStatus, watchSample } from "../../src/cli/remusctl.js";
import { isRemusError } from "../../src/errors.js";

test("config set: KEY=VALUE arguments become one PATCH body", () => {
  assert.deepEqual(
    configPatchOf(["interval-ms=40", "compress=off", "heartbeat-ms=80", "heartbeat-misses=12"]),
    {
      intervalMs: 40,
      compress: false,
      heartbeat: { intervalMs: 80, misses: 12 },
    },
  );
  assert.deepEqual(configPatchOf(["heartbeat.misses=3", "compress=yes"]), {
    heartbeat: { misses: 3 },
    compress: true,
  });
  for (const bad of [
    [],
    ["interval-ms"],
    ["interval-ms=4.5"],
    ["interval-ms="],
    ["compress=maybe"],
    ["colour=blue"],
  ]) {
    assert.throws(
      () => configPatchOf(bad),
      (e) => isRemusError(e, "REMUSD_ERR_BAD_USAGE"),
      JSON.stringify(bad),
    );
  }
});

const expo = (committed: number, wire: number, raw: number, pauseBuckets: [number, number, number]) =>
  parseExposition(`# TYPE remusd_checkpoints_total counter
remusd_checkpoints_total{result="committed"} ${committed}
remusd_checkpoints_total{result="failed"} 1
remusd_replication_bytes_total{stage="raw"} ${raw}
remusd_replication_bytes_total{stage="wire"} ${wire}
remusd_checkpoint_pause_seconds_bucket{le="0.001"} ${pauseBuckets[0]}
remusd_checkpoint_pause_seconds_bucket{le="0.002"} ${pauseBuckets[1]}
remusd_checkpoint_pause_seconds_bucket{le="+Inf"} ${pauseBuckets[2]}
remusd_checkpoint_dirty_pages_sum ${committed * 10}
remusd_checkpoint_dirty_pages_count ${committed}
remusd_epoch_committed ${committed}
remusd_netbuf_packets 4
remusd_netbuf_bytes 400
remusd_peer_up 1
`);

const status = { role: "primary", state: "protected" } as Status;

test("watch: rates and percentiles come from the difference of two scrapes", () => {
  const a = expo(100, 1_000_000, 3_000_000, [50, 100, 100]);
  const b = expo(140, 3_000_000, 5_000_000, [50, 140, 140]);
  const first = watchSample(a, undefined, 0, status);
  assert.equal(first.checkpointsPerSecond, null);
  assert.equal(first.wireMBps, null);
  const w = watchSample(b, a, 2, status);
  assert.equal(w.epoch, 140);
  assert.equal(w.checkpointsPerSecond, 20);
  assert.equal(w.wireMBps, 1);
  assert.equal(w.compressionRatio, 1);
  assert.equal(w.dirtyPagesPerCheckpoint, 10);
  // All 40 new pauses fell in (1 ms, 2 ms]: p50 is its middle, p99 near its top.
  assert.equal(w.pauseP50Ms, 1.5);
  assert.ok(w.pauseP99Ms !== null && Math.abs(w.pauseP99Ms - 1.99) < 1e-9);
  assert.equal(w.netbufPackets, 4);
  assert.equal(w.peerUp, true);
  // No checkpoint between the scrapes: no percentile rather than a stale one.
  const idle = watchSample(b, b, 1, status);
  assert.equal(idle.pauseP50Ms, null);
  assert.equal(idle.checkpointsPerSecond, 0);
  assert.equal(idle.compressionRatio, null);
});

test("status: the readable summary names every part of the status", () => {
  const s: Status = {
    role: "backup",
    state: "standby",
    generation: 3,
    version: "0.1.0",
    pid: 4242,
    fencing: "generation-only",
    lease: null,
    epoch: { current: 11, committed: 10 },
    intervalMs: 25,
    lastCheckpoint: {
      epoch: 10,
      at: new Date().toISOString(),
      dirtyPages: 7,
      diskWrites: 2,
      pauseMs: null,
      durationMs: null,
      wireBytes: null,
      applyMs: 0.2,
    },
    peer: { connected: true, lastSeenMsAgo: 3, heartbeatRttMs: 0.4 },
    netbuf: { packets: 0, bytes: 0, oldestAgeMs: 0, outputCommit: true, holding: false, attached: false },
    disk: { epoch: 11, pendingWrites: 1 },
    domain: {
      pages: 256,
      pageSize: 4096,
      diskBlocks: 64,
      imageValid: true,
      running: false,
      digestEpoch: 10,
      digest: "ab".repeat(16),
      generationId: "5a".repeat(16),
      config: {
        memoryMiB: 1,
        diskMiB: 0.25,
        intervalMs: 25,
        guestMac: "02:00:00:00:00:10",
        guestIp: "10.0.0.10",
        workload: "web",
      },
    },
    lastRoleChange: { from: null, to: "backup", reason: "started", at: new Date().toISOString() },
    lastStateChange: "synced at epoch 1",
    mode: "colo",
    colo: {
      compared: { match: 900, mismatch: 3, timeout: 1 },
      checkpoints: { mismatch: 3, timeout: 1, periodic: 2, queue_full: 0, requested: 0 },
      divergencePerSecond: 0.25,
      mismatchRatio: 3 / 903,
      rewriter: { connections: 8, offsets: 8, failedOver: false },
    },
  };
  const text = formatStatus(s);
  for (const part of [
    "backup, standby, generation 3",
    "generation only",
    "10 committed",
    "epoch 10",
    "7 dirty pages",
    "connected",
    "netbuf",
    "1 pending writes",
    "256 pages",
    "abababab",
    "started",
    "synced at epoch 1",
    "colo: 900 frames matched, 3 differed, 1 timed out",
    "periodic 2",
    "divergence 0.25 checkpoints/s",
  ]) {
    assert.ok(text.includes(part), `missing '${part}' in:\n${text}`);
  }
});
