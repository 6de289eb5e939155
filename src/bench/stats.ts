/** Small statistics helpers for benchmarks: medians and percentiles of samples. */

export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const s = [...samples].sort((a, b) => a - b);
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[idx] as number;
}

export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

/** Nanoseconds taken by `fn`, using the monotonic high-resolution clock. */
export function timeNs(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0);
}

/**
 * Runs the named variants interleaved (A B A B ...) `rounds` times after a
 * warm-up and returns each one's median in nanoseconds, so the ratio between
 * them is measured side by side under the same machine noise.
 */
export function sideBySide(
  variants: Record<string, () => void>,
  rounds: number,
  warmup = 3,
): Record<string, number> {
  const names = Object.keys(variants);
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < warmup + rounds; r++) {
    for (const n of names) {
      const t = timeNs(variants[n] as () => void);
      if (r >= warmup) samples[n]?.push(t);
    }
  }
  return Object.fromEntries(names.map((n) => [n, median(samples[n] ?? [])]));
}
