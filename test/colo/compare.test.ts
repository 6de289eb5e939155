import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type CheckpointReason, Comparator, type CompareConfig } from "../../src/colo/compare.js";
import { viewFrame } from "../../src/colo/packet.js";
import { arpReply, icmpEcho, out, TCP_FLAG, udp } from "./frames.js";

const { ACK, FIN, RST, SYN, PSH } = TCP_FLAG;

/** A comparator whose releases and checkpoint requests are recorded. */
function rig(config: Partial<CompareConfig> = {}, now = 0) {
  const released: Buffer[] = [];
  const checkpoints: CheckpointReason[] = [];
  const delays: number[] = [];
  const c = new Comparator(
    config,
    {
      release: (f) => released.push(f),
      checkpoint: (r) => checkpoints.push(r),
      observeReleaseDelay: (ms) => delays.push(ms),
    },
    now,
  );
  return { c, released, checkpoints, delays };
}

/** Cuts `stream` (starting at sequence number `isn`) into segments at the given cut points. */
function segments(isn: number, stream: Buffer, cuts: number[], ack = 1000): Buffer[] {
  const points = [...new Set(cuts.filter((x) => x > 0 && x < stream.length))].sort((a, b) => a - b);
  const out_: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, stream.length]) {
    out_.push(out(isn + prev, stream.subarray(prev, p), ACK | PSH, ack));
    prev = p;
  }
  return out_;
}

/** Feeds both sides' frames in an interleaving chosen by `order` (true: primary next). */
function interleave(c: Comparator, prim: Buffer[], sec: Buffer[], order: boolean[], t0 = 0): void {
  let i = 0;
  let j = 0;
  let k = 0;
  let t = t0;
  while (i < prim.length || j < sec.length) {
    const takePrimary =
      j >= sec.length || (i < prim.length && (order[k++ % Math.max(order.length, 1)] ?? true));
    if (takePrimary) c.primary(prim[i++]!, t);
    else c.secondary(sec[j++]!, t);
    t += 0.1;
  }
}

const streamArb = fc.record({
  isn: fc.nat({ max: 0xffff_ffff }),
  stream: fc.uint8Array({ minLength: 1, maxLength: 3000 }).map((a) => Buffer.from(a)),
  pcuts: fc.array(fc.nat({ max: 3000 }), { maxLength: 12 }),
  scuts: fc.array(fc.nat({ max: 3000 }), { maxLength: 12 }),
  order: fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
  retransmit: fc.array(fc.nat({ max: 20 }), { maxLength: 3 }),
});

describe("comparator: TCP byte streams", () => {
  it("same bytes under any segmentation and interleaving always match and release everything, in order", () => {
    fc.assert(
      fc.property(streamArb, ({ isn, stream, pcuts, scuts, order, retransmit }) => {
        const { c, released, checkpoints } = rig();
        const prim = segments(isn, stream, pcuts);
        const sec = segments(isn, stream, scuts);
        // Retransmissions of earlier segments on either side change nothing.
        for (const r of retransmit) {
          if (prim.length > 1)
            prim.splice(1 + (r % (prim.length - 1)), 0, Buffer.from(prim[r % prim.length]!));
          if (sec.length > 1) sec.splice(1 + (r % (sec.length - 1)), 0, Buffer.from(sec[r % sec.length]!));
        }
        interleave(c, prim, sec, order);
        assert.deepEqual(checkpoints, []);
        assert.equal(released.length, prim.length);
        for (let i = 0; i < prim.length; i++) assert.equal(released[i], prim[i]);
        assert.equal(c.held.primary, 0);
        assert.equal(c.held.secondary, 0);
        assert.equal(c.stats.compared.match, prim.length);
      }),
      { numRuns: 300, seed: 12 },
    );
  });

  it("any differing byte is a mismatch, and nothing covering it is released", () => {
    fc.assert(
      fc.property(
        streamArb,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        ({ isn, stream, pcuts, scuts, order }, at, flip) => {
          const { c, released, checkpoints } = rig();
          const pos = at % stream.length;
          const other = Buffer.from(stream);
          other[pos] = other[pos]! ^ flip;
          const prim = segments(isn, stream, pcuts);
          const sec = segments(isn, other, scuts);
          interleave(c, prim, sec, order);
          assert.deepEqual(checkpoints, ["mismatch"]);
          assert.equal(c.stats.compared.mismatch, 1);
          for (const f of released) {
            const v = viewFrame(f);
            assert.ok(v.kind === "tcp");
            assert.ok(((v.seq - isn) >>> 0) + v.payloadLen <= pos, "a released frame covers the difference");
          }
          // The frames still held come back from reset, in order, so that nothing the primary sent is lost.
          const rest = c.reset(100);
          assert.deepEqual([...released, ...rest], prim);
          assert.equal(c.pendingCheckpoint, undefined);
        },
      ),
      { numRuns: 300, seed: 13 },
    );
  });

  it("a stream of different length is caught at the FIN", () => {
    const { c, released, checkpoints } = rig();
    c.primary(out(100, Buffer.from("hello"), ACK | FIN), 0);
    c.secondary(out(100, Buffer.from("hello!"), ACK | FIN), 0);
    assert.deepEqual(checkpoints, ["mismatch"]);
    assert.equal(released.length, 0);
  });

  it("releases a FIN only when the secondary sent its FIN at the same sequence number", () => {
    const { c, released, checkpoints } = rig();
    c.primary(out(100, Buffer.from("bye"), ACK), 0);
    c.primary(out(103, Buffer.alloc(0), ACK | FIN), 0);
    c.secondary(out(100, Buffer.from("bye"), ACK), 1);
    assert.equal(released.length, 1);
    c.secondary(out(103, Buffer.alloc(0), ACK | FIN), 2);
    assert.equal(released.length, 2);
    // A retransmitted FIN is released again without waiting.
    c.primary(out(103, Buffer.alloc(0), ACK | FIN), 3);
    assert.equal(released.length, 3);
    assert.deepEqual(checkpoints, []);
    assert.equal(c.held.secondary, 0);
  });

  it("releases an RST only when the secondary reset the connection too", () => {
    const { c, released } = rig();
    c.primary(out(100, Buffer.alloc(0), RST | ACK), 0);
    assert.equal(released.length, 0);
    c.secondary(out(100, Buffer.alloc(0), RST | ACK), 1);
    assert.equal(released.length, 1);
    assert.equal(c.held.secondary, 0);
  });

  it("holds an ACK until the secondary acknowledged as far (the secondary must have the input)", () => {
    const { c, released } = rig();
    c.primary(out(500, Buffer.alloc(0), ACK, 2000), 0);
    c.secondary(out(500, Buffer.alloc(0), ACK, 1999), 1);
    assert.equal(released.length, 0, "the secondary has not received byte 1999");
    c.secondary(out(500, Buffer.alloc(0), ACK, 2001), 2);
    assert.equal(released.length, 1);
    // A pure ACK already covered (a window update) leaves at once; window and IP id differ freely.
    c.primary(out(500, Buffer.alloc(0), ACK, 2001, { window: 1234, ipId: 99 }), 3);
    assert.equal(released.length, 2);
    // Data whose bytes match but whose ACK runs ahead waits for the ACK.
    c.primary(out(500, Buffer.from("x"), ACK, 3000), 4);
    c.secondary(out(500, Buffer.from("x"), ACK, 2500), 5);
    assert.equal(released.length, 2);
    c.secondary(out(501, Buffer.alloc(0), ACK, 3000), 6);
    assert.equal(released.length, 3);
  });

  it("passes a SYN-ACK whose acknowledgement the secondary covers, whatever its sequence number", () => {
    const { c, released, checkpoints } = rig();
    c.primary(out(7000, Buffer.alloc(0), SYN | ACK, 43), 0);
    c.secondary(out(123456, Buffer.alloc(0), SYN | ACK, 43), 0.3);
    assert.equal(released.length, 1);
    assert.deepEqual(checkpoints, []);
  });

  it("keeps connections apart: a mismatch on one does not stop another", () => {
    const { c, released, checkpoints } = rig();
    c.primary(out(100, Buffer.from("aaaa"), ACK, 1000, { port: 1 }), 0);
    c.secondary(out(100, Buffer.from("aaab"), ACK, 1000, { port: 1 }), 0);
    c.primary(out(100, Buffer.from("cccc"), ACK, 1000, { port: 2 }), 0);
    c.secondary(out(100, Buffer.from("cccc"), ACK, 1000, { port: 2 }), 0);
    assert.deepEqual(checkpoints, ["mismatch"]);
    assert.equal(released.length, 1);
    assert.equal(
      viewFrame(released[0]!).kind === "tcp" && (viewFrame(released[0]!) as { dstPort: number }).dstPort,
      2,
    );
  });

  it("handles sequence numbers that wrap around 2^32", () => {
    const { c, released, checkpoints } = rig();
    const data = Buffer.from("0123456789abcdef");
    const isn = 0xffff_fff8;
    for (const f of segments(isn, data, [3, 8, 11])) c.primary(f, 0);
    for (const f of segments(isn, data, [5, 13])) c.secondary(f, 0);
    assert.deepEqual(checkpoints, []);
    assert.equal(released.length, 4);
  });
});

describe("comparator: datagrams and other frames", () => {
  it("UDP and ICMP match when only TTL, IP id and header checksum differ", () => {
    const { c, released, checkpoints } = rig();
    c.primary(udp(Buffer.from("answer"), { ttl: 64, id: 1 }), 0);
    c.secondary(udp(Buffer.from("answer"), { ttl: 63, id: 77 }), 0);
    c.primary(icmpEcho(5, 1, Buffer.from("ping"), { ttl: 64, ipId: 3 }), 0);
    c.secondary(icmpEcho(5, 1, Buffer.from("ping"), { ttl: 1, ipId: 300 }), 0);
    assert.deepEqual(checkpoints, []);
    assert.equal(released.length, 2);
  });

  it("a UDP payload byte, an ICMP sequence or an ARP field that differs is a mismatch", () => {
    for (const [p, s] of [
      [udp(Buffer.from("answer")), udp(Buffer.from("answes"))],
      [icmpEcho(5, 1, Buffer.from("ping")), icmpEcho(5, 2, Buffer.from("ping"))],
      [arpReply(), arpReply(Buffer.from([2, 0, 0, 0, 1, 1]))],
    ] as const) {
      const { c, released, checkpoints } = rig();
      c.secondary(s, 0);
      c.primary(p, 0);
      assert.deepEqual(checkpoints, ["mismatch"]);
      assert.equal(released.length, 0);
    }
  });

  it("pairs datagrams of one flow in order, and flows independently", () => {
    const { c, released, checkpoints } = rig();
    c.primary(udp(Buffer.from("one"), { sport: 1 }), 0);
    c.primary(udp(Buffer.from("two"), { sport: 1 }), 0);
    c.primary(udp(Buffer.from("x"), { sport: 2 }), 0);
    c.secondary(udp(Buffer.from("x"), { sport: 2 }), 0);
    c.secondary(udp(Buffer.from("one"), { sport: 1 }), 0);
    assert.equal(released.length, 2);
    c.secondary(udp(Buffer.from("two"), { sport: 1 }), 0);
    assert.equal(released.length, 3);
    c.primary(arpReply(), 0);
    c.secondary(arpReply(), 0);
    assert.equal(released.length, 4);
    assert.deepEqual(checkpoints, []);
  });
});

describe("comparator: checkpoints", () => {
  it("asks for a timeout checkpoint when a primary frame waits too long, checked at its interval", () => {
    const { c, checkpoints } = rig({ timeoutMs: 3000, checkIntervalMs: 1000, periodMs: 0 });
    c.primary(out(100, Buffer.from("late"), ACK), 0);
    c.poll(1000);
    c.poll(2000);
    c.poll(2999);
    assert.deepEqual(checkpoints, []);
    c.poll(3000);
    assert.deepEqual(checkpoints, ["timeout"]);
    assert.equal(c.stats.compared.timeout, 1);
    c.poll(4000);
    assert.deepEqual(checkpoints, ["timeout"], "asked once until reset");
    assert.equal(c.reset(4100).length, 1);
    c.poll(5100);
    assert.deepEqual(checkpoints, ["timeout"]);
  });

  it("output only the secondary produced times out too", () => {
    const { c, checkpoints } = rig({ timeoutMs: 500, checkIntervalMs: 100, periodMs: 0 });
    c.secondary(out(100, Buffer.from("only here"), ACK), 0);
    c.poll(400);
    assert.deepEqual(checkpoints, []);
    c.poll(500);
    assert.deepEqual(checkpoints, ["timeout"]);
    assert.equal(c.stats.compared.timeout, 0, "no primary frame was held");
  });

  it("asks for a periodic checkpoint", () => {
    const { c, checkpoints } = rig({ periodMs: 20_000 }, 1000);
    c.poll(20_999);
    assert.deepEqual(checkpoints, []);
    c.poll(21_000);
    assert.deepEqual(checkpoints, ["periodic"]);
  });

  it("drops beyond the queue bound, asks for a checkpoint, and hands back what it held in order", () => {
    const { c, checkpoints, released } = rig({ maxPackets: 8 });
    const frames: Buffer[] = [];
    for (let i = 0; i < 12; i++) frames.push(out(100 + i * 10, Buffer.alloc(10, i), ACK));
    for (const f of frames) c.primary(f, 0);
    assert.deepEqual(checkpoints, ["queue_full"]);
    assert.equal(c.stats.dropped.primary, 4);
    assert.equal(c.held.primary, 8);
    assert.equal(released.length, 0);
    assert.deepEqual(c.reset(1), frames.slice(0, 8));
    assert.equal(c.held.primary, 0);
    assert.equal(c.connections, 0);
  });

  it("bounds the secondary side too", () => {
    const { c, checkpoints } = rig({ maxPackets: 4 });
    for (let i = 0; i < 6; i++) c.secondary(out(100 + i * 10, Buffer.alloc(10, i), ACK), 0);
    assert.deepEqual(checkpoints, ["queue_full"]);
    assert.equal(c.held.secondary, 4);
    assert.equal(c.stats.dropped.secondary, 2);
  });

  it("bounds the connection table", () => {
    const { c, checkpoints } = rig({ maxConnections: 3 });
    for (let p = 1; p <= 4; p++) c.primary(out(100, Buffer.from("x"), ACK, 1000, { port: p }), 0);
    assert.deepEqual(checkpoints, ["queue_full"]);
    assert.equal(c.connections, 3);
  });

  it("measures the release delay of matched frames", () => {
    const { c, delays } = rig();
    c.primary(out(100, Buffer.from("abc"), ACK), 10);
    c.secondary(out(100, Buffer.from("abc"), ACK), 12.5);
    assert.deepEqual(delays, [2.5]);
  });
});
