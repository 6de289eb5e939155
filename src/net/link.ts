/**
 * Below TCP: building IPv4 frames, choosing the next hop, the ARP cache with
 * its per-entry queue of frames awaiting resolution, the control-frame queue
 * that keeps stateless replies (RSTs for nobody, ARP replies, echo replies)
 * across a full NIC ring, and ICMP echo. All state is in `Mem` (see layout.ts).
 */
import type { Ctx } from "./ctx.js";
import { A, ARP_ENTRY_SIZE, ArpState, FC, R, S } from "./layout.js";
import {
  ARP_OP,
  ARP_PACKET_LEN,
  BROADCAST_MAC,
  decodeArp,
  decodeIcmpEcho,
  ETH_HEADER_LEN,
  ETH_MTU,
  ETHERTYPE,
  encodeArp,
  encodeIcmpEcho,
  encodeIpv4,
  foldSum,
  ICMP_ECHO_HEADER_LEN,
  ICMP_TYPE,
  IP_FLAG,
  IP_PROTO,
  IPV4_HEADER_LEN,
  type Ipv4Header,
  sumWords,
  wr16,
  ZERO_MAC,
} from "./wire.js";

/** Offset of the IP header in every frame we build, and of the transport header. */
export const IP_OFF = ETH_HEADER_LEN;
export const L4_OFF = ETH_HEADER_LEN + IPV4_HEADER_LEN;

/**
 * Frames an unresolved ARP entry holds; beyond this the oldest is dropped. Linux
 * keeps 3 by default, but then 8 clients connecting at once to an unresolved
 * host lose half their SYNs behind ARP and wait a 1 s SYN retransmission.
 */
export const ARP_QUEUE_MAX = 16;
/** ARP requests sent for one resolution before giving up. */
export const ARP_MAX_TRIES = 3;
/** Interval between ARP requests while resolving, ms. */
export const ARP_RETRY_MS = 1000;
/** Stateless control frames kept while the NIC ring is full; beyond this they are dropped (and counted). */
export const CTL_QUEUE_MAX = 16;

export const SendResult = {
  /** Handed to the NIC. */
  SENT: 0,
  /** Kept in memory (ARP resolution pending, or the control queue) and sent later. */
  QUEUED: 1,
  /** The NIC refused it and the caller keeps responsibility (TCP retries from its own state). */
  BLOCKED: 2,
  /** Lost (out of guest memory, or a queue overflowed); counted. */
  DROPPED: 3,
} as const;
export type SendResult = (typeof SendResult)[keyof typeof SendResult];

/** Hands a frame to the NIC, counting the outcome. */
export function emit(c: Ctx, frame: Uint8Array): boolean {
  if (c.env.transmit(frame)) {
    c.bump(S.framesOut);
    return true;
  }
  c.bump(S.txBlocked);
  return false;
}

/**
 * A fresh frame with the Ethernet header (destination left zero for `sendIp`)
 * and a 20-byte IPv4 header (DF, TTL 64, checksum) in place; the caller
 * writes `payloadLen` bytes at `L4_OFF`.
 */
export function ipFrame(c: Ctx, dst: number, protocol: number, payloadLen: number): Buffer {
  const f = Buffer.allocUnsafe(L4_OFF + payloadLen);
  f.fill(0, 0, 6);
  f.set(c.mac, 6);
  wr16(f, 12, ETHERTYPE.IPV4);
  const m = c.mem;
  const id = m.u16(c.root + R.IP_ID);
  m.setU16(c.root + R.IP_ID, (id + 1) & 0xffff);
  encodeIpv4(
    {
      tos: 0,
      totalLength: IPV4_HEADER_LEN + payloadLen,
      id,
      fragment: IP_FLAG.DF,
      ttl: 64,
      protocol,
      checksum: 0,
      src: c.ip,
      dst,
      headerLength: IPV4_HEADER_LEN,
    },
    f,
    IP_OFF,
  );
  return f;
}

/** The on-link address frames to `dst` go to: `dst` itself, or the gateway when `dst` is off the subnet. */
export function nextHop(c: Ctx, dst: number): number {
  if (c.gateway !== 0 && ((dst ^ c.ip) & c.netmask) !== 0) return c.gateway;
  return dst;
}

/**
 * Sends an IPv4 frame built by `ipFrame` to `dst`: fills in the destination
 * MAC from the ARP cache, or parks the frame on the ARP entry and starts
 * resolution. When the NIC refuses it, `ctlOnBlock` decides: stateless
 * replies go to the control queue, TCP gets `BLOCKED` and retries from its
 * own state.
 */
export function sendIp(c: Ctx, frame: Buffer, dst: number, ctlOnBlock: boolean): SendResult {
  const m = c.mem;
  const hop = nextHop(c, dst);
  const e = arpFind(c, hop);
  if (e !== 0 && m.u8(e + A.STATE) === ArpState.RESOLVED && m.u64(e + A.TIME) > c.now) {
    // Frames parked on a resolved entry (the NIC refused them earlier) go first, to keep order.
    if (m.u8(e + A.QLEN) > 0) arpFlush(c, e);
    if (m.u8(e + A.QLEN) === 0) {
      m.readInto(e + A.MAC, frame, 0, 6);
      if (emit(c, frame)) {
        c.bump(S.ipOut);
        return SendResult.SENT;
      }
    }
    if (ctlOnBlock) {
      m.readInto(e + A.MAC, frame, 0, 6);
      c.bump(S.ipOut);
      return ctlEnqueue(c, frame);
    }
    return SendResult.BLOCKED;
  }
  c.bump(S.ipOut);
  return arpEnqueue(c, e, hop, frame);
}

// ---------------------------------------------------------------------------
// Frame chunks (ARP queues and the control queue)

function chunkOf(c: Ctx, frame: Uint8Array): number {
  const ch = c.heap.tryAlloc(FC.DATA + frame.length);
  if (ch === 0) {
    c.bump(S.noMemory);
    return 0;
  }
  c.mem.setU16(ch + FC.LEN, frame.length);
  c.mem.write(ch + FC.DATA, frame);
  return ch;
}

function freeChunk(c: Ctx, ch: number): void {
  c.heap.free(ch, FC.DATA + c.mem.u16(ch + FC.LEN));
}

function ctlEnqueue(c: Ctx, frame: Uint8Array): SendResult {
  const m = c.mem;
  const root = c.root;
  if (m.u32(root + R.CTL_COUNT) >= CTL_QUEUE_MAX) {
    c.bump(S.ctlDropped);
    return SendResult.DROPPED;
  }
  const ch = chunkOf(c, frame);
  if (ch === 0) {
    c.bump(S.ctlDropped);
    return SendResult.DROPPED;
  }
  const tail = m.u32(root + R.CTL_TAIL);
  if (tail === 0) m.setU32(root + R.CTL_HEAD, ch);
  else m.setU32(tail + FC.NEXT, ch);
  m.setU32(root + R.CTL_TAIL, ch);
  m.setU32(root + R.CTL_COUNT, m.u32(root + R.CTL_COUNT) + 1);
  c.bump(S.ctlQueued);
  return SendResult.QUEUED;
}

/** Sends queued control frames in order until the NIC refuses one. */
export function ctlFlush(c: Ctx): void {
  const m = c.mem;
  const root = c.root;
  let ch = m.u32(root + R.CTL_HEAD);
  while (ch !== 0) {
    if (!emit(c, m.read(ch + FC.DATA, m.u16(ch + FC.LEN)))) return;
    const next = m.u32(ch + FC.NEXT);
    freeChunk(c, ch);
    m.setU32(root + R.CTL_HEAD, next);
    if (next === 0) m.setU32(root + R.CTL_TAIL, 0);
    m.setU32(root + R.CTL_COUNT, m.u32(root + R.CTL_COUNT) - 1);
    ch = next;
  }
}

/** Sends a frame we build for a stateless reply; parks it in the control queue if the NIC is full. */
function emitCtl(c: Ctx, frame: Uint8Array): void {
  if (!emit(c, frame)) ctlEnqueue(c, frame);
}

// ---------------------------------------------------------------------------
// ARP cache

function arpEntry(c: Ctx, i: number): number {
  return c.arpTable + i * ARP_ENTRY_SIZE;
}

/** The cache entry for `ip` (any state but free), or 0. */
export function arpFind(c: Ctx, ip: number): number {
  const m = c.mem;
  for (let i = 0; i < c.arpEntries; i++) {
    const e = arpEntry(c, i);
    if (m.u8(e + A.STATE) !== ArpState.FREE && m.u32(e + A.IP) === ip) return e;
  }
  return 0;
}

function dropQueue(c: Ctx, e: number): void {
  const m = c.mem;
  let ch = m.u32(e + A.QHEAD);
  let n = 0;
  while (ch !== 0) {
    const next = m.u32(ch + FC.NEXT);
    freeChunk(c, ch);
    ch = next;
    n++;
  }
  if (n > 0) c.bump(S.arpQueueDrops, n);
  m.setU32(e + A.QHEAD, 0);
  m.setU32(e + A.QTAIL, 0);
  m.setU8(e + A.QLEN, 0);
}

function arpRelease(c: Ctx, e: number): void {
  dropQueue(c, e);
  c.mem.fill(e, ARP_ENTRY_SIZE, 0);
}

/** A fresh entry for `ip`: a free slot, else the resolved entry closest to expiry, else the first one. */
function arpAlloc(c: Ctx, ip: number): number {
  const m = c.mem;
  let victim = 0;
  let victimTime = Number.POSITIVE_INFINITY;
  for (let i = 0; i < c.arpEntries; i++) {
    const e = arpEntry(c, i);
    const st = m.u8(e + A.STATE);
    if (st === ArpState.FREE) {
      victim = e;
      break;
    }
    if (st === ArpState.RESOLVED && m.u8(e + A.QLEN) === 0 && m.u64(e + A.TIME) < victimTime) {
      victim = e;
      victimTime = m.u64(e + A.TIME);
    }
  }
  if (victim === 0) victim = arpEntry(c, 0);
  arpRelease(c, victim);
  m.setU32(victim + A.IP, ip);
  return victim;
}

function arpRequest(c: Ctx, e: number): void {
  const m = c.mem;
  const f = Buffer.allocUnsafe(ETH_HEADER_LEN + ARP_PACKET_LEN);
  f.set(BROADCAST_MAC, 0);
  f.set(c.mac, 6);
  wr16(f, 12, ETHERTYPE.ARP);
  encodeArp(
    { op: ARP_OP.REQUEST, sha: c.mac, spa: c.ip, tha: ZERO_MAC, tpa: m.u32(e + A.IP) },
    f,
    ETH_HEADER_LEN,
  );
  if (emit(c, f)) {
    c.bump(S.arpRequestsSent);
    m.setU8(e + A.TRIES, m.u8(e + A.TRIES) + 1);
    m.setU64(e + A.TIME, c.now + ARP_RETRY_MS);
  } else {
    // Not sent: try again a millisecond later without using up a try.
    m.setU64(e + A.TIME, c.now + 1);
  }
}

function arpEnqueue(c: Ctx, found: number, hop: number, frame: Uint8Array): SendResult {
  const m = c.mem;
  let e = found;
  if (e === 0) e = arpAlloc(c, hop);
  if (m.u8(e + A.STATE) !== ArpState.RESOLVED || m.u64(e + A.TIME) <= c.now) {
    if (m.u8(e + A.STATE) !== ArpState.INCOMPLETE) {
      // New, or an expired entry: resolve afresh.
      m.setU8(e + A.STATE, ArpState.INCOMPLETE);
      m.setU8(e + A.TRIES, 0);
      m.setU64(e + A.TIME, c.now);
    }
  }
  const ch = chunkOf(c, frame);
  if (ch === 0) return SendResult.DROPPED;
  const tail = m.u32(e + A.QTAIL);
  if (tail === 0) m.setU32(e + A.QHEAD, ch);
  else m.setU32(tail + FC.NEXT, ch);
  m.setU32(e + A.QTAIL, ch);
  m.setU8(e + A.QLEN, m.u8(e + A.QLEN) + 1);
  c.bump(S.arpQueued);
  if (m.u8(e + A.QLEN) > ARP_QUEUE_MAX) {
    const head = m.u32(e + A.QHEAD);
    m.setU32(e + A.QHEAD, m.u32(head + FC.NEXT));
    freeChunk(c, head);
    m.setU8(e + A.QLEN, m.u8(e + A.QLEN) - 1);
    c.bump(S.arpQueueDrops);
  }
  if (m.u8(e + A.STATE) === ArpState.INCOMPLETE) {
    if (m.u64(e + A.TIME) <= c.now) arpRequest(c, e);
  } else {
    arpFlush(c, e);
  }
  return SendResult.QUEUED;
}

/** Sends a resolved entry's queued frames in order until the NIC refuses one. */
function arpFlush(c: Ctx, e: number): void {
  const m = c.mem;
  let ch = m.u32(e + A.QHEAD);
  while (ch !== 0) {
    const f = m.read(ch + FC.DATA, m.u16(ch + FC.LEN));
    m.readInto(e + A.MAC, f, 0, 6);
    if (!emit(c, f)) return;
    const next = m.u32(ch + FC.NEXT);
    freeChunk(c, ch);
    m.setU32(e + A.QHEAD, next);
    if (next === 0) m.setU32(e + A.QTAIL, 0);
    m.setU8(e + A.QLEN, m.u8(e + A.QLEN) - 1);
    ch = next;
  }
}

/** ARP timers: request retries and failures, flushing queues, ageing out resolved entries. */
export function arpPoll(c: Ctx): void {
  const m = c.mem;
  for (let i = 0; i < c.arpEntries; i++) {
    const e = arpEntry(c, i);
    const st = m.u8(e + A.STATE);
    if (st === ArpState.INCOMPLETE) {
      if (m.u64(e + A.TIME) > c.now) continue;
      if (m.u8(e + A.TRIES) >= ARP_MAX_TRIES) {
        c.bump(S.arpResolveFailures);
        arpRelease(c, e);
      } else {
        arpRequest(c, e);
      }
    } else if (st === ArpState.RESOLVED) {
      if (m.u8(e + A.QLEN) > 0) arpFlush(c, e);
      else if (m.u64(e + A.TIME) <= c.now) arpRelease(c, e);
    }
  }
}

/** Earliest ARP deadline that needs a poll (request retries, pending flushes), or +Infinity. */
export function arpNextTimer(c: Ctx): number {
  const m = c.mem;
  let next = Number.POSITIVE_INFINITY;
  for (let i = 0; i < c.arpEntries; i++) {
    const e = arpEntry(c, i);
    if (m.u8(e + A.STATE) === ArpState.INCOMPLETE) next = Math.min(next, m.u64(e + A.TIME));
  }
  return next;
}

/** True when frames wait in the control queue or on a resolved ARP entry (the NIC refused them). */
export function linkPendingOutput(c: Ctx): boolean {
  const m = c.mem;
  if (m.u32(c.root + R.CTL_COUNT) > 0) return true;
  for (let i = 0; i < c.arpEntries; i++) {
    const e = arpEntry(c, i);
    if (m.u8(e + A.STATE) === ArpState.RESOLVED && m.u8(e + A.QLEN) > 0) return true;
  }
  return false;
}

/**
 * One received ARP packet (RFC 826 reception algorithm): refresh the sender's
 * entry if we have one (this is how a gratuitous ARP moves an address to a new
 * MAC), add it if the packet is for us, and answer requests for our address.
 */
export function arpInput(c: Ctx, frame: Uint8Array, off: number, len: number): void {
  const p = decodeArp(frame, off, len);
  if (p === null) {
    c.bump(S.badFrames);
    return;
  }
  c.bump(S.arpIn);
  if (p.spa === c.ip) {
    // Our own announcement reflected, or somebody else claiming our address.
    if (!macEq(p.sha, c.mac)) c.bump(S.arpConflicts);
    return;
  }
  const unicastSender = ((p.sha[0] as number) & 1) === 0 && !macEq(p.sha, ZERO_MAC);
  let merged = false;
  if (p.spa !== 0 && unicastSender) {
    const e = arpFind(c, p.spa);
    if (e !== 0) {
      refresh(c, e, p.sha);
      merged = true;
    }
  }
  if (p.tpa !== c.ip) return;
  if (!merged && p.spa !== 0 && unicastSender) refresh(c, arpAlloc(c, p.spa), p.sha);
  if (p.op === ARP_OP.REQUEST && unicastSender) {
    const f = Buffer.allocUnsafe(ETH_HEADER_LEN + ARP_PACKET_LEN);
    f.set(p.sha, 0);
    f.set(c.mac, 6);
    wr16(f, 12, ETHERTYPE.ARP);
    encodeArp({ op: ARP_OP.REPLY, sha: c.mac, spa: c.ip, tha: p.sha, tpa: p.spa }, f, ETH_HEADER_LEN);
    c.bump(S.arpRepliesSent);
    emitCtl(c, f);
  }
}

function refresh(c: Ctx, e: number, mac: Uint8Array): void {
  const m = c.mem;
  m.write(e + A.MAC, mac, 0, 6);
  m.setU8(e + A.STATE, ArpState.RESOLVED);
  m.setU8(e + A.TRIES, 0);
  m.setU64(e + A.TIME, c.now + c.arpTimeout);
  c.bump(S.arpCacheUpdates);
  if (m.u8(e + A.QLEN) > 0) arpFlush(c, e);
}

function macEq(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Broadcasts a gratuitous ARP (a request with sender and target both our address) so peers and switches relearn our MAC. */
export function announce(c: Ctx): void {
  const f = Buffer.allocUnsafe(ETH_HEADER_LEN + ARP_PACKET_LEN);
  f.set(BROADCAST_MAC, 0);
  f.set(c.mac, 6);
  wr16(f, 12, ETHERTYPE.ARP);
  encodeArp({ op: ARP_OP.REQUEST, sha: c.mac, spa: c.ip, tha: ZERO_MAC, tpa: c.ip }, f, ETH_HEADER_LEN);
  c.bump(S.arpAnnounces);
  emitCtl(c, f);
}

// ---------------------------------------------------------------------------
// ICMP echo

/** Answers an echo request addressed to us with an echo reply carrying the same identifier, sequence and data. */
export function icmpInput(c: Ctx, frame: Uint8Array, ip: Ipv4Header, off: number): void {
  const len = ip.totalLength - ip.headerLength;
  const h = decodeIcmpEcho(frame, off, len);
  c.bump(S.icmpIn);
  if (h === null) {
    c.bump(S.ipBadHeaders);
    return;
  }
  if (foldSum(sumWords(frame, off, len)) !== 0xffff) {
    c.bump(S.icmpBadChecksums);
    return;
  }
  // A reply must fit our MTU (we never fragment).
  if (h.type !== ICMP_TYPE.ECHO_REQUEST || h.code !== 0 || IPV4_HEADER_LEN + len > ETH_MTU) return;
  const f = ipFrame(c, ip.src, IP_PROTO.ICMP, len);
  f.set(frame.subarray(off + ICMP_ECHO_HEADER_LEN, off + len), L4_OFF + ICMP_ECHO_HEADER_LEN);
  encodeIcmpEcho({ type: ICMP_TYPE.ECHO_REPLY, code: 0, checksum: 0, id: h.id, seq: h.seq }, f, L4_OFF, len);
  c.bump(S.icmpEchoReplies);
  sendIp(c, f, ip.src, true);
}
