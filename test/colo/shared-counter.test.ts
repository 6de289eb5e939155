/**
 * `remusd client --shared-counter` (KvLoad's `sharedCounter`): every
 * connection INCRs one key. Its checker, against a scripted server that is
 * honest or breaks one rule (a value given twice, a connection's values going
 * back, a final read-back below the acknowledged, a skipped value with no
 * reset); and the traffic on a simulated COLO pair, where it is what makes
 * the interleaving of connections a source of divergence (kvd's own keys
 * make none: colo-sim.test.ts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KvLoad } from "../../src/client/kvload.js";
import { RespParser, type RespValue } from "../../src/client/resp.js";
import type { NetStack } from "../../src/net/stack.js";
import { ColoPair, GUEST, runKv } from "./colopair.js";

type Fault = "none" | "duplicate" | "backwards" | "lost" | "skip";

/**
 * The part of NetStack KvLoad uses, in memory: connections are established
 * at once and a RESP server answers INCR and GET on one counter, breaking
 * the rule `fault` names once the counter reaches 20.
 */
function scriptedServer(fault: Fault) {
  let counter = 0;
  const last: number[] = [];
  const conns: { req: RespParser; out: Buffer[] }[] = [];
  const reply = (s: number, v: RespValue & { t: "int" | "bulk" }) => {
    const out = conns[s]?.out as Buffer[];
    out.push(Buffer.from(v.t === "int" ? `:${v.v}\r\n` : `$${String(v.v).length}\r\n${v.v}\r\n`));
  };
  const stack = {
    connect: () => conns.push({ req: new RespParser(), out: [] }) - 1,
    state: () => "ESTABLISHED",
    eof: () => false,
    error: () => "none",
    close: () => {},
    abort: () => {},
    send: (s: number, data: Uint8Array) => {
      const c = conns[s];
      if (!c) return 0;
      c.req.push(data);
      for (let v = c.req.next(); v; v = c.req.next()) {
        const args = (v.v as RespValue[]).map((a) => String(a.v));
        if (args[0] === "GET") {
          reply(s, { t: "bulk", v: Buffer.from(String(fault === "lost" ? counter - 1 : counter)) });
          continue;
        }
        counter++;
        if (fault === "skip" && counter === 20) counter++;
        let n = counter;
        if (fault === "duplicate" && counter === 20) n = 19;
        if (fault === "backwards" && counter === 20) n = (last[s] ?? 1) - 1;
        last[s] = n;
        reply(s, { t: "int", v: n });
      }
      return data.length;
    },
    recv: (s: number) => {
      const out = conns[s]?.out ?? [];
      return out.length ? Buffer.concat(out.splice(0)) : null;
    },
  };
  return stack as unknown as NetStack;
}

function runScripted(fault: Fault) {
  const load = new KvLoad(
    scriptedServer(fault),
    {
      connections: 4,
      seed: 7,
      targetIp: GUEST.ip,
      port: 6379,
      keysPerConnection: 1,
      pipeline: 2,
      maxRequestsPerConnection: 25,
      sharedCounter: true,
    },
    0,
  );
  for (let now = 0; now < 1000 && !load.done; now++) load.poll(now);
  assert.ok(load.done, `${fault}: the load did not finish (${load.currentPhase})`);
  return load.summary;
}

describe("remusd client --shared-counter", () => {
  it("an honest server: 100 INCRs on one key, the read-back verified", () => {
    const s = runScripted("none");
    assert.equal(s.replies, 101);
    assert.equal(s.verifiedKeys, 1);
    assert.ok(s.ok, s.errors.join("; "));
  });

  for (const [fault, field] of [
    ["duplicate", "wrongReads"],
    ["backwards", "wrongReads"],
    ["skip", "wrongReads"],
    ["lost", "lostWrites"],
  ] as const) {
    it(`a server whose counter breaks (${fault}) is caught`, () => {
      const s = runScripted(fault);
      assert.equal(s.ok, false);
      assert.ok(s[field] >= 1, `${fault}: ${JSON.stringify(s)}`);
    });
  }

  it("on a simulated COLO pair: 8 connections on one counter diverge (mismatch checkpoints), clients see a consistent counter", () => {
    const pair = new ColoPair({ seed: 5, workload: "idle" });
    const { summary } = runKv(pair, 1500, undefined, { sharedCounter: true });
    assert.ok(summary.ok, summary.errors.join("; "));
    assert.ok(summary.replies > 200 && summary.verifiedKeys === 1, JSON.stringify(summary));
    assert.ok((pair.a.node.primary?.coloCheckpoints.get(1) ?? 0) > 0, "no checkpoint on a mismatch");
    assert.deepEqual(pair.digests().differ, []);
  });
});
