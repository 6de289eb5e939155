import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { viewFrame } from "../../src/colo/packet.js";
import { checksumAdjust16, rewriteU32, SeqRewriter } from "../../src/colo/rewriter.js";
import { refChecksum, refTcpChecksum } from "../net/ref.js";
import { CLIENT_IP, GUEST_IP, inb, out, TCP_FLAG, udp } from "./frames.js";

const { ACK, SYN, FIN, RST, PSH } = TCP_FLAG;

function rig() {
  const toGuest: Buffer[] = [];
  const toWire: Buffer[] = [];
  const r = new SeqRewriter({ toGuest: (f) => toGuest.push(f), toWire: (f) => toWire.push(f) });
  return { r, toGuest, toWire };
}

function tcpOf(f: Buffer) {
  const v = viewFrame(f);
  assert.equal(v.kind, "tcp");
  return v as Extract<ReturnType<typeof viewFrame>, { kind: "tcp" }>;
}

/** The TCP checksum of a frame verifies, by the independent reference computation. */
function checksumValid(f: Buffer): boolean {
  const v = tcpOf(f);
  const seg = Buffer.from(f.subarray(v.tcpOff, v.payloadOff + v.payloadLen));
  seg.writeUInt16BE(0, 16);
  return refTcpChecksum(v.src, v.dst, seg) === f.readUInt16BE(v.tcpOff + 16);
}

const CLIENT_ISN = 5000;

/** A handshake on the secondary: client SYN, the guest's SYN-ACK with `sIsn`, the client's ACK of `pIsn`. */
function handshake(r: SeqRewriter, sIsn: number, pIsn: number, ackFirst = false): void {
  r.inbound(inb(CLIENT_ISN, 0, SYN));
  if (ackFirst) r.inbound(inb(CLIENT_ISN + 1, pIsn + 1, ACK));
  r.outbound(out(sIsn, Buffer.alloc(0), SYN | ACK, CLIENT_ISN + 1));
  if (!ackFirst) r.inbound(inb(CLIENT_ISN + 1, pIsn + 1, ACK));
}

describe("sequence rewriter", () => {
  it("learns the offset at the handshake and renumbers both directions with valid checksums", () => {
    const { r, toGuest, toWire } = rig();
    handshake(r, 0x1000_0000, 0x2000_0000);
    assert.equal(toGuest.length, 2);
    assert.equal(tcpOf(toGuest[1]!).ack, 0x1000_0001, "the guest sees an ACK of its own ISN");
    assert.ok(checksumValid(toGuest[1]!));
    r.outbound(out(0x1000_0001, Buffer.from("+PONG\r\n"), ACK | PSH, CLIENT_ISN + 15));
    const o = tcpOf(toWire[1]!);
    assert.equal(o.seq, 0x2000_0001, "the client sees the primary's numbering");
    assert.equal(o.ack, CLIENT_ISN + 15, "ACK numbers of the guest are the client's own space");
    assert.ok(checksumValid(toWire[1]!));
    r.inbound(inb(CLIENT_ISN + 15, 0x2000_0008, ACK | PSH, Buffer.from("PING\r\n")));
    assert.equal(tcpOf(toGuest[2]!).ack, 0x1000_0008);
    assert.ok(checksumValid(toGuest[2]!));
    assert.deepEqual(
      r.entries().map((e) => [e.localIp, e.remoteIp, e.delta, e.learned]),
      [[GUEST_IP, CLIENT_IP, 0xf000_0000, true]],
    );
    assert.equal(r.stats.learned, 1);
  });

  it("holds the client's ACK until the guest's SYN-ACK went out (delivered early it would draw a reset)", () => {
    const { r, toGuest, toWire } = rig();
    handshake(r, 777, 99_999, true);
    assert.equal(r.stats.held, 1);
    assert.equal(toGuest.length, 2);
    assert.equal(tcpOf(toGuest[1]!).ack, 778);
    assert.equal(toWire.length, 1);
  });

  it("renumbers FIN and RST too, and retransmitted SYN-ACKs to the primary's ISN", () => {
    const { r, toWire } = rig();
    handshake(r, 10, 20);
    r.outbound(out(10, Buffer.alloc(0), SYN | ACK, CLIENT_ISN + 1));
    r.outbound(out(11, Buffer.alloc(0), FIN | ACK, CLIENT_ISN + 1));
    r.outbound(out(12, Buffer.alloc(0), RST, 0));
    assert.deepEqual(
      toWire.slice(1).map((f) => tcpOf(f).seq),
      [20, 21, 22],
    );
    assert.ok(toWire.every(checksumValid));
  });

  it("passes frames of unknown connections and non-TCP frames unchanged", () => {
    const { r, toGuest, toWire } = rig();
    const a = inb(1, 2, ACK, Buffer.from("x"));
    const b = out(3, Buffer.from("y"), ACK, 4);
    const u = udp(Buffer.from("dns"));
    r.inbound(Buffer.from(a));
    r.outbound(Buffer.from(b));
    r.outbound(Buffer.from(u));
    assert.deepEqual(toGuest, [a]);
    assert.deepEqual(toWire, [b, u]);
  });

  it("after a checkpoint every offset is 0 and held input is dropped", () => {
    const { r, toGuest } = rig();
    handshake(r, 10, 20);
    r.inbound(inb(CLIENT_ISN, 0, SYN)); // a second connection? same ports: a retransmitted SYN, ignored
    r.reset();
    assert.equal(r.size, 0);
    const f = inb(CLIENT_ISN + 1, 21, ACK);
    r.inbound(Buffer.from(f));
    assert.deepEqual(toGuest.at(-1), f);
    // A handshake whose ACK was held when the checkpoint came: the frame was part of the checkpointed input.
    const g = rig();
    g.r.inbound(inb(CLIENT_ISN, 0, SYN));
    g.r.inbound(inb(CLIENT_ISN + 1, 21, ACK));
    g.r.reset();
    assert.equal(g.r.stats.dropped, 1);
  });

  it("after failover keeps rewriting, learns delta 0 from a client that saw only the secondary, and refuses reset", () => {
    const { r, toGuest, toWire } = rig();
    handshake(r, 10, 20);
    r.failover();
    r.outbound(out(11, Buffer.from("a"), ACK, CLIENT_ISN + 1));
    assert.equal(tcpOf(toWire.at(-1)!).seq, 21);
    assert.throws(() => r.reset(), /after failover/);
    // A handshake completed on the secondary alone: the client acknowledges the secondary's own ISN.
    const port = { port: 41000 };
    r.inbound(inb(9, 0, SYN, undefined, port));
    r.outbound(out(300, Buffer.alloc(0), SYN | ACK, 10, port));
    r.inbound(inb(10, 301, ACK, undefined, port));
    assert.equal(tcpOf(toGuest.at(-1)!).ack, 301);
    assert.ok(r.entries().some((e) => e.remotePort === 41000 && e.learned && e.delta === 0));
  });

  it("carries the primary's edge deltas (COLO_START) into its edge at failover: a second failover keeps the clients' numbering", () => {
    // The primary took over earlier: its guest numbers connection 40000 0x500 above the client's view,
    // and 41000 (reopened on this secondary since COLO_START) is a new connection.
    const { r, toGuest, toWire } = rig();
    const edge = (port: number) => ({
      localIp: GUEST_IP,
      localPort: 6379,
      remoteIp: CLIENT_IP,
      remotePort: port,
      delta: 0x500,
    });
    r.carry([edge(40000), edge(41000), edge(42000)]);
    const p41 = { port: 41000 };
    r.inbound(inb(9, 0, SYN, undefined, p41));
    r.outbound(out(300, Buffer.alloc(0), SYN | ACK, 10, p41));
    r.inbound(inb(10, 201, ACK, undefined, p41));
    // A checkpoint zeroes this secondary's own offsets, never the carried ones.
    r.reset();
    // Before failover the carried deltas change nothing (this guest numbers as the primary's does).
    r.outbound(out(0x1000, Buffer.from("a"), ACK, CLIENT_ISN + 1));
    assert.equal(tcpOf(toWire.at(-1)!).seq, 0x1000);
    r.inbound(inb(CLIENT_ISN + 1, 0x1001, ACK));
    assert.equal(tcpOf(toGuest.at(-1)!).ack, 0x1001);
    r.failover();
    assert.equal(r.stats.carried, 2);
    const carried = r.carried().map((e) => [e.remotePort, e.delta]);
    assert.deepEqual(
      carried.sort((a, b) => (a[0] as number) - (b[0] as number)),
      [
        [40000, 0x500],
        [42000, 0x500],
      ],
    );
    // After failover they are this edge's: the clients keep the numbering they had.
    r.outbound(out(0x1001, Buffer.from("b"), ACK, CLIENT_ISN + 1));
    assert.equal(tcpOf(toWire.at(-1)!).seq, 0x1001 - 0x500);
    assert.ok(checksumValid(toWire.at(-1)!));
    r.inbound(inb(CLIENT_ISN + 1, 0x1002 - 0x500, ACK));
    assert.equal(tcpOf(toGuest.at(-1)!).ack, 0x1002);
    assert.ok(checksumValid(toGuest.at(-1)!));
    // 41000 was a new connection: the old one's carried delta went with it.
    r.outbound(out(301, Buffer.from("c"), ACK, 10, p41));
    assert.equal(tcpOf(toWire.at(-1)!).seq, 301);
  });

  it("round trip: any offset, any sequence numbers (wrapping), any payload; checksums verify independently", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 0xffff_ffff }),
        fc.nat({ max: 0xffff_ffff }),
        fc.array(
          fc.record({
            k: fc.nat({ max: 0x7fff_ffff }),
            payload: fc.uint8Array({ maxLength: 101 }).map((a) => Buffer.from(a)),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        (sIsn, pIsn, segs) => {
          const { r, toGuest, toWire } = rig();
          handshake(r, sIsn, pIsn);
          for (const { k, payload } of segs) {
            const seq = (sIsn + 1 + k) >>> 0;
            r.outbound(out(seq, payload, ACK | PSH, CLIENT_ISN + 1));
            const w = tcpOf(toWire.at(-1)!);
            assert.equal(w.seq, (pIsn + 1 + k) >>> 0);
            assert.ok(checksumValid(toWire.at(-1)!));
            // The client acknowledges in the primary's space; the guest gets its own back.
            r.inbound(inb(CLIENT_ISN + 1, (pIsn + 1 + k) >>> 0, ACK, payload));
            assert.equal(tcpOf(toGuest.at(-1)!).ack, seq);
            assert.ok(checksumValid(toGuest.at(-1)!));
          }
        },
      ),
      { numRuns: 300, seed: 21 },
    );
  });

  it("RFC 1624 incremental update equals a full recomputation", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 64 }).map((a) => Buffer.from(a)),
        fc.nat({ max: 0xffff_ffff }),
        (data, value) => {
          const b = Buffer.concat([Buffer.alloc(2), data]);
          b.writeUInt16BE(refChecksum(b), 0);
          rewriteU32(b, 2, value, 0);
          assert.equal(b.readUInt32BE(2), value);
          const again = Buffer.from(b);
          again.writeUInt16BE(0, 0);
          // Both 0x0000 and 0xffff represent zero in one's complement; a verifying sum is what matters.
          assert.equal(refChecksum(b), 0);
          assert.ok(refChecksum(again) === b.readUInt16BE(0) || b.readUInt16BE(0) === 0xffff);
        },
      ),
      { numRuns: 1000, seed: 22 },
    );
    assert.equal(checksumAdjust16(0x1234, 0x0000, 0x0000), 0x1234);
  });

  it("bounds held frames and the table", () => {
    const toGuest: Buffer[] = [];
    const r = new SeqRewriter(
      { toGuest: (f) => toGuest.push(f), toWire: () => {} },
      { maxConnections: 2, maxHeldFrames: 2 },
    );
    r.inbound(inb(CLIENT_ISN, 0, SYN));
    for (let i = 0; i < 4; i++) r.inbound(inb(CLIENT_ISN + 1, 9, ACK));
    assert.equal(r.stats.held, 2);
    assert.equal(r.stats.dropped, 2);
    for (const port of [1, 2, 3]) r.outbound(out(100, Buffer.alloc(0), SYN, 0, { port }));
    assert.equal(r.size, 2);
  });
});
