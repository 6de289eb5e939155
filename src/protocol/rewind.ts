/**
 * REWIND (proto/SPEC.md §6.17): a former primary that still holds its memory
 * image, rejoining as backup, names the lineage and last common epoch of its
 * image and the pages and blocks it wrote after that epoch. Pure codec; the
 * decision and the resync are src/replication/rewind.ts.
 */
import type { BodyCodec } from "./bodies.js";
import { bitmapsSize, readBitmap, writeBitmaps } from "./colo.js";
import type { Rewind } from "./records.js";
import { readU64, writeU64 } from "./wire.js";

export const rewind: BodyCodec<Rewind> = {
  preencode(s, r) {
    s.end += 16 + bitmapsSize([r.pageBitmap, r.blockBitmap]);
  },
  encode(s, r) {
    writeU64(s, r.generation, "generation");
    writeU64(s, r.epoch, "epoch");
    writeBitmaps(s, [r.pageBitmap, r.blockBitmap]);
  },
  decode(s, ctx) {
    const generation = readU64(s, "generation");
    const epoch = readU64(s, "epoch");
    const pageBitmap = readBitmap(s, ctx.geometry?.pages, "page bitmap");
    const blockBitmap = readBitmap(s, ctx.geometry?.diskBlocks, "block bitmap");
    return { type: "rewind", generation, epoch, pageBitmap, blockBitmap };
  },
};
