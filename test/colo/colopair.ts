/**
 * A COLO pair in the simulated world (test/sim): production's `Node` in
 * `mode: "colo"` on both sides (the composition the daemon runs), the real
 * replication stream between them, the learning switch as the LAN and a kvd
 * client with its own TCP/IP stack. Divergence comes from what differs
 * between the hosts (the mirror link's latency puts each input at another
 * guest tick, the secondary resumes after each checkpoint later than the
 * primary, each replica's guest draws its own random numbers) and, when a
 * test asks, from an injected `DivergenceSwitch`.
 *
 * What the tests read: the comparator and rewriter through the nodes, the
 * replication frames through the network's observer (to kill a node at a
 * chosen step of the COLO protocol), and the digests each side reported for
 * each checkpoint (`checkpoint.sent` on the primary, `checkpoint.applied` on
 * the backup, both with `verify`).
 */
import { KvLoad, type KvLoadOptions, type KvLoadSummary } from "../../src/client/kvload.js";
import type { CompareConfig } from "../../src/colo/compare.js";
import type { DivergenceSwitch } from "../../src/domain/divergence.js";
import { fromBitmap } from "../../src/protocol/colo.js";
import type { RecordType } from "../../src/protocol/constants.js";
import { decodeFrame } from "../../src/protocol/frame.js";
import { type Cluster, GUEST, netPair, type SimClient, type SimNode } from "../sim/cluster.js";
import type { World } from "../sim/world.js";

export { GUEST };

export interface ColoPairOptions {
  seed: number;
  /** The guest's workload besides kvd (default web). */
  workload?: string;
  compare?: Partial<CompareConfig>;
  primaryDivergence?: DivergenceSwitch;
  secondaryDivergence?: DivergenceSwitch;
}

/** A protected COLO pair: `a` the primary, `b` the secondary, a client on the LAN. */
export class ColoPair {
  readonly world: World;
  readonly cluster: Cluster;
  readonly a: SimNode;
  readonly b: SimNode;
  readonly client: SimClient;
  /** Digests by epoch: what the primary sent and what the backup had after applying. */
  readonly sentDigest = new Map<number, string>();
  readonly appliedDigest = new Map<number, string>();
  /** NACKs seen (a digest mismatch after an apply would show here). */
  nacks = 0;
  /** Pages the secondary reported dirty in its COLO_DIRTY records, in all. */
  secondaryDirtyPages = 0;
  private readonly watchers: ((type: RecordType | undefined, from: string) => void)[] = [];

  constructor(readonly opts: ColoPairOptions) {
    const p = netPair(opts.seed, {
      mode: "colo",
      workload: opts.workload ?? "web",
      verify: true,
      ...(opts.compare ? { compare: opts.compare } : {}),
      divergence: (n) => (n === "a" ? opts.primaryDivergence : opts.secondaryDivergence),
    });
    this.world = p.world;
    this.cluster = p.cluster;
    this.a = p.a;
    this.b = p.b;
    this.client = p.client;
    this.cluster.listeners.push((_n, e) => {
      if (e.type === "checkpoint.sent" && e.digest) this.sentDigest.set(e.epoch, e.digest);
      if (e.type === "checkpoint.applied" && e.digest) this.appliedDigest.set(e.epoch, e.digest);
    });
    const geometry = { pages: this.a.domain.pages, diskBlocks: this.a.domain.disk.blocks };
    this.cluster.repl.observe((f, when) => {
      if (when !== "sent") return;
      if (f.type === "nack") this.nacks++;
      if (f.type === "coloDirty") {
        const r = decodeFrame(f.data, { session: null, seq: null, geometry });
        if (r.type === "coloDirty") this.secondaryDirtyPages += fromBitmap(r.pageBitmap).length;
      }
      for (const w of this.watchers) w(f.type, f.from);
    });
  }

  get now(): number {
    return this.world.now;
  }

  /** Calls `fn` for every replication frame sent. */
  watch(fn: (type: RecordType | undefined, from: string) => void): void {
    this.watchers.push(fn);
  }

  /** COLO checkpoints begun by the primary machine `node` runs, by wire reason code. */
  checkpoints(node: SimNode = this.a): number {
    let n = 0;
    for (const v of node.node.primary?.coloCheckpoints.values() ?? []) n += v;
    return n;
  }

  /** Epochs whose digest both sides reported, and those that differ. */
  digests(): { compared: number; differ: number[] } {
    let compared = 0;
    const differ: number[] = [];
    for (const [epoch, d] of this.appliedDigest) {
      const s = this.sentDigest.get(epoch);
      if (s === undefined) continue;
      compared++;
      if (s !== d) differ.push(epoch);
    }
    return { compared, differ };
  }
}

export interface KvRun {
  summary: KvLoadSummary;
  /** Replies received after `at` returned true (a kill), if it did. */
  repliesAfter: number;
  firedAt: number | undefined;
}

/**
 * Eight kvd connections (the real load generator and checker) for `loadMs`,
 * then a drain that reads back every acknowledged key. `at(now)` is asked
 * every millisecond until it returns true (it may kill a node). `options`
 * changes the load's options (e.g. `sharedCounter`).
 */
export function runKv(
  pair: ColoPair,
  loadMs: number,
  at?: (now: number) => boolean,
  options?: Partial<KvLoadOptions>,
): KvRun {
  const w = pair.world;
  const start = w.now;
  const load = new KvLoad(
    pair.client.stack,
    {
      connections: 8,
      seed: pair.opts.seed,
      targetIp: GUEST.ip,
      port: 6379,
      keysPerConnection: 16,
      pipeline: 2,
      ...options,
    },
    start,
  );
  let firedAt: number | undefined;
  let repliesAtFire = 0;
  const tick = w.every(1, () => {
    load.poll(w.now);
    if (w.now - start >= loadMs) load.finish();
    if (firedAt === undefined && at?.(w.now)) {
      firedAt = w.now;
      repliesAtFire = load.summary.replies;
    }
  });
  w.run(() => load.done, 30_000);
  tick.cancel();
  if (!load.done) throw new Error(`seed ${pair.opts.seed}: the load did not finish (${load.currentPhase})`);
  return {
    summary: load.summary,
    repliesAfter: firedAt === undefined ? 0 : load.summary.replies - repliesAtFire,
    firedAt,
  };
}
