/**
 * Page contents of a known compressibility, for the `dirty` workload's
 * `fill` option and the benchmarks: all zero; about 50% compressible for LZ4
 * (8-byte runs, each a copy of 8 bytes from up to 512 bytes earlier with
 * probability 13/16, else fresh random bytes: LZ4 shrinks it about 1.95x); or
 * random. The guest writes copies of a fixed table of template pages (a pure
 * function of the mix, like a program's text: no state outside guest memory).
 */
import { PAGE_SIZE } from "../domain/memory.js";
import { mulberry32u32 } from "../prng.js";

export const PAGE_MIXES = ["zeros", "half", "random"] as const;
export type PageMix = (typeof PAGE_MIXES)[number];

/** Fills one page at `dst[off..]` with `mix`, drawing from `r`. */
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

/** Template pages per mix. */
export const TEMPLATE_PAGES = 64;

const templates = new Map<PageMix, Buffer>();

/** `TEMPLATE_PAGES` pages of `mix`, back to back (the same bytes in every process). */
export function mixTemplates(mix: PageMix): Buffer {
  let t = templates.get(mix);
  if (!t) {
    t = Buffer.alloc(TEMPLATE_PAGES * PAGE_SIZE);
    const r = mulberry32u32(0x5eed + PAGE_MIXES.indexOf(mix));
    for (let i = 0; i < TEMPLATE_PAGES; i++) fillPage(t, i * PAGE_SIZE, mix, r);
    templates.set(mix, t);
  }
  return t;
}
