/**
 * A seeded nemesis against a protected pair serving kvd to a client under
 * load, in the simulated world; every run ends with the checkers over the
 * whole history and the client model's verdict.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_KVLOAD, KvLoad } from "../../src/client/kvload.js";
import { GUEST, netPair } from "../sim/cluster.js";
import { check } from "../sim/history.js";
import { Nemesis, type NemesisOptions } from "../sim/nemesis.js";

const SEEDS = Number(process.env.REMUSD_NEMESIS_SEEDS ?? 40);

/**
 * The faults the pair survives, all at once. Since issue 14: pauses of either
 * node well past the heartbeat timeout (either wake order), and drops,
 * duplicates and reordering on the replication stream (each breaks the link;
 * the primary holds its output until the backup resyncs or activates).
 *
 * Left out, and why:
 *  - partitions longer than half the heartbeat timeout, with both sides up:
 *    the backup activates while the primary, by its honest clock, sees a dead
 *    backup and serves on. Without a third party nothing can tell the two
 *    apart; that is the lease (issue 13). Shorter ones are in.
 *  - restarting a killed primary as a primary: it boots a fresh domain (a new
 *    guest, not the protected one) under its persisted generation; the
 *    runbook restarts it as a backup instead ("reprotect", below).
 */
const SURVIVED: NemesisOptions = {
  kinds: { kill: 1, pause: 2, link: 2, lan: 2, "slow-store": 2, partition: 1 },
  count: 7,
  startMs: 20,
  endMs: 500,
  maxPauseMs: 400, // four heartbeat timeouts
  maxPartitionMs: 50, // half the heartbeat timeout: longer ones are the lease's (below)
  maxLinkDelayMs: 15,
  maxLinkDrop: 0.02,
  maxLinkDuplicate: 0.02,
  linkReorder: 0.3,
  maxPrimaryKills: 2,
  restartBackups: true,
  killedPrimary: "reprotect",
};

function runNemesis(seed: number): void {
  const { world, cluster, client } = netPair(seed, { workload: "idle", domainMiB: 4 });
  const kv = new KvLoad(client.stack, { ...DEFAULT_KVLOAD, seed, targetIp: GUEST.ip }, world.now);
  const nemesis = new Nemesis(cluster, world.stream("nemesis"), SURVIVED);
  // The faults begin once the client's connections carry traffic (a kill before its first SYN
  // was answered would leave a run that proves nothing: no key is ever written).
  const warmup = world.every(1, () => kv.poll(world.now));
  world.run(() => kv.summary.replies > 0, 3000);
  warmup.cancel();
  assert.ok(kv.summary.replies > 0, `seed ${seed}: the client never got a reply`);
  const start = world.now;
  nemesis.arm();
  let finishing = false;
  world.every(1, () => {
    kv.poll(world.now);
    if (!finishing && world.now - start > SURVIVED.endMs + 300) {
      finishing = true;
      kv.finish();
    }
  });
  world.run(() => kv.done, 12_000);
  const sum = kv.summary;
  const where = `seed ${seed}\n  ${nemesis.log.join("\n  ")}\n  ${JSON.stringify({ ...sum, errors: sum.errors.slice(0, 3) })}`;
  assert.deepEqual(check(cluster.history), [], where);
  assert.ok(kv.done, `${where}\n  the load did not finish (${kv.currentPhase})`);
  assert.equal(sum.lostWrites, 0, where);
  assert.equal(sum.wrongReads, 0, where);
  assert.equal(sum.resets, 0, where);
  assert.ok(sum.verifiedKeys > 0 && sum.ok, where);
}

test(`a seeded nemesis of pauses, stream faults, kills, LAN faults and slow stores, over ${SEEDS} seeds: every invariant holds`, () => {
  for (let seed = 1; seed <= SEEDS; seed++) runNemesis(seed);
});
