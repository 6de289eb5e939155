import assert from "node:assert/strict";
import { test } from "node:test";
import { Netbuf } from "../../src/replication/netbuf.js";

test("nothing of epoch N leaves before N is acknowledged, and release keeps order", () => {
  const out: string[] = [];
  const nb = new Netbuf({ maxPackets: 100, maxBytes: 1 << 20 }, (f) => out.push(f.toString()));
  nb.hold(Buffer.from("n1-a"), 1, 0);
  nb.hold(Buffer.from("n1-b"), 1, 1);
  nb.hold(Buffer.from("n2-a"), 2, 2);
  nb.hold(Buffer.from("n3-a"), 3, 3);
  assert.deepEqual(out, []);
  assert.equal(nb.release(0, 4), 0);
  assert.equal(nb.release(1, 5), 2);
  assert.deepEqual(out, ["n1-a", "n1-b"]);
  assert.equal(nb.release(2, 6), 1);
  assert.deepEqual(nb.heldEpochs(), [3]);
  assert.equal(nb.packets, 1);
  assert.equal(nb.byteCount, 4);
  assert.equal(nb.oldestAgeMs(10), 7);
  assert.equal(nb.releaseAll(11), 1);
  assert.deepEqual(out, ["n1-a", "n1-b", "n2-a", "n3-a"]);
});

test("the buffer is bounded by packets and bytes", () => {
  const nb = new Netbuf({ maxPackets: 2, maxBytes: 10 }, () => {});
  assert.ok(nb.hasRoom(6));
  nb.hold(Buffer.alloc(6), 1, 0);
  assert.ok(!nb.hasRoom(5));
  assert.ok(nb.hasRoom(4));
  nb.hold(Buffer.alloc(4), 1, 0);
  assert.ok(!nb.hasRoom(0), "packet limit");
  nb.release(1, 1);
  assert.ok(nb.hasRoom(10));
});

test("release delays are observed in seconds", () => {
  const seen: number[] = [];
  const nb = new Netbuf(
    { maxPackets: 10, maxBytes: 100 },
    () => {},
    (s) => seen.push(s),
  );
  nb.hold(Buffer.alloc(1), 5, 100);
  nb.release(5, 125);
  assert.deepEqual(seen, [0.025]);
});
