/**
 * TCP (RFC 9293) over control blocks in `Mem`: the socket table and 4-tuple
 * hash, segment arrival (the RFC's "SEGMENT ARRIVES" steps), output, timers
 * (RTO per RFC 6298, persist, delayed ACK, TIME_WAIT), NewReno congestion
 * control (RFC 5681/6582) and the RFC 5961 checks. Every function takes the
 * call's `Ctx` and a TCB address; none keeps anything between calls.
 * Layout: `T`/`TF` in layout.ts. Design notes: the top of stack.ts.
 */
import { RemusError } from "../errors.js";
import type { Ctx } from "./ctx.js";
import { OOO_MAX, R, S, T, TCB_SIZE, TF } from "./layout.js";
import { ipFrame, L4_OFF, SendResult, sendIp } from "./link.js";
import {
  decodeTcp,
  encodeTcp,
  IP_PROTO,
  type Ipv4Header,
  seqGe,
  seqGt,
  seqLe,
  seqLt,
  setTcpChecksum,
  TCP_FLAG,
  TCP_HEADER_LEN,
  type TcpOptions,
  tcpChecksumOk,
  tcpOptionsLength,
} from "./wire.js";

/** Connection states (RFC 9293 section 3.3.2). */
export const TcpState = {
  CLOSED: 0,
  LISTEN: 1,
  SYN_SENT: 2,
  SYN_RCVD: 3,
  ESTABLISHED: 4,
  FIN_WAIT_1: 5,
  FIN_WAIT_2: 6,
  CLOSE_WAIT: 7,
  CLOSING: 8,
  LAST_ACK: 9,
  TIME_WAIT: 10,
} as const;
export type TcpState = (typeof TcpState)[keyof typeof TcpState];

export const TCP_STATE_NAMES = [
  "CLOSED",
  "LISTEN",
  "SYN_SENT",
  "SYN_RCVD",
  "ESTABLISHED",
  "FIN_WAIT_1",
  "FIN_WAIT_2",
  "CLOSE_WAIT",
  "CLOSING",
  "LAST_ACK",
  "TIME_WAIT",
] as const;
export type TcpStateName = (typeof TCP_STATE_NAMES)[number];

/** Why a connection ended abnormally. */
export const TcpError = {
  NONE: 0,
  /** The peer sent an acceptable RST. */
  RESET: 1,
  /** The peer answered our SYN with a RST. */
  REFUSED: 2,
  /** Retransmissions gave up (SYN or data). */
  TIMEOUT: 3,
} as const;
export type TcpError = (typeof TcpError)[keyof typeof TcpError];

const { FIN, SYN, RST, PSH, ACK } = TCP_FLAG;
const St = TcpState;
/** Default send MSS when the peer's SYN has no MSS option (RFC 9293 3.7.1). */
const DEFAULT_PEER_MSS = 536;
/** Smallest MSS we accept from a peer; tiny MSS values are a resource-exhaustion trick. */
const MIN_PEER_MSS = 64;
/** Initial congestion window in segments (RFC 6928). */
const INITIAL_WINDOW_SEGMENTS = 10;
const CWND_MAX = 0x3fffffff;
const PERSIST_MAX_BACKOFF = 16;
const EPHEMERAL_FIRST = 49152;
const EPHEMERAL_COUNT = 16384;

// ---------------------------------------------------------------------------
// Socket ids, the socket table and the 4-tuple hash

/**
 * A socket id is `gen * 65536 + slot + 1`: the slot indexes the socket table,
 * and the generation (stamped into the TCB when it is allocated) makes an id
 * of a freed socket fail to resolve even after its slot is reused.
 */
export function socketId(c: Ctx, t: number): number {
  return c.mem.u16(t + T.GEN) * 65536 + c.mem.u16(t + T.SLOT) + 1;
}

/** The TCB an id names, or 0 (never throws). */
export function tcbOf(c: Ctx, id: number): number {
  if (!Number.isInteger(id) || id <= 0 || id > 0xffffffff) return 0;
  const slot = (id % 65536) - 1;
  const gen = Math.floor(id / 65536);
  if (slot < 0 || slot >= c.maxSockets || gen === 0) return 0;
  const t = c.mem.u32(c.sockTable + slot * 4);
  if (t === 0 || c.mem.u16(t + T.GEN) !== gen) return 0;
  return t;
}

function tcbAt(c: Ctx, slot: number): number {
  return c.mem.u32(c.sockTable + slot * 4);
}

function allocTcb(c: Ctx): number {
  const m = c.mem;
  let slot = -1;
  for (let i = 0; i < c.maxSockets; i++) {
    if (tcbAt(c, i) === 0) {
      slot = i;
      break;
    }
  }
  if (slot < 0) return 0;
  const t = c.heap.tryAlloc(TCB_SIZE);
  if (t === 0) {
    c.bump(S.noMemory);
    return 0;
  }
  let gen = (m.u16(c.root + R.GEN) + 1) & 0xffff;
  if (gen === 0) gen = 1;
  m.setU16(c.root + R.GEN, gen);
  m.setU16(t + T.GEN, gen);
  m.setU16(t + T.SLOT, slot);
  m.setU32(c.sockTable + slot * 4, t);
  m.setU32(c.root + R.LIVE_SOCKETS, m.u32(c.root + R.LIVE_SOCKETS) + 1);
  return t;
}

function allocBuffers(c: Ctx, t: number): boolean {
  const m = c.mem;
  const snd = c.heap.tryAlloc(c.sndBuf);
  if (snd === 0) {
    c.bump(S.noMemory);
    return false;
  }
  const rcv = c.heap.tryAlloc(c.rcvBuf);
  if (rcv === 0) {
    c.heap.free(snd, c.sndBuf);
    c.bump(S.noMemory);
    return false;
  }
  m.setU32(t + T.SND_BUF, snd);
  m.setU32(t + T.SND_SIZE, c.sndBuf);
  m.setU32(t + T.RCV_BUF, rcv);
  m.setU32(t + T.RCV_SIZE, c.rcvBuf);
  return true;
}

function freeTcb(c: Ctx, t: number): void {
  const m = c.mem;
  hashRemove(c, t);
  const snd = m.u32(t + T.SND_BUF);
  if (snd !== 0) c.heap.free(snd, m.u32(t + T.SND_SIZE));
  const rcv = m.u32(t + T.RCV_BUF);
  if (rcv !== 0) c.heap.free(rcv, m.u32(t + T.RCV_SIZE));
  m.setU32(c.sockTable + m.u16(t + T.SLOT) * 4, 0);
  c.heap.free(t, TCB_SIZE);
  m.setU32(c.root + R.LIVE_SOCKETS, m.u32(c.root + R.LIVE_SOCKETS) - 1);
}

function bucketAddr(c: Ctx, rip: number, rport: number, lport: number): number {
  let h = Math.imul((rip ^ (rport * 65536 + lport)) | 0, 0x9e3779b1);
  h ^= h >>> 15;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return c.hashTable + (h & c.hashMask) * 4;
}

/** The TCB bound to (remote ip, remote port, local port); listeners are bound to (0, 0, port). */
export function hashFind(c: Ctx, rip: number, rport: number, lport: number): number {
  const m = c.mem;
  let t = m.u32(bucketAddr(c, rip, rport, lport));
  while (t !== 0) {
    if (m.u16(t + T.LPORT) === lport && m.u16(t + T.RPORT) === rport && m.u32(t + T.RIP) === rip) return t;
    t = m.u32(t + T.HASH_NEXT);
  }
  return 0;
}

function hashInsert(c: Ctx, t: number): void {
  const m = c.mem;
  const b = bucketAddr(c, m.u32(t + T.RIP), m.u16(t + T.RPORT), m.u16(t + T.LPORT));
  m.setU32(t + T.HASH_NEXT, m.u32(b));
  m.setU32(b, t);
  setFlag(c, t, TF.HASHED);
}

function hashRemove(c: Ctx, t: number): void {
  const m = c.mem;
  if (!hasFlag(c, t, TF.HASHED)) return;
  const b = bucketAddr(c, m.u32(t + T.RIP), m.u16(t + T.RPORT), m.u16(t + T.LPORT));
  let prev = 0;
  let cur = m.u32(b);
  while (cur !== 0 && cur !== t) {
    prev = cur;
    cur = m.u32(cur + T.HASH_NEXT);
  }
  if (cur === t) {
    const next = m.u32(t + T.HASH_NEXT);
    if (prev === 0) m.setU32(b, next);
    else m.setU32(prev + T.HASH_NEXT, next);
  }
  m.setU32(t + T.HASH_NEXT, 0);
  clearFlag(c, t, TF.HASHED);
}

// ---------------------------------------------------------------------------
// Small accessors

function flags(c: Ctx, t: number): number {
  return c.mem.u32(t + T.FLAGS);
}
function hasFlag(c: Ctx, t: number, f: number): boolean {
  return (c.mem.u32(t + T.FLAGS) & f) !== 0;
}
function setFlag(c: Ctx, t: number, f: number): void {
  c.mem.setU32(t + T.FLAGS, c.mem.u32(t + T.FLAGS) | f);
}
function clearFlag(c: Ctx, t: number, f: number): void {
  c.mem.setU32(t + T.FLAGS, c.mem.u32(t + T.FLAGS) & ~f);
}
export function stateOf(c: Ctx, t: number): TcpState {
  return c.mem.u8(t + T.STATE) as TcpState;
}
function setState(c: Ctx, t: number, s: TcpState): void {
  c.mem.setU8(t + T.STATE, s);
}

/** States in which our SYN has been acknowledged and data may be sent (retransmitted, for the FIN states). */
function canSendData(s: TcpState): boolean {
  return (
    s === St.ESTABLISHED ||
    s === St.CLOSE_WAIT ||
    s === St.FIN_WAIT_1 ||
    s === St.CLOSING ||
    s === St.LAST_ACK
  );
}
/** States in which received data is accepted. */
function canReceiveData(s: TcpState): boolean {
  return s === St.ESTABLISHED || s === St.FIN_WAIT_1 || s === St.FIN_WAIT_2;
}

/** Copies `len` bytes of `src` into the ring at `ring` (size `size`) starting at ring offset `pos`. */
function ringWrite(
  c: Ctx,
  ring: number,
  size: number,
  pos: number,
  src: Uint8Array,
  srcOff: number,
  len: number,
): void {
  const first = Math.min(len, size - pos);
  c.mem.write(ring + pos, src, srcOff, first);
  if (first < len) c.mem.write(ring, src, srcOff + first, len - first);
}

function ringRead(
  c: Ctx,
  ring: number,
  size: number,
  pos: number,
  dst: Uint8Array,
  dstOff: number,
  len: number,
): void {
  const first = Math.min(len, size - pos);
  c.mem.readInto(ring + pos, dst, dstOff, first);
  if (first < len) c.mem.readInto(ring, dst, dstOff + first, len - first);
}

// ---------------------------------------------------------------------------
// Opening

function initConnection(c: Ctx, t: number, rip: number, rport: number, lport: number): void {
  const m = c.mem;
  const iss = c.env.random32() >>> 0;
  m.setU32(t + T.RIP, rip);
  m.setU16(t + T.RPORT, rport);
  m.setU16(t + T.LPORT, lport);
  m.setU32(t + T.ISS, iss);
  m.setU32(t + T.SND_UNA, iss);
  m.setU32(t + T.SND_NXT, iss);
  m.setU32(t + T.SND_MAX, iss);
  m.setU32(t + T.RECOVER, iss);
  m.setU16(t + T.SND_MSS, Math.min(c.mss, DEFAULT_PEER_MSS));
  m.setU32(t + T.SSTHRESH, CWND_MAX);
  m.setU32(t + T.RTO, c.initRto);
}

/** Applies the options of the peer's SYN: its MSS and (if both sides offer it) window scaling. */
function applySynOptions(c: Ctx, t: number, o: TcpOptions): void {
  const m = c.mem;
  const peerMss = o.mss === undefined ? DEFAULT_PEER_MSS : Math.max(o.mss, MIN_PEER_MSS);
  const mss = Math.min(c.mss, peerMss);
  m.setU16(t + T.SND_MSS, mss);
  if (o.wscale !== undefined) {
    setFlag(c, t, TF.WSCALE);
    m.setU8(t + T.SND_SHIFT, Math.min(o.wscale, 14));
    m.setU8(t + T.RCV_SHIFT, c.rcvShift);
  } else {
    clearFlag(c, t, TF.WSCALE);
    m.setU8(t + T.SND_SHIFT, 0);
    m.setU8(t + T.RCV_SHIFT, 0);
  }
  m.setU32(t + T.CWND, INITIAL_WINDOW_SEGMENTS * mss);
}

/** A free ephemeral port for a connection to (rip, rport), or 0. */
function ephemeralPort(c: Ctx, rip: number, rport: number): number {
  const start = c.env.random32() % EPHEMERAL_COUNT;
  for (let i = 0; i < EPHEMERAL_COUNT; i++) {
    const p = EPHEMERAL_FIRST + ((start + i) % EPHEMERAL_COUNT);
    if (hashFind(c, rip, rport, p) === 0 && hashFind(c, 0, 0, p) === 0) return p;
  }
  return 0;
}

/** Active open. Throws `REMUSD_ERR_NO_SPACE` when no socket slot, buffer memory or port is free. */
export function tcpConnect(c: Ctx, rip: number, rport: number, lport: number): number {
  const m = c.mem;
  const port = lport !== 0 ? lport : ephemeralPort(c, rip, rport);
  if (port === 0) throw new RemusError("REMUSD_ERR_NO_SPACE", "no free ephemeral port");
  if (hashFind(c, rip, rport, port) !== 0) {
    throw new RemusError(
      "REMUSD_ERR_BAD_USAGE",
      `connection to port ${rport} from local port ${port} already exists`,
    );
  }
  const t = allocTcb(c);
  if (t === 0) throw new RemusError("REMUSD_ERR_NO_SPACE", "no free socket");
  if (!allocBuffers(c, t)) {
    freeTcb(c, t);
    throw new RemusError("REMUSD_ERR_NO_SPACE", "no guest memory for socket buffers");
  }
  initConnection(c, t, rip, rport, port);
  m.setU32(t + T.FLAGS, TF.OWNED);
  setState(c, t, St.SYN_SENT);
  hashInsert(c, t);
  c.bump(S.tcpActiveOpens);
  output(c, t, false);
  return socketId(c, t);
}

/** Passive open on `port`. */
export function tcpListen(c: Ctx, port: number, backlog: number): number {
  if (hashFind(c, 0, 0, port) !== 0)
    throw new RemusError("REMUSD_ERR_BAD_USAGE", `port ${port} is already listening`);
  const t = allocTcb(c);
  if (t === 0) throw new RemusError("REMUSD_ERR_NO_SPACE", "no free socket");
  const m = c.mem;
  m.setU16(t + T.LPORT, port);
  m.setU16(t + T.BACKLOG, backlog);
  m.setU32(t + T.FLAGS, TF.OWNED);
  setState(c, t, St.LISTEN);
  hashInsert(c, t);
  return socketId(c, t);
}

/** The oldest established child of listener `l` not yet accepted, now owned by the application; or 0. */
export function tcpAccept(c: Ctx, l: number): number {
  const m = c.mem;
  const lid = socketId(c, l);
  let best = 0;
  for (let i = 0; i < c.maxSockets; i++) {
    const t = tcbAt(c, i);
    if (t === 0 || m.u32(t + T.PARENT) !== lid) continue;
    const s = stateOf(c, t);
    if (s === St.SYN_RCVD || s === St.CLOSED) continue;
    if (best === 0 || seqLt(m.u32(t + T.ACCEPT_SEQ), m.u32(best + T.ACCEPT_SEQ))) best = t;
  }
  if (best === 0) return 0;
  m.setU32(best + T.PARENT, 0);
  setFlag(c, best, TF.OWNED);
  return socketId(c, best);
}

function childCount(c: Ctx, lid: number): number {
  let n = 0;
  for (let i = 0; i < c.maxSockets; i++) {
    const t = tcbAt(c, i);
    if (t !== 0 && c.mem.u32(t + T.PARENT) === lid) n++;
  }
  return n;
}

// ---------------------------------------------------------------------------
// Closing

/**
 * Moves a connection to CLOSED (recording `err`), stops its timers and unbinds
 * its 4-tuple. The TCB itself is freed unless the application still holds the
 * id (it learns the outcome from state/error and frees with close()).
 * Returns true when the TCB was freed.
 */
function enterClosed(c: Ctx, t: number, err: TcpError): boolean {
  const m = c.mem;
  setState(c, t, St.CLOSED);
  if (err !== TcpError.NONE && m.u8(t + T.ERROR) === TcpError.NONE) m.setU8(t + T.ERROR, err);
  m.setU64(t + T.RTO_AT, 0);
  m.setU64(t + T.PERSIST_AT, 0);
  m.setU64(t + T.DELACK_AT, 0);
  m.setU64(t + T.CLOSE_AT, 0);
  clearFlag(c, t, TF.ACK_NOW | TF.TX_BLOCKED);
  hashRemove(c, t);
  if (!hasFlag(c, t, TF.OWNED)) {
    freeTcb(c, t);
    return true;
  }
  return false;
}

function enterTimeWait(c: Ctx, t: number): void {
  const m = c.mem;
  setState(c, t, St.TIME_WAIT);
  m.setU64(t + T.RTO_AT, 0);
  m.setU64(t + T.PERSIST_AT, 0);
  // A zero 2MSL still waits for the next poll, so the final ACK goes out first.
  m.setU64(t + T.CLOSE_AT, Math.max(c.now + c.timeWait, 1));
}

/** Sends a RST for a synchronized connection (ABORT) and returns it to CLOSED. */
function resetConnection(c: Ctx, t: number): boolean {
  const m = c.mem;
  const s = stateOf(c, t);
  if (s !== St.CLOSED && s !== St.LISTEN && s !== St.SYN_SENT) {
    sendBare(
      c,
      m.u32(t + T.RIP),
      m.u16(t + T.LPORT),
      m.u16(t + T.RPORT),
      m.u32(t + T.SND_MAX),
      m.u32(t + T.RCV_NXT),
      RST | ACK,
    );
  }
  return enterClosed(c, t, TcpError.NONE);
}

/** Half-close: a FIN follows the queued data. */
export function tcpShutdown(c: Ctx, t: number): void {
  if (hasFlag(c, t, TF.FIN_QUEUED)) return;
  const s = stateOf(c, t);
  switch (s) {
    case St.SYN_SENT:
    case St.SYN_RCVD:
      setFlag(c, t, TF.FIN_QUEUED); // FIN_WAIT_1 once established
      return;
    case St.ESTABLISHED:
      setFlag(c, t, TF.FIN_QUEUED);
      setState(c, t, St.FIN_WAIT_1);
      break;
    case St.CLOSE_WAIT:
      setFlag(c, t, TF.FIN_QUEUED);
      setState(c, t, St.LAST_ACK);
      break;
    default:
      return;
  }
  output(c, t, false);
}

/**
 * The application lets go of a socket. A listener closes (its unaccepted
 * children are reset). A connection with unread data is reset (RFC 2525 2.17,
 * as Linux does); otherwise it shuts down and lives on, owned by the stack,
 * through FIN_WAIT/TIME_WAIT or LAST_ACK until it reaches CLOSED.
 */
export function tcpClose(c: Ctx, t: number): void {
  const m = c.mem;
  const s = stateOf(c, t);
  if (s === St.LISTEN) {
    closeListener(c, t);
    return;
  }
  clearFlag(c, t, TF.OWNED);
  if (s === St.CLOSED || s === St.SYN_SENT) {
    enterClosed(c, t, TcpError.NONE);
    return;
  }
  if (m.u32(t + T.RCV_LEN) > 0) {
    resetConnection(c, t);
    return;
  }
  tcpShutdown(c, t);
  if (stateOf(c, t) === St.FIN_WAIT_2) armOrphanTimer(c, t);
}

/** Reset (if synchronized) and free at once. */
export function tcpAbort(c: Ctx, t: number): void {
  if (stateOf(c, t) === St.LISTEN) {
    closeListener(c, t);
    return;
  }
  clearFlag(c, t, TF.OWNED);
  resetConnection(c, t);
}

function closeListener(c: Ctx, l: number): void {
  const lid = socketId(c, l);
  for (let i = 0; i < c.maxSockets; i++) {
    const t = tcbAt(c, i);
    if (t !== 0 && c.mem.u32(t + T.PARENT) === lid) resetConnection(c, t);
  }
  freeTcb(c, l);
}

/** An orphaned FIN_WAIT_2 (application closed, peer never sends its FIN) is dropped after 2MSL, as Linux's tcp_fin_timeout. */
function armOrphanTimer(c: Ctx, t: number): void {
  if (!hasFlag(c, t, TF.OWNED) && c.mem.u32(t + T.PARENT) === 0) {
    c.mem.setU64(t + T.CLOSE_AT, c.now + Math.max(c.timeWait, 1));
  }
}

// ---------------------------------------------------------------------------
// Sending and receiving (application side)

/** Bytes accepted into the send buffer; -1 when this connection can never send again. */
export function tcpSend(c: Ctx, t: number, data: Uint8Array, off: number, len: number): number {
  const m = c.mem;
  const s = stateOf(c, t);
  const ok = s === St.ESTABLISHED || s === St.CLOSE_WAIT || s === St.SYN_SENT || s === St.SYN_RCVD;
  if (!ok || hasFlag(c, t, TF.FIN_QUEUED)) return -1;
  const size = m.u32(t + T.SND_SIZE);
  const queued = m.u32(t + T.SND_LEN);
  const n = Math.min(size - queued, len);
  if (n <= 0) return 0;
  ringWrite(c, m.u32(t + T.SND_BUF), size, (m.u32(t + T.SND_START) + queued) % size, data, off, n);
  m.setU32(t + T.SND_LEN, queued + n);
  if (canSendData(s)) output(c, t, false);
  return n;
}

/** Copies up to `len` received bytes to `dst[off..]`; returns the count (0 when nothing is buffered). */
export function tcpRecv(c: Ctx, t: number, dst: Uint8Array, off: number, len: number): number {
  const m = c.mem;
  const avail = m.u32(t + T.RCV_LEN);
  const n = Math.min(avail, len);
  if (n <= 0) return 0;
  const size = m.u32(t + T.RCV_SIZE);
  const start = m.u32(t + T.RCV_START);
  ringRead(c, m.u32(t + T.RCV_BUF), size, start, dst, off, n);
  m.setU32(t + T.RCV_START, (start + n) % size);
  m.setU32(t + T.RCV_LEN, avail - n);
  maybeWindowUpdate(c, t);
  return n;
}

/**
 * After the application reads, send a window update if the right edge can
 * move by a worthwhile step (see `windowField`).
 */
function maybeWindowUpdate(c: Ctx, t: number): void {
  const m = c.mem;
  if (!canReceiveData(stateOf(c, t))) return;
  const size = m.u32(t + T.RCV_SIZE);
  const free = size - m.u32(t + T.RCV_LEN);
  const cur = Math.max((m.u32(t + T.RCV_ADV) - m.u32(t + T.RCV_NXT)) | 0, 0);
  // A closed (or nearly closed) window reopens as soon as a segment fits;
  // otherwise wait for a worthwhile step, and let data ACKs carry it.
  const step = cur < c.mss ? Math.min(size >>> 1, c.mss) : Math.min(size >>> 1, 2 * c.mss);
  if (free - cur >= step) {
    setFlag(c, t, TF.ACK_NOW);
    output(c, t, false);
  }
}

// ---------------------------------------------------------------------------
// Segment output

const NO_OPTIONS: TcpOptions = {};

/**
 * Builds and sends one segment of this connection. Data comes from the send
 * ring at `seq`. Returns false only when the NIC refused it (the caller keeps
 * the segment's state unchanged and retries later); a segment parked for ARP
 * or lost to memory exhaustion counts as sent, since TCP recovers it.
 */
function sendSegment(c: Ctx, t: number, seq: number, len: number, fl: number): boolean {
  const m = c.mem;
  const rip = m.u32(t + T.RIP);
  let opts = NO_OPTIONS;
  if (fl & SYN) {
    const s = stateOf(c, t);
    const ws = s === St.SYN_SENT || hasFlag(c, t, TF.WSCALE);
    opts = ws ? { mss: c.mss, wscale: c.rcvShift } : { mss: c.mss };
  }
  const hlen = TCP_HEADER_LEN + tcpOptionsLength(opts);
  const f = ipFrame(c, rip, IP_PROTO.TCP, hlen + len);
  const rcvNxt = m.u32(t + T.RCV_NXT);
  const field = windowField(c, t, (fl & SYN) !== 0);
  // The window in a SYN is never scaled (RFC 7323 2.2).
  const shift = fl & SYN ? 0 : m.u8(t + T.RCV_SHIFT);
  encodeTcp(
    {
      srcPort: m.u16(t + T.LPORT),
      dstPort: m.u16(t + T.RPORT),
      seq,
      ack: fl & ACK ? rcvNxt : 0,
      flags: fl,
      window: field,
      checksum: 0,
      urgent: 0,
      headerLength: hlen,
      options: opts,
    },
    f,
    L4_OFF,
  );
  if (len > 0) {
    const size = m.u32(t + T.SND_SIZE);
    const pos = (m.u32(t + T.SND_START) + ((seq - m.u32(t + T.SND_UNA)) >>> 0)) % size;
    ringRead(c, m.u32(t + T.SND_BUF), size, pos, f, L4_OFF + hlen, len);
  }
  setTcpChecksum(c.ip, rip, f, L4_OFF, hlen + len);
  if (sendIp(c, f, rip, false) === SendResult.BLOCKED) return false;
  c.bump(S.tcpSegmentsOut);
  if (fl & RST) c.bump(S.tcpResetsSent);
  if (fl & ACK) {
    m.setU32(t + T.RCV_ACKED, rcvNxt);
    m.setU32(t + T.RCV_ADV, (rcvNxt + field * 2 ** shift) >>> 0);
    m.setU64(t + T.DELACK_AT, 0);
    clearFlag(c, t, TF.ACK_NOW);
  }
  return true;
}

/**
 * The window field to advertise. Receiver-side SWS avoidance (RFC 9293
 * 3.8.6.2.2): the right edge moves forward only in steps of at least
 * min(half the buffer, one MSS); below that the old edge is kept. The window
 * never exceeds the ring's free space, so whatever fits in it can be stored.
 */
function windowField(c: Ctx, t: number, syn: boolean): number {
  const m = c.mem;
  const size = m.u32(t + T.RCV_SIZE);
  const free = size - m.u32(t + T.RCV_LEN);
  if (syn) return Math.min(free, 0xffff);
  const shift = m.u8(t + T.RCV_SHIFT);
  const cur = Math.max((m.u32(t + T.RCV_ADV) - m.u32(t + T.RCV_NXT)) | 0, 0);
  const wnd = free - cur >= Math.min(size >>> 1, c.mss) ? free : Math.min(cur, free);
  return Math.min(wnd >>> shift, 0xffff);
}

/** A segment with no TCB behind it (RSTs); kept in the control queue if the NIC is full. */
function sendBare(
  c: Ctx,
  rip: number,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  fl: number,
): void {
  const f = ipFrame(c, rip, IP_PROTO.TCP, TCP_HEADER_LEN);
  encodeTcp(
    {
      srcPort: sport,
      dstPort: dport,
      seq,
      ack,
      flags: fl,
      window: 0,
      checksum: 0,
      urgent: 0,
      headerLength: TCP_HEADER_LEN,
      options: NO_OPTIONS,
    },
    f,
    L4_OFF,
  );
  setTcpChecksum(c.ip, rip, f, L4_OFF, TCP_HEADER_LEN);
  sendIp(c, f, rip, true);
  c.bump(S.tcpSegmentsOut);
  if (fl & RST) c.bump(S.tcpResetsSent);
}

/**
 * Sends whatever the connection's state calls for: a SYN or SYN-ACK, new or
 * rewound data within min(peer window, cwnd), a FIN after the last byte, and
 * a pure ACK if one is owed and nothing else carried it. `force` lets the
 * first segment ignore sender-side SWS avoidance (RTO retransmission of the
 * head, persist override of a small window); nothing ignores the window.
 *
 * Invariant: SND_UNA <= SND_NXT <= SND_MAX; bytes [SND_UNA, SND_UNA+SND_LEN)
 * are in the send ring; a FIN, if queued, has sequence number SND_UNA+SND_LEN.
 */
export function output(c: Ctx, t: number, force: boolean): void {
  const m = c.mem;
  const s = stateOf(c, t);
  if (s === St.CLOSED || s === St.LISTEN) return;
  clearFlag(c, t, TF.TX_BLOCKED);
  if (s === St.SYN_SENT || s === St.SYN_RCVD) {
    const iss = m.u32(t + T.ISS);
    if (m.u32(t + T.SND_NXT) === iss) {
      if (!sendSegment(c, t, iss, 0, s === St.SYN_SENT ? SYN : SYN | ACK)) {
        setFlag(c, t, TF.TX_BLOCKED);
        return;
      }
      const next = (iss + 1) >>> 0;
      m.setU32(t + T.SND_NXT, next);
      if (m.u32(t + T.SND_MAX) === next) c.bump(S.tcpRetransmits);
      m.setU32(t + T.SND_MAX, next);
      if (m.u64(t + T.RTO_AT) === 0) m.setU64(t + T.RTO_AT, c.now + m.u32(t + T.RTO));
      if (!hasFlag(c, t, TF.SYN_RETX | TF.RTT_TIMING)) startRttTiming(c, t, iss);
    }
    clearFlag(c, t, TF.ACK_NOW);
    return;
  }
  if (canSendData(s)) {
    let forceOne = force;
    for (;;) {
      const una = m.u32(t + T.SND_UNA);
      const nxt = m.u32(t + T.SND_NXT);
      const sndLen = m.u32(t + T.SND_LEN);
      const off = (nxt - una) >>> 0;
      const avail = off <= sndLen ? sndLen - off : 0;
      const wnd = Math.min(m.u32(t + T.SND_WND), m.u32(t + T.CWND));
      let usable = (una + wnd - nxt) | 0;
      if (usable < 0) usable = 0;
      const mss = m.u16(t + T.SND_MSS);
      let len = Math.min(avail, usable, mss);
      // Sender-side SWS avoidance (RFC 9293 3.8.6.2.1), without Nagle: a short
      // segment goes out only if it empties the queue or is at least half the
      // largest window the peer has offered. The persist timer overrides.
      if (len > 0 && len < mss && len < avail && !forceOne && len < m.u32(t + T.MAX_SND_WND) >>> 1) len = 0;
      const fin =
        hasFlag(c, t, TF.FIN_QUEUED) && !hasFlag(c, t, TF.FIN_ACKED) && off <= sndLen && off + len === sndLen;
      if (len === 0 && !fin) break;
      const fl = ACK | (fin ? FIN : 0) | (len > 0 && off + len === sndLen ? PSH : 0);
      if (!sendSegment(c, t, nxt, len, fl)) {
        setFlag(c, t, TF.TX_BLOCKED);
        break;
      }
      const sndMax = m.u32(t + T.SND_MAX);
      if (seqLt(nxt, sndMax)) c.bump(S.tcpRetransmits);
      else if (len > 0 && !hasFlag(c, t, TF.RTT_TIMING)) startRttTiming(c, t, nxt);
      const end = (nxt + len + (fin ? 1 : 0)) >>> 0;
      m.setU32(t + T.SND_NXT, end);
      if (seqGt(end, sndMax)) m.setU32(t + T.SND_MAX, end);
      if (m.u64(t + T.RTO_AT) === 0) m.setU64(t + T.RTO_AT, c.now + m.u32(t + T.RTO));
      forceOne = false;
    }
    if (m.u32(t + T.SND_WND) === 0 && m.u32(t + T.SND_LEN) > 0) {
      // Zero window: nothing we send can be accepted, so stop retransmitting
      // and probe instead (as BSD does). Bytes sent beyond the closed window
      // go out again once it reopens; the RTO and its give-up count stop.
      m.setU32(t + T.SND_NXT, m.u32(t + T.SND_UNA));
      m.setU64(t + T.RTO_AT, 0);
      clearFlag(c, t, TF.RTT_TIMING);
      if (m.u64(t + T.PERSIST_AT) === 0) m.setU64(t + T.PERSIST_AT, c.now + persistInterval(c, t));
    } else if (
      m.u32(t + T.SND_LEN) > 0 &&
      m.u32(t + T.SND_NXT) === m.u32(t + T.SND_UNA) &&
      m.u64(t + T.RTO_AT) === 0 &&
      !hasFlag(c, t, TF.TX_BLOCKED)
    ) {
      // Data waits behind a window too small to use (SWS) and nothing is in
      // flight to bring an ACK back: only a timer can move things along.
      if (m.u64(t + T.PERSIST_AT) === 0) m.setU64(t + T.PERSIST_AT, c.now + persistInterval(c, t));
    } else {
      m.setU64(t + T.PERSIST_AT, 0);
    }
  }
  // A pure ACK carries SND_MAX, not a rewound SND_NXT (as BSD does): the peer
  // may already hold the bytes we are resending.
  if (hasFlag(c, t, TF.ACK_NOW) && !hasFlag(c, t, TF.TX_BLOCKED)) {
    if (!sendSegment(c, t, m.u32(t + T.SND_MAX), 0, ACK)) setFlag(c, t, TF.TX_BLOCKED);
  }
}

function startRttTiming(c: Ctx, t: number, seq: number): void {
  setFlag(c, t, TF.RTT_TIMING);
  c.mem.setU32(t + T.RTT_SEQ, seq);
  c.mem.setU64(t + T.RTT_START, c.now);
}

function persistInterval(c: Ctx, t: number): number {
  const base = Math.max(rtoFromEstimate(c, t), c.minRto);
  return Math.min(base * 2 ** c.mem.u8(t + T.PERSIST_BACKOFF), c.maxRto);
}

// ---------------------------------------------------------------------------
// RTT estimation (RFC 6298), in microseconds

/** RTO from SRTT/RTTVAR (no backoff), or the initial RTO before any sample. */
function rtoFromEstimate(c: Ctx, t: number): number {
  const m = c.mem;
  const srtt = m.u32(t + T.SRTT_US);
  if (srtt === 0) return c.initRto;
  const rto = Math.ceil((srtt + Math.max(1000, 4 * m.u32(t + T.RTTVAR_US))) / 1000);
  return Math.min(Math.max(rto, c.minRto), c.maxRto);
}

function rttSample(c: Ctx, t: number, ms: number): void {
  const m = c.mem;
  const r = Math.max(ms, 0) * 1000;
  const srtt = m.u32(t + T.SRTT_US);
  if (srtt === 0) {
    m.setU32(t + T.SRTT_US, Math.max(r, 1));
    m.setU32(t + T.RTTVAR_US, Math.round(r / 2));
  } else {
    const rttvar = m.u32(t + T.RTTVAR_US);
    m.setU32(t + T.RTTVAR_US, Math.round((3 * rttvar) / 4 + Math.abs(srtt - r) / 4));
    m.setU32(t + T.SRTT_US, Math.max(Math.round((7 * srtt) / 8 + r / 8), 1));
  }
}

// ---------------------------------------------------------------------------
// Segment arrival

interface Seg {
  src: number;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options: TcpOptions;
  frame: Uint8Array;
  dataOff: number;
  dataLen: number;
}

/** One TCP segment addressed to us (IPv4 already validated). */
export function tcpInput(c: Ctx, frame: Uint8Array, ip: Ipv4Header, off: number): void {
  const len = ip.totalLength - ip.headerLength;
  const h = decodeTcp(frame, off, len);
  if (h === null) {
    c.bump(S.tcpBadHeaders);
    return;
  }
  if (!tcpChecksumOk(ip.src, ip.dst, frame, off, len)) {
    c.bump(S.tcpBadChecksums);
    return;
  }
  // Never answer (or accept) segments from addresses that cannot be a peer.
  if (ip.src === 0 || ip.src >>> 28 >= 0xe || h.srcPort === 0 || h.dstPort === 0) {
    c.bump(S.tcpBadHeaders);
    return;
  }
  c.bump(S.tcpSegmentsIn);
  const seg: Seg = {
    src: ip.src,
    sport: h.srcPort,
    dport: h.dstPort,
    seq: h.seq,
    ack: h.ack,
    flags: h.flags,
    window: h.window,
    options: h.options,
    frame,
    dataOff: off + h.headerLength,
    dataLen: len - h.headerLength,
  };
  if (seg.flags & RST) c.bump(S.tcpResetsReceived);
  const t = hashFind(c, seg.src, seg.sport, seg.dport);
  if (t !== 0) {
    if (stateOf(c, t) === St.SYN_SENT) synSentArrives(c, t, seg);
    else if (segmentArrives(c, t, seg)) output(c, t, false);
    return;
  }
  const l = hashFind(c, 0, 0, seg.dport);
  if (l !== 0) {
    listenArrives(c, l, seg);
    return;
  }
  c.bump(S.tcpNoSocket);
  replyRst(c, seg);
}

function segLength(seg: Seg): number {
  return seg.dataLen + (seg.flags & SYN ? 1 : 0) + (seg.flags & FIN ? 1 : 0);
}

/** RFC 9293 "If the state is CLOSED": a RST that matches what the sender knows. */
function replyRst(c: Ctx, seg: Seg): void {
  if (seg.flags & RST) return;
  if (seg.flags & ACK) sendBare(c, seg.src, seg.dport, seg.sport, seg.ack, 0, RST);
  else sendBare(c, seg.src, seg.dport, seg.sport, 0, (seg.seq + segLength(seg)) >>> 0, RST | ACK);
}

function listenArrives(c: Ctx, l: number, seg: Seg): void {
  const m = c.mem;
  if (seg.flags & RST) return;
  if (seg.flags & ACK) {
    // An ACK for a connection that no longer exists (or never did).
    c.bump(S.tcpListenStrayAcks);
    replyRst(c, seg);
    return;
  }
  if (!(seg.flags & SYN)) return;
  const lid = socketId(c, l);
  if (childCount(c, lid) >= m.u16(l + T.BACKLOG)) {
    c.bump(S.tcpListenDrops);
    return;
  }
  const t = allocTcb(c);
  if (t === 0) {
    c.bump(S.tcpListenDrops);
    return;
  }
  if (!allocBuffers(c, t)) {
    freeTcb(c, t);
    c.bump(S.tcpListenDrops);
    return;
  }
  initConnection(c, t, seg.src, seg.sport, seg.dport);
  m.setU32(t + T.FLAGS, TF.PASSIVE);
  m.setU32(t + T.PARENT, lid);
  m.setU32(t + T.IRS, seg.seq);
  m.setU32(t + T.RCV_NXT, (seg.seq + 1) >>> 0);
  m.setU32(t + T.RCV_ADV, (seg.seq + 1) >>> 0);
  applySynOptions(c, t, seg.options);
  // Data or FIN riding on a SYN is not taken; the peer retransmits it after the handshake.
  m.setU32(t + T.SND_WND, seg.window);
  m.setU32(t + T.MAX_SND_WND, seg.window);
  m.setU32(t + T.SND_WL1, seg.seq);
  m.setU32(t + T.SND_WL2, m.u32(t + T.ISS));
  setState(c, t, St.SYN_RCVD);
  hashInsert(c, t);
  c.bump(S.tcpPassiveOpens);
  output(c, t, false);
}

function synSentArrives(c: Ctx, t: number, seg: Seg): void {
  const m = c.mem;
  const iss = m.u32(t + T.ISS);
  const fl = seg.flags;
  if (fl & ACK) {
    if (seqLe(seg.ack, iss) || seqGt(seg.ack, m.u32(t + T.SND_MAX))) {
      if (!(fl & RST)) sendBare(c, seg.src, seg.dport, seg.sport, seg.ack, 0, RST);
      return;
    }
  }
  if (fl & RST) {
    if (fl & ACK) enterClosed(c, t, TcpError.REFUSED);
    return;
  }
  if (!(fl & SYN)) return;
  m.setU32(t + T.IRS, seg.seq);
  m.setU32(t + T.RCV_NXT, (seg.seq + 1) >>> 0);
  m.setU32(t + T.RCV_ADV, (seg.seq + 1) >>> 0);
  applySynOptions(c, t, seg.options);
  if (fl & ACK) {
    m.setU32(t + T.SND_UNA, seg.ack);
    m.setU32(t + T.SND_NXT, seg.ack);
    if (hasFlag(c, t, TF.RTT_TIMING)) {
      rttSample(c, t, c.now - m.u64(t + T.RTT_START));
      clearFlag(c, t, TF.RTT_TIMING);
    }
    establish(c, t, seg, seg.window);
    setFlag(c, t, TF.ACK_NOW);
    output(c, t, false);
    return;
  }
  // Simultaneous open: answer with SYN-ACK (the same ISS) and wait for the ACK of our SYN.
  m.setU32(t + T.SND_NXT, iss);
  m.setU32(t + T.SND_WND, seg.window);
  m.setU32(t + T.MAX_SND_WND, seg.window);
  m.setU32(t + T.SND_WL1, seg.seq);
  m.setU32(t + T.SND_WL2, iss);
  setState(c, t, St.SYN_RCVD);
  output(c, t, false);
}

/** SYN acknowledged: ESTABLISHED (or FIN_WAIT_1 if the application already shut down). */
function establish(c: Ctx, t: number, seg: Seg, window: number): void {
  const m = c.mem;
  m.setU32(t + T.SND_WND, window);
  m.setU32(t + T.MAX_SND_WND, Math.max(window, m.u32(t + T.MAX_SND_WND)));
  m.setU32(t + T.SND_WL1, seg.seq);
  m.setU32(t + T.SND_WL2, seg.ack);
  m.setU8(t + T.RETRIES, 0);
  // RFC 6298 5.7: after a retransmitted SYN (so no RTT sample), data starts with a 3 s RTO.
  const fallback = hasFlag(c, t, TF.SYN_RETX) && m.u32(t + T.SRTT_US) === 0;
  m.setU32(t + T.RTO, fallback ? Math.min(Math.max(3000, c.initRto), c.maxRto) : rtoFromEstimate(c, t));
  m.setU64(t + T.RTO_AT, 0);
  m.setU32(t + T.RECOVER, m.u32(t + T.SND_UNA));
  clearFlag(c, t, TF.SYN_RETX);
  c.bump(S.tcpEstablished);
  const acceptSeq = (m.u32(c.root + R.ACCEPT_SEQ) + 1) >>> 0;
  m.setU32(c.root + R.ACCEPT_SEQ, acceptSeq);
  m.setU32(t + T.ACCEPT_SEQ, acceptSeq);
  if (hasFlag(c, t, TF.FIN_QUEUED)) setState(c, t, St.FIN_WAIT_1);
  else setState(c, t, St.ESTABLISHED);
}

/** A challenge ACK (RFC 5961): tells a blind attacker nothing, makes a real peer resynchronize. */
function challengeAck(c: Ctx, t: number): void {
  c.bump(S.tcpChallengeAcks);
  setFlag(c, t, TF.ACK_NOW);
}

/**
 * Segment arrival in SYN_RCVD and every synchronized state (RFC 9293 3.10.7.4).
 * Returns false when the TCB was freed (the caller must not touch it).
 */
function segmentArrives(c: Ctx, t: number, seg: Seg): boolean {
  const m = c.mem;
  const s = stateOf(c, t);
  const fl = seg.flags;
  const rcvNxt = m.u32(t + T.RCV_NXT);
  const rcvWnd = m.u32(t + T.RCV_SIZE) - m.u32(t + T.RCV_LEN);

  // 1. Sequence number acceptability.
  const segLen = segLength(seg);
  let acceptable: boolean;
  const inWin = (x: number): boolean => seqGe(x, rcvNxt) && seqLt(x, (rcvNxt + rcvWnd) >>> 0);
  if (seg.seq === rcvNxt && seg.dataLen === 0)
    acceptable = true; // incl. a bare FIN into a zero window
  else if (segLen === 0) acceptable = rcvWnd > 0 && inWin(seg.seq);
  else acceptable = rcvWnd > 0 && (inWin(seg.seq) || inWin((seg.seq + segLen - 1) >>> 0));
  if (!acceptable) {
    if (s === St.SYN_RCVD && fl & SYN && seg.seq === m.u32(t + T.IRS) && !(fl & RST)) {
      if (fl & ACK && seqGt(seg.ack, m.u32(t + T.SND_UNA)) && seqLe(seg.ack, m.u32(t + T.SND_MAX))) {
        // Simultaneous open: the peer's SYN-ACK acknowledges our SYN.
        m.setU32(t + T.SND_UNA, seg.ack);
        establish(c, t, seg, seg.window);
        setFlag(c, t, TF.ACK_NOW);
      } else {
        // The peer lost our SYN-ACK and repeats its SYN.
        m.setU32(t + T.SND_NXT, m.u32(t + T.ISS));
      }
      return true;
    }
    c.bump(S.tcpOutOfWindow);
    if (!(fl & RST)) setFlag(c, t, TF.ACK_NOW);
    if (s === St.TIME_WAIT && fl & FIN) enterTimeWait(c, t); // a retransmitted FIN restarts 2MSL
    return true;
  }

  // 2. RST (RFC 5961 3.2: only an exact match resets; in-window gets a challenge ACK).
  if (fl & RST) {
    if (seg.seq !== rcvNxt) {
      challengeAck(c, t);
      return true;
    }
    const passive = s === St.SYN_RCVD && hasFlag(c, t, TF.PASSIVE);
    return !enterClosed(
      c,
      t,
      passive ? TcpError.NONE : s === St.SYN_RCVD ? TcpError.REFUSED : TcpError.RESET,
    );
  }

  // 4. SYN in a synchronized state (RFC 5961 4.2).
  if (fl & SYN) {
    challengeAck(c, t);
    return true;
  }

  // 5. ACK.
  if (!(fl & ACK)) return true;
  if (s === St.SYN_RCVD) {
    if (seqLe(seg.ack, m.u32(t + T.SND_UNA)) || seqGt(seg.ack, m.u32(t + T.SND_MAX))) {
      sendBare(c, seg.src, seg.dport, seg.sport, seg.ack, 0, RST);
      return true;
    }
    m.setU32(t + T.SND_UNA, seg.ack);
    if (hasFlag(c, t, TF.RTT_TIMING)) {
      rttSample(c, t, c.now - m.u64(t + T.RTT_START));
      clearFlag(c, t, TF.RTT_TIMING);
    }
    establish(c, t, seg, seg.window * 2 ** m.u8(t + T.SND_SHIFT));
  } else if (!ackArrives(c, t, seg)) {
    return true;
  }
  if (hasFlag(c, t, TF.FIN_ACKED)) {
    const st = stateOf(c, t);
    if (st === St.FIN_WAIT_1) {
      setState(c, t, St.FIN_WAIT_2);
      armOrphanTimer(c, t);
    } else if (st === St.CLOSING) {
      enterTimeWait(c, t);
    } else if (st === St.LAST_ACK) {
      return !enterClosed(c, t, TcpError.NONE);
    }
  }

  // 7. Segment text.
  if (seg.dataLen > 0 && canReceiveData(stateOf(c, t))) {
    const end = (seg.seq + seg.dataLen) >>> 0;
    if (!hasFlag(c, t, TF.OWNED) && m.u32(t + T.PARENT) === 0 && seqGt(end, m.u32(t + T.RCV_NXT))) {
      // Nobody will ever read this: the application closed. Tell the peer.
      return !resetConnection(c, t);
    }
    receiveText(c, t, seg);
  }

  // 8. FIN. One that arrives ahead of missing data is remembered and takes
  // effect when RCV_NXT reaches it (never before the bytes it follows).
  if (fl & FIN && !hasFlag(c, t, TF.FIN_RCVD)) {
    const finSeq = (seg.seq + seg.dataLen) >>> 0;
    if (seqGe(finSeq, m.u32(t + T.RCV_NXT))) {
      setFlag(c, t, TF.FIN_OOO | TF.ACK_NOW);
      m.setU32(t + T.FIN_SEQ, finSeq);
    }
  }
  if (hasFlag(c, t, TF.FIN_OOO) && m.u32(t + T.FIN_SEQ) === m.u32(t + T.RCV_NXT)) finArrives(c, t);
  return true;
}

/**
 * ACK processing in synchronized states. Returns false when the segment must
 * be dropped (an ACK for data never sent, or too old: RFC 5961 5.2).
 */
function ackArrives(c: Ctx, t: number, seg: Seg): boolean {
  const m = c.mem;
  const una = m.u32(t + T.SND_UNA);
  const sndMax = m.u32(t + T.SND_MAX);
  const ack = seg.ack;
  if (seqGt(ack, sndMax)) {
    setFlag(c, t, TF.ACK_NOW);
    return false;
  }
  if (seqLt(ack, (una - m.u32(t + T.MAX_SND_WND)) >>> 0)) {
    setFlag(c, t, TF.ACK_NOW);
    return false;
  }
  const window = seg.window * 2 ** m.u8(t + T.SND_SHIFT);
  if (seqGt(ack, una)) {
    newAck(c, t, ack);
  } else if (
    ack === una &&
    seg.dataLen === 0 &&
    !(seg.flags & (SYN | FIN)) &&
    sndMax !== una &&
    window === m.u32(t + T.SND_WND)
  ) {
    dupAck(c, t);
  }
  // Window update (RFC 9293 3.10.7.4, SND.WL1/WL2 guard against old segments).
  const wl1 = m.u32(t + T.SND_WL1);
  if (seqLt(wl1, seg.seq) || (wl1 === seg.seq && seqLe(m.u32(t + T.SND_WL2), ack))) {
    const old = m.u32(t + T.SND_WND);
    m.setU32(t + T.SND_WND, window);
    m.setU32(t + T.SND_WL1, seg.seq);
    m.setU32(t + T.SND_WL2, ack);
    if (window > m.u32(t + T.MAX_SND_WND)) m.setU32(t + T.MAX_SND_WND, window);
    if (window > old) m.setU8(t + T.PERSIST_BACKOFF, 0);
  }
  // An ACK while the window is closed answers our probe: the peer is alive.
  if (m.u32(t + T.SND_WND) === 0) m.setU8(t + T.RETRIES, 0);
  return true;
}

function newAck(c: Ctx, t: number, ack: number): void {
  const m = c.mem;
  const una = m.u32(t + T.SND_UNA);
  const acked = (ack - una) >>> 0;
  const sndLen = m.u32(t + T.SND_LEN);
  const dataAcked = Math.min(acked, sndLen);
  if (acked > sndLen && hasFlag(c, t, TF.FIN_QUEUED)) setFlag(c, t, TF.FIN_ACKED);
  const size = m.u32(t + T.SND_SIZE);
  m.setU32(t + T.SND_START, (m.u32(t + T.SND_START) + dataAcked) % size);
  m.setU32(t + T.SND_LEN, sndLen - dataAcked);
  m.setU32(t + T.SND_UNA, ack);
  if (seqLt(m.u32(t + T.SND_NXT), ack)) m.setU32(t + T.SND_NXT, ack);
  if (hasFlag(c, t, TF.RTT_TIMING) && seqGt(ack, m.u32(t + T.RTT_SEQ))) {
    rttSample(c, t, c.now - m.u64(t + T.RTT_START));
    clearFlag(c, t, TF.RTT_TIMING);
  }
  // Forward progress: the backoff collapses to the estimate (as Linux does).
  m.setU8(t + T.RETRIES, 0);
  m.setU32(t + T.RTO, rtoFromEstimate(c, t));
  m.setU8(t + T.PERSIST_BACKOFF, 0);

  const mss = m.u16(t + T.SND_MSS);
  const cwnd = m.u32(t + T.CWND);
  if (hasFlag(c, t, TF.IN_RECOVERY)) {
    if (seqGe(ack, m.u32(t + T.RECOVER))) {
      // Full ACK: leave fast recovery, deflate the window (RFC 6582 3.2 step 3).
      clearFlag(c, t, TF.IN_RECOVERY);
      const flight = (m.u32(t + T.SND_MAX) - ack) >>> 0;
      m.setU32(t + T.CWND, Math.min(m.u32(t + T.SSTHRESH), Math.max(flight, mss) + mss));
    } else {
      // Partial ACK: the next hole is lost too; retransmit it at once.
      retransmitHead(c, t);
      m.setU32(t + T.CWND, Math.max(cwnd - dataAcked + mss, mss));
    }
  } else if (cwnd < m.u32(t + T.SSTHRESH)) {
    m.setU32(t + T.CWND, Math.min(cwnd + Math.min(dataAcked, mss), CWND_MAX));
  } else {
    m.setU32(t + T.CWND, Math.min(cwnd + Math.max(1, Math.floor((mss * mss) / cwnd)), CWND_MAX));
  }
  m.setU8(t + T.DUPACKS, 0);
  m.setU64(t + T.RTO_AT, ack === m.u32(t + T.SND_MAX) ? 0 : c.now + m.u32(t + T.RTO));
}

function dupAck(c: Ctx, t: number): void {
  const m = c.mem;
  const n = Math.min(m.u8(t + T.DUPACKS) + 1, 255);
  m.setU8(t + T.DUPACKS, n);
  const mss = m.u16(t + T.SND_MSS);
  if (hasFlag(c, t, TF.IN_RECOVERY)) {
    m.setU32(t + T.CWND, Math.min(m.u32(t + T.CWND) + mss, CWND_MAX));
    return;
  }
  // RFC 6582 4.1: no new recovery for losses from before the last one ended.
  if (n === 3 && seqGe(m.u32(t + T.SND_UNA), m.u32(t + T.RECOVER))) {
    const flight = (m.u32(t + T.SND_MAX) - m.u32(t + T.SND_UNA)) >>> 0;
    const ssthresh = Math.max(flight >>> 1, 2 * mss);
    m.setU32(t + T.SSTHRESH, ssthresh);
    m.setU32(t + T.RECOVER, m.u32(t + T.SND_MAX));
    setFlag(c, t, TF.IN_RECOVERY);
    clearFlag(c, t, TF.RTT_TIMING);
    c.bump(S.tcpFastRetransmits);
    retransmitHead(c, t);
    m.setU32(t + T.CWND, ssthresh + 3 * mss);
  }
}

/** Sends one segment at SND_UNA (fast retransmit, NewReno partial ACK), outside the window accounting. */
function retransmitHead(c: Ctx, t: number): void {
  const m = c.mem;
  const una = m.u32(t + T.SND_UNA);
  const sndLen = m.u32(t + T.SND_LEN);
  const len = Math.min(sndLen, m.u16(t + T.SND_MSS));
  const fin =
    hasFlag(c, t, TF.FIN_QUEUED) && len === sndLen && seqGt(m.u32(t + T.SND_MAX), (una + sndLen) >>> 0);
  if (len === 0 && !fin) return;
  if (sendSegment(c, t, una, len, ACK | (fin ? FIN : 0) | (len > 0 && len === sndLen ? PSH : 0))) {
    c.bump(S.tcpRetransmits);
    m.setU64(t + T.RTO_AT, c.now + m.u32(t + T.RTO));
  }
  // If the NIC refused it, the RTO will resend it.
}

/**
 * Places in-window payload into the receive ring at its sequence position;
 * in-order bytes extend the readable region, out-of-order bytes are recorded
 * as a range and joined once the gap fills.
 */
function receiveText(c: Ctx, t: number, seg: Seg): void {
  const m = c.mem;
  const rcvNxt = m.u32(t + T.RCV_NXT);
  const size = m.u32(t + T.RCV_SIZE);
  const rcvLen = m.u32(t + T.RCV_LEN);
  const room = size - rcvLen;
  let seq = seg.seq;
  let off = seg.dataOff;
  let len = seg.dataLen;
  if (seqLt(seq, rcvNxt)) {
    const skip = (rcvNxt - seq) >>> 0;
    off += skip;
    len -= skip;
    seq = rcvNxt;
  }
  if (len <= 0) {
    setFlag(c, t, TF.ACK_NOW);
    return;
  }
  const rel = (seq - rcvNxt) >>> 0;
  if (rel >= room) {
    setFlag(c, t, TF.ACK_NOW);
    return;
  }
  len = Math.min(len, room - rel);
  const ring = m.u32(t + T.RCV_BUF);
  ringWrite(c, ring, size, (m.u32(t + T.RCV_START) + rcvLen + rel) % size, seg.frame, off, len);
  if (rel !== 0) {
    c.bump(S.tcpOooSegments);
    if (!oooInsert(c, t, seq, (seq + len) >>> 0)) c.bump(S.tcpOooDropped);
    setFlag(c, t, TF.ACK_NOW); // duplicate ACK: drives the sender's fast retransmit
    return;
  }
  let nxt = (rcvNxt + len) >>> 0;
  let filled = false;
  // Join out-of-order ranges the new bytes reach.
  while (m.u8(t + T.OOO_COUNT) > 0) {
    const start = m.u32(t + T.OOO);
    if (seqGt(start, nxt)) break;
    const end = m.u32(t + T.OOO + 4);
    if (seqGt(end, nxt)) nxt = end;
    oooRemoveFirst(c, t);
    filled = true;
  }
  m.setU32(t + T.RCV_LEN, rcvLen + ((nxt - rcvNxt) >>> 0));
  m.setU32(t + T.RCV_NXT, nxt);
  // ACK at once when a hole closed, while holes remain, when ACKs are not
  // delayed, or for every second full segment (RFC 9293 3.8.6.3).
  if (
    filled ||
    m.u8(t + T.OOO_COUNT) > 0 ||
    c.ackDelay === 0 ||
    (nxt - m.u32(t + T.RCV_ACKED)) >>> 0 >= 2 * c.mss
  ) {
    setFlag(c, t, TF.ACK_NOW);
  } else if (m.u64(t + T.DELACK_AT) === 0) {
    m.setU64(t + T.DELACK_AT, c.now + c.ackDelay);
  }
}

/** Records [start, end) as received out of order; false when the range table is full. */
function oooInsert(c: Ctx, t: number, start: number, end: number): boolean {
  const m = c.mem;
  const n = m.u8(t + T.OOO_COUNT);
  let s = start;
  let e = end;
  // Collect the ranges that overlap or touch [s, e), merge them, keep the rest in order.
  const keep: number[] = [];
  let inserted = false;
  for (let i = 0; i < n; i++) {
    const rs = m.u32(t + T.OOO + i * 8);
    const re = m.u32(t + T.OOO + i * 8 + 4);
    if (seqLt(re, s)) {
      keep.push(rs, re);
    } else if (seqGt(rs, e)) {
      if (!inserted) {
        keep.push(s, e);
        inserted = true;
      }
      keep.push(rs, re);
    } else {
      if (seqLt(rs, s)) s = rs;
      if (seqGt(re, e)) e = re;
    }
  }
  if (!inserted) keep.push(s, e);
  if (keep.length / 2 > OOO_MAX) return false;
  for (let i = 0; i < keep.length; i++) m.setU32(t + T.OOO + i * 4, keep[i] as number);
  m.setU8(t + T.OOO_COUNT, keep.length / 2);
  return true;
}

function oooRemoveFirst(c: Ctx, t: number): void {
  const m = c.mem;
  const n = m.u8(t + T.OOO_COUNT);
  if (n > 1) m.copyWithin(t + T.OOO, t + T.OOO + 8, (n - 1) * 8);
  m.setU8(t + T.OOO_COUNT, n - 1);
}

/** The peer's FIN, in order: end of its stream. */
function finArrives(c: Ctx, t: number): void {
  const m = c.mem;
  m.setU32(t + T.RCV_NXT, (m.u32(t + T.RCV_NXT) + 1) >>> 0);
  clearFlag(c, t, TF.FIN_OOO);
  setFlag(c, t, TF.FIN_RCVD | TF.ACK_NOW);
  switch (stateOf(c, t)) {
    case St.SYN_RCVD:
    case St.ESTABLISHED:
      setState(c, t, St.CLOSE_WAIT);
      break;
    case St.FIN_WAIT_1:
      if (hasFlag(c, t, TF.FIN_ACKED)) enterTimeWait(c, t);
      else setState(c, t, St.CLOSING);
      break;
    case St.FIN_WAIT_2:
      enterTimeWait(c, t);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------
// Timers

function onRto(c: Ctx, t: number): boolean {
  const m = c.mem;
  m.setU64(t + T.RTO_AT, 0);
  const s = stateOf(c, t);
  const synState = s === St.SYN_SENT || s === St.SYN_RCVD;
  if (!synState && m.u32(t + T.SND_MAX) === m.u32(t + T.SND_UNA)) return true;
  const retries = m.u8(t + T.RETRIES) + 1;
  if (retries > (synState ? c.synRetries : c.maxRetries)) {
    c.bump(S.tcpConnTimeouts);
    return !enterClosed(c, t, TcpError.TIMEOUT);
  }
  m.setU8(t + T.RETRIES, retries);
  c.bump(S.tcpTimeouts);
  const rto = Math.min(m.u32(t + T.RTO) * 2, c.maxRto);
  m.setU32(t + T.RTO, rto);
  clearFlag(c, t, TF.RTT_TIMING);
  if (synState) {
    setFlag(c, t, TF.SYN_RETX);
    m.setU32(t + T.SND_NXT, m.u32(t + T.ISS));
  } else {
    // RFC 5681 3.1 eq. 4 and loss window; RFC 6582 4.2: no fast recovery for what was in flight.
    const mss = m.u16(t + T.SND_MSS);
    const flight = (m.u32(t + T.SND_MAX) - m.u32(t + T.SND_UNA)) >>> 0;
    m.setU32(t + T.SSTHRESH, Math.max(flight >>> 1, 2 * mss));
    m.setU32(t + T.CWND, mss);
    clearFlag(c, t, TF.IN_RECOVERY);
    m.setU32(t + T.RECOVER, m.u32(t + T.SND_MAX));
    m.setU8(t + T.DUPACKS, 0);
    // Go back: resend from the oldest unacknowledged byte.
    m.setU32(t + T.SND_NXT, m.u32(t + T.SND_UNA));
  }
  m.setU64(t + T.RTO_AT, c.now + rto);
  output(c, t, true);
  return true;
}

/** Returns false when the TCB was freed. */
function onPersist(c: Ctx, t: number): boolean {
  const m = c.mem;
  m.setU64(t + T.PERSIST_AT, 0);
  if (!canSendData(stateOf(c, t)) || m.u32(t + T.SND_LEN) === 0) return true;
  c.bump(S.tcpPersistProbes);
  m.setU8(t + T.PERSIST_BACKOFF, Math.min(m.u8(t + T.PERSIST_BACKOFF) + 1, PERSIST_MAX_BACKOFF));
  if (m.u32(t + T.SND_WND) > 0) {
    // A small window the SWS rule refused to use: send into it anyway.
    output(c, t, true);
    return true;
  }
  // A peer that answers probes may keep its window closed forever (RFC 9293
  // 3.8.6.1); one that stops answering is given up like an unanswered RTO.
  const retries = m.u8(t + T.RETRIES) + 1;
  if (retries > c.maxRetries) {
    c.bump(S.tcpConnTimeouts);
    return !enterClosed(c, t, TcpError.TIMEOUT);
  }
  m.setU8(t + T.RETRIES, retries);
  // Zero-window probe: an old sequence number, which any receiver must answer
  // with an ACK carrying its current window. It changes no state here.
  const una = m.u32(t + T.SND_UNA);
  if (!sendSegment(c, t, (una - 1) >>> 0, 0, ACK)) setFlag(c, t, TF.TX_BLOCKED);
  m.setU64(t + T.PERSIST_AT, c.now + persistInterval(c, t));
  return true;
}

/** Runs every due timer and retries refused output. */
export function tcpPoll(c: Ctx): void {
  const m = c.mem;
  const now = c.now;
  for (let i = 0; i < c.maxSockets; i++) {
    const t = tcbAt(c, i);
    if (t === 0) continue;
    const s = stateOf(c, t);
    if (s === St.CLOSED || s === St.LISTEN) continue;
    const closeAt = m.u64(t + T.CLOSE_AT);
    if (closeAt !== 0 && closeAt <= now) {
      if (s === St.TIME_WAIT) enterClosed(c, t, TcpError.NONE);
      else enterClosed(c, t, TcpError.TIMEOUT);
      continue;
    }
    const rtoAt = m.u64(t + T.RTO_AT);
    if (rtoAt !== 0 && rtoAt <= now && !onRto(c, t)) continue;
    const persistAt = m.u64(t + T.PERSIST_AT);
    if (persistAt !== 0 && persistAt <= now && !onPersist(c, t)) continue;
    const delackAt = m.u64(t + T.DELACK_AT);
    if (delackAt !== 0 && delackAt <= now) {
      m.setU64(t + T.DELACK_AT, 0);
      setFlag(c, t, TF.ACK_NOW);
    }
    if (flags(c, t) & (TF.ACK_NOW | TF.TX_BLOCKED)) output(c, t, false);
  }
}

/** Earliest TCP deadline, or +Infinity. */
export function tcpNextTimer(c: Ctx): number {
  const m = c.mem;
  let next = Number.POSITIVE_INFINITY;
  for (let i = 0; i < c.maxSockets; i++) {
    const t = tcbAt(c, i);
    if (t === 0) continue;
    next = earliest(next, m.u64(t + T.RTO_AT));
    next = earliest(next, m.u64(t + T.PERSIST_AT));
    next = earliest(next, m.u64(t + T.DELACK_AT));
    next = earliest(next, m.u64(t + T.CLOSE_AT));
  }
  return next;
}

function earliest(a: number, at: number): number {
  return at !== 0 && at < a ? at : a;
}

/** True when some connection has output the NIC refused (retried by poll). */
export function tcpPendingOutput(c: Ctx): boolean {
  for (let i = 0; i < c.maxSockets; i++) {
    const t = tcbAt(c, i);
    if (t !== 0 && hasFlag(c, t, TF.TX_BLOCKED | TF.ACK_NOW)) return true;
  }
  return false;
}

/** Every TCB address in the socket table (listeners and connections the stack still owns included). */
export function allTcbs(c: Ctx): number[] {
  const out: number[] = [];
  for (let i = 0; i < c.maxSockets; i++) {
    const t = tcbAt(c, i);
    if (t !== 0) out.push(t);
  }
  return out;
}
