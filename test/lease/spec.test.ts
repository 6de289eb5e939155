/** `--lease` parsing, the lease timing's bounds, and the leader record codec. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isRemusError } from "../../src/errors.js";
import { decodeGeneration, decodeRecord, encodeRecord, MAX_RECORD_BYTES } from "../../src/lease/record.js";
import { formatLeaseSpec, leaseTiming, parseLeaseSpec } from "../../src/lease/spec.js";

const usage = (fn: () => unknown, re: RegExp): void =>
  assert.throws(fn, (e: unknown) => isRemusError(e, "REMUSD_ERR_BAD_USAGE") && re.test((e as Error).message));

describe("--lease", () => {
  test("none and etcd URLs", () => {
    assert.deepEqual(parseLeaseSpec("none"), { kind: "none" });
    assert.deepEqual(parseLeaseSpec("etcd://127.0.0.1:2379/remusd/demo"), {
      kind: "etcd",
      endpoints: [{ host: "127.0.0.1", port: 2379 }],
      prefix: "/remusd/demo",
    });
    const s = parseLeaseSpec("etcd://e1:2379,e2:2379,[::1]:2380/remusd/demo/");
    assert.deepEqual(s, {
      kind: "etcd",
      endpoints: [
        { host: "e1", port: 2379 },
        { host: "e2", port: 2379 },
        { host: "::1", port: 2380 },
      ],
      prefix: "/remusd/demo",
    });
    assert.equal(formatLeaseSpec(s), "etcd://e1:2379,e2:2379,[::1]:2380/remusd/demo");
  });

  test("bad values are usage errors that say what is wrong", () => {
    usage(() => parseLeaseSpec(""), /must be 'none' or etcd:\/\//);
    usage(() => parseLeaseSpec("http://e1:2379/x"), /must be 'none' or etcd:\/\//);
    usage(() => parseLeaseSpec("etcd:///x"), /no endpoint/);
    usage(() => parseLeaseSpec("etcd://e1:2379"), /PREFIX .* is missing/);
    usage(() => parseLeaseSpec("etcd://e1:2379/"), /PREFIX .* is missing/);
    usage(() => parseLeaseSpec("etcd://e1/x"), /HOST:PORT/);
    usage(() => parseLeaseSpec("etcd://e1:99999/x"), /above 65535/);
    usage(() => parseLeaseSpec("etcd://:2379/x"), /must name a host/);
    usage(() => parseLeaseSpec("etcd://e1:0/x"), /must name a host and a port other than 0/);
    usage(() => parseLeaseSpec("etcd://e1:2379/a b"), /PREFIX must be/);
    usage(() => parseLeaseSpec("etcd://e1:2379/a//b"), /PREFIX must be/);
    usage(() => parseLeaseSpec(`etcd://${Array(17).fill("e:1").join(",")}/x`), /at most 16 endpoints/);
  });

  test("timing: renew every third of the TTL, default margin a tenth (at least 100 ms), bounds", () => {
    assert.deepEqual(leaseTiming(5), {
      ttlMs: 5000,
      marginMs: 500,
      renewEveryMs: 1667,
      retryMs: 500,
      requestTimeoutMs: 1667,
    });
    assert.equal(leaseTiming(1).marginMs, 100);
    assert.equal(leaseTiming(2, 250).marginMs, 250);
    usage(() => leaseTiming(0), /--lease-ttl-s/);
    usage(() => leaseTiming(1.5), /--lease-ttl-s/);
    usage(() => leaseTiming(1, 600), /--lease-margin-ms: 600 ms leaves no time/);
  });
});

describe("leader record", () => {
  const r = {
    nodeId: "node-a",
    generation: 7,
    address: "ws://10.0.0.1:7780",
    control: "10.0.0.1:7781",
    since: "2025-01-01T00:00:00.000Z",
  };

  test("round trip", () => {
    assert.deepEqual(decodeRecord(encodeRecord(r)), r);
    assert.equal(decodeGeneration(undefined), 0);
    assert.equal(decodeGeneration(Buffer.from("41")), 41);
  });

  test("anything else is refused", () => {
    for (const bad of [
      "",
      "null",
      "[]",
      "{}",
      JSON.stringify({ ...r, generation: 0 }),
      JSON.stringify({ ...r, generation: 1.5 }),
      JSON.stringify({ ...r, generation: "7" }),
      JSON.stringify({ ...r, address: "" }),
      JSON.stringify({ ...r, nodeId: 3 }),
      JSON.stringify({ ...r, control: "x".repeat(600) }),
      "x".repeat(MAX_RECORD_BYTES + 1),
    ]) {
      assert.throws(() => decodeRecord(Buffer.from(bad)), { name: "RecordError" }, bad.slice(0, 40));
    }
    assert.throws(() => decodeGeneration(Buffer.from("-1")), { name: "RecordError" });
    assert.throws(() => decodeGeneration(Buffer.from("1e3")), { name: "RecordError" });
  });
});
