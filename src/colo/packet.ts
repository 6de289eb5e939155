/**
 * What COLO needs to know about an Ethernet frame: which connection it
 * belongs to and, for TCP, where its sequence numbers, flags and payload are.
 * Pure and allocation-light; never throws on bad input (a frame that is not
 * well-formed IPv4 is classified `other` and compared whole).
 */
import { decodeEth, decodeIpv4, ETHERTYPE, IP_PROTO, isFragment, rd16, rd32 } from "../net/wire.js";

const UDP = 17;

/** A TCP segment inside a frame, with offsets into the frame. */
export interface TcpView {
  readonly kind: "tcp";
  readonly src: number;
  readonly dst: number;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack: number;
  /** TCP_FLAG bits. */
  readonly flags: number;
  /** Offset of the TCP header in the frame. */
  readonly tcpOff: number;
  /** Offset and length of the payload in the frame. */
  readonly payloadOff: number;
  readonly payloadLen: number;
}

/** An IPv4 datagram that is not TCP (UDP, ICMP, fragments, other protocols). */
export interface IpView {
  readonly kind: "ip";
  /** Connection key: protocol, addresses and, for UDP, ports; ICMP echo adds its identifier. */
  readonly key: string;
  /** Offset of the IPv4 header in the frame. */
  readonly ipOff: number;
}

/** Anything else (ARP, other ethertypes, malformed IPv4): compared byte for byte. */
export interface OtherView {
  readonly kind: "other";
  readonly key: string;
}

export type FrameView = TcpView | IpView | OtherView;

/** Classifies a frame. TCP segments of IP fragments are treated as plain IP. */
export function viewFrame(f: Uint8Array): FrameView {
  const eth = decodeEth(f);
  if (!eth) return { kind: "other", key: "short" };
  if (eth.type !== ETHERTYPE.IPV4) return { kind: "other", key: `eth:${eth.type}` };
  const ip = decodeIpv4(f, 14);
  if (!ip) return { kind: "other", key: "eth:ipv4-bad" };
  const l4 = 14 + ip.headerLength;
  const l4Len = ip.totalLength - ip.headerLength;
  if (ip.protocol === IP_PROTO.TCP && !isFragment(ip.fragment) && l4Len >= 20) {
    const hl = ((f[l4 + 12] as number) >>> 4) * 4;
    if (hl >= 20 && hl <= l4Len) {
      return {
        kind: "tcp",
        src: ip.src,
        dst: ip.dst,
        srcPort: rd16(f, l4),
        dstPort: rd16(f, l4 + 2),
        seq: rd32(f, l4 + 4),
        ack: rd32(f, l4 + 8),
        flags: f[l4 + 13] as number,
        tcpOff: l4,
        payloadOff: l4 + hl,
        payloadLen: l4Len - hl,
      };
    }
  }
  let key = `ip:${ip.protocol}:${ip.src}>${ip.dst}`;
  if (!isFragment(ip.fragment)) {
    if (ip.protocol === UDP && l4Len >= 8) key += `:${rd16(f, l4)}>${rd16(f, l4 + 2)}`;
    else if (ip.protocol === IP_PROTO.ICMP && l4Len >= 8) key += `:${rd16(f, l4 + 4)}`;
  }
  return { kind: "ip", key, ipOff: 14 };
}

/** The connection key of a TCP segment in the direction it travels. */
export function tcpKey(v: TcpView): string {
  return `${v.src}:${v.srcPort}>${v.dst}:${v.dstPort}`;
}

/** Signed distance a - b in 32-bit sequence space. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}
