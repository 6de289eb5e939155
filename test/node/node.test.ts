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

test("a manual failover with the primary alive is a clean handover: final checkpoint, the primary stops, the backup resumes it; the old primary demotes and is resynced as backup", () => {
  const { world, cluster, a, b } = protectedPair(2);
  world.runFor(30);
  const h = cluster.history;
  // Activating beside a live primary would roll back what it released since the backup's last
  // epoch: an unplanned failover with a primary connected is a planned switchover.
  const r = b.node.failover(false, world.now);
  assert.deepEqual(r, { activated: false, pending: true });
  world.run(() => b.node.roleName === "primary", 500);
  assert.equal(b.node.roleName, "primary");
  assert.equal(b.node.generation, 2);
  assert.equal(a.node.state, "stopped");
  assert.equal(a.node.primary?.isRunning, false);
  assert.equal(a.node.dev.active, false, "the stopped primary left the LAN");
  const [act] = h.activations();
  assert.equal(act?.reason, "planned");
  // The backup resumed the primary's final checkpoint: nothing it had released is lost.
  const final = h.events("checkpoint.sent", "a").find(({ e }) => e.final);
  assert.equal(act?.epoch, final?.e.epoch);
  a.node.demote(world.now, "stopped");
  assert.equal(a.node.roleName, "backup");
  assert.equal(a.node.kernel, undefined);
  assert.equal(a.node.dev.active, false);
  assert.deepEqual(
    h.events("role.changed", "a").map(({ e }) => [e.from, e.to, e.reason]),
    [["primary", "backup", "stopped"]],
  );
  // The new primary resyncs its former primary by rewind (it still holds its memory), and is protected again.
  a.peer = undefined;
  b.peer = a;
  world.run(() => b.node.state === "protected", 3000);
  assert.equal(b.node.state, "protected");
  assert.equal(a.node.state, "standby");
  assert.equal(a.node.generation, 2);
  assert.equal(h.events("sync.started", "b").at(-1)?.e.mode, "rewind");
  // And the pair can fail over again, the other way.
  world.runFor(50);
  b.kill("reset");
  world.run(() => a.node.roleName === "primary", 1000);
  assert.equal(a.node.roleName, "primary");
  assert.equal(a.node.generation, 3);
  assert.deepEqual(check(h), []);
});

test("a manual failover once the primary went silent activates at once", () => {
  const { world, cluster, a, b } = protectedPair(3);
  world.runFor(30);
  a.kill("silent");
  world.runFor(60); // three heartbeat intervals: silent, not yet timed out (100 ms)
  assert.equal(b.node.roleName, "backup");
  const r = b.node.failover(false, world.now);
  assert.equal(r.activated, true);
  assert.equal(b.node.roleName, "primary");
  assert.equal(cluster.history.activations()[0]?.reason, "manual");
  assert.deepEqual(check(cluster.history), []);
});
