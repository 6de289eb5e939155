#!/usr/bin/env node
// Finds the longest stretches in a V8 .cpuprofile where the main thread never
// went idle (the loop was held), and what ran in each: the functions with the
// most self time, and the outermost JS function of the stretch.
// Usage: node scripts/profile/cpuprofile-stalls.mjs FILE.cpuprofile [MIN_MS=20] [RUNS=5]
import { readFileSync } from "node:fs";

const [file, minArg, runsArg] = process.argv.slice(2);
if (!file) {
  console.error("usage: cpuprofile-stalls.mjs FILE.cpuprofile [MIN_MS] [RUNS]");
  process.exit(2);
}
const minUs = Number(minArg ?? 20) * 1000;
const maxRuns = Number(runsArg ?? 5);
const p = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n) => {
  const f = n.callFrame;
  const url = f.url.replace(/^.*\/(dist|node_modules)\//, "$1/");
  return `${f.functionName || "(anonymous)"}${url ? ` ${url}:${f.lineNumber + 1}` : ""}`;
};
// The first frame under the root that is our code (dist/), for naming the task.
const entry = (id) => {
  let best;
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    if (byId.get(cur).callFrame.url.includes("/dist/")) best = cur;
  }
  return best === undefined ? "(native/node)" : label(byId.get(best));
};

const runs = [];
let cur;
let t = p.startTime;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i] ?? 0;
  const id = p.samples[i];
  const name = byId.get(id).callFrame.functionName;
  if (name === "(idle)" || name === "(program)") {
    if (cur) runs.push(cur);
    cur = undefined;
    continue;
  }
  const d = p.timeDeltas[i + 1] ?? 0;
  if (!cur) cur = { start: t, us: 0, self: new Map(), entries: new Map() };
  cur.us += d;
  const k = label(byId.get(id));
  cur.self.set(k, (cur.self.get(k) ?? 0) + d);
  const e = entry(id);
  cur.entries.set(e, (cur.entries.get(e) ?? 0) + d);
}
if (cur) runs.push(cur);
const long = runs.filter((r) => r.us >= minUs).sort((a, b) => b.us - a.us);
console.log(`${file}: ${long.length} stretches of at least ${minUs / 1000} ms without idle; longest:`);
for (const r of long.slice(0, maxRuns)) {
  console.log(`\n${(r.us / 1000).toFixed(1)} ms at +${((r.start - p.startTime) / 1e6).toFixed(2)} s`);
  for (const [k, us] of [...r.entries].sort((a, b) => b[1] - a[1]).slice(0, 3)) {
    console.log(`  under ${k}: ${(us / 1000).toFixed(1)} ms`);
  }
  for (const [k, us] of [...r.self].sort((a, b) => b[1] - a[1]).slice(0, 6)) {
    console.log(`    self ${(us / 1000).toFixed(1).padStart(7)} ms  ${k}`);
  }
}
