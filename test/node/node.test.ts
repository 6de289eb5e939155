/**
 * The Node's role transitions and their preconditions, in the simulated world:
 * promotion (a backup whose primary is lost), demotion (a fenced primary that
 * rejoins as a backup), and the commands each role refuses.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { isRemusError } from "../../src/errors.js";
import { protectedPair } from "../sim/cluster.js";
import { check } from "../sim/history.js";

const wrongRole = (e: unknown) => isRemusError(e) && e.code === "REMUSD_ERR_WRONG_ROLE";

test("each role refuses the other role's commands, and a running primary refuses demotion", () => {
  const { world, a, b } = protectedPair(1);
  assert.throws(() => a.node.failover(false, world.now), wrongRole);
  assert.throws(() => b.node.checkpoint(), wrongRole);
  assert.throws(() => b.node.demote(world.now, "fenced"), wrongRole);
  assert.throws(() => a.node.demote(world.now, "fenced"), wrongRole);
  assert.equal(a.node.roleName, "primary");
  assert.equal(a.node.state, "protected");
});

test("a manual failover with the primary alive: the old primary is fenced, demotes, and is resynced as backup", () => {
  const { world, cluster, a, b } = protectedPair(2);
  world.runFor(30);
  const h = cluster.history;
  const r = b.node.failover(false, world.now);
  assert.ok(r.activated);
  assert.equal(b.node.roleName, "primary");
  assert.equal(b.node.generation, 2);
  // The backup's FENCED goodbye reaches the old primary: its domain stops.
  world.run(() => a.node.state === "fenced", 200);
  assert.equal(a.node.state, "fenced");
  assert.equal(a.node.primary?.isRunning, false);
  a.node.demote(world.now, "fenced");
  assert.equal(a.node.roleName, "backup");
  assert.equal(a.node.kernel, undefined);
  assert.equal(a.node.dev.active, false);
  assert.deepEqual(
    h.events("role.changed", "a").map(({ e }) => [e.from, e.to, e.reason]),
    [["primary", "backup", "fenced"]],
  );
  // The new primary syncs its former primary, in full (no rewind yet), and is protected again.
  a.peer = undefined;
  b.peer = a;
  world.run(() => b.node.state === "protected", 3000);
  assert.equal(b.node.state, "protected");
  assert.equal(a.node.state, "standby");
  assert.equal(a.node.generation, 2);
  assert.equal(h.events("sync.started", "b").at(-1)?.e.mode, "full");
  // And the pair can fail over again, the other way.
  world.runFor(50);
  b.kill("reset");
  world.run(() => a.node.roleName === "primary", 1000);
  assert.equal(a.node.roleName, "primary");
  assert.equal(a.node.generation, 3);
  assert.deepEqual(check(h), []);
});
