/**
 * Domain benchmarks from the first issue, kept as they were so the README's
 * figures stay comparable: capture into staging versus a plain Buffer.copy
 * gather of the same pages, and dirty-set collection on a 4096 MiB domain
 * versus a 64 MiB domain with the same dirty pages.
 */

import { CopyCapturer } from "../domain/capture.js";
import { GuestMemory, PAGE_SIZE } from "../domain/memory.js";
import type { BenchCase } from "./case.js";
import { seededPfns } from "./pages.js";
import { type Figure, figure, interleaved, pairedRatios, timeNs } from "./stats.js";

const us = (ns: number) => ns / 1e3;

export function benchCapture(dirtyPages: number, rounds: number, domainMiB = 256): Figure[] {
  const mem = GuestMemory.ofMiB(domainMiB);
  for (let p = 0; p < mem.pages; p += 7) mem.buf.writeUInt32LE(p, p * PAGE_SIZE);
  const pfns = seededPfns(dirtyPages, mem.pages, 42);
  const capturer = new CopyCapturer(mem, dirtyPages);
  const plain = Buffer.allocUnsafe(dirtyPages * PAGE_SIZE);
  const s = interleaved(
    {
      capture: () => capturer.capture(pfns).release(),
      gather: () => {
        for (let i = 0; i < pfns.length; i++) {
          const a = (pfns[i] as number) * PAGE_SIZE;
          mem.buf.copy(plain, i * PAGE_SIZE, a, a + PAGE_SIZE);
        }
      },
    },
    rounds,
  );
  const cap = s.capture as number[];
  const gather = s.gather as number[];
  return [
    figure(`capture_${dirtyPages}_pages_vs_buffer_copy`, "ratio", pairedRatios(cap, gather), {
      detail: `copy capture vs a plain Buffer.copy gather of the same pages (${domainMiB} MiB domain)`,
    }),
    figure(`capture_${dirtyPages}_pages_us`, "µs", cap.map(us)),
    figure(`gather_${dirtyPages}_pages_us`, "µs", gather.map(us)),
  ];
}

/**
 * Collect-and-clear of the same 1,000 dirty pages (pfns inside the first 64 MiB)
 * on a 4096 MiB and a 64 MiB domain: the cost must not grow with the domain.
 * Only the drain is timed; marking the pages (the guest's writes) is not.
 */
export function benchCollect(dirtyPages: number, rounds: number): Figure[] {
  const big = GuestMemory.ofMiB(4096);
  const small = GuestMemory.ofMiB(64);
  const pfns = seededPfns(dirtyPages, small.pages, 7);
  const out = new Uint32Array(dirtyPages);
  const samples: Record<"d4096" | "d64", number[]> = { d4096: [], d64: [] };
  for (let r = 0; r < rounds + 20; r++) {
    for (const [name, m] of [
      ["d4096", big],
      ["d64", small],
    ] as const) {
      for (let i = 0; i < pfns.length; i++) m.log.mark(pfns[i] as number);
      const t = timeNs(() => m.log.drain(out));
      if (r >= 20) samples[name].push(t);
    }
  }
  return [
    figure(
      `collect_${dirtyPages}_dirty_4096MiB_vs_64MiB`,
      "ratio",
      pairedRatios(samples.d4096, samples.d64),
      {
        detail: "drain of the same pfns on both domain sizes",
      },
    ),
    figure(`collect_${dirtyPages}_dirty_64MiB_us`, "µs", samples.d64.map(us)),
  ];
}

export const DOMAIN_CASES: BenchCase[] = [
  {
    name: "capture-1000",
    title: "copy capture of 1,000 dirty pages vs a plain gather copy",
    quick: true,
    run: (ctx) => benchCapture(1000, ctx.quick ? 21 : 41),
  },
  {
    name: "capture-10000",
    title: "copy capture of 10,000 dirty pages vs a plain gather copy",
    quick: false,
    run: () => benchCapture(10000, 41),
  },
  {
    name: "collect-4096MiB-vs-64MiB",
    title: "dirty-set collection, 4096 MiB vs 64 MiB domain",
    quick: true,
    run: (ctx) => benchCollect(1000, ctx.quick ? 100 : 400),
  },
];
