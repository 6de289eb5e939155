/**
 * One replication connection, either side, without I/O: the handshake (HELLO,
 * AUTH with HMAC over both nonces), the frame codec (session tag, sequence
 * numbers, CRC), the order rules, and the heartbeat. The machines feed it the
 * frames that arrive and hand it the records to send; a `Port` does the I/O.
 *
 * Nothing that arrives before AUTH verified can change anything (SPEC §5.1):
 * until then the connection answers only with its own HELLO and AUTH, any
 * error closes it with a GOODBYE naming the reason, and a GOODBYE from the
 * peer only closes it (the machine sees a refused stranger, whatever reason
 * the GOODBYE names). What HELLO says about generations is judged only once
 * both sides are authenticated (§5.5): then a side that knows a newer
 * generation than a primary's says FENCED with its claim (fencing.ts), and
 * two primaries meet only to settle which one is stale.
 */
import { RemusError } from "../errors.js";
import type { Entropy } from "../prng.js";
import {
  checkPeerHello,
  computeAuthMac,
  geometryOf,
  sessionNonces,
  sessionTag,
  verifyAuthMac,
} from "../protocol/auth.js";
import {
  GOODBYE_REASON,
  NONCE_SIZE,
  type PeerStateCode,
  ROLE,
  type RoleCode,
} from "../protocol/constants.js";
import { isProtocolError, ProtocolError } from "../protocol/errors.js";
import { FrameCodec, frameBody } from "../protocol/frame.js";
import type { Hello, ReplicationRecord } from "../protocol/records.js";
import { StreamOrder } from "../protocol/stream.js";
import type { EventSink } from "./events.js";
import type { FencingClaim } from "./fencing.js";
import { Heartbeat, type HeartbeatConfig } from "./heartbeat.js";

/** The I/O side of a connection: one frame per WebSocket binary message. */
export interface Port {
  send(frame: Buffer): void;
  /** Closes the connection (after any queued frames). */
  close(reason: string): void;
  /** Bytes queued for sending and not yet written. */
  readonly buffered: number;
  /** The remote address, for logs. */
  readonly remote: string;
}

/** Who this side is, as announced in HELLO. */
export interface LocalIdentity {
  readonly role: "primary" | "backup";
  readonly key: Uint8Array;
  readonly nodeId: Uint8Array;
  readonly software: string;
  readonly pages: number;
  readonly diskBlocks: number;
  readonly vcpuSize: number;
  readonly deviceSize: number;
  /** Where HELLO nonces come from (seeded in simulations). */
  readonly entropy: Entropy;
  generation(): number;
  committedEpoch(): number;
  helloFlags(): number;
  /** The epoch this side's fencing claims carry (fencing.ts): a primary's base, a backup's committed epoch. */
  claimEpoch(): number;
  /** COLO mode: sessions follow the COLO rules (SPEC §7.6); without, COLO records are `bad-order`. */
  readonly colo?: boolean;
}

export type ConnPhase = "handshake" | "open" | "closed";

/** What a machine knows about itself that HELLO announces. */
export interface IdentityParts {
  readonly key: Uint8Array;
  readonly nodeId: Uint8Array;
  readonly software: string;
  readonly entropy: Entropy;
  readonly domain: {
    readonly pages: number;
    readonly disk: { readonly blocks: number };
    readonly vcpu: { readonly regs: Uint8Array };
    readonly device: { readonly regs: Uint8Array };
  };
}

/** The identity of one side: its role, key and geometry, and live views of its generation and state. */
export function localIdentity(
  role: "primary" | "backup",
  p: IdentityParts,
  live: Pick<LocalIdentity, "generation" | "committedEpoch" | "helloFlags" | "claimEpoch" | "colo">,
): LocalIdentity {
  // Getters: a backup that adopts its primary's domain may be reshaped (src/domain/domain.ts).
  return {
    role,
    key: p.key,
    nodeId: p.nodeId,
    software: p.software,
    entropy: p.entropy,
    get pages() {
      return p.domain.pages;
    },
    get diskBlocks() {
      return p.domain.disk.blocks;
    },
    vcpuSize: p.domain.vcpu.regs.length,
    deviceSize: p.domain.device.regs.length,
    ...live,
  };
}

/** A GOODBYE from an authenticated peer. */
export interface PeerGoodbye extends FencingClaim {
  readonly reason: number;
  readonly message: string;
}

/** What a received frame meant. */
export type Received =
  | { kind: "nothing" }
  | { kind: "established"; peer: Hello }
  | { kind: "record"; record: ReplicationRecord; frame: Uint8Array }
  | { kind: "discarded"; record: ReplicationRecord }
  /** An authenticated primary of an older generation than ours: we said FENCED with our claim and closed. */
  | { kind: "refused-stale"; peer: Hello }
  /**
   * The connection ended. `goodbye` is set only when an authenticated peer
   * said GOODBYE: nothing a peer says before AUTH is acted on.
   */
  | { kind: "closed"; reason: string; goodbye?: PeerGoodbye };

export class Conn {
  // Pages are not lz4-decoded twice: every entry goes through decodePageInto (which checks
  // it) before the checkpoint it belongs to can be applied.
  readonly codec = new FrameCodec({ verifyPages: false });
  readonly order: StreamOrder;
  readonly heartbeat: Heartbeat;
  phase: ConnPhase = "handshake";
  peer: Hello | undefined;
  private readonly own: Hello;
  private ownBody: Buffer | undefined;
  private peerBody: Buffer | undefined;
  private authOk = false;
  /** Bytes sent and received on this connection. */
  bytesOut = 0;
  bytesIn = 0;

  constructor(
    readonly port: Port,
    private readonly me: LocalIdentity,
    hb: HeartbeatConfig,
    now: number,
  ) {
    this.order = new StreamOrder(me.role, { colo: me.colo === true });
    this.heartbeat = new Heartbeat(hb, now);
    this.own = {
      type: "hello",
      role: me.role === "primary" ? ROLE.primary : ROLE.backup,
      flags: me.helloFlags(),
      generation: me.generation(),
      pageSize: 4096,
      pages: me.pages,
      diskBlockSize: 4096,
      diskBlocks: me.diskBlocks,
      vcpuSize: me.vcpuSize,
      deviceSize: me.deviceSize,
      committedEpoch: me.committedEpoch(),
      nonce: me.entropy.bytes(NONCE_SIZE),
      nodeId: me.nodeId,
      software: me.software,
    };
  }

  get ownRole(): RoleCode {
    return this.own.role;
  }

  /** The flags of the HELLO this side sent (what it offered on this connection). */
  get ownHelloFlags(): number {
    return this.own.flags;
  }

  /** Sends our HELLO; call once when the connection opens. */
  start(): void {
    const frame = this.codec.encode(this.own);
    this.ownBody = Buffer.from(frameBody(frame));
    this.sendFrame(frame);
  }

  /** Encodes and sends a record. */
  send(record: ReplicationRecord): number {
    if (this.phase === "closed") return 0;
    const frame = this.codec.encode(record);
    this.sendFrame(frame);
    return frame.length;
  }

  /** Sends an already-encoded frame (page batches are built by the codec directly). */
  sendFrame(frame: Buffer): void {
    if (this.phase === "closed") return;
    this.order.sent(frame);
    this.bytesOut += frame.length;
    this.port.send(frame);
  }

  /**
   * Sends GOODBYE and closes. Safe to call twice. The GOODBYE carries this
   * side's generation and claim epoch, or `claim` (a FENCED claim made as a
   * generation this side has just taken).
   */
  goodbye(reason: number, message: string, claim?: FencingClaim): void {
    if (this.phase === "closed") return;
    try {
      this.send({
        type: "goodbye",
        reason,
        generation: claim?.generation ?? this.me.generation(),
        epoch: claim?.epoch ?? this.me.claimEpoch(),
        message: message.slice(0, 1000),
      });
    } catch {
      // The codec refused (e.g. before our HELLO); close anyway.
    }
    this.phase = "closed";
    this.port.close(message);
  }

  /** Closes without a GOODBYE (the peer vanished or sent garbage it cannot parse). */
  abort(reason: string): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.port.close(reason);
  }

  /** Whether the peer's AUTH verified: only then may what it says change anything. */
  get authenticated(): boolean {
    return this.authOk;
  }

  /**
   * Decodes one frame. Protocol violations close the connection with a GOODBYE
   * and come back as `closed`; they never throw.
   */
  receive(frame: Uint8Array, now: number): Received {
    if (this.phase === "closed") return { kind: "nothing" };
    let record: ReplicationRecord;
    try {
      record = this.codec.decode(frame);
      const verdict = this.order.received(record, frame);
      this.bytesIn += frame.length;
      this.heartbeat.heard(now);
      if (record.type === "goodbye") {
        this.phase = "closed";
        this.port.close(`peer said goodbye: ${record.message}`);
        const said = `(${goodbyeName(record.reason)}): ${record.message}`;
        // Why: a GOODBYE before AUTH verified is a stranger's word; it only ends this connection.
        if (!this.authOk) return { kind: "closed", reason: `goodbye before authenticating ${said}` };
        return {
          kind: "closed",
          reason: `peer said goodbye ${said}`,
          goodbye: {
            reason: record.reason,
            message: record.message,
            generation: record.generation,
            epoch: record.epoch,
          },
        };
      }
      if (this.phase === "handshake") return this.handshake(record, frame);
      if (verdict === "discard") return { kind: "discarded", record };
      return { kind: "record", record, frame };
    } catch (e) {
      // A ProtocolError's message already starts with its reason ("bad-crc: ...").
      const message = isProtocolError(e)
        ? e.message
        : `internal: ${e instanceof Error ? e.message : String(e)}`;
      // A bad generation in a record is a protocol error, not a fencing claim: claims are GOODBYEs (§5.5).
      const goodbyeReason = !isProtocolError(e)
        ? GOODBYE_REASON.protocolError
        : e.reason === "bad-version"
          ? GOODBYE_REASON.version
          : e.reason === "bad-geometry"
            ? GOODBYE_REASON.geometryMismatch
            : GOODBYE_REASON.protocolError;
      this.goodbye(goodbyeReason, message);
      return { kind: "closed", reason: `protocol error: ${message}` };
    }
  }

  private handshake(record: ReplicationRecord, frame: Uint8Array): Received {
    if (record.type === "hello") {
      const rejection = checkPeerHello(this.own, record);
      if (rejection) {
        this.goodbye(rejection.reason, rejection.message);
        return { kind: "closed", reason: `handshake refused: ${rejection.message}` };
      }
      this.peer = record;
      this.peerBody = Buffer.from(frameBody(frame));
      const [first, second] = sessionNonces(this.own, record);
      this.codec.setSessionTag(sessionTag(this.me.key, first, second));
      this.codec.setGeometry(geometryOf(record));
      const ownBody = this.ownBody;
      if (!ownBody) throw new RemusError("REMUSD_ERR_INTERNAL", "HELLO received before ours was sent");
      this.send({ type: "auth", mac: computeAuthMac(this.me.key, this.own.role, ownBody, this.peerBody) });
      return { kind: "nothing" };
    }
    if (record.type === "auth") {
      const peer = this.peer;
      const ownBody = this.ownBody;
      const peerBody = this.peerBody;
      if (!peer || !ownBody || !peerBody) throw new ProtocolError("bad-order", "AUTH before HELLO");
      if (this.authOk) throw new ProtocolError("bad-order", "a second AUTH");
      // Why: the MAC covers both HELLOs and so both fresh nonces; a replayed AUTH never verifies.
      if (!verifyAuthMac(this.me.key, peer.role, peerBody, ownBody, record.mac)) {
        this.goodbye(GOODBYE_REASON.authFailed, "authentication failed: wrong key");
        return { kind: "closed", reason: "authentication failed: the peer does not hold our key" };
      }
      this.authOk = true;
      return this.authenticatedHello(peer);
    }
    throw new ProtocolError("bad-order", `${record.type} during the handshake`);
  }

  /**
   * Both sides are authenticated: now the generations of the two HELLOs count
   * (§5.5). The side that knows a newer generation than a primary's says
   * FENCED with its claim and closes; the stale side waits for that GOODBYE
   * (it stays in the handshake, where any other record is out of order).
   */
  private authenticatedHello(peer: Hello): Received {
    const own = this.own;
    const peerIsPrimary = peer.role === ROLE.primary;
    const ownIsPrimary = own.role === ROLE.primary;
    if (peerIsPrimary && peer.generation < own.generation) {
      this.goodbye(
        GOODBYE_REASON.fenced,
        `a newer generation (${own.generation}) exists; a primary of generation ${peer.generation} is stale`,
      );
      return { kind: "refused-stale", peer };
    }
    if (ownIsPrimary && peer.generation > own.generation) return { kind: "nothing" };
    if (peerIsPrimary && ownIsPrimary) {
      this.goodbye(GOODBYE_REASON.protocolError, `both sides are primaries of generation ${own.generation}`);
      return { kind: "closed", reason: `a second primary of our generation ${own.generation} connected` };
    }
    this.phase = "open";
    return { kind: "established", peer };
  }

  get established(): boolean {
    return this.phase === "open" && this.authOk;
  }
}

/**
 * The connections of one machine: at most one active peer, any number still in
 * their handshake. Both machines keep their links this way; the heartbeat
 * bookkeeping that is the same on both sides lives here too.
 */
export class Links {
  active: Conn | undefined;
  readonly pending = new Set<Conn>();

  constructor(
    private readonly identity: LocalIdentity,
    private readonly heartbeatConfig: () => HeartbeatConfig,
    private readonly emit: EventSink,
  ) {}

  /** A connection opened (dialled or accepted): start the handshake. */
  open(port: Port, now: number): void {
    const c = new Conn(port, this.identity, this.heartbeatConfig(), now);
    this.pending.add(c);
    c.start();
  }

  find(port: Port): Conn | undefined {
    if (this.active?.port === port) return this.active;
    for (const c of this.pending) if (c.port === port) return c;
    return undefined;
  }

  /** New heartbeat settings for the live and pending connections. */
  setHeartbeat(hb: HeartbeatConfig): void {
    if (this.active) this.active.heartbeat.config = hb;
    for (const c of this.pending) c.heartbeat.config = hb;
  }

  /** The node was stalled for `ms` up to `now`: no link counts that as the peer's silence. */
  stalled(ms: number, now: number): void {
    this.active?.heartbeat.credit(ms, now);
    for (const c of this.pending) c.heartbeat.credit(ms, now);
  }

  /** Drops handshakes that did not finish within a heartbeat timeout. */
  expireHandshakes(now: number): void {
    for (const c of this.pending) {
      if (c.heartbeat.expired(now)) {
        this.pending.delete(c);
        c.abort("handshake timed out");
        this.emit({ type: "peer.refused", remote: c.port.remote, reason: "handshake timed out" });
      }
    }
  }

  /**
   * Ends every connection still in its handshake with GOODBYE `reason` (and
   * `claim`, for FENCED): a peer that already verified our AUTH acts on it,
   * any other takes it for a refusal (§5.1). Never silently: a primary whose
   * backup's connection ends without a word takes the backup for dead.
   */
  closePending(reason: number, message: string, claim?: FencingClaim): void {
    for (const c of this.pending) c.goodbye(reason, message, claim);
    this.pending.clear();
  }

  /** Answers a heartbeat or takes a reply's round trip; false for any other record. */
  heartbeatRecord(c: Conn, r: ReplicationRecord, now: number): boolean {
    if (r.type === "heartbeat") {
      c.send({ type: "heartbeatReply", pingId: r.pingId, sentAtUs: r.sentAtUs });
      return true;
    }
    if (r.type === "heartbeatReply") {
      const rtt = c.heartbeat.reply(r.sentAtUs, now);
      if (rtt !== undefined) this.emit({ type: "heartbeat.rtt", ms: rtt });
      return true;
    }
    return false;
  }

  /** Sends a heartbeat on the active link when one is due. */
  pingIfDue(now: number, state: PeerStateCode, committedEpoch: number, generation: number): void {
    const c = this.active;
    if (!c?.heartbeat.due(now)) return;
    const p = c.heartbeat.ping(now);
    c.send({ type: "heartbeat", pingId: p.pingId, sentAtUs: p.sentAtUs, state, committedEpoch, generation });
  }
}

const GOODBYE_NAMES = new Map<number, string>(Object.entries(GOODBYE_REASON).map(([k, v]) => [v, k]));
export function goodbyeName(reason: number): string {
  return GOODBYE_NAMES.get(reason) ?? `reason-${reason}`;
}
