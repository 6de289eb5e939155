/**
 * The lease core: the deadline counts from when a renewal was sent, output
 * stops at deadline − margin, a late answer or a clock leap never extends a
 * lease, and a property test over random send/answer schedules.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { LeaseCore, type LeaseEvent } from "../../src/lease/core.js";
import type { LeaderRecord } from "../../src/lease/record.js";
import { leaseTiming } from "../../src/lease/spec.js";

const timing = leaseTiming(3, 300); // ttl 3000, margin 300, renew every 1000, retry 300
const rec = (generation = 1): LeaderRecord => ({
  nodeId: "a",
  generation,
  address: "ws://127.0.0.1:7780",
  control: "127.0.0.1:7781",
  since: "2025-01-01T00:00:00.000Z",
});

function held(grantSentAt = 0, now = 50): { core: LeaseCore; events: LeaseEvent[] } {
  const events: LeaseEvent[] = [];
  const core = new LeaseCore(timing, (e) => events.push(e));
  core.beginAcquire(grantSentAt);
  assert.equal(core.state, "acquiring");
  assert.equal(core.acquired(now, grantSentAt, 3000, rec()), true);
  return { core, events };
}

describe("lease core", () => {
  test("acquired: the deadline counts from the grant's send time, output stops at deadline − margin", () => {
    const { core, events } = held(100, 900);
    assert.equal(core.state, "held");
    assert.equal(core.deadline, 3100);
    assert.deepEqual(events, [{ event: "lease.acquired", generation: 1, ttlMs: 3000, record: rec() }]);
    assert.equal(core.mayRelease(900), true);
    assert.equal(core.mayRelease(2799), true);
    assert.equal(core.mayRelease(2800), false);
    assert.equal(core.releasableUntil, 2800);
    core.poll(2950);
    assert.equal(core.state, "lost");
    assert.equal(
      core.releasableUntil,
      2800,
      "the window ended at deadline − margin, not when the loss was seen",
    );
    assert.deepEqual(events.at(-1), { event: "lease.lost", generation: 1, reason: "expired" });
  });

  test("a renewal extends the deadline to its send time + TTL, not its answer time", () => {
    const { core } = held(0, 10);
    assert.equal(core.renewalDueAt(), 1000);
    const sent = core.renewalSent(1000);
    assert.equal(sent, 1000);
    assert.equal(core.renewalDueAt(), Number.POSITIVE_INFINITY, "one keep-alive in flight at a time");
    core.renewed(2500, 1000, 3000);
    assert.equal(core.deadline, 4000);
    assert.equal(core.renewalDueAt(), 2000);
  });

  test("an answer that arrives after the margin passed does not revive the lease", () => {
    const { core, events } = held(0, 10);
    const sent = core.renewalSent(1000) as number;
    core.renewed(2700, sent, 3000);
    assert.equal(core.state, "lost");
    assert.equal(core.mayRelease(2701), false);
    assert.equal((events.at(-1) as { reason: string }).reason, "expired");
  });

  test("a clock leap (paused process) loses the lease at once; nothing sent after it extends it", () => {
    const { core, events } = held(0, 10);
    // The process was stopped at 500 and runs again at 9000: its first question is mayRelease.
    assert.equal(core.mayRelease(9000), false);
    assert.equal(core.renewalSent(9000), undefined, "no renewal goes out for a lapsed lease");
    assert.equal(core.state, "lost");
    core.renewed(9001, 9000, 3000);
    assert.equal(core.state, "lost");
    assert.equal(core.mayRelease(9002), false);
    assert.equal(events.filter((e) => e.event === "lease.lost").length, 1);
  });

  test("time never runs backwards for the core", () => {
    const { core } = held(0, 10);
    assert.equal(core.mayRelease(2900), false);
    assert.equal(core.mayRelease(100), false, "an earlier now counts as the latest seen");
  });

  test("the service refusing a renewal (TTL 0) loses the lease", () => {
    const { core, events } = held(0, 10);
    const sent = core.renewalSent(1000) as number;
    core.renewed(1010, sent, 0);
    assert.equal(core.state, "lost");
    assert.deepEqual(events.at(-1), { event: "lease.lost", generation: 1, reason: "refused" });
  });

  test("a failed renewal is retried after retryMs, the lease keeps its deadline", () => {
    const { core } = held(0, 10);
    const sent = core.renewalSent(1000) as number;
    core.renewalFailed(1050, sent);
    assert.equal(core.state, "held");
    assert.equal(core.deadline, 3000);
    assert.equal(core.renewalDueAt(), 1350);
    assert.equal(core.nextWake(), 1350);
  });

  test("an acquisition that took longer than the lease is not held", () => {
    const events: LeaseEvent[] = [];
    const core = new LeaseCore(timing, (e) => events.push(e));
    core.beginAcquire(0);
    assert.equal(core.acquired(2700, 0, 3000, rec()), false);
    assert.equal(core.state, "none");
    assert.deepEqual(events, []);
    assert.throws(() => {
      core.beginAcquire(2800);
      core.beginAcquire(2800);
    }, /while acquiring/);
  });

  test("release: output stops at once, lease.released", () => {
    const { core, events } = held(0, 10);
    core.release(20);
    assert.equal(core.state, "none");
    assert.equal(core.releasableUntil, 20);
    assert.equal(core.mayRelease(21), false);
    assert.deepEqual(events.at(-1), { event: "lease.released", generation: 1 });
  });

  test("property: mayRelease(t) only while t < (latest answered send time) + TTL − margin", () => {
    // Steps: advance the clock, send a keep-alive, answer one in flight (or lose it).
    const step = fc.oneof(
      fc.record({ k: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 2500 }) }),
      fc.record({ k: fc.constant("send" as const) }),
      fc.record({ k: fc.constant("answer" as const), ttl: fc.constantFrom(0, 3000, 3000, 3000) }),
      fc.record({ k: fc.constant("fail" as const) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), fc.integer({ min: 0, max: 2000 }), (steps, ackAt) => {
        let now = 0;
        const core = new LeaseCore(timing);
        core.beginAcquire(0);
        if (!core.acquired(ackAt, 0, 3000, rec())) return;
        now = ackAt;
        let best = 0; // the latest send time the service answered with a positive TTL
        let pending: number | undefined;
        let lost = false;
        for (const s of steps) {
          if (s.k === "advance") now += s.ms;
          else if (s.k === "send") {
            if (pending === undefined) pending = core.renewalSent(now);
          } else if (pending !== undefined) {
            if (s.k === "answer") {
              core.renewed(now, pending, s.ttl);
              if (s.ttl > 0 && now < best + 3000 - 300) best = Math.max(best, pending);
            } else core.renewalFailed(now, pending);
            pending = undefined;
          }
          if (core.state === "lost") lost = true;
          if (core.mayRelease(now)) {
            assert.ok(!lost, "held again after lost");
            assert.ok(now < best + 3000 - 300, `mayRelease at ${now} with best send ${best}`);
          }
        }
      }),
      { numRuns: 2000, seed: 42 },
    );
  });
});
