/**
 * Wire formats of the guest network, byte for byte as on a real Ethernet:
 * Ethernet II (14-byte header), ARP for IPv4 over Ethernet (RFC 826), IPv4
 * (RFC 791, 20-byte header plus options), TCP (RFC 9293, header plus options)
 * and ICMP echo (RFC 792), with the Internet checksum (RFC 1071) and the TCP
 * pseudo-header.
 *
 * Everything here is pure: decoders read the given bytes and return a small
 * object (MAC addresses are views into the input, not copies) or `null` when
 * the bytes are not a well-formed header; they never throw on bad input.
 * Encoders write into a caller-provided buffer and return the number of bytes
 * written. Multi-byte fields are big-endian (network order); IPv4 addresses
 * are unsigned 32-bit numbers (192.168.0.1 is 0xc0a80001).
 */

export const ETH_HEADER_LEN = 14;
export const ARP_PACKET_LEN = 28;
export const IPV4_HEADER_LEN = 20;
export const TCP_HEADER_LEN = 20;
export const ICMP_ECHO_HEADER_LEN = 8;
/** Ethernet payload limit (the IP MTU). */
export const ETH_MTU = 1500;

export const ETHERTYPE = { IPV4: 0x0800, ARP: 0x0806 } as const;
export const IP_PROTO = { ICMP: 1, TCP: 6 } as const;
export const ARP_OP = { REQUEST: 1, REPLY: 2 } as const;
export const ICMP_TYPE = { ECHO_REPLY: 0, ECHO_REQUEST: 8 } as const;

/** IPv4 flag bits as they sit in the top three bits of the flags/fragment-offset field. */
export const IP_FLAG = { DF: 0x4000, MF: 0x2000 } as const;

export const TCP_FLAG = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

export const TCP_OPT = {
  EOL: 0,
  NOP: 1,
  MSS: 2,
  WSCALE: 3,
  SACK_PERMITTED: 4,
  SACK: 5,
  TIMESTAMP: 8,
} as const;

export const BROADCAST_MAC: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
export const ZERO_MAC: Uint8Array = new Uint8Array(6);

// ---------------------------------------------------------------------------
// Byte helpers (big-endian)

/** Big-endian u16 at `o`. */
export function rd16(b: Uint8Array, o: number): number {
  return ((b[o] as number) << 8) | (b[o + 1] as number);
}
/** Big-endian u32 at `o`. */
export function rd32(b: Uint8Array, o: number): number {
  return (
    (((b[o] as number) << 24) |
      ((b[o + 1] as number) << 16) |
      ((b[o + 2] as number) << 8) |
      (b[o + 3] as number)) >>>
    0
  );
}
/** Writes `v` as a big-endian u16 at `o`. */
export function wr16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
/** Writes `v` as a big-endian u32 at `o`. */
export function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** "192.168.0.1" -> 0xc0a80001. Throws on a malformed address (configuration only, never wire input). */
export function parseIpv4(s: string): number {
  const parts = s.split(".");
  if (parts.length !== 4) throw new TypeError(`not an IPv4 address: ${s}`);
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new TypeError(`not an IPv4 address: ${s}`);
    v = v * 256 + Number(p);
  }
  return v >>> 0;
}

/** 0xc0a80001 -> "192.168.0.1". */
export function formatIpv4(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

/** "02:00:00:00:00:01" -> 6 bytes. Throws on a malformed address. */
export function parseMac(s: string): Uint8Array {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new TypeError(`not a MAC address: ${s}`);
  }
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)));
}

/** 6 bytes -> "02:00:00:00:00:01". */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}

// ---------------------------------------------------------------------------
// Internet checksum (RFC 1071)

/**
 * Adds the bytes `b[off..off+len)` as big-endian 16-bit words to `acc` (an odd
 * trailing byte is padded with zero) and returns the unfolded sum. Sums of up
 * to ~64 KiB stay far below 2^53, so plain number arithmetic is exact.
 */
export function sumWords(b: Uint8Array, off: number, len: number, acc = 0): number {
  let s = acc;
  const end = off + len - 1;
  let i = off;
  for (; i < end; i += 2) s += ((b[i] as number) << 8) | (b[i + 1] as number);
  if (i === end) s += (b[i] as number) << 8;
  return s;
}

/** Folds a sum to 16 bits with end-around carry. */
export function foldSum(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** The Internet checksum of `b[off..off+len)` plus `acc`: the one's complement of the folded one's complement sum. */
export function inetChecksum(b: Uint8Array, off: number, len: number, acc = 0): number {
  return ~foldSum(sumWords(b, off, len, acc)) & 0xffff;
}

/** Unfolded sum of the TCP/UDP pseudo-header: source, destination, zero+protocol, transport length. */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

// ---------------------------------------------------------------------------
// Ethernet II

export interface EthHeader {
  dst: Uint8Array;
  src: Uint8Array;
  type: number;
}

/** Decodes an Ethernet II header; null when fewer than 14 bytes. */
export function decodeEth(b: Uint8Array, off = 0, len = b.length - off): EthHeader | null {
  if (len < ETH_HEADER_LEN || off + len > b.length) return null;
  return { dst: b.subarray(off, off + 6), src: b.subarray(off + 6, off + 12), type: rd16(b, off + 12) };
}

/** Writes a 14-byte Ethernet II header; returns 14. */
export function encodeEth(h: EthHeader, b: Uint8Array, off = 0): number {
  b.set(h.dst.subarray(0, 6), off);
  b.set(h.src.subarray(0, 6), off + 6);
  wr16(b, off + 12, h.type);
  return ETH_HEADER_LEN;
}

// ---------------------------------------------------------------------------
// ARP (RFC 826), Ethernet hardware and IPv4 protocol addresses only

export interface ArpPacket {
  op: number;
  /** Sender hardware address. */
  sha: Uint8Array;
  /** Sender protocol (IPv4) address. */
  spa: number;
  tha: Uint8Array;
  tpa: number;
}

/** Decodes an ARP packet; null unless it is Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4). */
export function decodeArp(b: Uint8Array, off = 0, len = b.length - off): ArpPacket | null {
  if (len < ARP_PACKET_LEN || off + len > b.length) return null;
  if (rd16(b, off) !== 1 || rd16(b, off + 2) !== ETHERTYPE.IPV4 || b[off + 4] !== 6 || b[off + 5] !== 4)
    return null;
  return {
    op: rd16(b, off + 6),
    sha: b.subarray(off + 8, off + 14),
    spa: rd32(b, off + 14),
    tha: b.subarray(off + 18, off + 24),
    tpa: rd32(b, off + 24),
  };
}

/** Writes a 28-byte Ethernet/IPv4 ARP packet; returns 28. */
export function encodeArp(p: ArpPacket, b: Uint8Array, off = 0): number {
  wr16(b, off, 1);
  wr16(b, off + 2, ETHERTYPE.IPV4);
  b[off + 4] = 6;
  b[off + 5] = 4;
  wr16(b, off + 6, p.op);
  b.set(p.sha.subarray(0, 6), off + 8);
  wr32(b, off + 14, p.spa);
  b.set(p.tha.subarray(0, 6), off + 18);
  wr32(b, off + 24, p.tpa);
  return ARP_PACKET_LEN;
}

// ---------------------------------------------------------------------------
// IPv4 (RFC 791)

export interface Ipv4Header {
  /** DSCP+ECN byte. */
  tos: number;
  /** Header plus payload, bytes. */
  totalLength: number;
  id: number;
  /** The flags and fragment offset field as one u16 (`IP_FLAG` bits | offset in 8-byte units). */
  fragment: number;
  ttl: number;
  protocol: number;
  checksum: number;
  src: number;
  dst: number;
  /** Header length in bytes (20..60). */
  headerLength: number;
}

/**
 * Decodes an IPv4 header. Null unless version is 4, the IHL is at least 5, and
 * the header and the total length fit in `len` bytes (trailing Ethernet padding
 * is allowed). The checksum is returned, not verified: see `ipv4ChecksumOk`.
 */
export function decodeIpv4(b: Uint8Array, off = 0, len = b.length - off): Ipv4Header | null {
  if (len < IPV4_HEADER_LEN || off + len > b.length) return null;
  const vihl = b[off] as number;
  const headerLength = (vihl & 0x0f) * 4;
  if (vihl >>> 4 !== 4 || headerLength < IPV4_HEADER_LEN) return null;
  const totalLength = rd16(b, off + 2);
  if (totalLength < headerLength || totalLength > len) return null;
  return {
    tos: b[off + 1] as number,
    totalLength,
    id: rd16(b, off + 4),
    fragment: rd16(b, off + 6),
    ttl: b[off + 8] as number,
    protocol: b[off + 9] as number,
    checksum: rd16(b, off + 10),
    src: rd32(b, off + 12),
    dst: rd32(b, off + 16),
    headerLength,
  };
}

/** True when the header checksum over `headerLength` bytes at `off` verifies. */
export function ipv4ChecksumOk(b: Uint8Array, off: number, headerLength: number): boolean {
  return foldSum(sumWords(b, off, headerLength)) === 0xffff;
}

/** True when the datagram is a fragment (MF set or a non-zero offset). */
export function isFragment(fragment: number): boolean {
  return (fragment & (IP_FLAG.MF | 0x1fff)) !== 0;
}

/**
 * Writes a 20-byte IPv4 header (no options) and its checksum; `h.checksum` and
 * `h.headerLength` are ignored. Returns 20.
 */
export function encodeIpv4(h: Ipv4Header, b: Uint8Array, off = 0): number {
  b[off] = 0x45;
  b[off + 1] = h.tos & 0xff;
  wr16(b, off + 2, h.totalLength);
  wr16(b, off + 4, h.id);
  wr16(b, off + 6, h.fragment);
  b[off + 8] = h.ttl & 0xff;
  b[off + 9] = h.protocol & 0xff;
  wr16(b, off + 10, 0);
  wr32(b, off + 12, h.src);
  wr32(b, off + 16, h.dst);
  wr16(b, off + 10, inetChecksum(b, off, IPV4_HEADER_LEN));
  return IPV4_HEADER_LEN;
}

// ---------------------------------------------------------------------------
// TCP (RFC 9293)

export interface TcpOptions {
  /** Maximum segment size (SYN only). */
  mss?: number;
  /** Window scale shift count (SYN only). */
  wscale?: number;
  sackPermitted?: boolean;
  /** Timestamp value and echo reply, if present. */
  tsVal?: number;
  tsEcr?: number;
}

export interface TcpHeader {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** `TCP_FLAG` bits (the low 8 bits of byte 13). */
  flags: number;
  window: number;
  checksum: number;
  urgent: number;
  /** Header length in bytes including options (20..60). */
  headerLength: number;
  options: TcpOptions;
}

/**
 * Decodes a TCP header and its options. Null when the data offset is below 5 or
 * beyond `len`, or when an option's length is malformed. Unknown options are
 * skipped by their length. The checksum is not verified here: see `tcpChecksumOk`.
 */
export function decodeTcp(b: Uint8Array, off = 0, len = b.length - off): TcpHeader | null {
  if (len < TCP_HEADER_LEN || off + len > b.length) return null;
  const headerLength = ((b[off + 12] as number) >>> 4) * 4;
  if (headerLength < TCP_HEADER_LEN || headerLength > len) return null;
  const options: TcpOptions = {};
  let i = off + TCP_HEADER_LEN;
  const end = off + headerLength;
  while (i < end) {
    const kind = b[i] as number;
    if (kind === TCP_OPT.EOL) break;
    if (kind === TCP_OPT.NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return null;
    const olen = b[i + 1] as number;
    if (olen < 2 || i + olen > end) return null;
    if (kind === TCP_OPT.MSS && olen === 4) options.mss = rd16(b, i + 2);
    else if (kind === TCP_OPT.WSCALE && olen === 3) options.wscale = b[i + 2] as number;
    else if (kind === TCP_OPT.SACK_PERMITTED && olen === 2) options.sackPermitted = true;
    else if (kind === TCP_OPT.TIMESTAMP && olen === 10) {
      options.tsVal = rd32(b, i + 2);
      options.tsEcr = rd32(b, i + 6);
    }
    i += olen;
  }
  return {
    srcPort: rd16(b, off),
    dstPort: rd16(b, off + 2),
    seq: rd32(b, off + 4),
    ack: rd32(b, off + 8),
    flags: b[off + 13] as number,
    window: rd16(b, off + 14),
    checksum: rd16(b, off + 16),
    urgent: rd16(b, off + 18),
    headerLength,
    options,
  };
}

/** Bytes of options `encodeTcp` writes for `o` (a multiple of 4). */
export function tcpOptionsLength(o: TcpOptions): number {
  let n = 0;
  if (o.mss !== undefined) n += 4;
  if (o.tsVal !== undefined)
    n += 12; // [SACK-permitted or NOP NOP] + timestamps
  else if (o.sackPermitted) n += 4; // NOP NOP SACK-permitted
  if (o.wscale !== undefined) n += 4; // NOP WS
  return n;
}

/**
 * Writes a TCP header with options, checksum field zero (compute it with
 * `setTcpChecksum` once the payload is in place); `h.headerLength` and
 * `h.checksum` are ignored. Option order follows Linux: MSS, SACK-permitted,
 * timestamps, window scale, NOP-padded to a 4-byte boundary. Returns the
 * header length.
 */
export function encodeTcp(h: TcpHeader, b: Uint8Array, off = 0): number {
  const o = h.options;
  const hlen = TCP_HEADER_LEN + tcpOptionsLength(o);
  wr16(b, off, h.srcPort);
  wr16(b, off + 2, h.dstPort);
  wr32(b, off + 4, h.seq);
  wr32(b, off + 8, h.ack);
  b[off + 12] = (hlen / 4) << 4;
  b[off + 13] = h.flags & 0xff;
  wr16(b, off + 14, h.window);
  wr16(b, off + 16, 0);
  wr16(b, off + 18, h.urgent);
  let i = off + TCP_HEADER_LEN;
  if (o.mss !== undefined) {
    b[i] = TCP_OPT.MSS;
    b[i + 1] = 4;
    wr16(b, i + 2, o.mss);
    i += 4;
  }
  // Four-byte aligned groups, in Linux's order and padding.
  if (o.tsVal !== undefined) {
    if (o.sackPermitted) {
      b[i] = TCP_OPT.SACK_PERMITTED;
      b[i + 1] = 2;
    } else {
      b[i] = TCP_OPT.NOP;
      b[i + 1] = TCP_OPT.NOP;
    }
    b[i + 2] = TCP_OPT.TIMESTAMP;
    b[i + 3] = 10;
    wr32(b, i + 4, o.tsVal);
    wr32(b, i + 8, o.tsEcr ?? 0);
    i += 12;
  } else if (o.sackPermitted) {
    b[i] = TCP_OPT.NOP;
    b[i + 1] = TCP_OPT.NOP;
    b[i + 2] = TCP_OPT.SACK_PERMITTED;
    b[i + 3] = 2;
    i += 4;
  }
  if (o.wscale !== undefined) {
    b[i] = TCP_OPT.NOP;
    b[i + 1] = TCP_OPT.WSCALE;
    b[i + 2] = 3;
    b[i + 3] = o.wscale;
    i += 4;
  }
  return hlen;
}

/** Checksum of a TCP segment (header with checksum field as stored, plus payload) with its pseudo-header. */
export function tcpChecksum(src: number, dst: number, b: Uint8Array, off: number, len: number): number {
  return inetChecksum(b, off, len, pseudoHeaderSum(src, dst, IP_PROTO.TCP, len));
}

/** Computes and stores the checksum of the TCP segment `b[off..off+len)`. */
export function setTcpChecksum(src: number, dst: number, b: Uint8Array, off: number, len: number): void {
  wr16(b, off + 16, 0);
  wr16(b, off + 16, tcpChecksum(src, dst, b, off, len));
}

/** True when the TCP segment's checksum (with pseudo-header) verifies. */
export function tcpChecksumOk(src: number, dst: number, b: Uint8Array, off: number, len: number): boolean {
  return foldSum(sumWords(b, off, len, pseudoHeaderSum(src, dst, IP_PROTO.TCP, len))) === 0xffff;
}

// ---------------------------------------------------------------------------
// ICMP echo (RFC 792)

export interface IcmpEcho {
  type: number;
  code: number;
  checksum: number;
  id: number;
  seq: number;
}

/** Decodes the 8-byte header of an ICMP echo request or reply; null when too short. */
export function decodeIcmpEcho(b: Uint8Array, off = 0, len = b.length - off): IcmpEcho | null {
  if (len < ICMP_ECHO_HEADER_LEN || off + len > b.length) return null;
  return {
    type: b[off] as number,
    code: b[off + 1] as number,
    checksum: rd16(b, off + 2),
    id: rd16(b, off + 4),
    seq: rd16(b, off + 6),
  };
}

/** Writes an ICMP echo header; the checksum covers `totalLen` bytes (header plus data already in place). */
export function encodeIcmpEcho(h: IcmpEcho, b: Uint8Array, off: number, totalLen: number): number {
  b[off] = h.type;
  b[off + 1] = h.code;
  wr16(b, off + 2, 0);
  wr16(b, off + 4, h.id);
  wr16(b, off + 6, h.seq);
  wr16(b, off + 2, inetChecksum(b, off, totalLen));
  return ICMP_ECHO_HEADER_LEN;
}

// ---------------------------------------------------------------------------
// Sequence-number arithmetic (RFC 9293 section 3.4): comparisons modulo 2^32.

/** a < b in sequence space. */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}
/** a <= b in sequence space. */
export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}
/** a > b in sequence space. */
export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}
/** a >= b in sequence space. */
export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}
