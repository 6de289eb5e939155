/**
 * The drill's report as text: the summary table printed at the end, and the
 * verdict line. (The JSON is the DrillReport itself; the HTML page is html.ts.)
 */
import { fmtBytes, fmtMs } from "./drill.js";
import type { DrillReport, FailoverRecord, LatencyStats } from "./measure.js";

const stallText = (s: LatencyStats) =>
  s.requests === 0
    ? "-"
    : `${Math.round(s.p50Ms ?? 0)} / ${Math.round(s.p99Ms ?? 0)} / ${Math.round(s.maxMs ?? 0)} ms`;

const count = (r: FailoverRecord, f: (c: NonNullable<FailoverRecord["client"]>) => number) =>
  r.client ? String(f(r.client)) : "-";

/** The columns of the summary table (the HTML page's per-failover rows show the same). */
export const COLUMNS = [
  "#",
  "fault",
  "sides",
  "detect",
  "activate",
  "1st output",
  "stall p50/p99/max",
  "resets",
  "lost",
  "errors",
  "old primary",
  "protected",
  "resync",
  "result",
] as const;

/** One failover as the table's cells. */
export function rowOf(r: FailoverRecord): string[] {
  const errors = r.client ? r.client.wrongReads + r.client.protocolErrors + r.commandErrors : r.commandErrors;
  return [
    String(r.index),
    r.faultMs ? `${r.fault} ${r.faultMs} ms` : r.fault,
    `${r.from}→${r.to}`,
    fmtMs(r.detectionMs),
    fmtMs(r.activationMs),
    fmtMs(r.firstOutputMs),
    stallText(r.stall),
    count(r, (c) => c.resets),
    count(r, (c) => c.lostWrites),
    String(errors),
    r.oldPrimary ?? "-",
    fmtMs(r.protectedMs),
    r.resyncMs === null ? "-" : `${fmtMs(r.resyncMs)}, ${fmtBytes(r.resyncBytes)}`,
    r.ok ? "ok" : "FAIL",
  ];
}

/** Right-aligned columns (numbers). */
const RIGHT = new Set([0, 3, 4, 5, 6, 7, 8, 9, 11]);

/** The summary table and verdict, as printed at the end of a drill. */
export function summaryText(rep: DrillReport): string {
  const rows = [[...COLUMNS], ...rep.failovers.map(rowOf)];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (RIGHT.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const t = rep.totals;
  const out = [line(rows[0] as string[]), ...rows.slice(1).map(line), ""];
  const c = rep.client;
  out.push(
    `failovers ${t.passed}/${t.failovers} passed · lost writes ${t.lostWrites} · resets ${t.resets} · errors ${t.errors}` +
      ` · median activation ${fmtMs(t.medianActivationMs)} · longest stall ${fmtMs(t.maxStallMs)}`,
  );
  if (c) {
    out.push(
      `checking client: ${c.requests} requests, ${c.replies} replies, ${c.verifiedKeys} acknowledged values read back, ` +
        `${c.reconnects} reconnects, longest stall ${Math.round(c.longestStallMs)} ms`,
    );
  } else {
    out.push("checking client: none (lost writes not checked)");
  }
  if (rep.command) {
    out.push(
      `client command: ${rep.command.runs} runs, ${rep.command.exits} early exits, ${rep.command.errorLines.length} error lines`,
    );
  }
  for (const r of rep.failovers) for (const p of r.problems) out.push(`failover ${r.index}: ${p}`);
  for (const p of rep.problems) out.push(p);
  out.push(
    rep.ok
      ? "PASS: every failover activated, re-protected, with no lost write, no reset and no error"
      : "FAIL",
  );
  return out.join("\n");
}
