/**
 * The work the checkpoint pipeline hands to worker threads, as plain
 * functions (sans-IO): encoding a page batch (zero check, XOR delta, LZ4,
 * CRC), decoding one (LZ4, XOR) into shared memory, and hashing pages for
 * the domain digest. `pool.ts` runs them on
 * workers; a caller may also run them on its own thread (the benchmark's
 * single-thread baseline runs exactly this code).
 *
 * Every buffer a job touches is a SharedArrayBuffer registered once under a
 * number (`BufferTable`): guest memory, capture staging, the sent-page cache's
 * slots, the backup's staging. A job names buffers by number and carries only
 * small arrays (pfns, slot numbers, offsets), so submitting one copies no page.
 *
 * Sources of an encode job:
 *  - `capture`: pages [from, from+count) of a capture (`SharedCapture`); a
 *    copy-on-write page still live is settled first, so the worker reads the
 *    pause-time bytes even while the guest runs.
 *  - `memory`: pages [first, first+count), or a list of pages, of live guest
 *    memory (a sync's pre-copy and its rounds). The guest may be writing them meanwhile, so each page is copied
 *    once into thread-local scratch and everything (encoding, the bytes recorded
 *    as the receiver's version) uses that copy: a page torn by a concurrent
 *    write is sent as torn, and the write marked it dirty, so the sync sends it
 *    again (SPEC §6.4: the later entry wins).
 *  - `pages`: `count` pages back to back in one buffer at `offset` (stable:
 *    disk blocks captured at the pause), with their indexes.
 */

import { type SharedViews, sharedPage } from "../domain/capture.js";
import { unitHashInto } from "../domain/digest.js";
import { PAGE_SIZE } from "../domain/memory.js";
import {
  type BatchFrame,
  decodeBatch,
  decodePageInto,
  encodeBatchFrame,
  type PageBases,
} from "../protocol/batch.js";
import { FRAME_OVERHEAD, HEADER_SIZE, MAX_BATCH_ENTRIES } from "../protocol/constants.js";
import type { Geometry } from "../protocol/records.js";

/** Buffers by registration number, as this thread sees them. */
export interface BufferTable {
  get(key: number): Uint8Array;
}

export type EncodeSource =
  | {
      readonly kind: "capture";
      readonly count: number;
      /** The capture's buffers (see `SharedCapture`): memory, staging, pfns, state (or -1). */
      readonly memory: number;
      readonly staging: number;
      readonly pfns: number;
      readonly state: number;
      /** Pages in the capture. */
      readonly captured: number;
      readonly from: number;
    }
  | {
      readonly kind: "memory";
      readonly memory: number;
      readonly first: number;
      readonly count: number;
      /** The pages, strictly increasing (default: first .. first+count-1). */
      readonly pfns?: Uint32Array;
      /** Per page: 1 when never written (all zero): sent as ZERO without reading (or faulting in) it. */
      readonly pristine?: Uint8Array;
    }
  | {
      readonly kind: "pages";
      readonly buffer: number;
      readonly offset: number;
      readonly indexes: Uint32Array;
      readonly count: number;
    };

export interface EncodeJob {
  readonly kind: "pageBatch" | "diskWrites";
  readonly epoch: number;
  readonly source: EncodeSource;
  readonly compress: boolean;
  readonly geometry?: Geometry;
  /**
   * XOR deltas (PAGE_BATCH only): the cache's slot buffer, and per entry the
   * slot holding the receiver's version (-1: none) and the slot to write the
   * version sent into (-1: none), as `SentPageCache.reserve` planned them.
   */
  readonly delta?: { readonly slots: number; readonly base: Int32Array; readonly next: Int32Array };
}

export interface EncodeResult extends Omit<BatchFrame, "frame"> {
  /** The frame, unsealed (session, seq and trailer zero): finish it with `sealFrame`. */
  readonly frame: Uint8Array;
  readonly bodyCrc: number;
  /** Per entry: 1 when the cache must forget the page (it went as ZERO, or was rewritten all over). */
  readonly zero: Uint8Array;
}

/** Per-thread scratch for copies of live pages. */
export class EncodeScratch {
  readonly pages = Buffer.from(new ArrayBuffer(MAX_BATCH_ENTRIES * PAGE_SIZE));
}

function pageIn(buf: Uint8Array, offset: number): Uint8Array {
  return buf.subarray(offset, offset + PAGE_SIZE);
}

/** Encodes one batch frame (unsealed) from shared buffers. */
export function runEncode(job: EncodeJob, buffers: BufferTable, scratch: EncodeScratch): EncodeResult {
  const src = job.source;
  let indexOf: (i: number) => number;
  let dataOf: (i: number) => Uint8Array;
  switch (src.kind) {
    case "capture": {
      if (src.from < 0 || src.from + src.count > src.captured) {
        throw new RangeError(`pages [${src.from}, +${src.count}) of a capture of ${src.captured}`);
      }
      const views: SharedViews = {
        count: src.captured,
        memory: buffers.get(src.memory),
        staging: buffers.get(src.staging),
        pfns: new Uint32Array(buffers.get(src.pfns).buffer, buffers.get(src.pfns).byteOffset, src.captured),
        state:
          src.state < 0
            ? undefined
            : new Int32Array(buffers.get(src.state).buffer, buffers.get(src.state).byteOffset, src.captured),
      };
      indexOf = (i) => views.pfns[src.from + i] as number;
      dataOf = (i) => sharedPage(views, src.from + i);
      break;
    }
    case "memory": {
      const mem = buffers.get(src.memory);
      if (src.count > MAX_BATCH_ENTRIES) throw new RangeError(`${src.count} pages in one batch`);
      const list = src.pfns;
      if (list !== undefined && list.length !== src.count) throw new RangeError("pfns do not match count");
      const pfnAt = list === undefined ? (i: number) => src.first + i : (i: number) => list[i] as number;
      for (let i = 0; i < src.count; i++) {
        const a = pfnAt(i) * PAGE_SIZE;
        if (a + PAGE_SIZE > mem.length) throw new RangeError(`pfn ${pfnAt(i)} outside guest memory`);
        if (src.pristine?.[i] === 1) scratch.pages.fill(0, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
        // One copy per page: the guest may be writing it, and every later use must see the same bytes.
        else scratch.pages.set(mem.subarray(a, a + PAGE_SIZE), i * PAGE_SIZE);
      }
      indexOf = pfnAt;
      dataOf = (i) => pageIn(scratch.pages, i * PAGE_SIZE);
      break;
    }
    case "pages": {
      const buf = buffers.get(src.buffer);
      indexOf = (i) => src.indexes[i] as number;
      dataOf = (i) => pageIn(buf, src.offset + i * PAGE_SIZE);
      break;
    }
  }
  const zero = new Uint8Array(src.count);
  let bases: PageBases | undefined;
  const d = job.delta;
  if (d !== undefined) {
    const slots = buffers.get(d.slots);
    bases = {
      baseFor: (i) => {
        const s = d.base[i] as number;
        return s < 0 ? undefined : pageIn(slots, s * PAGE_SIZE);
      },
      sent: (i, _index, page, isZero, rewritten) => {
        // Forgotten when the job is released (SentPageCache.sent says why).
        if (isZero || rewritten) zero[i] = 1;
        const s = d.next[i] as number;
        if (s >= 0 && zero[i] === 0) slots.set(page, s * PAGE_SIZE);
      },
    };
  } else {
    bases = {
      baseFor: () => undefined,
      sent: (i, _index, _page, isZero) => {
        if (isZero) zero[i] = 1;
      },
    };
  }
  const out = encodeBatchFrame(job.kind, job.epoch, src.count, indexOf, dataOf, {
    compress: job.compress,
    ...(job.geometry ? { geometry: job.geometry } : {}),
    ...(job.kind === "pageBatch" && job.compress ? { delta: bases } : {}),
  });
  if (job.kind !== "pageBatch" || !job.compress) {
    // No delta pass ran: find the zero entries from the frame itself.
    for (let i = 0; i < src.count; i++) zero[i] = out.frame[HEADER_SIZE + 12 + i * 8 + 4] === 0 ? 1 : 0;
  }
  // The frame is a view at the start of a buffer of its own (encodeBatchFrame): the whole buffer moves.
  return { ...out, bodyCrc: out.bodyCrc as number, zero };
}

export interface DecodeJob {
  readonly kind: "pageBatch" | "diskWrites";
  /** The whole frame (already checked by the receiving thread: CRC, order, limits). */
  readonly frame: Uint8Array;
  readonly geometry: Geometry;
  /** Where entry i's page goes: buffer `dstKeys[i]` at byte `dstOffsets[i]`; a negative key skips the entry. */
  readonly dstKeys: Int32Array;
  readonly dstOffsets: Float64Array;
  /** Entry i's XOR_LZ4 base: buffer `baseKeys[i]` at `baseOffsets[i]` (negative key: none). */
  readonly baseKeys?: Int32Array;
  readonly baseOffsets?: Float64Array;
}

export type DecodeResult =
  | { readonly ok: true; readonly pages: number }
  | { readonly ok: false; readonly entry: number; readonly reason: string };

/** Decodes every entry of a batch frame into shared memory. */
export function runDecode(job: DecodeJob, buffers: BufferTable): DecodeResult {
  const f = job.frame;
  const buf = Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  const r = decodeBatch(
    { buf, start: HEADER_SIZE, end: f.byteLength - (FRAME_OVERHEAD - HEADER_SIZE) },
    job.kind,
    job.geometry,
    false,
  );
  if (job.dstKeys.length !== r.entries.length || job.dstOffsets.length !== r.entries.length) {
    throw new RangeError(`${job.dstKeys.length} destinations for ${r.entries.length} entries`);
  }
  let pages = 0;
  for (let i = 0; i < r.entries.length; i++) {
    const key = job.dstKeys[i] as number;
    if (key < 0) continue;
    const bk = job.baseKeys?.[i] ?? -1;
    try {
      const dst = buffers.get(key);
      const base = bk >= 0 ? buffers.get(bk) : undefined;
      decodePageInto(r.entries[i]!, dst, job.dstOffsets[i] as number, base, job.baseOffsets?.[i] ?? 0);
    } catch (e) {
      return { ok: false, entry: i, reason: e instanceof Error ? e.message : String(e) };
    }
    pages++;
  }
  return { ok: true, pages };
}

/** Digest work (the backup keeps its digest current off its event loop): hash pages of shared memory. */
export interface HashJob {
  readonly memory: number;
  readonly pfns: Uint32Array;
}

/** Each page's unit hash (digest.ts), four u32 limbs per page, in order. */
export interface HashResult {
  readonly hashes: Uint32Array;
}

export function runHash(job: HashJob, buffers: BufferTable): HashResult {
  const mem = buffers.get(job.memory);
  const hashes = new Uint32Array(job.pfns.length * 4);
  const idx = Buffer.alloc(4);
  for (let k = 0; k < job.pfns.length; k++) {
    const a = (job.pfns[k] as number) * PAGE_SIZE;
    if (a + PAGE_SIZE > mem.length) throw new RangeError(`pfn ${job.pfns[k]} outside guest memory`);
    unitHashInto(job.pfns[k] as number, mem.subarray(a, a + PAGE_SIZE), hashes, k * 4, idx);
  }
  return { hashes };
}
