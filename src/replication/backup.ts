/**
 * The backup's replication state machine (sans-IO).
 *
 * The backup holds an image of the domain: guest memory and disk in RAM, the
 * disk and the committed epoch also in a durable store. It stages every
 * checkpoint whole and applies it atomically (memory, disk writes, vCPU,
 * devices) only when CHECKPOINT_END arrived and every count and checksum
 * holds; then it makes the epoch durable and acknowledges it. A partial or
 * corrupt checkpoint is discarded, never applied.
 *
 * When the primary is lost (the link breaks without a planned GOODBYE, or the
 * heartbeat times out) the backup activates: the domain resumes from the last
 * applied epoch under a new generation. A backup whose image is not complete
 * (still in its first full sync) cannot activate and says so.
 *
 * A backup that closed the link itself (a corrupt frame) keeps its image and
 * waits one heartbeat timeout for the primary to come back (it resyncs
 * incrementally); if it does not, the backup activates. The primary holds its
 * output meanwhile (primary.ts), so whichever happens, nothing is lost.
 *
 * When it must not activate:
 *  - its image is *stale*: the primary said CONTINUING (it dropped this
 *    backup on a heartbeat timeout and released output beyond the image) or
 *    FENCED (it was itself superseded). The backup waits for a resync;
 *    neither a timeout nor a manual failover activates it meanwhile.
 *  - on its own stall: the time the node itself was stalled does not count as
 *    the primary's silence (`stalled`), and no timeout is acted on until the
 *    node has read what arrived meanwhile (`poll(now, false)`; the node
 *    decides, src/node/node.ts). A backup frozen for about the heartbeat
 *    timeout or longer wakes up suspecting its image is stale (the primary
 *    has most likely dropped it and released output beyond it, and the
 *    CONTINUING that says so may be behind a broken frame): it activates on
 *    nothing until the primary answers a heartbeat sent after the stall (it
 *    still has this backup on its link: it did not go on without it), or a
 *    resync completes. What was queued during the stall proves nothing.
 *  - in a planned switchover, before the primary's GOODBYE SWITCHOVER (sent
 *    once it released the final epoch's output and stopped the domain), so
 *    the two never release output at the same time.
 * On activation with the link still up, the FENCED claim (fencing.ts) goes to
 * the old primary before the link is closed.
 *
 * The receive path never holds the event loop for long, whatever arrives:
 *
 *   frame ─► Conn.receive (CRC, order) ─► heartbeat? answered at once
 *                                      └► inbox (records and link events, in order)
 *   poll / frame ─► work(): while this turn's budget lasts (time, and units):
 *       PAGE_BATCH ─► decode jobs (page workers) into the stage, or straight into
 *                     the image during a full sync (ZERO entries: zeroPage)
 *       CHECKPOINT_END ─► once its decodes are done: apply in slices ─► digest
 *                     (in slices) ─► store ─► ACK
 *
 * COLO mode (`config.colo`, SPEC §7.6): after a sync this backup is the
 * secondary. COLO_START starts its own copy of the guest on the image it just
 * applied (`colo.start`: the node runs it); COLO_INPUT frames go to that
 * guest in order (`colo.input`) and its output goes back as COLO_OUTPUT
 * (`sendColoOutput`). COLO_CHECKPOINT pauses the guest and answers with the
 * pages and blocks it wrote (COLO_DIRTY); the checkpoint that follows is
 * staged and applied as any other, after which the guest resumes from the
 * primary's state (`colo.resume`). Records are worked off in order, so the
 * next epoch's inputs reach the guest only after that apply. The image then
 * runs ahead of the committed epoch: activation continues from it (no
 * rollback: everything the primary released was produced by this guest too),
 * and a COLO primary never resyncs it incrementally.
 *
 * Invariants:
 *  - Records take effect in stream order: an item waits until everything
 *    before it that it depends on is done (a page another decode job still
 *    writes, any decode before a record that is not a batch of the open
 *    checkpoint, the apply of the checkpoint before it). So an XOR_LZ4 base
 *    (SPEC §6.4.1) is the staged copy or the image page exactly as the stream
 *    left it, and checkpoint N is applied before anything of N+1 is decoded.
 *  - Atomic apply, as anything that reads the image sees it: a checkpoint is
 *    applied in slices across turns, but `committed` moves only when it is
 *    whole, nothing else is decoded or applied meanwhile, and every reader of
 *    the image (activation, the digest, the API's domain queries) first
 *    finishes the apply in progress (`settleImage`). A checkpoint whose END
 *    arrived and checked is applied even if the link dies meanwhile.
 *  - A link event (close, loss) is acted on in order, after the records that
 *    arrived before it; a heartbeat timeout is not taken while records that
 *    arrived are still being worked off (they are evidence of life).
 */

import {
  configConflicts,
  configSummary,
  type DomainConfig,
  describeConflicts,
  type PinnedConfig,
} from "../domain/config.js";
import type { DigestWork, Domain } from "../domain/domain.js";
import { RemusError } from "../errors.js";
import { InlineWorkers } from "../pipeline/inline.js";
import type { DecodeJob, DecodeResult, HashResult } from "../pipeline/jobs.js";
import type { PageWorkers, Ticket } from "../pipeline/pool.js";
import type { Entropy } from "../prng.js";
import { decodePageInto, isZeroPage } from "../protocol/batch.js";
import { toBitmap } from "../protocol/colo.js";
import {
  CHECKPOINT_FLAG,
  GOODBYE_REASON,
  HELLO_FLAG,
  NACK_REASON,
  PAGE_ENCODING,
  PAGE_SIZE,
  PEER_STATE,
  SYNC_FLAG,
} from "../protocol/constants.js";
import type {
  CheckpointEnd,
  ColoEdgeEntry,
  DiskWrites,
  DomainConfig as DomainConfigRecord,
  PageBatch,
  ReplicationRecord,
} from "../protocol/records.js";
import { type Conn, Links, type LocalIdentity, localIdentity, type PeerGoodbye, type Port } from "./conn.js";
import type { BackupStateName, EventSink, FailoverReason, SyncMode } from "./events.js";
import type { HeartbeatConfig } from "./heartbeat.js";
import { type RewindBase, rewindRecord } from "./rewind.js";
import { Stage } from "./staging.js";
import { INLINE_PAGES } from "./streaming.js";

/**
 * Durable storage of the backup's disk and committed epoch. Asynchronous: a
 * commit completes later, through `done`, in its own time (a level batch in a
 * daemon, a configurable persistence delay in a simulation). The backup
 * acknowledges epochs in order, each only once its own commit completed.
 */
export interface BackupStore {
  /**
   * Makes `blocks` (their contents read from `dataOf`) and the epoch durable,
   * atomically, then calls `done` (with the error if it failed). `dataOf` must
   * be read before this returns. Commits complete in the order they were made.
   */
  commit(
    epoch: number,
    generation: number,
    blocks: ArrayLike<number>,
    dataOf: (block: number) => Uint8Array,
    /**
     * A full sync: the store replaces what it held; `blocks` are then the
     * blocks the sync wrote, and every other block is zero.
     */
    full: boolean,
    done: (err?: Error) => void,
  ): void;
  /** The image is being replaced by a full sync: forget the committed epoch (ordered before later commits). */
  invalidate(): void;
  /** Persists the generation (ordered before later commits). */
  saveGeneration(generation: number): void;
}

/** What a COLO secondary's node does with its guest (see the header). */
export interface ColoSecondaryHooks {
  /**
   * COLO_START: start the guest on the image just applied, in COLO epoch
   * `epoch`; `edge` is how the primary's LAN edge renumbers connections.
   */
  start(epoch: number, edge: readonly ColoEdgeEntry[]): void;
  /** COLO_INPUT: a frame for the guest, in order. */
  input(frame: Buffer): void;
  /** COLO_CHECKPOINT(epoch): pause the guest (its output so far sent first) and return what it wrote since it last resumed. */
  pause(epoch: number): { pages: Uint32Array; blocks: Uint32Array };
  /** Checkpoint `epoch` is applied: the guest holds the primary's state; it runs on from it in epoch + 1 when `run`. */
  resume(epoch: number, run: boolean): void;
  /** The COLO session ended (a new sync, the link lost, activation, a stop): the guest stops until told otherwise. */
  stop(): void;
}

export interface BackupConfig {
  heartbeat: HeartbeatConfig;
  /** COLO mode (see the header). */
  colo?: boolean;
  /** Compute the digest after every apply (and check the primary's, when it sends one). */
  verify: boolean;
  /**
   * Work per turn on the receive path (decode, apply, digest): stop after
   * `turnMs` of the high-resolution clock or `turnUnits` pages and blocks,
   * whichever comes first, and go on at the next poll.
   */
  turnMs?: number;
  turnUnits?: number;
  /** Batches of at most this many pages are decoded on this thread, not by the page workers. */
  inlinePages?: number;
  /**
   * With a lease (src/node/node.ts): a lost primary is only a suspicion
   * (`suspected`); the node activates this backup once it holds the lease.
   */
  deferActivation?: boolean;
}

/**
 * COLO: how often the secondary folds its own guest's writes into the image's
 * digest, at most. Its guest rewrites the same hot pages (and appends the same
 * disk blocks) every tick, and the next checkpoint overwrites them all with
 * the primary's; hashing them every turn cost a quarter of the secondary's
 * CPU under kvd load. What is left is hashed when the digest is read (an
 * apply's check, an activation): at most this long's writes.
 */
export const COLO_DIGEST_PERIOD_MS = 50;

/** Defaults of the receive path's budget: a turn stays well under 5 ms. */
export const DEFAULT_TURN_MS = 3;
export const DEFAULT_TURN_UNITS = 16_384;

export interface BackupOptions {
  readonly domain: Domain;
  readonly key: Uint8Array;
  readonly nodeId: Uint8Array;
  readonly software: string;
  readonly entropy: Entropy;
  /** The highest primary generation this node has seen (from its store). */
  readonly generation: number;
  readonly config: BackupConfig;
  readonly emit: EventSink;
  readonly store: BackupStore;
  readonly hrClock?: () => number;
  /** Where page batches are decoded (default: this thread). */
  readonly workers?: PageWorkers;
  /** The node's COLO secondary (with `config.colo`). */
  readonly colo?: ColoSecondaryHooks;
  /**
   * The domain settings this node was given explicitly: the primary's
   * DOMAIN_CONFIG must agree with them (anything else it adopts).
   */
  readonly pinned?: PinnedConfig;
  /**
   * This node was the primary and still holds its memory image (it was
   * demoted, not restarted): it offers to be rewound (rewind.ts) instead of
   * taking a full sync.
   */
  readonly rewind?: RewindBase;
}

export interface Activation {
  readonly epoch: number;
  /** The generation the resumed epoch was committed under (the lineage the new primary continues). */
  readonly fromGeneration: number;
  readonly digest: string;
  readonly generation: number;
  readonly reason: FailoverReason;
}

/** An applied epoch whose ack waits for its store commit. */
interface PendingAck {
  readonly conn: Conn;
  readonly epoch: number;
  readonly generation: number;
  readonly final: boolean;
  /** Unset while the commit runs. */
  outcome: "stored" | Error | undefined;
}

/** A record, or a link event, waiting its turn on the receive path. */
type Inbound =
  | {
      readonly kind: "record";
      readonly conn: Conn;
      readonly record: ReplicationRecord;
      readonly frame: Uint8Array;
    }
  | { readonly kind: "event"; readonly conn: Conn; readonly run: (now: number) => void };

/** A page batch being decoded (by the page workers). */
interface Decoding {
  ticket: Ticket<DecodeResult>;
  readonly job: DecodeJob;
  readonly conn: Conn;
  /** Pages the job writes (their busy counts drop when it ends). */
  readonly pfns: Uint32Array;
  /** The job writes into the image (a full sync): its pages are marked written when it ends. */
  readonly direct: boolean;
}

/** A checkpoint whose END checked, being applied a slice at a time. */
interface Applying {
  readonly conn: Conn;
  readonly end: CheckpointEnd;
  readonly stage: Stage;
  readonly full: boolean;
  readonly t0: number;
  /** Next staged page to apply; then the disk, then the digest. */
  next: number;
  phase: "pages" | "rest" | "digest";
  digest?: string;
  /** A full sync: the blocks it wrote (every other block is zero). */
  written?: Uint32Array;
}

export interface BackupStatus {
  readonly state: BackupStateName;
  readonly generation: number;
  readonly committed: number;
  readonly imageValid: boolean;
  readonly peerConnected: boolean;
  readonly peerLastSeen: number | undefined;
  readonly heartbeatRttMs: number | undefined;
  readonly stagingEpoch: number | undefined;
  readonly stagedPages: number;
  readonly stagedDiskWrites: number;
  readonly lastChange: string;
}

export class BackupMachine {
  readonly domain: Domain;
  config: BackupConfig;
  private readonly emit: EventSink;
  private readonly store: BackupStore;
  private readonly hr: () => number;
  private readonly identity: LocalIdentity;
  private readonly pinned: PinnedConfig;
  /** The domain's configuration, as the primary last sent it (DOMAIN_CONFIG). */
  domainConfig: DomainConfig | undefined;
  /** Why the primary's domain cannot be held here (a DOMAIN_CONFIG that conflicts); nothing changed. */
  configError: string | undefined;

  private _state: BackupStateName = "waiting";
  private _lastChange = "started";
  generation: number;
  committed = 0;
  imageValid = false;

  private readonly links: Links;
  private syncMode: SyncMode | undefined;
  /** The former primary's image and what it wrote after its last common epoch, until a sync replaces it. */
  private rewindBase: RewindBase | undefined;
  /** The generation the committed image was committed under. */
  private committedGeneration = 0;
  /** The checkpoint being staged, and the next one's early disk writes. */
  private stage: Stage | undefined;
  private ahead: Stage | undefined;
  /** Stages not in use, kept with their memory for the next checkpoints. */
  private readonly spare: Stage[] = [];
  /** Where page batches are decoded; `inline` when the workers are broken. */
  private readonly workers: PageWorkers;
  private readonly inline = new InlineWorkers();
  /** Records and link events not yet worked off, in arrival order (`inboxHead` is the next). */
  private inbox: Inbound[] = [];
  private inboxHead = 0;
  /** Decode jobs not yet collected, in submission order. */
  private decoding: Decoding[] = [];
  /** Per page: decode jobs in flight that write it (allocated with the first job). */
  private busyPages: Uint8Array | undefined;
  private applying: Applying | undefined;
  /** Digest work out on the page workers (keeps activation's digest cheap, off this thread). */
  private hashing: { work: DigestWork; ticket: Ticket<HashResult> }[] = [];
  /** This turn's budget on the receive path: until `turnEnds` (hr clock) or `turnUnits` more units. */
  private turnEnds = Number.POSITIVE_INFINITY;
  private turnUnits = Number.POSITIVE_INFINITY;
  private working = false;
  /** Activate at this time unless a primary reconnects (set after a close we initiated). */
  private graceUntil: number | undefined;
  /** Applied epochs waiting for their store commit, oldest first. */
  private pendingAcks: PendingAck[] = [];
  private syncStartedAt = 0;
  private switchoverRequested = false;
  private activation: Activation | undefined;
  /** Why the image is stale (the primary continued without it), until a sync completes. */
  stale: string | undefined;
  /**
   * With `deferActivation`: why this backup would activate now (the primary
   * is lost), until the node activates it or a primary connects again.
   */
  suspected: FailoverReason | undefined;
  /** The generation under which the image was last brought up to date (0: none). */
  imageGeneration = 0;
  /**
   * The staleness is only suspected (this node's own long stall, which ended
   * at this time): the primary's reply to a heartbeat sent after it disproves it.
   */
  private staleByStallUntil: number | undefined;
  /** COLO: the epoch the secondary's guest runs (or is paused in), while a session is on. */
  private coloEpoch: number | undefined;
  /** COLO: when the secondary's own writes are next folded into the digest (COLO_DIGEST_PERIOD_MS). */
  private coloDigestAt = 0;
  /** COLO_OUTPUT records sent in `coloEpoch`. */
  private coloOut = 0;
  /** A COLO sync was applied: the next checkpoint data must follow a COLO_START. */
  private awaitColoStart = false;
  private readonly coloHooks: ColoSecondaryHooks | undefined;

  constructor(opts: BackupOptions) {
    this.domain = opts.domain;
    this.config = { ...opts.config };
    this.emit = opts.emit;
    this.store = opts.store;
    this.hr = opts.hrClock ?? (() => performance.now());
    this.generation = opts.generation;
    this.workers = opts.workers ?? this.inline;
    this.coloHooks = opts.colo;
    this.pinned = opts.pinned ?? {};
    this.rewindBase = opts.rewind;
    this.identity = localIdentity("backup", opts, {
      generation: () => this.generation,
      // A rewind offer names the epoch its image has in common with the primary's lineage.
      committedEpoch: () => (this.offersRewind ? (this.rewindBase?.epoch ?? 0) : this.committed),
      // DELTA: this backup decodes XOR_LZ4 against its staged copy or its image (SPEC §6.4.1).
      // ADOPT: it judges the primary's geometry at DOMAIN_CONFIG, after AUTH (§5.3, §6.16).
      // REWIND: a former primary's image, offered to be rewound (rewind.ts).
      helloFlags: () =>
        (this.imageValid ? HELLO_FLAG.imageValid : 0) |
        (this.offersRewind ? HELLO_FLAG.rewind : 0) |
        HELLO_FLAG.delta |
        HELLO_FLAG.adopt,
      claimEpoch: () => this.committed,
      colo: this.config.colo === true,
    });
    this.links = new Links(this.identity, () => this.config.heartbeat, this.emit);
  }

  get state(): BackupStateName {
    return this._state;
  }

  /** Whether this backup holds a former primary's image and offers it to be rewound. */
  get offersRewind(): boolean {
    return this.rewindBase !== undefined && !this.imageValid;
  }

  get activated(): Activation | undefined {
    return this.activation;
  }

  status(): BackupStatus {
    return {
      state: this._state,
      generation: this.generation,
      committed: this.committed,
      imageValid: this.imageValid,
      peerConnected: this.links.active?.established ?? false,
      peerLastSeen: this.links.active?.heartbeat.lastHeardAt,
      heartbeatRttMs: this.links.active?.heartbeat.lastRttMs,
      stagingEpoch: this.stage?.epoch,
      stagedPages: this.stage?.pages.count ?? 0,
      stagedDiskWrites: (this.stage?.disk.count ?? 0) + (this.ahead?.disk.count ?? 0),
      lastChange: this._lastChange,
    };
  }

  private setState(s: BackupStateName, reason: string): void {
    if (s === this._state) return;
    const from = this._state;
    this._state = s;
    this._lastChange = reason;
    this.emit({ type: "state.changed", from, to: s, reason });
  }

  // ---- connections ----

  attach(port: Port, now: number): void {
    if (this._state === "activated" || this._state === "stopped") {
      port.close(`this daemon is ${this._state}`);
      return;
    }
    this.links.open(port, now);
  }

  frame(port: Port, data: Uint8Array, now: number): void {
    const c = this.links.find(port);
    if (!c || this._state === "activated") return;
    const r = c.receive(data, now);
    switch (r.kind) {
      case "nothing":
      case "discarded":
        return;
      case "refused-stale":
        this.links.pending.delete(c);
        this.emit({
          type: "peer.refused",
          remote: port.remote,
          reason: `refused a stale primary of generation ${r.peer.generation} (this backup knows ${this.generation})`,
        });
        return;
      case "established":
        this.links.pending.delete(c);
        this.established(c);
        return;
      case "closed":
        if (this.links.pending.delete(c)) {
          this.emit({ type: "peer.refused", remote: port.remote, reason: r.reason });
          return;
        }
        if (c === this.links.active) this.inOrder(c, (t) => this.lost(r.reason, t, r.goodbye), now);
        return;
      case "record":
        if (c !== this.links.active) return;
        // Heartbeats are answered (and their replies read) at once, even behind a backlog of records.
        if (this.heartbeat(c, r.record, now)) return;
        this.inbox.push({ kind: "record", conn: c, record: r.record, frame: r.frame });
        this.work(now);
        return;
    }
  }

  detach(port: Port, now: number, reason = "connection closed"): void {
    const c = this.links.find(port);
    if (!c) return;
    c.phase = "closed";
    if (this.links.pending.delete(c)) return;
    if (c === this.links.active) this.inOrder(c, (t) => this.lost(reason, t, undefined, true), now);
  }

  /** Runs a link event now, or after the records that arrived before it when some still wait. */
  private inOrder(c: Conn, run: (now: number) => void, now: number): void {
    if (this.idle) run(now);
    else {
      this.inbox.push({ kind: "event", conn: c, run });
      this.work(now);
    }
  }

  /** Nothing waits on the receive path: no record or event queued, no decode or apply running. */
  private get idle(): boolean {
    return this.inboxHead === this.inbox.length && this.decoding.length === 0 && !this.applying;
  }

  /**
   * Works the receive path for one more turn's budget, and nothing else (no
   * timers): for the host to call between its regular polls while `busy`.
   */
  flush(now: number): void {
    if (this._state === "activated" || this._state === "stopped") return;
    this.newTurn();
    this.work(now);
  }

  /** Whether there is receive-path work left for later turns (the host may poll again soon). */
  get busy(): boolean {
    return !this.idle;
  }

  private established(c: Conn): void {
    const old = this.links.active;
    if (old) {
      // The same primary (it holds the key) reconnected before we noticed the old link die.
      // Why end COLO too: the session was the old link's; the guest's output must not go out on the
      // new one before its COLO_START (seen: a COLO secondary SIGSTOPped past the heartbeat timeout).
      this.coloEnd();
      this.links.active = undefined;
      old.abort("replaced by a new connection from the primary");
      this.discardStaging("the primary reconnected");
    }
    this.links.active = c;
    this.graceUntil = undefined;
    this.suspected = undefined;
    const peer = c.peer;
    if (peer && peer.generation > this.generation) {
      this.generation = peer.generation;
      this.store.saveGeneration(peer.generation);
    }
    this.emit({
      type: "peer.connected",
      remote: c.port.remote,
      peerNode: Buffer.from(peer?.nodeId ?? []).toString("hex"),
      peerGeneration: peer?.generation ?? 0,
    });
    const base = this.rewindBase;
    // The offer made in HELLO: what the image holds beyond the common epoch, before any sync.
    if (base && peer && (c.ownHelloFlags & HELLO_FLAG.rewind) !== 0) {
      c.send(rewindRecord(base, this.domain.pages, this.domain.disk.blocks));
    }
  }

  /**
   * The primary went away. `abrupt`: the link broke with no GOODBYE at all;
   * `goodbye`: the primary's reason, when it said one; neither: we closed it.
   */
  private lost(reason: string, now: number, said: PeerGoodbye | undefined, abrupt = false): void {
    this.coloEnd();
    const c = this.links.active;
    this.links.active = undefined;
    c?.abort(reason);
    this.discardStaging(reason);
    const goodbye = said?.reason;
    const planned = goodbye === GOODBYE_REASON.shutdown || goodbye === GOODBYE_REASON.switchover;
    this.emit({ type: "peer.lost", reason, planned });
    if (this.syncMode === "full") this.syncMode = undefined;
    if (goodbye === GOODBYE_REASON.switchover && this.switchoverRequested && this.imageValid) {
      this.primaryGone("planned");
      return;
    }
    if (said && (goodbye === GOODBYE_REASON.continuing || goodbye === GOODBYE_REASON.fenced)) {
      // Why: the primary went on (or was superseded) past this image; activating would roll back.
      this.stale = `the primary continued without this backup: ${said.message}`;
      this.graceUntil = undefined;
      if (goodbye === GOODBYE_REASON.fenced && said.generation > this.generation) {
        this.generation = said.generation;
        this.store.saveGeneration(said.generation);
      }
      this.setState("waiting", `image stale (${reason}); waiting for a resync`);
      return;
    }
    if (!this.imageValid) {
      this.emit({ type: "failover.impossible", reason: `no complete image to resume from (${reason})` });
      this.setState("waiting", `primary lost before the first sync completed: ${reason}`);
      return;
    }
    if (planned && this.config.deferActivation && !this.stale) {
      // With a lease a planned stop hands the domain over: its final epoch is applied here, and
      // the lease, released by the stopped primary, decides when this backup may activate.
      this.primaryGone("planned");
      return;
    }
    if (planned) {
      // A planned stop is not a failover: keep the image and wait for the primary.
      this.setState("waiting", `primary stopped (planned): ${reason}`);
      return;
    }
    if (this.stale) {
      this.setState("waiting", `primary lost (${reason}); the image is stale: ${this.stale}`);
      return;
    }
    if (abrupt) {
      this.primaryGone("peer_lost");
      return;
    }
    // We (or the primary, with a reason) closed a live link: give the primary one heartbeat
    // timeout to reconnect before we conclude it is gone.
    this.graceUntil = now + this.config.heartbeat.intervalMs * this.config.heartbeat.misses;
    this.setState("waiting", `link closed (${reason}); activating unless the primary returns`);
  }

  private discardStaging(reason: string): void {
    if (this.stage?.holdsData) {
      this.emit({ type: "checkpoint.discarded", epoch: this.stage.epoch, reason });
    }
    // The stages keep their memory for the next checkpoints (`takeStage` waits for the decodes).
    if (this.stage) this.spare.push(this.stage);
    if (this.ahead) this.spare.push(this.ahead);
    this.stage = undefined;
    this.ahead = undefined;
  }

  /**
   * A heartbeat or its reply, handled as it arrives; false for any other record.
   */
  private heartbeat(c: Conn, r: ReplicationRecord, now: number): boolean {
    if (
      r.type === "heartbeatReply" &&
      this.staleByStallUntil !== undefined &&
      r.sentAtUs >= this.staleByStallUntil * 1000
    ) {
      // Why: the primary answered a ping sent after our stall on this link, so it had not dropped us.
      this.stale = undefined;
      this.staleByStallUntil = undefined;
    }
    return this.links.heartbeatRecord(c, r, now);
  }

  /**
   * Keeps the digest's backlog small, so activation's digest costs O(recent
   * writes): page workers hash what the sync and the applies wrote (when the
   * node has workers of its own), else this thread hashes a 1 ms slice.
   */
  private keepDigest(): void {
    const d = this.domain;
    if (this.workers === this.inline) {
      d.digestStep(65_536, this.hr, 1);
      return;
    }
    let failed = false;
    while (this.hashing.length > 0 && (this.hashing[0] as (typeof this.hashing)[number]).ticket.done) {
      const h = this.hashing.shift() as (typeof this.hashing)[number];
      if (h.ticket.result) d.foldDigestWork(h.work, h.ticket.result.hashes);
      else failed = true;
    }
    if (failed || this.workers.broken) {
      // The workers broke: cancel what is out and carry on here.
      this.hashing = [];
      d.digestStep(65_536, this.hr, 1);
      return;
    }
    d.digestDiskStep(65_536, this.hr, 1);
    const memKey = this.workers.share(d.memory.shared);
    while (this.hashing.length < 2) {
      const work = d.takeDigestWork(2048);
      if (!work) break;
      this.hashing.push({ work, ticket: this.workers.hash({ memory: memKey, pfns: work.pfns }) });
    }
  }

  // ---- the receive path ----

  /** Works off the inbox in order while this turn's budget lasts. */
  private work(now: number): void {
    if (this.working) return;
    this.working = true;
    try {
      for (;;) {
        this.collect(now);
        if (this._state === "activated" || this._state === "stopped") {
          this.inbox = [];
          this.inboxHead = 0;
          return;
        }
        if (this.applying) {
          if (!this.applySlice(now, false)) return;
          continue;
        }
        const item = this.inbox[this.inboxHead];
        if (item === undefined) {
          this.inbox = [];
          this.inboxHead = 0;
          return;
        }
        if (this.turnSpent() || !this.ready(item)) return;
        this.inbox[this.inboxHead++] = undefined as unknown as Inbound;
        if (item.kind === "event") {
          // A link event of a connection that was replaced meanwhile is no longer news.
          if (item.conn === this.links.active) item.run(now);
          continue;
        }
        const c = item.conn;
        if (c !== this.links.active) continue;
        try {
          this.record(c, item.record, item.frame, now);
        } catch (e) {
          // A record that passed the codec but cannot be staged: drop the connection, keep the image.
          this.refuse(c, e instanceof Error ? e.message : String(e), now);
        }
      }
    } finally {
      this.working = false;
    }
  }

  private refuse(c: Conn, msg: string, now: number): void {
    c.goodbye(GOODBYE_REASON.protocolError, msg);
    if (c === this.links.active) this.lost(`bad record: ${msg}`, now, undefined);
  }

  private turnSpent(): boolean {
    return this.turnUnits <= 0 || this.hr() >= this.turnEnds;
  }

  /** Starts a new turn's budget (at every poll). */
  private newTurn(): void {
    this.turnEnds = this.hr() + (this.config.turnMs ?? DEFAULT_TURN_MS);
    this.turnUnits = this.config.turnUnits ?? DEFAULT_TURN_UNITS;
  }

  /**
   * Whether `item` may be worked on now: a batch of the open checkpoint
   * may overlap the decodes in flight unless it writes a page one of them
   * writes; anything else waits until every decode is done.
   */
  private ready(item: Inbound): boolean {
    // Why: a decode job writes the image behind the accessors, which a copy-on-write capture
    // (a primary this node just stopped being) would not see; wait until none holds the memory.
    if (item.kind === "record" && item.record.type === "pageBatch" && this.direct(item.record.epoch)) {
      if (this.domain.memory.hasWriteBarrier) return false;
    }
    if (this.decoding.length === 0) return true;
    if (item.kind !== "record") return false;
    const r = item.record;
    if (r.type === "diskWrites") return r.epoch === this.stage?.epoch;
    if (r.type !== "pageBatch" || r.epoch !== this.stage?.epoch) return false;
    const busy = this.busyPages;
    if (busy === undefined) return true;
    for (const e of r.entries) if (busy[e.pfn] !== 0) return false;
    return true;
  }

  /** Takes finished decode jobs (in any order): marks what they wrote; a failed one ends the link. */
  private collect(now: number): void {
    if (this.decoding.length === 0) return;
    let keep = 0;
    const list = this.decoding;
    for (let i = 0; i < list.length; i++) {
      const d = list[i] as Decoding;
      if (d.ticket.done && d.ticket.error !== undefined && this.workers.broken) {
        // The workers broke under this job: decode it on this thread (the buffers are shared).
        d.ticket = this.inline.decode(d.job);
      }
      if (!d.ticket.done) {
        list[keep++] = d;
        continue;
      }
      const busy = this.busyPages as Uint8Array;
      for (let k = 0; k < d.pfns.length; k++) {
        const p = d.pfns[k] as number;
        busy[p] = (busy[p] as number) - 1;
      }
      const res = d.ticket.result;
      if (d.direct) {
        // The job wrote into the image behind the accessors: mark the pages as a write would have.
        // Even when it failed part way: the pages it wrote are no longer what the logs, the digest
        // and the pristine bits say (a later full sync must not skip them as never written).
        this.domain.memory.noteWritten(d.pfns);
      }
      if (res?.ok) continue;
      // A ProtocolError's message starts with its reason ("bad-encoding: ..."): say it once.
      const why = res
        ? `${res.reason.startsWith("bad-") ? "" : "bad-encoding: "}${res.reason} (entry ${res.entry})`
        : `internal: page decode failed: ${d.ticket.error?.message}`;
      // The stage (or, in a full sync, the image) holds garbage now: the link ends and the stage is dropped.
      if (d.conn === this.links.active) this.refuse(d.conn, why, now);
    }
    list.length = keep;
  }

  private record(c: Conn, r: ReplicationRecord, frame: Uint8Array, now: number): void {
    if (this.awaitColoStart && (r.type === "pageBatch" || r.type === "vcpu" || r.type === "device")) {
      // SPEC §7.6: a Remus primary talking to a COLO backup; the modes must match.
      throw new RemusError(
        "REMUSD_ERR_PROTOCOL",
        "the primary is not in COLO mode (no COLO_START after the sync)",
      );
    }
    switch (r.type) {
      case "domainConfig":
        this.adoptConfig(c, r);
        return;
      case "syncBegin":
        this.syncBegin(
          r.epoch,
          (r.flags & SYNC_FLAG.incremental) !== 0
            ? "incremental"
            : (r.flags & SYNC_FLAG.rewind) !== 0
              ? "rewind"
              : "full",
          now,
        );
        return;
      case "pageBatch":
        this.pages(c, r, frame);
        return;
      case "diskWrites":
        this.diskWrites(r);
        return;
      case "vcpu":
        this.stageFor(r.epoch).vcpu = Buffer.from(r.state);
        return;
      case "device":
        this.stageFor(r.epoch).device = Buffer.from(r.state);
        return;
      case "checkpointEnd":
        this.end(c, r, now);
        return;
      case "coloStart":
        this.awaitColoStart = false;
        this.coloEpoch = r.epoch;
        this.coloOut = 0;
        this.coloHooks?.start(r.epoch, r.edge);
        return;
      case "coloInput":
        if (this.coloEpoch !== undefined) this.coloHooks?.input(Buffer.from(r.frame));
        return;
      case "coloCheckpoint": {
        const d = this.coloHooks?.pause(r.epoch) ?? { pages: new Uint32Array(0), blocks: new Uint32Array(0) };
        c.send({
          type: "coloDirty",
          epoch: r.epoch,
          pageBitmap: toBitmap(d.pages, this.domain.pages),
          blockBitmap: toBitmap(d.blocks, this.domain.disk.blocks),
        });
        return;
      }
      default:
        return;
    }
  }

  /** COLO: a frame the secondary's guest sent (after its sequence rewriter), for the primary's comparator. */
  sendColoOutput(frame: Buffer): void {
    const c = this.links.active;
    if (this.coloEpoch === undefined || !c || c.phase !== "open") return;
    c.send({ type: "coloOutput", epoch: this.coloEpoch, index: this.coloOut++, frame });
  }

  /** COLO: the epoch the secondary runs, while a session is on. */
  get coloRunning(): number | undefined {
    return this.coloEpoch;
  }

  /** Ends the COLO session, if one is on: the node stops the secondary's guest. */
  private coloEnd(): void {
    this.awaitColoStart = false;
    if (this.coloEpoch === undefined) return;
    this.coloEpoch = undefined;
    this.coloHooks?.stop();
  }

  /**
   * DOMAIN_CONFIG: the domain this backup is to hold. Settings given here
   * explicitly, and the geometry of an image it already holds, must agree;
   * on a conflict nothing changes: the backup says CONFIG_MISMATCH, closes
   * and reports `config.conflict` (the daemon exits with a usage error).
   * Otherwise it takes the rest, resizing its still empty domain if needed.
   */
  private adoptConfig(c: Conn, r: DomainConfigRecord): void {
    const cfg: DomainConfig = {
      pages: r.pages,
      diskBlocks: r.diskBlocks,
      intervalMs: r.intervalMs,
      guestMac: Buffer.from(r.guestMac),
      guestIp: r.guestIp,
      workload: r.workload,
    };
    const d = this.domain;
    // Why: an image is this domain's memory and disk; another size would be another domain.
    const pinned: PinnedConfig =
      this.imageValid || this.rewindBase
        ? { pages: d.pages, diskBlocks: d.disk.blocks, ...this.pinned }
        : this.pinned;
    const conflicts = configConflicts(pinned, cfg);
    if (conflicts.length > 0) {
      const message = describeConflicts(conflicts);
      this.configError = message;
      this.emit({ type: "config.conflict", message, conflicts });
      // It stops (it will not activate, the primary may release what it holds) and changes nothing.
      this.links.active = undefined;
      c.goodbye(GOODBYE_REASON.configMismatch, message);
      this.links.closePending(GOODBYE_REASON.configMismatch, message);
      this.discardStaging("configuration conflict");
      this.emit({ type: "peer.lost", reason: `configuration conflict: ${message}`, planned: true });
      this.setState("stopped", `configuration conflict: ${message}`);
      return;
    }
    const reshaped = d.pages !== cfg.pages || d.disk.blocks !== cfg.diskBlocks;
    if (reshaped) {
      // Nothing valid is in the domain (else the geometry was pinned above): give it the primary's size.
      this.spare.length = 0;
      this.busyPages = undefined;
      d.reshape({ memoryBytes: cfg.pages * PAGE_SIZE, diskBytes: cfg.diskBlocks * PAGE_SIZE });
    }
    this.domainConfig = cfg;
    this.emit({ type: "domain.config", ...configSummary(cfg), reshaped });
  }

  private syncBegin(epoch: number, mode: SyncMode, now: number): void {
    this.coloEnd();
    this.syncStartedAt = now;
    this.discardStaging("a new sync began");
    if (mode === "incremental" && this.imageValid) {
      this.syncMode = "incremental";
    } else if (mode === "rewind" && this.rewindBase && !this.imageValid) {
      // Staged on top of the former primary's image; the image is nothing to resume from until it completes.
      this.syncMode = "rewind";
      this.store.invalidate();
    } else {
      // The image is overwritten: no rewind base survives.
      this.rewindBase = undefined;
      // A full sync overwrites the image in place: until it completes there is nothing to resume.
      this.syncMode = "full";
      this.imageValid = false;
      this.store.invalidate();
      // From here the disk log holds every block the sync writes (the store's full image, below).
      this.domain.disk.log.clear();
    }
    this.stage = this.takeStage(epoch);
    this.emit({ type: "sync.started", epoch, mode: this.syncMode, pages: this.domain.pages });
    this.setState("syncing", `${this.syncMode} sync from the primary`);
  }

  /** A stage for `epoch`, with the memory of one used before when there is one. */
  private takeStage(epoch: number): Stage {
    // Why: a decode job still running may write into any stage given back; none may be reused until it ends.
    if (this.decoding.length > 0) throw new RemusError("REMUSD_ERR_INTERNAL", "stage taken while decoding");
    const s = this.spare.pop() ?? new Stage(this.domain.pages, this.domain.disk.blocks);
    return s.reset(epoch);
  }

  private stageFor(epoch: number): Stage {
    const s = this.stage;
    if (s && s.epoch === epoch) return s;
    if (s && epoch === s.epoch + 1) {
      if (!this.ahead) this.ahead = this.takeStage(epoch);
      return this.ahead;
    }
    if (!s) {
      this.stage = this.takeStage(epoch);
      return this.stage;
    }
    throw new RemusError("REMUSD_ERR_PROTOCOL", `record for epoch ${epoch} while staging ${s.epoch}`);
  }

  /** During a full sync the image is not valid anyway, so pages go straight into it. */
  private direct(epoch: number): boolean {
    return this.syncMode === "full" && this.stage?.epoch === epoch;
  }

  /**
   * A PAGE_BATCH: one decode job. Each entry's destination is its slot in the
   * stage (the same slot when the checkpoint staged the page before), or
   * during a full sync the page in the image; its XOR_LZ4 base is the staged
   * copy when there is one, else the image page (SPEC §6.4.1). ZERO entries
   * in a full sync are `zeroPage` here: a page that is zero already (never
   * written, above all) is neither read nor written.
   */
  private pages(c: Conn, r: PageBatch, frame: Uint8Array): void {
    const direct = this.direct(r.epoch);
    const st = direct ? undefined : this.stageFor(r.epoch).pages;
    const mem = this.domain.memory;
    const n = r.entries.length;
    // A small batch is decoded here: two thread hops would cost more than the work.
    const w =
      this.workers.broken || n <= (this.config.inlinePages ?? INLINE_PAGES) ? this.inline : this.workers;
    // Shared with this thread too, so the job can be redone here if the workers break.
    const share = (b: SharedArrayBuffer): number => {
      if (w !== this.inline) this.inline.share(b);
      return w.share(b);
    };
    const memKey = share(mem.shared);
    const dstKeys = new Int32Array(n);
    const dstOffsets = new Float64Array(n);
    const baseKeys = new Int32Array(n).fill(-1);
    const baseOffsets = new Float64Array(n);
    const pfns: number[] = [];
    for (let i = 0; i < n; i++) {
      const e = r.entries[i] as PageBatch["entries"][number];
      const p = e.pfn;
      if (st === undefined) {
        if (e.enc === PAGE_ENCODING.zero) {
          mem.zeroPage(p);
          dstKeys[i] = -1;
          continue;
        }
        dstKeys[i] = memKey;
        dstOffsets[i] = p * PAGE_SIZE;
        // In place: the image holds the page as the stream left it.
        baseKeys[i] = memKey;
        baseOffsets[i] = p * PAGE_SIZE;
      } else {
        const had = st.lookup(p);
        const s = had >= 0 ? had : st.slot(p);
        const key = share(st.sharedOf(s));
        dstKeys[i] = key;
        dstOffsets[i] = st.offsetOf(s);
        if (e.enc === PAGE_ENCODING.xorLz4) {
          // The base is the copy this checkpoint staged before, in place, else the image's page.
          baseKeys[i] = had >= 0 ? key : memKey;
          baseOffsets[i] = had >= 0 ? st.offsetOf(s) : p * PAGE_SIZE;
        }
      }
      pfns.push(p);
    }
    this.turnUnits -= n;
    if (pfns.length === 0) return;
    const job: DecodeJob = {
      kind: "pageBatch",
      frame,
      geometry: { pages: mem.pages, diskBlocks: this.domain.disk.blocks },
      dstKeys,
      dstOffsets,
      baseKeys,
      baseOffsets,
    };
    const ticket = w.decode(job);
    const list = Uint32Array.from(pfns);
    const busy = (this.busyPages ??= new Uint8Array(mem.pages));
    for (const p of pfns) busy[p] = (busy[p] as number) + 1;
    this.decoding.push({ ticket, job, conn: c, pfns: list, direct: st === undefined });
  }

  /** DISK_WRITES are decoded here (they are few): into the stage, or into the disk during a full sync. */
  private diskWrites(r: DiskWrites): void {
    this.turnUnits -= r.entries.length;
    if (this.direct(r.epoch)) {
      const disk = this.domain.disk;
      for (const e of r.entries) {
        // A block that is zero already stays untouched (and unmarked).
        if (e.enc === PAGE_ENCODING.zero && isZeroPage(disk.view(e.block))) continue;
        decodePageInto(e, disk.writableBlock(e.block), 0);
      }
      return;
    }
    const st = this.stageFor(r.epoch).disk;
    for (const e of r.entries) {
      const s = st.slot(e.block);
      decodePageInto(e, st.bufferOf(s), st.offsetOf(s));
    }
  }

  /**
   * CHECKPOINT_END: every count and CRC already matched (the stream rules) and
   * every page of it is decoded (`ready`). Starts the apply; it runs a slice
   * at a time (`applySlice`), and nothing else touches the image until it is done.
   */
  private end(c: Conn, r: CheckpointEnd, _now: number): void {
    const st = this.stage;
    if (!st || st.epoch !== r.epoch || !st.vcpu || !st.device) {
      throw new RemusError("REMUSD_ERR_PROTOCOL", `CHECKPOINT_END ${r.epoch} without its staged records`);
    }
    const sync = (r.flags & CHECKPOINT_FLAG.sync) !== 0;
    this.applying = {
      conn: c,
      end: r,
      stage: st,
      // After a rewind too, the whole disk goes to the store: it never held this image's.
      full: sync && (this.syncMode === "full" || this.syncMode === "rewind"),
      t0: this.hr(),
      next: 0,
      phase: "pages",
    };
    // The next checkpoint's early disk writes become the open stage.
    this.stage = this.ahead ?? this.takeStage(r.epoch + 1);
    this.ahead = undefined;
  }

  /**
   * Finishes the apply in progress (and its digest, store commit and ack), at
   * once: called before anything reads the image, so nobody ever sees half a
   * checkpoint.
   */
  settleImage(): void {
    if (this.applying) this.applySlice(0, true);
  }

  /**
   * Applies the next slice of the checkpoint in `applying` (all of it with
   * `whole`); returns true when the apply is done.
   */
  private applySlice(now: number, whole: boolean): boolean {
    const a = this.applying as Applying;
    const d = this.domain;
    const st = a.stage;
    const r = a.end;
    const pages = st.pages;
    while (a.phase === "pages") {
      if (!whole && this.turnSpent()) return false;
      const stop = whole ? pages.count : Math.min(pages.count, a.next + 256);
      for (let s = a.next; s < stop; s++)
        d.memory.writePage(pages.index(s), pages.bufferOf(s), pages.offsetOf(s));
      this.turnUnits -= stop - a.next;
      a.next = stop;
      if (stop === pages.count) a.phase = "rest";
    }
    if (a.phase === "rest") {
      const disk = st.disk;
      for (let s = 0; s < disk.count; s++)
        d.disk.writeBlock(disk.index(s), disk.bufferOf(s), disk.offsetOf(s));
      d.loadVcpu(st.vcpu as Buffer);
      d.loadDevice(st.device as Buffer);
      // Why here: the checkpoint is whole in the image now, and only now is it the committed epoch.
      this.committed = r.epoch;
      this.committedGeneration = r.generation;
      if ((r.flags & CHECKPOINT_FLAG.sync) !== 0) this.rewindBase = undefined;
      if (r.generation > this.generation) this.generation = r.generation;
      // A full sync wrote (or found zero) every block: the ones it wrote are all the store needs.
      // A rewind's image kept blocks the store never held: all of them go.
      if (a.full)
        a.written =
          this.syncMode === "rewind"
            ? Uint32Array.from({ length: d.disk.blocks }, (_, i) => i)
            : d.disk.log.drain(undefined, false);
      d.resetLogs();
      a.phase = "digest";
    }
    const hasDigest = (r.flags & CHECKPOINT_FLAG.hasDigest) !== 0;
    if (this.config.verify || hasDigest) {
      // Hash what the apply wrote a slice at a time; the digest itself is then cheap.
      while (d.digestPending > 0) {
        if (!whole && this.turnSpent()) return false;
        const before = d.digestPending;
        if (whole) d.digestStep(Number.POSITIVE_INFINITY);
        else d.digestStep(4096, this.hr, Math.max(0.1, this.turnEnds - this.hr()));
        this.turnUnits -= before - d.digestPending;
      }
      a.digest = d.digest();
    }
    this.applying = undefined;
    this.spare.push(st);
    this.applied(a, now);
    return true;
  }

  /** The checkpoint in `a` is in the image: check its digest, make it durable, then ack it. */
  private applied(a: Applying, now: number): void {
    const c = a.conn;
    const r = a.end;
    const st = a.stage;
    const d = this.domain;
    const digest = a.digest;
    const hasDigest = (r.flags & CHECKPOINT_FLAG.hasDigest) !== 0;
    if (hasDigest && digest !== Buffer.from(r.digest).toString("hex")) {
      // Never happens unless there is a bug: the image no longer matches the primary's.
      this.imageValid = false;
      if (c === this.links.active) {
        c.send({
          type: "nack",
          epoch: r.epoch,
          reason: NACK_REASON.digestMismatch,
          message: "digest mismatch after apply",
        });
        this.lost(`digest mismatch at epoch ${r.epoch}`, now, undefined);
      }
      return;
    }
    const sync = (r.flags & CHECKPOINT_FLAG.sync) !== 0;
    if (sync && this.config.colo) this.awaitColoStart = true;
    if (this.coloEpoch !== undefined && r.epoch >= this.coloEpoch) {
      // The guest resumes from the primary's state, in the next epoch; after a FINAL checkpoint
      // (a switchover, a planned stop) it waits: it runs again only if this backup activates.
      this.coloEpoch = r.epoch + 1;
      this.coloOut = 0;
      this.coloHooks?.resume(r.epoch, (r.flags & CHECKPOINT_FLAG.final) === 0);
    }
    // After a full sync the whole disk is new; otherwise just this epoch's writes.
    const blockList: ArrayLike<number> = a.full
      ? (a.written ?? new Uint32Array(0))
      : st.disk.indexes().slice();
    this.imageValid = true;
    if (sync) {
      this.stale = undefined;
      this.staleByStallUntil = undefined;
      this.emit({
        type: "sync.completed",
        epoch: r.epoch,
        mode: this.syncMode ?? "full",
        durationMs: now - this.syncStartedAt,
      });
      this.syncMode = undefined;
    }
    this.imageGeneration = this.generation;
    this.setState("standby", sync ? `synced at epoch ${r.epoch}` : this._lastChange);
    const applyMs = this.hr() - a.t0;
    this.emit({
      type: "checkpoint.applied",
      epoch: r.epoch,
      pages: st.pages.count,
      diskWrites: st.disk.count,
      applyMs,
      ...(this.config.verify && digest ? { digest } : {}),
    });
    const entry: PendingAck = {
      conn: c,
      epoch: r.epoch,
      generation: this.generation,
      final: (r.flags & CHECKPOINT_FLAG.final) !== 0,
      outcome: undefined,
    };
    this.pendingAcks.push(entry);
    try {
      this.store.commit(
        entry.epoch,
        entry.generation,
        blockList,
        (b) => d.disk.view(b),
        a.full,
        (err) => {
          entry.outcome = err ?? "stored";
          this.sendAcks();
        },
      );
    } catch (e) {
      entry.outcome = e instanceof Error ? e : new Error(String(e));
      this.sendAcks();
    }
  }

  /**
   * Acks leave in epoch order, each once its epoch is durable. A failed commit
   * is refused with a NACK, and nothing after it on that link is acknowledged:
   * the store would have a hole.
   */
  private sendAcks(): void {
    while (this.pendingAcks.length > 0) {
      const head = this.pendingAcks[0] as PendingAck;
      if (head.outcome === undefined) return;
      this.pendingAcks.shift();
      const c = head.conn;
      if (this.links.active !== c || c.phase === "closed") continue;
      if (head.outcome !== "stored") {
        c.send({
          type: "nack",
          epoch: head.epoch,
          reason: NACK_REASON.applyFailed,
          message: `store: ${head.outcome.message}`.slice(0, 1000),
        });
        this.pendingAcks = this.pendingAcks.filter((a) => a.conn !== c);
        continue;
      }
      // After the final epoch's ACK the primary releases its output, stops its domain and says
      // GOODBYE SWITCHOVER; this backup activates only then (`lost`), never while both release.
      c.send({ type: "ack", epoch: head.epoch, generation: head.generation });
    }
  }

  // ---- timers ----

  /**
   * Heartbeats and the activation timers. `judge`: false right after the
   * node's own stall, until it has read what arrived meanwhile: no timeout is
   * acted on then (src/node/node.ts).
   */
  poll(now: number, judge = true): void {
    if (this._state === "activated" || this._state === "stopped") return;
    this.newTurn();
    this.work(now);
    if (!this.applying && (this.coloEpoch === undefined || now >= this.coloDigestAt)) {
      this.keepDigest();
      if (this.coloEpoch !== undefined) this.coloDigestAt = now + COLO_DIGEST_PERIOD_MS;
    }
    if (judge) this.links.expireHandshakes(now);
    const c = this.links.active;
    if (c) {
      // Records that arrived and still wait their turn are signs of life: work them off first.
      if (judge && this.idle && c.heartbeat.expired(now)) {
        this.coloEnd();
        this.discardStaging("heartbeat timeout");
        this.emit({
          type: "peer.lost",
          reason: "heartbeat timeout: the primary stopped answering",
          planned: false,
        });
        if (this.imageValid && !this.stale) {
          // The link is still ours: activate() sends the FENCED claim on it before closing it.
          this.primaryGone("heartbeat_timeout");
          return;
        }
        this.links.active = undefined;
        c.abort("heartbeat timeout");
        const why = this.stale ?? "no complete image to resume from";
        this.emit({ type: "failover.impossible", reason: why });
        this.setState("waiting", `primary lost: ${why}`);
        return;
      }
      const state =
        this._state === "standby"
          ? PEER_STATE.standby
          : this._state === "syncing"
            ? PEER_STATE.syncing
            : PEER_STATE.waiting;
      this.links.pingIfDue(now, state, this.committed, this.generation);
      return;
    }
    if (judge && this.graceUntil !== undefined && now >= this.graceUntil) {
      this.graceUntil = undefined;
      if (this.imageValid && !this.stale) this.primaryGone("peer_lost");
    }
  }

  /**
   * The primary is lost: activate now, or (with `deferActivation`) suspect it
   * and let the node activate once it holds the lease. Why defer: with a
   * lease the primary may be alive and renewing on the other side of a
   * partition; only the lease service can say it is gone.
   */
  private primaryGone(reason: FailoverReason): void {
    if (!this.config.deferActivation) {
      this.activate(reason);
      return;
    }
    const c = this.links.active;
    this.links.active = undefined;
    c?.abort(`primary lost (${reason})`);
    this.graceUntil = undefined;
    this.suspected = reason;
    this.setState("waiting", `primary lost (${reason}); activating once the lease is ours`);
  }

  /**
   * With a lease: this backup suspects its primary now (a manual failover).
   * Refused like `activate` when the image is missing or stale.
   */
  suspect(reason: FailoverReason): void {
    this.settleImage();
    if (!this.imageValid)
      throw new RemusError("REMUSD_ERR_WRONG_ROLE", "cannot activate: the backup has no complete image yet");
    if (this.stale)
      throw new RemusError("REMUSD_ERR_WRONG_ROLE", `cannot activate: the image is stale (${this.stale})`);
    this.primaryGone(reason);
  }

  /** The lease service says the lineage moved past this image (generation `current`): wait for a resync. */
  lineageMoved(current: number): void {
    this.suspected = undefined;
    this.stale = `the primary went on without this backup (lineage at generation ${current})`;
    this.emit({ type: "failover.impossible", reason: this.stale });
    this.setState("waiting", `image stale: ${this.stale}`);
  }

  /**
   * The node was stalled for `gap` ms up to `now`; `ms` of it do not count as
   * the primary's silence. A stall about as long as the heartbeat timeout
   * makes the image suspect (see the header).
   */
  stalled(ms: number, now: number, gap: number): void {
    this.links.stalled(ms, now);
    if (this.graceUntil !== undefined) this.graceUntil += ms;
    const hb = this.config.heartbeat;
    // With a lease the service says whether the primary went on past this image (a campaign
    // from the image's generation fails once it has): no suspicion is needed.
    if (this.config.deferActivation) return;
    if (gap >= hb.intervalMs * (hb.misses - 1) && this.imageValid && !this.stale) {
      this.stale = `this backup was stalled for ${Math.round(gap)} ms: the primary may have gone on without it`;
      this.staleByStallUntil = now;
    }
  }

  /** Whether an authenticated primary is connected and was heard from within two heartbeat intervals. */
  primaryLive(now: number): boolean {
    const c = this.links.active;
    return !!c?.established && now - c.heartbeat.lastHeardAt <= 2 * this.config.heartbeat.intervalMs;
  }

  /** New heartbeat settings, for new connections and the live one at once (PATCH /v1/config). */
  setHeartbeat(hb: HeartbeatConfig): void {
    this.config.heartbeat = hb;
    this.links.setHeartbeat(hb);
  }

  /** Asks the primary for a planned switchover (POST /v1/failover {"planned": true}). */
  requestSwitchover(): void {
    const c = this.links.active;
    if (!c || this._state !== "standby") {
      throw new RemusError(
        "REMUSD_ERR_WRONG_ROLE",
        `a planned switchover needs a connected primary and a synced backup (state ${this._state})`,
      );
    }
    this.switchoverRequested = true;
    c.send({ type: "switchoverRequest", generation: this.generation });
  }

  /**
   * Resumes the domain from the last applied epoch under a new generation.
   * Any partial checkpoint is discarded; the old primary is told it is fenced.
   */
  activate(reason: FailoverReason, leaseGeneration = 0): Activation {
    if (this.activation) return this.activation;
    // A checkpoint whose END checked is applied whole before anything reads the image.
    this.settleImage();
    if (this.activation) return this.activation;
    if (!this.imageValid) {
      throw new RemusError(
        "REMUSD_ERR_WRONG_ROLE",
        "cannot activate: the backup has no complete image yet (first sync not finished)",
      );
    }
    if (this.stale && reason !== "planned") {
      throw new RemusError("REMUSD_ERR_WRONG_ROLE", `cannot activate: the image is stale (${this.stale})`);
    }
    this.discardStaging(`activation (${reason})`);
    this.coloEnd();
    // With a lease, the generation is the one the lease service handed out with it.
    const generation = Math.max(this.generation + 1, leaseGeneration);
    this.suspected = undefined;
    const c = this.links.active;
    this.links.active = undefined;
    // Why first: the old primary must learn, on the link it trusts, that it is superseded.
    c?.goodbye(GOODBYE_REASON.fenced, `the backup activated as primary of generation ${generation}`, {
      generation,
      epoch: this.committed,
    });
    this.links.closePending(
      GOODBYE_REASON.fenced,
      `the backup activated as primary of generation ${generation}`,
      { generation, epoch: this.committed },
    );
    this.generation = generation;
    this.store.saveGeneration(generation);
    this.domain.resetLogs();
    const digest = this.domain.digest();
    this.activation = {
      epoch: this.committed,
      fromGeneration: this.committedGeneration,
      digest,
      generation,
      reason,
    };
    this.emit({ type: "failover.activated", epoch: this.committed, digest, reason, generation });
    this.setState("activated", `activated (${reason}) from epoch ${this.committed}`);
    return this.activation;
  }

  /** Planned stop of the backup: says goodbye so the primary does not take it for a failure. */
  stop(): void {
    this.coloEnd();
    const c = this.links.active;
    this.links.active = undefined;
    c?.goodbye(GOODBYE_REASON.shutdown, "the backup is shutting down (planned stop)");
    this.setState("stopped", "shutdown");
  }
}
