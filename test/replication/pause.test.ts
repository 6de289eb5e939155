/**
 * A paused node (SIGSTOP, a VM stall, a long GC) in the simulated world: it
 * neither steps nor reads its links while the others run, then resumes with
 * its clock jumped and what queued for it delivered. Echo clients run
 * throughout, so the checkers see every frame each node released.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GUEST, netPair, type Wake } from "../sim/cluster.js";
import { check } from "../sim/history.js";

/**
 * What happens when the primary stalls for longer than the heartbeat timeout
 * while it holds output (issue 14 fixed what this recorded before).
 */
const AFTER_A_LONG_PRIMARY_PAUSE = {
  /** The backup concludes its primary is dead and takes over. */
  activation: "heartbeat_timeout",
  /**
   * Running again, the stalled primary reads the FENCED claim that waited in
   * its socket before it acts on its own (expired) heartbeat: it ends fenced,
   * its held output discarded, its NIC off the LAN. Whether it resumes timers
   * first or input first does not matter.
   */
  stalledPrimaryEnds: "fenced",
  /** So nothing breaks: no two releasers, nothing unacknowledged from a superseded node. */
  violations: [] as string[],
  /** The echo clients never read a wrong byte, and every stream completes on the new primary. */
  clientReadWrongBytes: false,
  clientStreamsComplete: true,
};

/**
 * What happens when the backup stalls for longer than the heartbeat timeout
 * (a SIGSTOP, a long apply): the primary drops it, releases what it held and
 * serves on unprotected, telling it CONTINUING. The backup wakes up, reads
 * that before it acts on its own expired timer, knows its image is stale,
 * does not activate, and is resynced: the pair ends protected again.
 */
const AFTER_A_LONG_BACKUP_PAUSE = {
  activation: "none",
  primaryEnds: "protected",
  backupEnds: "standby",
  violations: [] as string[],
  clientReadWrongBytes: false,
  clientStreamsComplete: true,
};

const SEEDS = 4;
const HEARTBEAT_TIMEOUT_MS = 20 * 5; // the simulation's default heartbeat: 20 ms x 5 misses

/**
 * Four echo streams; the primary pauses for `pauseMs` at a moment it holds
 * output, wakes up as `wake` says; returns what happened, in the shape of the
 * expectation above.
 */
function pausePrimary(seed: number, pauseMs: number, wake: Wake, who: "a" | "b" = "a") {
  const { world, cluster, a, b, client } = netPair(seed, { workload: "idle" });
  const victim = who === "a" ? a : b;
  const c = client.stack;
  const socks = [0, 1, 2, 3].map(() => c.connect(GUEST.ip, 7));
  world.run(() => socks.every((s) => c.state(s) === "ESTABLISHED"), 5000);
  assert.ok(
    socks.every((s) => c.state(s) === "ESTABLISHED"),
    `seed ${seed}: connections not established`,
  );
  const sent = socks.map(() => "");
  const got = socks.map(() => "");
  const start = world.now;
  let n = 0;
  let paused = false;
  world.every(1, () => {
    socks.forEach((s, i) => {
      if (c.state(s) !== "ESTABLISHED") return;
      if (world.now - start < 600 && world.now % 3 === 0) {
        const m = `c${i}m${n++};`;
        if (c.send(s, Buffer.from(m)) === m.length) sent[i] += m;
      }
      const d = c.recv(s, 65536);
      if (d) got[i] += d.toString();
    });
    if (!paused && world.now - start > 100 && a.node.dev.netbuf.packets > 0) {
      paused = true;
      victim.pause(pauseMs, wake);
    }
  });
  world.run(
    () =>
      world.now - start > 600 + pauseMs &&
      got.every((g, i) => g === sent[i]) &&
      (who === "a" || a.node.state === "protected"),
    1500,
  );
  assert.ok(paused, `seed ${seed}: the primary never held output to pause on`);
  return {
    activation: cluster.history.activations()[0]?.reason ?? "none",
    stalledPrimaryEnds: a.node.state,
    backupEnds: b.node.state,
    violations: [...new Set(check(cluster.history).map((v) => v.invariant))],
    clientReadWrongBytes: got.some((g, i) => !(sent[i] as string).startsWith(g)),
    clientStreamsComplete: got.every((g, i) => g === sent[i]),
  };
}

for (const wake of ["input-first", "timers-first"] as const) {
  test(`a primary paused past the heartbeat timeout, then resumed (${wake}): fenced, nothing of it released`, () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const { backupEnds: _, ...outcome } = pausePrimary(seed, 3 * HEARTBEAT_TIMEOUT_MS, wake);
      assert.deepEqual(outcome, AFTER_A_LONG_PRIMARY_PAUSE, `seed ${seed}`);
    }
  });

  test(`a backup paused past the heartbeat timeout, then resumed (${wake}): it does not activate from its stale image and is resynced`, () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const { stalledPrimaryEnds, ...rest } = pausePrimary(seed, 5 * HEARTBEAT_TIMEOUT_MS, wake, "b");
      assert.deepEqual(
        { primaryEnds: stalledPrimaryEnds, ...rest },
        AFTER_A_LONG_BACKUP_PAUSE,
        `seed ${seed}`,
      );
    }
  });
}

test("a pause shorter than the heartbeat timeout changes nothing", () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { backupEnds: _, ...outcome } = pausePrimary(seed, HEARTBEAT_TIMEOUT_MS / 2, "input-first");
    assert.deepEqual(
      outcome,
      {
        activation: "none",
        stalledPrimaryEnds: "protected",
        violations: [],
        clientReadWrongBytes: false,
        clientStreamsComplete: true,
      },
      `seed ${seed}`,
    );
  }
});
