/**
 * Domain benchmarks (issue "Foundation"): capture into staging versus a plain
 * Buffer.copy gather of the same pages, and dirty-set collection on a 4096 MiB
 * domain versus a 64 MiB domain with the same dirty pages. Ratios are measured
 * side by side in one run.
 */
import { CopyCapturer } from "../domain/capture.js";
import { GuestMemory, PAGE_SIZE } from "../domain/memory.js";
import { median, sideBySide, timeNs } from "./stats.js";

export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly detail?: string;
}

function seededPfns(n: number, pages: number, seed: number): Uint32Array {
  let s = seed >>> 0;
  const set = new Set<number>();
  while (set.size < n) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    set.add(s % pages);
  }
  return Uint32Array.from([...set].sort((a, b) => a - b));
}

export function benchCapture(dirtyPages: number, domainMiB = 256): BenchResult[] {
  const mem = GuestMemory.ofMiB(domainMiB);
  for (let p = 0; p < mem.pages; p += 7) mem.buf.writeUInt32LE(p, p * PAGE_SIZE);
  const pfns = seededPfns(dirtyPages, mem.pages, 42);
  const capturer = new CopyCapturer(mem, dirtyPages);
  const plain = Buffer.allocUnsafe(dirtyPages * PAGE_SIZE);
  const res = sideBySide(
    {
      capture: () => capturer.capture(pfns).release(),
      gather: () => {
        for (let i = 0; i < pfns.length; i++) {
          const s = (pfns[i] as number) * PAGE_SIZE;
          mem.buf.copy(plain, i * PAGE_SIZE, s, s + PAGE_SIZE);
        }
      },
    },
    41,
  );
  const ratio = (res.capture as number) / (res.gather as number);
  const gbps = (dirtyPages * PAGE_SIZE) / (res.capture as number);
  return [
    {
      name: `capture_${dirtyPages}_pages_vs_buffer_copy`,
      value: ratio,
      unit: "ratio",
      detail: `capture ${((res.capture as number) / 1e3).toFixed(0)} us (${gbps.toFixed(2)} GB/s), gather ${((res.gather as number) / 1e3).toFixed(0)} us`,
    },
  ];
}

/**
 * Collect-and-clear of the same 1,000 dirty pages (pfns inside the first 64 MiB)
 * on a 4096 MiB and a 64 MiB domain: the cost must not grow with the domain.
 * Only the drain is timed; marking the pages (the guest's writes) is not.
 */
export function benchCollect(dirtyPages = 1000): BenchResult[] {
  const big = GuestMemory.ofMiB(4096);
  const small = GuestMemory.ofMiB(64);
  const pfns = seededPfns(dirtyPages, small.pages, 7);
  const out = new Uint32Array(dirtyPages);
  const samples: Record<"d4096" | "d64", number[]> = { d4096: [], d64: [] };
  for (let r = 0; r < 420; r++) {
    for (const [name, m] of [
      ["d4096", big],
      ["d64", small],
    ] as const) {
      for (let i = 0; i < pfns.length; i++) m.log.mark(pfns[i] as number);
      const t = timeNs(() => m.log.drain(out));
      if (r >= 20) samples[name].push(t);
    }
  }
  const d4096 = median(samples.d4096);
  const d64 = median(samples.d64);
  return [
    {
      name: `collect_${dirtyPages}_dirty_4096MiB_vs_64MiB`,
      value: d4096 / d64,
      unit: "ratio",
      detail: `4096 MiB ${(d4096 / 1e3).toFixed(1)} us, 64 MiB ${(d64 / 1e3).toFixed(1)} us (drain of the same pfns)`,
    },
  ];
}
