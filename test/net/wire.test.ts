/**
 * Wire formats byte for byte: golden packets (RFC examples, frames captured
 * from a real Linux 6.x host through a TAP device), the Internet checksum
 * against an independently written reference, and codec round trips.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  ARP_OP,
  decodeArp,
  decodeEth,
  decodeIcmpEcho,
  decodeIpv4,
  decodeTcp,
  ETHERTYPE,
  encodeArp,
  encodeEth,
  encodeIcmpEcho,
  encodeIpv4,
  encodeTcp,
  formatIpv4,
  formatMac,
  IP_FLAG,
  type Ipv4Header,
  inetChecksum,
  ipv4ChecksumOk,
  isFragment,
  parseIpv4,
  parseMac,
  pseudoHeaderSum,
  seqGe,
  seqGt,
  seqLe,
  seqLt,
  setTcpChecksum,
  TCP_FLAG,
  type TcpHeader,
  tcpChecksum,
  tcpChecksumOk,
} from "../../src/net/wire.js";
import { hex, LINUX_ARP_REQUEST, LINUX_SYN, refChecksum, refTcpChecksum } from "./ref.js";

describe("Internet checksum", () => {
  it("matches the RFC 1071 worked example", () => {
    // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (one's complement), checksum 220d.
    const b = hex("0001f203f4f5f6f7");
    assert.equal(inetChecksum(b, 0, b.length), 0x220d);
    assert.equal(refChecksum(b), 0x220d);
  });

  it("verifies the classic IPv4 header example (checksum b861)", () => {
    const h = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
    assert.ok(ipv4ChecksumOk(h, 0, 20));
    const zeroed = Buffer.from(h);
    zeroed.writeUInt16BE(0, 10);
    assert.equal(inetChecksum(zeroed, 0, 20), 0xb861);
    assert.equal(refChecksum(zeroed), 0xb861);
  });

  it("agrees with the reference on random data, odd lengths and offsets", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(7), (data, pad) => {
        const buf = new Uint8Array(pad + data.length);
        buf.set(data, pad);
        assert.equal(inetChecksum(buf, pad, data.length), refChecksum(data));
      }),
      { numRuns: 300 },
    );
  });

  it("agrees with the reference TCP checksum including the pseudo-header", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 1600 }), fc.nat(), fc.nat(), (seg, s, d) => {
        const src = s >>> 0;
        const dst = d >>> 0;
        const b = Uint8Array.from(seg);
        b[16] = 0;
        b[17] = 0;
        const want = refTcpChecksum(src, dst, b);
        assert.equal(tcpChecksum(src, dst, b, 0, b.length), want);
        setTcpChecksum(src, dst, b, 0, b.length);
        assert.equal(b[16] * 256 + (b[17] as number), want);
        assert.ok(tcpChecksumOk(src, dst, b, 0, b.length));
      }),
      { numRuns: 200 },
    );
  });

  it("the pseudo-header sum is the sum of its words", () => {
    assert.equal(pseudoHeaderSum(0x0a090001, 0x0a090002, 6, 40), 0x0a09 + 0x0001 + 0x0a09 + 0x0002 + 6 + 40);
  });
});

describe("golden frames from a real Linux host", () => {
  it("decodes and re-encodes Linux's ARP request byte for byte", () => {
    const eth = decodeEth(LINUX_ARP_REQUEST);
    assert.ok(eth);
    assert.equal(formatMac(eth.dst), "ff:ff:ff:ff:ff:ff");
    assert.equal(formatMac(eth.src), "7e:c8:7f:a0:3e:25");
    assert.equal(eth.type, ETHERTYPE.ARP);
    const arp = decodeArp(LINUX_ARP_REQUEST, 14);
    assert.ok(arp);
    assert.equal(arp.op, ARP_OP.REQUEST);
    assert.equal(formatIpv4(arp.spa), "10.9.0.1");
    assert.equal(formatIpv4(arp.tpa), "10.9.0.2");
    assert.equal(formatMac(arp.tha), "00:00:00:00:00:00");
    const out = Buffer.alloc(42);
    encodeEth(eth, out, 0);
    encodeArp(arp, out, 14);
    assert.deepEqual(out, LINUX_ARP_REQUEST);
  });

  it("decodes Linux's SYN: IPv4 header, checksums, MSS/SACK/timestamp/window-scale options", () => {
    const ip = decodeIpv4(LINUX_SYN, 14);
    assert.ok(ip);
    assert.equal(ip.headerLength, 20);
    assert.equal(ip.totalLength, 60);
    assert.equal(ip.id, 0x25f5);
    assert.equal(ip.fragment, IP_FLAG.DF);
    assert.equal(isFragment(ip.fragment), false);
    assert.equal(ip.ttl, 64);
    assert.equal(ip.protocol, 6);
    assert.equal(formatIpv4(ip.src), "10.9.0.1");
    assert.ok(ipv4ChecksumOk(LINUX_SYN, 14, 20));
    const tcp = decodeTcp(LINUX_SYN, 34, 40);
    assert.ok(tcp);
    assert.equal(tcp.srcPort, 0xc24c);
    assert.equal(tcp.dstPort, 80);
    assert.equal(tcp.seq, 0xef0fe73e);
    assert.equal(tcp.flags, TCP_FLAG.SYN);
    assert.equal(tcp.window, 64240);
    assert.equal(tcp.headerLength, 40);
    assert.deepEqual(tcp.options, {
      mss: 1460,
      sackPermitted: true,
      tsVal: 0xb1ac3269,
      tsEcr: 0,
      wscale: 10,
    });
    assert.ok(tcpChecksumOk(ip.src, ip.dst, LINUX_SYN, 34, 40));
    assert.equal(
      refTcpChecksum(ip.src, ip.dst, [...LINUX_SYN.subarray(34, 50), 0, 0, ...LINUX_SYN.subarray(52)]),
      0xbbf6,
    );
  });

  it("re-encodes Linux's SYN byte for byte (Linux option order and padding)", () => {
    const ip = decodeIpv4(LINUX_SYN, 14) as Ipv4Header;
    const tcp = decodeTcp(LINUX_SYN, 34, 40) as TcpHeader;
    const out = Buffer.alloc(LINUX_SYN.length);
    encodeEth(decodeEth(LINUX_SYN) as NonNullable<ReturnType<typeof decodeEth>>, out, 0);
    encodeIpv4(ip, out, 14);
    const hlen = encodeTcp(tcp, out, 34);
    assert.equal(hlen, 40);
    setTcpChecksum(ip.src, ip.dst, out, 34, 40);
    assert.deepEqual(out, LINUX_SYN);
  });
});

const macArb = fc.uint8Array({ minLength: 6, maxLength: 6 });
const u32 = fc.nat().map((n) => n >>> 0);
const u16 = fc.integer({ min: 0, max: 0xffff });

describe("codec round trips", () => {
  it("Ethernet", () => {
    fc.assert(
      fc.property(macArb, macArb, u16, (dst, src, type) => {
        const b = new Uint8Array(14);
        assert.equal(encodeEth({ dst, src, type }, b), 14);
        const d = decodeEth(b);
        assert.ok(d);
        assert.deepEqual(
          [Array.from(d.dst), Array.from(d.src), d.type],
          [Array.from(dst), Array.from(src), type],
        );
      }),
    );
  });

  it("ARP", () => {
    fc.assert(
      fc.property(fc.constantFrom(1, 2), macArb, u32, macArb, u32, (op, sha, spa, tha, tpa) => {
        const b = new Uint8Array(28);
        encodeArp({ op, sha, spa, tha, tpa }, b);
        const d = decodeArp(b);
        assert.ok(d);
        assert.deepEqual(
          { op: d.op, sha: Array.from(d.sha), spa: d.spa, tha: Array.from(d.tha), tpa: d.tpa },
          { op, sha: Array.from(sha), spa, tha: Array.from(tha), tpa },
        );
      }),
    );
  });

  it("IPv4 (and the header checksum always verifies)", () => {
    fc.assert(
      fc.property(
        fc.record({
          tos: fc.integer({ min: 0, max: 255 }),
          totalLength: fc.integer({ min: 20, max: 1500 }),
          id: u16,
          fragment: u16,
          ttl: fc.integer({ min: 0, max: 255 }),
          protocol: fc.integer({ min: 0, max: 255 }),
          src: u32,
          dst: u32,
        }),
        (h) => {
          const b = new Uint8Array(h.totalLength);
          encodeIpv4({ ...h, checksum: 0, headerLength: 20 }, b);
          assert.ok(ipv4ChecksumOk(b, 0, 20));
          assert.equal(refChecksum(b.subarray(0, 20)), 0);
          const d = decodeIpv4(b);
          assert.ok(d);
          const { checksum: _c, headerLength, ...rest } = d;
          assert.equal(headerLength, 20);
          assert.deepEqual(rest, { ...h });
        },
      ),
    );
  });

  it("TCP with options", () => {
    const opts = fc.record(
      {
        mss: u16,
        wscale: fc.integer({ min: 0, max: 14 }),
        sackPermitted: fc.constant(true),
        ts: fc.tuple(u32, u32),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        u16,
        u16,
        u32,
        u32,
        fc.integer({ min: 0, max: 255 }),
        u16,
        u16,
        opts,
        fc.uint8Array({ maxLength: 64 }),
        (srcPort, dstPort, seq, ack, flags, window, urgent, o, payload) => {
          const options = {
            ...(o.mss !== undefined ? { mss: o.mss } : {}),
            ...(o.sackPermitted ? { sackPermitted: true } : {}),
            ...(o.ts ? { tsVal: o.ts[0], tsEcr: o.ts[1] } : {}),
            ...(o.wscale !== undefined ? { wscale: o.wscale } : {}),
          };
          const b = new Uint8Array(60 + payload.length);
          const hlen = encodeTcp(
            { srcPort, dstPort, seq, ack, flags, window, urgent, checksum: 0, headerLength: 0, options },
            b,
          );
          assert.equal(hlen % 4, 0);
          b.set(payload, hlen);
          setTcpChecksum(1, 2, b, 0, hlen + payload.length);
          assert.equal(refTcpChecksum(1, 2, b.subarray(0, hlen + payload.length)), 0);
          const d = decodeTcp(b, 0, hlen + payload.length);
          assert.ok(d);
          assert.deepEqual(
            { ...d, checksum: 0 },
            { srcPort, dstPort, seq, ack, flags, window, urgent, checksum: 0, headerLength: hlen, options },
          );
        },
      ),
    );
  });

  it("ICMP echo", () => {
    fc.assert(
      fc.property(u16, u16, fc.uint8Array({ maxLength: 100 }), (id, seq, data) => {
        const b = new Uint8Array(8 + data.length);
        b.set(data, 8);
        encodeIcmpEcho({ type: 8, code: 0, checksum: 0, id, seq }, b, 0, b.length);
        assert.equal(refChecksum(b), 0);
        const d = decodeIcmpEcho(b);
        assert.ok(d);
        assert.deepEqual([d.type, d.code, d.id, d.seq], [8, 0, id, seq]);
      }),
    );
  });

  it("decoders return null or a header on arbitrary bytes, never throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(90), (b, len) => {
        for (const dec of [decodeEth, decodeArp, decodeIpv4, decodeTcp, decodeIcmpEcho]) {
          dec(b, 0, Math.min(len, b.length));
          dec(b);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("rejects truncated and malformed headers", () => {
    assert.equal(decodeIpv4(hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8")), null); // 18 bytes
    assert.equal(decodeIpv4(hex("4400 0014 0000 0000 4006 0000 0a000001 0a000002")), null); // IHL 4
    assert.equal(decodeIpv4(hex("6500 0014 0000 0000 4006 0000 0a000001 0a000002")), null); // version 6
    assert.equal(decodeIpv4(hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7")), null); // total > len
    const tcp = Buffer.from(LINUX_SYN.subarray(34));
    assert.ok(decodeTcp(tcp));
    tcp[12] = 0x40; // data offset 4
    assert.equal(decodeTcp(tcp), null);
    tcp[12] = 0xa0;
    tcp[21] = 9; // MSS option claims 9 bytes
    assert.equal(decodeTcp(tcp), null);
    tcp[21] = 1; // option length below 2
    assert.equal(decodeTcp(tcp), null);
    assert.equal(decodeArp(hex("0001 0800 06 04 0001")), null);
    assert.equal(decodeArp(hex(`0006 0800 06 04 0001 7ec87fa03e25 0a090001 000000000000 0a090002`)), null);
  });
});

describe("helpers", () => {
  it("sequence comparisons wrap modulo 2^32", () => {
    assert.ok(seqLt(0xfffffff0, 0x10));
    assert.ok(seqGt(0x10, 0xfffffff0));
    assert.ok(seqLe(5, 5) && seqGe(5, 5));
    assert.ok(!seqLt(0x10, 0xfffffff0));
  });

  it("parses and formats addresses", () => {
    assert.equal(parseIpv4("192.168.0.1"), 0xc0a80001);
    assert.equal(formatIpv4(0xc0a80001), "192.168.0.1");
    assert.equal(formatMac(parseMac("02:00:0a:ff:00:01")), "02:00:0a:ff:00:01");
    assert.throws(() => parseIpv4("1.2.3"));
    assert.throws(() => parseIpv4("1.2.3.256"));
    assert.throws(() => parseMac("02:00"));
  });
});
