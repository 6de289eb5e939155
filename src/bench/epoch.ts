/**
 * Case (g): the primary's work for one epoch of 1,000 dirty pages on domains
 * of 64 MiB to 4 GiB: drain the dirty log, capture (copy-on-write), encode the
 * pages into PAGE_BATCH frames (LZ4, CRC) on this thread, release. The same
 * number of pages, spread over the whole domain each time; the cost should
 * follow the dirty pages, not the domain size.
 */
import { CowCapturer } from "../domain/capture.js";
import { GuestMemory } from "../domain/memory.js";
import { encodeBatchFrame } from "../protocol/batch.js";
import { MAX_BATCH_ENTRIES } from "../protocol/constants.js";
import type { BenchCase } from "./case.js";
import { fillPages, seededPfns } from "./pages.js";
import { type Figure, figure, pairedRatios, timeNs } from "./stats.js";

export function benchEpochCost(sizesMiB: readonly number[], dirty: number, rounds: number): Figure[] {
  const setups = sizesMiB.map((mib) => {
    const mem = GuestMemory.ofMiB(mib);
    const pfns = seededPfns(dirty, mem.pages, mib);
    fillPages(mem, pfns, "half", mib);
    mem.log.clear();
    return {
      mib,
      mem,
      pfns,
      cow: new CowCapturer(mem, dirty),
      out: new Uint32Array(dirty),
      samples: [] as number[],
    };
  });
  for (let r = 0; r < rounds + 3; r++) {
    for (const s of setups) {
      for (let i = 0; i < dirty; i++) s.mem.log.mark(s.pfns[i] as number);
      const t = timeNs(() => {
        const cap = s.cow.capture(s.mem.log.drain(s.out));
        for (let from = 0; from < cap.count; from += MAX_BATCH_ENTRIES) {
          const n = Math.min(MAX_BATCH_ENTRIES, cap.count - from);
          encodeBatchFrame(
            "pageBatch",
            r + 1,
            n,
            (i) => cap.pfn(from + i),
            (i) => cap.page(from + i),
            { compress: true },
            { session: 1, seq: r },
          );
        }
        cap.release();
      });
      if (r >= 3) s.samples.push(t);
    }
  }
  const base = setups[0];
  if (!base) return [];
  const figures: Figure[] = [];
  for (const s of setups) {
    figures.push(
      figure(
        `epoch_${dirty}_pages_${s.mib}MiB`,
        "ms",
        s.samples.map((t) => t / 1e6),
        { detail: "drain + copy-on-write capture + LZ4 batches + release" },
      ),
    );
    if (s !== base) {
      figures.push(
        figure(
          `epoch_${dirty}_pages_${s.mib}MiB_vs_${base.mib}MiB`,
          "ratio",
          pairedRatios(s.samples, base.samples),
        ),
      );
    }
  }
  return figures;
}

export const EPOCH_CASES: BenchCase[] = [
  {
    name: "epoch-cost",
    title: "(g) epoch cost with 1,000 dirty pages, 64 MiB to 4 GiB",
    quick: true,
    run: (ctx) => benchEpochCost(ctx.quick ? [64, 4096] : [64, 256, 1024, 4096], 1000, ctx.quick ? 21 : 61),
  },
];
