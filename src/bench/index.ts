/**
 * `remusd bench`: the benchmark suite. Every figure is a median with its
 * spread (p25-p75, and min-max in the JSON) and every ratio is taken per round
 * between variants run side by side in the same run, because this machine is
 * shared and noisy: absolute times from different runs are not comparable.
 *
 * Cases live in their own modules (case.ts says what one is) and are listed
 * here. Those that need real daemons (pipeline.ts: whole-pipeline throughput
 * over loopback WebSockets, checkpoint rate; service.ts: kvd latency,
 * kill-to-activation, full sync) start them through procs.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../version.js";
import type { BenchCase, BenchContext } from "./case.js";
import { COLO_CASES } from "./colo.js";
import { COLO_DIVERGENCE_CASES } from "./colodivergence.js";
import { DOMAIN_CASES } from "./domain.js";
import { ENCODE_CASES } from "./encode.js";
import { EPOCH_CASES } from "./epoch.js";
import { PAUSE_CASES } from "./pause.js";
import { PIPELINE_CASES } from "./pipeline.js";
import { SERVICE_CASES } from "./service.js";
import type { Figure } from "./stats.js";
import { WIRE_CASES } from "./wire.js";

export type { BenchCase, BenchContext } from "./case.js";

export const CASES: BenchCase[] = [
  ...DOMAIN_CASES,
  ...PAUSE_CASES,
  ...EPOCH_CASES,
  ...WIRE_CASES,
  ...ENCODE_CASES,
  ...PIPELINE_CASES,
  ...SERVICE_CASES,
  ...COLO_CASES,
  ...COLO_DIVERGENCE_CASES,
];

export interface BenchOptions {
  /** Write the results as JSON to this file ("-": standard output instead of the table). */
  readonly json?: string;
  readonly only?: string;
  readonly quick: boolean;
}

export interface BenchReport {
  readonly tool: string;
  readonly startedAt: string;
  readonly quick: boolean;
  readonly machine: {
    cpus: number;
    model: string;
    node: string;
    loadavgBefore: number[];
    loadavgAfter: number[];
  };
  readonly cases: { name: string; title: string; seconds: number; figures: Figure[] }[];
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

/** The report as a table, one section per case. */
export function formatTable(r: BenchReport): string {
  const lines: string[] = [];
  const m = r.machine;
  lines.push(
    `remusd bench (${r.quick ? "quick" : "full"}) on ${m.cpus} x ${m.model}, node ${m.node}, load ${m.loadavgBefore.map((x) => x.toFixed(1)).join(" ")}`,
  );
  lines.push("every figure: median [p25 - p75] over n rounds; ratios per round, side by side");
  const w = Math.max(20, ...r.cases.flatMap((c) => c.figures.map((f) => f.name.length)));
  for (const c of r.cases) {
    lines.push("", `${c.title}  (${c.name}, ${c.seconds.toFixed(1)} s)`);
    for (const f of c.figures) {
      const spread = `[${fmt(f.p25)} - ${fmt(f.p75)}]`;
      const tail = f.p99 === undefined ? "" : ` p99 ${fmt(f.p99)}`;
      lines.push(
        `  ${f.name.padEnd(w)} ${fmt(f.median).padStart(9)} ${spread.padEnd(22)} ${f.unit.padEnd(7)} n=${String(f.n).padEnd(3)}${tail}${f.detail ? `  ${f.detail}` : ""}`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  const dirs: string[] = [];
  const toStdout = opts.json === "-";
  const ctx: BenchContext = {
    quick: opts.quick,
    log: (msg) => process.stderr.write(`${msg}\n`),
    tempDir: () => {
      const d = mkdtempSync(join(tmpdir(), "remusd-bench-"));
      dirs.push(d);
      return d;
    },
  };
  const cpu = cpus();
  const report: BenchReport = {
    tool: `remusd ${VERSION}`,
    startedAt: new Date().toISOString(),
    quick: opts.quick,
    machine: {
      cpus: cpu.length,
      model: cpu[0]?.model ?? "unknown",
      node: process.version,
      loadavgBefore: loadavg(),
      loadavgAfter: [],
    },
    cases: [],
  };
  try {
    for (const c of CASES) {
      if (opts.only && !c.name.includes(opts.only)) continue;
      if (opts.quick && !c.quick && !opts.only) continue;
      ctx.log(`running ${c.name} ...`);
      const t0 = performance.now();
      const figures = await c.run(ctx);
      report.cases.push({ name: c.name, title: c.title, seconds: (performance.now() - t0) / 1000, figures });
    }
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
  report.machine.loadavgAfter.push(...loadavg());
  if (toStdout) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    process.stdout.write(formatTable(report));
    if (opts.json) writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
  }
  return report;
}
