/**
 * The lease driver (lease.ts) against the in-memory service in virtual time:
 * renewals, contenders refused while the holder renews, take-over after a
 * cut, a pause, a clock leap, a release, an unavailable or slow service; then
 * a seeded nemesis over all of them. The invariant, checked after every
 * event: at no instant do two nodes' leases allow output (each judged on its
 * own clock at the same instant).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { LeaseEvent } from "../../src/lease/core.js";
import { Lease } from "../../src/lease/lease.js";
import { MemoryLeaseStore } from "../../src/lease/memory.js";
import { leaseTiming } from "../../src/lease/spec.js";
import { mulberry32 } from "../../src/prng.js";
import { NodeClock, VirtualTime } from "./vtime.js";

const timing = leaseTiming(3, 300);

class SimNode {
  lease!: Lease;
  readonly events: { t: number; e: LeaseEvent }[] = [];
  readonly clock: NodeClock;
  alive = true;
  /** Campaign again after a loss (what a node that rejoins and later finds its peer gone does). */
  recampaign = true;

  constructor(
    readonly name: string,
    readonly vt: VirtualTime,
    readonly store: MemoryLeaseStore,
  ) {
    this.clock = new NodeClock(vt, name);
    this.boot();
  }

  boot(): void {
    this.alive = true;
    this.lease = new Lease({
      service: this.clock.wrap(this.store.client(this.name)),
      timing,
      clock: this.clock,
      candidate: { nodeId: this.name, address: `ws://${this.name}:7780`, control: `${this.name}:7781` },
      onEvent: (e) => {
        this.events.push({ t: this.vt.now(), e });
        if (e.event === "lease.lost" && this.recampaign)
          this.clock.after(100, () => this.alive && this.lease.campaign());
      },
    });
  }

  crash(): void {
    this.alive = false;
    this.lease.close();
  }

  acquired(): number[] {
    return this.events.filter((x) => x.e.event === "lease.acquired").map((x) => x.t);
  }
}

interface World {
  vt: VirtualTime;
  store: MemoryLeaseStore;
  nodes: SimNode[];
  violations: string[];
  /** Instants at which some node may release output. */
  heldTicks: number;
}

function world(names: string[], latencyMs: number | (() => number) = 1): World {
  const vt = new VirtualTime();
  const store = new MemoryLeaseStore(vt, { latencyMs });
  const nodes = names.map((n) => new SimNode(n, vt, store));
  const w: World = { vt, store, nodes, violations: [], heldTicks: 0 };
  vt.afterEach = () => {
    const releasing = nodes.filter((n) => n.lease.mayRelease(n.clock.now()));
    if (releasing.length > 0) w.heldTicks++;
    if (releasing.length > 1)
      w.violations.push(`t=${vt.now()}: ${releasing.map((n) => n.name).join(" and ")} may both release`);
  };
  return w;
}

const holder = (w: World): SimNode | undefined => w.nodes.find((n) => n.lease.state === "held");

function generationsIncrease(w: World): void {
  const gens = w.store.history.filter((h) => h.kind === "acquired").map((h) => h.record?.generation ?? 0);
  assert.deepEqual(
    gens,
    gens.map((_, i) => i + 1),
    "generations 1, 2, 3, ... in acquisition order",
  );
}

describe("lease driver on the in-memory service", () => {
  test("the holder keeps the lease across many TTLs; a contender is refused meanwhile", () => {
    const w = world(["a", "b"]);
    const [a, b] = w.nodes as [SimNode, SimNode];
    a.lease.campaign();
    w.vt.run(1000, () => a.lease.state === "held");
    assert.equal(a.lease.state, "held");
    assert.equal(a.lease.generation, 1);
    b.lease.campaign();
    const holderSeen: (string | undefined)[] = [];
    b.lease.follow((h) => holderSeen.push(h?.nodeId));
    w.vt.run(30_000);
    assert.equal(a.lease.state, "held");
    assert.ok(a.lease.mayRelease());
    assert.equal(b.lease.state, "none");
    assert.ok(b.lease.isCampaigning);
    assert.equal(b.lease.holder?.nodeId, "a");
    assert.deepEqual(holderSeen, ["a"]);
    assert.equal(w.store.history.length, 1);
    assert.deepEqual(w.violations, []);
  });

  test("a holder cut from the service loses output before the contender acquires", () => {
    const w = world(["a", "b"]);
    const [a, b] = w.nodes as [SimNode, SimNode];
    a.lease.campaign();
    w.vt.run(1000, () => a.lease.state === "held");
    b.lease.campaign();
    w.vt.run(5000);
    a.recampaign = false;
    w.store.cut("a");
    const lastDeadline = a.lease.deadline as number;
    w.vt.run(20_000, () => b.lease.state === "held");
    assert.equal(b.lease.state, "held");
    assert.equal(b.lease.generation, 2);
    const lost = a.events.find((x) => x.e.event === "lease.lost");
    assert.deepEqual(lost?.e, { event: "lease.lost", generation: 1, reason: "expired" });
    const bAcquired = b.acquired()[0] as number;
    assert.ok((lost?.t as number) < bAcquired, "a stopped before b started");
    assert.ok(bAcquired >= lastDeadline, "b acquired no earlier than a's deadline");
    assert.deepEqual(w.violations, []);
  });

  test("a paused holder wakes up without the lease; no answer revives it", () => {
    const w = world(["a", "b"]);
    const [a, b] = w.nodes as [SimNode, SimNode];
    a.recampaign = false;
    a.lease.campaign();
    w.vt.run(1000, () => a.lease.state === "held");
    b.lease.campaign();
    w.vt.run(2000);
    a.clock.pause(7000);
    w.vt.run(6500);
    assert.equal(b.lease.state, "held", "b took over while a was stopped");
    assert.equal(a.lease.state, "held", "a has not run yet: it does not know");
    assert.equal(a.lease.mayRelease(a.clock.now()), false, "but its first question at resume says no");
    w.vt.run(1000);
    assert.equal(a.lease.state, "lost");
    assert.deepEqual(w.violations, []);
    generationsIncrease(w);
  });

  test("a clock leap forward loses the lease at once; the contender still waits for the service's expiry", () => {
    const w = world(["a", "b"]);
    const [a, b] = w.nodes as [SimNode, SimNode];
    a.recampaign = false;
    a.lease.campaign();
    w.vt.run(1000, () => a.lease.state === "held");
    b.lease.campaign();
    w.vt.run(2000);
    a.clock.jump(60_000);
    assert.equal(a.lease.mayRelease(a.clock.now()), false);
    w.vt.run(20_000, () => b.lease.state === "held");
    assert.equal(a.lease.state, "lost");
    assert.equal(b.lease.state, "held");
    assert.deepEqual(w.violations, []);
  });

  test("a planned release hands over well before the TTL", () => {
    const w = world(["a", "b"]);
    const [a, b] = w.nodes as [SimNode, SimNode];
    a.lease.campaign();
    w.vt.run(1000, () => a.lease.state === "held");
    b.lease.campaign();
    w.vt.run(2000);
    const t0 = w.vt.now();
    let revoked = false;
    a.lease.release(() => {
      revoked = true;
    });
    assert.equal(a.lease.mayRelease(), false, "output stops before the service hears of it");
    w.vt.run(10_000, () => b.lease.state === "held");
    assert.ok(revoked);
    assert.equal(b.lease.generation, 2);
    assert.ok(w.vt.now() - t0 < timing.ttlMs, `took ${w.vt.now() - t0} ms`);
    assert.deepEqual(
      a.events.map((x) => x.e.event),
      ["lease.acquired", "lease.released"],
    );
    assert.deepEqual(w.violations, []);
  });

  test("stopCampaign abandons an acquisition in flight: a swap that still wins is revoked", () => {
    const w = world(["a"], 10);
    const [a] = w.nodes as [SimNode];
    a.lease.tryAcquire();
    assert.equal(a.lease.state, "acquiring");
    w.vt.run(25); // the grant was answered at 20; the swap reaches the store at 30
    a.lease.stopCampaign();
    assert.equal(a.lease.state, "none");
    w.vt.run(200);
    assert.equal(a.lease.state, "none");
    assert.deepEqual(
      w.store.history.map((h) => h.kind),
      ["acquired", "revoked"],
    );
    assert.equal(w.store.holder, undefined);
    assert.deepEqual(a.events, []);
  });

  test("an unavailable service: the holder loses the lease, nobody acquires until it is back", () => {
    const w = world(["a", "b"]);
    const [a, b] = w.nodes as [SimNode, SimNode];
    a.lease.campaign();
    w.vt.run(1000, () => a.lease.state === "held");
    b.lease.campaign();
    w.store.setUnavailable(true);
    w.vt.run(10_000);
    assert.equal(a.lease.state, "lost");
    assert.equal(holder(w), undefined);
    w.store.setUnavailable(false);
    w.vt.run(10_000, () => holder(w) !== undefined);
    assert.ok(holder(w));
    assert.deepEqual(w.violations, []);
    generationsIncrease(w);
  });

  test("answers slower than the request timeout but well within the TTL: the holder keeps the lease (a late keep-alive counts from when it was sent)", () => {
    const w = world(["a", "b"]);
    const [a, b] = w.nodes as [SimNode, SimNode];
    a.lease.campaign();
    w.vt.run(1000, () => a.lease.state === "held");
    b.lease.campaign();
    w.store.setSlow(1200);
    w.vt.run(15_000);
    assert.equal(holder(w), a);
    assert.equal(a.lease.state, "held");
    assert.deepEqual(w.violations, []);
  });

  test("answers slower than the TTL: nothing is held, nothing is unsafe", () => {
    const w = world(["a", "b"]);
    const [a, b] = w.nodes as [SimNode, SimNode];
    a.lease.campaign();
    w.vt.run(1000, () => a.lease.state === "held");
    b.lease.campaign();
    w.store.setSlow(3500);
    w.vt.run(15_000);
    assert.equal(holder(w), undefined);
    w.store.setSlow(0);
    w.vt.run(15_000, () => holder(w) !== undefined);
    assert.ok(holder(w));
    assert.deepEqual(w.violations, []);
  });

  test("a swap that won at the service but whose answer was lost: the candidate recognises its own bump of the counter and does not take it for another lineage", () => {
    const vt = new VirtualTime();
    const store = new MemoryLeaseStore(vt, { latencyMs: 1 });
    const clock = new NodeClock(vt, "a");
    const inner = clock.wrap(store.client("a"));
    let dropped = 0;
    const stale: number[] = [];
    const lease = new Lease({
      // The first campaign is applied by the service, but its answer never arrives.
      service: {
        ...inner,
        campaign: (id, c, since, r, from) =>
          inner.campaign(id, c, since, dropped++ === 0 ? () => {} : r, from),
      },
      timing,
      clock,
      candidate: { nodeId: "a", address: "ws://a:7780", control: "a:7781" },
      onEvent: () => {},
    });
    // A fresh boot: only from generation 0.
    lease.campaign(0, (current) => stale.push(current));
    vt.run(20_000, () => lease.state === "held");
    assert.ok(dropped >= 2, "the lost answer was followed by another attempt");
    assert.deepEqual(stale, [], "our own bump of the counter is not another lineage");
    assert.equal(lease.state, "held");
    assert.equal(lease.generation, 2, "generation 1 went to the abandoned attempt");
    // Another candidate's bump still makes an image stale.
    const other: number[] = [];
    const b = new Lease({
      service: new NodeClock(vt, "b").wrap(store.client("b")),
      timing,
      clock: new NodeClock(vt, "b"),
      candidate: { nodeId: "b", address: "ws://b:7780", control: "b:7781" },
      onEvent: () => {},
    });
    lease.release();
    vt.run(2000);
    b.campaign(0, (current) => other.push(current));
    vt.run(5000, () => other.length > 0);
    assert.deepEqual(other, [2]);
    assert.notEqual(b.state, "held");
  });

  test("seeded nemesis: cut, unavailable, slow, pause, clock leap, crash, release; never two releasers", () => {
    const seeds = Number(process.env.REMUSD_LEASE_SEEDS ?? 200);
    let acquisitions = 0;
    let heldTicks = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const rnd = mulberry32(seed);
      const w = world(["a", "b", "c"], () => 0.2 + rnd() * 3);
      const pick = (): SimNode => w.nodes[Math.floor(rnd() * w.nodes.length)] as SimNode;
      for (const n of w.nodes) n.lease.campaign();
      const faults: string[] = [];
      for (let t = 0; t < 40_000; ) {
        const step = 200 + rnd() * 3000;
        w.vt.run(step);
        t += step;
        const n = pick();
        const d = 100 + rnd() * 8000;
        const f = Math.floor(rnd() * 8);
        faults.push(`${Math.round(w.vt.now())}:${f}:${n.name}:${Math.round(d)}`);
        if (f === 0) {
          w.store.cut(n.name);
          w.vt.after(d, () => w.store.heal(n.name));
        } else if (f === 1) {
          w.store.setUnavailable(true);
          w.vt.after(d, () => w.store.setUnavailable(false));
        } else if (f === 2) {
          // Slow answers to one node (or, one time in four, to all).
          const who = rnd() < 0.25 ? undefined : n.name;
          w.store.setSlow(rnd() * 1500, who);
          w.vt.after(d, () => w.store.setSlow(0, who));
        } else if (f === 3) {
          n.clock.pause(d);
        } else if (f === 4) {
          n.clock.jump(d);
        } else if (f === 5 && n.alive) {
          n.crash();
          w.vt.after(d, () => {
            n.boot();
            n.lease.campaign();
          });
        } else if (f === 6 && n.alive && !n.clock.paused) {
          n.lease.release();
          n.clock.after(d, () => n.alive && n.lease.campaign());
        } else if (f === 7 && n.alive && !n.clock.paused) {
          n.lease.campaign();
        }
      }
      // Quiet: every fault healed, every node campaigning. Someone must hold the lease.
      for (const n of w.nodes) {
        w.store.heal(n.name);
        w.store.setSlow(0, n.name);
      }
      w.store.setUnavailable(false);
      w.store.setSlow(0);
      w.vt.run(10_000);
      for (const n of w.nodes) if (n.alive && n.lease.state !== "held") n.lease.campaign();
      w.vt.run(20_000, () => holder(w) !== undefined);
      const ctx = `seed ${seed}: ${faults.join(" ")}`;
      assert.deepEqual(w.violations, [], ctx);
      assert.ok(holder(w), `nobody holds the lease after the faults healed (${ctx})`);
      generationsIncrease(w);
      acquisitions += w.store.history.filter((h) => h.kind === "acquired").length;
      heldTicks += w.heldTicks;
    }
    // Not vacuous: the lease changed hands many times and was held most of the time.
    assert.ok(acquisitions > seeds * 2, `${acquisitions} acquisitions over ${seeds} seeds`);
    assert.ok(heldTicks > 0);
  });
});
