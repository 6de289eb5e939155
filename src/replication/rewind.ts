/**
 * Rewind: a former primary that still holds its memory image rejoins as
 * backup by resyncing only what differs, not the whole domain (the idea of
 * PostgreSQL's pg_rewind, applied to pages).
 *
 * Data flow:
 *
 *   former primary (demoted: paused and fenced, or stopped by a switchover;
 *   not restarted): its image is its last acknowledged epoch E plus what it
 *   wrote after E, and its replication logs hold exactly that (a lost
 *   checkpoint's pages are marked dirty again). `rewindBaseOf` takes them
 *   at demotion: { generation it ran under, E, pages, blocks }.
 *       │ HELLO (REWIND flag, committedEpoch E) ... AUTH
 *       └─► REWIND { generation, E, page bitmap, block bitmap }
 *   new primary, activated from epoch A of generation G: since its
 *   activation it has tracked every page and block written (the domain's
 *   dirty-since bitmap, `Domain.trackDirtySince`). `rewindRefusal`:
 *   accepted only if the image is of its own history, G's lineage up to A
 *   (generation = G and E ≤ A), else a full sync. `rewindSet`: the pages
 *   and blocks to send = what the former primary wrote after E ∪ what this
 *   primary wrote since A.
 *       └─► SYNC_BEGIN (REWIND) PAGE_BATCH* DISK_WRITES* (the set, from live
 *           memory) ... sync checkpoint (as any sync; its digest proves the
 *           two images equal), applied staged on top of the former primary's image.
 *
 * Why the set suffices: the new primary's state at A is the former
 * primary's at the pause of A (A's checkpoint came from it), which differs
 * from its state at E only in pages it wrote in E+1..A, all in its set
 * (E ≤ A); the new primary's state now differs from its state at A only in
 * what it wrote since. A page in neither set is the same on both sides.
 */
import type { Domain } from "../domain/domain.js";
import { fromBitmap, toBitmap } from "../protocol/colo.js";
import type { Rewind } from "../protocol/records.js";

/** What a former primary offers when it rejoins as backup with its image. */
export interface RewindBase {
  /** The generation the image ran under. */
  readonly generation: number;
  /** Its last acknowledged epoch: the last one both sides committed. */
  readonly epoch: number;
  /** Pages it wrote after `epoch` (sorted). */
  readonly pages: Uint32Array;
  /** Disk blocks it wrote after `epoch`. */
  readonly blocks: Uint32Array;
}

/** Where a primary's history comes from: the generation and epoch it activated from. */
export interface Lineage {
  readonly generation: number;
  readonly epoch: number;
}

/**
 * The rewind base of a primary that has just stopped running its domain
 * (fenced or stopped) and whose last acknowledged epoch is `epoch`: its
 * replication logs hold every page and block written after that epoch (a
 * lost checkpoint's are marked dirty again when its link drops). Read, not
 * drained.
 */
export function rewindBaseOf(domain: Domain, generation: number, epoch: number): RewindBase {
  const pages = Uint32Array.from(domain.memory.log.peek()).sort();
  const blocks = Uint32Array.from(domain.disk.log.peek()).sort();
  return { generation, epoch, pages, blocks };
}

/** The REWIND record offering `base`, for a domain of `pages` pages and `blocks` blocks. */
export function rewindRecord(base: RewindBase, pages: number, blocks: number): Rewind {
  return {
    type: "rewind",
    generation: base.generation,
    epoch: base.epoch,
    pageBitmap: toBitmap(base.pages, pages),
    blockBitmap: toBitmap(base.blocks, blocks),
  };
}

/**
 * Why a primary of `lineage` must not rewind `offer` (undefined: it may).
 * Why these checks: the pages it sends are only those written since its
 * activation; an image from outside its own history (another lineage, or
 * an epoch after the one it activated from) may differ anywhere.
 */
export function rewindRefusal(
  offer: Pick<Rewind, "generation" | "epoch">,
  lineage: Lineage | undefined,
  tracking: boolean,
): string | undefined {
  if (!lineage || !tracking)
    return "this primary did not activate from a backup's image (it booted the domain)";
  if (offer.generation !== lineage.generation) {
    return `the image ran under generation ${offer.generation}, this primary continues generation ${lineage.generation}`;
  }
  if (offer.epoch > lineage.epoch) {
    return `the image's last common epoch ${offer.epoch} is after epoch ${lineage.epoch}, which this primary activated from`;
  }
  return undefined;
}

/** What a rewind sync sends: the former primary's dirtied set ∪ what this primary wrote since its activation. */
export function rewindSet(
  offer: Rewind,
  since: { pages: Uint32Array; blocks: Uint32Array },
  domain: Domain,
): { pages: Uint32Array; blocks: Uint32Array } {
  return {
    pages: unionSorted(fromBitmap(offer.pageBitmap), since.pages, domain.pages),
    blocks: unionSorted(fromBitmap(offer.blockBitmap), since.blocks, domain.disk.blocks),
  };
}

function unionSorted(a: Uint32Array, b: Uint32Array, count: number): Uint32Array {
  const bits = new Uint8Array(count);
  for (const x of a) bits[x] = 1;
  for (const x of b) bits[x] = 1;
  let n = 0;
  for (let i = 0; i < count; i++) n += bits[i] as number;
  const out = new Uint32Array(n);
  let k = 0;
  for (let i = 0; i < count; i++) if (bits[i] === 1) out[k++] = i;
  return out;
}
