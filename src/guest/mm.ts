/**
 * Memory management for code whose state lives in a `Mem`: a page-frame
 * allocator and a small-object heap. Both keep every byte of their state
 * (bitmaps, free lists, counters) inside the memory they manage, so a
 * checkpoint of the pages carries the allocator too. The classes here are
 * stateless handles: two handles on the same memory see the same allocator.
 *
 * Address 0 is never handed out (the kernel header lives there), so 0 serves
 * as the null pointer in guest data structures.
 */
import { type Mem, PAGE_SHIFT, PAGE_SIZE } from "../domain/memory.js";
import { RemusError } from "../errors.js";
import type { NetHeap } from "../net/ctx.js";

const PA_MAGIC = 0x50414c31; // "PAL1"
// Page allocator header (32 bytes):
//  0 u32 magic  4 u32 firstPfn  8 u32 pageCount  12 u32 freeCount  16 u32 hint (relative)  20 u32 bitmapAddr
const PA_SIZE = 32;

/**
 * Allocates runs of contiguous pages from `[firstPfn, firstPfn+pageCount)`.
 * One bit per page (1 = used) at `bitmapAddr`; next-fit from a rotating hint.
 */
export class PageAllocator {
  constructor(
    readonly mem: Mem,
    readonly hdr: number,
  ) {
    if (mem.u32(hdr) !== PA_MAGIC) throw new RemusError("REMUSD_ERR_CORRUPT", `no page allocator at ${hdr}`);
  }

  /** Bytes of bitmap needed to manage `pageCount` pages. */
  static bitmapBytes(pageCount: number): number {
    return Math.ceil(pageCount / 32) * 4;
  }

  /** Writes an empty allocator; the bitmap must not overlap the managed pages. */
  static format(
    mem: Mem,
    hdr: number,
    bitmapAddr: number,
    firstPfn: number,
    pageCount: number,
  ): PageAllocator {
    mem.fill(hdr, PA_SIZE, 0);
    mem.fill(bitmapAddr, PageAllocator.bitmapBytes(pageCount), 0);
    mem.setU32(hdr + 4, firstPfn);
    mem.setU32(hdr + 8, pageCount);
    mem.setU32(hdr + 12, pageCount);
    mem.setU32(hdr + 16, 0);
    mem.setU32(hdr + 20, bitmapAddr);
    mem.setU32(hdr, PA_MAGIC);
    return new PageAllocator(mem, hdr);
  }

  get firstPfn(): number {
    return this.mem.u32(this.hdr + 4);
  }
  get pageCount(): number {
    return this.mem.u32(this.hdr + 8);
  }
  get freePages(): number {
    return this.mem.u32(this.hdr + 12);
  }

  private used(i: number, bitmap: number): boolean {
    return (this.mem.u32(bitmap + (i >>> 5) * 4) & (1 << (i & 31))) !== 0;
  }

  private setUsed(i: number, n: number, used: boolean, bitmap: number): void {
    for (let k = i; k < i + n; k++) {
      const a = bitmap + (k >>> 5) * 4;
      const w = this.mem.u32(a);
      const m = 1 << (k & 31);
      this.mem.setU32(a, used ? w | m : w & ~m);
    }
  }

  /** Address of a zeroed run of `n` pages, or 0 when no run of that length is free. */
  tryAlloc(n: number): number {
    const mem = this.mem;
    const count = this.pageCount;
    if (!Number.isInteger(n) || n <= 0 || n > this.freePages) return 0;
    const bitmap = mem.u32(this.hdr + 20);
    const hint = mem.u32(this.hdr + 16);
    // Next fit: runs starting at [hint, count), then at [0, hint).
    const search = (from: number, to: number): number => {
      let i = from;
      while (i < to && i + n <= count) {
        if ((i & 31) === 0 && i + 32 <= count && mem.u32(bitmap + (i >>> 5) * 4) === 0xffffffff) {
          i += 32; // a whole used word
          continue;
        }
        if (this.used(i, bitmap)) {
          i++;
          continue;
        }
        let run = 1;
        while (run < n && !this.used(i + run, bitmap)) run++;
        if (run === n) return i;
        i += run + 1; // i + run is used
      }
      return -1;
    };
    let i = search(hint, count);
    if (i < 0) i = search(0, hint);
    if (i >= 0) {
      this.setUsed(i, n, true, bitmap);
      mem.setU32(this.hdr + 12, this.freePages - n);
      mem.setU32(this.hdr + 16, (i + n) % count);
      const addr = (this.firstPfn + i) * PAGE_SIZE;
      mem.fill(addr, n * PAGE_SIZE, 0);
      return addr;
    }
    return 0;
  }

  alloc(n: number): number {
    const a = this.tryAlloc(n);
    if (a === 0) {
      throw new RemusError("REMUSD_ERR_NO_SPACE", `out of guest pages: wanted ${n}, ${this.freePages} free`);
    }
    return a;
  }

  free(addr: number, n: number): void {
    const pfn = addr >>> PAGE_SHIFT;
    const i = pfn - this.firstPfn;
    if (addr % PAGE_SIZE !== 0 || i < 0 || i + n > this.pageCount || n <= 0) {
      throw new RemusError("REMUSD_ERR_CORRUPT", `free of pages [${addr}, +${n}) outside the allocator`);
    }
    const bitmap = this.mem.u32(this.hdr + 20);
    for (let k = i; k < i + n; k++) {
      if (!this.used(k, bitmap))
        throw new RemusError("REMUSD_ERR_CORRUPT", `double free of page ${pfn + k - i}`);
    }
    this.setUsed(i, n, false, bitmap);
    this.mem.setU32(this.hdr + 12, this.freePages + n);
  }

  isUsed(pfn: number): boolean {
    const i = pfn - this.firstPfn;
    if (i < 0 || i >= this.pageCount) return false;
    return this.used(i, this.mem.u32(this.hdr + 20));
  }
}

const HEAP_MAGIC = 0x48454150; // "HEAP"
/** Size classes of the small-object heap; larger requests take whole pages. */
export const HEAP_CLASSES = [16, 32, 64, 128, 256, 512, 1024, 2048] as const;
// Heap header: 0 u32 magic, 4 u32 page allocator header addr, 8 u32 bytesInUse (approx, by class size),
// 12 u32 allocations, 16.. u32 free-list head per class.
export const HEAP_HEADER_SIZE = 16 + HEAP_CLASSES.length * 4;

function classOf(size: number): number {
  for (let c = 0; c < HEAP_CLASSES.length; c++) if (size <= (HEAP_CLASSES[c] as number)) return c;
  return -1;
}

/**
 * A size-class heap. Small chunks come from pages carved into equal chunks with
 * an intrusive free list (the first 4 bytes of a free chunk hold the next free
 * chunk's address); requests above 2048 bytes take whole pages. `free` must be
 * given the size that was allocated (sized deallocation: no per-chunk header).
 * Memory is returned zeroed.
 */
export class Heap implements NetHeap {
  readonly pages: PageAllocator;

  constructor(
    readonly mem: Mem,
    readonly hdr: number,
  ) {
    if (mem.u32(hdr) !== HEAP_MAGIC) throw new RemusError("REMUSD_ERR_CORRUPT", `no heap at ${hdr}`);
    this.pages = new PageAllocator(mem, mem.u32(hdr + 4));
  }

  static format(mem: Mem, hdr: number, pages: PageAllocator): Heap {
    mem.fill(hdr, HEAP_HEADER_SIZE, 0);
    mem.setU32(hdr + 4, pages.hdr);
    mem.setU32(hdr, HEAP_MAGIC);
    return new Heap(mem, hdr);
  }

  get bytesInUse(): number {
    return this.mem.u32(this.hdr + 8);
  }
  get allocations(): number {
    return this.mem.u32(this.hdr + 12);
  }

  private account(bytes: number, allocs: number): void {
    this.mem.setU32(this.hdr + 8, this.bytesInUse + bytes);
    this.mem.setU32(this.hdr + 12, this.allocations + allocs);
  }

  /** Zeroed memory of at least `size` bytes, or 0 when the guest is out of memory. */
  tryAlloc(size: number): number {
    if (!Number.isInteger(size) || size <= 0) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `heap allocation of ${size} bytes`);
    }
    const c = classOf(size);
    if (c < 0) {
      const n = Math.ceil(size / PAGE_SIZE);
      const a = this.pages.tryAlloc(n);
      if (a !== 0) this.account(n * PAGE_SIZE, 1);
      return a;
    }
    const chunk = HEAP_CLASSES[c] as number;
    const headAddr = this.hdr + 16 + c * 4;
    let head = this.mem.u32(headAddr);
    if (head === 0) {
      const page = this.pages.tryAlloc(1);
      if (page === 0) return 0;
      // Thread the page's chunks onto the free list, lowest address first.
      for (let off = PAGE_SIZE - chunk; off >= 0; off -= chunk) {
        this.mem.setU32(page + off, head);
        head = page + off;
      }
    }
    this.mem.setU32(headAddr, this.mem.u32(head));
    this.mem.setU32(head, 0);
    this.account(chunk, 1);
    return head;
  }

  alloc(size: number): number {
    const a = this.tryAlloc(size);
    if (a === 0) throw new RemusError("REMUSD_ERR_NO_SPACE", `guest heap exhausted allocating ${size} bytes`);
    return a;
  }

  /** Frees memory from `alloc(size)`; `size` must be the size that was asked for. */
  free(addr: number, size: number): void {
    if (addr === 0) return;
    const c = classOf(size);
    if (c < 0) {
      const n = Math.ceil(size / PAGE_SIZE);
      this.pages.free(addr, n);
      this.account(-n * PAGE_SIZE, -1);
      return;
    }
    const chunk = HEAP_CLASSES[c] as number;
    if (addr % chunk !== 0) throw new RemusError("REMUSD_ERR_CORRUPT", `free of misaligned chunk ${addr}`);
    const headAddr = this.hdr + 16 + c * 4;
    this.mem.fill(addr, chunk, 0);
    this.mem.setU32(addr, this.mem.u32(headAddr));
    this.mem.setU32(headAddr, addr);
    this.account(-chunk, -1);
  }

  /** Size actually reserved for a request of `size` bytes. */
  static reserved(size: number): number {
    const c = classOf(size);
    return c < 0 ? Math.ceil(size / PAGE_SIZE) * PAGE_SIZE : (HEAP_CLASSES[c] as number);
  }
}

/**
 * Lays out a page allocator and heap over a whole plain `Mem` (for code that runs
 * outside a domain, such as the client side of the TCP stack). Page 0 holds the
 * headers and bitmap; the rest is managed.
 */
export function formatStandaloneHeap(mem: Mem): Heap {
  const pages = mem.size / PAGE_SIZE;
  const bitmapBytes = PageAllocator.bitmapBytes(pages);
  const metaPages = Math.ceil((256 + bitmapBytes) / PAGE_SIZE);
  const pa = PageAllocator.format(mem, 0x40, 256, metaPages, pages - metaPages);
  return Heap.format(mem, 0x80, pa);
}
