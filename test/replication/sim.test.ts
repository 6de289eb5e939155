import assert from "node:assert/strict";
import { test } from "node:test";
import { verifyCounter } from "../../src/guest/programs/basic.js";
import { SimPair } from "./sim.js";

const SEEDS = Number(process.env.REMUSD_SIM_SEEDS ?? 1000);

type KillPoint = "before-pause" | "mid-batch" | "after-end" | "after-ack";
const POINTS: KillPoint[] = ["before-pause", "mid-batch", "after-end", "after-ack"];

/**
 * Runs a pair until protected, then kills the primary at the chosen step of an
 * epoch, and checks the failover invariants.
 */
function runKill(seed: number, point: KillPoint, cut: boolean): void {
  const sim = new SimPair({ seed, batchPages: 16 });
  sim.connect();
  sim.run(2000, () => sim.primary.state === "protected");
  assert.equal(sim.primary.state, "protected", `seed ${seed}: never protected`);
  // Let a few epochs go by, a seeded number of them.
  const warm = 5 + Math.floor(sim.random() * 40);
  sim.run(warm);
  // Arm the kill at the chosen step.
  let armed = true;
  const kill = () => {
    if (!armed) return;
    armed = false;
    sim.killPrimary(cut);
  };
  const skip = Math.floor(sim.random() * 3);
  let seen = 0;
  if (point === "mid-batch") {
    sim.net.tap = (from, data) => {
      // A PAGE_BATCH (type 0x11) from the primary: kill after it left, before the rest.
      if (armed && from === sim.primaryPort && data[3] === 0x11 && seen++ >= skip) {
        queueMicrotask(() => {});
        kill();
        return data;
      }
      return data;
    };
  }
  const startEvents = sim.primaryEvents.length;
  for (let t = 0; t < 500 && armed; t++) {
    if (point === "before-pause" && sim.random() < 0.2) kill();
    sim.step();
    for (let i = startEvents; i < sim.primaryEvents.length && armed; i++) {
      const e = sim.primaryEvents[i];
      if (point === "after-end" && e?.type === "checkpoint.sent" && seen++ >= skip) kill();
      if (point === "after-ack" && e?.type === "checkpoint.committed" && seen++ >= skip) kill();
    }
  }
  assert.equal(armed, false, `seed ${seed}: kill point ${point} never reached`);
  sim.net.tap = undefined;
  const ackedSeen = sim.lastAckedByPrimary();
  const released = sim.releasedEpoch;
  sim.run(3000, () => sim.backup.state === "activated");
  const act = sim.backup.activated;
  assert.ok(act, `seed ${seed} ${point}: backup did not activate (state ${sim.backup.state})`);
  // The backup resumes from an epoch at least as new as the last the primary saw acked…
  assert.ok(act.epoch >= ackedSeen, `seed ${seed}: activated from ${act.epoch} < acked ${ackedSeen}`);
  // …with exactly the primary's state at that epoch…
  assert.equal(act.digest, sim.primaryDigests.get(act.epoch), `seed ${seed}: digest at epoch ${act.epoch}`);
  // …and no output was released that the backup cannot reproduce.
  assert.ok(released <= act.epoch, `seed ${seed}: released epoch ${released} > activated ${act.epoch}`);
  assert.equal(act.reason, cut ? "peer_lost" : "heartbeat_timeout");
  // The resumed guest carries on: the counter and its file agree, before and after running.
  const k = sim.makeActivatedKernel();
  const before = verifyCounter(k);
  assert.ok(before.ok, `seed ${seed}: ${before.error}`);
  k.run(20);
  const after = verifyCounter(k);
  assert.ok(after.ok && after.counter === before.counter + 20, `seed ${seed}: ${after.error}`);
}

test(`kill the primary at every step of the epoch protocol over ${SEEDS} seeds`, () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const point = POINTS[seed % POINTS.length] as KillPoint;
    runKill(seed, point, seed % 3 !== 0);
  }
});

test("a flipped byte anywhere in a checkpoint is detected, nothing of it applied, and the pair recovers", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const sim = new SimPair({ seed, batchPages: 16 });
    sim.connect();
    sim.run(2000, () => sim.primary.state === "protected");
    sim.run(10);
    const appliedBefore = sim.backupEvents.filter((e) => e.type === "checkpoint.applied").length;
    let corrupted = false;
    let corruptedEpochFrames = 0;
    const target = Math.floor(sim.random() * 6);
    sim.net.tap = (from, data) => {
      if (corrupted || from !== sim.primaryPort) return data;
      // Checkpoint records: PAGE_BATCH, DISK_WRITES, VCPU, DEVICE, CHECKPOINT_END.
      if (data[3] !== undefined && data[3] >= 0x11 && data[3] <= 0x15 && corruptedEpochFrames++ >= target) {
        corrupted = true;
        const copy = Buffer.from(data);
        const pos = Math.floor(sim.random() * copy.length);
        copy[pos] = (copy[pos] as number) ^ (1 + Math.floor(sim.random() * 255));
        return copy;
      }
      return data;
    };
    sim.run(200, () => corrupted);
    assert.ok(corrupted, `seed ${seed}: nothing corrupted`);
    sim.net.tap = undefined;
    // The backup refused the link (never activates while the primary returns in time)...
    sim.run(
      3000,
      () => sim.primary.state === "protected" && sim.backupEvents.some((e) => e.type === "peer.lost"),
    );
    sim.run(100);
    assert.equal(sim.primary.state, "protected", `seed ${seed}: pair did not recover`);
    assert.notEqual(sim.backup.state, "activated", `seed ${seed}: backup activated on corruption`);
    assert.ok(
      sim.backupEvents.some((e) => e.type === "peer.lost"),
      `seed ${seed}: corruption undetected`,
    );
    // ...and every epoch it ever applied has exactly the primary's digest: nothing corrupt was applied.
    const applied = sim.backupEvents.filter((e) => e.type === "checkpoint.applied");
    assert.ok(applied.length > appliedBefore);
    for (const e of applied) {
      if (e.type !== "checkpoint.applied") continue;
      assert.equal(
        e.digest,
        sim.primaryDigests.get(e.epoch),
        `seed ${seed}: epoch ${e.epoch} applied with a wrong digest`,
      );
    }
    // And the recovery was incremental: the backup kept its image.
    assert.ok(
      sim.primaryEvents.some((e) => e.type === "sync.started" && e.mode === "incremental"),
      `seed ${seed}: recovery was not incremental`,
    );
  }
});

test("the primary stretches the epoch instead of queueing checkpoints when the backup is slow", () => {
  const sim = new SimPair({ seed: 3 });
  sim.net.latencyMs; // default latency
  sim.connect();
  sim.run(2000, () => sim.primary.state === "protected");
  // Slow link: 40 ms one way, far above the 5 ms interval.
  (sim.net as unknown as { latencyMs: number }).latencyMs = 40;
  let maxInFlight = 0;
  for (let i = 0; i < 500; i++) {
    sim.step();
    maxInFlight = Math.max(maxInFlight, sim.primary.status().inFlight);
  }
  assert.equal(maxInFlight, 1);
  const committed = sim.primaryEvents.filter((e) => e.type === "checkpoint.committed");
  assert.ok(committed.length >= 3, "checkpoints still commit");
});

test("a planned switchover loses no work: the backup resumes exactly the final checkpoint", () => {
  const sim = new SimPair({ seed: 77 });
  sim.connect();
  sim.run(2000, () => sim.primary.state === "protected");
  sim.run(50);
  sim.backup.requestSwitchover();
  sim.run(500, () => sim.backup.state === "activated");
  const act = sim.backup.activated;
  assert.ok(act);
  assert.equal(act.reason, "planned");
  assert.equal(sim.primary.isRunning, false);
  // No work lost: the backup's state is the primary's final state, digest for digest.
  assert.equal(act.digest, sim.primaryDomain.digest());
  sim.run(100);
  assert.equal(sim.primary.state, "stopped");
});

test("losing the backup leaves the primary unprotected; a new backup resyncs it to protected", () => {
  const sim = new SimPair({ seed: 5 });
  sim.connect();
  sim.run(2000, () => sim.primary.state === "protected");
  sim.autoReconnect = false;
  const p = sim.primaryPort;
  assert.ok(p);
  sim.net.cut(p, "backup died");
  sim.run(5);
  assert.equal(sim.primary.state, "unprotected");
  assert.equal(sim.primary.outputMustWait, false);
  // The primary keeps running while unprotected.
  const ticks = sim.primaryDomain.vcpu.ticks;
  sim.run(50);
  assert.ok(sim.primaryDomain.vcpu.ticks > ticks);
  // A brand-new backup (no image) connects: full sync, then protected again.
  const fresh = new SimPair({ seed: 5 });
  sim.backup = fresh.backup;
  sim.autoReconnect = true;
  sim.run(3000, () => sim.primary.state === "protected");
  assert.equal(sim.primary.state, "protected");
  assert.ok(sim.primaryEvents.some((e) => e.type === "sync.started" && e.mode === "full"));
});

test("a checkpoint whose END never arrives is discarded whole: the backup resumes the epoch before it", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const sim = new SimPair({ seed, batchPages: 16 });
    sim.connect();
    sim.run(2000, () => sim.primary.state === "protected");
    sim.run(5 + (seed % 17));
    const committedBefore = sim.backup.committed;
    let droppedEpoch = -1;
    sim.net.tap = (from, data) => {
      // Everything of the checkpoint arrives except its CHECKPOINT_END (type 0x15): the link then breaks.
      if (droppedEpoch < 0 && from === sim.primaryPort && data[3] === 0x15) {
        droppedEpoch = data.readUInt32LE(16); // the END body starts with its epoch (u64)
        sim.killPrimary(false);
        return false;
      }
      return data;
    };
    sim.run(3000, () => sim.backup.state === "activated");
    const act = sim.backup.activated;
    assert.ok(act && droppedEpoch > 0, `seed ${seed}: no activation`);
    assert.ok(
      sim.backupEvents.some((e) => e.type === "checkpoint.discarded" && e.epoch === droppedEpoch),
      `seed ${seed}: the partial checkpoint ${droppedEpoch} was not discarded`,
    );
    assert.ok(!sim.backupEvents.some((e) => e.type === "checkpoint.applied" && e.epoch === droppedEpoch));
    assert.equal(act.epoch, droppedEpoch - 1);
    assert.ok(act.epoch >= committedBefore);
    assert.equal(act.digest, sim.primaryDigests.get(act.epoch), `seed ${seed}: digest`);
  }
});
