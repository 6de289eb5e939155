/**
 * The seeded nemesis run against a pair under a lease (test/node/lease-nemesis.test.ts
 * runs it in Remus mode, test/colo/colo-lease-nemesis.test.ts in COLO mode):
 * a kvd client under load, a drawn schedule of faults, and the checkers over
 * the whole history when the load is done.
 */
import assert from "node:assert/strict";
import { DEFAULT_KVLOAD, KvLoad, type KvLoadSummary } from "../../src/client/kvload.js";
import { type Cluster, type ClusterOptions, GUEST, netPair, SIM_LEASE } from "./cluster.js";
import { check, underLease, type Violation } from "./history.js";
import { Nemesis, type NemesisOptions } from "./nemesis.js";

/** Kills, pauses past the TTL, long partitions and link cuts, lease cuts, slow lease answers, clock jumps. */
export const UNDER_LEASE: NemesisOptions = {
  kinds: {
    kill: 1,
    pause: 2,
    partition: 1,
    "link-cut": 2,
    "lease-cut": 2,
    "lease-slow": 1,
    "clock-jump": 1,
    link: 1,
    lan: 1,
  },
  count: 6,
  startMs: 20,
  endMs: 1500,
  maxPauseMs: 600, // past the lease's TTL (200 ms)
  maxPartitionMs: 1500,
  maxCutMs: 1500,
  maxLinkDelayMs: 15,
  maxLinkDrop: 0.02,
  maxLinkDuplicate: 0.02,
  linkReorder: 0.3,
  maxPrimaryKills: 2,
  restartBackups: true,
  // The `remusd node` way: whatever ran before, a restarted node rejoins as backup.
  killedPrimary: "reprotect",
};

export interface LeaseNemesisRun {
  readonly cluster: Cluster;
  readonly nemesis: Nemesis;
  readonly summary: KvLoadSummary;
  /** COLO: the activations from a secondary's own running state (`node@generation`). */
  readonly coloRanAhead: ReadonlySet<string>;
}

/**
 * One seed: a pair under a lease (`cluster` adds to the options: the mode,
 * say), warmed up until the client is served, then the nemesis; asserts the
 * checkers (`check`, `underLease`, and `extra`, which may also set up
 * listeners before the run: it is called once the cluster exists and its
 * returned function after the load) and the client's verdict.
 */
export function runLeaseNemesis(
  seed: number,
  opts: NemesisOptions = UNDER_LEASE,
  cluster: ClusterOptions = {},
  extra?: (c: Cluster) => () => Violation[],
): LeaseNemesisRun {
  // 4 MiB of disk: kvd's append-only file must outlast a run's writes (a full disk answers MISCONF).
  const p = netPair(seed, { workload: "idle", domainMiB: 4, diskMiB: 4, lease: SIM_LEASE, ...cluster });
  const { world, client } = p;
  const finalCheck = extra?.(p.cluster);
  const coloRanAhead = cluster.mode === "colo" ? watchColoRanAhead(p.cluster) : undefined;
  const kv = new KvLoad(client.stack, { ...DEFAULT_KVLOAD, seed, targetIp: GUEST.ip }, world.now);
  const nemesis = new Nemesis(p.cluster, world.stream("nemesis"), opts);
  const warmup = world.every(1, () => kv.poll(world.now));
  world.run(() => kv.summary.replies > 0, 3000);
  warmup.cancel();
  assert.ok(kv.summary.replies > 0, `seed ${seed}: the client never got a reply`);
  const start = world.now;
  nemesis.arm();
  let finishing = false;
  world.every(1, () => {
    kv.poll(world.now);
    if (!finishing && world.now - start > opts.endMs + opts.maxPauseMs + 600) {
      finishing = true;
      kv.finish();
    }
  });
  world.run(() => kv.done, 20_000);
  const sum = kv.summary;
  const where = `seed ${seed}\n  ${nemesis.log.join("\n  ")}\n  ${JSON.stringify({ ...sum, errors: sum.errors.slice(0, 3) })}`;
  const store = p.cluster.leaseStore?.history ?? [];
  const violations = [
    ...check(p.cluster.history, coloRanAhead),
    ...underLease(p.cluster.history, store),
    ...(finalCheck?.() ?? []),
  ];
  assert.deepEqual(violations, [], where);
  assert.ok(kv.done, `${where}\n  the load did not finish (${kv.currentPhase})`);
  assert.equal(sum.lostWrites, 0, where);
  assert.equal(sum.wrongReads, 0, where);
  assert.equal(sum.resets, 0, where);
  assert.ok(sum.verifiedKeys > 0 && sum.ok, where);
  return { cluster: p.cluster, nemesis, summary: sum, coloRanAhead: coloRanAhead ?? new Set() };
}

/**
 * COLO: the activations (`node@generation`) of secondaries whose own guest
 * had started (it runs from each checkpoint it applies). They continue from that state
 * (no rollback), which no primary checkpointed: the digest checker exempts
 * them, and only them.
 */
export function watchColoRanAhead(c: Cluster): Set<string> {
  const out = new Set<string>();
  c.listeners.push((n, e) => {
    // Read at the event: the node still holds its secondary (promotion follows).
    if (e.type === "failover.activated" && n.node.coloSecondary?.started)
      out.add(`${n.name}@${e.generation}`);
  });
  return out;
}
