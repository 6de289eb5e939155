/**
 * TCP output and timers: building and sending segments (SYN, data within
 * min(peer window, cwnd) with sender-side SWS avoidance, FIN, pure ACKs, RSTs),
 * the advertised window (receiver-side SWS avoidance), retransmission (RTO per
 * RFC 6298 with go-back-N, fast retransmit of the head), the persist timer and
 * zero-window probes, delayed ACKs, TIME_WAIT and the orphan FIN_WAIT_2 timer.
 * `tcpPoll` runs the due timers and retries output the NIC refused.
 *
 * Reads and writes only TCBs (tcb.ts, layout in layout.ts); calls nothing of
 * segment input or of the application API.
 */
import type { Ctx } from "./ctx.js";
import { S, T, TF } from "./layout.js";
import { ipFrame, L4_OFF, SendResult, sendIp } from "./link.js";
import {
  canSendData,
  clearFlag,
  enterClosed,
  flags,
  hasFlag,
  ringRead,
  setFlag,
  setState,
  stateOf,
  TcpError,
  TcpState,
  tcbAt,
} from "./tcb.js";
import {
  encodeTcp,
  IP_PROTO,
  seqGt,
  seqLt,
  setTcpChecksum,
  TCP_FLAG,
  TCP_HEADER_LEN,
  type TcpOptions,
  tcpOptionsLength,
} from "./wire.js";

const { FIN, SYN, RST, PSH, ACK } = TCP_FLAG;
const St = TcpState;

const PERSIST_MAX_BACKOFF = 16;

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
export function sendBare(
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

/** Sends one segment at SND_UNA (fast retransmit, NewReno partial ACK), outside the window accounting. */
export function retransmitHead(c: Ctx, t: number): void {
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

/** Sends a RST for a synchronized connection (ABORT) and returns it to CLOSED. */
export function resetConnection(c: Ctx, t: number): boolean {
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

// ---------------------------------------------------------------------------
// RTT estimation (RFC 6298), in microseconds

function startRttTiming(c: Ctx, t: number, seq: number): void {
  setFlag(c, t, TF.RTT_TIMING);
  c.mem.setU32(t + T.RTT_SEQ, seq);
  c.mem.setU64(t + T.RTT_START, c.now);
}

/** RTO from SRTT/RTTVAR (no backoff), or the initial RTO before any sample. */
export function rtoFromEstimate(c: Ctx, t: number): number {
  const m = c.mem;
  const srtt = m.u32(t + T.SRTT_US);
  if (srtt === 0) return c.initRto;
  const rto = Math.ceil((srtt + Math.max(1000, 4 * m.u32(t + T.RTTVAR_US))) / 1000);
  return Math.min(Math.max(rto, c.minRto), c.maxRto);
}

/** Folds one round-trip measurement (ms) into SRTT and RTTVAR (RFC 6298 2.2, 2.3). */
export function rttSample(c: Ctx, t: number, ms: number): void {
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
// Timers: retransmission, persist, delayed ACK, TIME_WAIT

function persistInterval(c: Ctx, t: number): number {
  const base = Math.max(rtoFromEstimate(c, t), c.minRto);
  return Math.min(base * 2 ** c.mem.u8(t + T.PERSIST_BACKOFF), c.maxRto);
}

/** TIME_WAIT: retransmission stops; the TCB closes after 2MSL (`timeWaitMs`). */
export function enterTimeWait(c: Ctx, t: number): void {
  const m = c.mem;
  setState(c, t, St.TIME_WAIT);
  m.setU64(t + T.RTO_AT, 0);
  m.setU64(t + T.PERSIST_AT, 0);
  // A zero 2MSL still waits for the next poll, so the final ACK goes out first.
  m.setU64(t + T.CLOSE_AT, Math.max(c.now + c.timeWait, 1));
}

/** An orphaned FIN_WAIT_2 (application closed, peer never sends its FIN) is dropped after 2MSL, as Linux's tcp_fin_timeout. */
export function armOrphanTimer(c: Ctx, t: number): void {
  if (!hasFlag(c, t, TF.OWNED) && c.mem.u32(t + T.PARENT) === 0) {
    c.mem.setU64(t + T.CLOSE_AT, c.now + Math.max(c.timeWait, 1));
  }
}

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
