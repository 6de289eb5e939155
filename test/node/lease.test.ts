/**
 * A pair under a lease, in the simulated world (the linearizable lease
 * service of src/lease/memory.ts with its own faults): the node releases
 * output only under the lease, a backup activates only once it holds it, a
 * primary that cannot renew stops and rejoins as a backup, and a partition
 * between the nodes with both alive never runs two primaries. Every run ends
 * with the checkers over the whole history, the lease service's too.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_KVLOAD, KvLoad } from "../../src/client/kvload.js";
import { type Cluster, GUEST, netPair, SIM_LEASE, type SimClient } from "../sim/cluster.js";
import { check, underLease } from "../sim/history.js";
import type { World } from "../sim/world.js";

function leasePair(seed: number) {
  const p = netPair(seed, { workload: "idle", domainMiB: 4, lease: SIM_LEASE });
  return p;
}

/** Runs a client under load around `fault` (called once its connections carry traffic); returns its summary. */
function underLoad(
  world: World,
  client: SimClient,
  seed: number,
  fault: () => void,
  runMs: number,
): KvLoad["summary"] {
  const kv = new KvLoad(client.stack, { ...DEFAULT_KVLOAD, seed, targetIp: GUEST.ip }, world.now);
  const warm = world.every(1, () => kv.poll(world.now));
  world.run(() => kv.summary.replies > 0, 3000);
  warm.cancel();
  assert.ok(kv.summary.replies > 0, "the client never got a reply");
  fault();
  const start = world.now;
  let finishing = false;
  world.every(1, () => {
    kv.poll(world.now);
    if (!finishing && world.now - start > runMs) {
      finishing = true;
      kv.finish();
    }
  });
  world.run(() => kv.done, 20_000);
  assert.ok(kv.done, `the load did not finish (${kv.currentPhase})`);
  return kv.summary;
}

function verdict(cluster: Cluster, sum: KvLoad["summary"], where = ""): void {
  const store = cluster.leaseStore?.history ?? [];
  assert.deepEqual([...check(cluster.history), ...underLease(cluster.history, store)], [], where);
  assert.equal(sum.lostWrites, 0, where);
  assert.equal(sum.wrongReads, 0, where);
  assert.equal(sum.resets, 0, where);
  assert.ok(sum.ok && sum.verifiedKeys > 0, `${where} ${JSON.stringify(sum.errors.slice(0, 3))}`);
}

test("under a lease the primary holds it and is protected; its output leaves only under it", () => {
  const { world, cluster, a, b } = leasePair(1);
  assert.equal(a.node.state, "protected");
  assert.equal(b.node.state, "standby");
  assert.equal(a.lease?.state, "held");
  assert.equal(cluster.leaseStore?.holder?.nodeId, "a");
  assert.equal(a.node.generation, cluster.leaseStore?.currentGeneration);
  world.runFor(200);
  assert.ok(cluster.history.releases("a").length > 0);
  assert.deepEqual(underLease(cluster.history, cluster.leaseStore?.history ?? []), []);
});

test("the primary killed: the backup takes the lease once it expires, then activates under its generation", () => {
  const { world, cluster, a, b, client } = leasePair(2);
  let killedAt = 0;
  const sum = underLoad(
    world,
    client,
    2,
    () => {
      killedAt = world.now;
      a.kill("reset");
    },
    600,
  );
  verdict(cluster, sum);
  assert.equal(b.node.roleName, "primary");
  const act = cluster.history.activations()[0];
  assert.ok(act);
  assert.equal(act.generation, 2);
  // The lease could not be taken before it expired at the service.
  assert.ok(
    act.t - killedAt >= SIM_LEASE.ttlMs - SIM_LEASE.renewEveryMs,
    `activated ${act.t - killedAt} ms after the kill`,
  );
});

test("a link cut between the nodes with both alive: the backup cannot take the lease, the primary moves the lineage on and serves; after the cut the backup resyncs", () => {
  const { world, cluster, a, b, client } = leasePair(3);
  const sum = underLoad(
    world,
    client,
    3,
    () => {
      cluster.partition([a, client], [b]);
      world.after(1500, () => cluster.heal());
    },
    2500,
  );
  verdict(cluster, sum);
  assert.equal(cluster.history.activations().length, 0, "nobody activated");
  assert.equal(a.node.roleName, "primary");
  world.run(() => a.node.state === "protected", 3000);
  assert.equal(a.node.state, "protected");
  assert.equal(b.node.state, "standby");
  assert.equal(b.node.generation, a.node.generation);
  assert.ok(a.node.generation >= 2, "the lineage moved on");
});

test("the primary cut from the lease service stops before its lease can be taken, and rejoins as the new primary's backup", () => {
  const { world, cluster, a, b, client } = leasePair(4);
  const store = cluster.leaseStore;
  assert.ok(store);
  const sum = underLoad(
    world,
    client,
    4,
    () => {
      store.cut("a");
      world.after(2000, () => store.heal("a"));
    },
    1500,
  );
  verdict(cluster, sum);
  assert.equal(b.node.roleName, "primary");
  assert.equal(a.node.roleName, "backup");
  assert.ok(cluster.history.events("fenced", "a").length > 0);
  world.run(() => b.node.state === "protected", 5000);
  assert.equal(b.node.state, "protected", "the former primary rejoined as backup");
});

test("the primary paused past its lease: it wakes fenced, the backup took over, nothing released twice", () => {
  const { world, cluster, a, b, client } = leasePair(5);
  const sum = underLoad(world, client, 5, () => a.pause(600), 1500);
  verdict(cluster, sum);
  assert.equal(b.node.roleName, "primary");
  assert.equal(a.node.roleName, "backup");
});

test("the primary's clock jumps ahead past its deadline: it stops, and the backup takes over", () => {
  const { world, cluster, a, b, client } = leasePair(6);
  const sum = underLoad(world, client, 6, () => a.jump(1000), 1500);
  verdict(cluster, sum);
  assert.equal(b.node.roleName, "primary");
});
