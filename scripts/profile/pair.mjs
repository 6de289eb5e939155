#!/usr/bin/env node
// Runs a real backup/primary pair on 127.0.0.1 (--insecure, no network) for a
// while, optionally under `node --cpu-prof`, with an event-loop-delay monitor in
// both daemons, and prints what the primary's event log and the loop monitors
// say. Needs `npm run build` first. See docs/profiling.md.
//
//   node scripts/profile/pair.mjs --mib 256 --interval 25 \
//     --workload dirty:rate=40960,hot=1,pattern=uniform --seconds 9 --prof --out /tmp/prof
//
// Prints one JSON line: checkpoints/s, dirty pages per checkpoint, pause and
// pause-to-ack percentiles, dirty MB/s protected, wire MB/s, CPU seconds per
// side, loop delay per side, full-sync duration; with --prof the .cpuprofile
// files are in OUT/primary and OUT/backup (summarise with cpuprofile-top.mjs).
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const { values: a } = parseArgs({
  options: {
    mib: { type: "string", default: "256" },
    interval: { type: "string", default: "25" },
    workload: { type: "string", default: "dirty:rate=40960,hot=1,pattern=uniform" },
    seconds: { type: "string", default: "9" },
    prof: { type: "boolean", default: false },
    out: { type: "string", default: "/tmp/remusd-profile" },
    "until-synced": { type: "boolean", default: false },
    verify: { type: "boolean", default: false },
  },
});
const root = resolve(new URL("../..", import.meta.url).pathname);
const cli = join(root, "dist/src/cli/remusd.js");
const lag = join(root, "dist/src/bench/looplag.js");
const out = resolve(a.out);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function start(role, args) {
  const dir = join(out, role);
  mkdirSync(dir, { recursive: true });
  const node = ["--import", lag];
  if (a.prof) node.push("--cpu-prof", "--cpu-prof-dir", dir);
  const child = spawn(
    process.execPath,
    [
      ...node,
      cli,
      role,
      ...args,
      "--insecure",
      "--unsafe-open-api",
      "--log-level",
      "warn",
      "--data-dir",
      join(dir, "data"),
      "--event-log",
      join(dir, "events.jsonl"),
    ],
    {
      env: { ...process.env, LOOPLAG_OUT: join(dir, "looplag.json") },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  return child;
}

function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime in clock ticks (USER_HZ = 100)
  } catch {
    return Number.NaN;
  }
}

function events(role) {
  try {
    return readFileSync(join(out, role, "events.jsonl"), "utf8")
      .split("\n")
      .filter((l) => l)
      .map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}

const pct = (xs, p) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const r3 = (x) => (x === null || Number.isNaN(x) ? null : Math.round(x * 1000) / 1000);

const [repl, bctl, pctl] = [await freePort(), await freePort(), await freePort()];
const backup = start("backup", [
  "--listen",
  `127.0.0.1:${repl}`,
  "--control",
  `127.0.0.1:${bctl}`,
  "--domain-mib",
  a.mib,
  ...(a.verify ? ["--verify"] : []),
]);
await new Promise((r) => setTimeout(r, 1500));
const t0 = Date.now();
const primary = start("primary", [
  "--peer",
  `ws://127.0.0.1:${repl}`,
  "--control",
  `127.0.0.1:${pctl}`,
  "--domain-mib",
  a.mib,
  "--interval-ms",
  a.interval,
  "--workload",
  a.workload,
  ...(a.verify ? ["--verify"] : []),
]);
const seconds = Number(a.seconds);
let syncedAt;
for (;;) {
  await new Promise((r) => setTimeout(r, 200));
  const ev = events("primary");
  const done = ev.find((e) => e.event === "sync.completed");
  if (done && syncedAt === undefined) {
    syncedAt = Date.now();
    // The loop monitors start a new phase: "phases[0]" is start-up and sync, the rest steady state.
    primary.kill("SIGUSR2");
    backup.kill("SIGUSR2");
  }
  if (a["until-synced"] && done) break;
  if (syncedAt !== undefined && Date.now() - syncedAt >= seconds * 1000) break;
  if (Date.now() - t0 > (seconds + 300) * 1000) break;
  if (primary.exitCode !== null || backup.exitCode !== null) break;
}
const cpu = { primary: cpuSeconds(primary.pid), backup: cpuSeconds(backup.pid) };
const stopped = (c) => new Promise((r) => (c.exitCode !== null ? r() : c.once("exit", r)));
primary.kill("SIGTERM");
await stopped(primary);
backup.kill("SIGTERM");
await stopped(backup);

const pe = events("primary");
const sync = pe.find((e) => e.event === "sync.completed");
const committed = pe.filter((e) => e.event === "checkpoint.committed" && sync && e.epoch > sync.epoch);
const span =
  committed.length > 1 ? (Date.parse(committed.at(-1).ts) - Date.parse(committed[0].ts)) / 1000 : Number.NaN;
const sum = (k) => committed.slice(1).reduce((s, e) => s + (e[k] ?? 0), 0);
const readLag = (role) => {
  try {
    return JSON.parse(readFileSync(join(out, role, "looplag.json"), "utf8"));
  } catch {
    return null;
  }
};
const applied = events("backup").filter((e) => e.event === "checkpoint.applied");
console.log(
  JSON.stringify({
    mib: Number(a.mib),
    intervalMs: Number(a.interval),
    workload: a.workload,
    syncMs: sync?.durationMs ?? null,
    syncPauseMs:
      pe.find((e) => e.event === "checkpoint.committed" && sync && e.epoch === sync.epoch)?.pauseMs ?? null,
    checkpoints: committed.length,
    checkpointsPerSec: r3((committed.length - 1) / span),
    dirtyPagesP50: pct(
      committed.map((e) => e.dirtyPages),
      50,
    ),
    pauseMs: {
      p50: r3(
        pct(
          committed.map((e) => e.pauseMs),
          50,
        ),
      ),
      p99: r3(
        pct(
          committed.map((e) => e.pauseMs),
          99,
        ),
      ),
    },
    pauseToAckMs: {
      p50: r3(
        pct(
          committed.map((e) => e.durationMs),
          50,
        ),
      ),
      p99: r3(
        pct(
          committed.map((e) => e.durationMs),
          99,
        ),
      ),
    },
    applyMs: {
      p50: r3(
        pct(
          applied.map((e) => e.applyMs),
          50,
        ),
      ),
      p99: r3(
        pct(
          applied.map((e) => e.applyMs),
          99,
        ),
      ),
    },
    protectedDirtyMBps: r3((sum("dirtyPages") * 4096) / 1e6 / span),
    wireMBps: r3(sum("wireBytes") / 1e6 / span),
    compression: r3(sum("rawBytes") / sum("wireBytes")),
    cpuSeconds: cpu,
    loadavg: (await import("node:os")).loadavg().map(r3),
    loop: { primary: readLag("primary"), backup: readLag("backup") },
  }),
);
