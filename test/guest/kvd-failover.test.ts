/**
 * kvd across a failover, in the simulated world: eight client connections
 * keep SET/INCR/GET pipelines going while the primary dies at a seeded
 * moment. Output commit must make the failover invisible: no reset, no
 * acknowledged write lost, no wrong read, and the backup's kvd, resumed from
 * the last committed checkpoint, has an AOF that agrees with its memory.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_KVLOAD, KvLoad } from "../../src/client/kvload.js";
import { kvdSnapshot, verifyKvdAof } from "../../src/guest/programs/kvd.js";
import { GUEST, netPair } from "../sim/cluster.js";
import { check } from "../sim/history.js";

const SEEDS = Number(process.env.REMUSD_KVD_FAILOVER_SEEDS ?? 500);
const FIRST = Number(process.env.REMUSD_KVD_FAILOVER_FIRST ?? 1);

function runKvFailover(seed: number): void {
  const { world, cluster, a, b, client } = netPair(seed, { workload: "idle" });
  assert.equal(a.node.state, "protected", `seed ${seed}: not protected`);
  const kv = new KvLoad(client.stack, { ...DEFAULT_KVLOAD, seed, targetIp: GUEST.ip }, world.now);
  const start = world.now;
  // Load for 100-300 ms, kill (a reset, or silence the heartbeat must detect), and keep the load
  // on until 100 more replies came from the activated backup (after TCP's retransmission timeout).
  const killAt = 100 + world.rng.int(200);
  const AFTER = 100;
  let repliesAtKill = -1;
  let repliesAtFinish = -1;
  world.at(start + killAt, () => {
    repliesAtKill = kv.summary.replies;
    a.kill(seed % 3 !== 0 ? "reset" : "silent");
  });
  world.every(1, () => {
    kv.poll(world.now);
    const resumed = repliesAtKill >= 0 && kv.summary.replies >= repliesAtKill + AFTER;
    if (repliesAtFinish < 0 && (resumed || world.now - start >= killAt + 2000)) {
      repliesAtFinish = kv.summary.replies;
      kv.finish();
    }
  });
  world.run(() => kv.done, 8000);
  const sum = kv.summary;
  const where = `seed ${seed}: ${JSON.stringify({ ...sum, errors: sum.errors.slice(0, 5) })}`;
  assert.ok(kv.done, `${where}: the load did not finish (phase ${kv.currentPhase})`);
  assert.ok(cluster.history.activations().length > 0, `${where}: no activation`);
  // Output commit: nothing the dead primary released came from an epoch the backup did not resume.
  assert.deepEqual(check(cluster.history), [], where);
  // The client model: every acknowledged write is there, every read right, no connection reset.
  assert.equal(sum.resets, 0, where);
  assert.equal(sum.lostWrites, 0, where);
  assert.equal(sum.wrongReads, 0, where);
  assert.equal(sum.protocolErrors, 0, where);
  assert.ok(repliesAtKill > 0, `${where}: no replies before the failover`);
  assert.ok(
    repliesAtFinish >= repliesAtKill + AFTER,
    `${where}: the load did not continue after the failover`,
  );
  assert.ok(sum.verifiedKeys > 0, `${where}: nothing read back`);
  assert.ok(sum.ok, where);
  const k = b.node.kernel;
  assert.ok(k, `seed ${seed}: the backup runs no kernel`);
  const v = verifyKvdAof(k);
  assert.ok(v.ok, `seed ${seed}: ${v.error}`);
  assert.ok(kvdSnapshot(k).size > 0, `seed ${seed}: the activated kvd holds no keys`);
}

test(`kvd under load carries on across a failover (${SEEDS} seeds from ${FIRST})`, () => {
  for (let seed = FIRST; seed < FIRST + SEEDS; seed++) runKvFailover(seed);
});
