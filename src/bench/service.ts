/**
 * What clients of the protected guest see, between real processes (a
 * vswitch, the daemons, `remusd client` with its own TCP stack):
 *
 * (d) the latency kvd adds when protected, at 10, 25 and 100 ms intervals:
 *     one connection, one request at a time after a random think time (so
 *     requests arrive anywhere in an epoch), against the same requests to an
 *     unprotected primary (no backup: output leaves at once). Output commit
 *     makes a reply wait for the end of its epoch (half an interval on
 *     average) and that checkpoint's commit.
 * (e) kill-to-activation (SIGKILL of the primary to the backup's
 *     `failover.activated`, both on this machine's wall clock) and the longest
 *     stall a client saw across it, at 64 MiB and 4 GiB, with and without
 *     --verify.
 * (h) a full sync of 1 GiB and 4 GiB under `web`: its duration, the sync
 *     checkpoint's pause, and the longest event-loop stall on each side
 *     while it ran (the loop monitor's timeline, looplag.ts), and whether the
 *     backup ever took the primary for dead meanwhile.
 */
import type { BenchCase, BenchContext } from "./case.js";
import { longestGapBetween } from "./looplag.js";
import { freePort, loopLag, ms, Procs, readEvents, sleep } from "./procs.js";
import { type Figure, figure, percentile } from "./stats.js";

/** kvd reply latency through the vswitch: protected (with a backup) or not. */
async function kvdLatency(
  ctx: BenchContext,
  intervalMs: number,
  protectedRun: boolean,
  seconds: number,
): Promise<{ p50: number; p99: number; samples: number }> {
  const procs = new Procs(ctx.tempDir());
  try {
    const sw = await procs.vswitch();
    const o = { domainMiB: 64, intervalMs, workload: "idle", switchAddr: sw };
    const peer = protectedRun
      ? ((await procs.backup("backup", o, undefined, false)).listen as string)
      : `127.0.0.1:${await freePort()}`; // nobody listens: the primary stays unprotected
    const p = await procs.primary("primary", peer, o);
    if (protectedRun) {
      const ok = await procs.waitEvent(p.eventLog, (e) => e.event === "sync.completed", 60_000);
      if (!ok) throw new Error("the pair never synced");
    } else await sleep(1500);
    const s = await procs.client(sw, [
      "--connections",
      "1",
      "--pipeline",
      "1",
      // Think time, so requests arrive at random points of an epoch (a closed loop of one request
      // would lock onto the commits and wait a whole interval every time).
      "--think-ms",
      String(Math.max(5, intervalMs)),
      "--duration",
      String(seconds),
    ]);
    const lat = s?.latencyMs as { p50: number; p99: number; samples: number } | undefined;
    if (!lat || lat.samples === 0) throw new Error("the client measured nothing");
    return lat;
  } finally {
    await procs.stopAll();
  }
}

/**
 * (d) per round, the unprotected run and then each interval protected, side
 * by side: each added latency is a per-round difference, `rounds` of them.
 */
export async function benchKvdLatency(
  ctx: BenchContext,
  intervals: readonly number[],
  seconds: number,
  rounds: number,
): Promise<Figure[]> {
  const bare = { p50: [] as number[], p99: [] as number[], samples: 0 };
  const added = new Map<number, { p50: number[]; p99: number[]; prot50: number[]; prot99: number[] }>();
  for (const i of intervals) added.set(i, { p50: [], p99: [], prot50: [], prot99: [] });
  for (let r = 0; r < rounds; r++) {
    ctx.log(`  round ${r + 1}: unprotected`);
    const b = await kvdLatency(ctx, 25, false, seconds);
    bare.p50.push(b.p50);
    bare.p99.push(b.p99);
    bare.samples += b.samples;
    for (const i of intervals) {
      ctx.log(`  round ${r + 1}: ${i} ms`);
      const prot = await kvdLatency(ctx, i, true, seconds);
      const a = added.get(i) as { p50: number[]; p99: number[]; prot50: number[]; prot99: number[] };
      a.p50.push(prot.p50 - b.p50);
      a.p99.push(prot.p99 - b.p99);
      a.prot50.push(prot.p50);
      a.prot99.push(prot.p99);
    }
  }
  const med = (xs: number[]) => percentile(xs, 50);
  const out: Figure[] = [
    figure("kvd_latency_unprotected_p50_ms", "ms", bare.p50, {
      detail: `${bare.samples} requests over ${rounds} runs`,
    }),
    figure("kvd_latency_unprotected_p99_ms", "ms", bare.p99),
  ];
  for (const i of intervals) {
    const a = added.get(i) as { p50: number[]; p99: number[]; prot50: number[]; prot99: number[] };
    out.push(
      figure(`kvd_added_latency_p50_${i}ms`, "ms", a.p50, {
        detail: `protected p50 ${med(a.prot50)} ms vs ${med(bare.p50)}; target at most ${i / 2 + 1} ms`,
      }),
      figure(`kvd_added_latency_p99_${i}ms`, "ms", a.p99, {
        detail: `protected p99 ${med(a.prot99)} ms vs ${med(bare.p99)}; target at most ${i + 3} ms`,
      }),
    );
  }
  return out;
}

/** One failover under client load: SIGKILL the primary, time the activation and the clients' longest stall. */
async function killToActivation(
  ctx: BenchContext,
  domainMiB: number,
  verify: boolean,
): Promise<{ activationMs: number; clientStallMs: number; ok: boolean }> {
  const procs = new Procs(ctx.tempDir());
  try {
    const sw = await procs.vswitch();
    const o = { domainMiB, intervalMs: 25, workload: "web", verify, switchAddr: sw };
    const b = await procs.backup("backup", o, undefined, false);
    const p = await procs.primary("primary", b.listen as string, o);
    const synced = await procs.waitEvent(p.eventLog, (e) => e.event === "sync.completed", 180_000);
    if (!synced) throw new Error("the pair never synced");
    const client = procs.client(sw, ["--connections", "4", "--duration", "5"]);
    await sleep(2000);
    const killedAt = Date.now();
    p.proc.kill("SIGKILL");
    const act = await procs.waitEvent(b.eventLog, (e) => e.event === "failover.activated", 30_000);
    const s = await client;
    return {
      activationMs: act ? ms(act) - killedAt : Number.NaN,
      clientStallMs: (s?.longestStallMs as number | undefined) ?? Number.NaN,
      ok: s?.ok === true,
    };
  } finally {
    await procs.stopAll();
  }
}

export async function benchFailover(
  ctx: BenchContext,
  sizes: readonly number[],
  verifies: readonly boolean[],
  rounds: number,
): Promise<Figure[]> {
  const out: Figure[] = [];
  for (const mib of sizes) {
    for (const verify of verifies) {
      const tag = `${mib}MiB${verify ? "_verify" : ""}`;
      const act: number[] = [];
      const stall: number[] = [];
      let failed = 0;
      for (let r = 0; r < rounds; r++) {
        ctx.log(`  ${tag} round ${r + 1}`);
        const x = await killToActivation(ctx, mib, verify);
        act.push(x.activationMs);
        stall.push(x.clientStallMs);
        if (!x.ok) failed++;
      }
      out.push(
        figure(`kill_to_activation_ms_${tag}`, "ms", act, {
          detail:
            "SIGKILL of the primary to the backup's failover.activated; target at most 100 ms x 10 + 50",
        }),
        figure(`client_longest_stall_ms_${tag}`, "ms", stall, {
          detail: `4 kvd connections across the failover${failed > 0 ? `, CLIENT CHECKS FAILED in ${failed} runs` : ""}`,
        }),
      );
    }
  }
  return out;
}

/** A full sync under `web`: its time, the sync checkpoint's pause, the loops' longest stalls meanwhile. */
async function fullSync(ctx: BenchContext, domainMiB: number): Promise<Figure[]> {
  const procs = new Procs(ctx.tempDir());
  const o = { domainMiB, intervalMs: 25, workload: "web" };
  // Both started and settled (control API up) before they meet, so neither's own start-up is taken
  // for the sync's: the primary first dials an address nobody listens on, then is pointed at the
  // backup. (A daemon builds its API after its replication listener is up: a backup dialled at
  // once would build it during the sync.)
  const p = await procs.primary("primary", `127.0.0.1:${await freePort()}`, o, true);
  const b = await procs.backup("backup", o);
  await procs.setPeer(p, b.listen as string);
  try {
    const done = await procs.waitEvent(p.eventLog, (e) => e.event === "sync.completed", 300_000);
    if (!done) throw new Error("the sync never completed");
    await sleep(500);
  } finally {
    await procs.stopAll();
  }
  const pe = readEvents(p.eventLog);
  const be = readEvents(b.eventLog);
  const started = pe.find((e) => e.event === "sync.started");
  const done = pe.find((e) => e.event === "sync.completed");
  if (!started || !done) return [];
  const from = ms(started);
  const to = ms(done);
  const syncCommit = pe.find((e) => e.event === "checkpoint.committed" && e.epoch === done.epoch);
  const stall = (d: typeof p): number => {
    const r = loopLag(d);
    return r ? longestGapBetween(r, from, to) : Number.NaN;
  };
  const falseFailover = be.some((e) => e.event === "failover.activated" || e.event === "peer.lost");
  const tag = `${domainMiB}MiB`;
  return [
    figure(`full_sync_ms_${tag}`, "ms", [done.durationMs as number], {
      detail: `web workload${falseFailover ? "; THE BACKUP LOST THE PRIMARY" : "; no false failover"}`,
    }),
    figure(
      `sync_checkpoint_pause_ms_${tag}`,
      "ms",
      [(syncCommit?.pauseMs as number | undefined) ?? Number.NaN],
      {
        detail: `${syncCommit?.dirtyPages ?? "?"} pages in the sync checkpoint`,
      },
    ),
    figure(`sync_longest_loop_stall_ms_primary_${tag}`, "ms", [stall(p)], {
      detail: "longest gap between two turns of a 1 ms timer while the sync ran",
    }),
    figure(`sync_longest_loop_stall_ms_backup_${tag}`, "ms", [stall(b)]),
  ];
}

export const SERVICE_CASES: BenchCase[] = [
  {
    name: "kvd-latency",
    title: "(d) kvd latency added by protection at 10, 25 and 100 ms intervals (vs unprotected)",
    quick: true,
    run: (ctx) =>
      benchKvdLatency(ctx, ctx.quick ? [25] : [10, 25, 100], ctx.quick ? 2 : 8, ctx.quick ? 1 : 3),
  },
  {
    name: "failover",
    title: "(e) kill-to-activation and the longest client stall, 64 MiB and 4 GiB, with and without --verify",
    quick: true,
    run: (ctx) =>
      benchFailover(
        ctx,
        ctx.quick ? [64] : [64, 4096],
        ctx.quick ? [false] : [false, true],
        ctx.quick ? 1 : 3,
      ),
  },
  {
    name: "full-sync",
    title: "(h) full sync under web: time, the sync checkpoint's pause, the longest loop stall on each side",
    quick: true,
    run: async (ctx) => {
      const out: Figure[] = [];
      for (const mib of ctx.quick ? [1024] : [1024, 4096]) out.push(...(await fullSync(ctx, mib)));
      return out;
    },
  },
];
