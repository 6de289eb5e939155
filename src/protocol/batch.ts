/**
 * PAGE_BATCH and DISK_WRITES: one layout, one codec (proto/SPEC.md §6.4).
 *
 * The send path (`encodeBatchFrame`) builds one output buffer per batch: it
 * detects zero pages against a shared zero page, compresses straight into
 * the output buffer (sized for a batch of raw pages), and copies each page
 * at most once. With a `SentPageCache` it sends a page the receiver already has a
 * version of as XOR_LZ4 (delta.ts) and records what it sent. The receive path
 * returns views into the frame, and `decodePageInto` writes a page straight
 * into the caller's staging memory (an XOR_LZ4 page against the base the
 * caller passes: its current version of that page).
 */

import { crc32 } from "node:zlib";
import lz4 from "lz4";
import {
  BATCH_ENTRY_SIZE,
  BATCH_PREFIX_SIZE,
  FRAME_OVERHEAD,
  HEADER_SIZE,
  LIMITS,
  MAGIC,
  MAX_BATCH_ENTRIES,
  PAGE_ENCODING,
  PAGE_SIZE,
  type PageEncoding,
  PROTOCOL_VERSION,
  RECORD_TYPE,
  TRAILER_SIZE,
} from "./constants.js";
import { XOR_MAX_NONZERO_WORDS, xorPage } from "./delta.js";
import { ProtocolError } from "./errors.js";
import type { DiskWrite, DiskWrites, Geometry, PageBatch, PageEntry } from "./records.js";
import { readU32, readU64, type WireState, writeU8, writeU16, writeU32, writeU64 } from "./wire.js";

/** A page of zeros, shared; never written. */
export const ZERO_PAGE: Buffer = Buffer.alloc(PAGE_SIZE);
const EMPTY: Buffer = Buffer.alloc(0);

// Send-side scratch, reused by every batch: per-entry encoding, data length,
// index, and whether its delta was refused. Safe because encoding is synchronous.
const scratchEnc = new Uint8Array(MAX_BATCH_ENTRIES);
const scratchLen = new Uint16Array(MAX_BATCH_ENTRIES);
const scratchIndex = new Uint32Array(MAX_BATCH_ENTRIES);
const scratchRewritten = new Uint8Array(MAX_BATCH_ENTRIES);
// Receive-side scratch for verifying lz4 blocks without touching the caller's memory,
// and for the XOR delta (both ways). Own ArrayBuffers, so word-aligned.
const verifyPage = Buffer.from(new ArrayBuffer(PAGE_SIZE));
const deltaScratch = Buffer.from(new ArrayBuffer(PAGE_SIZE));

/** True when all 4096 bytes of `page` are zero. */
export function isZeroPage(page: Uint8Array): boolean {
  return Buffer.compare(page, ZERO_PAGE) === 0;
}

function isZeroAt(buf: Uint8Array, off: number): boolean {
  return Buffer.compare(buf.subarray(off, off + PAGE_SIZE), ZERO_PAGE) === 0;
}

type BatchKind = "pageBatch" | "diskWrites";
type BatchEntry = PageEntry | DiskWrite;

function indexName(kind: BatchKind): string {
  return kind === "pageBatch" ? "pfn" : "block";
}

function indexOfEntry(e: BatchEntry): number {
  return "pfn" in e ? e.pfn : e.block;
}

/** Checks that `len` is the only length `enc` allows. Returns false for an unknown encoding. */
function lengthFits(enc: number, len: number): boolean {
  if (enc === PAGE_ENCODING.zero) return len === 0;
  if (enc === PAGE_ENCODING.raw) return len === PAGE_SIZE;
  if (enc === PAGE_ENCODING.lz4 || enc === PAGE_ENCODING.xorLz4) return len >= 1 && len <= LIMITS.maxLz4Block;
  return false;
}

/** Whether `enc` is an encoding of `kind`: XOR_LZ4 is for pages only (disk blocks have no base). */
function encodingOf(kind: BatchKind, enc: number): boolean {
  return enc <= PAGE_ENCODING.lz4 || (enc === PAGE_ENCODING.xorLz4 && kind === "pageBatch");
}

/** Body size of a batch record; validates the entries as the decoder would (bar lz4 content and geometry). */
export function preencodeBatch(s: WireState, r: PageBatch | DiskWrites): void {
  const n = r.entries.length;
  if (n === 0) throw new ProtocolError("bad-value", `${r.type} has no entries`);
  if (n > MAX_BATCH_ENTRIES) throw new ProtocolError("too-large", `${r.type} has ${n} entries`);
  let size = BATCH_PREFIX_SIZE + n * BATCH_ENTRY_SIZE;
  let prev = -1;
  for (const e of r.entries) {
    if (!encodingOf(r.type, e.enc)) throw new ProtocolError("bad-encoding", `enc ${e.enc} in ${r.type}`);
    if (!lengthFits(e.enc, e.data.length)) {
      throw new ProtocolError("bad-encoding", `enc ${e.enc} with ${e.data.length} data bytes`);
    }
    const index = indexOfEntry(e);
    if (r.type === "pageBatch" && index <= prev) throw new ProtocolError("bad-order", "pfns not increasing");
    prev = index;
    size += e.data.length;
  }
  s.end += size;
}

export function encodeBatch(s: WireState, r: PageBatch | DiskWrites): void {
  const name = indexName(r.type);
  writeU64(s, r.epoch, "epoch");
  writeU32(s, r.entries.length, "count");
  for (const e of r.entries) {
    writeU32(s, indexOfEntry(e), name);
    writeU8(s, e.enc, "enc");
    writeU8(s, 0, "reserved");
    writeU16(s, e.data.length, "len");
  }
  for (const e of r.entries) {
    s.buf.set(e.data, s.start);
    s.start += e.data.length;
  }
}

/**
 * Decodes a batch body. Order of checks (normative, SPEC §9): count, then
 * each entry in order (enc, reserved, len, range, order, data present), then
 * the data total, then (with `verifyPages`) every lz4 block.
 */
export function decodeBatch(
  s: WireState,
  kind: BatchKind,
  geometry: Geometry | undefined,
  verifyPages: boolean,
): PageBatch | DiskWrites {
  const name = indexName(kind);
  // Why: without the geometry from the handshake there is no bound for pfn/block.
  if (geometry === undefined) throw new ProtocolError("bad-order", `${kind} before the geometry is known`);
  const limit = kind === "pageBatch" ? geometry.pages : geometry.diskBlocks;
  const epoch = readU64(s, "epoch");
  const count = readU32(s, "count");
  if (count === 0) throw new ProtocolError("bad-value", `${kind} has no entries`);
  // Why: both checks come before the entries array is allocated.
  if (count > MAX_BATCH_ENTRIES) throw new ProtocolError("too-large", `${kind} count ${count}`);
  if (s.end - s.start < count * BATCH_ENTRY_SIZE) {
    throw new ProtocolError("truncated", `${count} entries need ${count * BATCH_ENTRY_SIZE} bytes`);
  }
  const buf = s.buf;
  let entryOff = s.start;
  let dataOff = s.start + count * BATCH_ENTRY_SIZE;
  let prev = -1;
  const pages: PageEntry[] = [];
  const writes: DiskWrite[] = [];
  for (let i = 0; i < count; i++, entryOff += BATCH_ENTRY_SIZE) {
    const index = buf.readUInt32LE(entryOff);
    const enc = buf[entryOff + 4]!;
    const reserved = buf[entryOff + 5]!;
    const len = buf.readUInt16LE(entryOff + 6);
    if (!encodingOf(kind, enc)) throw new ProtocolError("bad-encoding", `entry ${i}: enc ${enc} in ${kind}`);
    if (reserved !== 0) throw new ProtocolError("bad-value", `entry ${i}: reserved byte is ${reserved}`);
    if (!lengthFits(enc, len))
      throw new ProtocolError("bad-encoding", `entry ${i}: enc ${enc} with len ${len}`);
    if (index >= limit) throw new ProtocolError("out-of-range", `entry ${i}: ${name} ${index} >= ${limit}`);
    // Why: strictly increasing pfns make a batch a set, so no page is written twice per batch.
    if (kind === "pageBatch" && index <= prev) {
      throw new ProtocolError("bad-order", `entry ${i}: pfn ${index} after ${prev}`);
    }
    prev = index;
    if (s.end - dataOff < len) throw new ProtocolError("truncated", `entry ${i}: data runs past the body`);
    const data = len === 0 ? EMPTY : buf.subarray(dataOff, dataOff + len);
    dataOff += len;
    if (kind === "pageBatch") pages.push({ pfn: index, enc: enc as PageEncoding, data });
    else writes.push({ block: index, enc: enc as PageEncoding, data });
  }
  if (dataOff !== s.end)
    throw new ProtocolError("trailing-bytes", `${s.end - dataOff} bytes after the last entry`);
  s.start = s.end;
  const entries = kind === "pageBatch" ? pages : writes;
  if (verifyPages) {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.enc === PAGE_ENCODING.lz4 || e.enc === PAGE_ENCODING.xorLz4) decodeLz4(e.data, verifyPage, i);
    }
  }
  return kind === "pageBatch"
    ? { type: kind, epoch, entries: pages }
    : { type: kind, epoch, entries: writes };
}

function decodeLz4(block: Uint8Array, dst: Uint8Array, i?: number): void {
  // Why: the output is exactly one page, so a block that would decode to more
  // fails inside lz4, and one that decodes to less fails the length check.
  const n = lz4.decodeBlock(block, dst);
  if (n !== PAGE_SIZE) {
    throw new ProtocolError(
      "bad-encoding",
      `${i === undefined ? "" : `entry ${i}: `}lz4 block decodes to ${n < 0 ? "garbage" : `${n} bytes`}`,
    );
  }
}

/**
 * Writes the 4096 bytes of a decoded batch entry into `dst` at `dstOff`:
 * zero-fills, copies, or decodes lz4 (exactly 4096 bytes or `bad-encoding`).
 * An XOR_LZ4 entry needs `base`: the receiver's current version of the page
 * (SPEC §6.4.1: the staged copy if the open checkpoint already staged this
 * page, else the page in the image), 4096 bytes at `baseOff`; it may be the
 * very bytes at `dst`/`dstOff` (decoding in place into the image). Without a
 * base it is `bad-encoding`. On a `bad-encoding` error the 4096 bytes at
 * `dstOff` are unchanged for XOR_LZ4 and unspecified otherwise.
 */
export function decodePageInto(
  entry: { enc: PageEncoding; data: Uint8Array },
  dst: Uint8Array,
  dstOff: number,
  base?: Uint8Array,
  baseOff = 0,
): void {
  if (!Number.isInteger(dstOff) || dstOff < 0 || dstOff + PAGE_SIZE > dst.length) {
    throw new RangeError(`decodePageInto: no room for a page at ${dstOff} in ${dst.length} bytes`);
  }
  switch (entry.enc) {
    case PAGE_ENCODING.zero:
      // Why compare first: a page that is zero already is not written, so memory the
      // process never touched (a fresh image in a full sync) stays uncommitted.
      if (!isZeroAt(dst, dstOff)) dst.fill(0, dstOff, dstOff + PAGE_SIZE);
      return;
    case PAGE_ENCODING.raw:
      if (entry.data.length !== PAGE_SIZE)
        throw new ProtocolError("bad-encoding", "raw page is not 4096 bytes");
      dst.set(entry.data, dstOff);
      return;
    case PAGE_ENCODING.lz4: {
      if (entry.data.length === 0 || entry.data.length > LIMITS.maxLz4Block) {
        throw new ProtocolError("bad-encoding", `lz4 block of ${entry.data.length} bytes`);
      }
      const target =
        dstOff === 0 && dst.length === PAGE_SIZE ? dst : dst.subarray(dstOff, dstOff + PAGE_SIZE);
      decodeLz4(entry.data, target);
      return;
    }
    case PAGE_ENCODING.xorLz4: {
      if (entry.data.length === 0 || entry.data.length > LIMITS.maxLz4Block) {
        throw new ProtocolError("bad-encoding", `xor-lz4 block of ${entry.data.length} bytes`);
      }
      if (base === undefined) throw new ProtocolError("bad-encoding", "xor-lz4 page without a base");
      if (!Number.isInteger(baseOff) || baseOff < 0 || baseOff + PAGE_SIZE > base.length) {
        throw new RangeError(`decodePageInto: no base page at ${baseOff} in ${base.length} bytes`);
      }
      decodeLz4(entry.data, deltaScratch);
      xorPage(dst, dstOff, deltaScratch, 0, base, baseOff);
      return;
    }
    default:
      throw new ProtocolError("bad-encoding", `unknown enc ${String((entry as { enc: unknown }).enc)}`);
  }
}

/** A batch frame built by `encodeBatchFrame`, with the byte counts the metrics need. */
export interface BatchFrame {
  /** The complete frame, ready to send as one WebSocket binary message. */
  frame: Buffer;
  /** 4096 × entries, zero pages included: `remusd_replication_bytes_total{stage="raw"}`. */
  rawBytes: number;
  /** Frame length: `remusd_replication_bytes_total{stage="wire"}`. */
  wireBytes: number;
  zeroPages: number;
  rawPages: number;
  lz4Pages: number;
  /** Pages sent as XOR_LZ4 against the receiver's previous version. */
  xorPages: number;
  /** CRC-32 of the body, when the frame was built unsealed (see `sealFrame`). */
  bodyCrc?: number;
}

/**
 * Where a page batch encoder finds the receiver's version of each page, and
 * tells what it sent (SPEC §6.4.1). `SentPageCache` is one; a worker thread
 * has another over the cache's shared slots.
 */
export interface PageBases {
  /** The receiver's version of entry i's page (pfn `index`), if the sender knows it. */
  baseFor(i: number, index: number): Uint8Array | undefined;
  /**
   * The frame is complete: entry i's page is now the receiver's version
   * (`zero`: it went as ZERO; `rewritten`: it changed all over since the
   * version before, so keeping it as a base is likely worth nothing).
   */
  sent(i: number, index: number, page: Uint8Array, zero: boolean, rewritten: boolean): void;
}

export interface BatchOptions {
  /** Try lz4 on every non-zero page; a page that does not shrink is sent raw. */
  compress: boolean;
  /** When given, indexes are checked against it before anything is sent. */
  geometry?: Geometry;
  /**
   * PAGE_BATCH with `compress` only: send pages the cache holds a base for as
   * XOR_LZ4, and record every page of the frame in it as sent (zero pages are
   * forgotten). Only for a receiver that set HELLO DELTA; see delta.ts for
   * when the cache must be cleared.
   */
  delta?: PageBases;
}

/**
 * Builds a PAGE_BATCH or DISK_WRITES frame from `count` pages without a
 * Buffer per page. `indexOf(i)` is the pfn or block of entry i; `dataOf(i)`
 * a view of its 4096 bytes. `dataOf` is called once per entry, and once more
 * for each page recorded in `opts.delta`, so it must return the same bytes
 * each time (a view of guest memory or of a copy-on-write capture does, as
 * long as the guest does not run in between); no view is kept. The delta
 * cache changes only once the frame is complete. Without `header` the frame
 * is built unsealed (session, seq and trailer zero; `bodyCrc` set) for
 * `sealFrame` to finish on the thread that sends it. The frame is a view at
 * the start of a buffer of its own, at most twice its size (`ownedPrefix`),
 * so a worker can transfer that buffer as it is.
 */
export function encodeBatchFrame(
  kind: BatchKind,
  epoch: number,
  count: number,
  indexOf: (i: number) => number,
  dataOf: (i: number) => Uint8Array,
  opts: BatchOptions,
  header?: { session: number; seq: number },
): BatchFrame {
  if (!Number.isInteger(count) || count < 1) throw new ProtocolError("bad-value", `${kind} count ${count}`);
  if (count > MAX_BATCH_ENTRIES) throw new ProtocolError("too-large", `${kind} count ${count}`);
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > LIMITS.maxU64Number) {
    throw new ProtocolError("bad-value", `epoch ${epoch}`);
  }
  const delta = opts.compress ? opts.delta : undefined;
  if (delta !== undefined && kind !== "pageBatch") {
    throw new ProtocolError("bad-encoding", "XOR deltas are for PAGE_BATCH only");
  }
  const limit =
    opts.geometry === undefined
      ? 0x1_0000_0000
      : kind === "pageBatch"
        ? opts.geometry.pages
        : opts.geometry.diskBlocks;
  // One buffer of the largest size this batch can take, compressed into directly (its own
  // ArrayBuffer, so a worker thread can hand it over without a copy); the frame is its prefix.
  const dataStart = HEADER_SIZE + BATCH_PREFIX_SIZE + count * BATCH_ENTRY_SIZE;
  const out = Buffer.allocUnsafeSlow(dataStart + count * PAGE_SIZE + FRAME_OVERHEAD - HEADER_SIZE);
  let d = dataStart;
  let zeroPages = 0;
  let lz4Pages = 0;
  let xorPages = 0;
  let prev = -1;
  for (let i = 0; i < count; i++) {
    const index = indexOf(i);
    if (!Number.isInteger(index) || index < 0 || index >= limit || index > 0xffff_ffff) {
      throw new ProtocolError("out-of-range", `${indexName(kind)} ${index}`);
    }
    if (kind === "pageBatch" && index <= prev) throw new ProtocolError("bad-order", "pfns not increasing");
    prev = index;
    scratchIndex[i] = index;
    scratchRewritten[i] = 0;
    const page = dataOf(i);
    if (page.length !== PAGE_SIZE) throw new ProtocolError("bad-value", `page ${i} is ${page.length} bytes`);
    if (isZeroPage(page)) {
      scratchEnc[i] = PAGE_ENCODING.zero;
      scratchLen[i] = 0;
      zeroPages++;
      continue;
    }
    // The receiver's version XOR this one, else the page itself, as LZ4; else raw.
    let enc: PageEncoding = PAGE_ENCODING.raw;
    let n = 0;
    const base = delta?.baseFor(i, index);
    if (base !== undefined) {
      // Only a page that kept most of its words is worth a delta (see XOR_MAX_NONZERO_WORDS).
      if (xorPage(deltaScratch, 0, page, 0, base, 0) <= XOR_MAX_NONZERO_WORDS) {
        n = lz4.encodeBlock(deltaScratch, out, d, d + LIMITS.maxLz4Block);
        if (n > 0) enc = PAGE_ENCODING.xorLz4;
      } else scratchRewritten[i] = 1;
    }
    if (n <= 0 && opts.compress) {
      // Capacity 4095: lz4 returns 0 when the block would not be smaller than the page.
      n = lz4.encodeBlock(page, out, d, d + LIMITS.maxLz4Block);
      if (n > 0) enc = PAGE_ENCODING.lz4;
    }
    scratchEnc[i] = enc;
    if (enc === PAGE_ENCODING.raw) {
      out.set(page, d);
      n = PAGE_SIZE;
    } else if (enc === PAGE_ENCODING.xorLz4) xorPages++;
    else lz4Pages++;
    scratchLen[i] = n;
    d += n;
  }
  const total = d + TRAILER_SIZE;
  const bodyLen = total - FRAME_OVERHEAD;
  writeHeader(out, RECORD_TYPE[kind], header?.session ?? 0, header?.seq ?? 0, bodyLen);
  let p = HEADER_SIZE;
  out.writeUInt32LE(epoch >>> 0, p);
  out.writeUInt32LE(Math.floor(epoch / 0x1_0000_0000), p + 4);
  out.writeUInt32LE(count, p + 8);
  p += BATCH_PREFIX_SIZE;
  for (let i = 0; i < count; i++, p += BATCH_ENTRY_SIZE) {
    out.writeUInt32LE(scratchIndex[i]!, p);
    out[p + 4] = scratchEnc[i]!;
    out[p + 5] = 0;
    out.writeUInt16LE(scratchLen[i]!, p + 6);
  }
  let bodyCrc: number | undefined;
  if (header !== undefined) out.writeUInt32LE(crc32(out.subarray(0, total - 4)), total - 4);
  else {
    bodyCrc = crc32(out.subarray(HEADER_SIZE, total - 4));
    out.writeUInt32LE(0, total - 4);
  }
  if (delta !== undefined) {
    // The frame is complete: from now on the receiver's version of each page is what it carries.
    for (let i = 0; i < count; i++) {
      const zero = scratchEnc[i] === PAGE_ENCODING.zero;
      delta.sent(i, scratchIndex[i]!, zero ? ZERO_PAGE : dataOf(i), zero, scratchRewritten[i] === 1);
    }
  }
  return {
    frame: ownedPrefix(out, total),
    rawBytes: count * PAGE_SIZE,
    wireBytes: total,
    zeroPages,
    rawPages: count - zeroPages - lz4Pages - xorPages,
    lz4Pages,
    xorPages,
    ...(bodyCrc === undefined ? {} : { bodyCrc }),
  };
}

/**
 * The first `total` bytes of `out` as a view at the start of a buffer of its
 * own. When the frame fills less than half of `out` it is copied into one of
 * its size: a queued frame must not hold a whole batch's worth of memory (a
 * batch of zero pages is a few hundred bytes of frame in a buffer of a
 * megabyte, and a sync queues thousands of them).
 */
function ownedPrefix(out: Buffer, total: number): Buffer {
  if (total * 2 >= out.length) return out.subarray(0, total);
  const own = Buffer.allocUnsafeSlow(total);
  out.copy(own, 0, 0, total);
  return own;
}

// ---- frames built elsewhere (worker threads), sealed on the sending thread ----

const CRC_POLY = 0xedb88320; // CRC-32 (IEEE), bit-reflected
/** x^(2^k) mod P for k = 0..31, bit-reflected (x^0 is bit 31). */
const X2N: Uint32Array = (() => {
  const t = new Uint32Array(32);
  t[0] = 0x4000_0000; // x^1
  for (let k = 1; k < 32; k++) t[k] = multModP(t[k - 1] as number, t[k - 1] as number);
  return t;
})();

/** a·b mod P over GF(2), both bit-reflected. */
function multModP(a: number, b: number): number {
  let p = 0;
  let bb = b >>> 0;
  for (let m = 0x8000_0000; m !== 0; m >>>= 1) {
    if ((a & m) !== 0) p ^= bb;
    bb = (bb & 1) !== 0 ? (bb >>> 1) ^ CRC_POLY : bb >>> 1;
  }
  return p >>> 0;
}

/**
 * crc32(A ‖ B) from crc32(A), crc32(B) and B's length, in O(log len) (the
 * zlib crc32_combine identity: shift A's CRC past len zero bytes, add B's).
 */
export function crc32Combine(crcA: number, crcB: number, lenB: number): number {
  let x = 0x8000_0000; // x^0
  let n = lenB;
  let k = 3; // bytes to bits: x^(8·len) = x^(len·2^3)
  while (n > 0) {
    if (n % 2 === 1) x = multModP(X2N[k & 31] as number, x);
    n = Math.floor(n / 2);
    k++;
  }
  return (multModP(x, crcA >>> 0) ^ crcB) >>> 0;
}

/**
 * Stamps `session` and `seq` into a frame built without them (session and seq
 * 0, as `encodeBatchFrame` with `bodyCrc` builds them off the sending thread)
 * and writes its trailer from the body's CRC, without reading the body again.
 */
export function sealFrame(frame: Buffer, session: number, seq: number, bodyCrc: number): void {
  checkU32(session, "session");
  checkU32(seq, "seq");
  if (frame.length < FRAME_OVERHEAD) throw new ProtocolError("truncated", "frame too short to seal");
  frame.writeUInt32LE(session, 4);
  frame.writeUInt32LE(seq, 8);
  const bodyLen = frame.length - FRAME_OVERHEAD;
  const crc = crc32Combine(crc32(frame.subarray(0, HEADER_SIZE)), bodyCrc, bodyLen);
  frame.writeUInt32LE(crc, frame.length - 4);
}

/** Writes the 16-byte frame header. */
export function writeHeader(out: Buffer, type: number, session: number, seq: number, bodyLen: number): void {
  checkU32(session, "session");
  checkU32(seq, "seq");
  if (bodyLen > LIMITS.maxBody) throw new ProtocolError("too-large", `body of ${bodyLen} bytes`);
  out.writeUInt16LE(MAGIC, 0);
  out[2] = PROTOCOL_VERSION;
  out[3] = type;
  out.writeUInt32LE(session, 4);
  out.writeUInt32LE(seq, 8);
  out.writeUInt32LE(bodyLen, 12);
}

function checkU32(v: number, field: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
    throw new ProtocolError("bad-value", `${field} ${v} is not a u32`);
  }
}
