/**
 * (l) How often the real sources of divergence force COLO checkpoints, per
 * workload preset, over real processes (a vswitch, a COLO pair of daemons,
 * `remusd client`). No divergence is injected: what differs between the
 * replicas is what differs between two hosts (each guest's clock follows its
 * own host, so a mirrored request reaches each guest at another tick, and
 * each guest draws its own random numbers between checkpoints).
 *
 * Per round and preset: one fresh pair (`--mode colo --workload PRESET`,
 * QEMU's comparator settings: 3 s timeout, 20 s period, 1024 frames), synced,
 * then two `remusd client` runs of 8 connections with one request in flight
 * each, back to back (their order alternating from round to round):
 *  - own keys: the client's usual mix, each connection on its own keys, whose
 *    replies depend only on that connection's requests;
 *  - shared counter (`--shared-counter`): every connection INCRs one key, so
 *    a reply depends on how the guest interleaved the connections, which is
 *    where two replicas' timing shows.
 * Around each client run the primary's status (GET /v1/status) is read: the
 * checkpoints it began by reason and the frames its comparator judged,
 * divided by the time the client ran its traffic (its own clock, which leaves
 * out the client process's start-up; checkpoints in that short gap still
 * count, so a rate errs high, never low). Divergence checkpoints are
 * those forced by a mismatch, a timeout or a full queue; periodic ones are
 * reported beside them.
 */
import { PRESETS } from "../guest/workload.js";
import type { BenchCase, BenchContext } from "./case.js";
import { Procs, sleep } from "./procs.js";
import { type Figure, figure, median } from "./stats.js";

type Traffic = "own" | "shared";
const TRAFFIC: readonly Traffic[] = ["own", "shared"];

/** The primary's COLO counts, as GET /v1/status gives them. */
interface ColoCounts {
  compared: { match: number; mismatch: number; timeout: number };
  checkpoints: Record<string, number>;
}

/** What one client run caused, per second of its traffic. */
interface Sample {
  seconds: number;
  /** Checkpoints by reason (counts, not rates: rare ones stay visible in the sum over rounds). */
  reasons: { mismatch: number; timeout: number; queue_full: number; periodic: number };
  divergence: number;
  /** Frames of the primary's output released on a match, found different, held past the timeout. */
  matched: number;
  differed: number;
  timedOut: number;
  replies: number;
  /** Divergence checkpoints per 1,000 replies. */
  perKiloReply: number;
}

async function coloCounts(control: string | undefined): Promise<ColoCounts> {
  const r = await fetch(`http://${control}/v1/status`);
  const s = (await r.json()) as { colo?: ColoCounts | null };
  if (!s.colo) throw new Error("the primary reports no COLO counts: not in COLO mode?");
  return s.colo;
}

function rates(a: ColoCounts, b: ColoCounts, seconds: number, replies: number): Sample {
  const ck = (k: string) => (b.checkpoints[k] ?? 0) - (a.checkpoints[k] ?? 0);
  const cmp = (k: keyof ColoCounts["compared"]) => (b.compared[k] - a.compared[k]) / seconds;
  const reasons = {
    mismatch: ck("mismatch"),
    timeout: ck("timeout"),
    queue_full: ck("queue_full"),
    periodic: ck("periodic"),
  };
  const divergence = (reasons.mismatch + reasons.timeout + reasons.queue_full) / seconds;
  return {
    seconds,
    reasons,
    divergence,
    matched: cmp("match"),
    differed: cmp("mismatch"),
    timedOut: cmp("timeout"),
    replies: replies / seconds,
    perKiloReply: replies > 0 ? (1000 * divergence * seconds) / replies : Number.NaN,
  };
}

/** One fresh COLO pair under `preset`: a sample per traffic kind. */
async function runPreset(
  ctx: BenchContext,
  preset: string,
  seconds: number,
  round: number,
): Promise<Record<Traffic, Sample>> {
  const procs = new Procs(ctx.tempDir());
  try {
    const sw = await procs.vswitch();
    const o = { domainMiB: 64, workload: preset, switchAddr: sw, args: ["--mode", "colo"] };
    const backup = await procs.backup("backup", o, undefined, false);
    const p = await procs.primary("primary", backup.listen as string, o);
    const ok = await procs.waitEvent(p.eventLog, (e) => e.event === "sync.completed", 60_000);
    if (!ok) throw new Error(`${preset}: the COLO pair never synced`);
    await sleep(500);
    const out: Partial<Record<Traffic, Sample>> = {};
    for (const t of round % 2 === 0 ? TRAFFIC : [...TRAFFIC].reverse()) {
      const before = await coloCounts(p.control);
      const r = await procs.client(sw, [
        ...Procs.closedLoop(seconds),
        "--seed",
        // Its own seed per run: another command mix, and other local ports (no 4-tuple of the run before).
        String(2 * round + (t === "shared" ? 2 : 1)),
        ...(t === "shared" ? ["--shared-counter"] : []),
      ]);
      const after = await coloCounts(p.control);
      if (r?.ok !== true || typeof r.replies !== "number" || typeof r.durationS !== "number") {
        throw new Error(`${preset}, ${t}: the client failed: ${JSON.stringify(r?.errors ?? r)}`);
      }
      out[t] = rates(before, after, r.durationS, r.replies);
      ctx.log(
        `    ${t}: ${r.replies} replies in ${r.durationS} s, checkpoints ${JSON.stringify(out[t].reasons)}`,
      );
    }
    return out as Record<Traffic, Sample>;
  } finally {
    await procs.stopAll();
  }
}

const fmt = (xs: readonly number[]) => {
  const m = median(xs);
  return m >= 10 ? m.toFixed(0) : m.toFixed(2);
};

export async function benchColoDivergence(
  ctx: BenchContext,
  presets: readonly string[],
  rounds: number,
  seconds: number,
): Promise<Figure[]> {
  const s = new Map<string, Sample[]>();
  for (let r = 0; r < rounds; r++) {
    for (const preset of presets) {
      ctx.log(`  round ${r + 1}/${rounds}: ${preset}`);
      const got = await runPreset(ctx, preset, seconds, r);
      for (const t of TRAFFIC) {
        const k = `${preset}.${t}`;
        s.set(k, [...(s.get(k) ?? []), got[t]]);
      }
    }
  }
  const figures: Figure[] = [];
  for (const preset of presets) {
    for (const t of TRAFFIC) {
      const xs = s.get(`${preset}.${t}`) ?? [];
      const col = (k: Exclude<keyof Sample, "reasons">) => xs.map((x) => x[k]);
      const traffic = t === "own" ? "own keys" : "shared counter";
      const sum = (k: keyof Sample["reasons"]) => xs.reduce((a, x) => a + x.reasons[k], 0);
      const secs = xs.reduce((a, x) => a + x.seconds, 0);
      figures.push(
        figure(`colo_divergence_ckpt_per_s_${preset}_${t}`, "ckpt/s", col("divergence"), {
          detail:
            `${traffic}; all rounds (${secs.toFixed(0)} s): mismatch ${sum("mismatch")}, timeout ${sum("timeout")}, queue_full ${sum("queue_full")}, periodic ${sum("periodic")} checkpoints; ` +
            `medians per s: frames matched ${fmt(col("matched"))}, differed ${fmt(col("differed"))}, timed out ${fmt(col("timedOut"))}; replies ${fmt(col("replies"))}`,
        }),
        figure(`colo_divergence_ckpt_per_1000_replies_${preset}_${t}`, "ckpt", col("perKiloReply")),
      );
    }
  }
  return figures;
}

export const COLO_DIVERGENCE_CASES: BenchCase[] = [
  {
    name: "colo-divergence",
    title:
      "(l) COLO checkpoints/s forced by real divergence (no injection), per workload preset: kvd own keys vs a shared counter, 8 connections",
    quick: true,
    run: (ctx) =>
      ctx.quick
        ? benchColoDivergence(ctx, ["web"], 1, 3)
        : benchColoDivergence(ctx, Object.keys(PRESETS), 3, 5),
  },
];
