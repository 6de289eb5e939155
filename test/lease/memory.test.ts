/**
 * The in-memory lease service: linearizable grant/keep-alive/revoke and
 * compare-and-swap, expiry on the store's clock, watches, and its faults
 * (unavailable, slow, a node cut from it).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MemoryLeaseStore } from "../../src/lease/memory.js";
import type { Candidate, LeaderRecord } from "../../src/lease/record.js";
import type {
  Answer,
  CampaignResult,
  Grant,
  KeepAlive,
  LeaseService,
  Reply,
} from "../../src/lease/service.js";
import { VirtualTime } from "./vtime.js";

const cand = (n: string): Candidate => ({ nodeId: n, address: `ws://${n}:7780`, control: `${n}:7781` });

/** Calls `op` and runs virtual time until it answered; returns the answer (or undefined: none). */
function ask<T>(vt: VirtualTime, op: (r: Reply<T>) => void, ms = 100): Answer<T> | undefined {
  let a: Answer<T> | undefined;
  op((x) => {
    a = x;
  });
  vt.run(ms, () => a !== undefined);
  return a;
}

function value<T>(a: Answer<T> | undefined): T {
  assert.ok(a, "answered");
  assert.ok(a.ok, a.ok ? "" : a.error.message);
  return a.value;
}

function setup(latencyMs = 1): {
  vt: VirtualTime;
  store: MemoryLeaseStore;
  a: LeaseService;
  b: LeaseService;
} {
  const vt = new VirtualTime();
  const store = new MemoryLeaseStore(vt, { latencyMs });
  return { vt, store, a: store.client("a"), b: store.client("b") };
}

describe("memory lease service", () => {
  test("grant, campaign, refused contender, generations increase", () => {
    const { vt, store, a, b } = setup();
    const la = value(ask<Grant>(vt, (r) => a.grant(3000, r)));
    assert.equal(la.ttlMs, 3000);
    const won = value(ask<CampaignResult>(vt, (r) => a.campaign(la.leaseId, cand("a"), "t0", r)));
    assert.ok(won.won);
    assert.equal(won.record.generation, 1);
    const lb = value(ask<Grant>(vt, (r) => b.grant(3000, r)));
    const lost = value(ask<CampaignResult>(vt, (r) => b.campaign(lb.leaseId, cand("b"), "t1", r)));
    assert.deepEqual(lost, { won: false, holder: won.record });
    value(ask<void>(vt, (r) => a.revoke(la.leaseId, r)));
    assert.equal(value(ask<LeaderRecord | undefined>(vt, (r) => b.holder(r))), undefined);
    const second = value(ask<CampaignResult>(vt, (r) => b.campaign(lb.leaseId, cand("b"), "t2", r)));
    assert.ok(second.won);
    assert.equal(second.record.generation, 2);
    assert.deepEqual(
      store.history.map((h) => [h.kind, h.record?.nodeId]),
      [
        ["acquired", "a"],
        ["revoked", "a"],
        ["acquired", "b"],
      ],
    );
  });

  test("a lease expires TTL after its last keep-alive reached the store; its key goes with it", () => {
    const { vt, store, a, b } = setup(2);
    const la = value(ask<Grant>(vt, (r) => a.grant(1000, r)));
    value(ask<CampaignResult>(vt, (r) => a.campaign(la.leaseId, cand("a"), "t", r)));
    const seen: (string | undefined)[] = [];
    b.watchHolder((h) => seen.push(h?.nodeId));
    vt.run(500);
    const kaSent = vt.now();
    assert.equal(value(ask<KeepAlive>(vt, (r) => a.keepAlive(la.leaseId, r))).ttlMs, 1000);
    assert.equal(store.expiryOf(la.leaseId), kaSent + 2 + 1000, "refreshed when the request arrived");
    vt.run(kaSent + 1001 - vt.now());
    assert.ok(store.holder, "not before TTL after the keep-alive arrived");
    vt.run(10);
    assert.equal(store.holder, undefined);
    assert.deepEqual(seen, [undefined]);
    assert.equal(store.history.at(-1)?.kind, "expired");
    assert.deepEqual(value(ask<KeepAlive>(vt, (r) => a.keepAlive(la.leaseId, r))), { ttlMs: 0 });
    const c = ask<CampaignResult>(vt, (r) => a.campaign(la.leaseId, cand("a"), "t", r));
    assert.ok(c && !c.ok && c.error.kind === "lease-not-found");
  });

  test("faults: unavailable answers without applying; slow delays; a cut node hears nothing", () => {
    const { vt, store, a, b } = setup(1);
    store.setUnavailable(true);
    const u = ask<Grant>(vt, (r) => a.grant(1000, r));
    assert.ok(u && !u.ok && u.error.kind === "unavailable");
    store.setUnavailable(false);
    store.setSlow(40);
    const t0 = vt.now();
    value(ask<Grant>(vt, (r) => a.grant(1000, r)));
    assert.equal(vt.now() - t0, 42, "1 ms there, 1 + 40 ms back");
    store.setSlow(0);
    store.setSlow(100, "b");
    const t1 = vt.now();
    value(ask<Grant>(vt, (r) => a.grant(1000, r)));
    assert.equal(vt.now() - t1, 2, "only b's answers are slow");
    value(ask<Grant>(vt, (r) => b.grant(1000, r), 500));
    assert.equal(vt.now() - t1, 2 + 102);
    store.setSlow(0, "b");
    store.cut("b");
    assert.equal(
      ask<Grant>(vt, (r) => b.grant(1000, r), 5000),
      undefined,
    );
    assert.equal(store.currentGeneration, 0);
    store.heal("b");
    const lb = value(ask<Grant>(vt, (r) => b.grant(1000, r)));
    // Cut after the request left: it is applied, but the answer is lost.
    let answered = false;
    b.campaign(lb.leaseId, cand("b"), "t", () => {
      answered = true;
    });
    vt.run(1.5);
    store.cut("b");
    vt.run(100);
    assert.equal(answered, false);
    assert.equal(store.holder?.nodeId, "b");
  });

  test("a closed client answers 'closed' and its watches stop", () => {
    const { vt, a, b } = setup();
    const seen: unknown[] = [];
    b.watchHolder((h) => seen.push(h));
    b.close();
    const r = ask<Grant>(vt, (x) => b.grant(1000, x));
    assert.ok(r && !r.ok && r.error.kind === "closed");
    const la = value(ask<Grant>(vt, (x) => a.grant(1000, x)));
    value(ask<CampaignResult>(vt, (x) => a.campaign(la.leaseId, cand("a"), "t", x)));
    vt.run(10);
    assert.deepEqual(seen, []);
  });
});
