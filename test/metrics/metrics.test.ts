import assert from "node:assert/strict";
import { test } from "node:test";
import { parseExposition, sampleValue } from "../../src/api/promtext.js";
import { METRIC_LABELS, METRICS } from "../../src/contract.js";
import { Metrics } from "../../src/metrics.js";
import { STATES } from "../../src/states.js";

test("every metric of the contract is registered with its type", async () => {
  const m = new Metrics("1.2.3");
  const e = parseExposition(await m.exposition());
  for (const [name, type] of Object.entries(METRICS)) assert.equal(e.types.get(name), type, name);
  // The default process metrics, under their standard names.
  assert.equal(e.types.get("process_cpu_seconds_total"), "counter");
  assert.equal(e.types.get("process_resident_memory_bytes"), "gauge");
  assert.equal(sampleValue(e, "remusd_build_info", { version: "1.2.3", node: process.version }), 1);
});

test("bounded label sets are exported at zero before any event", async () => {
  const e = parseExposition(await new Metrics("0", false).exposition());
  for (const result of METRIC_LABELS.checkpointResult)
    assert.equal(sampleValue(e, "remusd_checkpoints_total", { result }), 0);
  for (const stage of METRIC_LABELS.replicationStage)
    assert.equal(sampleValue(e, "remusd_replication_bytes_total", { stage }), 0);
  for (const reason of METRIC_LABELS.failoverReason)
    assert.equal(sampleValue(e, "remusd_failovers_total", { reason }), 0);
  for (const role of METRIC_LABELS.role) assert.equal(sampleValue(e, "remusd_role", { role }), 0);
  for (const state of STATES) assert.equal(sampleValue(e, "remusd_state", { state }), 0);
  for (const g of [
    "remusd_netbuf_packets",
    "remusd_netbuf_bytes",
    "remusd_peer_up",
    "remusd_epoch_committed",
  ]) {
    assert.equal(sampleValue(e, g), 0, g);
  }
  assert.equal(sampleValue(e, "remusd_checkpoint_pause_seconds_count"), 0);
});

test("events move the metrics; the netbuf gauges read their source at scrape time", async () => {
  const m = new Metrics("0", false);
  let packets = 3;
  m.netbufSource = () => ({ packets, bytes: packets * 100, oldestAgeMs: 1 });
  m.setRole("primary");
  m.setState("protected");
  m.onEvent({ type: "peer.connected", remote: "x", peerNode: "n", peerGeneration: 1 });
  m.onEvent({
    type: "checkpoint.committed",
    epoch: 7,
    dirtyPages: 40,
    pauseMs: 0.3,
    durationMs: 4,
    wireBytes: 900,
    rawBytes: 4096,
  });
  m.onEvent({ type: "replication.bytes", raw: 4096, wire: 900 });
  m.onEvent({ type: "checkpoint.failed", epoch: 8, reason: "lost" });
  m.onEvent({ type: "heartbeat.rtt", ms: 0.5 });
  m.onEvent({ type: "failover.activated", epoch: 7, digest: "d", reason: "manual", generation: 2 });
  let e = parseExposition(await m.exposition());
  assert.equal(sampleValue(e, "remusd_checkpoints_total", { result: "committed" }), 1);
  assert.equal(sampleValue(e, "remusd_checkpoints_total", { result: "failed" }), 1);
  assert.equal(sampleValue(e, "remusd_epoch_committed"), 7);
  assert.equal(sampleValue(e, "remusd_replication_bytes_total", { stage: "raw" }), 4096);
  assert.equal(sampleValue(e, "remusd_replication_bytes_total", { stage: "wire" }), 900);
  assert.equal(sampleValue(e, "remusd_checkpoint_dirty_pages_sum"), 40);
  assert.equal(sampleValue(e, "remusd_heartbeat_rtt_seconds_count"), 1);
  assert.equal(sampleValue(e, "remusd_failovers_total", { reason: "manual" }), 1);
  assert.equal(sampleValue(e, "remusd_peer_up"), 1);
  assert.equal(sampleValue(e, "remusd_role", { role: "primary" }), 1);
  assert.equal(sampleValue(e, "remusd_role", { role: "backup" }), 0);
  assert.equal(sampleValue(e, "remusd_state", { state: "protected" }), 1);
  assert.equal(sampleValue(e, "remusd_state", { state: "unprotected" }), 0);
  assert.ok((sampleValue(e, "remusd_last_checkpoint_timestamp_seconds") ?? 0) > 1e9);
  assert.equal(sampleValue(e, "remusd_netbuf_packets"), 3);
  packets = 5;
  e = parseExposition(await m.exposition());
  assert.equal(sampleValue(e, "remusd_netbuf_packets"), 5);
  assert.equal(sampleValue(e, "remusd_netbuf_bytes"), 500);
});

test("histograms use millisecond buckets, not web defaults", async () => {
  const e = parseExposition(await new Metrics("0", false).exposition());
  for (const h of [
    "remusd_checkpoint_pause_seconds",
    "remusd_checkpoint_duration_seconds",
    "remusd_output_release_delay_seconds",
    "remusd_heartbeat_rtt_seconds",
  ]) {
    const les = e.samples.filter((s) => s.name === `${h}_bucket`).map((s) => Number(s.labels.le));
    assert.ok(les[0] !== undefined && les[0] <= 0.0001, `${h} starts at ${les[0]}`);
    assert.ok(les.filter((x) => x <= 0.01).length >= 5, `${h} resolves milliseconds`);
  }
});
