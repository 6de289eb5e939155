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
 */

import type { Domain } from "../domain/domain.js";
import { PAGE_SIZE } from "../domain/memory.js";
import { RemusError } from "../errors.js";
import type { Entropy } from "../prng.js";
import { decodePageInto } from "../protocol/batch.js";
import {
  CHECKPOINT_FLAG,
  GOODBYE_REASON,
  HELLO_FLAG,
  NACK_REASON,
  PEER_STATE,
  SYNC_FLAG,
} from "../protocol/constants.js";
import type { CheckpointEnd, DiskWrites, PageBatch, ReplicationRecord } from "../protocol/records.js";
import { type Conn, Links, type LocalIdentity, localIdentity, type PeerGoodbye, type Port } from "./conn.js";
import type { BackupStateName, EventSink, FailoverReason } from "./events.js";
import type { HeartbeatConfig } from "./heartbeat.js";

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
    /** The blocks are the whole disk (a full sync): the store may drop what it held. */
    full: boolean,
    done: (err?: Error) => void,
  ): void;
  /** The image is being replaced by a full sync: forget the committed epoch (ordered before later commits). */
  invalidate(): void;
  /** Persists the generation (ordered before later commits). */
  saveGeneration(generation: number): void;
}

export interface BackupConfig {
  heartbeat: HeartbeatConfig;
  /** Compute the digest after every apply (and check the primary's, when it sends one). */
  verify: boolean;
}

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
}

export interface Activation {
  readonly epoch: number;
  readonly digest: string;
  readonly generation: number;
  readonly reason: FailoverReason;
}

/** A growable area of 4 KiB units with their indexes. */
class StagingArea {
  buf = Buffer.allocUnsafe(64 * PAGE_SIZE);
  idx = new Uint32Array(64);
  count = 0;

  reset(): void {
    this.count = 0;
  }

  /** Room for one more unit; returns its offset. */
  slot(index: number): number {
    if (this.count === this.idx.length) {
      const n = this.idx.length * 2;
      const buf = Buffer.allocUnsafe(n * PAGE_SIZE);
      this.buf.copy(buf, 0, 0, this.count * PAGE_SIZE);
      const idx = new Uint32Array(n);
      idx.set(this.idx);
      this.buf = buf;
      this.idx = idx;
    }
    this.idx[this.count] = index;
    return this.count++ * PAGE_SIZE;
  }
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

interface Stage {
  epoch: number;
  pages: StagingArea;
  disk: StagingArea;
  vcpu: Buffer | undefined;
  device: Buffer | undefined;
}

function newStage(epoch: number): Stage {
  return { epoch, pages: new StagingArea(), disk: new StagingArea(), vcpu: undefined, device: undefined };
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

  private _state: BackupStateName = "waiting";
  private _lastChange = "started";
  generation: number;
  committed = 0;
  imageValid = false;

  private readonly links: Links;
  private syncMode: "full" | "incremental" | undefined;
  private stage: Stage | undefined;
  private ahead: Stage | undefined;
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
   * The staleness is only suspected (this node's own long stall, which ended
   * at this time): the primary's reply to a heartbeat sent after it disproves it.
   */
  private staleByStallUntil: number | undefined;

  constructor(opts: BackupOptions) {
    this.domain = opts.domain;
    this.config = { ...opts.config };
    this.emit = opts.emit;
    this.store = opts.store;
    this.hr = opts.hrClock ?? (() => performance.now());
    this.generation = opts.generation;
    this.identity = localIdentity("backup", opts, {
      generation: () => this.generation,
      committedEpoch: () => this.committed,
      helloFlags: () => (this.imageValid ? HELLO_FLAG.imageValid : 0),
      claimEpoch: () => this.committed,
    });
    this.links = new Links(this.identity, () => this.config.heartbeat, this.emit);
  }

  get state(): BackupStateName {
    return this._state;
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
        if (c === this.links.active) this.lost(r.reason, now, r.goodbye);
        return;
      case "record":
        if (c !== this.links.active) return;
        try {
          this.record(c, r.record, now);
        } catch (e) {
          // A record that passed the codec but cannot be staged: drop the connection, keep the image.
          const msg = e instanceof Error ? e.message : String(e);
          c.goodbye(GOODBYE_REASON.protocolError, msg);
          this.lost(`bad record: ${msg}`, now, undefined);
        }
        return;
    }
  }

  detach(port: Port, now: number, reason = "connection closed"): void {
    const c = this.links.find(port);
    if (!c) return;
    c.phase = "closed";
    if (this.links.pending.delete(c)) return;
    if (c === this.links.active) this.lost(reason, now, undefined, true);
  }

  private established(c: Conn): void {
    const old = this.links.active;
    if (old) {
      // The same primary (it holds the key) reconnected before we noticed the old link die.
      this.links.active = undefined;
      old.abort("replaced by a new connection from the primary");
      this.discardStaging("the primary reconnected");
    }
    this.links.active = c;
    this.graceUntil = undefined;
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
  }

  /**
   * The primary went away. `abrupt`: the link broke with no GOODBYE at all;
   * `goodbye`: the primary's reason, when it said one; neither: we closed it.
   */
  private lost(reason: string, now: number, said: PeerGoodbye | undefined, abrupt = false): void {
    const c = this.links.active;
    this.links.active = undefined;
    c?.abort(reason);
    this.discardStaging(reason);
    const goodbye = said?.reason;
    const planned = goodbye === GOODBYE_REASON.shutdown || goodbye === GOODBYE_REASON.switchover;
    this.emit({ type: "peer.lost", reason, planned });
    if (this.syncMode === "full") this.syncMode = undefined;
    if (goodbye === GOODBYE_REASON.switchover && this.switchoverRequested && this.imageValid) {
      this.activate("planned");
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
      this.activate("peer_lost");
      return;
    }
    // We (or the primary, with a reason) closed a live link: give the primary one heartbeat
    // timeout to reconnect before we conclude it is gone.
    this.graceUntil = now + this.config.heartbeat.intervalMs * this.config.heartbeat.misses;
    this.setState("waiting", `link closed (${reason}); activating unless the primary returns`);
  }

  private discardStaging(reason: string): void {
    if (this.stage && (this.stage.pages.count > 0 || this.stage.disk.count > 0 || this.stage.vcpu)) {
      this.emit({ type: "checkpoint.discarded", epoch: this.stage.epoch, reason });
    }
    this.stage = undefined;
    this.ahead = undefined;
  }

  private record(c: Conn, r: ReplicationRecord, now: number): void {
    if (
      r.type === "heartbeatReply" &&
      this.staleByStallUntil !== undefined &&
      r.sentAtUs >= this.staleByStallUntil * 1000
    ) {
      // Why: the primary answered a ping sent after our stall on this link, so it had not dropped us.
      this.stale = undefined;
      this.staleByStallUntil = undefined;
    }
    if (this.links.heartbeatRecord(c, r, now)) return;
    switch (r.type) {
      case "syncBegin":
        this.syncBegin(r.epoch, (r.flags & SYNC_FLAG.incremental) !== 0, now);
        return;
      case "pageBatch":
        this.pages(r);
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
      default:
        return;
    }
  }

  private syncBegin(epoch: number, incremental: boolean, now: number): void {
    this.syncStartedAt = now;
    this.discardStaging("a new sync began");
    if (incremental && this.imageValid) {
      this.syncMode = "incremental";
    } else {
      // A full sync overwrites the image in place: until it completes there is nothing to resume.
      this.syncMode = "full";
      this.imageValid = false;
      this.store.invalidate();
    }
    this.stage = newStage(epoch);
    this.emit({ type: "sync.started", epoch, mode: this.syncMode, pages: this.domain.pages });
    this.setState("syncing", `${this.syncMode} sync from the primary`);
  }

  private stageFor(epoch: number): Stage {
    const s = this.stage;
    if (s && s.epoch === epoch) return s;
    if (s && epoch === s.epoch + 1) {
      if (!this.ahead) this.ahead = newStage(epoch);
      return this.ahead;
    }
    if (!s) {
      this.stage = newStage(epoch);
      return this.stage;
    }
    throw new RemusError("REMUSD_ERR_PROTOCOL", `record for epoch ${epoch} while staging ${s.epoch}`);
  }

  /** During a full sync the image is not valid anyway, so pages go straight into it. */
  private direct(epoch: number): boolean {
    return this.syncMode === "full" && this.stage?.epoch === epoch;
  }

  private pages(r: PageBatch): void {
    if (this.direct(r.epoch)) {
      const mem = this.domain.memory;
      for (const e of r.entries) decodePageInto(e, mem.writablePage(e.pfn), 0);
      return;
    }
    const st = this.stageFor(r.epoch).pages;
    for (const e of r.entries) {
      const off = st.slot(e.pfn); // may grow st.buf: take the offset first
      decodePageInto(e, st.buf, off);
    }
  }

  private diskWrites(r: DiskWrites): void {
    if (this.direct(r.epoch)) {
      const disk = this.domain.disk;
      for (const e of r.entries) decodePageInto(e, disk.writableBlock(e.block), 0);
      return;
    }
    const st = this.stageFor(r.epoch).disk;
    for (const e of r.entries) {
      const off = st.slot(e.block);
      decodePageInto(e, st.buf, off);
    }
  }

  /** CHECKPOINT_END: every count and CRC already matched (the stream rules). Apply atomically. */
  private end(c: Conn, r: CheckpointEnd, now: number): void {
    const st = this.stage;
    if (!st || st.epoch !== r.epoch || !st.vcpu || !st.device) {
      throw new RemusError("REMUSD_ERR_PROTOCOL", `CHECKPOINT_END ${r.epoch} without its staged records`);
    }
    const t0 = this.hr();
    const sync = (r.flags & CHECKPOINT_FLAG.sync) !== 0;
    const full = sync && this.syncMode === "full";
    // Why atomic: everything below is synchronous, so no other event sees half an epoch.
    const d = this.domain;
    d.applyPages(st.pages.idx, st.pages.buf, st.pages.count);
    d.applyDiskBlocks(st.disk.idx, st.disk.buf, st.disk.count);
    d.loadVcpu(st.vcpu);
    d.loadDevice(st.device);
    // After a full sync the whole disk is new; otherwise just this epoch's writes.
    const blockList: ArrayLike<number> = full
      ? allBlocks(d.disk.blocks)
      : st.disk.idx.slice(0, st.disk.count);
    this.committed = r.epoch;
    if (r.generation > this.generation) this.generation = r.generation;
    const pages = st.pages.count;
    const diskWrites = st.disk.count;
    // The next checkpoint's early disk writes become the open stage.
    this.stage = this.ahead ?? newStage(r.epoch + 1);
    this.ahead = undefined;
    d.resetLogs();
    let digest: string | undefined;
    const hasDigest = (r.flags & CHECKPOINT_FLAG.hasDigest) !== 0;
    if (this.config.verify || hasDigest) digest = d.digest();
    if (hasDigest && digest !== Buffer.from(r.digest).toString("hex")) {
      // Never happens unless there is a bug: the image no longer matches the primary's.
      this.imageValid = false;
      c.send({
        type: "nack",
        epoch: r.epoch,
        reason: NACK_REASON.digestMismatch,
        message: "digest mismatch after apply",
      });
      this.lost(`digest mismatch at epoch ${r.epoch}`, now, undefined);
      return;
    }
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
    this.setState("standby", sync ? `synced at epoch ${r.epoch}` : this._lastChange);
    const applyMs = this.hr() - t0;
    this.emit({
      type: "checkpoint.applied",
      epoch: r.epoch,
      pages,
      diskWrites,
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
        full,
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
    // Hash a slice (up to 2 ms) of what the sync and the applies wrote, so activation's digest stays O(recent writes).
    this.domain.digestStep(65_536, this.hr, 2);
    if (judge) this.links.expireHandshakes(now);
    const c = this.links.active;
    if (c) {
      if (judge && c.heartbeat.expired(now)) {
        this.discardStaging("heartbeat timeout");
        this.emit({
          type: "peer.lost",
          reason: "heartbeat timeout: the primary stopped answering",
          planned: false,
        });
        if (this.imageValid && !this.stale) {
          // The link is still ours: activate() sends the FENCED claim on it before closing it.
          this.activate("heartbeat_timeout");
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
      if (this.imageValid && !this.stale) this.activate("peer_lost");
    }
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
  activate(reason: FailoverReason): Activation {
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
    const generation = this.generation + 1;
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
    this.activation = { epoch: this.committed, digest, generation, reason };
    this.emit({ type: "failover.activated", epoch: this.committed, digest, reason, generation });
    this.setState("activated", `activated (${reason}) from epoch ${this.committed}`);
    return this.activation;
  }

  /** Planned stop of the backup: says goodbye so the primary does not take it for a failure. */
  stop(): void {
    const c = this.links.active;
    this.links.active = undefined;
    c?.goodbye(GOODBYE_REASON.shutdown, "the backup is shutting down (planned stop)");
    this.setState("stopped", "shutdown");
  }
}

function allBlocks(n: number): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  return a;
}
