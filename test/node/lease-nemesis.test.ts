/**
 * A seeded nemesis against a pair under a lease, serving kvd to a client
 * under load, in the simulated world: kills, pauses, partitions of either
 * node (long ones too, and link cuts with both nodes alive and the client
 * reaching both), cuts from the lease service, slow lease answers and clock
 * jumps, all at once. Every run ends with the checkers over the whole
 * history: never two nodes releasing output, every release under the lease
 * by the service's own history, nothing acknowledged lost, digests equal at
 * every activation; and the client model's verdict.
 *
 * REMUSD_LEASE_NEMESIS_SEEDS sets the number of seeds (default 20, about 15 s of one core).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_KVLOAD, KvLoad } from "../../src/client/kvload.js";
import { GUEST, netPair, SIM_LEASE } from "../sim/cluster.js";
import { check, underLease } from "../sim/history.js";
import { Nemesis, type NemesisOptions } from "../sim/nemesis.js";

const SEEDS = Number(process.env.REMUSD_LEASE_NEMESIS_SEEDS ?? 20);

const UNDER_LEASE: NemesisOptions = {
  kinds: {
    kill: 1,
    pause: 2,
    partition: 1,
    "link-cut": 2,
    "lease-cut": 2,
    "lease-slow": 1,
    "clock-jump": 1,
    link: 1,
    lan: 1,
  },
  count: 6,
  startMs: 20,
  endMs: 1500,
  maxPauseMs: 600, // past the lease's TTL (200 ms)
  maxPartitionMs: 1500,
  maxCutMs: 1500,
  maxLinkDelayMs: 15,
  maxLinkDrop: 0.02,
  maxLinkDuplicate: 0.02,
  linkReorder: 0.3,
  maxPrimaryKills: 2,
  restartBackups: true,
  // The `remusd node` way: whatever ran before, a restarted node rejoins as backup.
  killedPrimary: "reprotect",
};

export function runLeaseNemesis(seed: number, opts: NemesisOptions = UNDER_LEASE): void {
  const { world, cluster, client } = netPair(seed, { workload: "idle", domainMiB: 4, lease: SIM_LEASE });
  const kv = new KvLoad(client.stack, { ...DEFAULT_KVLOAD, seed, targetIp: GUEST.ip }, world.now);
  const nemesis = new Nemesis(cluster, world.stream("nemesis"), opts);
  const warmup = world.every(1, () => kv.poll(world.now));
  world.run(() => kv.summary.replies > 0, 3000);
  warmup.cancel();
  assert.ok(kv.summary.replies > 0, `seed ${seed}: the client never got a reply`);
  const start = world.now;
  nemesis.arm();
  let finishing = false;
  world.every(1, () => {
    kv.poll(world.now);
    if (!finishing && world.now - start > opts.endMs + opts.maxPauseMs + 600) {
      finishing = true;
      kv.finish();
    }
  });
  world.run(() => kv.done, 20_000);
  const sum = kv.summary;
  const where = `seed ${seed}\n  ${nemesis.log.join("\n  ")}\n  ${JSON.stringify({ ...sum, errors: sum.errors.slice(0, 3) })}`;
  const store = cluster.leaseStore?.history ?? [];
  assert.deepEqual([...check(cluster.history), ...underLease(cluster.history, store)], [], where);
  assert.ok(kv.done, `${where}\n  the load did not finish (${kv.currentPhase})`);
  assert.equal(sum.lostWrites, 0, where);
  assert.equal(sum.wrongReads, 0, where);
  assert.equal(sum.resets, 0, where);
  assert.ok(sum.verifiedKeys > 0 && sum.ok, where);
}

test(`under a lease, a seeded nemesis of kills, pauses, long partitions and link cuts, lease cuts, slow lease answers and clock jumps, over ${SEEDS} seeds: never two releasers, nothing lost`, () => {
  for (let seed = 1; seed <= SEEDS; seed++) runLeaseNemesis(seed);
});

test("under a lease, the long link cut with both nodes alive and the client reaching both: one releaser, nothing lost", () => {
  runLeaseNemesis(7, {
    ...UNDER_LEASE,
    kinds: { "link-cut": 1 },
    count: 1,
    startMs: 50,
    endMs: 51,
    maxCutMs: 3000,
  });
});
