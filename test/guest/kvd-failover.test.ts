/**
 * kvd across a failover, in the seeded in-process simulation: eight client
 * connections keep SET/INCR/GET pipelines going while the primary dies at a
 * seeded moment. Output commit must make the failover invisible: no reset, no
 * acknowledged write lost, no wrong read, and the backup's kvd, resumed from
 * the last committed checkpoint, has an AOF that agrees with its memory.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_KVLOAD, KvLoad } from "../../src/client/kvload.js";
import { Kernel } from "../../src/guest/kernel.js";
import { kvdSnapshot, verifyKvdAof } from "../../src/guest/programs/kvd.js";
import { GUEST, NetSim } from "../replication/netsim.js";

const SEEDS = Number(process.env.REMUSD_KVD_FAILOVER_SEEDS ?? 500);
const FIRST = Number(process.env.REMUSD_KVD_FAILOVER_FIRST ?? 1);

function runKvFailover(seed: number): void {
  const sim = new NetSim({ seed, workload: "idle" });
  sim.pair.connect();
  sim.pair.run(3000, () => sim.pair.primary.state === "protected");
  assert.equal(sim.pair.primary.state, "protected", `seed ${seed}: not protected`);
  const kv = new KvLoad(sim.client, { ...DEFAULT_KVLOAD, seed, targetIp: GUEST.ip }, sim.now);
  const start = sim.now;
  // Load for 100-300 ms, kill (a clean cut, or silence the heartbeat must detect), and keep the load
  // on until 100 more replies came from the activated backup (after TCP's retransmission timeout).
  const killAt = 100 + Math.floor(sim.pair.random() * 200);
  const AFTER = 100;
  const cut = seed % 3 !== 0;
  let killed = false;
  let repliesAtKill = 0;
  let releasedAtKill = 0;
  let repliesAtFinish = -1;
  for (let t = 0; t < 8000 && !kv.done; t++) {
    sim.step((now) => kv.poll(now));
    if (!killed && sim.now - start >= killAt) {
      killed = true;
      repliesAtKill = kv.summary.replies;
      releasedAtKill = sim.pdev.netbuf.releasedEpoch;
      sim.pair.killPrimary(cut);
    }
    const resumed = killed && kv.summary.replies >= repliesAtKill + AFTER;
    if (repliesAtFinish < 0 && (resumed || sim.now - start >= killAt + 2000)) {
      repliesAtFinish = kv.summary.replies;
      kv.finish();
    }
  }
  const sum = kv.summary;
  const where = `seed ${seed}: ${JSON.stringify({ ...sum, errors: sum.errors.slice(0, 5) })}`;
  assert.ok(kv.done, `${where}: the load did not finish (phase ${kv.currentPhase})`);
  const act = sim.pair.backup.activated;
  assert.ok(act, `${where}: no activation`);
  // Output commit: nothing the dead primary released came from an epoch the backup did not resume.
  assert.ok(releasedAtKill <= act.epoch, `${where}: released epoch ${releasedAtKill} > resumed ${act.epoch}`);
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
  const k = new Kernel(sim.pair.backupDomain);
  const v = verifyKvdAof(k);
  assert.ok(v.ok, `seed ${seed}: ${v.error}`);
  assert.ok(kvdSnapshot(k).size > 0, `seed ${seed}: the activated kvd holds no keys`);
}

test(`kvd under load carries on across a failover (${SEEDS} seeds from ${FIRST})`, () => {
  for (let seed = FIRST; seed < FIRST + SEEDS; seed++) runKvFailover(seed);
});
