/**
 * (k) COLO against Remus and no protection, side by side in one run, over
 * real processes (a vswitch, the daemons, `remusd client`):
 *
 *  - unprotected: a primary with no backup (output leaves at once);
 *  - Remus at 25 ms: output waits for its epoch's checkpoint;
 *  - COLO: output leaves when the secondary produced the same.
 *
 * Per variant and round: `remusd client` with 8 connections, one request
 * in flight each (`-P 1`): the latency and the throughput of the same requests. Rounds interleave the variants, so
 * each ratio is taken between runs minutes apart at most. Targets (issue
 * 12): COLO's added p50 at most 0.5 ms over unprotected when outputs match,
 * throughput at least 5x Remus at 25 ms. The COLO variant also reports the
 * checkpoints its divergence forced (GET /v1/status), which for kvd's own
 * keys should be none.
 */
import type { BenchCase, BenchContext } from "./case.js";
import { freePort, Procs, sleep } from "./procs.js";
import { type Figure, figure, pairedRatios } from "./stats.js";

type Variant = "unprotected" | "remus" | "colo";
const VARIANTS: readonly Variant[] = ["unprotected", "remus", "colo"];

interface Sample {
  p50: number;
  p99: number;
  rps: number;
  /** COLO only: checkpoints forced by divergence, and frames compared. */
  divergence?: number;
  matched?: number;
}

async function runVariant(ctx: BenchContext, v: Variant, seconds: number): Promise<Sample> {
  const procs = new Procs(ctx.tempDir());
  try {
    const sw = await procs.vswitch();
    const mode = v === "colo" ? ["--mode", "colo"] : [];
    const o = { domainMiB: 64, intervalMs: 25, workload: "idle", switchAddr: sw, args: mode };
    const peer =
      v === "unprotected"
        ? `127.0.0.1:${await freePort()}` // nobody listens: the primary stays unprotected
        : ((await procs.backup("backup", o, undefined, false)).listen as string);
    const p = await procs.primary("primary", peer, o);
    if (v !== "unprotected") {
      const ok = await procs.waitEvent(p.eventLog, (e) => e.event === "sync.completed", 60_000);
      if (!ok) throw new Error(`${v}: the pair never synced`);
      await sleep(500);
    } else await sleep(1500);
    // One client, 8 connections, one request in flight each: latency and throughput of the same requests.
    const r = await procs.client(sw, Procs.closedLoop(seconds));
    const l = r?.latencyMs as { p50: number; p99: number; samples: number } | undefined;
    const rps = r?.requestsPerSec as number | undefined;
    if (!l || l.samples === 0 || rps === undefined || r?.ok !== true) {
      throw new Error(`${v}: the client failed: ${JSON.stringify(r?.errors ?? r)}`);
    }
    const out: Sample = { p50: l.p50, p99: l.p99, rps };
    if (v === "colo") {
      const r = await fetch(`http://${p.control}/v1/status`);
      const s = (await r.json()) as {
        colo?: { checkpoints: Record<string, number>; compared: { match: number } } | null;
      };
      const c = s.colo?.checkpoints ?? {};
      out.divergence = (c.mismatch ?? 0) + (c.timeout ?? 0) + (c.queue_full ?? 0);
      out.matched = s.colo?.compared.match ?? 0;
    }
    return out;
  } finally {
    await procs.stopAll();
  }
}

export async function benchColo(ctx: BenchContext, rounds: number, seconds: number): Promise<Figure[]> {
  const s: Record<Variant, Sample[]> = { unprotected: [], remus: [], colo: [] };
  for (let r = 0; r < rounds; r++) {
    for (const v of VARIANTS) {
      ctx.log(`  round ${r + 1}/${rounds}: ${v}`);
      s[v].push(await runVariant(ctx, v, seconds));
    }
  }
  const col = (v: Variant, k: "p50" | "p99" | "rps") => s[v].map((x) => x[k]);
  const added = (v: Variant, k: "p50" | "p99") =>
    col(v, k).map((x, i) => x - (col("unprotected", k)[i] as number));
  const colo = s.colo;
  return [
    figure("colo_kvd_latency_unprotected_p50_ms", "ms", col("unprotected", "p50"), {
      detail: "8 connections, -P 1",
    }),
    figure("colo_kvd_added_latency_p50_ms", "ms", added("colo", "p50"), {
      detail: "COLO p50 minus unprotected p50 per round; target at most 0.5 ms when outputs match",
    }),
    figure("colo_kvd_added_latency_p99_ms", "ms", added("colo", "p99")),
    figure("remus25_kvd_added_latency_p50_ms", "ms", added("remus", "p50"), {
      detail: "Remus at 25 ms, for comparison",
    }),
    figure("colo_kvd_rps_8conn", "req/s", col("colo", "rps"), { detail: "8 connections, -P 1" }),
    figure("remus25_kvd_rps_8conn", "req/s", col("remus", "rps")),
    figure("unprotected_kvd_rps_8conn", "req/s", col("unprotected", "rps")),
    figure("colo_vs_remus25_throughput_ratio", "x", pairedRatios(col("colo", "rps"), col("remus", "rps")), {
      detail: "per round; target at least 5x",
    }),
    figure(
      "colo_vs_unprotected_throughput_ratio",
      "x",
      pairedRatios(col("colo", "rps"), col("unprotected", "rps")),
    ),
    figure(
      "colo_divergence_checkpoints",
      "checkpoints",
      colo.map((x) => x.divergence ?? 0),
      {
        detail: `forced by a mismatch, timeout or full queue; frames matched ${colo.map((x) => x.matched).join(", ")}`,
      },
    ),
  ];
}

export const COLO_CASES: BenchCase[] = [
  {
    name: "colo",
    title: "(k) kvd under COLO vs Remus at 25 ms vs unprotected: added latency, 8-connection throughput",
    quick: true,
    run: (ctx) => benchColo(ctx, ctx.quick ? 1 : 3, ctx.quick ? 3 : 6),
  },
];
