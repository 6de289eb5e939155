/**
 * Mulberry32: a small, fast, seeded PRNG for the host side (simulations, the
 * load client's command mix and its TCP initial sequence numbers), and the
 * `Entropy` seam through which the replication core gets its randomness
 * (HELLO nonces, node ids): the real one in a daemon, a seeded one in a
 * simulation. The guest never uses either: its randomness comes from the
 * vCPU's own generator, which is part of the checkpointed state.
 */
import { randomBytes } from "node:crypto";

/** Where the replication core's random bytes come from. */
export interface Entropy {
  /** `n` fresh random bytes. */
  bytes(n: number): Uint8Array;
}

/** The operating system's entropy (what a daemon uses). */
export const systemEntropy: Entropy = { bytes: (n) => randomBytes(n) };

/** Mulberry32 with its state in a field, so that a generator can be cloned (a checkpoint of a host's RNG). */
export class Prng implements Entropy {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  /** Next uniform u32. */
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** `n` bytes from the stream (little-endian u32s). */
  bytes(n: number): Buffer {
    const b = Buffer.alloc(Math.ceil(n / 4) * 4);
    for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(this.u32(), i);
    return b.subarray(0, n);
  }

  /** An independent generator that continues this one's sequence from here. */
  clone(): Prng {
    const r = new Prng(0);
    r.s = this.s;
    return r;
  }
}

/** Uniform floats in [0, 1) from `seed`. */
export function mulberry32(seed: number): () => number {
  const r = new Prng(seed);
  return () => r.float();
}

/** Uniform u32 values from `seed`. */
export function mulberry32u32(seed: number): () => number {
  const r = new Prng(seed);
  return () => r.u32();
}
