import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KvLoad, type KvLoadSummary } from "../../src/client/kvload.js";
import { DivergenceSwitch } from "../../src/domain/divergence.js";
import { ColoSim, type ColoSim as ColoSimT, GUEST } from "./colosim.js";

const SEEDS = Number(process.env.REMUSD_COLO_SEEDS ?? 3);
const seeds = (base: number) => Array.from({ length: SEEDS }, (_, i) => base + i * 7919);

interface KvRun {
  summary: KvLoadSummary;
  /** Replies received after a kill, if there was one. */
  repliesAfterKill: number;
}

/**
 * Eight kvd connections (the real load generator and checker) for `loadMs`,
 * then drain and read back every acknowledged key. `at(now)` may kill a
 * replica in the middle.
 */
function runKv(sim: ColoSimT, loadMs: number, at?: (now: number, load: KvLoad) => boolean): KvRun {
  const start = sim.now;
  const load = new KvLoad(
    sim.client.stack,
    {
      connections: 8,
      seed: sim.opts.seed,
      targetIp: GUEST.ip,
      port: 6379,
      keysPerConnection: 16,
      pipeline: 2,
    },
    start,
  );
  let killedAt: number | undefined;
  let repliesAtKill = 0;
  const tick = sim.world.every(1, () => {
    load.poll(sim.now);
    if (sim.now - start >= loadMs) load.finish();
    if (killedAt === undefined && at?.(sim.now, load)) {
      killedAt = sim.now;
      repliesAtKill = load.summary.replies;
    }
  });
  sim.run(20_000, () => load.done);
  tick.cancel();
  assert.ok(load.done, `seed ${sim.opts.seed}: the load did not finish (${load.currentPhase})`);
  return { summary: load.summary, repliesAfterKill: load.summary.replies - repliesAtKill };
}

function assertClean(sim: ColoSimT, s: KvLoadSummary): void {
  const seed = sim.opts.seed;
  assert.equal(s.resets, 0, `seed ${seed}: resets ${s.errors.join("; ")}`);
  assert.equal(s.lostWrites, 0, `seed ${seed}: lost writes ${s.errors.join("; ")}`);
  assert.equal(s.wrongReads, 0, `seed ${seed}: wrong reads ${s.errors.join("; ")}`);
  assert.equal(s.protocolErrors, 0, `seed ${seed}: ${s.errors.join("; ")}`);
  assert.ok(s.ok && s.replies > 200, `seed ${seed}: ${s.replies} replies`);
  for (const c of sim.checkpoints)
    assert.ok(c.digestsEqual, `seed ${seed}: digests differ after a checkpoint`);
}

describe("COLO simulation: two guests, comparator and rewriter", () => {
  for (const seed of seeds(1)) {
    it(`seed ${seed}: kvd clients are served on matching output; the replicas' ISNs differ and are rewritten`, () => {
      const sim = new ColoSim({ seed, workload: "web" });
      const { summary } = runKv(sim, 1500);
      assertClean(sim, summary);
      // Every connection was accepted with a different ISN on each replica...
      const isns = [...sim.isns.values()];
      assert.ok(isns.length >= 8);
      for (const e of isns) {
        assert.ok(
          e.primary !== undefined && e.secondary !== undefined && e.primary !== e.secondary,
          `seed ${seed}`,
        );
      }
      // ...learned by the rewriter, whose renumbering made the secondary's bytes line up.
      assert.ok(sim.rewriter.stats.learned >= 8);
      assert.ok(sim.rewriter.stats.outbound > 100 && sim.rewriter.stats.inbound > 100);
      const st = sim.comparator.stats;
      assert.ok(st.compared.match > 1000, `seed ${seed}: ${JSON.stringify(st)}`);
      assert.equal(sim.released, st.compared.match, "everything the client got was matched first");
      // Per-connection keys make every reply deterministic: the real sources of divergence here
      // (host timing, the secondary's own RNG) change timing and numbering, never the bytes.
      assert.equal(st.compared.mismatch, 0, `seed ${seed}: ${JSON.stringify(sim.reasons())}`);
      assert.deepEqual(sim.reasons(), {});
    });
  }

  it("without the rewriter the secondary's own ISNs keep its bytes from lining up: every new connection waits for a timeout checkpoint", () => {
    const sim = new ColoSim({ seed: 3, rewrite: false, compare: { timeoutMs: 300, checkIntervalMs: 100 } });
    const { summary } = runKv(sim, 800);
    assertClean(sim, summary);
    assert.ok((sim.reasons().timeout ?? 0) >= 1, JSON.stringify(sim.reasons()));
    assert.equal(sim.rewriter.stats.learned, 0);
    // After that checkpoint the secondary holds the primary's connections: output matches again.
    assert.ok(sim.comparator.stats.compared.match > 100);
  });

  for (const seed of seeds(11)) {
    it(`seed ${seed}: injected divergence on the secondary forces checkpoints; clients never see it`, () => {
      const sim = new ColoSim({
        seed,
        workload: "web",
        secondaryDivergence: new DivergenceSwitch({ reply: 0.02, stall: 0.05, seed }),
      });
      const { summary } = runKv(sim, 1500);
      assertClean(sim, summary);
      const mism = sim.reasons().mismatch ?? 0;
      const perturbed = sim.secondary.domain.divergence!.counts.perturbed;
      assert.ok(perturbed > 5 && mism > 5, `seed ${seed}: ${perturbed} perturbed, ${mism} mismatches`);
      // A mismatch forces the checkpoint before a second perturbation can pile up unseen.
      assert.ok(mism <= perturbed);
      assert.ok(
        sim.checkpoints.some((c) => c.secondaryOnly > 0),
        "the secondary dirtied pages of its own",
      );
    });
  }

  for (const seed of seeds(21)) {
    it(`seed ${seed}: primary killed mid-load: the secondary takes over without rollback, sessions carry on`, () => {
      const sim = new ColoSim({
        seed,
        workload: "web",
        secondaryDivergence: new DivergenceSwitch({ stall: 0.05, seed }),
      });
      const killAfter = 300 + ((seed * 37) % 700);
      let deltas = 0;
      const start = sim.now;
      const { summary, repliesAfterKill } = runKv(sim, 1500, (now) => {
        if (now - start < killAfter) return false;
        deltas = sim.rewriter.entries().filter((e) => e.learned && e.delta !== 0).length;
        sim.killPrimary();
        return true;
      });
      assertClean(sim, summary);
      assert.ok(repliesAfterKill > 100, `seed ${seed}: ${repliesAfterKill} replies after the kill`);
      // The sessions that survived were numbered differently on the secondary: the rewriter kept them valid.
      assert.ok(deltas >= 1, `seed ${seed}: no connection with a nonzero offset at the kill`);
      assert.ok(sim.rewriter.failedOver);
    });
  }

  it("secondary killed mid-load: the primary carries on unprotected", () => {
    const sim = new ColoSim({ seed: 5, workload: "web" });
    const start = sim.now;
    const { summary, repliesAfterKill } = runKv(sim, 1200, (now) => {
      if (now - start < 500) return false;
      sim.killSecondary();
      return true;
    });
    assertClean(sim, summary);
    assert.ok(repliesAfterKill > 100);
  });

  it("the dirty set must be two-sided: the primary's pages alone leave the secondary different", () => {
    const sim = new ColoSim({ seed: 8, workload: "web" });
    sim.world.runFor(200);
    sim.checkpoint("manual");
    sim.world.runFor(200);
    const two = sim.checkpoint("manual");
    assert.ok(two.secondaryOnly > 0);
    assert.equal(two.digestsEqual, true);
    sim.world.runFor(200);
    const one = sim.checkpoint("manual", true);
    assert.ok(one.secondaryOnly > 0);
    assert.equal(one.digestsEqual, false);
  });
});
