/** Page contents and dirty sets for the benchmarks, all seeded. */
import type { GuestMemory } from "../domain/memory.js";
import { PAGE_SIZE } from "../domain/memory.js";
import { mulberry32u32 } from "../prng.js";

/** `n` distinct pfns below `pages`, sorted. */
export function seededPfns(n: number, pages: number, seed: number): Uint32Array {
  const r = mulberry32u32(seed);
  const set = new Set<number>();
  while (set.size < n) set.add(r() % pages);
  return Uint32Array.from([...set].sort((a, b) => a - b));
}

export const PAGE_MIXES = ["zeros", "half", "random"] as const;
export type PageMix = (typeof PAGE_MIXES)[number];

/**
 * Fills one page: all zero; about 50% compressible for LZ4 (8-byte runs, each
 * a copy of 8 bytes from up to 512 bytes earlier with probability 13/16, else
 * fresh random bytes: LZ4 shrinks it about 1.95x); or random.
 */
export function fillPage(dst: Uint8Array, off: number, mix: PageMix, r: () => number): void {
  if (mix === "zeros") {
    dst.fill(0, off, off + PAGE_SIZE);
    return;
  }
  for (let i = 0; i < PAGE_SIZE; i += 8) {
    const back = 8 * (1 + (r() % 64));
    if (mix === "half" && i >= back && r() % 16 < 13) {
      dst.copyWithin(off + i, off + i - back, off + i - back + 8);
    } else {
      const a = r();
      const b = r();
      for (let k = 0; k < 4; k++) {
        dst[off + i + k] = (a >>> (8 * k)) & 0xff;
        dst[off + i + 4 + k] = (b >>> (8 * k)) & 0xff;
      }
    }
  }
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
