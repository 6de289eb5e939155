/**
 * Faults of one link, as an API (Jepsen's nemesis, etcd's functional tester):
 * named operations with parameters instead of closures over raw bytes.
 *
 *   link.drop(0.02).delay(2, 3).duplicate(0.01).reorder()
 *   link.dropIf((f) => f.type === "checkpointEnd", 1)
 *   link.clear()
 *
 * A carrier (a replication connection, a LAN port, an Ethernet segment) asks
 * `fate` once per frame and delivers the copies at the times it returns.
 * Without `reorder`, a link keeps its frames in order (a TCP stream): a copy is
 * never delivered before one sent earlier. `cut`, `partition` and `heal` act on
 * connections and groups of nodes, so they live with the carriers.
 */
import type { Prng } from "../../src/prng.js";

/** A predicate over what the carrier knows about a frame, with how many more times it may match. */
interface Rule<F> {
  readonly match: (f: F) => boolean;
  left: number;
}

/** What becomes of one frame: when each copy arrives (none: lost), and whether its bytes are flipped. */
export interface Fate {
  readonly times: readonly number[];
  readonly corrupt: boolean;
}

export interface LinkDefaults {
  /** Base one-way delay, ms. */
  readonly delayMs: number;
  /** Extra delay drawn in [0, jitterMs). */
  readonly jitterMs: number;
  /** Delays in whole milliseconds (integer-time worlds), else continuous. */
  readonly wholeMs?: boolean;
  /** Frames may overtake each other (datagrams); else in order (a stream). */
  readonly reorder?: boolean;
}

export class LinkFaults<F = unknown> {
  private dropP = 0;
  private dupP = 0;
  private corruptP = 0;
  private delayMs: number;
  private jitterMs: number;
  private reorders: boolean;
  private dropRules: Rule<F>[] = [];
  private corruptRules: Rule<F>[] = [];
  private readonly out: { times: number[]; corrupt: boolean } = { times: [], corrupt: false };
  /** Frames this link lost, duplicated and corrupted. */
  dropped = 0;
  duplicated = 0;
  corrupted = 0;

  constructor(
    private readonly rng: Prng,
    private readonly defaults: LinkDefaults,
  ) {
    this.delayMs = defaults.delayMs;
    this.jitterMs = defaults.jitterMs;
    this.reorders = defaults.reorder ?? false;
  }

  /** Loses each frame with probability `p`. */
  drop(p: number): this {
    this.dropP = p;
    return this;
  }

  /** Loses the frames `match` selects (the next `times` of them). */
  dropIf(match: (f: F) => boolean, times = Number.POSITIVE_INFINITY): this {
    this.dropRules.push({ match, left: times });
    return this;
  }

  /** One-way delay of `ms` plus up to `jitterMs` more. */
  delay(ms: number, jitterMs = 0): this {
    this.delayMs = ms;
    this.jitterMs = jitterMs;
    return this;
  }

  /** Delivers each frame twice with probability `p`. */
  duplicate(p: number): this {
    this.dupP = p;
    return this;
  }

  /** Lets frames overtake each other (with jitter), or keeps them in order again (`false`). */
  reorder(on = true): this {
    this.reorders = on;
    return this;
  }

  /** Flips a byte of each frame with probability `p`. */
  corrupt(p: number): this {
    this.corruptP = p;
    return this;
  }

  /** Flips a byte of the frames `match` selects (the next `times` of them). */
  corruptIf(match: (f: F) => boolean, times = Number.POSITIVE_INFINITY): this {
    this.corruptRules.push({ match, left: times });
    return this;
  }

  /** Back to a clean link with the carrier's default delay. */
  clear(): this {
    this.dropP = this.dupP = this.corruptP = 0;
    this.delayMs = this.defaults.delayMs;
    this.jitterMs = this.defaults.jitterMs;
    this.reorders = this.defaults.reorder ?? false;
    this.dropRules = [];
    this.corruptRules = [];
    return this;
  }

  /**
   * The fate of a frame sent at `now`; `notBefore` is when the previous frame
   * on the same stream arrives (kept unless the link reorders). The answer is
   * valid until the next call (one object, reused: this runs for every frame).
   */
  fate(now: number, f: F, notBefore = Number.NEGATIVE_INFINITY): Fate {
    const out = this.out;
    const times = out.times;
    times.length = 0;
    out.corrupt = false;
    if (this.rng.float() < this.dropP || matches(this.dropRules, f)) {
      this.dropped++;
      return out;
    }
    const copies = this.rng.float() < this.dupP ? 2 : 1;
    if (copies > 1) this.duplicated++;
    for (let i = 0; i < copies; i++) {
      let extra = 0;
      if (this.jitterMs > 0) {
        extra = this.defaults.wholeMs ? this.rng.int(this.jitterMs) : this.rng.float() * this.jitterMs;
      }
      const base = this.defaults.wholeMs ? Math.max(1, this.delayMs) : this.delayMs;
      let at = now + base + extra;
      if (!this.reorders) at = Math.max(at, notBefore);
      times.push(at);
      notBefore = at;
    }
    out.corrupt = (this.corruptP > 0 && this.rng.float() < this.corruptP) || matches(this.corruptRules, f);
    if (out.corrupt) this.corrupted++;
    return out;
  }

  /** A copy of `data` with one byte flipped at a seeded position. */
  flip(data: Uint8Array): Buffer {
    const copy = Buffer.from(data);
    const pos = this.rng.int(copy.length);
    copy[pos] = (copy[pos] as number) ^ (1 + this.rng.int(255));
    return copy;
  }
}

function matches<F>(rules: Rule<F>[], f: F): boolean {
  if (rules.length === 0) return false;
  for (const r of rules) {
    if (r.left > 0 && r.match(f)) {
      r.left--;
      return true;
    }
  }
  return false;
}

/**
 * Partitions between named endpoints (nodes, clients): `partition(["a"], ["b", "c"])`
 * cuts every path between the groups until `heal()`. Endpoints in no group
 * reach everyone. Carriers ask `blocked` per frame and hear `onHeal` to
 * deliver what they held.
 */
export class Partitions {
  private groups: ReadonlySet<string>[] = [];
  private readonly healers: (() => void)[] = [];

  partition(...groups: readonly (readonly string[])[]): void {
    this.groups = groups.map((g) => new Set(g));
  }

  heal(): void {
    this.groups = [];
    for (const h of this.healers) h();
  }

  get active(): boolean {
    return this.groups.length > 0;
  }

  /** Whether `a` and `b` are on different sides now. */
  blocked(a: string, b: string): boolean {
    if (this.groups.length === 0) return false;
    const ga = this.groups.findIndex((g) => g.has(a));
    const gb = this.groups.findIndex((g) => g.has(b));
    return ga >= 0 && gb >= 0 && ga !== gb;
  }

  onHeal(fn: () => void): void {
    this.healers.push(fn);
  }
}
