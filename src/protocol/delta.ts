/**
 * XOR deltas (the XOR_LZ4 page encoding, proto/SPEC.md §6.4.1): a page the
 * receiver already holds a version of is sent as LZ4(page XOR base), where the
 * base is the version of that page the sender last sent in this sync. A guest
 * that rewrites a few bytes of a page produces a delta that is almost all
 * zero, which LZ4 shrinks to a few dozen bytes.
 *
 * The sender remembers the versions it sent in a `SentPageCache`: a bounded
 * set of page slots (CLOCK replacement), so the cost is fixed however large the
 * domain. A page that is not in the cache (never sent, evicted) is sent as
 * plain LZ4 or RAW; nothing else changes. The slots live in a
 * SharedArrayBuffer so worker threads can read bases and write new versions
 * (a slot a worker uses is pinned until its job is done).
 *
 * The invalidation rule (normative in the spec, and what the replication
 * machines must do): the cache describes the receiver's pages only within one
 * sync. `clear()` it whenever the sender sends SYNC_BEGIN, whenever the
 * connection ends, and after a NACK (the next thing sent is a SYNC_BEGIN or a
 * GOODBYE). Record in it exactly the bytes that went out (the capture's
 * pause-time view, never live memory that may have changed since), and only
 * for PAGE_BATCH entries: disk blocks have no bases.
 */
import type { PageBases } from "./batch.js";
import { PAGE_SIZE } from "./constants.js";

/**
 * `dst[dstOff..+4096) = a[aOff..+4096) XOR b[bOff..+4096)`; `dst` may be `a`
 * or `b` at the same offset. Returns how many of the page's 1,024 32-bit words
 * of the result are not zero (what tells whether a delta is worth compressing).
 */
export function xorPage(
  dst: Uint8Array,
  dstOff: number,
  a: Uint8Array,
  aOff: number,
  b: Uint8Array,
  bOff: number,
): number {
  const da = dst.byteOffset + dstOff;
  const aa = a.byteOffset + aOff;
  const ba = b.byteOffset + bOff;
  let nonZero = 0;
  if (((da | aa | ba) & 3) === 0) {
    // Word at a time when all three are 4-byte aligned (guest memory, staging, slots are).
    const d32 = new Int32Array(dst.buffer, da, PAGE_SIZE / 4);
    const a32 = new Int32Array(a.buffer, aa, PAGE_SIZE / 4);
    const b32 = new Int32Array(b.buffer, ba, PAGE_SIZE / 4);
    for (let i = 0; i < PAGE_SIZE / 4; i++) {
      const x = (a32[i] as number) ^ (b32[i] as number);
      d32[i] = x;
      if (x !== 0) nonZero++;
    }
    return nonZero;
  }
  for (let i = 0; i < PAGE_SIZE; i++) {
    dst[dstOff + i] = (a[aOff + i] as number) ^ (b[bOff + i] as number);
  }
  for (let w = 0; w < PAGE_SIZE; w += 4) {
    if (
      (dst[dstOff + w] as number) |
      (dst[dstOff + w + 1] as number) |
      (dst[dstOff + w + 2] as number) |
      (dst[dstOff + w + 3] as number)
    )
      nonZero++;
  }
  return nonZero;
}

/**
 * A delta with more non-zero words than this is not tried as XOR_LZ4: the
 * page changed all over (rewritten, not edited), so the delta compresses no
 * better than the page and trying costs a second LZ4 pass.
 */
export const XOR_MAX_NONZERO_WORDS = (PAGE_SIZE / 4) * 0.75;

export interface SentPageCacheStats {
  /** Lookups that found a base. */
  hits: number;
  misses: number;
  /** Versions dropped to make room. */
  evictions: number;
  /** New versions that found no slot (every slot pinned). */
  refused: number;
}

/**
 * The versions of pages the sender last sent, in `capacity` slots of 4 KiB.
 * Not thread-safe by itself: the owner (main thread) looks up and assigns
 * slots; workers only read and write the slots they were handed, pinned.
 */
export class SentPageCache implements PageBases {
  readonly capacity: number;
  /** The slots, `capacity` × 4096 bytes. */
  readonly shared: SharedArrayBuffer;
  readonly slots: Buffer;
  /** Per pfn: its slot, or -1. */
  private readonly slotOf: Int32Array;
  /** Per slot: its pfn, or -1 when free. */
  private readonly pfnOf: Int32Array;
  private readonly referenced: Uint8Array;
  private readonly pins: Uint16Array;
  /** A slot whose version was superseded while pinned: dropped at its last unpin. */
  private readonly doomed: Uint8Array;
  private hand = 0;
  private used = 0;
  readonly stats: SentPageCacheStats = { hits: 0, misses: 0, evictions: 0, refused: 0 };

  /** `pages`: the domain's pages (pfns are below it); `capacity`: slots to keep (at least 1). */
  constructor(pages: number, capacity: number) {
    if (!Number.isInteger(pages) || pages < 1) throw new RangeError(`pages ${pages}`);
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity ${capacity}`);
    this.capacity = Math.min(capacity, pages);
    this.shared = new SharedArrayBuffer(this.capacity * PAGE_SIZE);
    this.slots = Buffer.from(this.shared);
    this.slotOf = new Int32Array(pages).fill(-1);
    this.pfnOf = new Int32Array(this.capacity).fill(-1);
    this.referenced = new Uint8Array(this.capacity);
    this.pins = new Uint16Array(this.capacity);
    this.doomed = new Uint8Array(this.capacity);
  }

  /** Versions held now. */
  get size(): number {
    return this.used;
  }

  /**
   * The slot holding the receiver's version of `pfn`, or -1 (counts a hit or a
   * miss). A slot a job holds (pinned) is not readable: -1.
   */
  lookup(pfn: number): number {
    const s = this.slotOf[pfn] ?? -1;
    if (s < 0 || this.pins[s] !== 0) {
      this.stats.misses++;
      return -1;
    }
    this.stats.hits++;
    this.referenced[s] = 1;
    return s;
  }

  /** The receiver's version of `pfn` (a view of its slot), or undefined. */
  base(pfn: number): Uint8Array | undefined {
    const s = this.lookup(pfn);
    return s < 0 ? undefined : this.slots.subarray(s * PAGE_SIZE, (s + 1) * PAGE_SIZE);
  }

  /**
   * A slot for the new version of `pfn`: its current slot, or a free or evicted
   * one; -1 when there is none (every slot pinned, or `pfn`'s own slot is held
   * by a job: then the version that job records is stale and is dropped when
   * it lets go). The caller must fill the slot (`store` does) before the next
   * lookup of `pfn`.
   */
  assign(pfn: number): number {
    const cur = this.slotOf[pfn] ?? -1;
    if (cur >= 0) {
      if (this.pins[cur] !== 0) {
        // Why: a job still reads or writes this page's slot; what it writes is not what this send carries.
        this.doomed[cur] = 1;
        this.stats.refused++;
        return -1;
      }
      this.referenced[cur] = 1;
      return cur;
    }
    const s = this.victim();
    if (s < 0) {
      this.stats.refused++;
      return -1;
    }
    const old = this.pfnOf[s] as number;
    if (old >= 0) {
      this.slotOf[old] = -1;
      this.stats.evictions++;
    } else {
      this.used++;
    }
    this.pfnOf[s] = pfn;
    this.slotOf[pfn] = s;
    this.referenced[s] = 1;
    return s;
  }

  /** CLOCK: the first slot from the hand that is free, or unpinned and not referenced since the last pass. */
  private victim(): number {
    const n = this.capacity;
    for (let k = 0; k < 2 * n + 1; k++) {
      const s = this.hand;
      this.hand = s + 1 === n ? 0 : s + 1;
      if (this.pfnOf[s] === -1) return s;
      if (this.pins[s] !== 0) continue;
      if (this.referenced[s] !== 0) {
        this.referenced[s] = 0;
        continue;
      }
      return s;
    }
    return -1;
  }

  /** `PageBases`: the base of a page the batch encoder is about to send. */
  baseFor(_i: number, pfn: number): Uint8Array | undefined {
    return this.base(pfn);
  }

  /**
   * `PageBases`: `page` went out for `pfn`. A zero page is forgotten (its next
   * version goes as LZ4), and so is a page rewritten all over since its last
   * version: a page written whole is likely to be written whole again, and
   * keeping its bytes would cost a copy now and a futile delta next time.
   */
  sent(_i: number, pfn: number, page: Uint8Array, zero: boolean, rewritten: boolean): void {
    if (zero || rewritten) this.forget(pfn);
    else this.store(pfn, page);
  }

  /** Records `page` as the receiver's version of `pfn` (it was sent). */
  store(pfn: number, page: Uint8Array): void {
    const s = this.assign(pfn);
    if (s >= 0) this.slots.set(page.subarray(0, PAGE_SIZE), s * PAGE_SIZE);
  }

  /** The receiver's version of `pfn` is unknown or not worth keeping (a zero page). */
  forget(pfn: number): void {
    const s = this.slotOf[pfn] ?? -1;
    if (s < 0) return;
    if (this.pins[s] !== 0) {
      this.doomed[s] = 1;
      return;
    }
    this.slotOf[pfn] = -1;
    this.pfnOf[s] = -1;
    this.referenced[s] = 0;
    this.used--;
  }

  /** Keeps slot `s` from being evicted or read until `unpin` (a worker reads or writes it). */
  pin(s: number): void {
    this.pins[s] = (this.pins[s] as number) + 1;
  }

  unpin(s: number): void {
    if (this.pins[s] === 0) throw new Error(`slot ${s} is not pinned`);
    this.pins[s] = (this.pins[s] as number) - 1;
    if (this.pins[s] === 0 && this.doomed[s] !== 0) {
      this.doomed[s] = 0;
      const pfn = this.pfnOf[s] as number;
      if (pfn >= 0) this.forget(pfn);
    }
  }

  /**
   * Plans sending `pfns` from another thread: `base[i]` is the slot holding the
   * receiver's version of `pfns[i]` (-1: none, send it whole) and `next[i]` the
   * slot to write the version sent into (-1: none). Both are the same slot on a
   * hit; each `next` slot is pinned until `release`, so nothing evicts, reads
   * or reuses it while the job runs.
   */
  reserve(pfns: ArrayLike<number>, base: Int32Array, next: Int32Array): void {
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i] as number;
      const hit = this.lookup(pfn);
      const s = this.assign(pfn);
      if (s >= 0) this.pin(s);
      base[i] = hit >= 0 && hit === s ? s : -1;
      next[i] = s;
    }
  }

  /**
   * The job planned by `reserve` is over. With `ok`, the pages it sent as ZERO
   * (`zero[i]`) lose their version and the others keep the one the job wrote;
   * without (the frame was not built or not sent), every page loses its version.
   */
  release(pfns: ArrayLike<number>, next: Int32Array, zero: Uint8Array | undefined, ok: boolean): void {
    for (let i = 0; i < pfns.length; i++) {
      const s = next[i] as number;
      if (s < 0) continue;
      if (!ok || zero?.[i] === 1) this.doomed[s] = 1;
      this.unpin(s);
    }
  }

  /**
   * Forgets every version: the receiver's pages are no longer known (SYNC_BEGIN,
   * a lost connection, a NACK). A slot a job still holds is dropped when the
   * job releases it, and is not readable meanwhile.
   */
  clear(): void {
    for (let s = 0; s < this.capacity; s++) {
      const pfn = this.pfnOf[s] as number;
      if (pfn < 0) continue;
      if (this.pins[s] !== 0) {
        this.doomed[s] = 1;
        continue;
      }
      this.slotOf[pfn] = -1;
      this.pfnOf[s] = -1;
      this.referenced[s] = 0;
      this.used--;
    }
  }
}
