/**
 * TCP (RFC 9293) over control blocks in `Mem`: the application's calls.
 * Active and passive open, accept, send and receive through the TCB's rings,
 * shutdown, close and abort. The other parts: tcb.ts (the socket table and
 * TCBs), tcp-in.ts (segment arrival), tcp-out.ts (output and timers). Every
 * function takes the call's `Ctx` and a TCB address; none keeps anything
 * between calls. Design notes: the top of stack.ts.
 */
import { RemusError } from "../errors.js";
import type { Ctx } from "./ctx.js";
import { S, T, TF } from "./layout.js";
import {
  allocBuffers,
  allocTcb,
  canReceiveData,
  canSendData,
  clearFlag,
  enterClosed,
  freeTcb,
  hasFlag,
  hashFind,
  hashInsert,
  initConnection,
  ringRead,
  ringWrite,
  setFlag,
  setState,
  socketId,
  stateOf,
  TcpError,
  TcpState,
  tcbAt,
} from "./tcb.js";
import { armOrphanTimer, output, resetConnection } from "./tcp-out.js";
import { seqLt } from "./wire.js";

const St = TcpState;

const EPHEMERAL_FIRST = 49152;

const EPHEMERAL_COUNT = 16384;

// ---------------------------------------------------------------------------
// Opening

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

// ---------------------------------------------------------------------------
// Closing

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

// ---------------------------------------------------------------------------
// Sending and receiving

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
