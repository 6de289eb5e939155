/**
 * Page batch encode and decode throughput: the same job code (pipeline/jobs.ts)
 * on this thread, and on a pool of 1 and of 2 worker threads, over the same
 * captured pages, for three page mixes (zeros, about 50% compressible,
 * random). Beside them, the `lz4` command line tool's single-thread speed on
 * the same bytes in 4 KiB blocks (`lz4 -b1 -B4096`), when it is installed.
 * Throughput counts page bytes (4096 per page) per second.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CopyCapturer } from "../domain/capture.js";
import { GuestMemory, PAGE_SIZE } from "../domain/memory.js";
import { BatchEncoder } from "../pipeline/encoder.js";
import { type EncodeResult, EncodeScratch, runDecode, runEncode } from "../pipeline/jobs.js";
import { PagePool, type Ticket } from "../pipeline/pool.js";
import { MAX_BATCH_ENTRIES } from "../protocol/constants.js";
import type { BenchCase, BenchContext } from "./case.js";
import { fillPages, PAGE_MIXES, type PageMix } from "./pages.js";
import { type Figure, figure, pairedRatios } from "./stats.js";

export interface Lz4Cli {
  compress: number;
  decompress: number;
}

/** `lz4 -b1 -B4096` on `file`: MB/s (10^6 bytes) compress and decompress, or undefined without lz4. */
export function lz4Cli(file: string, seconds: number): Lz4Cli | undefined {
  const r = spawnSync("lz4", ["-b1", "-B4096", `-i${seconds}`, "-q", file], { encoding: "utf8" });
  if (r.error || r.status !== 0) return undefined;
  // "-1     16843010 (0.996) 11207.85 MB/s 13065.8 MB/s  file"
  const m = /\(\s*[\d.]+\)\s+([\d.]+) MB\/s\s+([\d.]+) MB\/s/.exec(`${r.stdout}\n${r.stderr}`);
  if (!m) return undefined;
  return { compress: Number(m[1]), decompress: Number(m[2]) };
}

async function timeAsync(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0);
}

export async function benchEncode(
  ctx: BenchContext,
  mix: PageMix,
  pages: number,
  rounds: number,
): Promise<Figure[]> {
  const mem = new GuestMemory(pages * PAGE_SIZE);
  const all = Uint32Array.from({ length: pages }, (_, i) => i);
  fillPages(mem, all, mix, 3);
  const cap = new CopyCapturer(mem, pages).capture(all);
  const sc = cap.shared();
  const pools = [new PagePool({ threads: 1 }), new PagePool({ threads: 2 })];
  const bytes = pages * PAGE_SIZE;
  const samples: Record<string, number[]> = { single: [], pool1: [], pool2: [], dsingle: [], dpool2: [] };
  let wire = 0;
  try {
    // The single-thread baseline runs the worker's code on buffers registered the same way.
    const table = new Map<number, Uint8Array>([
      [1, new Uint8Array(sc.memory)],
      [2, new Uint8Array(sc.staging)],
      [3, new Uint8Array(sc.pfns)],
    ]);
    const get = { get: (k: number) => table.get(k) as Uint8Array };
    const scratch = new EncodeScratch();
    const batches: { from: number; n: number }[] = [];
    for (let from = 0; from < pages; from += MAX_BATCH_ENTRIES)
      batches.push({ from, n: Math.min(MAX_BATCH_ENTRIES, pages - from) });
    const single = (): EncodeResult[] =>
      batches.map((b) =>
        runEncode(
          {
            kind: "pageBatch",
            epoch: 1,
            compress: true,
            source: {
              kind: "capture",
              count: b.n,
              memory: 1,
              staging: 2,
              pfns: 3,
              state: -1,
              captured: pages,
              from: b.from,
            },
          },
          get,
          scratch,
        ),
      );
    const frames = single();
    wire = frames.reduce((a, f) => a + f.frame.length, 0);
    // Decoding: every frame into a shared staging area, page i at slot i.
    const dstMem = new SharedArrayBuffer(pages * PAGE_SIZE);
    table.set(4, new Uint8Array(dstMem));
    const decodeJobs = frames.map((f, k) => ({
      kind: "pageBatch" as const,
      frame: f.frame,
      geometry: { pages, diskBlocks: 0 },
      dstKeys: new Int32Array(batches[k]?.n ?? 0).fill(4),
      dstOffsets: Float64Array.from(
        { length: batches[k]?.n ?? 0 },
        (_, i) => ((batches[k]?.from ?? 0) + i) * PAGE_SIZE,
      ),
    }));
    const pool2 = pools[1] as PagePool;
    const dstKey = pool2.share(dstMem);
    const encoders = pools.map((p) => new BatchEncoder(p, { compress: true }));
    const viaPool = async (enc: BatchEncoder) => {
      const ts: Ticket<EncodeResult>[] = batches.map((b) => enc.capture(1, cap, b.from, b.n));
      for (const t of ts) await t.promise;
    };
    for (let r = 0; r < rounds + 2; r++) {
      const keep = r >= 2;
      const t1 = await timeAsync(async () => single());
      const t2 = await timeAsync(() => viaPool(encoders[0] as BatchEncoder));
      const t3 = await timeAsync(() => viaPool(encoders[1] as BatchEncoder));
      const t4 = await timeAsync(async () => {
        for (const j of decodeJobs) runDecode(j, get);
      });
      const t5 = await timeAsync(async () => {
        const ts = decodeJobs.map((j) => pool2.decode({ ...j, dstKeys: j.dstKeys.map(() => dstKey) }));
        for (const t of ts) {
          const res = await t.promise;
          if (!res.ok) throw new Error(`decode failed: ${res.reason}`);
        }
      });
      if (!keep) continue;
      samples.single?.push(t1);
      samples.pool1?.push(t2);
      samples.pool2?.push(t3);
      samples.dsingle?.push(t4);
      samples.dpool2?.push(t5);
    }
  } finally {
    cap.release();
    await Promise.all(pools.map((p) => p.close()));
  }
  const mbps = (xs: number[]) => xs.map((ns) => bytes / 1e6 / (ns / 1e9));
  const tag = `${mix}_${pages}_pages`;
  const figs: Figure[] = [
    figure(`encode_single_${tag}`, "MB/s", mbps(samples.single as number[]), {
      detail: `zero check + LZ4 + CRC into frames, this thread; wire ${(bytes / Math.max(1, wire)).toFixed(2)}x smaller`,
    }),
    figure(`encode_pool1_${tag}`, "MB/s", mbps(samples.pool1 as number[]), { detail: "1 worker thread" }),
    figure(`encode_pool2_${tag}`, "MB/s", mbps(samples.pool2 as number[]), { detail: "2 worker threads" }),
    figure(
      `encode_pool2_vs_single_${tag}`,
      "ratio",
      pairedRatios(samples.single as number[], samples.pool2 as number[]),
    ),
    figure(`decode_single_${tag}`, "MB/s", mbps(samples.dsingle as number[]), {
      detail: "LZ4 into shared staging, this thread",
    }),
    figure(`decode_pool2_${tag}`, "MB/s", mbps(samples.dpool2 as number[]), { detail: "2 worker threads" }),
    figure(
      `decode_pool2_vs_single_${tag}`,
      "ratio",
      pairedRatios(samples.dsingle as number[], samples.dpool2 as number[]),
    ),
  ];
  // The lz4 tool on the same bytes, in the same run.
  const file = join(ctx.tempDir(), `${mix}.bin`);
  writeFileSync(file, mem.buf);
  const cli: Lz4Cli[] = [];
  for (let i = 0; i < (ctx.quick ? 1 : 3); i++) {
    const r = lz4Cli(file, 1);
    if (r) cli.push(r);
  }
  if (cli.length > 0) {
    const c = figure(
      `lz4_cli_compress_${tag}`,
      "MB/s",
      cli.map((x) => x.compress),
      { detail: "lz4 -b1 -B4096 (one thread, 4 KiB blocks)" },
    );
    figs.push(
      c,
      figure(
        `lz4_cli_decompress_${tag}`,
        "MB/s",
        cli.map((x) => x.decompress),
      ),
      figure(
        `encode_single_vs_lz4_cli_${tag}`,
        "ratio",
        mbps(samples.single as number[]).map((x) => x / c.median),
        {
          detail: "each round against the tool's median in this run",
        },
      ),
      figure(
        `encode_pool2_vs_lz4_cli_${tag}`,
        "ratio",
        mbps(samples.pool2 as number[]).map((x) => x / c.median),
      ),
    );
  } else ctx.log("  lz4 command line tool not found: no lz4 -b1 figures (Debian package lz4)");
  return figs;
}

export const ENCODE_CASES: BenchCase[] = [
  {
    name: "encode-throughput",
    title: "batch encode/decode throughput: this thread vs worker pool vs lz4 -b1",
    quick: true,
    run: async (ctx) => {
      const out: Figure[] = [];
      for (const mix of ctx.quick ? (["half"] as const) : PAGE_MIXES) {
        ctx.log(`  ${mix}`);
        out.push(...(await benchEncode(ctx, mix, ctx.quick ? 4096 : 8192, ctx.quick ? 7 : 21)));
      }
      return out;
    },
  },
];
