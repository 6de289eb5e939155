/** Small statistics helpers for benchmarks: percentiles, summaries and paired ratios. */

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
 * warm-up and returns each one's samples in nanoseconds, so that figures and
 * the ratios between them are measured side by side under the same noise.
 */
export function interleaved(
  variants: Record<string, () => void>,
  rounds: number,
  warmup = 3,
): Record<string, number[]> {
  const names = Object.keys(variants);
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < warmup + rounds; r++) {
    for (const n of names) {
      const t = timeNs(variants[n] as () => void);
      if (r >= warmup) samples[n]?.push(t);
    }
  }
  return samples;
}

/** Each variant's median of `interleaved` samples, in nanoseconds. */
export function sideBySide(
  variants: Record<string, () => void>,
  rounds: number,
  warmup = 3,
): Record<string, number> {
  const s = interleaved(variants, rounds, warmup);
  return Object.fromEntries(Object.entries(s).map(([n, xs]) => [n, median(xs)]));
}

/** Per-round ratios a[i] / b[i] of two interleaved sample lists: a ratio with its own spread. */
export function pairedRatios(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.min(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((a[i] as number) / (b[i] as number));
  return out;
}

/** A figure: the median of its samples with their spread. */
export interface Figure {
  readonly name: string;
  readonly unit: string;
  readonly median: number;
  readonly p25: number;
  readonly p75: number;
  readonly min: number;
  readonly max: number;
  /** Given for figures whose tail matters (pauses). */
  readonly p99?: number;
  readonly n: number;
  readonly detail?: string;
}

/** Summarises samples (already in `unit`) as a figure. */
export function figure(
  name: string,
  unit: string,
  samples: readonly number[],
  opts: { detail?: string; p99?: boolean } = {},
): Figure {
  return {
    name,
    unit,
    median: median(samples),
    p25: percentile(samples, 25),
    p75: percentile(samples, 75),
    min: samples.length ? Math.min(...samples) : Number.NaN,
    max: samples.length ? Math.max(...samples) : Number.NaN,
    ...(opts.p99 ? { p99: percentile(samples, 99) } : {}),
    n: samples.length,
    ...(opts.detail ? { detail: opts.detail } : {}),
  };
}

/** Scales samples (ns to µs, ms, bytes to MB/s ...). */
export function scaled(samples: readonly number[], f: (x: number) => number): number[] {
  return samples.map(f);
}
