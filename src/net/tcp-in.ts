/**
 * TCP input: one arriving segment through the RFC 9293 "SEGMENT ARRIVES"
 * steps (3.10.7): LISTEN (a SYN creates a child TCB), SYN_SENT, and every
 * synchronized state: sequence acceptability, RST and SYN with the RFC 5961
 * checks, ACK processing with NewReno congestion control (RFC 5681/6582),
 * segment text into the receive ring (out-of-order ranges joined when the gap
 * fills), and FIN.
 *
 * Changes TCBs (tcb.ts, layout in layout.ts) and asks tcp-out.ts for the
 * output the new state calls for.
 */
import type { Ctx } from "./ctx.js";
import { OOO_MAX, R, S, T, TF } from "./layout.js";
import {
  allocBuffers,
  allocTcb,
  CWND_MAX,
  canReceiveData,
  clearFlag,
  DEFAULT_PEER_MSS,
  enterClosed,
  freeTcb,
  hasFlag,
  hashFind,
  hashInsert,
  initConnection,
  ringWrite,
  setFlag,
  setState,
  socketId,
  stateOf,
  TcpError,
  TcpState,
  tcbAt,
} from "./tcb.js";
import {
  armOrphanTimer,
  enterTimeWait,
  output,
  resetConnection,
  retransmitHead,
  rtoFromEstimate,
  rttSample,
  sendBare,
} from "./tcp-out.js";
import {
  decodeTcp,
  type Ipv4Header,
  seqGe,
  seqGt,
  seqLe,
  seqLt,
  TCP_FLAG,
  type TcpOptions,
  tcpChecksumOk,
} from "./wire.js";

const { FIN, SYN, RST, ACK } = TCP_FLAG;
const St = TcpState;

/** Smallest MSS we accept from a peer; tiny MSS values are a resource-exhaustion trick. */
const MIN_PEER_MSS = 64;

/** Initial congestion window in segments (RFC 6928). */
const INITIAL_WINDOW_SEGMENTS = 10;

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

// ---------------------------------------------------------------------------
// LISTEN and SYN_SENT

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

function childCount(c: Ctx, lid: number): number {
  let n = 0;
  for (let i = 0; i < c.maxSockets; i++) {
    const t = tcbAt(c, i);
    if (t !== 0 && c.mem.u32(t + T.PARENT) === lid) n++;
  }
  return n;
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

// ---------------------------------------------------------------------------
// Synchronized states

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

// ---------------------------------------------------------------------------
// Segment text and FIN

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
