/**
 * A seeded nemesis against a pair under a lease, serving kvd to a client
 * under load, in the simulated world (test/sim/lease-nemesis.ts): kills,
 * pauses, partitions of either node (long ones too, and link cuts with both
 * nodes alive and the client reaching both), cuts from the lease service,
 * slow lease answers and clock jumps, all at once. Every run ends with the
 * checkers over the whole history: never two nodes releasing output, every
 * release under the lease by the service's own history, nothing acknowledged
 * lost, digests equal at every activation; and the client model's verdict.
 *
 * REMUSD_LEASE_NEMESIS_SEEDS sets the number of seeds (default 20, about 15 s of one core).
 */
import { test } from "node:test";
import { runLeaseNemesis, UNDER_LEASE } from "../sim/lease-nemesis.js";

const SEEDS = Number(process.env.REMUSD_LEASE_NEMESIS_SEEDS ?? 20);

test(`under a lease, a seeded nemesis of kills, pauses, long partitions and link cuts, lease cuts, slow lease answers and clock jumps, over ${SEEDS} seeds: never two releasers, nothing lost`, () => {
  for (let seed = 1; seed <= SEEDS; seed++) runLeaseNemesis(seed);
});

test("under a lease, the long link cut with both nodes alive and the client reaching both: one releaser, nothing lost", () => {
  runLeaseNemesis(7, {
    ...UNDER_LEASE,
    kinds: { "link-cut": 1 },
    count: 1,
    startMs: 50,
    endMs: 51,
    maxCutMs: 3000,
  });
});
