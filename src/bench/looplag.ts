/**
 * A preload (`node --import .../looplag.js remusd.js ...`) that measures a
 * process's event-loop stalls without changing it: the delay histogram of
 * `perf_hooks.monitorEventLoopDelay` (1 ms resolution), the longest gap
 * between two turns of a 1 ms timer, and a timeline of the longest gap per
 * 100 ms of wall time, so a benchmark can read the stalls within any window
 * it knows from the event log (a sync, a failover). Written as JSON to
 * `$LOOPLAG_OUT` when the process exits (a path ending in "/" is a folder:
 * one file per process). SIGUSR2 closes a phase: the figures so far are kept
 * under `phases` and the counters start again.
 */
import { writeFileSync } from "node:fs";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";

/** The monitor's report. */
export interface LoopLagReport {
  readonly pid: number;
  readonly role: string | undefined;
  readonly phases: LoopLagSnapshot[];
  /** [wall ms at the window's start, longest gap in it (ms)] for every 100 ms window with a gap over 1 ms. */
  readonly timeline: [number, number][];
}

export interface LoopLagSnapshot {
  readonly count: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  readonly longestTimerGapMs: number;
  readonly timerGapsOver5Ms: number;
}

/** The longest gap (ms) recorded in the timeline between wall times `from` and `to` (ms). */
export function longestGapBetween(r: LoopLagReport, from: number, to: number): number {
  let most = 0;
  for (const [t, gap] of r.timeline) {
    // A window's gap ended inside it; count windows that overlap [from, to].
    if (t + 100 >= from && t <= to) most = Math.max(most, gap);
  }
  return most;
}

const WINDOW_MS = 100;

function install(): void {
  const out = process.env.LOOPLAG_OUT;
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let last = performance.now();
  let longest = 0;
  let stalls = 0;
  const timeline: [number, number][] = [];
  let windowStart = Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS;
  let windowMax = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    const gap = now - last - 1;
    last = now;
    if (gap > longest) longest = gap;
    if (gap > 5) stalls++;
    const wall = Date.now();
    const w = Math.floor(wall / WINDOW_MS) * WINDOW_MS;
    if (w !== windowStart) {
      if (windowMax > 1) timeline.push([windowStart, Math.round(windowMax * 1000) / 1000]);
      windowStart = w;
      windowMax = 0;
    }
    // The gap ended now: it belongs to the window it ended in (the stall was just before).
    if (gap > windowMax) windowMax = gap;
  }, 1);
  tick.unref();

  const ms = (ns: number) => Math.round((ns / 1e6) * 1000) / 1000;
  const phases: LoopLagSnapshot[] = [];
  const snapshot = (): LoopLagSnapshot => ({
    count: h.count,
    meanMs: ms(h.mean),
    p50Ms: ms(h.percentile(50)),
    p90Ms: ms(h.percentile(90)),
    p99Ms: ms(h.percentile(99)),
    p999Ms: ms(h.percentile(99.9)),
    maxMs: ms(h.max),
    longestTimerGapMs: Math.round(longest * 1000) / 1000,
    timerGapsOver5Ms: stalls,
  });
  process.on("SIGUSR2", () => {
    phases.push(snapshot());
    h.reset();
    longest = 0;
    stalls = 0;
  });
  process.on("exit", () => {
    h.disable();
    if (windowMax > 1) timeline.push([windowStart, Math.round(windowMax * 1000) / 1000]);
    const r = { pid: process.pid, role: process.argv[2], phases, ...snapshot(), timeline };
    const text = `${JSON.stringify(r)}\n`;
    if (out?.endsWith("/")) writeFileSync(`${out}looplag-${r.role}-${process.pid}.json`, text);
    else if (out) writeFileSync(out, text);
    else process.stderr.write(`looplag ${text}`);
  });
}

// Installed when preloaded into a process that asks for it (the env var), not when imported for its types.
if (process.env.LOOPLAG_OUT !== undefined) install();
