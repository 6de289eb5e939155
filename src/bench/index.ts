/**
 * `remusd bench`: the benchmark suite. Every result is a ratio (or a rate)
 * measured side by side in the same run, because this machine is shared and
 * noisy; absolute times from different runs are not comparable.
 */
import { type BenchResult, benchCapture, benchCollect } from "./domain.js";

export interface BenchCase {
  readonly name: string;
  readonly run: () => BenchResult[] | Promise<BenchResult[]>;
}

export const CASES: BenchCase[] = [
  { name: "capture-1000", run: () => benchCapture(1000) },
  { name: "capture-10000", run: () => benchCapture(10000) },
  { name: "collect-4096MiB-vs-64MiB", run: () => benchCollect(1000) },
];

export async function runBench(opts: { json: boolean; only?: string }): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  for (const c of CASES) {
    if (opts.only && !c.name.includes(opts.only)) continue;
    if (!opts.json) process.stderr.write(`running ${c.name} ...\n`);
    results.push(...(await c.run()));
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else {
    const w = Math.max(...results.map((r) => r.name.length));
    for (const r of results) {
      process.stdout.write(
        `${r.name.padEnd(w)}  ${r.value.toFixed(3).padStart(9)} ${r.unit.padEnd(6)} ${r.detail ?? ""}\n`,
      );
    }
  }
  return results;
}
