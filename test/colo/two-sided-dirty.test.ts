/**
 * Negative control for the two-sided dirty set (SPEC §7.6, issue 12): at a
 * COLO checkpoint the pages dirtied on either side since the last one are
 * brought to the primary's version. The secondary reports its own in
 * COLO_DIRTY; a page only the secondary wrote is in no other set, so without
 * it that page keeps the secondary's bytes and the replicas differ after the
 * checkpoint.
 *
 * Same seed, same injected divergence (it forces the checkpoints), twice:
 *  - production as it is: the secondary wrote pages the primary did not, and
 *    every checkpoint's digests are equal on both sides;
 *  - with `dropSecondaryDirtyPagesForTest`: the secondary's dirty pages are
 *    collected (its log drained, as for real) but reported as none; the
 *    digest check catches the replicas differing (the backup, verifying,
 *    refuses each checkpoint whose applied digest is not the primary's).
 * If the union breaks (the primary ignores COLO_DIRTY's pages, the backup
 * sends an empty bitmap, the XOR base of those pages is kept), the first half
 * fails; if the scenario stops exercising it (no secondary-only pages, or
 * the seam stops reaching the secondary), the second half fails.
 *
 * Pages only: the disk half of the union has no such control. With the
 * guests here the secondary writes the blocks the primary writes too (the
 * disk workload's file, kvd's append-only file), which the primary streams
 * during the epoch; dropping the secondary's blocks (tried under
 * `disk:rate=32`) left both disks equal after every checkpoint.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DivergenceSwitch } from "../../src/domain/divergence.js";
import { ColoPair, runKv } from "./colopair.js";

interface Observed {
  /** Checkpoints whose COLO_DIRTY the secondary sent. */
  pauses: number;
  /** Pages the secondary dirtied that the primary had not dirtied in the same epoch. */
  secondaryOnly: number;
  /** Pages withheld from COLO_DIRTY by the test seam. */
  dropped: number;
}

/**
 * Wraps the secondary's pause (what the backup machine sends as COLO_DIRTY)
 * to count, at each checkpoint, the pages only the secondary dirtied (the
 * primary is paused then, waiting for COLO_DIRTY, so its log holds the
 * epoch's pages); with `drop`, the test-only fault
 * `dropSecondaryDirtyPagesForTest`: the secondary's pages are collected
 * (its log drained) and thrown away, its disk blocks still reported.
 */
function observeSecondaryPause(pair: ColoPair, drop: boolean): Observed {
  const sec = pair.b.node.coloSecondary;
  assert.ok(sec, "node b is a COLO secondary from the start");
  const seen: Observed = { pauses: 0, secondaryOnly: 0, dropped: 0 };
  const real = sec.pause.bind(sec);
  const dropSecondaryDirtyPagesForTest = (d: { pages: Uint32Array; blocks: Uint32Array }) => {
    seen.dropped += d.pages.length;
    return { pages: new Uint32Array(0), blocks: d.blocks };
  };
  sec.pause = () => {
    const d = real();
    const primaryLog = pair.a.domain.memory.log;
    seen.pauses++;
    for (const pfn of d.pages) if (!primaryLog.has(pfn)) seen.secondaryOnly++;
    return drop ? dropSecondaryDirtyPagesForTest(d) : d;
  };
  return seen;
}

function run(seed: number, drop: boolean) {
  const pair = new ColoPair({
    seed,
    // Mismatches on the secondary force checkpoints; kvd's own keys would give none.
    secondaryDivergence: new DivergenceSwitch({ reply: 0.02, seed }),
  });
  const seen = observeSecondaryPause(pair, drop);
  let summary: ReturnType<typeof runKv>["summary"] | undefined;
  try {
    summary = runKv(pair, 1500).summary;
  } catch {
    // With the fault the pair may never finish the load: what matters is what the digests said.
  }
  return { pair, seen, summary, digests: pair.digests() };
}

describe("COLO: the two-sided dirty set (negative control)", () => {
  for (const seed of [3, 4242]) {
    it(`seed ${seed}: with the secondary's pages the replicas are equal after every checkpoint; without them a digest check fails`, () => {
      const good = run(seed, false);
      assert.ok(good.seen.pauses >= 5, `seed ${seed}: ${good.seen.pauses} checkpoints`);
      // The scenario exercises the union: the secondary wrote pages of its own.
      assert.ok(good.seen.secondaryOnly > 0, `seed ${seed}: no secondary-only pages`);
      assert.deepEqual(good.digests.differ, [], `seed ${seed}: digests differ with the real code`);
      assert.equal(good.pair.nacks, 0, `seed ${seed}: the backup refused a checkpoint (its digest differed)`);
      assert.ok(good.digests.compared >= good.seen.pauses, JSON.stringify(good.digests));
      assert.ok(good.summary?.ok, `seed ${seed}: ${good.summary?.errors.join("; ")}`);

      const bad = run(seed, true);
      assert.ok(bad.seen.dropped > 0 && bad.seen.secondaryOnly > 0, JSON.stringify(bad.seen));
      // The backup (`verify`) refuses a checkpoint whose digest after the apply is not the primary's.
      assert.ok(
        bad.digests.differ.length > 0 || bad.pair.nacks > 0,
        `seed ${seed}: dropping ${bad.seen.dropped} secondary pages went unnoticed: ${JSON.stringify(bad.digests)}`,
      );
    });
  }
});
