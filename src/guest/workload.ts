/**
 * `--workload SPEC`: what the guest runs besides init and the counter.
 *
 *   SPEC    := PART ('+' PART)*
 *   PART    := 'idle' | 'compile' | 'web' | 'dirty' [':' OPTS] | 'disk' [':' OPTS]
 *   dirty   := rate=PAGES_PER_SEC, hot=FRACTION (0 < hot <= 1), pattern=uniform|zipf|seq,
 *              fill=record|zeros|half|random
 *   disk    := rate=KIB_PER_SEC
 *
 * `hot` is the fraction of guest memory in the working set that the memory
 * workload writes; the pattern picks pages within it (zipf: page k with
 * probability about 1/(k+1)). `fill` is what a write puts in the page: a
 * 32-byte record at a random place (the default: pages keep most of their
 * bytes, as real data does), or the whole page, all zero, about 50%
 * compressible, or random (copies of fixed template pages, pagemix.ts, in
 * turn, with the write count in the first 8 bytes). Presets mimic the shapes of the Remus paper's
 * benchmarks: `compile` (kernel build: high dirty rate with locality plus
 * steady disk writes) = dirty:rate=10000,hot=0.25,pattern=zipf+disk:rate=1024;
 * `web` (SPECweb-like: moderate dirty rate, network heavy through kvd and echo)
 * = dirty:rate=2000,hot=0.05,pattern=zipf. Every choice is drawn from the
 * guest's seeded RNG.
 */
import { RemusError } from "../errors.js";

export const DirtyPattern = { uniform: 0, zipf: 1, seq: 2 } as const;
export type DirtyPatternName = keyof typeof DirtyPattern;

/** What a dirty write puts in the page (see the header). */
export const DirtyFill = { record: 0, zeros: 1, half: 2, random: 3 } as const;
export type DirtyFillName = keyof typeof DirtyFill;

export type WorkloadPart =
  | { kind: "dirty"; rate: number; hot: number; pattern: DirtyPatternName; fill: DirtyFillName }
  | { kind: "disk"; rateKiB: number };

export interface WorkloadSpec {
  readonly text: string;
  readonly parts: readonly WorkloadPart[];
}

export const PRESETS: Record<string, string> = {
  idle: "",
  compile: "dirty:rate=10000,hot=0.25,pattern=zipf+disk:rate=1024",
  web: "dirty:rate=2000,hot=0.05,pattern=zipf",
};

const MAX_DIRTY_RATE = 10_000_000;
const MAX_DISK_KIB = 1_048_576;

function bad(msg: string): never {
  throw new RemusError("REMUSD_ERR_BAD_WORKLOAD", msg);
}

function parseOpts(part: string, body: string | undefined, allowed: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  if (body === undefined || body === "") return m;
  for (const kv of body.split(",")) {
    const eq = kv.indexOf("=");
    if (eq <= 0) bad(`workload '${part}': expected KEY=VALUE, got '${kv}'`);
    const k = kv.slice(0, eq);
    const v = kv.slice(eq + 1);
    if (!allowed.includes(k))
      bad(`workload '${part}': unknown option '${k}' (allowed: ${allowed.join(", ")})`);
    if (m.has(k)) bad(`workload '${part}': option '${k}' given twice`);
    m.set(k, v);
  }
  return m;
}

function num(part: string, k: string, v: string, min: number, max: number, integer: boolean): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    bad(`workload '${part}': ${k}=${v} must be ${integer ? "an integer" : "a number"} in [${min}, ${max}]`);
  }
  return n;
}

function parsePart(raw: string, depth: number): WorkloadPart[] {
  const part = raw.trim();
  const colon = part.indexOf(":");
  const name = colon < 0 ? part : part.slice(0, colon);
  const body = colon < 0 ? undefined : part.slice(colon + 1);
  const preset = PRESETS[name];
  if (preset !== undefined) {
    if (body !== undefined) bad(`workload preset '${name}' takes no options`);
    if (depth > 0) bad("presets cannot nest");
    return preset === "" ? [] : preset.split("+").flatMap((p) => parsePart(p, depth + 1));
  }
  if (name === "dirty") {
    const o = parseOpts(part, body, ["rate", "hot", "pattern", "fill"]);
    const pattern = o.get("pattern") ?? "uniform";
    if (!(pattern in DirtyPattern)) bad(`workload '${part}': pattern must be uniform, zipf or seq`);
    const fill = o.get("fill") ?? "record";
    if (!(fill in DirtyFill)) bad(`workload '${part}': fill must be record, zeros, half or random`);
    return [
      {
        kind: "dirty",
        rate: num(part, "rate", o.get("rate") ?? "1000", 0, MAX_DIRTY_RATE, true),
        hot: num(part, "hot", o.get("hot") ?? "0.1", 0.000001, 1, false),
        pattern: pattern as DirtyPatternName,
        fill: fill as DirtyFillName,
      },
    ];
  }
  if (name === "disk") {
    const o = parseOpts(part, body, ["rate"]);
    return [{ kind: "disk", rateKiB: num(part, "rate", o.get("rate") ?? "256", 1, MAX_DISK_KIB, true) }];
  }
  bad(
    `unknown workload '${name}': use idle, compile, web, dirty:rate=N,hot=F,pattern=uniform|zipf|seq,fill=record|zeros|half|random or disk:rate=KIB, joined with '+'`,
  );
}

export function parseWorkload(text: string): WorkloadSpec {
  if (typeof text !== "string" || text.trim() === "") bad("empty workload spec");
  if (text.length > 1024) bad("workload spec longer than 1024 characters");
  const parts = text.split("+").flatMap((p) => parsePart(p, 0));
  if (parts.length > 16) bad("at most 16 workload parts");
  return { text, parts };
}
