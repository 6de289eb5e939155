/** Page contents and dirty sets for the benchmarks, all seeded. */
import type { GuestMemory } from "../domain/memory.js";
import { PAGE_SIZE } from "../domain/memory.js";
import { fillPage, type PageMix } from "../guest/pagemix.js";
import { mulberry32u32 } from "../prng.js";

export { fillPage, PAGE_MIXES, type PageMix } from "../guest/pagemix.js";

/** `n` distinct pfns below `pages`, sorted. */
export function seededPfns(n: number, pages: number, seed: number): Uint32Array {
  const r = mulberry32u32(seed);
  const set = new Set<number>();
  while (set.size < n) set.add(r() % pages);
  return Uint32Array.from([...set].sort((a, b) => a - b));
}

/** Writes `mix` pages into `pfns` of guest memory (through the accessors, so they count as written). */
export function fillPages(m: GuestMemory, pfns: ArrayLike<number>, mix: PageMix, seed: number): void {
  const r = mulberry32u32(seed);
  const page = Buffer.alloc(PAGE_SIZE);
  for (let i = 0; i < pfns.length; i++) {
    fillPage(page, 0, mix, r);
    m.writePage(pfns[i] as number, page);
  }
}
