/**
 * The whole pipeline, between real daemons over loopback WebSockets:
 *
 * (b) the highest dirty rate it sustains (capture, compression, transfer,
 *     decompression, atomic apply, ack) for three page mixes, beside
 *     `lz4 -b1` single-thread on the same pages and raw loopback TCP
 *     measured in the same run. The guest writes whole pages of the mix
 *     (`dirty:...,fill=MIX`) sequentially through 1 GiB faster than the
 *     pipeline can take; epochs stretch, so what commits per second is what
 *     the pipeline sustains. Figures are per-second samples of committed
 *     dirty bytes.
 * (c) the checkpoint rate at 256 dirty pages per epoch for shrinking
 *     intervals, with the commit time (pause to ack) p99 beside each
 *     interval; the highest rate whose p99 stays below its interval; and
 *     the rate at 4,096 pages per 25 ms epoch.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PAGE_SIZE } from "../domain/memory.js";
import { mixTemplates, PAGE_MIXES, type PageMix } from "../guest/pagemix.js";
import type { BenchCase, BenchContext } from "./case.js";
import { lz4Cli } from "./encode.js";
import { cpuSeconds, type Ev, ms, Procs, readEvents, sleep, steadyCommits } from "./procs.js";
import { type Figure, figure, percentile } from "./stats.js";
import { loopbackTcpMBps } from "./tcp.js";

/** A protected pair run for `seconds` after its sync; the primary's committed checkpoints and both CPU times. */
export async function runPair(
  ctx: BenchContext,
  o: {
    domainMiB: number;
    intervalMs: number;
    workload: string;
    seconds: number;
    primaryArgs?: string[];
    /** Flags for both daemons. */
    bothArgs?: string[];
  },
): Promise<{ commits: Ev[]; cpu: { primary: number; backup: number }; seconds: number }> {
  const procs = new Procs(ctx.tempDir());
  try {
    // Both start at once (the primary redials until the backup listens): start-up is not measured here.
    const b = await procs.backup(
      "backup",
      { domainMiB: o.domainMiB, args: o.bothArgs ?? [] },
      undefined,
      false,
    );
    const p = await procs.primary("primary", b.listen as string, {
      domainMiB: o.domainMiB,
      intervalMs: o.intervalMs,
      workload: o.workload,
      args: [...(o.bothArgs ?? []), ...(o.primaryArgs ?? [])],
    });
    const synced = await procs.waitEvent(p.eventLog, (e) => e.event === "sync.completed", 120_000);
    if (!synced) throw new Error("the pair never synced");
    const c0 = { primary: cpuSeconds(p.proc.pid), backup: cpuSeconds(b.proc.pid) };
    const t0 = performance.now();
    await sleep(o.seconds * 1000);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = {
      primary: cpuSeconds(p.proc.pid) - c0.primary,
      backup: cpuSeconds(b.proc.pid) - c0.backup,
    };
    return { commits: steadyCommits(readEvents(p.eventLog)), cpu, seconds };
  } finally {
    await procs.stopAll();
  }
}

/**
 * Per checkpoint after the first: `value` per second of the time since the
 * commit before it (a sample per checkpoint, however long they take).
 */
function betweenCommits(commits: readonly Ev[], value: (e: Ev) => number): number[] {
  const out: number[] = [];
  for (let i = 1; i < commits.length; i++) {
    const dt = (ms(commits[i] as Ev) - ms(commits[i - 1] as Ev)) / 1000;
    if (dt > 0) out.push(value(commits[i] as Ev) / dt);
  }
  return out;
}

/** Per-second sums of `value` over the commits (the first and last partial seconds dropped). */
function perSecond(commits: readonly Ev[], value: (e: Ev) => number): number[] {
  if (commits.length < 2) return [];
  const t0 = ms(commits[0] as Ev);
  const buckets = new Map<number, number>();
  for (const e of commits) {
    const s = Math.floor((ms(e) - t0) / 1000);
    buckets.set(s, (buckets.get(s) ?? 0) + value(e));
  }
  const last = Math.floor((ms(commits[commits.length - 1] as Ev) - t0) / 1000);
  const out: number[] = [];
  for (let s = 0; s < last; s++) out.push(buckets.get(s) ?? 0);
  return out;
}

async function sustained(
  ctx: BenchContext,
  mix: PageMix,
  seconds: number,
  /** Page worker threads per daemon (undefined: the default, one per core). */
  workers?: number,
  inflight = Number(process.env.REMUSD_BENCH_INFLIGHT ?? 1),
): Promise<Figure[]> {
  const tag = workers === undefined ? mix : `${mix}_workers${workers}`;
  const run = await runPair(ctx, {
    domainMiB: 1024,
    intervalMs: 25,
    // A 16,384-page (64 MiB) working set written through faster than the pipeline takes it: every
    // checkpoint carries the whole working set, whose pages all changed.
    workload: `dirty:rate=250000,hot=0.0625,pattern=seq,fill=${mix}`,
    seconds,
    primaryArgs: inflight > 1 ? ["--max-inflight", String(inflight)] : [],
    bothArgs: workers === undefined ? [] : ["--workers", String(workers)],
  });
  const mbps = betweenCommits(run.commits, (e) => ((e.dirtyPages as number) * PAGE_SIZE) / 1e6);
  const wire = betweenCommits(run.commits, (e) => (e.wireBytes as number) / 1e6);
  const rate = betweenCommits(run.commits, () => 1);
  const pages = run.commits.map((e) => e.dirtyPages as number);
  return [
    figure(`pipeline_${tag}_MBps`, "MB/s", mbps, {
      detail: `committed dirty bytes per second, per checkpoint; ${Math.round(percentile(pages, 50))} pages a checkpoint, ${percentile(rate, 50).toFixed(1)} checkpoints/s, CPU s/s primary ${(run.cpu.primary / run.seconds).toFixed(2)} backup ${(run.cpu.backup / run.seconds).toFixed(2)}`,
    }),
    figure(`pipeline_${tag}_wire_MBps`, "MB/s", wire),
  ];
}

export async function benchThroughput(ctx: BenchContext, mixes: readonly PageMix[], seconds: number) {
  const out: Figure[] = [];
  const tcp: number[] = [];
  for (let i = 0; i < (ctx.quick ? 1 : 3); i++) tcp.push(await loopbackTcpMBps(1));
  out.push(
    figure("loopback_tcp_MBps", "MB/s", tcp, {
      detail: "raw TCP on 127.0.0.1, 1 MiB writes, one process each side",
    }),
  );
  for (const mix of mixes) {
    ctx.log(`  ${mix}`);
    const figs = await sustained(ctx, mix, seconds);
    out.push(...figs);
    // The target's mix once more with one page worker a side: the pipeline as if on one core each.
    const one = mix === "half" && !ctx.quick ? await sustained(ctx, mix, seconds, 1) : [];
    out.push(...one);
    // lz4 -b1 on the pages the guest wrote (its template pages), in this run.
    const file = join(ctx.tempDir(), `${mix}.bin`);
    writeFileSync(file, mixTemplates(mix));
    const cli = lz4Cli(file, 1);
    const main = figs[0] as Figure;
    if (cli) {
      out.push(
        figure(`lz4_cli_compress_${mix}_MBps`, "MB/s", [cli.compress], {
          detail: "lz4 -b1 -B4096, one thread",
        }),
        figure(`pipeline_${mix}_vs_lz4_cli`, "ratio", [main.median / cli.compress], {
          detail: "the pipeline's median over lz4 -b1's compression speed on the same pages",
        }),
      );
      if (one.length > 0) {
        out.push(
          figure(`pipeline_${mix}_workers1_vs_lz4_cli`, "ratio", [(one[0] as Figure).median / cli.compress], {
            detail: "with one page worker a side",
          }),
        );
      }
    }
    out.push(figure(`pipeline_${mix}_vs_loopback_tcp`, "ratio", [main.median / (percentile(tcp, 50) || 1)]));
  }
  return out;
}

/** (c) the checkpoint rate at `pages` dirty pages an epoch for each interval. */
export async function benchRate(
  ctx: BenchContext,
  pages: number,
  intervals: readonly number[],
  seconds: number,
): Promise<Figure[]> {
  const out: Figure[] = [];
  let best = 0;
  for (const interval of intervals) {
    ctx.log(`  ${pages} pages per ${interval} ms`);
    const run = await runPair(ctx, {
      domainMiB: 256,
      intervalMs: interval,
      workload: `dirty:rate=${Math.round((pages * 1000) / interval)},hot=1,pattern=uniform`,
      seconds,
    });
    const rate = perSecond(run.commits, () => 1);
    const dur = run.commits.map((e) => e.durationMs as number);
    const p99 = percentile(dur, 99);
    const tag = `${pages}_pages_${interval}ms`;
    out.push(
      figure(`checkpoints_per_s_${tag}`, "1/s", rate, {
        detail: `asked ${Math.round(1000 / interval)}; ${Math.round(
          percentile(
            run.commits.map((e) => e.dirtyPages as number),
            50,
          ),
        )} pages a checkpoint; CPU s/s primary ${(run.cpu.primary / run.seconds).toFixed(2)} backup ${(run.cpu.backup / run.seconds).toFixed(2)}`,
      }),
      figure(`commit_ms_${tag}`, "ms", dur, { p99: true, detail: "pause to ack" }),
      figure(
        `pause_ms_${tag}`,
        "ms",
        run.commits.map((e) => e.pauseMs as number),
        { p99: true },
      ),
    );
    if (p99 < interval) best = Math.max(best, percentile(rate, 50));
  }
  out.push(
    figure(`highest_rate_${pages}_pages_commit_p99_below_interval`, "1/s", [best], {
      detail: `of intervals ${intervals.join(", ")} ms`,
    }),
  );
  return out;
}

export const PIPELINE_CASES: BenchCase[] = [
  {
    name: "pipeline-throughput",
    title: "(b) the dirty rate the whole pipeline sustains over loopback WebSockets vs lz4 -b1 and raw TCP",
    quick: true,
    run: (ctx) => benchThroughput(ctx, ctx.quick ? ["half"] : PAGE_MIXES, ctx.quick ? 3 : 8),
  },
  {
    name: "checkpoint-rate",
    title:
      "(c) checkpoints per second at 256 dirty pages an epoch (commit p99 below the interval), and at 4,096",
    quick: true,
    run: async (ctx) => [
      ...(await benchRate(ctx, 256, ctx.quick ? [10] : [10, 5, 4, 3, 2], ctx.quick ? 3 : 6)),
      ...(ctx.quick ? [] : await benchRate(ctx, 4096, [25], 6)),
    ],
  },
];
