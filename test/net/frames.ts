/** Helpers to craft and pick apart frames in tests (built on the codecs, which wire.test.ts pins to goldens). */
import { PlainMemory } from "../../src/domain/memory.js";
import { formatStandaloneHeap } from "../../src/guest/mm.js";
import { type NetConfig, type NetEnv, NetStack } from "../../src/net/stack.js";
import {
  decodeArp,
  decodeEth,
  decodeIpv4,
  decodeTcp,
  ETHERTYPE,
  encodeArp,
  encodeEth,
  encodeIpv4,
  encodeTcp,
  IP_FLAG,
  IP_PROTO,
  setTcpChecksum,
  type TcpHeader,
  type TcpOptions,
  tcpOptionsLength,
} from "../../src/net/wire.js";

export interface TcpSpec {
  dstMac: Uint8Array;
  srcMac: Uint8Array;
  src: number;
  dst: number;
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  options?: TcpOptions;
  payload?: Uint8Array;
  ipId?: number;
  fragment?: number;
}

export function tcpFrame(s: TcpSpec): Buffer {
  const options = s.options ?? {};
  const hlen = 20 + tcpOptionsLength(options);
  const payload = s.payload ?? new Uint8Array(0);
  const f = Buffer.alloc(34 + hlen + payload.length);
  encodeEth({ dst: s.dstMac, src: s.srcMac, type: ETHERTYPE.IPV4 }, f, 0);
  encodeIpv4(
    {
      tos: 0,
      totalLength: 20 + hlen + payload.length,
      id: s.ipId ?? 1,
      fragment: s.fragment ?? IP_FLAG.DF,
      ttl: 64,
      protocol: IP_PROTO.TCP,
      checksum: 0,
      src: s.src,
      dst: s.dst,
      headerLength: 20,
    },
    f,
    14,
  );
  encodeTcp(
    {
      srcPort: s.sport,
      dstPort: s.dport,
      seq: s.seq >>> 0,
      ack: (s.ack ?? 0) >>> 0,
      flags: s.flags,
      window: s.window ?? 65535,
      checksum: 0,
      urgent: 0,
      headerLength: hlen,
      options,
    },
    f,
    34,
  );
  f.set(payload, 34 + hlen);
  setTcpChecksum(s.src, s.dst, f, 34, hlen + payload.length);
  return f;
}

export function arpFrame(
  op: number,
  srcMac: Uint8Array,
  dstMac: Uint8Array,
  sha: Uint8Array,
  spa: number,
  tha: Uint8Array,
  tpa: number,
): Buffer {
  const f = Buffer.alloc(42);
  encodeEth({ dst: dstMac, src: srcMac, type: ETHERTYPE.ARP }, f, 0);
  encodeArp({ op, sha, spa, tha, tpa }, f, 14);
  return f;
}

export interface ParsedTcp {
  src: number;
  dst: number;
  tcp: TcpHeader;
  payload: Buffer;
  dstMac: string;
}

/** The TCP segment in an Ethernet frame, or null. */
export function parseTcp(frame: Uint8Array): ParsedTcp | null {
  const eth = decodeEth(frame);
  if (!eth || eth.type !== ETHERTYPE.IPV4) return null;
  const ip = decodeIpv4(frame, 14);
  if (!ip || ip.protocol !== IP_PROTO.TCP) return null;
  const off = 14 + ip.headerLength;
  const tcp = decodeTcp(frame, off, ip.totalLength - ip.headerLength);
  if (!tcp) return null;
  return {
    src: ip.src,
    dst: ip.dst,
    tcp,
    payload: Buffer.from(frame.subarray(off + tcp.headerLength, 14 + ip.totalLength)),
    dstMac: Buffer.from(eth.dst).toString("hex"),
  };
}

export function isArp(frame: Uint8Array): ReturnType<typeof decodeArp> {
  const eth = decodeEth(frame);
  if (!eth || eth.type !== ETHERTYPE.ARP) return null;
  return decodeArp(frame, 14);
}

/** A lone stack with a hand-driven clock and RNG, recording what it transmits. */
export class Bench {
  readonly mem = new PlainMemory(4 << 20);
  readonly heap = formatStandaloneHeap(this.mem);
  readonly out: Buffer[] = [];
  now = 1000;
  blocked = false;
  readonly randoms: number[];
  readonly env: NetEnv;
  readonly stack: NetStack;

  constructor(cfg: NetConfig, randoms: number[] = []) {
    this.randoms = [...randoms];
    let fallback = 0x9e3779b9;
    this.env = {
      mem: this.mem,
      heap: this.heap,
      now: () => this.now,
      random32: () => {
        const r = this.randoms.shift();
        if (r !== undefined) return r >>> 0;
        fallback = (Math.imul(fallback, 1664525) + 1013904223) >>> 0;
        return fallback;
      },
      transmit: (f) => {
        if (this.blocked) return false;
        this.out.push(Buffer.from(f));
        return true;
      },
    };
    this.stack = new NetStack(this.env, NetStack.format(this.env, cfg));
  }

  /** Frames transmitted since the last call. */
  take(): Buffer[] {
    return this.out.splice(0);
  }
}
