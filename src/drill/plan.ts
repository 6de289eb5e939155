/**
 * What a drill does: the kinds of failover it can rehearse, and the schedule
 * of them (a list, cycled, or a seeded mix). Pure: no I/O.
 */
import { usageError } from "../errors.js";
import { mulberry32 } from "../prng.js";

/**
 * The kinds of failover:
 *  - sigkill: the drill SIGKILLs the primary's process (it must run on this host);
 *  - crash: the primary SIGKILLs itself (POST /v1/faults/crash);
 *  - stall: the primary's event loop is blocked (POST /v1/faults/stall) for longer than the heartbeat timeout;
 *  - link-cut: the primary's replication link is torn down and kept down (POST /v1/faults/link-cut);
 *  - switchover: a planned switchover (POST /v1/failover {"planned": true} on the backup);
 *  - manual: an unplanned activation of the backup while the primary lives (POST /v1/failover on the backup).
 * crash, stall and link-cut need daemons started with --allow-fault-injection.
 */
export const DRILL_FAULTS = ["sigkill", "crash", "stall", "link-cut", "switchover", "manual"] as const;
export type DrillFault = (typeof DRILL_FAULTS)[number];

/** The faults injected through the daemon's fault routes. */
export const INJECTED: ReadonlySet<DrillFault> = new Set<DrillFault>(["crash", "stall", "link-cut"]);

const isFault = (s: string): s is DrillFault => (DRILL_FAULTS as readonly string[]).includes(s);

function parseList(text: string, what: string): DrillFault[] {
  const kinds = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (kinds.length === 0) throw usageError(`${what}: name at least one fault (${DRILL_FAULTS.join(", ")})`);
  for (const k of kinds) {
    if (!isFault(k)) throw usageError(`${what}: unknown fault '${k}' (known: ${DRILL_FAULTS.join(", ")})`);
  }
  return kinds as DrillFault[];
}

/**
 * The schedule of `count` failovers from `spec`:
 *  - `A,B,C`: these kinds in this order, cycled;
 *  - `mix`: a seeded draw from every kind, each kind once before any repeats (shuffled rounds);
 *  - `mix:A,B`: the same, from these kinds only.
 */
export function planFaults(spec: string, count: number, seed: number): DrillFault[] {
  const what = "--faults";
  if (spec === "mix" || spec.startsWith("mix:")) {
    const pool = spec === "mix" ? [...DRILL_FAULTS] : [...new Set(parseList(spec.slice(4), what))];
    const rand = mulberry32(seed);
    const out: DrillFault[] = [];
    while (out.length < count) {
      const round = [...pool];
      // Fisher-Yates with the seeded PRNG: the same seed gives the same schedule.
      for (let i = round.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [round[i], round[j]] = [round[j] as DrillFault, round[i] as DrillFault];
      }
      out.push(...round);
    }
    return out.slice(0, count);
  }
  const list = parseList(spec, what);
  return Array.from({ length: count }, (_, i) => list[i % list.length] as DrillFault);
}
