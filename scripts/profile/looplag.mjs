// Preload (`node --import ./scripts/profile/looplag.mjs ...`): records the
// event loop's delay with perf_hooks.monitorEventLoopDelay (1 ms resolution)
// and the longest gap between two turns of a 1 ms timer, and writes both as
// JSON to $LOOPLAG_OUT when the process exits (process.exit included).
// SIGUSR2 closes a phase: the figures so far are kept under "phases" and the
// counters start again (pair.mjs sends it when the full sync completed).
import { writeFileSync } from "node:fs";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";

const out = process.env.LOOPLAG_OUT;
const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
let last = performance.now();
let longest = 0;
let stalls = 0; // turns that came more than 5 ms late
const tick = setInterval(() => {
  const now = performance.now();
  const gap = now - last - 1;
  if (gap > longest) longest = gap;
  if (gap > 5) stalls++;
  last = now;
}, 1);
tick.unref();

const ms = (ns) => Math.round((ns / 1e6) * 1000) / 1000;
const phases = [];
function snapshot() {
  return {
    count: h.count,
    meanMs: ms(h.mean),
    p50Ms: ms(h.percentile(50)),
    p90Ms: ms(h.percentile(90)),
    p99Ms: ms(h.percentile(99)),
    p999Ms: ms(h.percentile(99.9)),
    maxMs: ms(h.max),
    longestTimerGapMs: Math.round(longest * 1000) / 1000,
    timerGapsOver5Ms: stalls,
  };
}
process.on("SIGUSR2", () => {
  phases.push(snapshot());
  h.reset();
  longest = 0;
  stalls = 0;
});

process.on("exit", () => {
  h.disable();
  const r = { pid: process.pid, role: process.argv[2], phases, ...snapshot() };
  // A folder ("/" at the end): one file per process, for daemons started by another tool.
  if (out?.endsWith("/"))
    writeFileSync(`${out}looplag-${r.role}-${process.pid}.json`, `${JSON.stringify(r)}\n`);
  else if (out) writeFileSync(out, `${JSON.stringify(r)}\n`);
  else process.stderr.write(`looplag ${JSON.stringify(r)}\n`);
});
