/**
 * The COLO comparator (sans-IO: frames in with a time, frames out and
 * checkpoint requests through injected hooks; no sockets, no timers).
 *
 * Data flow. The primary's guest output (`primary`) is held here, per
 * connection, until the secondary's guest has produced the same output
 * (`secondary`, its frames already passed through the secondary's sequence
 * rewriter, so both sides number TCP bytes alike). A primary frame whose
 * output the secondary matched is released to the LAN at once (`release`).
 * When the two differ, when something waits too long, periodically, or when a
 * queue is full, the comparator asks for a checkpoint (`checkpoint(reason)`,
 * once until `reset`). The host takes the checkpoint, which makes the
 * secondary's state equal to the primary's, and calls `reset`: the primary
 * frames still held are handed back to be released once that checkpoint is
 * committed, and comparison starts afresh.
 *
 * What is compared:
 *  - TCP, per connection (addresses and ports): the byte stream, by sequence
 *    number, whatever the segmentation on either side. Header fields (window,
 *    options, IP id/TTL) are ignored. A primary segment is released when:
 *      * every payload byte in it equals the secondary's byte at the same
 *        sequence number (bytes below the highest point already matched are
 *        accepted: TCP never changes a byte once it has a sequence number, so
 *        a retransmission re-sends what was compared);
 *      * a FIN: the secondary sent its FIN at the same sequence number;
 *      * an RST: the secondary reset the connection too;
 *      * its ACK number, if any, is at most the highest ACK the secondary sent.
 *        Why: an ACK tells the client it may forget those bytes. If the primary
 *        acknowledged input the secondary never received and then died, the
 *        secondary could never get those bytes again: the stream would break.
 *        This costs nothing on request/response traffic (the reply carries the
 *        ACK on both sides) and a pure ACK waits at most for the secondary's
 *        delayed ACK.
 *    SYN segments carry no compared payload; pure ACKs are released as soon
 *    as their ACK number is covered. Window-only differences never matter.
 *    A mismatch is any differing byte, a FIN at another position, or data
 *    past the other side's FIN.
 *  - UDP, ICMP and other IPv4: whole frames paired in order per flow, equal
 *    except the IP header's TTL, identification and checksum.
 *  - Anything else (ARP...): whole frames paired in order per ethertype.
 *
 * Invariants:
 *  - Nothing is released that the secondary has not produced (the output a
 *    client sees can be continued by the secondary at failover), except what
 *    `reset` hands back, which the host releases only after the checkpoint
 *    that made the secondary equal to the primary is committed.
 *  - Per connection, primary frames leave in the order the primary sent them.
 *  - Bounded: at most `maxPackets` frames held per side and `maxConnections`
 *    connections; a frame beyond that is dropped (TCP retransmits it) and a
 *    `queue_full` checkpoint is asked for.
 */
import { TCP_FLAG } from "../net/wire.js";
import { type FrameView, seqDiff, type TcpView, tcpKey, viewFrame } from "./packet.js";

export const CHECKPOINT_REASONS = ["mismatch", "timeout", "periodic", "queue_full"] as const;
/** Why the comparator asks for a checkpoint. */
export type CheckpointReason = (typeof CHECKPOINT_REASONS)[number];

export interface CompareConfig {
  /** A frame (either side) held longer than this forces a checkpoint (QEMU: 3000 ms). */
  readonly timeoutMs: number;
  /** How often held frames are checked against the timeout (QEMU: 1000 ms). */
  readonly checkIntervalMs: number;
  /** A checkpoint at least this often, 0 for never (QEMU: 20 s). */
  readonly periodMs: number;
  /** Frames held per side, at most (QEMU: 1024). */
  readonly maxPackets: number;
  /** Connections tracked, at most. */
  readonly maxConnections: number;
}

export const DEFAULT_COMPARE_CONFIG: CompareConfig = {
  timeoutMs: 3000,
  checkIntervalMs: 1000,
  periodMs: 20_000,
  maxPackets: 1024,
  maxConnections: 4096,
};

export interface CompareHooks {
  /** A primary frame the secondary matched: send it to the LAN. */
  release(frame: Buffer): void;
  /** Take a checkpoint (asked once until `reset`). */
  checkpoint(reason: CheckpointReason): void;
  /** Milliseconds a released frame was held (for the release-delay histogram). */
  observeReleaseDelay?(ms: number): void;
}

export interface CompareStats {
  /** Primary frames by outcome: released on a match, found different, held past the timeout. */
  readonly compared: { match: number; mismatch: number; timeout: number };
  /** Checkpoints asked for, by reason. */
  readonly checkpoints: Record<CheckpointReason, number>;
  /** Primary frames handed back by `reset`. */
  flushed: number;
  /** Frames dropped because a queue or the connection table was full. */
  readonly dropped: { primary: number; secondary: number };
}

interface Held {
  readonly frame: Buffer;
  readonly at: number;
  /** Arrival order across connections (reset hands frames back in it). */
  readonly n: number;
  /** Counted once as held past the timeout. */
  timedOut: boolean;
}

interface HeldSegment extends Held {
  readonly start: number;
  readonly end: number;
  /** Payload bytes [start, checkedTo) are known to match. */
  checkedTo: number;
  readonly payloadOff: number;
  readonly fin: boolean;
  readonly rst: boolean;
  readonly ack: number | undefined;
}

/** The secondary's TCP bytes not yet matched: one contiguous run plus a few out-of-order pieces. */
class SecondaryStream {
  start = 0;
  private buf = Buffer.alloc(0);
  private head = 0;
  len = 0;
  started = false;
  /** Ends and arrival times of the segments in the run, oldest first (the queue accounting). */
  readonly segs: { end: number; at: number }[] = [];
  readonly ooo: { seq: number; data: Buffer; at: number }[] = [];

  get end(): number {
    return (this.start + this.len) >>> 0;
  }

  /** Adds bytes at `seq`; false when they had to be dropped (no room for another piece). */
  add(seq: number, data: Buffer, at: number): boolean {
    if (!this.started) {
      this.started = true;
      this.start = seq;
    }
    const e = (seq + data.length) >>> 0;
    if (seqDiff(e, this.end) <= 0) return true; // nothing new (a retransmission)
    if (seqDiff(seq, this.end) > 0) {
      if (this.ooo.length >= 16) return false;
      this.ooo.push({ seq, data: Buffer.from(data), at });
      return true;
    }
    const skip = Math.max(0, seqDiff(this.end, seq));
    this.append(data.subarray(skip), at);
    // Pieces that now touch the run join it.
    for (let merged = true; merged; ) {
      merged = false;
      for (let i = 0; i < this.ooo.length; i++) {
        const o = this.ooo[i]!;
        if (seqDiff(o.seq, this.end) > 0) continue;
        this.ooo.splice(i, 1);
        const oe = (o.seq + o.data.length) >>> 0;
        if (seqDiff(oe, this.end) > 0) this.append(o.data.subarray(seqDiff(this.end, o.seq)), o.at);
        merged = true;
        break;
      }
    }
    return true;
  }

  private append(d: Buffer, at: number): void {
    if (this.head + this.len + d.length > this.buf.length) {
      const need = this.len + d.length;
      if (need <= this.buf.length) this.buf.copy(this.buf, 0, this.head, this.head + this.len);
      else {
        const nb = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2, 4096));
        this.buf.copy(nb, 0, this.head, this.head + this.len);
        this.buf = nb;
      }
      this.head = 0;
    }
    d.copy(this.buf, this.head + this.len);
    this.len += d.length;
    this.segs.push({ end: (this.start + this.len) >>> 0, at });
  }

  /** A view of the bytes [seq, seq + n) of the run; the caller checked they are in it. */
  view(seq: number, n: number): Buffer {
    const o = this.head + seqDiff(seq, this.start);
    return this.buf.subarray(o, o + n);
  }

  /** Forgets the bytes before `seq` (matched, so never needed again). */
  trim(seq: number): void {
    if (!this.started) return;
    const d = seqDiff(seq, this.start);
    if (d <= 0) return;
    if (d >= this.len) {
      this.start = seq;
      this.head = 0;
      this.len = 0;
    } else {
      this.start = seq;
      this.head += d;
      this.len -= d;
    }
    while (this.segs.length > 0 && seqDiff(this.segs[0]!.end, seq) <= 0) this.segs.shift();
    for (let i = this.ooo.length - 1; i >= 0; i--) {
      const o = this.ooo[i]!;
      if (seqDiff((o.seq + o.data.length) >>> 0, seq) <= 0) this.ooo.splice(i, 1);
    }
  }

  /** Pieces held, for the queue bound. */
  get pieces(): number {
    return this.segs.length + this.ooo.length;
  }

  oldest(): number {
    let t = Number.POSITIVE_INFINITY;
    if (this.segs.length > 0) t = this.segs[0]!.at;
    for (const o of this.ooo) t = Math.min(t, o.at);
    return t;
  }
}

class TcpConn {
  readonly kind = "tcp";
  readonly held: HeldSegment[] = [];
  readonly sec = new SecondaryStream();
  /** Highest ACK number the secondary sent. */
  secAck: number | undefined;
  /** Sequence number of the secondary's FIN, and when it came (until the primary's FIN matches it). */
  secFin: number | undefined;
  secFinAt: number | undefined;
  /** Arrival times of secondary RSTs not yet matched. */
  readonly secRsts: number[] = [];
  /** Primary payload bytes below this were matched. */
  verifiedTo: number | undefined;
  mismatch = false;

  get secPending(): number {
    return this.sec.pieces + this.secRsts.length + (this.secFinAt !== undefined ? 1 : 0);
  }
  get idle(): boolean {
    return this.held.length === 0 && this.secPending === 0;
  }
}

interface HeldDatagram extends Held {
  readonly norm: Buffer;
}

class DatagramConn {
  readonly kind = "datagram";
  readonly held: HeldDatagram[] = [];
  readonly sec: { norm: Buffer; at: number }[] = [];
  mismatch = false;
  get secPending(): number {
    return this.sec.length;
  }
  get idle(): boolean {
    return this.held.length === 0 && this.sec.length === 0;
  }
}

type Conn = TcpConn | DatagramConn;

/** The bytes compared for a non-TCP frame: IPv4 TTL, identification and header checksum zeroed. */
function normalize(f: Buffer, v: FrameView): Buffer {
  if (v.kind !== "ip") return f;
  const n = Buffer.from(f);
  n.fill(0, v.ipOff + 4, v.ipOff + 6);
  n[v.ipOff + 8] = 0;
  n.fill(0, v.ipOff + 10, v.ipOff + 12);
  return n;
}

export class Comparator {
  readonly config: CompareConfig;
  readonly stats: CompareStats = {
    compared: { match: 0, mismatch: 0, timeout: 0 },
    checkpoints: { mismatch: 0, timeout: 0, periodic: 0, queue_full: 0 },
    flushed: 0,
    dropped: { primary: 0, secondary: 0 },
  };
  private readonly conns = new Map<string, Conn>();
  private primaryHeld = 0;
  private secondaryHeld = 0;
  private n = 0;
  private pending: CheckpointReason | undefined;
  private lastCheckpointAt: number;
  private lastTimeoutCheck: number;

  constructor(
    config: Partial<CompareConfig>,
    private readonly hooks: CompareHooks,
    now: number,
  ) {
    this.config = { ...DEFAULT_COMPARE_CONFIG, ...config };
    this.lastCheckpointAt = now;
    this.lastTimeoutCheck = now;
  }

  /** Frames held now, per side (secondary: TCP pieces, unmatched FIN/RST and datagrams). */
  get held(): { primary: number; secondary: number } {
    return { primary: this.primaryHeld, secondary: this.secondaryHeld };
  }

  /** The checkpoint asked for and not yet taken (`reset` clears it). */
  get pendingCheckpoint(): CheckpointReason | undefined {
    return this.pending;
  }

  /** Connections tracked. */
  get connections(): number {
    return this.conns.size;
  }

  /** A frame the primary's guest transmitted. */
  primary(frame: Buffer, now: number): void {
    const v = viewFrame(frame);
    const key = v.kind === "tcp" ? tcpKey(v) : v.key;
    const conn = this.conn(key, v.kind === "tcp", "primary");
    if (!conn) return;
    if (conn.kind === "tcp") {
      const t = v as TcpView;
      const start = (t.seq + ((t.flags & TCP_FLAG.SYN) !== 0 ? 1 : 0)) >>> 0;
      const seg: HeldSegment = {
        frame,
        at: now,
        n: this.n++,
        start,
        end: (start + t.payloadLen) >>> 0,
        checkedTo: start,
        payloadOff: t.payloadOff,
        fin: (t.flags & TCP_FLAG.FIN) !== 0,
        rst: (t.flags & TCP_FLAG.RST) !== 0,
        ack: (t.flags & TCP_FLAG.ACK) !== 0 ? t.ack : undefined,
        timedOut: false,
      };
      conn.held.push(seg);
      this.primaryHeld++;
      this.settleTcp(conn, now);
      if (this.primaryHeld > this.config.maxPackets && conn.held[conn.held.length - 1] === seg) {
        conn.held.pop();
        this.primaryHeld--;
        this.stats.dropped.primary++;
        this.request("queue_full");
      }
      return;
    }
    if (this.primaryHeld >= this.config.maxPackets) {
      this.stats.dropped.primary++;
      this.request("queue_full");
      return;
    }
    conn.held.push({ frame, at: now, n: this.n++, timedOut: false, norm: normalize(frame, v) });
    this.primaryHeld++;
    this.settleDatagram(conn, now);
  }

  /** A frame the secondary's guest transmitted (after the sequence rewriter). */
  secondary(frame: Buffer, now: number): void {
    const v = viewFrame(frame);
    const key = v.kind === "tcp" ? tcpKey(v) : v.key;
    const conn = this.conn(key, v.kind === "tcp", "secondary");
    if (!conn) return;
    if (conn.kind === "tcp") {
      const t = v as TcpView;
      if ((t.flags & TCP_FLAG.ACK) !== 0 && (conn.secAck === undefined || seqDiff(t.ack, conn.secAck) > 0)) {
        conn.secAck = t.ack;
      }
      const before = conn.secPending;
      if ((t.flags & TCP_FLAG.RST) !== 0) conn.secRsts.push(now);
      const start = (t.seq + ((t.flags & TCP_FLAG.SYN) !== 0 ? 1 : 0)) >>> 0;
      if (t.payloadLen > 0) {
        if (this.secondaryHeld >= this.config.maxPackets) {
          this.stats.dropped.secondary++;
          this.request("queue_full");
        } else if (!conn.sec.add(start, frame.subarray(t.payloadOff, t.payloadOff + t.payloadLen), now)) {
          this.stats.dropped.secondary++;
        }
      }
      if ((t.flags & TCP_FLAG.FIN) !== 0 && conn.secFin === undefined) {
        conn.secFin = (start + t.payloadLen) >>> 0;
        conn.secFinAt = now;
      }
      if (conn.verifiedTo !== undefined) conn.sec.trim(conn.verifiedTo);
      this.secondaryHeld += conn.secPending - before;
      this.settleTcp(conn, now);
      return;
    }
    if (this.secondaryHeld >= this.config.maxPackets) {
      this.stats.dropped.secondary++;
      this.request("queue_full");
      return;
    }
    conn.sec.push({ norm: normalize(frame, v), at: now });
    this.secondaryHeld++;
    this.settleDatagram(conn, now);
  }

  /** Checks the periodic checkpoint and, every `checkIntervalMs`, the timeout. */
  poll(now: number): void {
    const c = this.config;
    if (c.periodMs > 0 && now - this.lastCheckpointAt >= c.periodMs) this.request("periodic");
    if (now - this.lastTimeoutCheck < c.checkIntervalMs) return;
    this.lastTimeoutCheck = now;
    const limit = now - c.timeoutMs;
    let expired = false;
    for (const conn of this.conns.values()) {
      for (const h of conn.held) {
        if (h.at > limit) break; // held frames are in arrival order
        expired = true;
        if (!h.timedOut && !conn.mismatch) this.stats.compared.timeout++;
        h.timedOut = true;
      }
      if (conn.kind === "tcp") {
        const oldest = Math.min(conn.sec.oldest(), conn.secRsts[0] ?? Infinity, conn.secFinAt ?? Infinity);
        if (oldest <= limit) expired = true;
      } else if (conn.sec.length > 0 && conn.sec[0]!.at <= limit) expired = true;
    }
    // Why: output one side produced and the other did not is divergence we cannot see byte by byte.
    if (expired) this.request("timeout");
  }

  /**
   * A checkpoint was taken (the secondary now equals the primary): forgets
   * every connection and returns the primary frames still held, in the order
   * they came. Release them only once that checkpoint is committed.
   */
  reset(now: number): Buffer[] {
    const all: Held[] = [];
    for (const conn of this.conns.values()) all.push(...conn.held);
    all.sort((a, b) => a.n - b.n);
    this.conns.clear();
    this.primaryHeld = 0;
    this.secondaryHeld = 0;
    this.pending = undefined;
    this.lastCheckpointAt = now;
    this.lastTimeoutCheck = now;
    this.stats.flushed += all.length;
    return all.map((h) => h.frame);
  }

  private request(reason: CheckpointReason): void {
    if (this.pending !== undefined) return;
    this.pending = reason;
    this.stats.checkpoints[reason]++;
    this.hooks.checkpoint(reason);
  }

  private conn(key: string, tcp: boolean, side: "primary" | "secondary"): Conn | undefined {
    const found = this.conns.get(key);
    if (found) return found;
    if (this.conns.size >= this.config.maxConnections) {
      for (const [k, c] of this.conns) {
        if (c.idle) {
          this.conns.delete(k);
          break;
        }
      }
      if (this.conns.size >= this.config.maxConnections) {
        this.stats.dropped[side]++;
        this.request("queue_full");
        return undefined;
      }
    }
    const c = tcp ? new TcpConn() : new DatagramConn();
    this.conns.set(key, c);
    return c;
  }

  private release(h: Held, now: number): void {
    this.primaryHeld--;
    this.stats.compared.match++;
    this.hooks.observeReleaseDelay?.(now - h.at);
    this.hooks.release(h.frame);
  }

  private mismatch(conn: Conn, frames: number): void {
    conn.mismatch = true;
    this.stats.compared.mismatch += frames;
    this.request("mismatch");
  }

  private settleTcp(conn: TcpConn, now: number): void {
    if (conn.mismatch) return;
    for (const h of conn.held) {
      if (this.checkSegment(conn, h) === "mismatch") {
        this.mismatch(conn, 1);
        return;
      }
    }
    while (conn.held.length > 0) {
      const h = conn.held[0]!;
      if (!this.covered(conn, h)) break;
      conn.held.shift();
      if (h.rst) {
        conn.secRsts.shift();
        this.secondaryHeld--;
      }
      if (h.fin && conn.secFinAt !== undefined) {
        conn.secFinAt = undefined; // the FIN is matched; a retransmitted one matches the same position
        this.secondaryHeld--;
      }
      if (
        seqDiff(h.end, h.start) > 0 &&
        (conn.verifiedTo === undefined || seqDiff(h.end, conn.verifiedTo) > 0)
      ) {
        conn.verifiedTo = h.end;
        const before = conn.sec.pieces;
        conn.sec.trim(h.end);
        this.secondaryHeld -= before - conn.sec.pieces;
      }
      this.release(h, now);
    }
  }

  /** Compares what can be compared of `h` now. */
  private checkSegment(conn: TcpConn, h: HeldSegment): "mismatch" | "ok" {
    let from = h.checkedTo;
    if (conn.verifiedTo !== undefined && seqDiff(conn.verifiedTo, from) > 0) {
      from = seqDiff(conn.verifiedTo, h.end) < 0 ? conn.verifiedTo : h.end;
    }
    const sec = conn.sec;
    if (seqDiff(h.end, from) > 0 && sec.started && seqDiff(from, sec.start) >= 0) {
      const upto = seqDiff(h.end, sec.end) < 0 ? h.end : sec.end;
      const n = seqDiff(upto, from);
      if (n > 0) {
        const p = h.payloadOff + seqDiff(from, h.start);
        if (!h.frame.subarray(p, p + n).equals(sec.view(from, n))) return "mismatch";
        from = upto;
      }
    }
    h.checkedTo = from;
    if (conn.secFin !== undefined) {
      // Bytes past the secondary's end of stream, or a FIN elsewhere, are different streams.
      if (seqDiff(h.end, conn.secFin) > 0) return "mismatch";
      if (h.fin && h.end !== conn.secFin) return "mismatch";
    }
    if (h.fin && sec.started && seqDiff(sec.end, h.end) > 0) return "mismatch";
    return "ok";
  }

  private covered(conn: TcpConn, h: HeldSegment): boolean {
    if (seqDiff(h.end, h.checkedTo) > 0) return false;
    if (h.fin && conn.secFin !== h.end) return false;
    if (h.rst && conn.secRsts.length === 0) return false;
    if (h.ack !== undefined && (conn.secAck === undefined || seqDiff(conn.secAck, h.ack) < 0)) return false;
    return true;
  }

  private settleDatagram(conn: DatagramConn, now: number): void {
    while (!conn.mismatch && conn.held.length > 0 && conn.sec.length > 0) {
      const p = conn.held[0]!;
      const s = conn.sec[0]!;
      if (!p.norm.equals(s.norm)) {
        this.mismatch(conn, 1);
        return;
      }
      conn.held.shift();
      conn.sec.shift();
      this.secondaryHeld--;
      this.release(p, now);
    }
  }
}
