/**
 * The lease on a real three-member etcd cluster (test/helpers/etcd.ts):
 * acquire and renew, a contender refused while the holder renews and taking
 * over once it stops, generations from the shared counter, a planned
 * release, a race of contenders, a malformed leader key, a client cut from
 * etcd by a proxy, and the etcd leader SIGKILLed under a renewing holder.
 *
 * Safety is judged on this process's one monotonic clock: every node's
 * release window (from its lease.acquired to the end core.releasableUntil
 * reports) must be disjoint from every other's. Speed is never asserted;
 * the take-over times are printed as diagnostics.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Etcd3 } from "etcd3";
import type { LeaseEvent } from "../../src/lease/core.js";
import { EtcdLeaseService, leaseKeys } from "../../src/lease/etcd.js";
import { Lease } from "../../src/lease/lease.js";
import type { LeaderRecord } from "../../src/lease/record.js";
import type { Answer } from "../../src/lease/service.js";
import { type EtcdCluster, etcdSkip, startEtcdCluster, TcpProxy } from "../helpers/etcd.js";
import { waitFor } from "../helpers/procs.js";

interface Window {
  readonly node: string;
  readonly generation: number;
  readonly from: number;
  to: number;
}

/** The release windows of every lease a test made, on this process's clock. */
class Windows {
  readonly all: Window[] = [];

  track(node: string, lease: Lease): void {
    let open: Window | undefined;
    lease.on((e: LeaseEvent) => {
      if (e.event === "lease.acquired") {
        open = { node, generation: e.generation, from: performance.now(), to: Number.POSITIVE_INFINITY };
        this.all.push(open);
      } else if (open) {
        open.to = lease.core.releasableUntil;
        open = undefined;
      }
    });
  }

  /** No two windows of different nodes overlap (an open window counts as open until now). */
  assertDisjoint(): void {
    const ws = [...this.all].sort((a, b) => a.from - b.from);
    for (let i = 1; i < ws.length; i++) {
      const prev = ws[i - 1] as Window;
      const cur = ws[i] as Window;
      assert.ok(
        prev.to <= cur.from,
        `${prev.node} (generation ${prev.generation}) could release until ${prev.to.toFixed(1)} but ${cur.node} (generation ${cur.generation}) acquired at ${cur.from.toFixed(1)}`,
      );
    }
    const gens = ws.map((w) => w.generation);
    assert.deepEqual(
      gens,
      [...gens].sort((a, b) => a - b),
      "generations increase in acquisition order",
    );
    assert.equal(new Set(gens).size, gens.length, "generations are unique");
  }
}

const made: Lease[] = [];

function lease(url: string, prefix: string, node: string, ttlS: number, windows?: Windows): Lease {
  const spec = { kind: "etcd" as const, ...parseUrl(url), prefix };
  const timing = {
    ttlMs: ttlS * 1000,
    marginMs: Math.max(100, ttlS * 100),
    renewEveryMs: Math.round((ttlS * 1000) / 3),
    retryMs: Math.max(50, ttlS * 100),
    requestTimeoutMs: Math.round((ttlS * 1000) / 3),
  };
  const l = new Lease({
    service: new EtcdLeaseService(spec, { requestTimeoutMs: timing.requestTimeoutMs }),
    timing,
    candidate: { nodeId: node, address: `ws://${node}.test:7780`, control: `${node}.test:7781` },
  });
  windows?.track(node, l);
  made.push(l);
  return l;
}

function parseUrl(url: string): { endpoints: { host: string; port: number }[] } {
  const hosts = /^etcd:\/\/([^/]+)/.exec(url)?.[1] ?? "";
  return {
    endpoints: hosts
      .split(",")
      .map((h) => ({ host: h.split(":")[0] as string, port: Number(h.split(":")[1]) })),
  };
}

function read(l: Lease): Promise<Answer<LeaderRecord | undefined>> {
  return new Promise((resolve) => l.readHolder(resolve));
}

/** Waits (polling) until `cond`; `what` names it in the failure. */
async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  await waitFor(what, () => cond() || undefined, ms);
}

describe("lease on a real etcd cluster", { skip: etcdSkip() }, () => {
  let etcd: EtcdCluster;
  let url: string;

  before(async () => {
    etcd = await startEtcdCluster();
    url = etcd.leaseUrl("/unused");
  });

  after(async () => {
    for (const l of made) l.close();
    await etcd?.stop();
  });

  test("acquire, renew past several TTLs, the holder readable by others", async () => {
    const w = new Windows();
    const a = lease(url, "/t/renew", "a", 2, w);
    const b = lease(url, "/t/renew", "b", 2, w);
    a.campaign();
    await until("a to hold the lease", () => a.state === "held");
    assert.equal(a.generation, 1);
    const first = a.deadline as number;
    await until("three TTLs of renewals", () => (a.deadline as number) > first + 6000);
    assert.equal(a.state, "held");
    assert.ok(a.mayRelease());
    const h = await read(b);
    assert.ok(h.ok);
    assert.deepEqual(
      { ...h.value, since: "" },
      { nodeId: "a", generation: 1, address: "ws://a.test:7780", control: "a.test:7781", since: "" },
    );
    w.assertDisjoint();
  });

  test("a contender is refused while the holder renews, and takes over once it stops; generation + 1", async () => {
    const w = new Windows();
    const a = lease(url, "/t/takeover", "a", 2, w);
    const b = lease(url, "/t/takeover", "b", 2, w);
    a.campaign();
    await until("a to hold the lease", () => a.state === "held");
    b.campaign();
    const t0 = performance.now();
    await until("4 s of b campaigning", () => performance.now() - t0 > 4000);
    // Refused while a renews (a loaded machine may starve a's renewals: then
    // a lost the lease first, which the windows check judges).
    if (a.state === "held") {
      assert.equal(b.state, "none", "refused while a renews");
      assert.equal(b.holder?.nodeId, "a");
    }
    // a stops renewing (as a crashed node would): no revoke.
    const aHeld = a.state === "held";
    const aDeadline = a.deadline ?? Number.NEGATIVE_INFINITY;
    a.close();
    await until("b to take over", () => b.state === "held");
    const took = w.all.find((x) => x.node === "b")?.from as number;
    assert.ok(took >= aDeadline, "b acquired no earlier than a's deadline");
    assert.equal(b.generation, 2);
    if (aHeld)
      console.log(
        `# take-over ${(took - (aDeadline - 2000)).toFixed(0)} ms after a's last answered renewal was sent (TTL 2 s)`,
      );
    w.assertDisjoint();
  });

  test("a planned release hands the lease over without waiting for the TTL", async () => {
    const w = new Windows();
    const a = lease(url, "/t/release", "a", 5, w);
    const b = lease(url, "/t/release", "b", 5, w);
    a.campaign();
    await until("a to hold the lease", () => a.state === "held");
    b.campaign();
    await until("b to see a", () => b.holder?.nodeId === "a");
    const released = new Promise<void>((r) => a.release(r));
    assert.equal(a.mayRelease(), false, "output stops before etcd hears of it");
    await released;
    await until("b to take over", () => b.state === "held");
    assert.equal(b.generation, 2);
    w.assertDisjoint();
  });

  test("contenders racing for a free key: exactly one wins each round, generations unique", async () => {
    const w = new Windows();
    const nodes = ["p", "q", "r", "s"].map((n) => lease(url, "/t/race", n, 2, w));
    for (let round = 0; round < 3; round++) {
      for (const l of nodes) l.campaign();
      await until("one holder", () => nodes.some((l) => l.mayRelease()));
      const holders = nodes.filter((l) => l.mayRelease());
      assert.equal(holders.length, 1);
      const h = holders[0] as Lease;
      for (const l of nodes) if (l !== h) l.stopCampaign();
      await new Promise<void>((r) => h.release(r));
    }
    assert.ok(w.all.length >= 3, "an acquisition each round (more only if a starved holder lost its lease)");
    w.assertDisjoint();
  });

  test("a malformed leader key is refused, never taken over", async () => {
    const raw = new Etcd3({ hosts: etcd.members.map((m) => `http://${m.endpoint}`) });
    try {
      await raw.put(leaseKeys("/t/bad").leader).value("not json");
      const a = lease(url, "/t/bad", "a", 1);
      const h = await read(a);
      assert.ok(!h.ok && h.error.kind === "bad-record", "reading it is an error");
      const won = await new Promise<boolean>((r) => a.tryAcquire(r));
      assert.equal(won, false);
      assert.equal((await raw.get(leaseKeys("/t/bad").leader).string()) ?? "", "not json");
    } finally {
      raw.close();
    }
  });

  test("a holder cut from etcd stops output before the contender can acquire", async () => {
    const w = new Windows();
    const member = etcd.members[0];
    assert.ok(member);
    const proxy = await TcpProxy.start({ host: "127.0.0.1", port: member.clientPort });
    try {
      const a = lease(`etcd://${proxy.endpoint}/x`, "/t/cut", "a", 2, w);
      const b = lease(url, "/t/cut", "b", 2, w);
      a.campaign();
      await until("a to hold the lease", () => a.state === "held");
      b.campaign();
      await until("b to see a", () => b.holder?.nodeId === "a");
      proxy.cut();
      const cutAt = performance.now();
      await until("b to take over", () => b.state === "held");
      assert.equal(a.mayRelease(), false);
      await until("a to know it lost the lease", () => a.state === "lost");
      const aw = w.all.find((x) => x.node === "a") as Window;
      const bw = w.all.find((x) => x.node === "b") as Window;
      assert.ok(aw.to <= bw.from);
      console.log(
        `# cut: a stopped output ${(aw.to - cutAt).toFixed(0)} ms after the cut, b acquired ${(bw.from - cutAt).toFixed(0)} ms after it (TTL 2 s)`,
      );
      w.assertDisjoint();
    } finally {
      await proxy.close();
    }
  });
});

describe("lease when the etcd leader is killed", { skip: etcdSkip() }, () => {
  let etcd: EtcdCluster;

  before(async () => {
    etcd = await startEtcdCluster();
  });

  after(async () => {
    for (const l of made) l.close();
    await etcd?.stop();
  });

  test("a holder renewing against the surviving members keeps the lease, or stops output in time", async () => {
    const w = new Windows();
    const url = etcd.leaseUrl("/x");
    const a = lease(url, "/t/leader", "a", 5, w);
    const b = lease(url, "/t/leader", "b", 5, w);
    a.campaign();
    await until("a to hold the lease", () => a.state === "held");
    b.campaign();
    await until("b to see a", () => b.holder?.nodeId === "a");
    const leader = await etcd.leader();
    const killedAt = performance.now();
    await etcd.kill(leader);
    const next = await etcd.leader();
    assert.notEqual(next.name, leader.name);
    // A renewal sent after the kill was answered, or a lost the lease.
    await until(
      "a renewal after the kill (or the loss of the lease)",
      () => a.state !== "held" || (a.deadline as number) > killedAt + 5000,
    );
    if (a.state === "held") {
      assert.equal(b.state, "none");
      console.log(`# etcd leader ${leader.name} killed: a kept the lease (new leader ${next.name})`);
    } else {
      console.log(`# etcd leader ${leader.name} killed: a lost the lease (${a.state})`);
    }
    await until("a quiet second", () => performance.now() - killedAt > 6000);
    w.assertDisjoint();
  });
});
