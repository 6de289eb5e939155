/**
 * Small safety rules of the epoch protocol, in the simulated world: the audit
 * trail is written before the effect it records, and a node measures its own
 * stalls.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { protectedPair } from "../sim/cluster.js";
import { epochOf } from "../sim/repl.js";

test("checkpoint.sent (with its digest) is emitted before that epoch's CHECKPOINT_END leaves", () => {
  const { world, cluster, a } = protectedPair(21, { verify: true });
  const order: string[] = [];
  cluster.listeners.push((n, e) => {
    if (n === a && e.type === "checkpoint.sent") order.push(`event ${e.epoch}`);
  });
  cluster.repl.observe((f, phase) => {
    if (phase === "sent" && f.from === "a" && f.type === "checkpointEnd")
      order.push(`end ${epochOf(f.data)}`);
  });
  world.runFor(100);
  const ends = order.filter((x) => x.startsWith("end "));
  assert.ok(ends.length > 5, "checkpoints went out");
  for (const end of ends) {
    const epoch = end.slice(4);
    const logged = order.indexOf(`event ${epoch}`);
    assert.ok(logged >= 0 && logged < order.indexOf(end), `epoch ${epoch}: ${order.join(", ")}`);
  }
  assert.ok(cluster.history.events("checkpoint.sent", "a").every(({ e }) => e.digest !== undefined));
});

test("a paused node reports its own stall, and its stalled time does not count as its peer's silence", () => {
  const { world, cluster, a, b } = protectedPair(22);
  world.runFor(30);
  // Both frozen together (a host suspended): each wakes with the other's heartbeat long expired
  // by the wall clock, but neither was silent while the other could hear it.
  a.pause(400, "timers-first");
  b.pause(400, "timers-first");
  world.runFor(450);
  for (const n of ["a", "b"]) {
    const stalls = cluster.history.events("loop.stall", n);
    assert.ok(
      stalls.some(({ e }) => e.ms >= 400),
      `${n}: ${JSON.stringify(stalls)}`,
    );
  }
  assert.equal(cluster.history.activations().length, 0, "nobody took the other's stall for death");
  assert.equal(a.node.state, "protected");
  assert.equal(b.node.state, "standby");
});
