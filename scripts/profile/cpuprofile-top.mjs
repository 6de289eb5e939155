#!/usr/bin/env node
// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function
// (top N), and self time per category of work in the checkpoint pipeline.
// Usage: node scripts/profile/cpuprofile-top.mjs FILE.cpuprofile [N] [FUNCTION]
// With FUNCTION: also the self time of FUNCTION split by its first two callers outside node's own code.
import { readFileSync } from "node:fs";

const [file, topArg, callersOf] = process.argv.slice(2);
if (!file) {
  console.error("usage: cpuprofile-top.mjs FILE.cpuprofile [N]");
  process.exit(2);
}
const top = Number(topArg ?? 25);
const p = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Self time per node from the samples and their time deltas (µs).
const self = new Map();
for (let i = 0; i < p.samples.length; i++) {
  const id = p.samples[i];
  self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);

function label(n) {
  const f = n.callFrame;
  const url = f.url.replace(/^.*\/(dist|node_modules)\//, "$1/").replace(/^node:/, "node:");
  return `${f.functionName || "(anonymous)"} ${url ? `${url}:${f.lineNumber + 1}` : ""}`.trim();
}

const fn = new Map();
for (const [id, t] of self) {
  const k = label(byId.get(id));
  fn.set(k, (fn.get(k) ?? 0) + t);
}

// Categories: the first matching frame walking up from the sampled one.
const CATS = [
  // Native calls (lz4, Buffer.compare) have no frame of their own: their time is the self time
  // of the JS function that called them (encodeBatchFrame: lz4 compress and the zero-page
  // check; decodeLz4: lz4 decompress).
  ["lz4 compress (encodeBatchFrame self)", (f) => f.functionName === "encodeBatchFrame"],
  ["lz4 decompress (decodeLz4 self)", (f) => f.functionName === "decodeLz4"],
  ["crc32", (f) => /crc32/i.test(f.functionName)],
  ["digest (sha256)", (f) => /digest\.js/.test(f.url) || /SumHasher|unitHash/.test(f.functionName)],
  ["level store", (f) => /classic-level|abstract-level|level\/|store\/level\.js/.test(f.url)],
  [
    "ws / socket",
    (f) =>
      /node_modules\/ws\/|bufferutil|net\.js|stream_base|writev|internal\/stream/.test(f.url) ||
      /writeBuffer|writev|onStreamRead/.test(f.functionName),
  ],
  ["capture (copy)", (f) => /capture\.js/.test(f.url)],
  ["encode batch", (f) => /protocol\/batch\.js/.test(f.url) && /encode/.test(f.functionName)],
  [
    "decode batch/apply",
    (f) => /protocol\/batch\.js/.test(f.url) || /applyPages|applyDiskBlocks|writePage/.test(f.functionName),
  ],
  ["frame codec/stream", (f) => /protocol\//.test(f.url)],
  ["backup machine", (f) => /replication\/backup\.js/.test(f.url)],
  ["primary machine", (f) => /replication\/primary\.js/.test(f.url)],
  ["guest", (f) => /\/guest\/|\/net\//.test(f.url)],
  ["domain memory", (f) => /domain\//.test(f.url)],
  ["GC", (f) => f.functionName === "(garbage collector)"],
  ["idle", (f) => f.functionName === "(idle)"],
  ["program", (f) => f.functionName === "(program)"],
];
const cat = new Map();
for (const [id, t] of self) {
  let cur = id;
  let name = "other";
  while (cur !== undefined) {
    const f = byId.get(cur).callFrame;
    const hit = CATS.find(([, test]) => test(f));
    if (hit) {
      name = hit[0];
      break;
    }
    cur = parent.get(cur);
  }
  cat.set(name, (cat.get(name) ?? 0) + t);
}

const ms = (us) => (us / 1000).toFixed(0).padStart(7);
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5);
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
console.log("\nby category (self time, first matching frame up the stack):");
for (const [k, t] of [...cat].sort((a, b) => b[1] - a[1])) console.log(`${ms(t)} ms ${pct(t)}%  ${k}`);
console.log(`\ntop ${top} functions by self time:`);
for (const [k, t] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${ms(t)} ms ${pct(t)}%  ${k}`);
}

if (callersOf) {
  const by = new Map();
  for (const [id, t] of self) {
    const n = byId.get(id);
    if (n.callFrame.functionName !== callersOf) continue;
    const chain = [];
    for (let cur = parent.get(id); cur !== undefined && chain.length < 2; cur = parent.get(cur)) {
      const f = byId.get(cur).callFrame;
      if (f.url && !f.url.startsWith("node:")) chain.push(label(byId.get(cur)));
    }
    const k = chain.join(" < ");
    by.set(k, (by.get(k) ?? 0) + t);
  }
  console.log(`\ncallers of ${callersOf}:`);
  for (const [k, t] of [...by].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${ms(t)} ms ${pct(t)}%  ${k}`);
}
