/**
 * Mulberry32: a small, fast, seeded PRNG for the host side (simulations, the
 * load client's command mix and its TCP initial sequence numbers). The guest
 * never uses it: its randomness comes from the vCPU's own generator, which is
 * part of the checkpointed state.
 */

/** Uniform floats in [0, 1) from `seed`. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform u32 values from `seed`. */
export function mulberry32u32(seed: number): () => number {
  const f = mulberry32(seed);
  return () => Math.floor(f() * 4294967296) >>> 0;
}
