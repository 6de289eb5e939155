/**
 * kvd's hash table in guest memory: chained buckets (u32 entry addresses),
 * entries allocated from the kernel heap, and incremental rehashing between
 * two bucket arrays. A stateless handle over (mem, heap, state block): every
 * counter and pointer lives in the state block (offsets `KS` in layout.ts).
 */
import type { Mem } from "../../domain/memory.js";
import type { Heap } from "../mm.js";
import {
  EN,
  EN_HEADER,
  EXPIRE_BUCKETS_PER_TICK,
  EXPIRE_KEYS_PER_TICK,
  KS,
  REHASH_BUCKETS_PER_TICK,
  TABLE_MAX_BUCKETS,
  TABLE_MIN_BUCKETS,
} from "./layout.js";

const TWO32 = 0x1_0000_0000;

/** Seeded FNV-1a with a murmur3 finalizer: the bucket of a key. */
export function hashKey(seed: number, key: Uint8Array): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < key.length; i++) {
    h ^= key[i] as number;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Where an entry hangs: `link` is the address of the u32 that points to it (a bucket slot or a `next` field). */
export interface Found {
  readonly link: number;
  readonly entry: number;
}

export class KvTable {
  constructor(
    readonly mem: Mem,
    readonly heap: Heap,
    readonly st: number,
  ) {}

  /** Allocates the first bucket array. False when the heap is exhausted. */
  static format(mem: Mem, heap: Heap, st: number, seed: number): boolean {
    const t = heap.tryAlloc(TABLE_MIN_BUCKETS * 4);
    if (t === 0) return false;
    mem.setU32(st + KS.hashSeed, seed >>> 0);
    mem.setU32(st + KS.table, t);
    mem.setU32(st + KS.tableSize, TABLE_MIN_BUCKETS);
    mem.setU32(st + KS.oldTable, 0);
    mem.setU32(st + KS.oldSize, 0);
    mem.setU32(st + KS.rehashCursor, 0);
    mem.setU32(st + KS.keys, 0);
    mem.setU32(st + KS.volatileKeys, 0);
    mem.setU32(st + KS.expireCursor, 0);
    return true;
  }

  private u(off: number): number {
    return this.mem.u32(this.st + off);
  }
  private set(off: number, v: number): void {
    this.mem.setU32(this.st + off, v);
  }

  /** Physical entries (including expired ones not reclaimed yet). */
  get keys(): number {
    return this.u(KS.keys);
  }
  get volatileKeys(): number {
    return this.u(KS.volatileKeys);
  }
  get rehashing(): boolean {
    return this.u(KS.oldTable) !== 0;
  }
  get bucketCount(): number {
    return this.u(KS.tableSize);
  }

  hash(key: Uint8Array): number {
    return hashKey(this.u(KS.hashSeed), key);
  }

  // ---- entries ----
  keyLen(e: number): number {
    return this.mem.u32(e + EN.keyLen);
  }
  valLen(e: number): number {
    return this.mem.u32(e + EN.valLen);
  }
  keyAddr(e: number): number {
    return e + EN_HEADER;
  }
  valAddr(e: number): number {
    return e + EN_HEADER + this.keyLen(e);
  }
  key(e: number): Buffer {
    return this.mem.read(e + EN_HEADER, this.keyLen(e));
  }
  value(e: number): Buffer {
    return this.mem.read(this.valAddr(e), this.valLen(e));
  }
  /** A read-only view of the value (valid until the entry is freed or memory there is written). */
  valueView(e: number): Buffer {
    return this.mem.view(this.valAddr(e), this.valLen(e));
  }
  /** Absolute expiry in guest ms, 0n when the key has none. */
  expireAt(e: number): bigint {
    return (BigInt(this.mem.u32(e + EN.expHi)) << 32n) | BigInt(this.mem.u32(e + EN.expLo));
  }
  hasExpiry(e: number): boolean {
    return this.mem.u32(e + EN.expLo) !== 0 || this.mem.u32(e + EN.expHi) !== 0;
  }
  /** Redis's rule: a key is expired when now > its expiry (alive at the very millisecond). */
  isExpired(e: number, nowMs: number): boolean {
    const lo = this.mem.u32(e + EN.expLo);
    const hi = this.mem.u32(e + EN.expHi);
    if (lo === 0 && hi === 0) return false;
    // Above 2^53 the float is inexact but still far beyond any guest clock.
    return nowMs > hi * TWO32 + lo;
  }
  entrySize(e: number): number {
    return EN_HEADER + this.keyLen(e) + this.valLen(e);
  }

  /** A new, unlinked entry (0 when the heap is exhausted). */
  newEntry(key: Uint8Array, hash: number, value: Uint8Array, expireAt: bigint): number {
    const size = EN_HEADER + key.length + value.length;
    const e = this.heap.tryAlloc(size);
    if (e === 0) return 0;
    const m = this.mem;
    m.setU32(e + EN.hash, hash);
    m.setU32(e + EN.keyLen, key.length);
    m.setU32(e + EN.valLen, value.length);
    m.setU32(e + EN.expLo, Number(expireAt & 0xffffffffn));
    m.setU32(e + EN.expHi, Number(expireAt >> 32n));
    m.write(e + EN_HEADER, key);
    m.write(e + EN_HEADER + key.length, value);
    return e;
  }

  /** Frees an unlinked entry. */
  freeEntry(e: number): void {
    this.heap.free(e, this.entrySize(e));
  }

  private matches(e: number, hash: number, key: Uint8Array): boolean {
    const m = this.mem;
    return (
      m.u32(e + EN.hash) === hash &&
      m.u32(e + EN.keyLen) === key.length &&
      m.equals(e + EN_HEADER, key, 0, key.length)
    );
  }

  private searchChain(slot: number, hash: number, key: Uint8Array): Found | undefined {
    const m = this.mem;
    let link = slot;
    let e = m.u32(link);
    while (e !== 0) {
      if (this.matches(e, hash, key)) return { link, entry: e };
      link = e + EN.next;
      e = m.u32(link);
    }
    return undefined;
  }

  /** The entry of `key` if physically present (expired or not). */
  find(key: Uint8Array, hash = this.hash(key)): Found | undefined {
    const old = this.u(KS.oldTable);
    if (old !== 0) {
      const b = hash & (this.u(KS.oldSize) - 1);
      if (b >= this.u(KS.rehashCursor)) {
        const f = this.searchChain(old + b * 4, hash, key);
        if (f) return f;
      }
    }
    return this.searchChain(this.u(KS.table) + (hash & (this.u(KS.tableSize) - 1)) * 4, hash, key);
  }

  /**
   * Links `e` in place of the entry with the same key (which is freed) or as a
   * new key. `existing` must be the current `find` result for that key.
   */
  put(e: number, existing: Found | undefined): void {
    const m = this.mem;
    if (e !== 0 && this.hasExpiry(e)) this.set(KS.volatileKeys, this.volatileKeys + 1);
    if (existing) {
      m.setU32(e + EN.next, m.u32(existing.entry + EN.next));
      m.setU32(existing.link, e);
      if (this.hasExpiry(existing.entry)) this.set(KS.volatileKeys, this.volatileKeys - 1);
      this.freeEntry(existing.entry);
      return;
    }
    const slot = this.u(KS.table) + (m.u32(e + EN.hash) & (this.u(KS.tableSize) - 1)) * 4;
    m.setU32(e + EN.next, m.u32(slot));
    m.setU32(slot, e);
    this.set(KS.keys, this.keys + 1);
  }

  /** Unlinks and frees the entry at `f` (a current `find` result). */
  remove(f: Found): void {
    const m = this.mem;
    m.setU32(f.link, m.u32(f.entry + EN.next));
    if (this.hasExpiry(f.entry)) this.set(KS.volatileKeys, this.volatileKeys - 1);
    this.set(KS.keys, this.keys - 1);
    this.freeEntry(f.entry);
  }

  /** Frees every entry; the tables stay (the current one zeroed), to be shrunk by `maintain`. */
  clear(): void {
    const m = this.mem;
    this.forEachEntry((e) => this.freeEntry(e));
    const old = this.u(KS.oldTable);
    if (old !== 0) this.heap.free(old, this.u(KS.oldSize) * 4);
    m.fill(this.u(KS.table), this.u(KS.tableSize) * 4, 0);
    this.set(KS.oldTable, 0);
    this.set(KS.oldSize, 0);
    this.set(KS.rehashCursor, 0);
    this.set(KS.keys, 0);
    this.set(KS.volatileKeys, 0);
    this.set(KS.expireCursor, 0);
  }

  /** Calls `fn` for every physical entry (the next pointer is read before `fn` runs, so `fn` may free it). */
  forEachEntry(fn: (e: number) => void): void {
    const m = this.mem;
    const old = this.u(KS.oldTable);
    if (old !== 0) {
      const n = this.u(KS.oldSize);
      for (let b = this.u(KS.rehashCursor); b < n; b++) {
        for (let e = m.u32(old + b * 4); e !== 0; ) {
          const next = m.u32(e + EN.next);
          fn(e);
          e = next;
        }
      }
    }
    const t = this.u(KS.table);
    const n = this.u(KS.tableSize);
    for (let b = 0; b < n; b++) {
      for (let e = m.u32(t + b * 4); e !== 0; ) {
        const next = m.u32(e + EN.next);
        fn(e);
        e = next;
      }
    }
  }

  /**
   * Structural checks: every entry is in the bucket its hash selects, hashes
   * match keys, no key appears twice, and the counters match. Returns a
   * description of the first violation, or undefined.
   */
  check(): string | undefined {
    const m = this.mem;
    const seen = new Set<string>();
    let count = 0;
    let volatile = 0;
    const tables: [number, number, number][] = [[this.u(KS.table), this.u(KS.tableSize), 0]];
    if (this.u(KS.oldTable) !== 0)
      tables.push([this.u(KS.oldTable), this.u(KS.oldSize), this.u(KS.rehashCursor)]);
    for (const [t, n, from] of tables) {
      for (let b = 0; b < n; b++) {
        let e = m.u32(t + b * 4);
        if (b < from && e !== 0) return `old bucket ${b} below the rehash cursor is not empty`;
        for (; e !== 0; e = m.u32(e + EN.next)) {
          const key = this.key(e);
          const h = this.hash(key);
          if (m.u32(e + EN.hash) !== h) return `entry ${e} has a stale hash`;
          if ((h & (n - 1)) !== b) return `entry ${e} is in bucket ${b}, its hash selects ${h & (n - 1)}`;
          const ks = key.toString("latin1");
          if (seen.has(ks)) return `key ${JSON.stringify(ks)} appears twice`;
          seen.add(ks);
          count++;
          if (this.hasExpiry(e)) volatile++;
        }
      }
    }
    if (count !== this.keys) return `key count ${this.keys} but ${count} entries`;
    if (volatile !== this.volatileKeys) return `volatile count ${this.volatileKeys} but ${volatile} entries`;
    return undefined;
  }

  // ---- resizing ----

  /**
   * Per-tick upkeep: migrates up to REHASH_BUCKETS_PER_TICK old buckets, or
   * starts a resize when the load is above 1 (grow x2) or below 1/8 (shrink).
   */
  maintain(): void {
    if (this.rehashing) {
      this.rehashStep(REHASH_BUCKETS_PER_TICK);
      return;
    }
    const size = this.bucketCount;
    const keys = this.keys;
    if (keys > size && size < TABLE_MAX_BUCKETS) this.startResize(size * 2);
    else if (size > TABLE_MIN_BUCKETS && keys < size / 8) {
      let want = TABLE_MIN_BUCKETS;
      while (want < keys * 2) want *= 2;
      if (want < size) this.startResize(want);
    }
  }

  private startResize(size: number): void {
    const t = this.heap.tryAlloc(size * 4);
    if (t === 0) return; // out of memory: keep the current table, chains just grow
    this.set(KS.oldTable, this.u(KS.table));
    this.set(KS.oldSize, this.u(KS.tableSize));
    this.set(KS.rehashCursor, 0);
    this.set(KS.table, t);
    this.set(KS.tableSize, size);
    this.set(KS.expireCursor, 0);
  }

  /** Moves up to `buckets` non-empty old buckets (visiting at most 10x as many empty ones). */
  rehashStep(buckets: number): void {
    const m = this.mem;
    const old = this.u(KS.oldTable);
    if (old === 0) return;
    const oldSize = this.u(KS.oldSize);
    const t = this.u(KS.table);
    const mask = this.u(KS.tableSize) - 1;
    let b = this.u(KS.rehashCursor);
    let moved = 0;
    let visited = 0;
    while (b < oldSize && moved < buckets && visited < buckets * 10) {
      let e = m.u32(old + b * 4);
      if (e !== 0) {
        while (e !== 0) {
          const next = m.u32(e + EN.next);
          const slot = t + (m.u32(e + EN.hash) & mask) * 4;
          m.setU32(e + EN.next, m.u32(slot));
          m.setU32(slot, e);
          e = next;
        }
        m.setU32(old + b * 4, 0);
        moved++;
      }
      visited++;
      b++;
    }
    if (b >= oldSize) {
      this.heap.free(old, oldSize * 4);
      this.set(KS.oldTable, 0);
      this.set(KS.oldSize, 0);
      this.set(KS.rehashCursor, 0);
    } else {
      this.set(KS.rehashCursor, b);
    }
  }

  /**
   * The active expiry cycle's scan: up to EXPIRE_BUCKETS_PER_TICK buckets of
   * the current table from a rotating cursor, returning the keys of expired
   * entries (at most EXPIRE_KEYS_PER_TICK) for the caller to log and remove.
   * Skipped while rehashing or when no key has an expiry.
   */
  expiredSample(nowMs: number): Buffer[] {
    const out: Buffer[] = [];
    if (this.rehashing || this.volatileKeys === 0) return out;
    const m = this.mem;
    const t = this.u(KS.table);
    const n = this.u(KS.tableSize);
    let b = this.u(KS.expireCursor) % n;
    for (let i = 0; i < EXPIRE_BUCKETS_PER_TICK && out.length < EXPIRE_KEYS_PER_TICK; i++) {
      for (let e = m.u32(t + b * 4); e !== 0; e = m.u32(e + EN.next)) {
        if (this.isExpired(e, nowMs) && out.length < EXPIRE_KEYS_PER_TICK) out.push(this.key(e));
      }
      b = (b + 1) % n;
    }
    this.set(KS.expireCursor, b);
    return out;
  }
}
