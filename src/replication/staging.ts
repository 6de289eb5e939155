/**
 * Where the backup keeps a checkpoint until it is applied: 4 KiB units (guest
 * pages or disk blocks) in reusable shared chunks, at most one slot per unit.
 *
 * Why this shape:
 *  - Reused, never regrown by copying: a checkpoint takes slots from chunks of
 *    `CHUNK_UNITS` units that stay allocated for the next one, so the steady
 *    state allocates nothing and no staged byte is ever copied to make room
 *    (regrowing a single buffer per checkpoint was a quarter of the backup's
 *    time, and its garbage a sixth).
 *  - Shared: every chunk is a SharedArrayBuffer, so a worker thread decodes
 *    straight into its slot.
 *  - One slot per unit (`slotOf`): a unit staged twice in one checkpoint (a
 *    sync sends a page again when it changed; a disk block written twice) is
 *    overwritten in place, so the later copy wins as the stream says, and the
 *    staged copy is where an XOR_LZ4 entry finds its base (SPEC §6.4.1).
 */
import { PAGE_SIZE } from "../domain/memory.js";

/** Units per chunk at most (16 MiB; an area of fewer units has one chunk of its size). */
export const CHUNK_UNITS = 4096;

interface Chunk {
  readonly shared: SharedArrayBuffer;
  readonly buf: Buffer;
}

export class StagingArea {
  private readonly chunks: Chunk[] = [];
  /** Per unit index: its slot, or -1. Allocated on first use. */
  private slotOf: Int32Array | undefined;
  /** The unit index in each slot, slots 0..count-1. */
  private idx = new Uint32Array(64);
  private n = 0;
  /** Units per chunk. */
  private readonly chunkUnits: number;

  /** `units`: indexes are below it (the domain's pages or disk blocks). */
  constructor(readonly units: number) {
    this.chunkUnits = Math.max(1, Math.min(CHUNK_UNITS, units));
  }

  /** Units staged. */
  get count(): number {
    return this.n;
  }

  /** The unit in slot `s`. */
  index(s: number): number {
    return this.idx[s] as number;
  }

  /** The staged indexes, in slot order (a view, valid until the next change). */
  indexes(): Uint32Array {
    return this.idx.subarray(0, this.n);
  }

  /** The slot of unit `index`, or -1 when it is not staged. */
  lookup(index: number): number {
    return this.slotOf === undefined ? -1 : (this.slotOf[index] as number);
  }

  /** The slot of unit `index`: the one it has, or a new one (its bytes are whatever was there). */
  slot(index: number): number {
    if (this.slotOf === undefined) this.slotOf = new Int32Array(this.units).fill(-1);
    const have = this.slotOf[index] as number;
    if (have >= 0) return have;
    const s = this.n;
    if (s === this.idx.length) {
      const grown = new Uint32Array(this.idx.length * 2);
      grown.set(this.idx);
      this.idx = grown;
    }
    if (s >= this.chunks.length * this.chunkUnits) {
      const shared = new SharedArrayBuffer(this.chunkUnits * PAGE_SIZE);
      this.chunks.push({ shared, buf: Buffer.from(shared) });
    }
    this.idx[s] = index;
    this.slotOf[index] = s;
    this.n = s + 1;
    return s;
  }

  /** The shared buffer that holds slot `s` (for a worker job). */
  sharedOf(s: number): SharedArrayBuffer {
    return (this.chunks[Math.floor(s / this.chunkUnits)] as Chunk).shared;
  }

  /** The byte offset of slot `s` within `bufferOf(s)` / `sharedOf(s)`. */
  offsetOf(s: number): number {
    return (s % this.chunkUnits) * PAGE_SIZE;
  }

  /** The buffer that holds slot `s`. */
  bufferOf(s: number): Buffer {
    return (this.chunks[Math.floor(s / this.chunkUnits)] as Chunk).buf;
  }

  /** Slot `s`'s 4096 bytes. */
  view(s: number): Buffer {
    const off = this.offsetOf(s);
    return this.bufferOf(s).subarray(off, off + PAGE_SIZE);
  }

  /** Bytes held for staging (chunks are kept for the next checkpoint). */
  get capacityBytes(): number {
    return this.chunks.length * this.chunkUnits * PAGE_SIZE;
  }

  /** Empties the area; its chunks stay for the next checkpoint. O(units staged). */
  reset(): void {
    const map = this.slotOf;
    if (map !== undefined) for (let s = 0; s < this.n; s++) map[this.idx[s] as number] = -1;
    this.n = 0;
  }
}

/** One checkpoint being staged: its pages, its disk writes, its vCPU and device blocks. */
export class Stage {
  epoch = 0;
  readonly pages: StagingArea;
  readonly disk: StagingArea;
  vcpu: Buffer | undefined;
  device: Buffer | undefined;

  constructor(pages: number, blocks: number) {
    this.pages = new StagingArea(pages);
    this.disk = new StagingArea(blocks);
  }

  /** Whether anything is staged (a discarded stage that held something is reported). */
  get holdsData(): boolean {
    return this.pages.count > 0 || this.disk.count > 0 || this.vcpu !== undefined;
  }

  /** Empties the stage for checkpoint `epoch`, keeping its memory. */
  reset(epoch: number): this {
    this.epoch = epoch;
    this.pages.reset();
    this.disk.reset();
    this.vcpu = undefined;
    this.device = undefined;
    return this;
  }
}
