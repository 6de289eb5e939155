/**
 * The primary's replication state machine (sans-IO: no sockets, no timers;
 * the host calls `poll(now)` and feeds it frames).
 *
 * Epoch protocol. Epoch N runs speculatively (the node around the machine
 * runs the guest while `isRunning`). At its end the domain is paused
 * (the guest simply does not tick): the guest's pending output is handed to the
 * netbuf tagged N (`hooks.beforeCapture`), the disk blocks written since the
 * last flush are copied, the dirty pages are captured into staging, the vCPU
 * and device blocks are copied, and (with `verify`) the digest is taken. The
 * domain resumes at once in epoch N+1 while the checkpoint streams out:
 * PAGE_BATCH*, DISK_WRITES*, VCPU, DEVICE, CHECKPOINT_END. When the backup
 * acknowledges N, `hooks.onCommitted(N)` releases N's output.
 *
 * Invariants:
 *  - Output commit: nothing produced in epoch N leaves before N is acked while
 *    protected (the netbuf enforces it; this machine tells it when).
 *  - Bounded memory: at most `maxInFlight` checkpoints are captured and not yet
 *    acked; when the backup is slow the epoch stretches instead.
 *  - Nothing is lost on a broken link: the pages and blocks of every
 *    unacknowledged checkpoint are marked dirty again, so the next sync (full,
 *    or incremental against the backup's committed image) carries them.
 *  - Epoch numbers only grow, across sessions too.
 *
 * What becomes of the guest's output (`output`), decided here and applied by
 * the node (src/node/node.ts), is the safety rule without a lease: output of
 * an epoch no backup acknowledged may leave only while no other node can
 * activate from an image that lacks it.
 *  - `hold`: protected, or a backup that may activate exists (it announced a
 *    valid image, or it closed the link itself or was closed with a reason
 *    while alive: it activates after its grace unless this primary returns).
 *    Output waits for an ACK; the primary redials and resyncs.
 *  - `release`: no backup can activate: none ever synced, the backup said a
 *    planned goodbye, its connection ended without a GOODBYE (its process
 *    died), it reconnected without a valid image, or it went silent for the
 *    heartbeat timeout (by this node's honest clock: the node's own stalls do
 *    not count, src/node/node.ts) and was told CONTINUING, so that if it was
 *    only stalled it wakes up knowing its image is stale and does not
 *    activate. A network partition with both sides up is not covered: that
 *    is the lease's job.
 *    After its own stall of about the heartbeat timeout the primary doubts:
 *    its backup may have activated meanwhile (and the claim saying so may
 *    have been lost with the link), so until the backup acknowledges an epoch
 *    captured after the stall nothing leaves at all, not even acknowledged
 *    output (`doubting`; the node keeps its NIC suspended), and nothing counts
 *    as proof that the backup is gone (a timeout says RESYNC, not CONTINUING).
 *  - `discard`: fenced (a proven claim, fencing.ts) or stopped: the held
 *    output is dropped unsent and the NIC leaves the LAN.
 *
 * The streaming itself (the sync pre-copy and each checkpoint's records) is
 * `StreamJob`s from streaming.ts. Page batches are encoded by the page
 * workers (a thread pool, or this thread) and sent in order as they finish;
 * `pump` stops each turn at the link's high-water mark and at a budget of
 * time and pages, so no turn encodes or submits a whole domain at once.
 *
 * The sync is a live pre-copy (as in live migration): every page and block
 * is sent from live memory while the guest runs, then rounds of the pages
 * written meanwhile, until what is left is small or stops shrinking; the
 * sync checkpoint then captures the rest like any epoch. Pages a round
 * drained are marked dirty again if the sync fails.
 *
 * COLO mode (`config.colo`, SPEC §7.6). The sync is Remus's; when the sync
 * checkpoint s is captured, a COLO session begins with epoch s+1: right after
 * CHECKPOINT_END(s) goes out, COLO_START(s+1), then every LAN frame the node
 * delivers to the guest is mirrored (`mirror`, COLO_INPUT) and the
 * secondary's output comes back (`hooks.onColoOutput`) for the node's
 * comparator. Epochs no longer end on a timer: only when the comparator (or
 * an operator, or a stop) asks (`requestColoCheckpoint`). Then the domain
 * pauses (`coloPaused`: the node neither runs the guest nor delivers input),
 * COLO_CHECKPOINT(e) goes out, and when COLO_DIRTY(e) arrives the pages and
 * blocks the secondary wrote are marked dirty here too and checkpoint e is
 * captured as in Remus: its dirty set is both sides'. Why the pause lasts a
 * round trip: the checkpoint must carry the secondary's pages with their
 * content at the primary's pause. Losing the link ends the session
 * (`hooks.onColoEnd`, before the state change that decides the held output).
 *
 * XOR deltas: toward a backup whose HELLO set DELTA, pages are sent against
 * the version this sync last sent of them (one `SentPageCache`, SPEC §6.4.1),
 * which is forgotten at every SYNC_BEGIN, when the link ends (a NACK ends it
 * too) and when compression is switched.
 */
import { type Capturer, CopyCapturer, type EpochCapture } from "../domain/capture.js";
import { BLOCK_SIZE } from "../domain/disk.js";
import type { Domain } from "../domain/domain.js";
import { DirtyLog, PAGE_SIZE } from "../domain/memory.js";
import { vcpuClockNs } from "../domain/vcpu.js";
import { RemusError } from "../errors.js";
import { InlineWorkers } from "../pipeline/inline.js";
import type { PageWorkers } from "../pipeline/pool.js";
import type { Entropy } from "../prng.js";
import { fromBitmap } from "../protocol/colo.js";
import {
  CHECKPOINT_FLAG,
  COLO_REASON,
  type ColoReasonCode,
  GOODBYE_REASON,
  HELLO_FLAG,
  MAX_BATCH_ENTRIES,
  PEER_STATE,
  SYNC_FLAG,
} from "../protocol/constants.js";
import { SentPageCache } from "../protocol/delta.js";
import type { ColoEdgeEntry, Hello, ReplicationRecord, Rewind } from "../protocol/records.js";
import { type Conn, Links, type LocalIdentity, localIdentity, type Port } from "./conn.js";
import type { EventSink, PrimaryStateName, SyncMode } from "./events.js";
import { refuteClaim } from "./fencing.js";
import { DEFAULT_HEARTBEAT, type HeartbeatConfig } from "./heartbeat.js";
import { type Lineage, rewindRefusal, rewindSet } from "./rewind.js";
import {
  allBlocks,
  allPages,
  type Budget,
  type Encoding,
  INLINE_PAGES,
  type Part,
  pageList,
  type Sent,
  StreamError,
  StreamJob,
  sendDisk,
} from "./streaming.js";

export interface PrimaryConfig {
  /** Length of an epoch in ms (the checkpoint interval). */
  intervalMs: number;
  /** Checkpoints captured and not yet acknowledged, at most. */
  maxInFlight: number;
  /** LZ4-compress pages on the wire. */
  compress: boolean;
  /** Put the domain digest in every CHECKPOINT_END. */
  verify: boolean;
  heartbeat: HeartbeatConfig;
  /** Pages per PAGE_BATCH (1..512). */
  batchPages: number;
  /** Stop pumping when the link has this many bytes queued. */
  highWaterBytes: number;
  /**
   * Adaptive epochs: captured and unacknowledged checkpoints hold at most
   * this many bytes of pages and blocks (one checkpoint always may); past
   * it the open epoch stretches until acks free room.
   */
  maxInFlightBytes: number;
  /** Work per turn on the send path: `turnMs` of the high-resolution clock, `turnUnits` pages and blocks. */
  turnMs: number;
  turnUnits: number;
  /** Sync rounds stop once fewer pages than this were written during the last one. */
  syncRemainderPages: number;
  /** Sync rounds after the first pass, at most. */
  syncMaxRounds: number;
  /** Pages of XOR bases the sender keeps (the sent-page cache; 0: no deltas). */
  deltaCachePages: number;
  /** Parts of at most this many pages are encoded on this thread, not by the page workers. */
  inlinePages: number;
  /** COLO mode (see the header): after the sync, a lock-stepped secondary and checkpoints on request. */
  colo: boolean;
  /**
   * With a lease (src/node/node.ts): a backup that may hold an image is never
   * taken for gone on this node's word alone. Where the rules above would
   * release, the primary keeps holding and asks (`continueWanted`) to move
   * the lineage on in the lease service first (`continueAlone`).
   */
  leaseGuarded?: boolean;
}

export const DEFAULT_PRIMARY_CONFIG: PrimaryConfig = {
  intervalMs: 25,
  maxInFlight: 1,
  compress: true,
  verify: false,
  heartbeat: DEFAULT_HEARTBEAT,
  batchPages: MAX_BATCH_ENTRIES,
  highWaterBytes: 8 * 1024 * 1024,
  maxInFlightBytes: 256 * 1024 * 1024,
  turnMs: 3,
  turnUnits: 16_384,
  syncRemainderPages: 1024,
  syncMaxRounds: 8,
  deltaCachePages: 16_384,
  inlinePages: INLINE_PAGES,
  colo: false,
};

export interface PrimaryHooks {
  /** Paused at the end of epoch `epoch`, before capture: hand the guest's pending output to the netbuf. */
  beforeCapture?(epoch: number): void;
  /** Epoch `epoch` is acknowledged by the backup: its output may leave. */
  onCommitted?(epoch: number): void;
  /** The protection state changed; `output` (see the header) may have changed with it. */
  onState?(state: PrimaryStateName, reason: string): void;
  /** This primary refused or fenced a stale primary: announce the guest on the LAN again. */
  onStaleRefused?(): void;
  /** COLO: a frame the secondary's guest sent while it ran `epoch` (for the comparator). */
  onColoOutput?(epoch: number, frame: Buffer): void;
  /** COLO: the session ended (the secondary's link is gone): what the comparator holds must be settled. */
  onColoEnd?(): void;
  /** COLO: the node's LAN edge renumbering (a secondary that took over), for COLO_START. */
  coloEdge?(): ColoEdgeEntry[];
}

/** A COLO session on the active link (see the header). */
interface ColoSession {
  /** The first COLO epoch (the sync's + 1). */
  readonly start: number;
  /** COLO_START went out (right after the sync's END). */
  started: boolean;
  /** Inputs of the first epoch delivered before COLO_START could go out. */
  queued: Buffer[];
  /** COLO_INPUT records sent in the running epoch. */
  inputs: number;
  /** A checkpoint asked for and not yet begun. */
  reason: ColoReasonCode | undefined;
  /** The epoch whose COLO_CHECKPOINT went out and whose COLO_DIRTY has not arrived yet. */
  awaiting: number | undefined;
}

/** Inputs queued for a COLO session before its COLO_START, at most (beyond: dropped, TCP resends). */
const COLO_QUEUE_MAX = 4096;

/** What becomes of the guest's output now (see the header). */
export type OutputMode = "hold" | "release" | "discard";

export interface PrimaryOptions {
  readonly domain: Domain;
  readonly key: Uint8Array;
  readonly nodeId: Uint8Array;
  readonly software: string;
  readonly entropy: Entropy;
  readonly generation: number;
  readonly config: PrimaryConfig;
  readonly emit: EventSink;
  readonly hooks?: PrimaryHooks;
  readonly capturer?: Capturer;
  /** Where page batches are encoded (default: this thread). */
  readonly workers?: PageWorkers;
  /** First epoch number (an activated backup continues after the epoch it resumed). */
  readonly startEpoch?: number;
  /** A monotonic high-resolution clock in ms for pause measurements (defaults to performance.now). */
  readonly hrClock?: () => number;
  /**
   * The domain's configuration besides geometry and interval (sent in DOMAIN_CONFIG before
   * every sync; default: the NIC's MAC and IP from the device block, workload "idle").
   */
  readonly domainSettings?: () => DomainSettings;
  /**
   * The generation and epoch this primary activated from (an activated
   * backup; its domain tracks what it wrote since): it may then rewind a
   * former primary of that lineage (rewind.ts). Undefined for a booted domain.
   */
  readonly lineage?: Lineage;
}

/** What DOMAIN_CONFIG carries that the machine does not know itself. */
export interface DomainSettings {
  readonly guestMac: Uint8Array;
  readonly guestIp: number;
  readonly workload: string;
}

/** A captured checkpoint not yet acknowledged. */
interface InFlight {
  readonly epoch: number;
  readonly generation: number;
  readonly pausedAt: number;
  readonly pauseMs: number;
  readonly capture: EpochCapture;
  readonly pfns: Uint32Array;
  /** Blocks sent during the epoch before the pause (re-marked if the checkpoint is lost). */
  readonly earlyBlocks: number[];
  readonly blocks: Uint32Array;
  readonly blockData: Buffer;
  readonly vcpu: Buffer;
  readonly device: Buffer;
  readonly digest: Buffer | undefined;
  readonly flags: number;
  wireBytes: number;
  rawBytes: number;
}

/** Streaming work: the sync's pre-copy, or one checkpoint. */
type Job =
  | { readonly kind: "sync"; readonly stream: StreamJob }
  | { readonly kind: "checkpoint"; readonly stream: StreamJob; readonly flight: InFlight };

/** Commits remembered for the effective checkpoint rate. */
const RATE_WINDOW = 32;

export interface PrimaryStatus {
  readonly state: PrimaryStateName;
  readonly generation: number;
  readonly epoch: number;
  readonly committed: number;
  readonly inFlight: number;
  readonly peerConnected: boolean;
  readonly peerLastSeen: number | undefined;
  readonly heartbeatRttMs: number | undefined;
  readonly running: boolean;
  readonly lastChange: string;
  readonly diskPendingBlocks: number;
  readonly lastEndSent: number;
  /** Bytes of pages and blocks captured and not yet acknowledged. */
  readonly inFlightBytes: number;
  /** Checkpoints committed per second lately (the effective rate, below 1000/interval when epochs stretch). */
  readonly checkpointRate: number | undefined;
}

export class PrimaryMachine {
  readonly domain: Domain;
  config: PrimaryConfig;
  private readonly emit: EventSink;
  private readonly hooks: PrimaryHooks;
  private readonly capturer: Capturer;
  private readonly hr: () => number;
  private readonly identity: LocalIdentity;
  private readonly workers: PageWorkers;
  private readonly inline = new InlineWorkers();
  private readonly domainSettings: () => DomainSettings;
  /** The versions sent of pages this sync (XOR bases), while the backup takes DELTA. */
  private cache: SentPageCache | undefined;
  private deltaOn = false;
  /** Pages a sync round drained from the dirty log (marked dirty again if the sync fails). */
  private syncDrained: DirtyLog | undefined;
  /** Jobs of a lost link whose tickets still run, with the captures they read. */
  private draining: { stream: StreamJob; capture: EpochCapture }[] = [];
  private inflightBytes = 0;
  private readonly commitTimes: number[] = [];

  private _state: PrimaryStateName = "unprotected";
  private _lastChange = "started";
  generation: number;
  /** The open epoch: output produced now belongs to it. */
  epoch: number;
  committed: number;
  private lastEndSent: number;
  private running = true;

  private readonly links: Links;
  private inflight: InFlight[] = [];
  private jobs: Job[] = [];
  private openEpochBlocks: number[] = [];
  private epochStartedAt: number;
  private forceCheckpoint = false;
  private syncEpoch: number | undefined;
  private syncMode: SyncMode = "full";
  /** A backup that offered a rewind (HELLO REWIND) whose REWIND record has not arrived yet. */
  private rewindAwaited: { readonly conn: Conn; readonly peer: Hello } | undefined;
  private readonly lineage: Lineage | undefined;
  private syncStartedAt = 0;
  private syncStreamDone = false;
  private lastBackupNode: string | undefined;
  /** The epoch this primary's generation began from (0: the domain was booted here). */
  readonly base: number;
  /** Some backup may activate from an image that lacks output not yet acknowledged (see the header). */
  private backupMayActivate = false;
  /** The generation of the proven claim that fenced this primary. */
  supersededBy: number | undefined;
  /**
   * After this node's own stall of about the heartbeat timeout: the backup may
   * have activated meanwhile, so nothing counts as proof that it is gone
   * until it acknowledges this epoch (or a later one).
   */
  private doubtUntilAck: number | undefined;
  /** With a lease: the rules without one would release now; the node moves the lineage on first. */
  private wantContinue = false;
  private stopKind: "switchover" | "shutdown" | undefined;
  private finalEpoch: number | undefined;
  /** The COLO session on the active link, if any. */
  private colo: ColoSession | undefined;
  /** COLO checkpoints begun, by reason code. */
  readonly coloCheckpoints = new Map<ColoReasonCode, number>();
  /** Interval/compression changes waiting for the open epoch to end (see `reconfigure`). */
  private nextConfig: Partial<Pick<PrimaryConfig, "intervalMs" | "compress">> | undefined;

  constructor(opts: PrimaryOptions) {
    this.domain = opts.domain;
    this.config = { ...opts.config };
    this.emit = opts.emit;
    this.hooks = opts.hooks ?? {};
    this.capturer = opts.capturer ?? new CopyCapturer(opts.domain.memory);
    this.workers = opts.workers ?? this.inline;
    this.hr = opts.hrClock ?? (() => performance.now());
    this.domainSettings =
      opts.domainSettings ??
      (() => ({
        guestMac: opts.domain.device.mac,
        guestIp: opts.domain.device.get("ip"),
        workload: "idle",
      }));
    this.generation = opts.generation;
    this.lineage = opts.lineage;
    this.epoch = opts.startEpoch ?? 1;
    this.committed = this.epoch - 1;
    this.base = this.epoch - 1;
    this.lastEndSent = this.committed;
    this.epochStartedAt = 0;
    this.identity = localIdentity("primary", opts, {
      generation: () => this.generation,
      committedEpoch: () => this.committed,
      helloFlags: () => 0,
      claimEpoch: () => this.base,
      colo: this.config.colo,
    });
    this.links = new Links(this.identity, () => this.config.heartbeat, this.emit);
  }

  get state(): PrimaryStateName {
    return this._state;
  }

  /** Whether the domain runs (false once stopped for a switchover/shutdown or fenced). */
  get isRunning(): boolean {
    return this.running;
  }

  /** Whether the host should keep (re)connecting to a backup. */
  get wantsPeer(): boolean {
    return (
      this._state !== "fenced" &&
      this._state !== "stopped" &&
      this.links.active === undefined &&
      this.links.pending.size === 0
    );
  }

  get connected(): boolean {
    return this.links.active !== undefined;
  }

  /** After this node's own long stall, until the backup acknowledges a later epoch: nothing may leave. */
  get doubting(): boolean {
    return this.doubtUntilAck !== undefined && this.running;
  }

  /** What becomes of the guest's output now (see the header). */
  get output(): OutputMode {
    if (!this.running) return "discard";
    if (this._state === "protected" || this.backupMayActivate) return "hold";
    return "release";
  }

  /** With `leaseGuarded`: the backup is gone by the rules without a lease; output waits for `continueAlone`. */
  get continueWanted(): boolean {
    return this.wantContinue && this.running && this.backupMayActivate;
  }

  /**
   * With `leaseGuarded`: the lease service moved the lineage on to
   * `generation` (no backup image of an older one can win the lease any more),
   * so this primary goes on without its backup: output is released. A link
   * that opened meanwhile is dropped so that its backup resyncs under the new
   * generation.
   */
  continueAlone(generation: number): void {
    if (!this.running) return;
    this.wantContinue = false;
    this.generation = Math.max(this.generation, generation);
    this.doubtUntilAck = undefined;
    const c = this.links.active;
    if (c) {
      this.dropConn(c, `the primary went on alone as generation ${this.generation}`, {
        planned: false,
        backupGone: false,
        say: [GOODBYE_REASON.resync, `the primary went on as generation ${this.generation}: resync`],
      });
    }
    this.backupMayActivate = false;
    this._lastChange = `the lineage moved on to generation ${this.generation}: output released`;
    this.hooks.onState?.(this._state, this._lastChange);
  }

  /**
   * The lease was lost (not renewed before its deadline, or refused): the
   * domain stops at once and output is discarded; the backup, if connected,
   * is told to resync (it may take the lease and activate).
   */
  leaseLost(reason: string): void {
    if (!this.running) return;
    this.running = false;
    const c = this.links.active;
    if (c) {
      this.dropConn(c, "lease lost", {
        planned: false,
        backupGone: false,
        say: [GOODBYE_REASON.resync, `the primary lost its lease: ${reason}`],
      });
    }
    this.links.closePending(GOODBYE_REASON.resync, `the primary lost its lease: ${reason}`);
    this.emit({ type: "fenced", reason: `lease lost: ${reason}`, peerGeneration: this.generation });
    this.setState("fenced", `fenced: lease lost (${reason})`);
  }

  /** Whether guest output must be held until commit. */
  get outputMustWait(): boolean {
    return this.output === "hold";
  }

  /** COLO: a session runs (or begins at the sync's END): the guest's output goes to the comparator. */
  get coloRunning(): boolean {
    return this.colo !== undefined;
  }

  /** COLO: the domain is paused until the secondary's dirty set arrives (no guest ticks, no input). */
  get coloPaused(): boolean {
    return this.colo?.awaiting !== undefined;
  }

  /**
   * COLO: mirrors a LAN frame the node is about to deliver to the guest in
   * the open epoch (sent before it is delivered, SPEC §6.13).
   */
  mirror(frame: Buffer): void {
    const s = this.colo;
    const c = this.links.active;
    if (!s || !c) return;
    if (s.started) {
      c.send({ type: "coloInput", epoch: this.epoch, index: s.inputs++, frame });
    } else if (s.queued.length < COLO_QUEUE_MAX) s.queued.push(Buffer.from(frame));
  }

  /** COLO: asks for a checkpoint (the comparator's reason); the first reason asked for is the one sent. */
  requestColoCheckpoint(reason: ColoReasonCode): void {
    const s = this.colo;
    if (s && s.reason === undefined && s.awaiting === undefined) s.reason = reason;
  }

  status(): PrimaryStatus {
    return {
      state: this._state,
      generation: this.generation,
      epoch: this.epoch,
      committed: this.committed,
      inFlight: this.inflight.length,
      peerConnected: this.links.active?.established ?? false,
      peerLastSeen: this.links.active?.heartbeat.lastHeardAt,
      heartbeatRttMs: this.links.active?.heartbeat.lastRttMs,
      running: this.running,
      lastChange: this._lastChange,
      diskPendingBlocks: this.domain.disk.log.count,
      lastEndSent: this.lastEndSent,
      inFlightBytes: this.inflightBytes,
      checkpointRate: this.checkpointRate(),
    };
  }

  /** Commits per second over the recent ones (at most the last RATE_WINDOW, within 10 s of the last). */
  private checkpointRate(): number | undefined {
    const t = this.commitTimes;
    if (t.length < 2) return undefined;
    const last = t[t.length - 1] as number;
    let first = 0;
    while (first < t.length - 2 && last - (t[first] as number) > 10_000) first++;
    const span = last - (t[first] as number);
    return span > 0 ? ((t.length - 1 - first) * 1000) / span : undefined;
  }

  private setState(s: PrimaryStateName, reason: string): void {
    if (s === this._state) return;
    const from = this._state;
    this._state = s;
    this._lastChange = reason;
    if (s !== "protected" && this.nextConfig) {
      // No epoch is timed any more: changes waiting for the epoch's end apply now.
      this.applyConfig(this.nextConfig);
      this.nextConfig = undefined;
    }
    this.emit({ type: "state.changed", from, to: s, reason });
    this.hooks.onState?.(s, reason);
  }

  /**
   * Changes the checkpoint interval or compression (PATCH /v1/config). While
   * protected they take effect when the open epoch ends, so an epoch keeps the
   * length it started with; otherwise no epoch is timed and they apply at once.
   */
  reconfigure(change: Partial<Pick<PrimaryConfig, "intervalMs" | "compress">>): void {
    if (this._state === "protected") this.nextConfig = { ...this.nextConfig, ...change };
    else this.applyConfig(change);
  }

  private applyConfig(change: Partial<Pick<PrimaryConfig, "intervalMs" | "compress">>): void {
    // Why: pages sent uncompressed are not recorded as bases, so the versions remembered go stale.
    if (change.compress !== undefined && change.compress !== this.config.compress) this.cache?.clear();
    Object.assign(this.config, change);
  }

  /** The interval/compression changes not yet in effect, if any. */
  get pendingConfig(): Partial<Pick<PrimaryConfig, "intervalMs" | "compress">> | undefined {
    return this.nextConfig;
  }

  /**
   * The node was stalled for `gap` ms up to `now`; `ms` of it do not count as
   * the backup's silence. A stall about as long as the heartbeat timeout
   * raises doubt (see the header).
   */
  stalled(ms: number, now: number, gap: number): void {
    this.links.stalled(ms, now);
    const hb = this.config.heartbeat;
    if (gap >= hb.intervalMs * (hb.misses - 1) && this.backupMayActivate) this.doubtUntilAck = this.epoch;
  }

  /** New heartbeat settings, for new connections and the live one at once. */
  setHeartbeat(hb: HeartbeatConfig): void {
    this.config.heartbeat = hb;
    this.links.setHeartbeat(hb);
  }

  /** Asks for a checkpoint at the next poll (POST /v1/checkpoint). */
  requestCheckpoint(): void {
    if (this._state !== "protected") {
      throw new RemusError(
        "REMUSD_ERR_WRONG_ROLE",
        `no checkpoint while ${this._state}: there is no synced backup`,
      );
    }
    this.forceCheckpoint = true;
    this.requestColoCheckpoint(COLO_REASON.requested);
  }

  /**
   * Stops the domain after a final checkpoint (switchover: the backup takes over;
   * shutdown: a planned stop). Unprotected, it stops at once.
   */
  requestStop(kind: "switchover" | "shutdown", now: number): void {
    if (this._state === "stopped" || this._state === "fenced") return;
    this.stopKind = kind;
    if (this._state !== "protected" || !this.links.active) {
      this.finish(kind, now);
      return;
    }
    this.forceCheckpoint = true;
    this.requestColoCheckpoint(COLO_REASON.requested);
  }

  private finish(kind: "switchover" | "shutdown", _now: number): void {
    this.running = false;
    const conn = this.links.active;
    if (conn) {
      conn.goodbye(
        kind === "switchover" ? GOODBYE_REASON.switchover : GOODBYE_REASON.shutdown,
        kind === "switchover"
          ? "planned switchover: the backup takes over"
          : "the primary is shutting down (planned stop)",
      );
      this.dropConn(conn, kind === "switchover" ? "switchover complete" : "planned shutdown", {
        planned: true,
        backupGone: false,
      });
    }
    this.setState("stopped", kind === "switchover" ? "planned switchover" : "shutdown");
  }

  // ---- connections ----

  /** A connection to a backup opened (dialled or accepted). */
  attach(port: Port, now: number): void {
    this.links.open(port, now);
  }

  /** A frame arrived on `port`. */
  frame(port: Port, data: Uint8Array, now: number): void {
    const c = this.links.find(port);
    if (!c) return;
    const r = c.receive(data, now);
    switch (r.kind) {
      case "nothing":
      case "discarded":
        return;
      case "established":
        this.links.pending.delete(c);
        this.established(c, r.peer, now);
        return;
      case "refused-stale":
        this.links.pending.delete(c);
        this.emit({
          type: "peer.refused",
          remote: port.remote,
          reason: `refused a stale primary of generation ${r.peer.generation}`,
        });
        this.hooks.onStaleRefused?.();
        return;
      case "closed": {
        this.links.pending.delete(c);
        const g = r.goodbye;
        if (g?.reason === GOODBYE_REASON.fenced) {
          // Why: only a proven claim stops the domain (fencing.ts); r.goodbye is set only after AUTH.
          const why = refuteClaim(g, { generation: this.generation, base: this.base });
          if (why === undefined) {
            this.fence(g.message, g.generation);
            return;
          }
          this.emit({ type: "peer.refused", remote: port.remote, reason: `unproven fencing claim: ${why}` });
          if (c !== this.links.active) return;
        }
        if (c === this.links.active) {
          // A planned stop of the backup (or one that stopped on a configuration conflict): it will
          // not activate. Any other GOODBYE (or our own, after a protocol error): it is alive, may
          // still activate, and expects us back.
          const planned =
            g?.reason === GOODBYE_REASON.shutdown || g?.reason === GOODBYE_REASON.configMismatch;
          this.dropConn(c, r.reason, { planned, backupGone: planned });
        } else {
          this.emit({ type: "peer.refused", remote: port.remote, reason: r.reason });
        }
        return;
      }
      case "record":
        if (c === this.links.active) this.record(c, r.record, now);
        return;
    }
  }

  /** The connection on `port` closed underneath us. */
  detach(port: Port, _now: number, reason = "connection closed"): void {
    const c = this.links.find(port);
    if (!c) return;
    c.phase = "closed";
    if (this.links.pending.delete(c)) return;
    // No GOODBYE: the backup's process died (its kernel closed the socket), so it cannot activate.
    if (c === this.links.active) this.dropConn(c, reason, { planned: false, backupGone: true });
  }

  private fence(reason: string, peerGeneration: number): void {
    this.running = false;
    this.supersededBy = Math.max(this.supersededBy ?? 0, peerGeneration);
    const c = this.links.active;
    // Our own backup (if any) must not activate from the image of a superseded lineage.
    if (c) {
      this.dropConn(c, "fenced", {
        planned: false,
        backupGone: false,
        say: [GOODBYE_REASON.fenced, `this primary was fenced by generation ${peerGeneration}`],
        claim: { generation: peerGeneration, epoch: this.committed },
      });
    }
    this.links.closePending(
      GOODBYE_REASON.fenced,
      `this primary was fenced by generation ${peerGeneration}`,
      {
        generation: peerGeneration,
        epoch: this.committed,
      },
    );
    this.emit({ type: "fenced", reason, peerGeneration });
    this.setState("fenced", `fenced: ${reason}`);
  }

  private established(c: Conn, peer: Hello, now: number): void {
    if (this.links.active || this._state === "stopped" || this._state === "fenced") {
      c.goodbye(GOODBYE_REASON.busy, "this primary already has a backup");
      return;
    }
    this.links.active = c;
    this.wantContinue = false;
    const peerNode = Buffer.from(peer.nodeId).toString("hex");
    const imageValid = (peer.flags & HELLO_FLAG.imageValid) !== 0;
    // Why: the backup we may have left able to activate is this node; without an image it no
    // longer can. Any other node adds to what may activate until its sync is acknowledged.
    this.backupMayActivate =
      peerNode === this.lastBackupNode ? imageValid : this.backupMayActivate || imageValid;
    this.emit({ type: "peer.connected", remote: c.port.remote, peerNode, peerGeneration: peer.generation });
    if ((peer.flags & HELLO_FLAG.rewind) !== 0) {
      // A former primary with its image: what it sends next (REWIND) decides the sync.
      this.rewindAwaited = { conn: c, peer };
      this.lastBackupNode = peerNode;
      return;
    }
    // Why: an incremental resync is safe only onto the same backup's intact image of an epoch
    // this primary produced; every page changed since then is still marked dirty here.
    // COLO: the secondary's guest ran ahead of its committed image, so only a full sync is safe.
    const incremental =
      !this.config.colo &&
      imageValid &&
      peerNode === this.lastBackupNode &&
      peer.generation === this.generation &&
      peer.committedEpoch >= this.committed &&
      peer.committedEpoch <= this.lastEndSent;
    this.lastBackupNode = peerNode;
    this.beginSync(c, peer, now, incremental ? "incremental" : "full");
  }

  /**
   * REWIND from a former primary that offered it: rewind it when its image
   * is of this primary's own history, else sync it in full (rewind.ts).
   */
  private rewindOffered(c: Conn, r: Rewind, now: number): void {
    const w = this.rewindAwaited;
    if (!w || w.conn !== c) return;
    this.rewindAwaited = undefined;
    const since = this.domain.dirtySince();
    // Why COLO refuses: a secondary that took over ran ahead of the epoch it activated from, so
    // pages it wrote before activating differ from that image and are in no dirty-since set.
    const refusal = this.config.colo
      ? "COLO mode: the activated secondary ran ahead of its last checkpoint"
      : rewindRefusal(r, this.lineage, since !== undefined);
    if (refusal !== undefined || since === undefined) {
      this.emit({ type: "rewind.refused", reason: refusal ?? "no dirty-since tracking" });
      this.beginSync(c, w.peer, now, "full");
      return;
    }
    this.beginSync(c, w.peer, now, "rewind", rewindSet(r, since, this.domain));
  }

  /** SYNC_BEGIN and the sync's stream: every page (full), the dirty ones (incremental), or a rewind's set. */
  private beginSync(
    c: Conn,
    peer: Hello,
    now: number,
    mode: SyncMode,
    rewind?: { pages: Uint32Array; blocks: Uint32Array },
  ): void {
    const s = Math.max(this.epoch, this.lastEndSent + 1, peer.committedEpoch + 1);
    this.epoch = s;
    this.syncEpoch = s;
    this.syncMode = mode;
    this.syncStartedAt = now;
    this.epochStartedAt = now;
    // XOR bases describe one sync (SPEC §6.4.1): forget them as SYNC_BEGIN goes out.
    this.deltaOn = (peer.flags & HELLO_FLAG.delta) !== 0 && this.config.deltaCachePages > 0;
    this.cache?.clear();
    // The domain's configuration travels with the stream, so a backup needs no domain settings (§6.16).
    const ds = this.domainSettings();
    c.send({
      type: "domainConfig",
      pages: this.domain.pages,
      diskBlocks: this.domain.disk.blocks,
      // (A simulation may run epochs shorter than the format's 1 ms floor.)
      intervalMs: Math.min(60_000, Math.max(1, Math.round(this.config.intervalMs))),
      guestMac: ds.guestMac,
      guestIp: ds.guestIp,
      workload: ds.workload,
    });
    c.send({
      type: "syncBegin",
      generation: this.generation,
      epoch: s,
      pages: this.domain.pages,
      diskBlocks: this.domain.disk.blocks,
      flags: mode === "incremental" ? SYNC_FLAG.incremental : mode === "rewind" ? SYNC_FLAG.rewind : 0,
    });
    this.syncStreamDone = false;
    const parts: Part[] = [];
    if (rewind) {
      // The set already holds what the logs held (dirtySince); emptied, they collect what the
      // guest writes from now on for the rounds and the sync checkpoint (the dirty-since bitmap keeps it all).
      this.domain.resetLogs();
      this.openEpochBlocks = [];
      const disk = this.domain.disk;
      const blocks = rewind.blocks;
      parts.push(
        { kind: "memory", pages: pageList(rewind.pages) },
        {
          kind: "disk",
          units: {
            count: blocks.length,
            index: (i) => blocks[i] as number,
            data: (i) => disk.view(blocks[i] as number),
          },
        },
      );
    } else if (mode === "full") {
      // Pre-copy: send every page and block from live memory while the guest runs; whatever it
      // writes meanwhile is in the (freshly emptied) dirty logs and goes in a round or the sync checkpoint.
      this.domain.resetLogs();
      this.openEpochBlocks = [];
      parts.push(
        { kind: "memory", pages: allPages(this.domain) },
        { kind: "disk", units: allBlocks(this.domain) },
      );
    }
    parts.push(this.syncRounds());
    this.jobs.push({ kind: "sync", stream: new StreamJob(s, parts) });
    this.emit({
      type: "sync.started",
      epoch: s,
      mode,
      pages: rewind ? rewind.pages.length : this.domain.pages,
    });
    const peerNode = Buffer.from(peer.nodeId).toString("hex");
    this.setState("syncing", `backup ${peerNode.slice(0, 8)} connected: ${mode} sync`);
  }

  /**
   * The sync's rounds: once everything before is sent, the pages written
   * meanwhile go again from live memory, while they are more than
   * `syncRemainderPages` and fewer than the round before, at most
   * `syncMaxRounds` times; the sync checkpoint captures what is left.
   */
  private syncRounds(): Part {
    let prev = Number.POSITIVE_INFINITY;
    let round = 0;
    const next = (): Part | undefined => {
      const log = this.domain.memory.log;
      const n = log.count;
      if (
        !this.running ||
        round >= this.config.syncMaxRounds ||
        n <= this.config.syncRemainderPages ||
        n >= prev
      ) {
        return undefined;
      }
      prev = n;
      round++;
      const pfns = log.drain();
      // Why: these pages left the dirty log before the backup has them; a failed sync must send them again.
      const drained = (this.syncDrained ??= new DirtyLog(this.domain.pages));
      drained.markAll(pfns, pfns.length);
      this.emit({ type: "sync.round", epoch: this.syncEpoch ?? 0, round, pages: pfns.length });
      return { kind: "memory", pages: pageList(pfns) };
    };
    return { kind: "more", next };
  }

  /** How this machine encodes pages now. */
  private encoding(): Encoding {
    const cfg = this.config;
    let cache: SentPageCache | undefined;
    if (this.deltaOn && cfg.compress) {
      cache = this.cache ??= new SentPageCache(this.domain.pages, cfg.deltaCachePages);
    }
    return {
      domain: this.domain,
      workers: this.workers,
      inline: this.inline,
      cache,
      batchPages: cfg.batchPages,
      compress: cfg.compress,
      inlinePages: cfg.inlinePages,
    };
  }

  /**
   * The backup is no longer connected. `backupGone`: it cannot activate any
   * more (see the header), so held output may leave; otherwise it stays held.
   * `say`: the GOODBYE to send when the connection is still open (a live
   * backup must never see a connection end without one: it would take that
   * for this primary's death and activate).
   */
  private dropConn(
    c: Conn,
    reason: string,
    how: {
      planned: boolean;
      backupGone: boolean;
      say?: [number, string];
      claim?: { generation: number; epoch: number };
    },
  ): void {
    if (c !== this.links.active) return;
    this.links.active = undefined;
    this.rewindAwaited = undefined;
    if (how.say) c.goodbye(how.say[0], how.say[1], how.claim);
    else c.goodbye(GOODBYE_REASON.resync, `the primary dropped this connection: ${reason}`);
    if (how.backupGone && this.doubtUntilAck === undefined) {
      if (this.config.leaseGuarded) this.wantContinue = this.backupMayActivate;
      else this.backupMayActivate = false;
    }
    // The backup's pages are no longer known: no XOR base survives the link.
    this.cache?.clear();
    // Why: nothing the backup did not acknowledge may be forgotten; mark it dirty again.
    const drained = this.syncDrained;
    if (drained !== undefined && drained.count > 0) {
      const pfns = drained.drain();
      this.domain.memory.log.markAll(pfns, pfns.length);
    }
    for (const f of this.inflight) {
      this.domain.memory.log.markAll(f.pfns, f.pfns.length);
      for (const b of f.earlyBlocks) this.domain.disk.log.mark(b);
      this.domain.disk.log.markAll(f.blocks, f.blocks.length);
      this.emit({ type: "checkpoint.failed", epoch: f.epoch, reason });
    }
    // A capture is released once no page worker reads it any more.
    for (const j of this.jobs) {
      if (j.kind === "checkpoint") this.draining.push({ stream: j.stream, capture: j.flight.capture });
    }
    for (const f of this.inflight) {
      if (!this.jobs.some((j) => j.kind === "checkpoint" && j.flight === f)) f.capture.release();
    }
    this.releaseDrained();
    for (const b of this.openEpochBlocks) this.domain.disk.log.mark(b);
    this.openEpochBlocks = [];
    this.inflight = [];
    this.inflightBytes = 0;
    this.jobs = [];
    this.syncEpoch = undefined;
    this.forceCheckpoint = false;
    if (this.colo) {
      this.colo = undefined;
      this.hooks.onColoEnd?.();
    }
    this.emit({ type: "peer.lost", reason, planned: how.planned });
    // (A primary whose domain stopped, fenced or finishing, goes straight to its final state.)
    if (this.running && (this._state === "syncing" || this._state === "protected")) {
      this.setState(
        "unprotected",
        this.backupMayActivate
          ? `backup lost: ${reason}; output held until it resyncs`
          : `backup lost: ${reason}`,
      );
    }
    if (this.stopKind && this.running) this.finish(this.stopKind, 0);
  }

  private record(c: Conn, r: ReplicationRecord, now: number): void {
    if (this.links.heartbeatRecord(c, r, now)) return;
    switch (r.type) {
      case "ack":
        this.acked(r.epoch, now);
        return;
      case "nack":
        // The backup is alive and keeps its image (if it still has one): hold, redial, resync.
        this.dropConn(c, `backup refused epoch ${r.epoch}: ${r.message}`, {
          planned: false,
          backupGone: false,
          say: [GOODBYE_REASON.resync, `epoch ${r.epoch} refused: reconnecting for a resync`],
        });
        return;
      case "switchoverRequest":
        this.requestStop("switchover", now);
        return;
      case "coloOutput":
        if (this.colo) this.hooks.onColoOutput?.(r.epoch, Buffer.from(r.frame));
        return;
      case "coloDirty":
        this.coloDirty(r.epoch, r.pageBitmap, r.blockBitmap, now);
        return;
      case "rewind":
        this.rewindOffered(c, r, now);
        return;
      default:
        return;
    }
  }

  /**
   * After this machine's role ended (the node demoted it): releases the
   * captures still held once no page worker reads them. True when nothing is
   * held any more (the node calls it until then).
   */
  retire(): boolean {
    this.releaseDrained();
    return this.draining.length === 0 && this.inflight.length === 0;
  }

  /** Releases the captures of a lost link's jobs whose page work has ended. */
  private releaseDrained(): void {
    if (this.draining.length === 0) return;
    this.draining = this.draining.filter((d) => {
      if (!d.stream.settled) return true;
      d.capture.release();
      return false;
    });
  }

  private acked(epoch: number, now: number): void {
    while (this.inflight.length > 0 && (this.inflight[0] as InFlight).epoch <= epoch) {
      const f = this.inflight.shift() as InFlight;
      // Its END went out after every batch, so no page worker reads the capture any more.
      f.capture.release();
      this.inflightBytes -= (f.pfns.length + f.blocks.length) * PAGE_SIZE;
      this.commitTimes.push(now);
      if (this.commitTimes.length > RATE_WINDOW) this.commitTimes.shift();
      this.committed = f.epoch;
      if (this.doubtUntilAck !== undefined && f.epoch >= this.doubtUntilAck) this.doubtUntilAck = undefined;
      this.emit({
        type: "checkpoint.committed",
        epoch: f.epoch,
        dirtyPages: f.pfns.length,
        pauseMs: f.pauseMs,
        durationMs: now - f.pausedAt,
        wireBytes: f.wireBytes,
        rawBytes: f.rawBytes,
      });
      this.hooks.onCommitted?.(f.epoch);
      if (this.syncEpoch !== undefined && f.epoch >= this.syncEpoch && this._state === "syncing") {
        this.syncDrained?.clear();
        this.emit({
          type: "sync.completed",
          epoch: f.epoch,
          mode: this.syncMode,
          durationMs: now - this.syncStartedAt,
        });
        this.backupMayActivate = true;
        this.setState("protected", `backup synced at epoch ${f.epoch}`);
      }
      if (this.finalEpoch === f.epoch && this.stopKind) this.finish(this.stopKind, now);
    }
  }

  // ---- the epoch protocol ----

  /**
   * Timers and streaming: heartbeats, epoch boundaries, sending. Call often.
   * `judge`: false right after the node's own stall, until it has read what
   * arrived meanwhile: no timeout is acted on then (src/node/node.ts).
   */
  poll(now: number, judge = true): void {
    if (judge) this.links.expireHandshakes(now);
    this.releaseDrained();
    const c = this.links.active;
    if (!c) return;
    if (judge && c.heartbeat.expired(now)) {
      // Why release: by our honest clock the backup was silent for the whole timeout; if it was
      // only stalled, CONTINUING tells it its image is stale, so it will not activate from it.
      const doubt = this.doubtUntilAck !== undefined;
      this.dropConn(c, "heartbeat timeout: the backup stopped answering", {
        planned: false,
        backupGone: !doubt,
        say:
          doubt || this.config.leaseGuarded
            ? [GOODBYE_REASON.resync, "heartbeat timeout: resync"]
            : [GOODBYE_REASON.continuing, "heartbeat timeout: the primary continues without this backup"],
      });
      return;
    }
    this.links.pingIfDue(
      now,
      this._state === "protected" ? PEER_STATE.protected : PEER_STATE.syncing,
      this.committed,
      this.generation,
    );
    if (this.shouldCheckpoint(now)) {
      if (this.colo?.started) this.coloPause(c);
      else this.checkpoint(now);
    }
    this.flushDisk(c);
    this.pump(c);
  }

  /**
   * Sends what the page workers finished and submits more, and nothing else
   * (no timers, no epoch boundary): for the host to call as soon as a page
   * job ends, between its regular polls.
   */
  flush(): void {
    const c = this.links.active;
    if (c) this.pump(c);
  }

  private shouldCheckpoint(now: number): boolean {
    if (!this.running || !this.links.active || this.inflight.length >= this.config.maxInFlight) return false;
    if (this.inflight.length > 0) {
      // Adaptive epochs: the next checkpoint must fit beside those in flight, or the epoch stretches.
      const next = (this.domain.memory.log.count + this.domain.disk.log.count) * PAGE_SIZE;
      if (this.inflightBytes + next > this.config.maxInFlightBytes) return false;
    }
    if (this._state === "syncing") {
      // The sync checkpoint: as soon as the pre-copy stream is out, once.
      return this.syncStreamDone && this.lastEndSent < (this.syncEpoch ?? 0) && this.inflight.length === 0;
    }
    if (this._state !== "protected") return false;
    const s = this.colo;
    // COLO: epochs end only when asked (the comparator, an operator, a stop), one at a time.
    if (s?.started) return s.awaiting === undefined && this.inflight.length === 0 && s.reason !== undefined;
    return this.forceCheckpoint || now - this.epochStartedAt >= this.config.intervalMs;
  }

  /** COLO: pauses the domain at the end of the open epoch and asks the secondary for its dirty set. */
  private coloPause(c: Conn): void {
    const s = this.colo as ColoSession;
    const reason = s.reason ?? COLO_REASON.requested;
    s.awaiting = this.epoch;
    s.reason = undefined;
    this.coloCheckpoints.set(reason, (this.coloCheckpoints.get(reason) ?? 0) + 1);
    c.send({
      type: "coloCheckpoint",
      epoch: this.epoch,
      generation: this.generation,
      reason,
      inputs: s.inputs,
    });
    s.inputs = 0;
  }

  /**
   * COLO_DIRTY: the pages and blocks the secondary wrote during the epoch
   * join this side's dirty logs, and the paused epoch is captured. Why both:
   * a page only the secondary wrote must still be brought back to the
   * primary's content, or the two replicas differ after the checkpoint.
   */
  private coloDirty(epoch: number, pageBitmap: Uint8Array, blockBitmap: Uint8Array, now: number): void {
    const s = this.colo;
    if (!s || s.awaiting !== epoch) return;
    const pfns = fromBitmap(pageBitmap);
    this.domain.memory.log.markAll(pfns, pfns.length);
    // Why: the secondary's copy of these pages is its own now, not the version last sent: no XOR base.
    const cache = this.cache;
    if (cache) for (const pfn of pfns) cache.forget(pfn);
    const blocks = fromBitmap(blockBitmap);
    this.domain.disk.log.markAll(blocks, blocks.length);
    s.awaiting = undefined;
    this.checkpoint(now);
  }

  /** Pause, capture, resume: the end of the open epoch. */
  private checkpoint(now: number): void {
    const n = this.epoch;
    const t0 = this.hr();
    this.hooks.beforeCapture?.(n);
    const blocks = this.domain.collectDiskWrites();
    const blockData = Buffer.allocUnsafe(blocks.length * BLOCK_SIZE);
    for (let i = 0; i < blocks.length; i++) {
      this.domain.disk.view(blocks[i] as number).copy(blockData, i * BLOCK_SIZE);
    }
    const pfns = this.domain.collectDirty();
    const capture = this.capturer.capture(pfns);
    const vcpu = Buffer.from(this.domain.vcpu.regs);
    const device = Buffer.from(this.domain.device.regs);
    const digest = this.config.verify ? Buffer.from(this.domain.digest(), "hex") : undefined;
    let flags = digest ? CHECKPOINT_FLAG.hasDigest : 0;
    if (this._state === "syncing") {
      flags |= CHECKPOINT_FLAG.sync;
      // COLO begins with the next epoch; COLO_START follows this checkpoint's END (`endSent`).
      if (this.config.colo) {
        this.colo = {
          start: n + 1,
          started: false,
          queued: [],
          inputs: 0,
          reason: undefined,
          awaiting: undefined,
        };
      }
    }
    if (this.stopKind && this._state === "protected") {
      // Why: the final checkpoint is the last state; the domain must not run past it.
      flags |= CHECKPOINT_FLAG.final;
      this.running = false;
      this.finalEpoch = n;
    }
    const pauseMs = this.hr() - t0;
    const f: InFlight = {
      epoch: n,
      generation: this.generation,
      pausedAt: now,
      pauseMs,
      capture,
      pfns,
      earlyBlocks: this.openEpochBlocks,
      blocks,
      blockData,
      vcpu,
      device,
      digest,
      flags,
      wireBytes: 0,
      rawBytes: 0,
    };
    this.openEpochBlocks = [];
    this.epoch = n + 1;
    this.epochStartedAt = now;
    this.forceCheckpoint = false;
    if (this.nextConfig) {
      this.applyConfig(this.nextConfig);
      this.nextConfig = undefined;
    }
    this.inflight.push(f);
    this.inflightBytes += (pfns.length + blocks.length) * PAGE_SIZE;
    this.jobs.push({ kind: "checkpoint", stream: checkpointStream(f, () => this.endLeaving(f)), flight: f });
  }

  /** Disk writes go to the backup as they happen (applied there only when their epoch commits). */
  private flushDisk(c: Conn): void {
    if (this._state !== "protected" || this.domain.disk.log.count === 0) return;
    // The stream allows the open epoch's writes at most one checkpoint ahead of the one being sent.
    if (this.jobs.length > 1) return;
    const head = this.jobs[0];
    if (head && head.stream.epoch !== this.epoch - 1) return;
    if (c.port.buffered >= this.config.highWaterBytes) return;
    const blocks = this.domain.collectDiskWrites();
    const disk = this.domain.disk;
    const units = {
      count: blocks.length,
      index: (i: number) => blocks[i] as number,
      data: (i: number) => disk.view(blocks[i] as number),
    };
    const sent: Sent = { raw: 0, wire: 0 };
    sendDisk(c, this.epoch, units, 0, this.config, Number.POSITIVE_INFINITY, sent);
    this.emit({ type: "replication.bytes", raw: sent.raw, wire: sent.wire });
    for (const b of blocks) this.openEpochBlocks.push(b);
  }

  /**
   * Sends what is ready and submits more, in stream order, until the link is
   * above its high-water mark or this turn's budget (time, pages) is spent.
   */
  private pump(c: Conn): void {
    const cfg = this.config;
    const enc = this.encoding();
    const b: Budget = {
      units: cfg.turnUnits,
      stopAt: this.hr() + cfg.turnMs,
      clock: this.hr,
      maxQueued: Math.max(4, 12 * this.workers.threads),
    };
    const total: Sent = { raw: 0, wire: 0 };
    try {
      while (this.jobs.length > 0 && this.links.active === c) {
        const job = this.jobs[0] as Job;
        const sent: Sent = { raw: 0, wire: 0 };
        job.stream.flush(c, sent, b);
        if (job.kind === "checkpoint") {
          job.flight.rawBytes += sent.raw;
          job.flight.wireBytes += sent.wire;
        }
        total.raw += sent.raw;
        total.wire += sent.wire;
        if (job.stream.done) {
          this.jobs.shift();
          if (job.kind === "sync") this.syncStreamDone = true;
          else this.endSent(job.flight);
          continue;
        }
        if (c.port.buffered >= cfg.highWaterBytes || !job.stream.fill(enc, b)) break;
      }
    } catch (e) {
      if (!(e instanceof StreamError)) throw e;
      // Said (RESYNC), so the backup keeps its image and waits for us rather than taking over.
      this.dropConn(c, `internal: ${e.message}`, { planned: false, backupGone: false });
    }
    if (total.raw > 0 || total.wire > 0)
      this.emit({ type: "replication.bytes", raw: total.raw, wire: total.wire });
  }

  /** A checkpoint's END went out: the backup may now apply it. */
  private endSent(f: InFlight): void {
    this.lastEndSent = f.epoch;
    const s = this.colo;
    const c = this.links.active;
    if (s && !s.started && c && f.epoch === s.start - 1) {
      // Why here: COLO_START must follow the sync's END before anything else of the new epoch.
      s.started = true;
      c.send({
        type: "coloStart",
        epoch: s.start,
        generation: this.generation,
        edge: this.hooks.coloEdge?.() ?? [],
      });
      for (const frame of s.queued)
        c.send({ type: "coloInput", epoch: this.epoch, index: s.inputs++, frame });
      s.queued = [];
    }
  }

  /**
   * A checkpoint's END is about to leave. Why now: the audit trail (its
   * digest in the event log) is written before the effect it records, so a
   * kill between the two never leaves an epoch the backup may resume without
   * its `checkpoint.sent` line.
   */
  private endLeaving(f: InFlight): void {
    this.emit({
      type: "checkpoint.sent",
      epoch: f.epoch,
      dirtyPages: f.pfns.length,
      diskWrites: f.blocks.length,
      pauseMs: f.pauseMs,
      sync: (f.flags & CHECKPOINT_FLAG.sync) !== 0,
      final: (f.flags & CHECKPOINT_FLAG.final) !== 0,
      ...(f.digest ? { digest: f.digest.toString("hex") } : {}),
    });
  }
}

/** The records of one captured checkpoint: pages, disk writes, vCPU, device, END (`beforeEnd` runs just before END is built). */
function checkpointStream(f: InFlight, beforeEnd: () => void): StreamJob {
  return new StreamJob(f.epoch, [
    { kind: "capture", capture: f.capture },
    {
      kind: "disk",
      units: {
        count: f.blocks.length,
        index: (i) => f.blocks[i] as number,
        data: (i) => f.blockData.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE),
      },
    },
    { kind: "record", raw: f.vcpu.length, record: () => ({ type: "vcpu", epoch: f.epoch, state: f.vcpu }) },
    {
      kind: "record",
      raw: f.device.length,
      record: () => ({ type: "device", epoch: f.epoch, state: f.device }),
    },
    {
      kind: "record",
      raw: 0,
      record: (c) => {
        beforeEnd();
        const s = c.order.summary();
        return {
          type: "checkpointEnd",
          epoch: f.epoch,
          generation: f.generation,
          flags: f.flags,
          pageCount: s.pageCount,
          diskWriteCount: s.diskWriteCount,
          recordCount: s.recordCount,
          streamCrc: s.streamCrc,
          guestTimeNs: vcpuClockNs(f.vcpu), // the vCPU clock at the pause
          digest: f.digest ?? Buffer.alloc(32),
        };
      },
    },
  ]);
}
