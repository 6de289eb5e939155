/**
 * Rewind resync (src/replication/rewind.ts) in the simulated world: a former
 * primary that still holds its memory image (demoted after a switchover, or
 * paused, superseded and fenced) rejoins as backup and is sent only the
 * pages and blocks that differ, never the whole domain; the sync's digest
 * proves the two images equal. A full sync of the same domain in the same
 * run is measured beside it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Cluster, SimNode } from "../sim/cluster.js";
import { protectedPair, SIM_LEASE } from "../sim/cluster.js";
import { check, underLease } from "../sim/history.js";
import type { World } from "../sim/world.js";

/** Counts the replication bytes each node sends during each of its syncs (sync.started to sync.completed). */
function syncMeter(
  cluster: Cluster,
): (node: string) => { mode: string; pages: number; wire: number; raw: number } {
  const open = new Map<string, { mode: string; pages: number; wire: number; raw: number }>();
  const done = new Map<string, { mode: string; pages: number; wire: number; raw: number }>();
  cluster.listeners.push((n, e) => {
    if (e.type === "sync.started") open.set(n.name, { mode: e.mode, pages: e.pages, wire: 0, raw: 0 });
    const m = open.get(n.name);
    if (!m) return;
    if (e.type === "replication.bytes") {
      m.wire += e.wire;
      m.raw += e.raw;
    } else if (e.type === "sync.completed") {
      done.set(n.name, m);
      open.delete(n.name);
    }
  });
  return (node) => {
    const m = done.get(node);
    assert.ok(m, `${node} completed a sync`);
    return m;
  };
}

/** `from` (the primary) dials `to` until it is protected again. */
function reprotect(world: World, from: SimNode, to: SimNode): void {
  to.peer = undefined;
  from.peer = to;
  world.run(() => from.node.state === "protected", 5000);
  assert.equal(from.node.state, "protected");
  assert.equal(to.node.state, "standby");
}

/** The backup's last applied digest is the primary's for that epoch (with verify, the sync's END carries it). */
function assertSyncDigestEqual(cluster: Cluster, primary: string, backup: string): void {
  const h = cluster.history;
  const sync = h
    .events("checkpoint.sent", primary)
    .filter(({ e }) => e.sync)
    .at(-1);
  assert.ok(sync?.e.digest, "the sync checkpoint carried its digest");
  const applied = h.events("checkpoint.applied", backup).find(({ e }) => e.epoch === sync.e.epoch);
  assert.equal(applied?.e.digest, sync.e.digest, "the rewound image equals the primary's at the sync");
  assert.equal(h.events("rewind.refused", primary).length, 0);
}

test("after a switchover the demoted primary rejoins by rewind: only the pages written since, digests equal; a full sync of the same domain sends far more", (t) => {
  const { world, cluster, a, b } = protectedPair(61, { domainMiB: 8, diskMiB: 2 });
  const lastSyncBytes = syncMeter(cluster);
  world.runFor(60);
  b.node.failover(true, world.now);
  world.run(() => b.node.roleName === "primary" && a.node.state === "stopped", 1000);
  assert.equal(b.node.roleName, "primary");
  // The new primary runs a while: what it writes is what the rewind must carry.
  world.runFor(80);
  a.node.demote(world.now, "stopped");
  assert.equal(a.node.backup?.offersRewind, true);
  reprotect(world, b, a);
  const rewind = lastSyncBytes("b");
  assert.equal(rewind.mode, "rewind");
  assertSyncDigestEqual(cluster, "b", "a");
  assert.ok(rewind.pages < a.domain.pages / 4, `the rewind sent ${rewind.pages} of ${a.domain.pages} pages`);
  // The same domain, the same run: a restarted backup (no image) takes a full sync.
  world.runFor(40);
  a.kill("reset");
  world.runFor(30);
  a.restart("backup");
  world.run(() => b.node.state === "protected", 5000);
  const full = lastSyncBytes("b");
  assert.equal(full.mode, "full");
  t.diagnostic(
    `rewind: ${rewind.pages} pages, ${rewind.wire} wire bytes (${rewind.raw} raw); full sync: ${full.pages} pages, ${full.wire} wire bytes (${full.raw} raw); wire ratio ${(rewind.wire / full.wire).toFixed(3)}`,
  );
  // Byte counts, not times: deterministic in the seed. (On the wire the full sync's never-written
  // pages cost 8 bytes each as ZERO entries, so the wire ratio depends on how full memory is.)
  assert.ok(rewind.raw < full.raw / 2, `rewind ${rewind.raw} raw bytes vs full ${full.raw}`);
  assert.ok(rewind.wire < full.wire, `rewind ${rewind.wire} wire bytes vs full ${full.wire}`);
  assert.deepEqual(check(cluster.history), []);
});

test("a paused primary superseded by its backup is fenced, demoted, and rejoins by rewind; the pair fails back with no work lost", () => {
  const { world, cluster, a, b } = protectedPair(62, { domainMiB: 8, diskMiB: 2 });
  const lastSyncBytes = syncMeter(cluster);
  world.runFor(50);
  a.pause(400);
  world.run(() => b.node.roleName === "primary", 1000);
  assert.equal(b.node.roleName, "primary");
  world.run(() => a.node.state === "fenced", 2000);
  assert.equal(a.node.state, "fenced");
  a.node.demote(world.now, "fenced");
  reprotect(world, b, a);
  const rewind = lastSyncBytes("b");
  assert.equal(rewind.mode, "rewind");
  assertSyncDigestEqual(cluster, "b", "a");
  // Fail back: the rewound node resumes the domain when its primary dies.
  world.runFor(40);
  b.kill("reset");
  world.run(() => a.node.roleName === "primary", 1000);
  assert.equal(a.node.roleName, "primary");
  assert.equal(a.node.generation, 3);
  assert.deepEqual(check(cluster.history), []);
});

test("a primary refuses to rewind an image outside its own history and syncs it in full", () => {
  // c booted its own domain (no lineage): a former primary of another pair is synced in full.
  const { world, cluster, a, b } = protectedPair(63, { domainMiB: 4, diskMiB: 1 });
  world.runFor(30);
  b.node.failover(true, world.now);
  world.run(() => b.node.roleName === "primary" && a.node.state === "stopped", 1000);
  a.node.demote(world.now, "stopped");
  // The new primary fails over again to a fresh backup before a rejoins: b's successor does not
  // continue a's generation, so a's image is not of its history.
  const c = cluster.addNode("c", "backup");
  b.peer = c;
  world.run(() => b.node.state === "protected", 5000);
  b.kill("reset");
  world.run(() => c.node.roleName === "primary", 1000);
  assert.equal(c.node.generation, 3);
  reprotect(world, c, a);
  assert.equal(cluster.history.events("sync.started", "c").at(-1)?.e.mode, "full");
  const [refused] = cluster.history.events("rewind.refused", "c");
  assert.match(refused?.e.reason ?? "", /ran under generation 1, this primary continues generation 2/);
  assert.deepEqual(check(cluster.history), []);
});

test("under a lease: a primary cut from the lease service stops, rejoins as backup by itself, and is resynced by rewind", (t) => {
  const { world, cluster, a, b } = protectedPair(64, { domainMiB: 8, diskMiB: 2, lease: SIM_LEASE }, 5000);
  const lastSyncBytes = syncMeter(cluster);
  const store = cluster.leaseStore;
  assert.ok(store);
  world.runFor(100);
  store.cut("a");
  world.run(() => b.node.roleName === "primary" && a.node.roleName === "backup", 5000);
  assert.equal(b.node.roleName, "primary");
  assert.equal(a.node.roleName, "backup", "the node demoted itself (the lease's rejoin path)");
  world.runFor(300);
  store.heal("a");
  world.run(() => b.node.state === "protected", 10000);
  assert.equal(b.node.state, "protected");
  const rewind = lastSyncBytes("b");
  assert.equal(rewind.mode, "rewind");
  assertSyncDigestEqual(cluster, "b", "a");
  assert.ok(rewind.pages < a.domain.pages / 4, `the rewind sent ${rewind.pages} of ${a.domain.pages} pages`);
  t.diagnostic(
    `lease rejoin by rewind: ${rewind.pages} of ${a.domain.pages} pages, ${rewind.wire} wire bytes (${rewind.raw} raw)`,
  );
  assert.deepEqual(check(cluster.history), []);
  assert.deepEqual(underLease(cluster.history, store.history), []);
});
