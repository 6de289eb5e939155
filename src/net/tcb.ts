/**
 * TCP control blocks (TCBs): the socket table and socket ids, TCB and buffer
 * allocation, the 4-tuple hash, the accessors of a TCB's state and flags, the
 * ring buffers, and the two transitions every part of TCP takes: a new
 * connection's initial variables and the move to CLOSED (which frees the TCB
 * once the application has let go of it).
 *
 * The TCB layout (`T`/`TF` in layout.ts) is the only state the TCP files
 * share: tcp.ts (the application's calls), tcp-in.ts (segment arrival) and
 * tcp-out.ts (output and timers) each read and write TCBs through it. Every
 * function takes the call's `Ctx` and a TCB address; none keeps anything
 * between calls. Design notes and invariants: the top of stack.ts.
 */
import type { Ctx } from "./ctx.js";
import { HASH_ENTRY, R, S, T, TCB_SIZE, TF } from "./layout.js";

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

/** State names, indexed by `TcpState`. */
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

const St = TcpState;

/** Default send MSS when the peer's SYN has no MSS option (RFC 9293 3.7.1). */
export const DEFAULT_PEER_MSS = 536;

/** Upper bound of the congestion window (and the initial ssthresh: no limit). */
export const CWND_MAX = 0x3fffffff;

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

/** The TCB in socket-table slot `slot`, or 0 when the slot is free. */
export function tcbAt(c: Ctx, slot: number): number {
  return c.mem.u32(c.sockTable + slot * 4);
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

/** A zeroed TCB in a free slot with a new generation, or 0 when no slot or memory is free. */
export function allocTcb(c: Ctx): number {
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

/** Gives a connection its send and receive rings; false (nothing allocated) when memory is short. */
export function allocBuffers(c: Ctx, t: number): boolean {
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

/** Unbinds a TCB, frees its rings and the TCB, and empties its slot (its id stops resolving). */
export function freeTcb(c: Ctx, t: number): void {
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
  return c.hashTable + (h & c.hashMask) * HASH_ENTRY;
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

/** Binds a TCB to its 4-tuple (set RIP, RPORT and LPORT first). */
export function hashInsert(c: Ctx, t: number): void {
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
// TCB fields

/** The TCB's `TF` flags. */
export function flags(c: Ctx, t: number): number {
  return c.mem.u32(t + T.FLAGS);
}

/** True when any of the flags `f` is set. */
export function hasFlag(c: Ctx, t: number, f: number): boolean {
  return (c.mem.u32(t + T.FLAGS) & f) !== 0;
}

/** Sets the flags `f`. */
export function setFlag(c: Ctx, t: number, f: number): void {
  c.mem.setU32(t + T.FLAGS, c.mem.u32(t + T.FLAGS) | f);
}

/** Clears the flags `f`. */
export function clearFlag(c: Ctx, t: number, f: number): void {
  c.mem.setU32(t + T.FLAGS, c.mem.u32(t + T.FLAGS) & ~f);
}

/** The connection's state. */
export function stateOf(c: Ctx, t: number): TcpState {
  return c.mem.u8(t + T.STATE) as TcpState;
}

/** Sets the connection's state (the caller does what the transition requires). */
export function setState(c: Ctx, t: number, s: TcpState): void {
  c.mem.setU8(t + T.STATE, s);
}

/** States in which our SYN has been acknowledged and data may be sent (retransmitted, for the FIN states). */
export function canSendData(s: TcpState): boolean {
  return (
    s === St.ESTABLISHED ||
    s === St.CLOSE_WAIT ||
    s === St.FIN_WAIT_1 ||
    s === St.CLOSING ||
    s === St.LAST_ACK
  );
}

/** States in which received data is accepted. */
export function canReceiveData(s: TcpState): boolean {
  return s === St.ESTABLISHED || s === St.FIN_WAIT_1 || s === St.FIN_WAIT_2;
}

// ---------------------------------------------------------------------------
// Ring buffers

/** Copies `len` bytes of `src` into the ring at `ring` (size `size`) starting at ring offset `pos`. */
export function ringWrite(
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

/** Copies `len` bytes from the ring at `ring` (size `size`), starting at ring offset `pos`, into `dst[dstOff..]`. */
export function ringRead(
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
// Opening and closing

/** A new connection's 4-tuple and initial send variables: a random ISS, the default MSS, the initial RTO. */
export function initConnection(c: Ctx, t: number, rip: number, rport: number, lport: number): void {
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

/**
 * Moves a connection to CLOSED (recording `err`), stops its timers and unbinds
 * its 4-tuple. The TCB itself is freed unless the application still holds the
 * id (it learns the outcome from state/error and frees with close()).
 * Returns true when the TCB was freed.
 */
export function enterClosed(c: Ctx, t: number, err: TcpError): boolean {
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
