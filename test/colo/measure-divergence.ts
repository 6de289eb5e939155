/**
 * How often the real sources of divergence (no injection) force COLO
 * checkpoints: a COLO pair of production Nodes (colopair.ts) under each workload preset
 * with kvd traffic, for a stretch of virtual time, default comparator
 * settings (QEMU's: 3 s timeout checked every second, 20 s period, 1024
 * frames). Two kinds of traffic:
 *  - own keys: `remusd client`'s load (8 connections, 2 requests in flight,
 *    each connection on its own keys), whose replies depend only on the
 *    connection's own requests;
 *  - shared counter (`sharedCounter`, `remusd client --shared-counter`):
 *    8 connections INCR one key, so a reply depends on how
 *    requests of different connections interleave, which depends on the tick
 *    each replica's host delivers them in.
 *
 *   npx tsc -p . && node dist/test/colo/measure-divergence.js [SECONDS] [SEEDS]
 */
import { KvLoad } from "../../src/client/kvload.js";
import { coloReasonName } from "../../src/node/colo.js";
import { ColoPair, GUEST } from "./colopair.js";

interface Row {
  workload: string;
  traffic: string;
  seconds: number;
  replies: number;
  match: number;
  mismatch: number;
  timeout: number;
  reasons: Record<string, number>;
  secondaryOnlyPages: number;
}

function measure(
  workload: string,
  traffic: "own keys" | "shared counter",
  seconds: number,
  seed: number,
): Row {
  const sim = new ColoPair({ seed, workload });
  const load = new KvLoad(
    sim.client.stack,
    {
      connections: 8,
      seed,
      targetIp: GUEST.ip,
      port: 6379,
      keysPerConnection: 16,
      // The shared counter: one INCR in flight per connection.
      ...(traffic === "own keys" ? { pipeline: 2 } : { pipeline: 1, sharedCounter: true }),
    },
    sim.now,
  );
  const replies = () => load.summary.replies;
  const tick = () => load.poll(sim.now);
  sim.world.every(1, tick);
  sim.world.runFor(seconds * 1000);
  const st = sim.a.node.coloPrimary!.comparator.stats;
  const reasons: Record<string, number> = {};
  for (const [code, n] of sim.a.node.primary!.coloCheckpoints) reasons[coloReasonName(code)] = n;
  return {
    workload,
    traffic,
    seconds,
    replies: replies(),
    match: st.compared.match,
    mismatch: st.compared.mismatch,
    timeout: st.compared.timeout,
    reasons,
    secondaryOnlyPages: sim.secondaryDirtyPages,
  };
}

function main(): void {
  const seconds = Number(process.argv[2] ?? 20);
  const seeds = Number(process.argv[3] ?? 1);
  console.log(
    "| workload | traffic | virtual s | replies | frames matched | mismatch | timeout | checkpoints by reason | divergence checkpoints/s | per 1000 replies |",
  );
  console.log("|---|---|---:|---:|---:|---:|---:|---|---:|---:|");
  for (const workload of ["idle", "web", "compile"]) {
    for (const traffic of ["own keys", "shared counter"] as const) {
      for (let k = 0; k < seeds; k++) {
        const r = measure(workload, traffic, seconds, 1 + k * 101);
        const div = (r.reasons.mismatch ?? 0) + (r.reasons.timeout ?? 0);
        const reasons = JSON.stringify(r.reasons).replace(/[{}"]/g, "") || "none";
        console.log(
          `| ${r.workload} | ${r.traffic} | ${r.seconds} | ${r.replies} | ${r.match} | ${r.mismatch} | ${r.timeout} | ${reasons} | ${(div / r.seconds).toFixed(2)} | ${((1000 * div) / Math.max(r.replies, 1)).toFixed(2)} |`,
        );
      }
    }
  }
}

main();
