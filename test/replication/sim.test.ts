/**
 * The replication protocol in the simulated world (test/sim), through
 * production's Node on both sides: kills at every step of the epoch protocol,
 * corruption, a slow link, a switchover, a lost backup, a lost END.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { verifyCounter } from "../../src/guest/programs/basic.js";
import type { RecordType } from "../../src/protocol/constants.js";
import { type LinkDeath, protectedPair } from "../sim/cluster.js";
import { check } from "../sim/history.js";
import { epochOf } from "../sim/repl.js";

const SEEDS = Number(process.env.REMUSD_SIM_SEEDS ?? 1000);

type KillPoint = "before-pause" | "mid-batch" | "after-end" | "after-ack";
const POINTS: KillPoint[] = ["before-pause", "mid-batch", "after-end", "after-ack"];
const DEATHS: LinkDeath[] = ["silent", "reset", "close"];

/**
 * Runs a pair until protected, then kills the primary at the chosen step of an
 * epoch, and checks the failover invariants over the whole history.
 */
function runKill(seed: number, point: KillPoint, links: LinkDeath): void {
  const { world, cluster, a, b } = protectedPair(seed, { batchPages: 16 });
  const where = `seed ${seed} (${point}, ${links})`;
  assert.equal(a.node.state, "protected", `${where}: never protected`);
  const rng = world.rng;
  // Let a few epochs go by, a seeded number of them.
  world.runFor(5 + rng.int(40));
  let killed = false;
  const kill = () => {
    if (killed) return;
    killed = true;
    a.kill(links);
  };
  const skip = rng.int(3);
  let seen = 0;
  const killAfter = (type: "checkpoint.sent" | "checkpoint.committed") =>
    cluster.listeners.push((n, e) => {
      // After the step that emitted it: the primary finishes what it was doing, then dies.
      if (n === a && e.type === type && seen++ >= skip) world.at(world.now, kill);
    });
  switch (point) {
    case "before-pause": {
      let t = 0;
      while (rng.float() >= 0.2) t++;
      world.after(t, kill);
      break;
    }
    case "mid-batch":
      // A PAGE_BATCH from the primary reached the backup: the primary dies before the rest.
      cluster.repl.observe((f, phase) => {
        if (phase === "delivered" && f.from === "a" && f.type === "pageBatch" && seen++ >= skip) kill();
      });
      break;
    case "after-end":
      killAfter("checkpoint.sent");
      break;
    case "after-ack":
      killAfter("checkpoint.committed");
      break;
  }
  world.run(() => killed, 500);
  assert.ok(killed, `${where}: kill point never reached`);
  world.run(() => b.node.roleName === "primary", 3000);
  const [act] = cluster.history.activations();
  assert.ok(act, `${where}: the backup did not activate (state ${b.node.state})`);
  assert.equal(act.reason, links === "silent" ? "heartbeat_timeout" : "peer_lost", where);
  // No acknowledged epoch or released output lost, the primary's exact state resumed.
  assert.deepEqual(check(cluster.history), [], where);
  // The resumed guest carries on: the counter and its file agree, before and after running.
  const k = b.node.kernel;
  assert.ok(k, where);
  const before = verifyCounter(k);
  assert.ok(before.ok, `${where}: ${before.error}`);
  k.run(20);
  const after = verifyCounter(k);
  assert.ok(after.ok && after.counter === before.counter + 20, `${where}: ${after.error}`);
}

test(`kill the primary at every step of the epoch protocol over ${SEEDS} seeds`, () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    runKill(seed, POINTS[seed % POINTS.length] as KillPoint, DEATHS[seed % DEATHS.length] as LinkDeath);
  }
});

const CHECKPOINT_RECORDS: ReadonlySet<RecordType | undefined> = new Set<RecordType>([
  "pageBatch",
  "diskWrites",
  "vcpu",
  "device",
  "checkpointEnd",
]);

test("a flipped byte anywhere in a checkpoint is detected, nothing of it applied, and the pair recovers", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const { world, cluster, a, b } = protectedPair(seed, { batchPages: 16 });
    world.runFor(10);
    const h = cluster.history;
    const appliedBefore = h.events("checkpoint.applied", "b").length;
    const target = world.rng.int(6);
    let n = 0;
    let corrupted = false;
    cluster.repl.link("a", "b").corruptIf((f) => {
      if (!CHECKPOINT_RECORDS.has(f.type) || n++ < target) return false;
      corrupted = true;
      return true;
    }, 1);
    world.run(() => corrupted, 200);
    assert.ok(corrupted, `seed ${seed}: nothing corrupted`);
    // The backup refused the link (never activates while the primary returns in time)...
    world.run(() => a.node.state === "protected" && h.events("peer.lost", "b").length > 0, 3000);
    world.runFor(100);
    assert.equal(a.node.state, "protected", `seed ${seed}: pair did not recover`);
    assert.equal(b.node.roleName, "backup", `seed ${seed}: backup activated on corruption`);
    const lost = h.events("peer.lost", "b");
    assert.ok(lost.length > 0, `seed ${seed}: corruption undetected`);
    // The reasons (the backup's, and its GOODBYE as the primary read it) name the failed check once.
    for (const { e } of [...lost, ...h.events("peer.lost", "a")]) {
      assert.doesNotMatch(e.reason, /(bad-[a-z]+)\)?: \1/, `seed ${seed}`);
    }
    // ...and every epoch it ever applied has exactly the primary's digest: nothing corrupt was applied.
    assert.ok(h.events("checkpoint.applied", "b").length > appliedBefore);
    assert.deepEqual(check(h), [], `seed ${seed}`);
    // And the recovery was incremental: the backup kept its image.
    assert.ok(
      h.events("sync.started", "a").some(({ e }) => e.mode === "incremental"),
      `seed ${seed}: recovery was not incremental`,
    );
  }
});

test("the primary stretches the epoch instead of queueing checkpoints when the backup is slow", () => {
  const { world, cluster, a } = protectedPair(3);
  // A slow link: 20-60 ms each way, far above the 5 ms interval.
  cluster.repl.link("a", "b").delay(20, 40);
  cluster.repl.link("b", "a").delay(20, 40);
  const committedBefore = cluster.history.events("checkpoint.committed", "a").length;
  let maxInFlight = 0;
  world.every(1, () => {
    maxInFlight = Math.max(maxInFlight, a.node.primary?.status().inFlight ?? 0);
  });
  world.runFor(500);
  assert.equal(maxInFlight, 1);
  const committed = cluster.history.events("checkpoint.committed", "a").length - committedBefore;
  assert.ok(committed >= 3, "checkpoints still commit");
});

test("a planned switchover loses no work: the backup resumes exactly the final checkpoint", () => {
  const { world, cluster, a, b } = protectedPair(77);
  world.runFor(50);
  b.node.failover(true, world.now);
  world.run(() => b.node.roleName === "primary", 500);
  const [act] = cluster.history.activations();
  assert.ok(act);
  assert.equal(act.reason, "planned");
  assert.equal(a.node.primary?.isRunning, false);
  // No work lost: the backup's state is the primary's final state, digest for digest.
  assert.equal(act.digest, a.domain.digest());
  world.runFor(100);
  assert.equal(a.node.state, "stopped");
  assert.deepEqual(check(cluster.history), []);
});

test("losing the backup leaves the primary unprotected; a new backup resyncs it to protected", () => {
  const { world, cluster, a, b } = protectedPair(5);
  b.kill("reset");
  world.runFor(5);
  assert.equal(a.node.state, "unprotected");
  assert.equal(a.node.primary?.outputMustWait, false);
  // The primary keeps running while unprotected.
  const ticks = a.domain.vcpu.ticks;
  world.runFor(50);
  assert.ok(a.domain.vcpu.ticks > ticks);
  // A brand-new backup (no image) connects: full sync, then protected again.
  const syncs = cluster.history.events("sync.started", "a").length;
  a.peer = cluster.addNode("c", "backup");
  world.run(() => a.node.state === "protected", 3000);
  assert.equal(a.node.state, "protected");
  assert.equal(cluster.history.events("sync.started", "a").slice(syncs)[0]?.e.mode, "full");
});

test("a checkpoint whose END never arrives is discarded whole: the backup resumes the epoch before it", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const { world, cluster, a, b } = protectedPair(seed, { batchPages: 16 });
    world.runFor(5 + (seed % 17));
    const committedBefore = b.node.committed;
    let droppedEpoch = -1;
    // Everything of the checkpoint arrives except its CHECKPOINT_END, and the primary dies.
    cluster.repl.link("a", "b").dropIf((f) => {
      if (droppedEpoch >= 0 || f.type !== "checkpointEnd") return false;
      droppedEpoch = epochOf(f.data);
      world.at(world.now, () => a.kill("close"));
      return true;
    });
    world.run(() => b.node.roleName === "primary", 3000);
    const h = cluster.history;
    const [act] = h.activations();
    assert.ok(act && droppedEpoch > 0, `seed ${seed}: no activation`);
    assert.ok(
      h.events("checkpoint.discarded", "b").some(({ e }) => e.epoch === droppedEpoch),
      `seed ${seed}: the partial checkpoint ${droppedEpoch} was not discarded`,
    );
    assert.ok(!h.events("checkpoint.applied", "b").some(({ e }) => e.epoch === droppedEpoch));
    assert.equal(act.epoch, droppedEpoch - 1);
    assert.ok(act.epoch >= committedBefore);
    assert.deepEqual(check(h), [], `seed ${seed}`);
  }
});

test("a slow store delays every ack until its epoch is durable, in order; output waits for it", () => {
  const { world, cluster, a, b } = protectedPair(11);
  const h = cluster.history;
  const before = h.events("checkpoint.committed", "a").length;
  // Each commit takes 12-20 ms, several epochs' worth (the interval is 5 ms).
  b.store.slow(12, 8);
  world.runFor(300);
  const commits = h.events("checkpoint.committed", "a").slice(before + 1);
  assert.ok(commits.length >= 5, "checkpoints still commit");
  for (const [i, { e }] of commits.entries()) {
    assert.ok(
      e.durationMs >= 12,
      `epoch ${e.epoch} acknowledged after ${e.durationMs} ms, before it was durable`,
    );
    if (i > 0) assert.ok(e.epoch > (commits[i - 1]?.e.epoch ?? 0), "acks in epoch order");
  }
  assert.equal(a.node.state, "protected");
  // A failover in the middle of it resumes no less than what was acknowledged.
  a.kill("reset");
  world.run(() => b.node.roleName === "primary", 1000);
  assert.equal(b.node.roleName, "primary");
  assert.deepEqual(check(h), []);
});
