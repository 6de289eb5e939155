/** Independent reference computations and golden frames shared by the net tests. */

/**
 * Reference Internet checksum, written differently on purpose: one's
 * complement addition with the end-around carry folded after every word
 * (RFC 1071 section 2(A)), over a plain array.
 */
export function refChecksum(bytes: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    const hi = bytes[i] as number;
    const lo = i + 1 < bytes.length ? (bytes[i + 1] as number) : 0;
    sum += hi * 256 + lo;
    if (sum > 0xffff) sum = sum - 0x10000 + 1;
  }
  return 0xffff - sum;
}

/** Reference TCP checksum: the reference sum over an explicit pseudo-header followed by the segment. */
export function refTcpChecksum(src: number, dst: number, segment: ArrayLike<number>): number {
  const ph = [
    src >>> 24,
    (src >>> 16) & 255,
    (src >>> 8) & 255,
    src & 255,
    dst >>> 24,
    (dst >>> 16) & 255,
    (dst >>> 8) & 255,
    dst & 255,
    0,
    6,
    segment.length >>> 8,
    segment.length & 255,
  ];
  return refChecksum([...ph, ...Array.from(segment)]);
}

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Captured from Linux (TAP device rtap0, 10.9.0.1 -> 10.9.0.2:80, `connect()`), unmodified.
export const LINUX_ARP_REQUEST = hex(`
  ffffffffffff 7ec87fa03e25 0806
  0001 0800 06 04 0001 7ec87fa03e25 0a090001 000000000000 0a090002`);
export const LINUX_SYN = hex(`
  020000000099 7ec87fa03e25 0800
  4500 003c 25f5 4000 4006 00b3 0a090001 0a090002
  c24c 0050 ef0fe73e 00000000 a002 faf0 bbf6 0000
  020405b4 0402 080ab1ac326900000000 01 03030a`);
