/**
 * COLO on production's Node, in the simulated world (colopair.ts): kvd
 * clients served on matching output, sequence rewriting between replicas
 * whose ISNs differ, checkpoints forced by injected divergence with equal
 * digests after each, and a kill of either replica at every step of the COLO
 * checkpoint protocol: 0 resets, 0 lost acknowledged writes, 0 wrong reads.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KvLoadSummary } from "../../src/client/kvload.js";
import { DivergenceSwitch } from "../../src/domain/divergence.js";
import type { RecordType } from "../../src/protocol/constants.js";
import { GUEST, pairOf } from "../sim/cluster.js";
import { ColoPair, runKv } from "./colopair.js";

const SEEDS = Number(process.env.REMUSD_COLO_SEEDS ?? 2);
const seeds = (base: number) => Array.from({ length: SEEDS }, (_, i) => base + i * 7919);

function assertClean(pair: ColoPair, s: KvLoadSummary, minReplies = 200): void {
  const seed = pair.opts.seed;
  assert.equal(s.resets, 0, `seed ${seed}: resets ${s.errors.join("; ")}`);
  assert.equal(s.lostWrites, 0, `seed ${seed}: lost writes ${s.errors.join("; ")}`);
  assert.equal(s.wrongReads, 0, `seed ${seed}: wrong reads ${s.errors.join("; ")}`);
  assert.equal(s.protocolErrors, 0, `seed ${seed}: ${s.errors.join("; ")}`);
  assert.ok(s.ok && s.replies > minReplies, `seed ${seed}: ${s.replies} replies`);
  const d = pair.digests();
  assert.deepEqual(d.differ, [], `seed ${seed}: digests differ after checkpoints ${d.differ.join(", ")}`);
  assert.equal(pair.nacks, 0, `seed ${seed}: a checkpoint was refused`);
}

describe("COLO on the Node: comparator, rewriter, checkpoints", () => {
  for (const seed of seeds(1)) {
    it(`seed ${seed}: kvd clients are served on matching output; the replicas' ISNs differ and are rewritten`, () => {
      const pair = new ColoPair({ seed });
      let outputs = 0;
      let between = 0;
      pair.watch((type, from) => {
        if (type !== "coloOutput" || from !== "b") return;
        outputs++;
        if (pair.now % 1 !== 0) between++;
      });
      const { summary } = runKv(pair, 1500);
      assertClean(pair, summary);
      const cmp = pair.a.node.coloPrimary?.comparator;
      const rw = pair.b.node.coloSecondary?.rewriter;
      assert.ok(cmp && rw);
      assert.ok(cmp.stats.compared.match > 1000, JSON.stringify(cmp.stats));
      // Per-connection keys make every reply deterministic: timing and numbering differ, bytes do not.
      assert.equal(cmp.stats.compared.mismatch, 0, JSON.stringify(cmp.stats));
      assert.equal(pair.checkpoints(), 0);
      // Every connection was accepted with another ISN on the secondary, learned and renumbered.
      assert.ok(rw.stats.learned >= 8, JSON.stringify(rw.stats));
      assert.ok(rw.stats.outbound > 100 && rw.stats.inbound > 100, JSON.stringify(rw.stats));
      // The secondary's guest takes mirrored input at a receive interrupt (Node.flush), not on its
      // next step: its replies leave between its steps (which run on whole milliseconds here).
      assert.ok(between > outputs / 2, `${between} of ${outputs} COLO_OUTPUT records between steps`);
    });
  }

  for (const seed of seeds(11)) {
    it(`seed ${seed}: injected divergence on the secondary forces checkpoints; digests are equal after each; clients never see it`, () => {
      const pair = new ColoPair({
        seed,
        secondaryDivergence: new DivergenceSwitch({ reply: 0.02, stall: 0.05, seed }),
      });
      const { summary } = runKv(pair, 1500);
      assertClean(pair, summary);
      const n = pair.checkpoints();
      const mism = pair.a.node.primary?.coloCheckpoints.get(1) ?? 0;
      assert.ok(n > 5 && mism > 5, `seed ${seed}: ${n} checkpoints, ${mism} on a mismatch`);
      assert.ok(pair.digests().compared >= n, `seed ${seed}: ${pair.digests().compared} digests for ${n}`);
      // The secondary wrote pages of its own: the dirty set the checkpoints carried was two-sided.
      assert.ok(pair.secondaryDirtyPages > 0);
    });
  }

  for (const seed of seeds(21)) {
    it(`seed ${seed}: primary killed mid-load, no checkpoint since the connections opened: the secondary takes over with its own ISNs, the rewriter keeps the sessions valid`, () => {
      const pair = new ColoPair({ seed, secondaryDivergence: new DivergenceSwitch({ stall: 0.05, seed }) });
      const start = pair.now;
      let deltas = 0;
      const run = runKv(pair, 1500, (now) => {
        if (now - start < 300 + ((seed * 37) % 500)) return false;
        const rw = pair.b.node.coloSecondary?.rewriter;
        deltas = rw?.entries().filter((e) => e.learned && e.delta !== 0).length ?? 0;
        pair.a.kill("reset");
        return true;
      });
      assertClean(pair, run.summary);
      assert.equal(pair.checkpoints(), 0, "no checkpoint zeroed the offsets");
      assert.ok(deltas >= 8, `seed ${seed}: ${deltas} connections with a nonzero offset at the kill`);
      assert.ok(run.repliesAfter > 100, `seed ${seed}: ${run.repliesAfter} replies after the kill`);
      const edge = pair.b.node.coloEdge;
      assert.ok(edge?.failedOver && edge.stats.outbound > 100 && edge.stats.inbound > 100);
      assert.equal(pair.b.node.roleName, "primary");
    });
  }

  it("the primary's new connection replacing the secondary's live link ends the old link's COLO session before anything of the new one (its guest's output never goes out there before COLO_START)", () => {
    // Seen under the lease nemesis: a secondary SIGSTOPped past the heartbeat timeout accepted its
    // primary's redial while the old link was still its active one, and its guest's next output went
    // out on the new link before COLO_START there (a protocol error thrown out of the node's step).
    const pair = new ColoPair({ seed: 1 });
    const atReplace: (number | undefined)[] = [];
    pair.cluster.listeners.push((n, e) => {
      if (n === pair.b && e.type === "checkpoint.discarded" && e.reason === "the primary reconnected")
        atReplace.push(n.node.backup?.coloRunning);
    });
    let dialled = false;
    const { summary } = runKv(pair, 1000, () => {
      if (dialled || pair.now < 500 || pair.b.node.backup?.coloRunning === undefined) return false;
      dialled = pair.cluster.dial(pair.a, pair.b) !== undefined;
      return dialled;
    });
    assert.ok(dialled);
    assert.deepEqual(atReplace, [undefined], "the COLO session had ended when the new link replaced the old");
    assertClean(pair, summary);
    // The new link's sync started the next session.
    assert.notEqual(pair.b.node.backup?.coloRunning, undefined);
    assert.equal(pair.a.node.state, "protected");
  });

  it("a planned switchover in COLO mode: the secondary takes over after the final checkpoint, clients see nothing", () => {
    const pair = new ColoPair({ seed: 31 });
    const start = pair.now;
    let asked = false;
    const run = runKv(pair, 1200, (now) => {
      if (asked || now - start < 400) return false;
      asked = true;
      assert.deepEqual(pair.b.node.failover(true, now), { activated: false, pending: true });
      return true;
    });
    assertClean(pair, run.summary);
    assert.equal(pair.b.node.roleName, "primary");
    assert.equal(pair.a.node.state, "stopped");
    assert.ok(run.repliesAfter > 100);
    const activated = pair.cluster.history.events("failover.activated", "b");
    assert.equal(activated[0]?.e.reason, "planned");
  });

  it("a paused COLO primary superseded by its secondary is fenced and rejoins by a full sync (never a rewind: the secondary ran ahead of its checkpoint); the pair is COLO-protected again", () => {
    const pair = new ColoPair({ seed: 51 });
    const { world, a, b } = pair;
    const refused: string[] = [];
    pair.cluster.listeners.push((n, e) => {
      if (n.name === "b" && e.type === "rewind.refused") refused.push(e.reason);
    });
    const start = pair.now;
    let paused = false;
    const run = runKv(pair, 2500, (now) => {
      if (!paused && now - start >= 400) {
        paused = true;
        a.pause(400);
      }
      if (paused && a.node.state === "fenced") {
        a.node.demote(now, "fenced");
        a.peer = undefined;
        b.peer = a;
        return true;
      }
      return false;
    });
    assertClean(pair, run.summary);
    world.run(() => b.node.state === "protected", 5000);
    assert.equal(b.node.state, "protected");
    assert.equal(a.node.state, "standby");
    assert.deepEqual(refused, ["COLO mode: the activated secondary ran ahead of its last checkpoint"]);
    // The new pair runs COLO: the former primary is the secondary now, its guest on the mirrored input.
    world.runFor(100);
    assert.ok(b.node.primary?.coloRunning && a.node.coloSecondary?.running);
    const d = pair.digests();
    assert.deepEqual(d.differ, []);
  });

  for (const [pm, bm] of [
    ["colo", "remus"],
    ["remus", "colo"],
  ] as const) {
    it(`a ${pm} primary and a ${bm} backup never pair: the session ends at the first record of the other mode`, () => {
      const p = pairOf(41, { mode: (n) => (n === "a" ? pm : bm), net: GUEST, domainMiB: 8 });
      const refused: string[] = [];
      p.cluster.listeners.push((_n, e) => {
        if (e.type === "peer.lost") refused.push(e.reason);
      });
      p.world.run(() => refused.length >= 2, 3000);
      assert.notEqual(p.a.node.state, "protected");
      assert.ok(
        refused.some((r) => /bad-order|not in COLO mode/.test(r)),
        refused.join("; "),
      );
    });
  }

  // Kill a replica as each record of the COLO checkpoint protocol (and of its data path) goes out.
  const STEPS: RecordType[] = [
    "coloInput",
    "coloOutput",
    "coloCheckpoint",
    "coloDirty",
    "pageBatch",
    "checkpointEnd",
    "ack",
  ];
  for (const victim of ["primary", "secondary"] as const) {
    for (const [i, step] of STEPS.entries()) {
      const seed = 100 + i * 13 + (victim === "primary" ? 0 : 7);
      it(`seed ${seed}: the ${victim} dies as ${step} goes out: ${victim === "primary" ? "the secondary takes over without rollback" : "the primary goes on unprotected"}, sessions carry on`, () => {
        // A perturbed reply is not a valid execution (a client served by that replica would see it), so
        // a secondary that may take over diverges only in timing; periodic checkpoints give every step.
        const pair = new ColoPair({
          seed,
          compare: { periodMs: 40 },
          secondaryDivergence: new DivergenceSwitch(
            victim === "primary" ? { stall: 0.05, seed } : { reply: 0.02, stall: 0.05, seed },
          ),
        });
        const start = pair.now;
        let armed = false;
        let killed = false;
        pair.watch((type) => {
          if (!armed || killed || type !== step) return;
          killed = true;
          // At once, as its own event (the sender is in the middle of a call).
          pair.world.at(pair.now, () => (victim === "primary" ? pair.a : pair.b).kill("reset"));
        });
        const run = runKv(pair, 1500, (now) => {
          if (!armed && now - start >= 300 + (seed % 200)) armed = true;
          return killed;
        });
        assert.ok(killed, `seed ${seed}: no ${step} went out`);
        assertClean(pair, run.summary);
        assert.ok(run.repliesAfter > 100, `seed ${seed}: ${run.repliesAfter} replies after the kill`);
        if (victim === "primary") {
          assert.equal(pair.b.node.roleName, "primary");
          assert.ok(pair.b.node.coloEdge?.failedOver, `seed ${seed}: no rewriter at the edge`);
        } else {
          assert.equal(pair.a.node.roleName, "primary");
          assert.equal(pair.a.node.state, "unprotected");
        }
      });
    }
  }
});
