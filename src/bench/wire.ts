/**
 * Case (f): wire bytes per epoch for the workload presets, encoded three ways
 * from the same captured pages: no compression, LZ4, and XOR against the last
 * version sent plus LZ4 (with a bounded sent-page cache). The guest really
 * runs (seeded), a full sync first sends every page (filling the cache as a
 * real sync would), then every epoch's dirty pages go out all three ways.
 */
import { CopyCapturer } from "../domain/capture.js";
import { Domain, geometryOfMiB } from "../domain/domain.js";
import { bootGuest } from "../guest/guest.js";
import { parseWorkload } from "../guest/workload.js";
import { type BatchOptions, encodeBatchFrame } from "../protocol/batch.js";
import { MAX_BATCH_ENTRIES } from "../protocol/constants.js";
import { SentPageCache } from "../protocol/delta.js";
import type { BenchCase } from "./case.js";
import { type Figure, figure, pairedRatios } from "./stats.js";

/** Encodes `count` pages and returns the wire bytes of all the frames. */
function wireBytes(
  count: number,
  pfn: (i: number) => number,
  page: (i: number) => Uint8Array,
  opts: BatchOptions,
): number {
  let bytes = 0;
  for (let from = 0; from < count; from += MAX_BATCH_ENTRIES) {
    const n = Math.min(MAX_BATCH_ENTRIES, count - from);
    bytes += encodeBatchFrame(
      "pageBatch",
      1,
      n,
      (i) => pfn(from + i),
      (i) => page(from + i),
      opts,
      { session: 1, seq: 0 },
    ).wireBytes;
  }
  return bytes;
}

export interface WireLoad {
  readonly label: string;
  readonly workload: string;
  readonly mib: number;
}

export function benchWire(load: WireLoad, epochs: number, intervalMs: number, cachePages: number): Figure[] {
  const d = new Domain(geometryOfMiB(load.mib, 16));
  const k = bootGuest(d, { seed: 11, workload: parseWorkload(load.workload) });
  k.run(200); // boot and let the workload settle
  const cache = new SentPageCache(d.pages, cachePages);
  // The full sync: every page once (zero pages as ZERO), which fills the cache.
  wireBytes(
    d.pages,
    (i) => i,
    (i) => d.memory.page(i),
    { compress: true, delta: cache },
  );
  d.collectDirty();
  const capturer = new CopyCapturer(d.memory);
  const s = { none: [] as number[], lz4: [] as number[], xor: [] as number[], pages: [] as number[] };
  for (let e = 0; e < epochs; e++) {
    k.run(intervalMs);
    const cap = capturer.capture(d.collectDirty());
    const pfn = (i: number) => cap.pfn(i);
    const page = (i: number) => cap.page(i);
    s.pages.push(cap.count);
    s.none.push(wireBytes(cap.count, pfn, page, { compress: false }));
    s.lz4.push(wireBytes(cap.count, pfn, page, { compress: true }));
    s.xor.push(wireBytes(cap.count, pfn, page, { compress: true, delta: cache }));
    cap.release();
  }
  const kb = (xs: number[]) => xs.map((x) => x / 1024);
  const tag = load.label;
  const hitRate = cache.stats.hits / Math.max(1, cache.stats.hits + cache.stats.misses);
  return [
    figure(`wire_${tag}_dirty_pages`, "pages", s.pages, {
      detail: `${load.workload} on ${load.mib} MiB, ${intervalMs} ms epochs`,
    }),
    figure(`wire_${tag}_none`, "KiB", kb(s.none)),
    figure(`wire_${tag}_lz4`, "KiB", kb(s.lz4)),
    figure(`wire_${tag}_xor_lz4`, "KiB", kb(s.xor), {
      detail: `cache of ${cachePages} pages, ${(100 * hitRate).toFixed(0)}% hits`,
    }),
    figure(`wire_${tag}_lz4_vs_none`, "ratio", pairedRatios(s.lz4, s.none)),
    figure(`wire_${tag}_xor_lz4_vs_lz4`, "ratio", pairedRatios(s.xor, s.lz4), {
      detail: "target: at most 0.5 on a hot-set dirty workload",
    }),
  ];
}

const LOADS: WireLoad[] = [
  { label: "hotset", workload: "dirty:rate=40960,hot=0.05,pattern=uniform", mib: 256 },
  { label: "web", workload: "web", mib: 256 },
  { label: "compile", workload: "compile", mib: 256 },
  { label: "hot1", workload: "dirty:rate=40960,hot=1,pattern=uniform", mib: 256 },
];

export const WIRE_CASES: BenchCase[] = [
  {
    name: "wire-bytes",
    title: "(f) wire bytes per 25 ms epoch: none vs LZ4 vs XOR+LZ4 (cache 16,384 pages = 64 MiB)",
    quick: true,
    run: (ctx) => {
      const out: Figure[] = [];
      for (const load of ctx.quick ? LOADS.slice(0, 2) : LOADS) {
        ctx.log(`  ${load.label}: ${load.workload}`);
        out.push(...benchWire(load, ctx.quick ? 20 : 60, 25, 16384));
      }
      return out;
    },
  },
];
