/**
 * Record order within a session (proto/SPEC.md §7): which record may follow
 * which, and the per-checkpoint tally (record count, entry counts, chained
 * CRC) that CHECKPOINT_END must match. Pure state machines, no I/O.
 *
 * `CheckpointStream` holds the rules of the primary-to-backup checkpoint
 * stream; the primary runs it over what it sends (and gets the numbers for
 * CHECKPOINT_END from it), the backup over what it receives. `StreamOrder`
 * wraps it with the handshake and the records of the other direction.
 */

import { crc32 } from "node:zlib";
import { bodyEpoch, ColoOrder } from "./colo.js";
import {
  CHECKPOINT_FLAG,
  HEADER_SIZE,
  HELLO_FLAG,
  RECORD_TYPE,
  ROLE,
  SYNC_FLAG,
  TRAILER_SIZE,
} from "./constants.js";
import { ProtocolError } from "./errors.js";
import { decodeFrame, frameCrc } from "./frame.js";
import type { CheckpointEnd, Hello, ReplicationRecord } from "./records.js";

/** The numbers a CHECKPOINT_END carries about the records before it. */
export interface CheckpointSummary {
  pageCount: number;
  diskWriteCount: number;
  recordCount: number;
  streamCrc: number;
}

const trailerBytes = Buffer.alloc(4);

class Tally {
  pageCount = 0;
  diskWriteCount = 0;
  recordCount = 0;
  streamCrc = 0;

  add(type: "pageBatch" | "diskWrites" | "vcpu" | "device", entries: number, frameCrc: number): void {
    if (type === "pageBatch") this.pageCount += entries;
    else if (type === "diskWrites") this.diskWriteCount += entries;
    this.recordCount++;
    trailerBytes.writeUInt32LE(frameCrc, 0);
    this.streamCrc = crc32(trailerBytes, this.streamCrc);
  }

  summary(): CheckpointSummary {
    const { pageCount, diskWriteCount, recordCount, streamCrc } = this;
    return { pageCount, diskWriteCount, recordCount, streamCrc };
  }
}

type CheckpointRecordType = "pageBatch" | "diskWrites" | "vcpu" | "device";

/**
 * The rules of the checkpoint stream from primary to backup. Throws
 * `ProtocolError` (`bad-order`, `bad-generation`, `bad-checkpoint`) on a
 * violation.
 */
export class CheckpointStream {
  /** Epoch of the next CHECKPOINT_END; undefined before the first SYNC_BEGIN. */
  #next: number | undefined;
  #phase: "data" | "vcpu" | "device" = "data";
  #syncing = false;
  #final = false;
  #maxEpoch = 0;
  #cur = new Tally();
  #ahead = new Tally();
  #dataStarted = false;
  readonly #generation: number;

  constructor(generation: number) {
    this.#generation = generation;
  }

  /** Epoch of the checkpoint in progress (the next CHECKPOINT_END), if a sync has begun. */
  get openEpoch(): number | undefined {
    return this.#next;
  }

  /** True once a PAGE_BATCH, VCPU or DEVICE of the open checkpoint went by. */
  get dataStarted(): boolean {
    return this.#dataStarted;
  }

  /** True once a CHECKPOINT_END with FINAL went by: no checkpoint record may follow. */
  get finished(): boolean {
    return this.#final;
  }

  syncBegin(epoch: number, generation: number): void {
    if (this.#final) throw new ProtocolError("bad-order", "SYNC_BEGIN after the final checkpoint");
    if (generation !== this.#generation) {
      throw new ProtocolError(
        "bad-generation",
        `SYNC_BEGIN generation ${generation}, session ${this.#generation}`,
      );
    }
    // Why: a fresh epoch number keeps records of the abandoned stream from matching the new one.
    if (epoch <= this.#maxEpoch)
      throw new ProtocolError("bad-order", `SYNC_BEGIN epoch ${epoch} not above ${this.#maxEpoch}`);
    this.#maxEpoch = epoch;
    this.#next = epoch;
    this.#phase = "data";
    this.#syncing = true;
    this.#dataStarted = false;
    this.#cur = new Tally();
    this.#ahead = new Tally();
  }

  record(type: CheckpointRecordType, epoch: number, entries: number, frameCrc: number): void {
    const next = this.#next;
    if (next === undefined) throw new ProtocolError("bad-order", `${type} before SYNC_BEGIN`);
    if (this.#final) throw new ProtocolError("bad-order", `${type} after the final checkpoint`);
    // Why: disk writes of the running epoch may overtake the previous checkpoint's pages, one epoch ahead at most.
    if (type === "diskWrites" && epoch === next + 1) {
      this.#ahead.add(type, entries, frameCrc);
      this.#maxEpoch = Math.max(this.#maxEpoch, epoch);
      return;
    }
    if (epoch !== next)
      throw new ProtocolError("bad-order", `${type} for epoch ${epoch}, checkpoint ${next} is open`);
    const want = type === "vcpu" ? "data" : type === "device" ? "vcpu" : "data";
    if (this.#phase !== want)
      throw new ProtocolError(
        "bad-order",
        `${type} of epoch ${epoch} after ${this.#phase === "vcpu" ? "VCPU" : "DEVICE"}`,
      );
    if (type === "vcpu") this.#phase = "vcpu";
    else if (type === "device") this.#phase = "device";
    if (type !== "diskWrites") this.#dataStarted = true;
    this.#cur.add(type, entries, frameCrc);
  }

  /** The numbers the CHECKPOINT_END of the open checkpoint must carry. */
  summary(): CheckpointSummary {
    return this.#cur.summary();
  }

  /** Whether the next CHECKPOINT_END must carry the SYNC flag. */
  get syncing(): boolean {
    return this.#syncing;
  }

  /** Checks a CHECKPOINT_END against the tally and closes the checkpoint. */
  end(r: CheckpointEnd): void {
    const next = this.#next;
    if (next === undefined || this.#final)
      throw new ProtocolError("bad-order", "CHECKPOINT_END with no open checkpoint");
    if (r.epoch !== next)
      throw new ProtocolError("bad-order", `CHECKPOINT_END for epoch ${r.epoch}, ${next} is open`);
    if (this.#phase !== "device")
      throw new ProtocolError("bad-order", "CHECKPOINT_END before VCPU and DEVICE");
    if (r.generation !== this.#generation) {
      throw new ProtocolError(
        "bad-generation",
        `CHECKPOINT_END generation ${r.generation}, session ${this.#generation}`,
      );
    }
    const sync = (r.flags & CHECKPOINT_FLAG.sync) !== 0;
    if (sync !== this.#syncing)
      throw new ProtocolError("bad-checkpoint", `SYNC flag ${sync}, sync in progress ${this.#syncing}`);
    // Why: a checkpoint is applied only if every record of it arrived, in order, as sent.
    const t = this.#cur;
    if (
      r.pageCount !== t.pageCount ||
      r.diskWriteCount !== t.diskWriteCount ||
      r.recordCount !== t.recordCount ||
      r.streamCrc !== t.streamCrc
    ) {
      throw new ProtocolError(
        "bad-checkpoint",
        `epoch ${r.epoch}: end says ${r.recordCount} records/${r.pageCount} pages/${r.diskWriteCount} writes/crc ${r.streamCrc}, ` +
          `stream had ${t.recordCount}/${t.pageCount}/${t.diskWriteCount}/crc ${t.streamCrc}`,
      );
    }
    this.#syncing = false;
    this.#final = (r.flags & CHECKPOINT_FLAG.final) !== 0;
    this.#next = next + 1;
    this.#maxEpoch = Math.max(this.#maxEpoch, next);
    this.#phase = "data";
    this.#dataStarted = false;
    this.#cur = this.#ahead;
    this.#ahead = new Tally();
  }
}

/** What to do with a received record that passed the order checks. */
export type Verdict = "accept" | "discard";

type Phase = "hello" | "auth" | "open" | "closed";

/**
 * The order rules of one connection, for one side. Feed it every frame sent
 * (`sent`) and every record received (`received`, after `FrameCodec.decode`).
 * `received` throws `ProtocolError` on a violation, and answers "discard" for
 * checkpoint records that arrive after this backup sent a NACK and before the
 * primary's next SYNC_BEGIN (they belong to a stream the backup gave up on).
 */
export class StreamOrder {
  readonly #local: "primary" | "backup";
  #inPhase: Phase = "hello";
  #outPhase: Phase = "hello";
  #generation: number | undefined;
  #stream: CheckpointStream | undefined;
  // Primary side: what was sent and acknowledged.
  #lastEndSent = 0;
  #lastAcked = 0;
  #syncEpoch: number | undefined;
  #synced = false;
  #awaitResync = false;
  // Backup side: a NACK was sent; drop checkpoint records until SYNC_BEGIN.
  #discarding = false;
  // The backup has an intact committed image the primary knows of (HELLO IMAGE_VALID,
  // or an ACK in this session): an incremental sync is allowed.
  #imageValid = false;
  // DOMAIN_CONFIG (§6.16): whether it went by, and whether the backup's HELLO (ADOPT) needs it before SYNC_BEGIN.
  #configSeen = false;
  #adopt = false;
  // REWIND (§6.17): offered in the backup's HELLO, then sent (or received) once, before any sync.
  #rewindOffered = false;
  #rewindSeen = false;
  // COLO sessions (§7.6): the rules of the COLO records, and whether the last END completed a sync.
  readonly #colo: ColoOrder | undefined;
  #lastEndSync = false;

  /** With `colo`, the session may run in COLO mode (SPEC §7.6); without, COLO records are `bad-order`. */
  constructor(local: "primary" | "backup", opts: { colo?: boolean } = {}) {
    this.#local = local;
    this.#colo = opts.colo ? new ColoOrder() : undefined;
  }

  /** The COLO rules' state, in a session built with `colo` (for the epoch a COLO_INPUT must carry). */
  get colo(): ColoOrder | undefined {
    return this.#colo;
  }

  /** The primary's generation from its HELLO, once known. */
  get generation(): number | undefined {
    return this.#generation;
  }

  /** The primary-to-backup checkpoint stream (the primary's own, or the one the backup receives). */
  get checkpoints(): CheckpointStream | undefined {
    return this.#stream;
  }

  /** Numbers for the CHECKPOINT_END the primary is about to send. */
  summary(): CheckpointSummary {
    if (this.#stream === undefined) throw new ProtocolError("bad-order", "no checkpoint stream yet");
    return this.#stream.summary();
  }

  /** Notes a frame this side sent (any record type, as encoded). */
  sent(frame: Uint8Array): void {
    const b = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    const type = b[3];
    if (this.#outPhase === "closed") throw new ProtocolError("bad-order", "frame sent after GOODBYE");
    if (type === RECORD_TYPE.goodbye) {
      this.#outPhase = "closed";
      return;
    }
    if (this.#outPhase === "hello") {
      if (type !== RECORD_TYPE.hello) throw new ProtocolError("bad-order", "first frame sent is not HELLO");
      const hello = decodeFrame(b, { session: null, seq: null });
      if (hello.type === "hello") this.#noteHello(hello);
      this.#outPhase = "auth";
      return;
    }
    if (this.#outPhase === "auth") {
      if (type !== RECORD_TYPE.auth) throw new ProtocolError("bad-order", "second frame sent is not AUTH");
      this.#outPhase = "open";
      return;
    }
    if (this.#local === "backup") {
      if (type === RECORD_TYPE.rewind) this.#rewind();
      if (type === RECORD_TYPE.nack) this.#discarding = true;
      if (type === RECORD_TYPE.ack) this.#imageValid = true;
      if (type === RECORD_TYPE.coloOutput)
        this.#requireColo("COLO_OUTPUT").output(bodyEpoch(b), bodyU32(b, 8));
      if (type === RECORD_TYPE.coloDirty) this.#requireColo("COLO_DIRTY").dirty(bodyEpoch(b));
      return;
    }
    // Primary: run the checkpoint rules over our own stream.
    const crc = b.readUInt32LE(b.length - TRAILER_SIZE);
    switch (type) {
      case RECORD_TYPE.pageBatch:
      case RECORD_TYPE.diskWrites: {
        const epoch = bodyEpoch(b);
        const count = b.readUInt32LE(HEADER_SIZE + 8);
        if (type === RECORD_TYPE.pageBatch) this.#colo?.data("PAGE_BATCH", epoch);
        this.#requireStream().record(
          type === RECORD_TYPE.pageBatch ? "pageBatch" : "diskWrites",
          epoch,
          count,
          crc,
        );
        return;
      }
      case RECORD_TYPE.vcpu:
      case RECORD_TYPE.device: {
        const epoch = bodyEpoch(b);
        this.#colo?.data(type === RECORD_TYPE.vcpu ? "VCPU" : "DEVICE", epoch);
        this.#requireStream().record(type === RECORD_TYPE.vcpu ? "vcpu" : "device", epoch, 0, crc);
        return;
      }
      case RECORD_TYPE.syncBegin:
      case RECORD_TYPE.checkpointEnd: {
        const r = decodeFrame(b, { session: null, seq: null });
        if (r.type === "syncBegin") {
          this.#checkSyncFlags(r.flags);
          this.#checkConfigBeforeSync();
          this.#requireStream().syncBegin(r.epoch, r.generation);
          this.#colo?.reset();
          this.#syncEpoch = r.epoch;
          this.#synced = false;
          this.#awaitResync = false;
        } else if (r.type === "checkpointEnd") {
          this.#colo?.data("CHECKPOINT_END", r.epoch);
          this.#requireStream().end(r);
          this.#lastEndSync = (r.flags & CHECKPOINT_FLAG.sync) !== 0;
          this.#lastEndSent = r.epoch;
        }
        return;
      }
      case RECORD_TYPE.domainConfig:
        this.#domainConfig();
        return;
      case RECORD_TYPE.coloStart:
      case RECORD_TYPE.coloInput:
      case RECORD_TYPE.coloCheckpoint:
        this.#coloFromPrimary(decodeFrame(b, { session: null, seq: null }));
        return;
      default:
        return;
    }
  }

  /** Checks a decoded record against the order rules; `frame` is the frame it came in. */
  received(r: ReplicationRecord, frame: Uint8Array): Verdict {
    if (this.#inPhase === "closed") throw new ProtocolError("bad-order", `${r.type} after GOODBYE`);
    if (r.type === "goodbye") {
      this.#inPhase = "closed";
      return "accept";
    }
    if (this.#inPhase === "hello") {
      if (r.type !== "hello") throw new ProtocolError("bad-order", `${r.type} before HELLO`);
      // Two backups never pair; two primaries meet only to settle which one is stale (§5.5).
      if (this.#local === "backup" && r.role === ROLE.backup) {
        throw new ProtocolError("bad-order", "the peer claims our role");
      }
      this.#noteHello(r);
      this.#inPhase = "auth";
      return "accept";
    }
    if (this.#inPhase === "auth") {
      if (r.type !== "auth") throw new ProtocolError("bad-order", `${r.type} before AUTH`);
      this.#inPhase = "open";
      return "accept";
    }
    switch (r.type) {
      case "heartbeat":
      case "heartbeatReply":
        return "accept";
      case "hello":
      case "auth":
        throw new ProtocolError("bad-order", `a second ${r.type.toUpperCase()}`);
      default:
        return this.#local === "backup" ? this.#fromPrimary(r, frame) : this.#fromBackup(r);
    }
  }

  #fromPrimary(r: ReplicationRecord, frame: Uint8Array): Verdict {
    switch (r.type) {
      case "syncBegin":
        this.#checkSyncFlags(r.flags);
        this.#checkConfigBeforeSync();
        this.#requireStream().syncBegin(r.epoch, r.generation);
        this.#colo?.reset();
        this.#discarding = false;
        return "accept";
      case "domainConfig":
        this.#domainConfig();
        return "accept";
      case "pageBatch":
      case "diskWrites":
      case "vcpu":
      case "device":
      case "checkpointEnd": {
        if (this.#discarding) return "discard";
        const stream = this.#requireStream();
        if (r.type !== "diskWrites") this.#colo?.data(r.type, r.epoch);
        if (r.type === "checkpointEnd") {
          stream.end(r);
          this.#lastEndSync = (r.flags & CHECKPOINT_FLAG.sync) !== 0;
        } else {
          const entries = r.type === "pageBatch" || r.type === "diskWrites" ? r.entries.length : 0;
          stream.record(r.type, r.epoch, entries, frameCrc(frame));
        }
        return "accept";
      }
      case "coloStart":
      case "coloInput":
      case "coloCheckpoint":
        this.#coloFromPrimary(r);
        return this.#discarding ? "discard" : "accept";
      default:
        throw new ProtocolError("bad-order", `${r.type} from a primary`);
    }
  }

  #fromBackup(r: ReplicationRecord): Verdict {
    switch (r.type) {
      case "ack":
      case "nack": {
        if (r.type === "ack" && r.generation !== this.#generation) {
          throw new ProtocolError(
            "bad-generation",
            `ACK generation ${r.generation}, session ${this.#generation}`,
          );
        }
        // Why: acks are cumulative and in order; a NACK'd stream is acked only after a new sync.
        if (this.#awaitResync || r.epoch <= this.#lastAcked || r.epoch > this.#lastEndSent) {
          throw new ProtocolError(
            "bad-order",
            `${r.type.toUpperCase()} for epoch ${r.epoch}: last acked ${this.#lastAcked}, last sent ${this.#lastEndSent}`,
          );
        }
        if (r.type === "nack") {
          this.#awaitResync = true;
          return "accept";
        }
        this.#lastAcked = r.epoch;
        this.#imageValid = true;
        if (this.#syncEpoch !== undefined && r.epoch >= this.#syncEpoch) this.#synced = true;
        return "accept";
      }
      case "rewind":
        this.#rewind();
        return "accept";
      case "switchoverRequest":
        if (r.generation !== this.#generation) {
          throw new ProtocolError(
            "bad-generation",
            `SWITCHOVER_REQUEST generation ${r.generation}, session ${this.#generation}`,
          );
        }
        if (!this.#synced)
          throw new ProtocolError("bad-order", "SWITCHOVER_REQUEST before the sync was acknowledged");
        return "accept";
      case "coloOutput":
        this.#requireColo("COLO_OUTPUT").output(r.epoch, r.index);
        return "accept";
      case "coloDirty":
        this.#requireColo("COLO_DIRTY").dirty(r.epoch);
        return "accept";
      default:
        throw new ProtocolError("bad-order", `${r.type} from a backup`);
    }
  }

  #noteHello(h: Hello): void {
    if (h.role === ROLE.primary) {
      this.#generation = h.generation;
      this.#stream = new CheckpointStream(h.generation);
    } else {
      this.#imageValid = (h.flags & HELLO_FLAG.imageValid) !== 0;
      this.#adopt = (h.flags & HELLO_FLAG.adopt) !== 0;
      this.#rewindOffered = (h.flags & HELLO_FLAG.rewind) !== 0;
    }
  }

  /** REWIND: once, from a backup that offered it in its HELLO, before any SYNC_BEGIN or ACK (§7.3). */
  #rewind(): void {
    if (!this.#rewindOffered) throw new ProtocolError("bad-order", "REWIND from a backup that offered none");
    if (this.#rewindSeen) throw new ProtocolError("bad-order", "a second REWIND");
    if (this.#stream?.openEpoch !== undefined || this.#lastAcked > 0)
      throw new ProtocolError("bad-order", "REWIND after a sync began");
    this.#rewindSeen = true;
  }

  /** DOMAIN_CONFIG: once per session, before the first SYNC_BEGIN (§7.1). */
  #domainConfig(): void {
    if (this.#configSeen) throw new ProtocolError("bad-order", "a second DOMAIN_CONFIG");
    if (this.#requireStream().openEpoch !== undefined)
      throw new ProtocolError("bad-order", "DOMAIN_CONFIG after SYNC_BEGIN");
    this.#configSeen = true;
  }

  #checkConfigBeforeSync(): void {
    // Why: a backup that adopts the domain has no geometry of its own to receive a sync into.
    if (this.#adopt && !this.#configSeen)
      throw new ProtocolError("bad-order", "SYNC_BEGIN before DOMAIN_CONFIG to a backup that adopts");
  }

  #checkSyncFlags(flags: number): void {
    // Why: the primary decides on the rewind only once it knows what the backup's image holds.
    if (this.#rewindOffered && !this.#rewindSeen)
      throw new ProtocolError("bad-order", "SYNC_BEGIN before the backup's REWIND");
    if ((flags & SYNC_FLAG.rewind) !== 0 && !this.#rewindSeen)
      throw new ProtocolError("bad-order", "rewind SYNC_BEGIN to a backup that sent no REWIND");
    // Why: an incremental sync onto a backup without an intact image would leave stale pages in it.
    if ((flags & SYNC_FLAG.incremental) !== 0 && !this.#imageValid) {
      throw new ProtocolError("bad-order", "incremental SYNC_BEGIN to a backup without IMAGE_VALID");
    }
  }

  /** COLO_START, COLO_INPUT and COLO_CHECKPOINT, sent or received. */
  #coloFromPrimary(r: ReplicationRecord): void {
    const colo = this.#requireColo(r.type);
    if (r.type === "coloStart") {
      const stream = this.#requireStream();
      colo.start(r.epoch, r.generation, this.#generation, {
        openEpoch: stream.openEpoch,
        lastEndSync: this.#lastEndSync,
        dataStarted: stream.dataStarted,
      });
    } else if (r.type === "coloInput") colo.input(r.epoch, r.index);
    else if (r.type === "coloCheckpoint") colo.checkpoint(r, this.#generation);
  }

  #requireColo(what: string): ColoOrder {
    if (this.#colo === undefined)
      throw new ProtocolError("bad-order", `${what} in a session not in COLO mode`);
    return this.#colo;
  }

  #requireStream(): CheckpointStream {
    if (this.#stream === undefined)
      throw new ProtocolError("bad-order", "checkpoint record before the primary's HELLO");
    return this.#stream;
  }
}

/** A u32 at `off` in the body of a whole frame. */
function bodyU32(frame: Buffer, off: number): number {
  return frame.readUInt32LE(HEADER_SIZE + off);
}
