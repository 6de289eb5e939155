/**
 * The guest network stack: Ethernet II, ARP, IPv4 and TCP, with every byte of
 * its state in a `Mem`.
 *
 * # Why the state lives in `Mem`
 *
 * On a guest, `Mem` is the domain's memory in log-dirty mode. A checkpoint of
 * the dirty pages therefore carries every connection exactly: the backup's
 * `new NetStack(env, root)` over the restored pages resumes the same TCBs,
 * buffers, timers and counters, and (given the same clock and RNG from the
 * vCPU) the same future. So nothing here keeps state in JavaScript between
 * calls: `NetStack` is a handle of (env, root); `Ctx` caches only the
 * configuration, which is immutable after `format`. The same code runs on a
 * client over `PlainMemory` + `formatStandaloneHeap`.
 *
 * # Data flow
 *
 *   NIC rx ─► input(frame) ─► Ethernet dst check ─► ARP: arpInput (cache, replies, flush waiting frames)
 *                                             └──► IPv4: header checks ─► TCP: tcpInput ─► TCB (segment arrives)
 *                                                                      └─► ICMP echo: reply
 *   app ─► send() ─► send ring ─► output(tcb) ─► segment ─► sendIp ─► ARP cache ─► transmit (NIC tx)
 *                                                                └─► unresolved: park on the ARP entry, request
 *   app ◄─ recv() ◄─ receive ring ◄─ in-order bytes (out-of-order bytes sit in the ring at their offsets,
 *                                    tracked as ranges in the TCB until the gap fills)
 *   host ─► poll() ─► control queue flush, ARP retries/ageing/flush, TCP timers (RTO, persist,
 *                     delayed ACK, TIME_WAIT) and output the NIC refused earlier
 *
 * Frames are built in fresh buffers handed to `transmit` (one allocation per
 * frame, which the NIC keeps). When `transmit` returns false nothing is lost:
 * TCP keeps its sequence state unchanged (SND_NXT does not advance, the ACK
 * stays owed: TF.TX_BLOCKED) and rebuilds the segment on the next poll;
 * stateless replies (RSTs, ARP and echo replies) wait in the control queue;
 * frames parked on an ARP entry stay there until the NIC takes them.
 *
 * # Files
 *
 *   stack.ts     this handle: configuration, the public calls, Ethernet/IPv4 input dispatch
 *   ctx.ts       the per-call context (env, root, cached configuration)
 *   layout.ts    offset tables of everything in memory (root, TCB, ARP entry, frame chunk)
 *   link.ts      Ethernet, ARP, IPv4 output, ICMP echo, the control queue
 *   tcb.ts       TCP control blocks: socket table and ids, 4-tuple hash, rings, CLOSED
 *   tcp.ts       TCP's application calls: open, accept, send, receive, shutdown, close
 *   tcp-in.ts    TCP segment arrival (RFC 9293 3.10.7), NewReno, reassembly
 *   tcp-out.ts   TCP output, RTT estimation and timers (RTO, persist, delayed ACK, TIME_WAIT)
 *   wire.ts      header codecs, checksums, sequence arithmetic
 *   addr.ts      configuration addresses (HOST:PORT, MAC and IPv4 options)
 *
 * # Memory layout (offset tables in layout.ts)
 *
 *   root (R, 528 B)   config, counters (u64 each), generation and IP-id counters,
 *                     control-frame queue head/tail, pointers to:
 *   socket table      u32[maxSockets]: TCB address per slot (0 = free). Socket id = gen*65536 + slot + 1.
 *   hash table        u32[2^k >= maxSockets]: chains (T.HASH_NEXT) keyed by (remote ip, remote port,
 *                     local port); listeners are keyed (0, 0, port).
 *   ARP table         ArpEntry[arpEntries] of 32 B (A): ip, mac, state, tries, deadline,
 *                     queue of FrameChunks waiting for resolution.
 *   TCB (T, 256 B)    state, flags (TF), 4-tuple, RFC 9293 variables (SND.UNA/NXT/WND/WL1/WL2,
 *                     RCV.NXT, ISS/IRS), SND_MAX, MSS and window scale, NewReno (cwnd,
 *                     ssthresh, recover, dupacks), RFC 6298 (SRTT/RTTVAR in µs, RTO, timed seq),
 *                     deadlines (RTO, persist, delayed ACK, close), ring buffers, up to 8
 *                     out-of-order ranges.
 *   send ring         sndBuf bytes per connection: [SND_UNA, SND_UNA+SND_LEN) starting at SND_START.
 *   receive ring      rcvBuf bytes per connection: unread in-order bytes [RCV_START, +RCV_LEN), then
 *                     free space where out-of-order bytes are stored at their sequence offsets.
 *   FrameChunk (FC)   heap chunk: next, length, an Ethernet frame (ARP queue, control queue).
 *
 * # Invariants
 *
 * - Sequence numbers compare modulo 2^32 (wire.ts seqLt...). SND_UNA <= SND_NXT <= SND_MAX;
 *   SND_NXT rewinds to SND_UNA on an RTO (go-back-N), SND_MAX never goes back.
 * - The byte at sequence SND_UNA+k (k < SND_LEN) is at send-ring offset (SND_START+k) mod size; the
 *   SYN is never in the ring (data starts at ISS+1); a queued FIN has sequence SND_UNA+SND_LEN.
 * - The byte at sequence RCV_NXT+k is at receive-ring offset (RCV_START+RCV_LEN+k) mod size, for
 *   k < size-RCV_LEN (the window). Out-of-order ranges are sorted, disjoint, above RCV_NXT, and
 *   their bytes are already in the ring. Reading advances RCV_START and shrinks RCV_LEN together,
 *   so every range keeps its position.
 * - The advertised window never exceeds the ring's free space, so whatever lands in it can be
 *   stored; its right edge never moves left (up to window-scale rounding) and moves right only in
 *   steps of at least min(buffer/2, MSS) (receiver SWS avoidance).
 * - Sending stays inside min(peer window, cwnd). With a zero window nothing is retransmitted:
 *   SND_NXT rewinds to SND_UNA, the RTO stops and the persist timer probes with an old sequence
 *   number (backing off to the maximum RTO) until the window reopens.
 * - A TCB is freed when it reaches CLOSED and the application no longer owns it (TF.OWNED); until
 *   then its id resolves and reports the outcome. A stale id fails by generation.
 * - Times are integer milliseconds of `env.now()`; 0 in a deadline field means "off".
 * - Bad input (truncated, malformed, wrong checksum, for nobody) is counted and dropped, never thrown.
 */
import type { Mem } from "../domain/memory.js";
import { RemusError } from "../errors.js";
import { Ctx, type NetEnv } from "./ctx.js";
import {
  ARP_ENTRY_SIZE,
  HASH_ENTRY,
  LAYOUT_VERSION,
  type NetStats,
  R,
  ROOT_MAGIC,
  ROOT_SIZE,
  S,
  STAT_NAMES,
  T,
  TF,
} from "./layout.js";
import {
  announce,
  arpInput,
  arpNextTimer,
  arpPoll,
  ctlFlush,
  IP_OFF,
  icmpInput,
  linkPendingOutput,
} from "./link.js";
import {
  allTcbs,
  socketId,
  stateOf,
  TCP_STATE_NAMES,
  TcpError,
  TcpState,
  type TcpStateName,
  tcbOf,
} from "./tcb.js";
import {
  tcpAbort,
  tcpAccept,
  tcpClose,
  tcpConnect,
  tcpListen,
  tcpRecv,
  tcpSend,
  tcpShutdown,
} from "./tcp.js";
import { tcpInput } from "./tcp-in.js";
import { tcpNextTimer, tcpPendingOutput, tcpPoll } from "./tcp-out.js";
import {
  decodeIpv4,
  ETH_HEADER_LEN,
  ETH_MTU,
  ETHERTYPE,
  IP_PROTO,
  IPV4_HEADER_LEN,
  ipv4ChecksumOk,
  isFragment,
  rd16,
  TCP_HEADER_LEN,
} from "./wire.js";

export type { NetEnv, NetHeap } from "./ctx.js";
export type { NetStats } from "./layout.js";

/** Configuration fixed at `NetStack.format`. */
export interface NetConfig {
  /** Our MAC address (6 bytes, unicast). */
  mac: Uint8Array;
  /** Our IPv4 address as a u32. */
  ip: number;
  /** Default 255.255.255.0. Only used to decide whether a destination needs the gateway. */
  netmask?: number;
  /** Next hop for destinations off our subnet; 0 (default) treats every destination as on-link. */
  gateway?: number;
  /** MSS we announce and the largest segment we send; default 1460 (Ethernet MTU 1500), range 88..1460. */
  mss?: number;
  /** Receive buffer per connection, bytes (the largest window we offer). Default 65536. */
  rcvBuf?: number;
  /** Send buffer per connection, bytes. Default 65536. */
  sndBuf?: number;
  /** Lower bound of the RTO, ms. Default 200 (Linux; RFC 6298 says 1000). */
  minRtoMs?: number;
  /** Upper bound of the RTO, ms. Default 60000. */
  maxRtoMs?: number;
  /** RTO before the first RTT sample, ms. Default 1000 (RFC 6298). */
  initialRtoMs?: number;
  /** TIME_WAIT duration (2MSL), ms; also the limit for an orphaned FIN_WAIT_2. Default 60000. */
  timeWaitMs?: number;
  /** Delayed-ACK timeout, ms; 0 acknowledges every segment at once. Default 40. */
  ackDelayMs?: number;
  /** Lifetime of a resolved ARP entry, ms. Default 60000. */
  arpTimeoutMs?: number;
  /** Socket table size (listeners, connections, TIME_WAIT). Default 256, at most 65535. */
  maxSockets?: number;
  /** ARP cache size. Default 32. */
  arpEntries?: number;
  /** RTO expiries in a row before an established connection is dropped. Default 15. */
  maxRetries?: number;
  /** SYN (or SYN-ACK) retransmissions before giving up. Default 6. */
  synRetries?: number;
}

/** What `info()` reports about one socket. */
export interface SocketInfo {
  id: number;
  state: TcpStateName;
  /** The application holds the id (false for a closed socket the stack is finishing, or an unaccepted child). */
  owned: boolean;
  localPort: number;
  remoteIp: number;
  remotePort: number;
  sndUna: number;
  sndNxt: number;
  sndMax: number;
  rcvNxt: number;
  /** Peer's window, bytes. */
  sndWnd: number;
  cwnd: number;
  ssthresh: number;
  sndMss: number;
  rtoMs: number;
  /** Smoothed RTT, ms (0 before the first sample). */
  srttMs: number;
  rttvarMs: number;
  /** Bytes in the send buffer (unacknowledged plus unsent). */
  sendQueued: number;
  /** Bytes readable now. */
  recvQueued: number;
  retries: number;
  error: SocketError;
}

/** Why a connection ended abnormally, or null. */
export type SocketError = "reset" | "refused" | "timeout" | null;

const ERROR_NAMES: readonly SocketError[] = [null, "reset", "refused", "timeout"];

function isU32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function intIn(name: string, v: number, lo: number, hi: number): number {
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new RemusError(
      "REMUSD_ERR_BAD_USAGE",
      `net config ${name} must be an integer in [${lo}, ${hi}], got ${v}`,
    );
  }
  return v;
}

/**
 * A handle on a network stack whose state is in `env.mem` at `root`. Cheap to
 * create; two handles on the same memory are the same stack.
 *
 * Driving it: feed every received frame to `input`, call `poll` regularly (a
 * guest calls it once per tick; a host that sleeps can wake at
 * `nextTimerAt()`, and should also poll when its NIC has room again if
 * `pendingOutput()` is true). Socket calls transmit at once where TCP allows.
 * None of these calls may be made from inside `env.transmit`.
 */
export class NetStack {
  private readonly c: Ctx;

  /** Lays out a new stack in `env.mem` (memory from `env.heap`) and returns its root address. */
  static format(env: NetEnv, cfg: NetConfig): number {
    if (!(cfg.mac instanceof Uint8Array) || cfg.mac.length !== 6 || ((cfg.mac[0] as number) & 1) !== 0) {
      throw new RemusError("REMUSD_ERR_BAD_USAGE", "net config mac must be 6 bytes, unicast");
    }
    if (!isU32(cfg.ip) || cfg.ip === 0)
      throw new RemusError("REMUSD_ERR_BAD_USAGE", "net config ip must be a non-zero u32");
    const netmask = cfg.netmask ?? 0xffffff00;
    const gateway = cfg.gateway ?? 0;
    if (!isU32(netmask) || !isU32(gateway)) {
      throw new RemusError("REMUSD_ERR_BAD_USAGE", "net config netmask and gateway must be u32");
    }
    const mss = intIn("mss", cfg.mss ?? ETH_MTU - IPV4_HEADER_LEN - TCP_HEADER_LEN, 88, 1460);
    const rcvBuf = intIn("rcvBuf", cfg.rcvBuf ?? 65536, 64, 0xffff * 2 ** 14);
    const sndBuf = intIn("sndBuf", cfg.sndBuf ?? 65536, 64, 2 ** 30);
    const minRto = intIn("minRtoMs", cfg.minRtoMs ?? 200, 1, 3_600_000);
    const maxRto = intIn("maxRtoMs", cfg.maxRtoMs ?? 60_000, minRto, 3_600_000);
    const initRto = intIn("initialRtoMs", cfg.initialRtoMs ?? 1000, minRto, maxRto);
    const timeWait = intIn("timeWaitMs", cfg.timeWaitMs ?? 60_000, 0, 3_600_000);
    const ackDelay = intIn("ackDelayMs", cfg.ackDelayMs ?? 40, 0, 500);
    const arpTimeout = intIn("arpTimeoutMs", cfg.arpTimeoutMs ?? 60_000, 1, 86_400_000);
    const maxSockets = intIn("maxSockets", cfg.maxSockets ?? 256, 1, 65535);
    const arpEntries = intIn("arpEntries", cfg.arpEntries ?? 32, 1, 4096);
    const maxRetries = intIn("maxRetries", cfg.maxRetries ?? 15, 1, 255);
    const synRetries = intIn("synRetries", cfg.synRetries ?? 6, 1, 255);
    let rcvShift = 0;
    while (rcvBuf >>> rcvShift > 0xffff) rcvShift++;
    let buckets = 16;
    while (buckets < maxSockets) buckets *= 2;

    const m = env.mem;
    const heap = env.heap;
    const root = heap.alloc(ROOT_SIZE);
    const sockTable = heap.alloc(maxSockets * 4);
    const hashTable = heap.alloc(buckets * HASH_ENTRY);
    const arpTable = heap.alloc(arpEntries * ARP_ENTRY_SIZE);
    m.fill(root, ROOT_SIZE, 0);
    m.setU32(root + R.VERSION, LAYOUT_VERSION);
    m.write(root + R.MAC, cfg.mac, 0, 6);
    m.setU16(root + R.MSS, mss);
    m.setU32(root + R.IP, cfg.ip);
    m.setU32(root + R.NETMASK, netmask);
    m.setU32(root + R.GATEWAY, gateway);
    m.setU32(root + R.RCV_BUF, rcvBuf);
    m.setU32(root + R.SND_BUF, sndBuf);
    m.setU32(root + R.MIN_RTO, minRto);
    m.setU32(root + R.MAX_RTO, maxRto);
    m.setU32(root + R.INIT_RTO, initRto);
    m.setU32(root + R.TIME_WAIT, timeWait);
    m.setU32(root + R.ACK_DELAY, ackDelay);
    m.setU32(root + R.ARP_TIMEOUT, arpTimeout);
    m.setU16(root + R.MAX_SOCKETS, maxSockets);
    m.setU16(root + R.ARP_ENTRIES, arpEntries);
    m.setU16(root + R.IP_ID, env.random32() & 0xffff);
    m.setU8(root + R.MAX_RETRIES, maxRetries);
    m.setU8(root + R.SYN_RETRIES, synRetries);
    m.setU8(root + R.RCV_SHIFT, rcvShift);
    m.setU32(root + R.SOCK_TABLE, sockTable);
    m.setU32(root + R.HASH_TABLE, hashTable);
    m.setU32(root + R.HASH_MASK, buckets - 1);
    m.setU32(root + R.ARP_TABLE, arpTable);
    // The magic goes last: a half-formatted root is never mistaken for a stack.
    m.setU32(root + R.MAGIC, ROOT_MAGIC);
    return root;
  }

  /** A handle on the stack at `root` (for instance after restoring a checkpoint). Throws `REMUSD_ERR_CORRUPT` if there is none. */
  constructor(env: NetEnv, root: number) {
    this.c = new Ctx(env, root);
  }

  get root(): number {
    return this.c.root;
  }
  get mem(): Mem {
    return this.c.mem;
  }
  /** Our IPv4 address. */
  get ip(): number {
    return this.c.ip;
  }
  /** Our MAC address (a copy). */
  get mac(): Uint8Array {
    return Uint8Array.from(this.c.mac);
  }

  // -------------------------------------------------------------------------
  // Frames and time

  /** One received Ethernet frame (without FCS; trailing padding allowed). Never throws on bad input. */
  input(frame: Uint8Array): void {
    const c = this.c;
    c.tick();
    c.bump(S.framesIn);
    const len = frame.length;
    if (len < ETH_HEADER_LEN) {
      c.bump(S.badFrames);
      return;
    }
    let bcast = true;
    let ours = true;
    for (let i = 0; i < 6; i++) {
      const b = frame[i] as number;
      if (b !== 0xff) bcast = false;
      if (b !== c.mac[i]) ours = false;
    }
    if (!ours && !bcast) {
      c.bump(S.notForUs);
      return;
    }
    const type = rd16(frame, 12);
    if (type === ETHERTYPE.ARP) {
      arpInput(c, frame, ETH_HEADER_LEN, len - ETH_HEADER_LEN);
    } else if (type === ETHERTYPE.IPV4) {
      this.ipInput(frame);
    } else {
      c.bump(S.unknownEthertype);
    }
  }

  private ipInput(frame: Uint8Array): void {
    const c = this.c;
    const ip = decodeIpv4(frame, IP_OFF, frame.length - IP_OFF);
    if (ip === null) {
      c.bump(S.ipBadHeaders);
      return;
    }
    if (!ipv4ChecksumOk(frame, IP_OFF, ip.headerLength)) {
      c.bump(S.ipBadChecksums);
      return;
    }
    c.bump(S.ipIn);
    if (ip.dst !== c.ip) {
      c.bump(S.ipNotForUs);
      return;
    }
    // No reassembly: a fragment's transport header cannot be trusted alone.
    if (isFragment(ip.fragment)) {
      c.bump(S.ipFragmentsDropped);
      return;
    }
    const l4 = IP_OFF + ip.headerLength;
    if (ip.protocol === IP_PROTO.TCP) tcpInput(c, frame, ip, l4);
    else if (ip.protocol === IP_PROTO.ICMP) icmpInput(c, frame, ip, l4);
    else c.bump(S.ipUnknownProtocol);
  }

  /** Runs due timers (RTO, persist, delayed ACK, TIME_WAIT, ARP) and retries output the NIC refused. */
  poll(): void {
    const c = this.c;
    c.tick();
    ctlFlush(c);
    arpPoll(c);
    tcpPoll(c);
  }

  /**
   * The earliest time (ms of `env.now()`) at which `poll` has timer work, or
   * null. Output refused by the NIC is not a timer: see `pendingOutput`.
   */
  nextTimerAt(): number | null {
    const c = this.c;
    const next = Math.min(tcpNextTimer(c), arpNextTimer(c));
    return next === Number.POSITIVE_INFINITY ? null : next;
  }

  /** True when output refused by the NIC waits for a `poll`. */
  pendingOutput(): boolean {
    return linkPendingOutput(this.c) || tcpPendingOutput(this.c);
  }

  /** Broadcasts a gratuitous ARP for our address (after failover, so the LAN relearns where we are). */
  announce(): void {
    this.c.tick();
    announce(this.c);
  }

  // -------------------------------------------------------------------------
  // Sockets

  private sock(id: number): number {
    const t = tcbOf(this.c, id);
    if (t === 0 || !((this.c.mem.u32(t + T.FLAGS) & TF.OWNED) !== 0)) {
      throw new RemusError("REMUSD_ERR_BAD_FD", `socket ${id} is not open`);
    }
    return t;
  }

  private conn(id: number): number {
    const t = this.sock(id);
    if (stateOf(this.c, t) === TcpState.LISTEN) {
      throw new RemusError("REMUSD_ERR_BAD_FD", `socket ${id} is a listener`);
    }
    return t;
  }

  /** Listens on `port`; returns the listener's socket id. At most `backlog` connections wait for `accept`. */
  listen(port: number, backlog = 128): number {
    intIn("port", port, 1, 65535);
    intIn("backlog", backlog, 1, 65535);
    this.c.tick();
    return tcpListen(this.c, port, backlog);
  }

  /** The oldest established connection waiting on listener `l`, now yours; 0 when none. */
  accept(l: number): number {
    const t = this.sock(l);
    if (stateOf(this.c, t) !== TcpState.LISTEN) {
      throw new RemusError("REMUSD_ERR_BAD_FD", `socket ${l} is not a listener`);
    }
    this.c.tick();
    return tcpAccept(this.c, t);
  }

  /**
   * Opens a connection to `ip:port` from `localPort` (default: a random free
   * ephemeral port) and sends the SYN. The id is usable at once: data sent
   * before the handshake completes is queued. Watch `state()` for
   * ESTABLISHED, or CLOSED with `error()` "refused"/"timeout".
   */
  connect(ip: number, port: number, localPort = 0): number {
    if (!isU32(ip) || ip === 0) throw new RemusError("REMUSD_ERR_BAD_USAGE", `bad IPv4 address ${ip}`);
    intIn("port", port, 1, 65535);
    intIn("localPort", localPort, 0, 65535);
    this.c.tick();
    return tcpConnect(this.c, ip, port, localPort);
  }

  /**
   * Queues bytes to send; returns how many were taken (0 when the send buffer
   * is full: retry once `writable`), or -1 when the connection can no longer
   * send (shut down, closed, reset).
   */
  send(s: number, data: Uint8Array): number {
    const t = this.conn(s);
    this.c.tick();
    return tcpSend(this.c, t, data, 0, data.length);
  }

  /** Up to `max` received bytes, or null when none are buffered (see `eof` and `error`). */
  recv(s: number, max = 65536): Buffer | null {
    const t = this.conn(s);
    const n = Math.min(this.c.mem.u32(t + T.RCV_LEN), max);
    if (n <= 0) return null;
    this.c.tick();
    const out = Buffer.allocUnsafe(n);
    tcpRecv(this.c, t, out, 0, n);
    return out;
  }

  /** Copies up to `len` received bytes into `dst[off..]`; returns the count (0 when none). */
  recvInto(s: number, dst: Uint8Array, off = 0, len = dst.length - off): number {
    const t = this.conn(s);
    if (off < 0 || len < 0 || off + len > dst.length) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `recvInto range [${off}, +${len}) outside the buffer`);
    }
    this.c.tick();
    return tcpRecv(this.c, t, dst, off, len);
  }

  /** Sends a FIN after the queued data (half-close); receiving continues. */
  shutdown(s: number): void {
    const t = this.conn(s);
    this.c.tick();
    tcpShutdown(this.c, t);
  }

  /**
   * Gives the socket back: the id stops resolving. A connection finishes its
   * close in the background (FIN, TIME_WAIT); one with unread data is reset.
   * Closing a listener resets the connections not yet accepted.
   */
  close(s: number): void {
    const t = this.sock(s);
    this.c.tick();
    tcpClose(this.c, t);
  }

  /** Resets the connection (RST to the peer) and frees it at once. */
  abort(s: number): void {
    const t = this.sock(s);
    this.c.tick();
    tcpAbort(this.c, t);
  }

  state(s: number): TcpStateName {
    return TCP_STATE_NAMES[stateOf(this.c, this.sock(s))] as TcpStateName;
  }

  /** Why the connection ended abnormally, or null. */
  error(s: number): SocketError {
    return ERROR_NAMES[this.c.mem.u8(this.sock(s) + T.ERROR)] ?? null;
  }

  /** True when the peer's byte stream has ended (FIN or closed) and every byte has been read. */
  eof(s: number): boolean {
    const t = this.conn(s);
    const m = this.c.mem;
    if (m.u32(t + T.RCV_LEN) > 0) return false;
    return (m.u32(t + T.FLAGS) & TF.FIN_RCVD) !== 0 || stateOf(this.c, t) === TcpState.CLOSED;
  }

  /** True when `recv` would return data, or `eof` or an error has something to report; for listeners, `accept` may succeed. */
  readable(s: number): boolean {
    const t = this.sock(s);
    const m = this.c.mem;
    const st = stateOf(this.c, t);
    if (st === TcpState.LISTEN) return this.hasPendingChild(t);
    return m.u32(t + T.RCV_LEN) > 0 || (m.u32(t + T.FLAGS) & TF.FIN_RCVD) !== 0 || st === TcpState.CLOSED;
  }

  private hasPendingChild(l: number): boolean {
    const lid = socketId(this.c, l);
    for (const t of allTcbs(this.c)) {
      const st = stateOf(this.c, t);
      if (this.c.mem.u32(t + T.PARENT) === lid && st !== TcpState.SYN_RCVD && st !== TcpState.CLOSED)
        return true;
    }
    return false;
  }

  /** True when `send` would take at least one byte now. */
  writable(s: number): boolean {
    const t = this.conn(s);
    const m = this.c.mem;
    const st = stateOf(this.c, t);
    const open =
      st === TcpState.ESTABLISHED ||
      st === TcpState.CLOSE_WAIT ||
      st === TcpState.SYN_SENT ||
      st === TcpState.SYN_RCVD;
    return open && (m.u32(t + T.FLAGS) & TF.FIN_QUEUED) === 0 && m.u32(t + T.SND_LEN) < m.u32(t + T.SND_SIZE);
  }

  /** Free bytes in the send buffer. */
  sendSpace(s: number): number {
    const t = this.conn(s);
    return this.c.mem.u32(t + T.SND_SIZE) - this.c.mem.u32(t + T.SND_LEN);
  }

  /** Bytes readable now. */
  recvAvailable(s: number): number {
    return this.c.mem.u32(this.conn(s) + T.RCV_LEN);
  }

  /** Details of an open socket. */
  info(s: number): SocketInfo {
    return this.describe(this.sock(s));
  }

  /** Every socket the stack holds, including ones it is closing on the application's behalf and unaccepted children. */
  sockets(): SocketInfo[] {
    return allTcbs(this.c).map((t) => this.describe(t));
  }

  private describe(t: number): SocketInfo {
    const m = this.c.mem;
    const srtt = m.u32(t + T.SRTT_US);
    return {
      id: socketId(this.c, t),
      state: TCP_STATE_NAMES[stateOf(this.c, t)] as TcpStateName,
      owned: (m.u32(t + T.FLAGS) & TF.OWNED) !== 0,
      localPort: m.u16(t + T.LPORT),
      remoteIp: m.u32(t + T.RIP),
      remotePort: m.u16(t + T.RPORT),
      sndUna: m.u32(t + T.SND_UNA),
      sndNxt: m.u32(t + T.SND_NXT),
      sndMax: m.u32(t + T.SND_MAX),
      rcvNxt: m.u32(t + T.RCV_NXT),
      sndWnd: m.u32(t + T.SND_WND),
      cwnd: m.u32(t + T.CWND),
      ssthresh: m.u32(t + T.SSTHRESH),
      sndMss: m.u16(t + T.SND_MSS),
      rtoMs: m.u32(t + T.RTO),
      srttMs: srtt / 1000,
      rttvarMs: m.u32(t + T.RTTVAR_US) / 1000,
      sendQueued: m.u32(t + T.SND_LEN),
      recvQueued: m.u32(t + T.RCV_LEN),
      retries: m.u8(t + T.RETRIES),
      error: ERROR_NAMES[m.u8(t + T.ERROR)] ?? null,
    };
  }

  /** Number of sockets in the table (open, closing, waiting to be accepted). */
  get socketCount(): number {
    return this.c.mem.u32(this.c.root + R.LIVE_SOCKETS);
  }

  /** A snapshot of the counters. */
  stats(): NetStats {
    const out = {} as NetStats;
    for (let i = 0; i < STAT_NAMES.length; i++) out[STAT_NAMES[i] as keyof NetStats] = this.c.stat(i);
    return out;
  }
}

export { TCP_STATE_NAMES, TcpError, TcpState, type TcpStateName };
