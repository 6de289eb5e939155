/**
 * The vCPU register block: a fixed 128-byte layout, checkpointed whole every
 * epoch. Guest time advances only through `clockNs` here, and every random
 * number the guest uses comes from the xoshiro128** state here, so a restored
 * domain continues from its own time with its own random sequence.
 *
 * Layout (little-endian):
 * | off | size | field      | meaning                                               |
 * |-----|------|------------|-------------------------------------------------------|
 * |   0 |    4 | magic      | 0x55504356 ("VCPU")                                   |
 * |   4 |    4 | version    | layout version, 1                                     |
 * |   8 |    8 | pc         | program counter: guest steps executed (process steps) |
 * |  16 |    8 | clockNs    | guest time in nanoseconds since boot                  |
 * |  24 |    8 | ticks      | scheduler ticks executed                              |
 * |  32 |   16 | rng[4]     | xoshiro128** state, four u32                          |
 * |  48 |    4 | flags      | bit 0 halted (the domain was stopped)                 |
 * |  52 |    4 | seed       | the boot seed (low 32 bits), for reference            |
 * |  56 |   72 | reserved   | zero                                                  |
 */
import { RemusError } from "../errors.js";

export const VCPU_SIZE = 128;
const VCPU_MAGIC = 0x55504356;
const VCPU_VERSION = 1;
export const VCPU_FLAG_HALTED = 1;

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

const CLOCK_NS_OFFSET = 16;

/** The guest clock in nanoseconds, full range, from a copy of the register block (a checkpoint's). */
export function vcpuClockNs(regs: Uint8Array): bigint {
  return Buffer.from(regs.buffer, regs.byteOffset, regs.byteLength).readBigUInt64LE(CLOCK_NS_OFFSET);
}

export class Vcpu {
  readonly regs: Buffer;

  constructor() {
    this.regs = Buffer.alloc(VCPU_SIZE);
    this.reset(0);
  }

  /** Resets the block for a fresh boot with `seed`. */
  reset(seed: number): void {
    this.regs.fill(0);
    this.regs.writeUInt32LE(VCPU_MAGIC, 0);
    this.regs.writeUInt32LE(VCPU_VERSION, 4);
    const sm = splitmix32(seed);
    for (let i = 0; i < 4; i++) this.regs.writeUInt32LE(sm(), 32 + i * 4);
    this.regs.writeUInt32LE(seed >>> 0, 52);
  }

  /**
   * Mixes per-replica `entropy` (at least 4 bytes, e.g. 16 from a CSPRNG)
   * into the guest's generator. Why: a COLO secondary calls this after every
   * checkpoint so that, like a real machine, it draws its own random numbers
   * (TCP initial sequence numbers, ephemeral ports) from then on instead of
   * repeating the primary's; the sequence rewriter and the comparator absorb
   * the difference. A Remus backup never calls it: it must keep the
   * primary's state exactly. The new state depends on both the old state and
   * the entropy, and is never all zero (xoshiro's one forbidden state).
   */
  reseed(entropy: Uint8Array): void {
    if (entropy.length < 4) {
      throw new RemusError(
        "REMUSD_ERR_BAD_USAGE",
        "reseeding the guest RNG needs at least 4 bytes of entropy",
      );
    }
    let h = 0x811c9dc5;
    for (let i = 0; i < entropy.length; i++) h = Math.imul(h ^ (entropy[i] as number), 0x01000193) >>> 0;
    const sm = splitmix32(h);
    let any = 0;
    for (let i = 0; i < 4; i++) {
      const o = i * 4;
      const word =
        o + 4 <= entropy.length
          ? (entropy[o]! | (entropy[o + 1]! << 8) | (entropy[o + 2]! << 16) | (entropy[o + 3]! << 24)) >>> 0
          : 0;
      const v = (this.regs.readUInt32LE(32 + i * 4) ^ sm() ^ word) >>> 0;
      this.regs.writeUInt32LE(v, 32 + i * 4);
      any |= v;
    }
    if (any === 0) this.regs.writeUInt32LE(1, 32);
  }

  /** Throws unless the block holds a valid layout (used when loading a checkpoint). */
  validate(): void {
    if (this.regs.readUInt32LE(0) !== VCPU_MAGIC || this.regs.readUInt32LE(4) !== VCPU_VERSION) {
      throw new RemusError("REMUSD_ERR_CORRUPT", "vCPU block has a bad magic or version");
    }
  }

  private get64(off: number): number {
    return this.regs.readUInt32LE(off) + this.regs.readUInt32LE(off + 4) * 0x1_0000_0000;
  }
  private set64(off: number, v: number): void {
    this.regs.writeUInt32LE(v % 0x1_0000_0000, off);
    this.regs.writeUInt32LE(Math.floor(v / 0x1_0000_0000), off + 4);
  }

  get pc(): number {
    return this.get64(8);
  }
  set pc(v: number) {
    this.set64(8, v);
  }
  get clockNs(): number {
    return this.get64(CLOCK_NS_OFFSET);
  }
  get ticks(): number {
    return this.get64(24);
  }
  get flags(): number {
    return this.regs.readUInt32LE(48);
  }
  set flags(v: number) {
    this.regs.writeUInt32LE(v >>> 0, 48);
  }
  get halted(): boolean {
    return (this.flags & VCPU_FLAG_HALTED) !== 0;
  }
  get seed(): number {
    return this.regs.readUInt32LE(52);
  }

  /** Guest time in milliseconds (what the guest's TCP timers use). */
  get clockMs(): number {
    return Math.floor(this.clockNs / 1_000_000);
  }

  /** Advances guest time by one tick of `ns` nanoseconds. */
  tick(ns: number): void {
    this.set64(CLOCK_NS_OFFSET, this.clockNs + ns);
    this.set64(24, this.ticks + 1);
  }

  /** Next u32 of the guest's xoshiro128** generator. */
  random32(): number {
    const r = this.regs;
    let s0 = r.readUInt32LE(32);
    let s1 = r.readUInt32LE(36);
    let s2 = r.readUInt32LE(40);
    let s3 = r.readUInt32LE(44);
    const x = Math.imul(s1, 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    r.writeUInt32LE(s0 >>> 0, 32);
    r.writeUInt32LE(s1 >>> 0, 36);
    r.writeUInt32LE(s2 >>> 0, 40);
    r.writeUInt32LE(s3 >>> 0, 44);
    return result;
  }

  /** Uniform float in [0, 1) from the guest RNG. */
  randomFloat(): number {
    return this.random32() / 0x1_0000_0000;
  }

  /** Uniform integer in [0, n). */
  randomInt(n: number): number {
    return Math.floor(this.randomFloat() * n);
  }
}
