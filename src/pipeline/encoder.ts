/**
 * The sending side of the page pool: turns a capture's pages, a range of live
 * memory or captured disk blocks into batch jobs, plans their XOR bases in the
 * sent-page cache, and gives the slots back when the job ends. Frames come
 * back unsealed; the sender seals each one as it sends it, in the order it
 * submitted them (`FrameCodec.sealBatch`, `TicketQueue`).
 *
 * The cache rule (SPEC §6.4.1) is the caller's: `cache.clear()` at every
 * SYNC_BEGIN, on a lost connection and after a NACK. A job's slots are
 * released when it ends whether or not its frame is ever sent: a frame that
 * is not sent means the connection is gone, and the cache is cleared anyway.
 */
import type { EpochCapture } from "../domain/capture.js";
import type { GuestMemory } from "../domain/memory.js";
import { MAX_BATCH_ENTRIES } from "../protocol/constants.js";
import type { SentPageCache } from "../protocol/delta.js";
import type { Geometry } from "../protocol/records.js";
import type { EncodeJob, EncodeResult, EncodeSource } from "./jobs.js";
import type { PageWorkers, Ticket } from "./pool.js";

export interface BatchEncoderOptions {
  compress: boolean;
  geometry?: Geometry;
  /** XOR deltas for pages (only for a receiver that set HELLO DELTA). */
  cache?: SentPageCache;
}

export class BatchEncoder {
  constructor(
    private readonly pool: PageWorkers,
    readonly opts: BatchEncoderOptions,
  ) {}

  /** A PAGE_BATCH of pages [from, from+count) of `capture` (released only after the ticket is done). */
  capture(epoch: number, capture: EpochCapture, from: number, count: number): Ticket<EncodeResult> {
    checkCount(count);
    const sc = capture.shared();
    if (from < 0 || from + count > sc.count)
      throw new RangeError(`pages [${from}, +${count}) of ${sc.count}`);
    const pfns = new Uint32Array(count);
    for (let i = 0; i < count; i++) pfns[i] = capture.pfn(from + i);
    const source: EncodeSource = {
      kind: "capture",
      count,
      memory: this.pool.share(sc.memory),
      staging: this.pool.share(sc.staging),
      pfns: this.pool.share(sc.pfns),
      state: sc.state ? this.pool.share(sc.state) : -1,
      captured: sc.count,
      from,
    };
    return this.pages(epoch, source, pfns);
  }

  /** A PAGE_BATCH of live memory pages [first, first+count) (a sync's pre-copy). */
  memory(epoch: number, memory: GuestMemory, first: number, count: number): Ticket<EncodeResult> {
    checkCount(count);
    if (first < 0 || first + count > memory.pages) throw new RangeError(`pages [${first}, +${count})`);
    return this.memoryPages(
      epoch,
      memory,
      Uint32Array.from({ length: count }, (_, i) => first + i),
    );
  }

  /** A PAGE_BATCH of the live memory pages `pfns` (strictly increasing; a sync's rounds). */
  memoryPages(epoch: number, memory: GuestMemory, pfns: Uint32Array): Ticket<EncodeResult> {
    const count = pfns.length;
    checkCount(count);
    const pristine = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      const p = pfns[i] as number;
      memory.checkPfn(p);
      if (i > 0 && p <= (pfns[i - 1] as number)) throw new RangeError("pfns not increasing");
      // Read here, on the thread that owns the bits: a page never written is zero.
      pristine[i] = memory.isPristine(p) ? 1 : 0;
    }
    const first = pfns[0] as number;
    const contiguous = (pfns[count - 1] as number) - first === count - 1;
    return this.pages(
      epoch,
      {
        kind: "memory",
        memory: this.pool.share(memory.shared),
        first,
        count,
        ...(contiguous ? {} : { pfns }),
        pristine,
      },
      pfns,
    );
  }

  /** A DISK_WRITES of `count` blocks stored back to back in `buffer` at `offset`. */
  blocks(
    epoch: number,
    buffer: SharedArrayBuffer,
    offset: number,
    indexes: Uint32Array,
  ): Ticket<EncodeResult> {
    checkCount(indexes.length);
    const job: EncodeJob = {
      kind: "diskWrites",
      epoch,
      compress: this.opts.compress,
      ...(this.opts.geometry ? { geometry: this.opts.geometry } : {}),
      source: { kind: "pages", buffer: this.pool.share(buffer), offset, indexes, count: indexes.length },
    };
    return this.pool.encode(job);
  }

  private pages(epoch: number, source: EncodeSource, pfns: Uint32Array): Ticket<EncodeResult> {
    const cache = this.opts.compress ? this.opts.cache : undefined;
    let job: EncodeJob = {
      kind: "pageBatch",
      epoch,
      compress: this.opts.compress,
      ...(this.opts.geometry ? { geometry: this.opts.geometry } : {}),
      source,
    };
    if (cache === undefined) return this.pool.encode(job);
    const base = new Int32Array(pfns.length);
    const next = new Int32Array(pfns.length);
    cache.reserve(pfns, base, next);
    job = { ...job, delta: { slots: this.pool.share(cache.shared), base, next } };
    const t = this.pool.encode(job);
    // Before anyone sees the frame: the slots are free again, zero pages lose their version.
    t.beforeSettle = (r, e) => cache.release(pfns, next, r?.zero, e === undefined);
    if (t.done) cache.release(pfns, next, undefined, false); // refused at once (pool broken or closed)
    return t;
  }
}

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_BATCH_ENTRIES) throw new RangeError(`batch of ${n} pages`);
}
