/**
 * The stack at the frame level, driven by hand: the exact bytes it sends
 * (checked against packets computed by an independent implementation),
 * what it does with malformed input, and API misuse.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isRemusError } from "../../src/errors.js";
import {
  ARP_OP,
  BROADCAST_MAC,
  decodeIcmpEcho,
  decodeIpv4,
  encodeIcmpEcho,
  encodeIpv4,
  IP_FLAG,
  parseIpv4,
  parseMac,
  TCP_FLAG,
  ZERO_MAC,
} from "../../src/net/wire.js";
import { arpFrame, Bench, parseTcp, tcpFrame } from "./frames.js";
import { hex, LINUX_ARP_REQUEST, LINUX_SYN, refChecksum, refTcpChecksum } from "./ref.js";

const MAC_A = parseMac("02:00:00:00:00:01");
const MAC_B = parseMac("02:00:00:00:00:02");
const IP_A = parseIpv4("10.0.0.1");
const IP_B = parseIpv4("10.0.0.2");

// Computed with a separate Python implementation of RFC 791/9293 (not with this code base).
const GOLDEN_ARP_REQUEST = hex(
  "ffffffffffff 020000000001 0806 0001 0800 0604 0001 020000000001 0a000001 000000000000 0a000002",
);
const GOLDEN_SYN = hex(
  "020000000002 020000000001 0800 4500 0030 1234 4000 4006 1492 0a000001 0a000002" +
    "c000 0050 01020304 00000000 7002 ffff abc5 0000 020405b4 01030301",
);
const GOLDEN_ACK = hex(
  "020000000002 020000000001 0800 4500 0028 1235 4000 4006 1499 0a000001 0a000002" +
    "c000 0050 01020305 a0b0c0d1 5010 8000 f5f7 0000",
);
const GOLDEN_RST = hex(
  "020000000002 020000000001 0800 4500 0028 1236 4000 4006 1498 0a000001 0a000002" +
    "0051 9999 00000000 11111112 5014 0000 dfc0 0000",
);

/** A bench for host A whose first random number seeds the IP id (0x1234) and the second is the ISS. */
function benchA(randoms = [0xabcd1234, 0x01020304]): Bench {
  return new Bench({ mac: MAC_A, ip: IP_A, ackDelayMs: 0 }, randoms);
}

const arpReplyFromB = (): Buffer => arpFrame(ARP_OP.REPLY, MAC_B, MAC_A, MAC_B, IP_B, MAC_A, IP_A);

describe("frames the stack sends, byte for byte", () => {
  it("ARP request, then the SYN it held, then the handshake ACK", () => {
    const b = benchA();
    const s = b.stack.connect(IP_B, 80, 0xc000);
    assert.deepEqual(b.take(), [GOLDEN_ARP_REQUEST]);
    assert.equal(b.stack.stats().arpQueued, 1);
    b.stack.input(arpReplyFromB());
    assert.deepEqual(b.take(), [GOLDEN_SYN]);
    b.stack.input(
      tcpFrame({
        dstMac: MAC_A,
        srcMac: MAC_B,
        src: IP_B,
        dst: IP_A,
        sport: 80,
        dport: 0xc000,
        seq: 0xa0b0c0d0,
        ack: 0x01020305,
        flags: TCP_FLAG.SYN | TCP_FLAG.ACK,
        window: 29200,
        options: { mss: 1460, wscale: 7 },
      }),
    );
    assert.deepEqual(b.take(), [GOLDEN_ACK]);
    assert.equal(b.stack.state(s), "ESTABLISHED");
    const i = b.stack.info(s);
    assert.equal(i.sndWnd, 29200); // the window in a SYN-ACK is not scaled
    assert.equal(i.sndMss, 1460);
  });

  it("RST|ACK with SEQ=0, ACK=SEG.SEQ+1 for a SYN to a closed port", () => {
    const b = benchA();
    b.stack.input(arpFrame(ARP_OP.REPLY, MAC_B, MAC_A, MAC_B, IP_B, MAC_A, IP_A));
    // Use up IP ids 0x1234 and 0x1235 so the RST gets 0x1236, as in the golden packet.
    b.stack.connect(IP_B, 80, 0xc000);
    b.stack.abort(b.stack.connect(IP_B, 80, 0xc001));
    b.take();
    b.stack.input(
      tcpFrame({
        dstMac: MAC_A,
        srcMac: MAC_B,
        src: IP_B,
        dst: IP_A,
        sport: 0x9999,
        dport: 81,
        seq: 0x11111111,
        flags: TCP_FLAG.SYN,
        options: { mss: 1460 },
      }),
    );
    assert.deepEqual(b.take(), [GOLDEN_RST]);
    const st = b.stack.stats();
    assert.equal(st.tcpNoSocket, 1);
    assert.equal(st.tcpResetsSent, 1);
  });

  it("RST with SEQ=SEG.ACK (no ACK bit) for a stray ACK", () => {
    const b = benchA();
    b.stack.input(arpReplyFromB());
    b.take();
    b.stack.input(
      tcpFrame({
        dstMac: MAC_A,
        srcMac: MAC_B,
        src: IP_B,
        dst: IP_A,
        sport: 5555,
        dport: 81,
        seq: 7,
        ack: 0xdeadbeef,
        flags: TCP_FLAG.ACK,
        payload: Buffer.from("hello"),
      }),
    );
    const [f] = b.take();
    const p = parseTcp(f as Buffer);
    assert.ok(p);
    assert.equal(p.tcp.flags, TCP_FLAG.RST);
    assert.equal(p.tcp.seq, 0xdeadbeef);
    assert.equal(p.tcp.ack, 0);
    assert.equal(refTcpChecksum(p.src, p.dst, (f as Buffer).subarray(34)), 0);
  });

  it("answers an ARP request for its address, and learns the asker", () => {
    const b = benchA();
    // Linux's request, re-addressed to ask for 10.0.0.1.
    const req = Buffer.from(LINUX_ARP_REQUEST);
    req.writeUInt32BE(IP_A, 38);
    b.stack.input(req);
    const [reply] = b.take();
    assert.deepEqual(
      reply,
      hex("7ec87fa03e25 020000000001 0806 0001 0800 0604 0002 020000000001 0a000001 7ec87fa03e25 0a090001"),
    );
    assert.equal(b.stack.stats().arpRepliesSent, 1);
    // The asker is now in the cache: a SYN to it goes straight out, no ARP request.
    b.stack.connect(parseIpv4("10.9.0.1"), 80);
    const [syn] = b.take();
    assert.equal(parseTcp(syn as Buffer)?.dstMac, "7ec87fa03e25");
  });

  it("gratuitous ARP: a request for our own address from our own MAC", () => {
    const b = benchA();
    b.stack.announce();
    assert.deepEqual(b.take(), [
      hex("ffffffffffff 020000000001 0806 0001 0800 0604 0001 020000000001 0a000001 000000000000 0a000001"),
    ]);
  });

  it("answers a ping with the same id, sequence and data", () => {
    const b = benchA();
    b.stack.input(arpReplyFromB());
    const data = Buffer.from("abcdefghijklmnopqrstuvwabcdefghi");
    const f = Buffer.alloc(14 + 20 + 8 + data.length);
    MAC_A.forEach((x, i) => {
      f[i] = x;
    });
    f.set(MAC_B, 6);
    f.writeUInt16BE(0x0800, 12);
    encodeIpv4(
      {
        tos: 0,
        totalLength: 20 + 8 + data.length,
        id: 9,
        fragment: 0,
        ttl: 64,
        protocol: 1,
        checksum: 0,
        src: IP_B,
        dst: IP_A,
        headerLength: 20,
      },
      f,
      14,
    );
    f.set(data, 42);
    encodeIcmpEcho({ type: 8, code: 0, checksum: 0, id: 0x4242, seq: 7 }, f, 34, 8 + data.length);
    b.stack.input(f);
    const [r] = b.take();
    assert.ok(r);
    const ip = decodeIpv4(r, 14);
    assert.ok(ip);
    assert.equal(ip.src, IP_A);
    assert.equal(ip.dst, IP_B);
    assert.equal(refChecksum(r.subarray(14, 34)), 0);
    const e = decodeIcmpEcho(r, 34);
    assert.deepEqual([e?.type, e?.code, e?.id, e?.seq], [0, 0, 0x4242, 7]);
    assert.equal(refChecksum(r.subarray(34)), 0);
    assert.deepEqual(r.subarray(42), data);
  });
});

describe("bad input is dropped and counted, never thrown", () => {
  function established(): { b: Bench; s: number; peerSeq: number } {
    const b = benchA();
    b.stack.input(arpReplyFromB());
    const s = b.stack.connect(IP_B, 80, 0xc000);
    b.stack.input(
      tcpFrame({
        dstMac: MAC_A,
        srcMac: MAC_B,
        src: IP_B,
        dst: IP_A,
        sport: 80,
        dport: 0xc000,
        seq: 1000,
        ack: 0x01020305,
        flags: TCP_FLAG.SYN | TCP_FLAG.ACK,
        options: { mss: 1460 },
      }),
    );
    b.take();
    return { b, s, peerSeq: 1001 };
  }
  const data = (seq: number, payload: string, extra: Partial<Parameters<typeof tcpFrame>[0]> = {}): Buffer =>
    tcpFrame({
      dstMac: MAC_A,
      srcMac: MAC_B,
      src: IP_B,
      dst: IP_A,
      sport: 80,
      dport: 0xc000,
      seq,
      ack: 0x01020305,
      flags: TCP_FLAG.ACK | TCP_FLAG.PSH,
      payload: Buffer.from(payload),
      ...extra,
    });

  it("counts bad IP and TCP checksums and ignores the segments", () => {
    const { b, s, peerSeq } = established();
    const f1 = data(peerSeq, "x");
    f1[24] = (f1[24] as number) ^ 0xff; // IP header checksum byte
    b.stack.input(f1);
    const f2 = data(peerSeq, "y");
    f2[f2.length - 1] = (f2[f2.length - 1] as number) ^ 0x01; // payload byte: TCP checksum fails
    b.stack.input(f2);
    const st = b.stack.stats();
    assert.equal(st.ipBadChecksums, 1);
    assert.equal(st.tcpBadChecksums, 1);
    assert.equal(b.stack.recv(s), null);
    b.stack.input(data(peerSeq, "z"));
    assert.equal(b.stack.recv(s)?.toString(), "z");
  });

  it("drops and counts IPv4 fragments (MF set or offset != 0)", () => {
    const { b, s, peerSeq } = established();
    b.stack.input(data(peerSeq, "frag1", { fragment: IP_FLAG.MF }));
    b.stack.input(data(peerSeq, "frag2", { fragment: 0x0010 }));
    b.stack.input(data(peerSeq, "frag3", { fragment: IP_FLAG.DF | IP_FLAG.MF }));
    assert.equal(b.stack.stats().ipFragmentsDropped, 3);
    assert.equal(b.stack.recv(s), null);
  });

  it("accepts a frame with Ethernet padding and IP options", () => {
    const { b, s, peerSeq } = established();
    const f = data(peerSeq, "pad");
    b.stack.input(Buffer.concat([f, Buffer.alloc(20, 0xee)]));
    assert.equal(b.stack.recv(s)?.toString(), "pad");
    // Same segment with a 4-byte IP option (NOP NOP NOP EOL) inserted: IHL 6.
    const g = data((peerSeq + 3) >>> 0, "opt");
    const withOpt = Buffer.concat([g.subarray(0, 34), hex("01010100"), g.subarray(34)]);
    withOpt[14] = 0x46;
    withOpt.writeUInt16BE(withOpt.readUInt16BE(16) + 4, 16);
    withOpt.writeUInt16BE(0, 24);
    withOpt.writeUInt16BE(refChecksum(withOpt.subarray(14, 38)), 24);
    b.stack.input(withOpt);
    assert.equal(b.stack.recv(s)?.toString(), "opt");
  });

  it("counts frames for another MAC or IP, unknown ethertypes and protocols, truncated frames", () => {
    const { b } = established();
    const f = data(1001, "q");
    const otherMac = Buffer.from(f);
    otherMac[5] = 0x77;
    b.stack.input(otherMac);
    const otherIp = data(1001, "q", { dst: parseIpv4("10.0.0.9") });
    b.stack.input(otherIp);
    const ipv6 = Buffer.from(f);
    ipv6.writeUInt16BE(0x86dd, 12);
    b.stack.input(ipv6);
    const udp = Buffer.from(f);
    udp[23] = 17;
    udp.writeUInt16BE(0, 24);
    udp.writeUInt16BE(refChecksum(udp.subarray(14, 34)), 24);
    b.stack.input(udp);
    b.stack.input(f.subarray(0, 10));
    b.stack.input(f.subarray(0, 30));
    b.stack.input(f.subarray(0, 40));
    const st = b.stack.stats();
    assert.equal(st.notForUs, 1);
    assert.equal(st.ipNotForUs, 1);
    assert.equal(st.unknownEthertype, 1);
    assert.equal(st.ipUnknownProtocol, 1);
    assert.equal(st.badFrames, 1);
    assert.equal(st.ipBadHeaders, 2);
  });

  it("never throws on random or mutated frames, and still works afterwards", () => {
    const { b, s, peerSeq } = established();
    const seeds = [
      data(peerSeq, "hello"),
      LINUX_SYN,
      LINUX_ARP_REQUEST,
      arpReplyFromB(),
      tcpFrame({
        dstMac: MAC_A,
        srcMac: MAC_B,
        src: IP_B,
        dst: IP_A,
        sport: 1,
        dport: 80,
        seq: 5,
        flags: TCP_FLAG.SYN,
        options: { mss: 1, wscale: 99, sackPermitted: true, tsVal: 1, tsEcr: 2 },
      }),
    ];
    b.stack.listen(80);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc
            .tuple(
              fc.constantFrom(...seeds),
              fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
              fc.nat(),
            )
            .map(([seed, edits, cut]) => {
              const f = Buffer.from(seed);
              for (const [pos, v] of edits) f[pos % f.length] = v;
              // Keep the destination ours half of the time so mutations reach the upper layers.
              if (cut % 2 === 0) f.set(MAC_A, 0);
              return f.subarray(0, f.length - (cut % 8 === 0 ? cut % f.length : 0));
            }),
        ),
        fc.boolean(),
        (frame, poll) => {
          b.stack.input(frame);
          if (poll) {
            b.now += 7;
            b.stack.poll();
          }
        },
      ),
      { numRuns: 3000 },
    );
    // The established connection may have been reset by a lucky mutation; a new one must work.
    void s;
    b.take();
    const before = b.stack.stats().tcpSegmentsIn;
    const s2 = b.stack.connect(IP_B, 80, 0xd000);
    assert.equal(b.stack.state(s2), "SYN_SENT");
    assert.ok(b.stack.stats().tcpSegmentsIn >= before);
  });
});

describe("API misuse", () => {
  it("rejects bad configuration", () => {
    const bad = (cfg: Record<string, unknown>): void => {
      assert.throws(
        () => new Bench({ mac: MAC_A, ip: IP_A, ...cfg } as never),
        (e: unknown) => isRemusError(e, "REMUSD_ERR_BAD_USAGE"),
      );
    };
    bad({ mac: new Uint8Array(5) });
    bad({ mac: BROADCAST_MAC });
    bad({ ip: 0 });
    bad({ mss: 2000 });
    bad({ rcvBuf: 10 });
    bad({ minRtoMs: 0 });
    bad({ maxSockets: 0 });
  });

  it("throws REMUSD_ERR_BAD_FD for unknown, closed and stale socket ids", () => {
    const b = benchA();
    const isBadFd = (e: unknown): boolean => isRemusError(e, "REMUSD_ERR_BAD_FD");
    assert.throws(() => b.stack.send(12345, Buffer.from("x")), isBadFd);
    assert.throws(() => b.stack.state(0), isBadFd);
    const s = b.stack.connect(IP_B, 80);
    b.stack.close(s); // SYN_SENT: freed at once
    assert.throws(() => b.stack.state(s), isBadFd);
    const s2 = b.stack.connect(IP_B, 80);
    assert.notEqual(s2, s); // same slot, new generation
    assert.equal(s2 % 65536, s % 65536);
    assert.throws(() => b.stack.recv(s), isBadFd);
    const l = b.stack.listen(80);
    assert.throws(() => b.stack.send(l, Buffer.from("x")), isBadFd);
    assert.throws(() => b.stack.accept(s2), isBadFd);
    assert.throws(
      () => b.stack.listen(80),
      (e: unknown) => isRemusError(e, "REMUSD_ERR_BAD_USAGE"),
    );
    assert.throws(
      () => b.stack.connect(IP_B, 0),
      (e: unknown) => isRemusError(e, "REMUSD_ERR_BAD_USAGE"),
    );
  });

  it("runs out of sockets with REMUSD_ERR_NO_SPACE", () => {
    const b = new Bench({ mac: MAC_A, ip: IP_A, maxSockets: 3 });
    b.stack.connect(IP_B, 80);
    b.stack.connect(IP_B, 80);
    b.stack.listen(1);
    assert.throws(
      () => b.stack.connect(IP_B, 80),
      (e: unknown) => isRemusError(e, "REMUSD_ERR_NO_SPACE"),
    );
  });

  it("a new handle on the same memory is the same stack; a wrong root is refused", () => {
    const b = benchA();
    const s = b.stack.connect(IP_B, 80);
    const again = new (b.stack.constructor as typeof import("../../src/net/stack.js").NetStack)(
      b.env,
      b.stack.root,
    );
    assert.equal(again.state(s), "SYN_SENT");
    assert.throws(
      () =>
        new (b.stack.constructor as typeof import("../../src/net/stack.js").NetStack)(
          b.env,
          b.stack.root + 8,
        ),
      (e: unknown) => isRemusError(e, "REMUSD_ERR_CORRUPT"),
    );
    void ZERO_MAC;
  });
});

describe("receive-side details (crafted segments)", () => {
  function serverWith(cfg: { rcvBuf?: number } = {}): {
    b: Bench;
    s: number;
    seg: (seq: number, payload: string, flags?: number) => Buffer;
    irs: number;
  } {
    const b = new Bench({ mac: MAC_A, ip: IP_A, ackDelayMs: 0, ...cfg }, [0xabcd1234, 0x5000]);
    b.stack.input(arpReplyFromB());
    const l = b.stack.listen(80);
    const irs = 1000;
    const base = { dstMac: MAC_A, srcMac: MAC_B, src: IP_B, dst: IP_A, sport: 3333, dport: 80 };
    b.stack.input(tcpFrame({ ...base, seq: irs, flags: TCP_FLAG.SYN, options: { mss: 1460 } }));
    const synAck = parseTcp(b.take()[0] as Buffer);
    assert.ok(synAck);
    assert.equal(
      synAck.tcp.options.wscale,
      undefined,
      "no window scale offered to a peer that did not offer it",
    );
    assert.ok(synAck.tcp.window <= 65535);
    const iss = synAck.tcp.seq;
    b.stack.input(tcpFrame({ ...base, seq: irs + 1, ack: iss + 1, flags: TCP_FLAG.ACK }));
    const s = b.stack.accept(l);
    assert.notEqual(s, 0);
    const seg = (seq: number, payload: string, flags: number = TCP_FLAG.ACK): Buffer =>
      tcpFrame({ ...base, seq: irs + 1 + seq, ack: iss + 1, flags, payload: Buffer.from(payload) });
    return { b, s, seg, irs };
  }

  it("a FIN that arrives ahead of missing data takes effect only when the gap fills", () => {
    const { b, s, seg } = serverWith();
    b.stack.input(seg(0, "aaaa"));
    b.stack.input(seg(8, "cccc", TCP_FLAG.ACK | TCP_FLAG.FIN));
    assert.equal(b.stack.recv(s)?.toString(), "aaaa");
    assert.equal(b.stack.eof(s), false);
    assert.equal(b.stack.state(s), "ESTABLISHED");
    b.stack.input(seg(4, "bbbb"));
    assert.equal(b.stack.recv(s)?.toString(), "bbbbcccc");
    assert.equal(b.stack.eof(s), true);
    assert.equal(b.stack.state(s), "CLOSE_WAIT");
    const acks = b.take().map((f) => parseTcp(f)?.tcp.ack);
    assert.equal(acks.at(-1), 1000 + 1 + 12 + 1, "the FIN is acknowledged");
  });

  it("more gaps than the range table holds: the extra segment is dropped, the rest reassembles", () => {
    const { b, s, seg } = serverWith();
    // Ten disjoint islands: 1 byte each at offsets 2, 4, ..., 20.
    for (let i = 1; i <= 10; i++) b.stack.input(seg(2 * i, String.fromCharCode(96 + i)));
    const st = b.stack.stats();
    assert.equal(st.tcpOooSegments, 10);
    assert.equal(st.tcpOooDropped, 2);
    // Fill the holes (and resend the two islands that were dropped).
    for (let i = 0; i <= 10; i++) b.stack.input(seg(2 * i + 1 - (i === 0 ? 1 : 0), i === 0 ? "0_" : "_"));
    b.stack.input(seg(18, "i"));
    b.stack.input(seg(20, "j"));
    assert.equal(b.stack.recv(s)?.toString(), "0_a_b_c_d_e_f_g_h_i_j_");
    const acks = b.take().map((f) => parseTcp(f)?.tcp.ack);
    assert.equal(acks.at(-1), 1000 + 1 + 22);
  });

  it("a segment beyond the window is trimmed; a zero window still accepts ACKs and a bare FIN", () => {
    const { b, s, seg } = serverWith({ rcvBuf: 64 });
    b.stack.input(seg(0, "x".repeat(100)));
    assert.equal(b.stack.recvAvailable(s), 64);
    const ack = parseTcp(b.take().at(-1) as Buffer);
    assert.equal(ack?.tcp.ack, 1000 + 1 + 64);
    assert.equal(ack?.tcp.window, 0);
    b.stack.input(seg(64, "", TCP_FLAG.ACK | TCP_FLAG.FIN));
    assert.equal(b.stack.state(s), "CLOSE_WAIT");
    assert.equal(b.stack.recv(s, 1000)?.length, 64);
    assert.equal(b.stack.eof(s), true);
  });
});
