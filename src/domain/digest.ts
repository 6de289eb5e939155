/**
 * The domain digest: one SHA-256 value that names the whole state of a domain
 * (memory, disk, vCPU, devices), so a test can prove that a backup resumed
 * exactly the state the primary checkpointed.
 *
 * Definition (version 1):
 *   unitHash(i, bytes) = 0 when `bytes` is all zero, else the first 16 bytes of
 *                        SHA-256(u32le(i) ‖ bytes), read as a little-endian u128
 *   memSum  = Σ unitHash(pfn, page)     over every page,       mod 2^128
 *   diskSum = Σ unitHash(block, block)  over every disk block, mod 2^128
 *   digest  = SHA-256("remusd-digest-v1\0" ‖ u32le(pages) ‖ memSum ‖ u32le(blocks) ‖ diskSum
 *                     ‖ vcpu block (128 bytes) ‖ device block (256 bytes))     (hex)
 *
 * The sums are additive (an AdHash multiset hash): changing one page changes
 * the sum by (new - old), so the digest is maintained in time proportional to the
 * pages and blocks written since the last update, not to the domain size. The
 * unit index is inside the hash, so swapping two pages' contents changes it.
 * Zero units hash to 0 so that a fresh domain of any size needs no hashing.
 */
import { createHash } from "node:crypto";
import { DirtyLog } from "./memory.js";

const ZERO_UNIT = Buffer.alloc(4096);

/**
 * `unitHash(i, bytes)` (the header's definition) into `out[off..off+4)` as
 * four little-endian u32 limbs. `idx` is 4 bytes of scratch.
 */
export function unitHashInto(
  i: number,
  bytes: Uint8Array,
  out: Uint32Array,
  off: number,
  idx = Buffer.alloc(4),
): void {
  if (ZERO_UNIT.compare(bytes) === 0) {
    out.fill(0, off, off + 4);
    return;
  }
  idx.writeUInt32LE(i >>> 0, 0);
  const h = createHash("sha256").update(idx).update(bytes).digest();
  for (let k = 0; k < 4; k++) out[off + k] = h.readUInt32LE(k * 4);
}

/** 128-bit additive hash over fixed-size units, updated incrementally. */
export class SumHasher {
  readonly units: number;
  private readonly hashes: Uint32Array;
  readonly sum = new Uint32Array(4);
  /** Units that changed since their hash was last computed (owned by the memory or disk). */
  readonly pending: DirtyLog;
  private readonly idx = Buffer.alloc(4);

  constructor(
    units: number,
    private readonly unitOf: (i: number) => Uint8Array,
    pending?: DirtyLog,
  ) {
    this.units = units;
    this.hashes = new Uint32Array(units * 4);
    this.pending = pending ?? new DirtyLog(units);
  }

  private unitHash(i: number, out: Uint32Array): void {
    unitHashInto(i, this.unitOf(i), out, 0, this.idx);
  }

  /**
   * Rehashes the pending units (at most `max` of them) and folds the change
   * into `sum`. Returns how many it rehashed.
   */
  update(max = Number.POSITIVE_INFINITY): number {
    const list = max >= this.pending.count ? this.pending.drain(undefined, false) : this.pending.take(max);
    const fresh = new Uint32Array(4);
    for (const i of list) {
      this.unitHash(i, fresh);
      this.foldOne(i, fresh, 0);
    }
    return list.length;
  }

  /**
   * Folds hashes computed elsewhere (a worker thread): `hashes[4k..4k+4)` is
   * unit `units[k]`'s hash. The caller took the units from `pending` and
   * folds them in the order it took them.
   */
  fold(units: ArrayLike<number>, hashes: Uint32Array): void {
    for (let k = 0; k < units.length; k++) this.foldOne(units[k] as number, hashes, k * 4);
  }

  private foldOne(i: number, fresh: Uint32Array, off: number): void {
    const base = i * 4;
    // sum += fresh - old, limb by limb with carry/borrow (mod 2^128).
    let carry = 0;
    for (let k = 0; k < 4; k++) {
      const f = fresh[off + k] as number;
      const v = (this.sum[k] as number) + f - (this.hashes[base + k] as number) + carry;
      const wrapped = ((v % 0x1_0000_0000) + 0x1_0000_0000) % 0x1_0000_0000;
      carry = Math.floor((v - wrapped) / 0x1_0000_0000);
      this.sum[k] = wrapped;
      this.hashes[base + k] = f;
    }
  }

  /** Forces every unit to be rehashed at the next update (after a bulk load). */
  invalidateAll(): void {
    this.pending.markEverything();
  }

  sumBytes(): Buffer {
    const b = Buffer.alloc(16);
    for (let k = 0; k < 4; k++) b.writeUInt32LE(this.sum[k] as number, k * 4);
    return b;
  }
}

export interface DigestInputs {
  readonly pages: number;
  readonly blocks: number;
  readonly vcpu: Uint8Array;
  readonly device: Uint8Array;
}

/** Combines the two sums and the register blocks into the digest (hex). */
export function combineDigest(inputs: DigestInputs, memSum: Buffer, diskSum: Buffer): string {
  const geo = Buffer.alloc(8);
  geo.writeUInt32LE(inputs.pages, 0);
  geo.writeUInt32LE(inputs.blocks, 4);
  return createHash("sha256")
    .update("remusd-digest-v1\0")
    .update(geo.subarray(0, 4))
    .update(memSum)
    .update(geo.subarray(4, 8))
    .update(diskSum)
    .update(inputs.vcpu)
    .update(inputs.device)
    .digest("hex");
}

/**
 * Reference implementation: the digest computed from scratch over every unit.
 * Slow (it hashes the whole domain); tests use it to check the incremental one.
 */
export function fullDigest(
  inputs: DigestInputs,
  pageOf: (pfn: number) => Uint8Array,
  blockOf: (b: number) => Uint8Array,
): string {
  const mem = new SumHasher(inputs.pages, pageOf);
  mem.invalidateAll();
  mem.update();
  const disk = new SumHasher(inputs.blocks, blockOf);
  disk.invalidateAll();
  disk.update();
  return combineDigest(inputs, mem.sumBytes(), disk.sumBytes());
}
