/**
 * The TCP sequence rewriter of a COLO secondary (sans-IO: frames in, frames
 * out through injected hooks).
 *
 * Why it exists. Between checkpoints the secondary's guest draws its own
 * random numbers, so a connection accepted since the last checkpoint has an
 * initial sequence number (ISN) on the secondary that differs from the
 * primary's. Clients only ever see the primary's numbers. The rewriter keeps,
 * per connection, `delta = secondary ISN - primary ISN` (mod 2^32) and
 *  - adds it to the ACK number of every frame going into the secondary's
 *    guest (the client acknowledges the primary's bytes), and
 *  - subtracts it from the sequence number of every frame the secondary's
 *    guest sends (so the comparator sees the primary's numbering),
 * fixing the TCP checksum incrementally (RFC 1624). Nothing else differs: the
 * client's own sequence space is the same on both sides.
 *
 * How it learns delta, from traffic the secondary sees anyway (no extra
 * record on the wire): the secondary's ISN from its guest's SYN-ACK (or SYN,
 * for a connection the guest opens), the primary's ISN from the client's
 * first ACK after it (ACK number - 1: the client can only acknowledge an ISN
 * it was sent). Until the guest's SYN-ACK has gone out, frames of a handshake
 * in progress that carry an ACK are held back: delivered unrewritten they
 * would acknowledge a sequence number the guest never sent, and it would
 * answer with a reset. After failover the same rule also covers a client
 * that saw only the secondary's SYN-ACK: its ACK gives delta 0.
 *
 * Checkpoints. After a checkpoint the secondary's state is the primary's, so
 * every delta is 0 and the table is emptied (`reset`); frames held at that
 * moment were input of the checkpointed epoch, already part of the state, and
 * are dropped. Connections the rewriter has no entry for pass unchanged.
 *
 * Failover. `failover()` marks the rewriter permanent: the secondary now runs
 * on its own state, no checkpoint will ever zero its deltas, and it keeps
 * rewriting (and learning, for handshakes in progress) so that the clients'
 * sequence numbers stay valid. `reset` then throws. The deltas are host
 * state: whatever protects this node afterwards must carry them
 * (`carried`, in COLO_START).
 *
 * Carried deltas. A primary that took over earlier renumbers some
 * connections at its own edge (`base`: its guest's numbers minus the
 * clients'). They were open before this secondary's COLO_START, so its
 * guest numbers them as that primary's guest does and it has no entry of
 * its own for them: until failover the base changes nothing here; at
 * failover each becomes this edge's delta for that connection. A new
 * connection on the same addresses (a SYN either way) drops its base.
 *
 * Bounded: at most `maxConnections` entries (closed connections are evicted
 * first; a connection that finds no room is not rewritten, which the
 * comparator sees as a difference) and `maxHeldFrames` frames held per
 * connection (beyond that they are dropped; TCP retransmits).
 */
import { RemusError } from "../errors.js";
import { rd16, rd32, TCP_FLAG, wr32 } from "../net/wire.js";
import type { ColoEdgeEntry } from "../protocol/records.js";
import { type TcpView, viewFrame } from "./packet.js";

export interface RewriterHooks {
  /** A frame for the secondary's guest (its NIC's receive ring). */
  toGuest(frame: Buffer): void;
  /** A frame the secondary's guest sent, renumbered: to the comparator, or to the LAN after failover. */
  toWire(frame: Buffer): void;
}

export interface RewriterConfig {
  readonly maxConnections: number;
  readonly maxHeldFrames: number;
}

export const DEFAULT_REWRITER_CONFIG: RewriterConfig = { maxConnections: 4096, maxHeldFrames: 64 };

/** One connection's mapping, from the guest's point of view. */
export interface RewriteEntry {
  readonly localIp: number;
  readonly localPort: number;
  readonly remoteIp: number;
  readonly remotePort: number;
  /** Secondary ISN minus primary ISN, mod 2^32 (0 until learned). */
  readonly delta: number;
  readonly learned: boolean;
}

export interface RewriterStats {
  /** Inbound frames whose ACK number was changed. */
  inbound: number;
  /** Outbound frames whose sequence number was changed. */
  outbound: number;
  /** Connections whose delta was learned. */
  learned: number;
  /** Inbound frames held until the guest's SYN-ACK, and those dropped when a hold queue was full or reset. */
  held: number;
  dropped: number;
  /** Connections not tracked because the table was full. */
  untracked: number;
  /** Connections whose delta came from the primary's edge (`carry`) at failover. */
  carried: number;
}

interface Entry {
  localIp: number;
  localPort: number;
  remoteIp: number;
  remotePort: number;
  /** "syn": the peer's SYN seen; "isn": our ISN known, the primary's not yet; "mapped": delta known. */
  state: "syn" | "isn" | "mapped";
  ourIsn: number;
  delta: number;
  held: Buffer[];
  finIn: boolean;
  finOut: boolean;
  rst: boolean;
}

/**
 * RFC 1624 eqn. 3: the checksum after a 16-bit word of the covered data
 * changed from `oldWord` to `newWord`: HC' = ~(~HC + ~m + m').
 */
export function checksumAdjust16(hc: number, oldWord: number, newWord: number): number {
  let s = (~hc & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Replaces the u32 at `off` with `value`, updating the 16-bit checksum at `csumOff` incrementally. */
export function rewriteU32(frame: Uint8Array, off: number, value: number, csumOff: number): void {
  const old = rd32(frame, off);
  const v = value >>> 0;
  let hc = rd16(frame, csumOff);
  hc = checksumAdjust16(hc, old >>> 16, v >>> 16);
  hc = checksumAdjust16(hc, old & 0xffff, v & 0xffff);
  wr32(frame, off, v);
  frame[csumOff] = hc >>> 8;
  frame[csumOff + 1] = hc & 0xff;
}

export class SeqRewriter {
  readonly config: RewriterConfig;
  readonly stats: RewriterStats = {
    inbound: 0,
    outbound: 0,
    learned: 0,
    held: 0,
    dropped: 0,
    untracked: 0,
    carried: 0,
  };
  private readonly table = new Map<string, Entry>();
  /** The primary's edge deltas, by key (see the header): applied at failover. */
  private base = new Map<string, number>();
  private permanent = false;

  constructor(
    private readonly hooks: RewriterHooks,
    config: Partial<RewriterConfig> = {},
  ) {
    this.config = { ...DEFAULT_REWRITER_CONFIG, ...config };
  }

  /** True after `failover()`. */
  get failedOver(): boolean {
    return this.permanent;
  }

  /** Connections with an entry. */
  get size(): number {
    return this.table.size;
  }

  /** The table, for status and for carrying it to whatever protects this node after failover. */
  entries(): RewriteEntry[] {
    return [...this.table.values()].map((e) => ({
      localIp: e.localIp,
      localPort: e.localPort,
      remoteIp: e.remoteIp,
      remotePort: e.remotePort,
      delta: e.delta,
      learned: e.state === "mapped",
    }));
  }

  /** What this edge renumbers, for the secondary that protects this node next (learned, non-zero). */
  carried(): ColoEdgeEntry[] {
    const out: ColoEdgeEntry[] = [];
    for (const e of this.table.values()) {
      if (e.state !== "mapped" || e.delta === 0 || e.rst || (e.finIn && e.finOut)) continue;
      const { localIp, localPort, remoteIp, remotePort, delta } = e;
      out.push({ localIp, localPort, remoteIp, remotePort, delta });
    }
    return out;
  }

  /** COLO_START: the primary's edge deltas, kept until failover (replacing any earlier ones). */
  carry(edge: readonly ColoEdgeEntry[]): void {
    this.base = new Map(
      edge.map((e) => [`${e.localIp}:${e.localPort}<${e.remoteIp}:${e.remotePort}`, e.delta]),
    );
  }

  /** A frame from the client side (mirrored by the primary, or from the LAN after failover) for the guest. */
  inbound(frame: Buffer): void {
    const v = viewFrame(frame);
    if (v.kind !== "tcp") {
      this.hooks.toGuest(frame);
      return;
    }
    const key = `${v.dst}:${v.dstPort}<${v.src}:${v.srcPort}`;
    const syn = (v.flags & TCP_FLAG.SYN) !== 0;
    const ack = (v.flags & TCP_FLAG.ACK) !== 0;
    let e = this.table.get(key);
    if (syn && !ack) {
      // The peer opens a connection (a SYN on a live one is the guest's business: it answers with an ACK).
      if (!e || e.rst || (e.finIn && e.finOut)) {
        e = this.add(key, v.dst, v.dstPort, v.src, v.srcPort, "syn", 0);
      }
      this.hooks.toGuest(frame);
      return;
    }
    if (!e) {
      this.hooks.toGuest(frame);
      return;
    }
    if (e.state === "syn" && ack) {
      if (e.held.length >= this.config.maxHeldFrames) this.stats.dropped++;
      else {
        e.held.push(frame);
        this.stats.held++;
      }
      return;
    }
    this.deliver(e, frame, v);
  }

  /** A frame the secondary's guest transmitted. */
  outbound(frame: Buffer): void {
    const v = viewFrame(frame);
    if (v.kind !== "tcp") {
      this.hooks.toWire(frame);
      return;
    }
    const key = `${v.src}:${v.srcPort}<${v.dst}:${v.dstPort}`;
    const syn = (v.flags & TCP_FLAG.SYN) !== 0;
    const ack = (v.flags & TCP_FLAG.ACK) !== 0;
    let e = this.table.get(key);
    if (syn && !ack) {
      // The guest opens a connection: its ISN is in the SYN; the peer's SYN-ACK will tell the primary's.
      e = this.add(key, v.src, v.srcPort, v.dst, v.dstPort, "isn", v.seq);
    } else if (syn && (!e || e.state === "syn" || v.seq !== e.ourIsn)) {
      // The guest accepts a connection (a retransmitted SYN-ACK repeats the ISN and changes nothing).
      const held = e?.held.splice(0) ?? [];
      if (e) {
        e.state = "isn";
        e.ourIsn = v.seq;
        e.delta = 0;
      } else e = this.add(key, v.src, v.srcPort, v.dst, v.dstPort, "isn", v.seq);
      if (e) for (const f of held) this.deliver(e, f, viewFrame(f) as TcpView);
    }
    if (e) {
      if ((v.flags & TCP_FLAG.FIN) !== 0) e.finOut = true;
      if ((v.flags & TCP_FLAG.RST) !== 0) e.rst = true;
      if (e.state === "mapped" && e.delta !== 0) {
        rewriteU32(frame, v.tcpOff + 4, v.seq - e.delta, v.tcpOff + 16);
        this.stats.outbound++;
      }
    }
    this.hooks.toWire(frame);
  }

  /**
   * A checkpoint made the secondary's state equal to the primary's: every
   * delta is 0 again. Held frames were input of the checkpointed epoch (the
   * checkpoint includes them) and are dropped.
   */
  reset(): void {
    // Why: after failover the guest's sequence space is its own for good; zeroing a delta would break that connection.
    if (this.permanent) {
      throw new RemusError("REMUSD_ERR_INTERNAL", "the sequence rewriter cannot be reset after failover");
    }
    for (const e of this.table.values()) this.stats.dropped += e.held.length;
    this.table.clear();
  }

  /**
   * The secondary took over: keep every delta for the life of its
   * connection, and the primary's edge deltas (`carry`) for the
   * connections opened before it started.
   */
  failover(): void {
    this.permanent = true;
    for (const [key, delta] of this.base) {
      // Why only without an entry: a connection with one began after COLO_START (a SYN dropped its base).
      if (this.table.has(key)) continue;
      const [local, remote] = key.split("<") as [string, string];
      const [lip, lport] = local.split(":").map(Number) as [number, number];
      const [rip, rport] = remote.split(":").map(Number) as [number, number];
      const e = this.add(key, lip, lport, rip, rport, "mapped", 0);
      if (!e) continue;
      e.delta = delta;
      this.stats.carried++;
    }
    this.base.clear();
  }

  private deliver(e: Entry, frame: Buffer, v: TcpView): void {
    const ack = (v.flags & TCP_FLAG.ACK) !== 0;
    if (e.state === "isn" && ack) {
      // The client acknowledges the ISN it was sent: the primary's (or ours, after a failover).
      e.delta = (e.ourIsn - ((v.ack - 1) >>> 0)) >>> 0;
      e.state = "mapped";
      this.stats.learned++;
    }
    if ((v.flags & TCP_FLAG.FIN) !== 0) e.finIn = true;
    if ((v.flags & TCP_FLAG.RST) !== 0) e.rst = true;
    if (ack && e.state === "mapped" && e.delta !== 0) {
      rewriteU32(frame, v.tcpOff + 8, v.ack + e.delta, v.tcpOff + 16);
      this.stats.inbound++;
    }
    this.hooks.toGuest(frame);
  }

  private add(
    key: string,
    localIp: number,
    localPort: number,
    remoteIp: number,
    remotePort: number,
    state: Entry["state"],
    ourIsn: number,
  ): Entry | undefined {
    const old = this.table.get(key);
    // A new connection on these addresses: the primary's edge delta was the old one's.
    if (state !== "mapped") this.base.delete(key);
    if (old) {
      this.stats.dropped += old.held.length;
      this.table.delete(key);
    } else if (this.table.size >= this.config.maxConnections && !this.evict()) {
      this.stats.untracked++;
      return undefined;
    }
    const e: Entry = {
      localIp,
      localPort,
      remoteIp,
      remotePort,
      state,
      ourIsn,
      delta: 0,
      held: [],
      finIn: false,
      finOut: false,
      rst: false,
    };
    this.table.set(key, e);
    return e;
  }

  /** Frees one entry: a closed connection, else (before failover) the oldest handshake in progress. */
  private evict(): boolean {
    for (const [k, e] of this.table) {
      if (e.rst || (e.finIn && e.finOut) || (e.state === "mapped" && e.delta === 0)) {
        this.table.delete(k);
        return true;
      }
    }
    if (this.permanent) return false;
    for (const [k, e] of this.table) {
      if (e.state !== "mapped") {
        this.stats.dropped += e.held.length;
        this.table.delete(k);
        return true;
      }
    }
    return false;
  }
}
