import assert from "node:assert/strict";
import { test } from "node:test";
import { LearningSwitch } from "../../src/vswitch/switch.js";

function frame(dst: string, src: string, len = 60): Buffer {
  const b = Buffer.alloc(len);
  Buffer.from(dst.replace(/:/g, ""), "hex").copy(b, 0);
  Buffer.from(src.replace(/:/g, ""), "hex").copy(b, 6);
  b.writeUInt16BE(0x0800, 12);
  return b;
}

function setup() {
  const sw = new LearningSwitch({ agingMs: 1000 });
  const got: Record<string, Buffer[]> = { a: [], b: [], c: [] };
  for (const id of ["a", "b", "c"]) sw.addPort({ id, send: (f) => got[id]?.push(f) }, 0);
  return { sw, got };
}

const A = "02:00:00:00:00:0a";
const B = "02:00:00:00:00:0b";
const BCAST = "ff:ff:ff:ff:ff:ff";

test("unknown and broadcast destinations flood to every other port; learned ones go to their port", () => {
  const { sw, got } = setup();
  sw.input("a", frame(B, A), 1);
  assert.deepEqual([got.a?.length, got.b?.length, got.c?.length], [0, 1, 1]);
  sw.input("b", frame(A, B), 2); // A was learned on port a
  assert.deepEqual([got.a?.length, got.b?.length, got.c?.length], [1, 1, 1]);
  sw.input("a", frame(B, A), 3); // B learned on b: no more flooding
  assert.deepEqual([got.a?.length, got.b?.length, got.c?.length], [1, 2, 1]);
  sw.input("c", frame(BCAST, "02:00:00:00:00:0c"), 4);
  assert.deepEqual([got.a?.length, got.b?.length, got.c?.length], [2, 3, 1]);
  assert.equal(sw.forwarded, 2);
});

test("a MAC that moves (gratuitous ARP from the new primary) is re-learned at once", () => {
  const { sw, got } = setup();
  sw.input("a", frame(BCAST, A), 1);
  sw.input("b", frame(A, B), 2);
  assert.equal(got.a?.length, 1);
  // The guest's MAC now speaks from port c (the activated backup).
  sw.input("c", frame(BCAST, A), 3);
  sw.input("b", frame(A, B), 4);
  assert.equal(got.c?.length, 2, "the first broadcast, then the unicast to the moved MAC");
  assert.equal(got.a?.length, 2, "a only saw the broadcast");
});

test("entries age out and then flood again; silent ports expire", () => {
  const { sw, got } = setup();
  sw.input("a", frame(BCAST, A), 0);
  sw.input("b", frame(A, B), 10);
  assert.equal(got.c?.length, 1); // only the first broadcast
  sw.input("b", frame(A, B), 2000); // aged: flood
  assert.equal(got.c?.length, 2);
  const gone = sw.expire(100_000, 30_000);
  assert.deepEqual(gone.sort(), ["a", "b", "c"]);
  assert.equal(sw.table(100_000).length, 0);
});

test("malformed frames are dropped and counted, never forwarded", () => {
  const { sw, got } = setup();
  sw.input("a", Buffer.alloc(10), 1);
  sw.input("a", Buffer.alloc(2000), 1);
  sw.input("a", frame(B, "03:00:00:00:00:01"), 1); // multicast source
  assert.equal(sw.malformed, 3);
  assert.deepEqual([got.b?.length, got.c?.length], [0, 0]);
  assert.equal(sw.portStats().find((p) => p.id === "a")?.counters.dropped, 3);
});

test("a permanent port (a TAP device) never expires for silence; its learned MACs still age", () => {
  const sw = new LearningSwitch({ agingMs: 1000 });
  const got: Buffer[] = [];
  sw.addPort({ id: "tap:t0", permanent: true, send: (f) => got.push(f) }, 0);
  sw.addPort({ id: "udp", send: () => {} }, 0);
  sw.input("tap:t0", frame(BCAST, A), 0);
  assert.deepEqual(sw.expire(100_000, 30_000), ["udp"]);
  assert.ok(sw.hasPort("tap:t0"));
  assert.equal(sw.table(100_000).length, 0);
  sw.addPort({ id: "udp2", send: () => {} }, 100_000);
  sw.input("udp2", frame(BCAST, B), 100_001);
  assert.equal(got.length, 1, "the TAP port still receives floods");
});
