/**
 * Guest physical memory: one preallocated buffer of 4 KiB pages, with every
 * write going through an accessor that marks the written pages in a dirty log
 * (log-dirty mode). Reads never dirty.
 *
 * Guest memory lives in a SharedArrayBuffer so that worker threads (the
 * checkpoint pipeline's compression) can read pages without a copy. Every
 * write reaches `willWrite` before it changes a byte: that is where the dirty
 * logs are marked and where a copy-on-write capture (capture.ts) saves a frozen
 * page's old bytes before the guest overwrites them.
 *
 * `Mem` is the byte-addressed interface that all guest code (kernel, file
 * system, TCP stack, services) is written against. `GuestMemory` implements it
 * with dirty logging; `PlainMemory` implements it over ordinary memory for code
 * that runs outside a domain (the client side of the TCP stack).
 *
 * Addresses are guest-physical byte offsets, `0 <= addr < size <= 2^32`, so they
 * fit an unsigned 32-bit integer and `addr >>> PAGE_SHIFT` is the pfn.
 */
import { RemusError } from "../errors.js";

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Largest domain: 4096 MiB, so every address fits in a u32. */
export const MAX_DOMAIN_BYTES = 2 ** 32;

/** Byte-addressed little-endian memory. All guest state is read and written through this. */
export interface Mem {
  readonly size: number;
  u8(addr: number): number;
  u16(addr: number): number;
  u32(addr: number): number;
  /** u64 as a JS number; exact up to 2^53, callers keep values below that. */
  u64(addr: number): number;
  setU8(addr: number, v: number): void;
  setU16(addr: number, v: number): void;
  setU32(addr: number, v: number): void;
  setU64(addr: number, v: number): void;
  /** Copies `len` bytes at `addr` into `dst[dstOff..]`. */
  readInto(addr: number, dst: Uint8Array, dstOff: number, len: number): void;
  /** A fresh copy of `len` bytes at `addr`. */
  read(addr: number, len: number): Buffer;
  /**
   * A read-only view of `len` bytes at `addr` without copying. The caller must not
   * write through it (that would bypass the dirty log) and must not keep it past
   * the next write to that range.
   */
  view(addr: number, len: number): Buffer;
  write(addr: number, src: Uint8Array, srcOff?: number, len?: number): void;
  fill(addr: number, len: number, value: number): void;
  /** memmove within this memory. */
  copyWithin(dst: number, src: number, len: number): void;
  /** Byte equality of `len` bytes at `addr` with `other`. */
  equals(addr: number, other: Uint8Array, otherOff: number, len: number): boolean;
}

/**
 * A set of pfns with O(1) insert and O(count) drain: a bitmap answers "already in
 * the set?" and an append-only list remembers insertion, so draining never scans
 * all of memory (a 4096 MiB domain has a million pages; an epoch dirties a few
 * thousand).
 */
export class DirtyLog {
  readonly pages: number;
  private readonly bits: Uint32Array;
  private readonly list: Uint32Array;
  private n = 0;
  /**
   * Where members go when they leave this log (drain, take, clear): with a
   * sink, the sink and this log together hold everything marked since the
   * sink was attached (a primary's pages dirtied since its activation,
   * src/replication/rewind.ts), however often this log is drained.
   */
  sink: DirtyLog | undefined;

  constructor(pages: number) {
    this.pages = pages;
    this.bits = new Uint32Array(Math.ceil(pages / 32));
    this.list = new Uint32Array(pages);
  }

  get count(): number {
    return this.n;
  }

  has(pfn: number): boolean {
    return ((this.bits[pfn >>> 5] as number) & (1 << (pfn & 31))) !== 0;
  }

  mark(pfn: number): void {
    const w = pfn >>> 5;
    const m = 1 << (pfn & 31);
    const word = this.bits[w] as number;
    if ((word & m) === 0) {
      this.bits[w] = word | m;
      this.list[this.n++] = pfn;
    }
  }

  /** Marks every page from `first` to `last` inclusive. */
  markRange(first: number, last: number): void {
    for (let p = first; p <= last; p++) this.mark(p);
  }

  /** Adds every pfn of `pfns[0..count)`. */
  markAll(pfns: Uint32Array, count: number): void {
    for (let i = 0; i < count; i++) this.mark(pfns[i] as number);
  }

  /** Marks every page of the domain (used to force a full resync). */
  markEverything(): void {
    for (let p = 0; p < this.pages; p++) this.mark(p);
  }

  /**
   * Copies the set into `out` (a new array if `out` is too small), clears the
   * set, and returns the filled prefix. Sorted ascending unless `sorted` is false,
   * in which case it keeps the order of first insertion. Cost O(count log count),
   * or O(pages/32 + count) when the set is dense.
   */
  drain(out?: Uint32Array, sorted = true): Uint32Array {
    const n = this.n;
    const dst = out && out.length >= n ? out : new Uint32Array(Math.max(n, 16));
    const res = dst.subarray(0, n);
    if (sorted && n * 16 > this.bits.length) {
      // Dense set: walking the bitmap in pfn order, O(pages/32 + count), beats sorting
      // (16,384 pfns sort in about 0.7 ms here, which would be most of a pause).
      const bits = this.bits;
      let k = 0;
      for (let w = 0; k < n; w++) {
        let x = bits[w] as number;
        if (x === 0) continue;
        bits[w] = 0;
        const base = w << 5;
        while (x !== 0) {
          const low = x & -x;
          res[k++] = base + 31 - Math.clz32(low);
          x ^= low;
        }
      }
      this.n = 0;
      this.sink?.markAll(res, n);
      return res;
    }
    res.set(this.list.subarray(0, n));
    if (sorted) res.sort();
    for (let i = 0; i < n; i++) {
      const pfn = this.list[i] as number;
      this.bits[pfn >>> 5] = 0;
    }
    this.n = 0;
    this.sink?.markAll(res, n);
    return res;
  }

  /**
   * Removes up to `max` members (the most recently inserted first) and returns
   * them in a new array, for work that is done a slice at a time. Cost O(max).
   */
  take(max: number): Uint32Array {
    const k = Math.max(0, Math.min(this.n, Math.floor(max)));
    const res = this.list.slice(this.n - k, this.n);
    for (let i = 0; i < k; i++) {
      const pfn = res[i] as number;
      this.bits[pfn >>> 5] = (this.bits[pfn >>> 5] as number) & ~(1 << (pfn & 31));
    }
    this.n -= k;
    this.sink?.markAll(res, k);
    return res;
  }

  /** The current members in insertion order, without clearing (a view; valid until the next mark/drain). */
  peek(): Uint32Array {
    return this.list.subarray(0, this.n);
  }

  clear(): void {
    this.sink?.markAll(this.list, this.n);
    for (let i = 0; i < this.n; i++) this.bits[(this.list[i] as number) >>> 5] = 0;
    this.n = 0;
  }

  /** The members of this log and of `other` (same size), sorted, without changing either. */
  union(other: DirtyLog): Uint32Array {
    const u = new DirtyLog(this.pages);
    u.markAll(this.list, this.n);
    u.markAll(other.list, other.n);
    return u.drain();
  }
}

function checkSize(bytes: number): void {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes % PAGE_SIZE !== 0 || bytes > MAX_DOMAIN_BYTES) {
    throw new RemusError(
      "REMUSD_ERR_BAD_GEOMETRY",
      `memory size must be a positive multiple of ${PAGE_SIZE} bytes up to 4096 MiB, got ${bytes}`,
    );
  }
}

/** Memory over a plain Buffer, with bounds checks and no dirty logging. */
export class PlainMemory implements Mem {
  readonly size: number;
  readonly buf: Buffer;

  constructor(bytesOrBuffer: number | Buffer) {
    if (typeof bytesOrBuffer === "number") {
      checkSize(bytesOrBuffer);
      this.buf = Buffer.alloc(bytesOrBuffer);
    } else {
      this.buf = bytesOrBuffer;
    }
    this.size = this.buf.length;
  }

  /** Throws a typed error unless `[addr, addr+len)` lies inside this memory. */
  protected check(addr: number, len: number): void {
    if (
      !(addr >= 0 && len >= 0 && addr + len <= this.size) ||
      !Number.isInteger(addr) ||
      !Number.isInteger(len)
    ) {
      throw new RemusError(
        "REMUSD_ERR_OUT_OF_RANGE",
        `memory access [${addr}, +${len}) outside [0, ${this.size})`,
      );
    }
  }

  /** Hook for subclasses: `[addr, addr+len)` (len >= 1, in range) is about to be written. */
  protected willWrite(_addr: number, _len: number): void {}

  u8(addr: number): number {
    this.check(addr, 1);
    return this.buf[addr] as number;
  }
  u16(addr: number): number {
    this.check(addr, 2);
    return this.buf.readUInt16LE(addr);
  }
  u32(addr: number): number {
    this.check(addr, 4);
    return this.buf.readUInt32LE(addr);
  }
  u64(addr: number): number {
    this.check(addr, 8);
    return this.buf.readUInt32LE(addr) + this.buf.readUInt32LE(addr + 4) * 0x1_0000_0000;
  }
  setU8(addr: number, v: number): void {
    this.check(addr, 1);
    this.willWrite(addr, 1);
    this.buf[addr] = v;
  }
  setU16(addr: number, v: number): void {
    this.check(addr, 2);
    this.willWrite(addr, 2);
    this.buf.writeUInt16LE(v & 0xffff, addr);
  }
  setU32(addr: number, v: number): void {
    this.check(addr, 4);
    this.willWrite(addr, 4);
    this.buf.writeUInt32LE(v >>> 0, addr);
  }
  setU64(addr: number, v: number): void {
    this.check(addr, 8);
    if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER) || !Number.isInteger(v)) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `u64 value ${v} is not a safe non-negative integer`);
    }
    this.willWrite(addr, 8);
    this.buf.writeUInt32LE(v % 0x1_0000_0000, addr);
    this.buf.writeUInt32LE(Math.floor(v / 0x1_0000_0000), addr + 4);
  }
  readInto(addr: number, dst: Uint8Array, dstOff: number, len: number): void {
    this.check(addr, len);
    if (dstOff < 0 || dstOff + len > dst.length) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `destination too small for ${len} bytes at ${dstOff}`);
    }
    dst.set(this.buf.subarray(addr, addr + len), dstOff);
  }
  read(addr: number, len: number): Buffer {
    this.check(addr, len);
    return Buffer.from(this.buf.subarray(addr, addr + len));
  }
  view(addr: number, len: number): Buffer {
    this.check(addr, len);
    return this.buf.subarray(addr, addr + len);
  }
  write(addr: number, src: Uint8Array, srcOff = 0, len = src.length - srcOff): void {
    this.check(addr, len);
    if (srcOff < 0 || srcOff + len > src.length) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `source range [${srcOff}, +${len}) outside its buffer`);
    }
    if (len === 0) return;
    this.willWrite(addr, len);
    this.buf.set(src.subarray(srcOff, srcOff + len), addr);
  }
  fill(addr: number, len: number, value: number): void {
    this.check(addr, len);
    if (len === 0) return;
    this.willWrite(addr, len);
    this.buf.fill(value, addr, addr + len);
  }
  copyWithin(dst: number, src: number, len: number): void {
    this.check(dst, len);
    this.check(src, len);
    if (len === 0) return;
    this.willWrite(dst, len);
    this.buf.copyWithin(dst, src, src + len);
  }
  equals(addr: number, other: Uint8Array, otherOff: number, len: number): boolean {
    this.check(addr, len);
    if (otherOff < 0 || otherOff + len > other.length) return false;
    return this.buf.compare(other, otherOff, otherOff + len, addr, addr + len) === 0;
  }
}

/**
 * What a copy-on-write capture installs in guest memory (capture.ts): a page
 * with `frozen[pfn] !== 0` is still needed, by a capture, in the state it had
 * at that capture's pause, and `preserve(pfn)` saves its bytes for it (and
 * clears `frozen[pfn]`). Installed only while a capture is outstanding, so a
 * write costs one typed-array read per page more then, and nothing otherwise.
 */
export interface WriteBarrier {
  readonly frozen: Int32Array;
  preserve(pfn: number): void;
}

/**
 * Guest physical memory in log-dirty mode: every write marks the pages it
 * touched in `log`. The replication layer drains the log once per epoch.
 */
export class GuestMemory extends PlainMemory {
  readonly pages: number;
  /** The memory itself, shareable with worker threads (`buf` is a Buffer over it). */
  readonly shared: SharedArrayBuffer;
  /** Pages written since the log was last drained (the replication's epoch dirty set). */
  readonly log: DirtyLog;
  /** Pages written since the digest last rehashed them (the digest's own log). */
  readonly hashLog: DirtyLog;
  /** One bit per page: ever written since the memory was created (a clear bit means all zero). */
  private readonly written: Uint32Array;
  private barrier: WriteBarrier | undefined;

  constructor(bytes: number) {
    checkSize(bytes);
    // Zero-filled and committed lazily by the OS, like Buffer.alloc of a large size.
    const shared = new SharedArrayBuffer(bytes);
    super(Buffer.from(shared));
    this.shared = shared;
    this.pages = bytes / PAGE_SIZE;
    this.log = new DirtyLog(this.pages);
    this.hashLog = new DirtyLog(this.pages);
    this.written = new Uint32Array(Math.ceil(this.pages / 32));
  }

  static ofMiB(mib: number): GuestMemory {
    return new GuestMemory(mib * 1024 * 1024);
  }

  protected override willWrite(addr: number, len: number): void {
    const first = addr >>> PAGE_SHIFT;
    const last = (addr + len - 1) >>> PAGE_SHIFT;
    const b = this.barrier;
    if (b !== undefined) {
      // Why: a capture's pause-time view must not see this write; save the old bytes first.
      const frozen = b.frozen;
      for (let p = first; p <= last; p++) if (frozen[p] !== 0) b.preserve(p);
    }
    for (let p = first; p <= last; p++) this.marked(p);
  }

  /** Page `p` changed: the replication's and the digest's logs, and the written bit. */
  private marked(p: number): void {
    this.log.mark(p);
    this.hashLog.mark(p);
    this.written[p >>> 5] = (this.written[p >>> 5] as number) | (1 << (p & 31));
  }

  /** Whether a copy-on-write barrier is installed (a capture still holds pages). */
  get hasWriteBarrier(): boolean {
    return this.barrier !== undefined;
  }

  /** Installs (or with undefined removes) the copy-on-write barrier; one at a time. */
  setWriteBarrier(b: WriteBarrier | undefined): void {
    if (b !== undefined && this.barrier !== undefined && this.barrier !== b) {
      throw new RemusError("REMUSD_ERR_INTERNAL", "guest memory already has a write barrier");
    }
    this.barrier = b;
  }

  /**
   * True when page `pfn` was never written since this memory was created, so it
   * is all zero and the OS may not even have committed it. (Every write goes
   * through the accessors, the same rule dirty logging relies on.)
   */
  isPristine(pfn: number): boolean {
    return ((this.written[pfn >>> 5] as number) & (1 << (pfn & 31))) === 0;
  }

  /**
   * Records that `count` pages of `pfns` were written behind the accessors (by
   * a worker thread decoding into this memory): marks them in the logs as a
   * write through the accessors would have. Not while a capture is
   * outstanding: such a write would have bypassed its copy-on-write.
   */
  noteWritten(pfns: ArrayLike<number>, count = pfns.length): void {
    if (this.barrier !== undefined) {
      throw new RemusError("REMUSD_ERR_INTERNAL", "pages written behind a copy-on-write capture");
    }
    for (let i = 0; i < count; i++) this.checkPfn(pfns[i] as number);
    for (let i = 0; i < count; i++) this.marked(pfns[i] as number);
  }

  /**
   * Replaces the whole memory with `src` (same size) in one copy, for restoring
   * a domain image. Outstanding captures keep their pause-time views; the dirty
   * logs are left alone (the caller knows what the new contents mean).
   */
  loadImage(src: Uint8Array): void {
    if (src.length !== this.size) {
      throw new RemusError("REMUSD_ERR_BAD_GEOMETRY", `image of ${src.length} bytes for ${this.size}`);
    }
    const b = this.barrier;
    if (b !== undefined) {
      for (let p = 0; p < this.pages; p++) if (b.frozen[p] !== 0) b.preserve(p);
    }
    this.buf.set(src);
    this.written.fill(0xffff_ffff);
  }

  checkPfn(pfn: number): void {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.pages) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `pfn ${pfn} outside [0, ${this.pages})`);
    }
  }

  /** Read-only view of one page (see `view`). */
  page(pfn: number): Buffer {
    this.checkPfn(pfn);
    const a = pfn * PAGE_SIZE;
    return this.buf.subarray(a, a + PAGE_SIZE);
  }

  /**
   * A writable view of one page, marked dirty first (for decoding a received page
   * straight into place). The caller must write only through this view, at once.
   */
  writablePage(pfn: number): Buffer {
    this.checkPfn(pfn);
    this.willWrite(pfn * PAGE_SIZE, PAGE_SIZE);
    const a = pfn * PAGE_SIZE;
    return this.buf.subarray(a, a + PAGE_SIZE);
  }

  /** Overwrites one page and marks it dirty (the apply primitive uses this). */
  writePage(pfn: number, src: Uint8Array, srcOff = 0): void {
    this.checkPfn(pfn);
    this.write(pfn * PAGE_SIZE, src, srcOff, PAGE_SIZE);
  }

  /**
   * Makes page `pfn` all zero. A page that is zero already is left alone: not
   * written, not marked dirty (its contents, hence the digest, do not change),
   * and a pristine page is not even read, so a full sync of a mostly empty
   * domain neither touches nor commits its memory. Returns whether it wrote.
   */
  zeroPage(pfn: number): boolean {
    this.checkPfn(pfn);
    if (this.isPristine(pfn)) return false;
    const a = pfn * PAGE_SIZE;
    if (this.buf.compare(ZERO_PAGE_BYTES, 0, PAGE_SIZE, a, a + PAGE_SIZE) === 0) return false;
    this.fill(a, PAGE_SIZE, 0);
    return true;
  }
}

const ZERO_PAGE_BYTES = new Uint8Array(PAGE_SIZE);
