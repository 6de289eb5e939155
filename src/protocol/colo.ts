/**
 * The COLO records of the stream (proto/SPEC.md §6.12-6.16, order in §7.6):
 * their body codecs, the dirty-set bitmaps, and `ColoOrder`, the order rules
 * of a COLO session (which `StreamOrder` runs when built with `colo: true`).
 * Pure: no I/O, no clock.
 */
import type { BodyCodec } from "./bodies.js";
import {
  COLO_MAX_BITMAP,
  COLO_MAX_EDGE,
  COLO_MAX_FRAME,
  COLO_MIN_FRAME,
  COLO_REASON,
  type ColoReasonCode,
  HEADER_SIZE,
} from "./constants.js";
import { ProtocolError } from "./errors.js";
import type {
  ColoCheckpoint,
  ColoDirty,
  ColoEdgeEntry,
  ColoInput,
  ColoOutput,
  ColoStart,
} from "./records.js";
import {
  epochGeneration,
  readBytes,
  readU8,
  readU16,
  readU32,
  readU64,
  type WireState,
  writeU8,
  writeU16,
  writeU32,
  writeU64,
} from "./wire.js";

const REASONS: ReadonlySet<number> = new Set(Object.values(COLO_REASON));

/** Bytes of one COLO_START edge entry. */
const EDGE_ENTRY = 16;

/** COLO_START: an epoch, a generation and the primary's edge table (SPEC §6.12). */
export const coloStart: BodyCodec<ColoStart> = {
  preencode(s, r) {
    if (r.edge.length > COLO_MAX_EDGE)
      throw new ProtocolError("too-large", `COLO_START edge of ${r.edge.length} connections`);
    s.end += 20 + EDGE_ENTRY * r.edge.length;
  },
  encode(s, r) {
    epochGeneration.write(s, r);
    writeU32(s, r.edge.length, "edge count");
    for (const e of r.edge) {
      if (e.delta === 0) throw new ProtocolError("bad-value", "COLO_START edge entry with delta 0");
      writeU32(s, e.localIp, "local ip");
      writeU32(s, e.remoteIp, "remote ip");
      writeU16(s, e.localPort, "local port");
      writeU16(s, e.remotePort, "remote port");
      writeU32(s, e.delta, "delta");
    }
  },
  decode(s) {
    const head = epochGeneration.read(s);
    const count = readU32(s, "edge count");
    if (count > COLO_MAX_EDGE)
      throw new ProtocolError("too-large", `COLO_START edge of ${count} connections`);
    const edge: ColoEdgeEntry[] = [];
    for (let i = 0; i < count; i++) {
      const localIp = readU32(s, "local ip");
      const remoteIp = readU32(s, "remote ip");
      const localPort = readU16(s, "local port");
      const remotePort = readU16(s, "remote port");
      const delta = readU32(s, "delta");
      // Why: a connection its edge does not renumber has no entry (one encoding per table).
      if (delta === 0) throw new ProtocolError("bad-value", "COLO_START edge entry with delta 0");
      edge.push({ localIp, localPort, remoteIp, remotePort, delta });
    }
    return { type: "coloStart", ...head, edge };
  },
};

function frameCodec<T extends "coloInput" | "coloOutput">(
  type: T,
): BodyCodec<Extract<ColoInput | ColoOutput, { type: T }>> {
  const check = (len: number) => {
    if (len > COLO_MAX_FRAME) throw new ProtocolError("too-large", `${type} frame of ${len} bytes`);
    if (len < COLO_MIN_FRAME) throw new ProtocolError("bad-value", `${type} frame of ${len} bytes`);
  };
  return {
    preencode(s, r) {
      check(r.frame.length);
      s.end += 14 + r.frame.length;
    },
    encode(s, r) {
      writeU64(s, r.epoch, "epoch");
      writeU32(s, r.index, "index");
      writeU16(s, r.frame.length, "len");
      s.buf.set(r.frame, s.start);
      s.start += r.frame.length;
    },
    decode(s) {
      const epoch = readU64(s, "epoch");
      const index = readU32(s, "index");
      const len = readU16(s, "len");
      check(len);
      const frame = readBytes(s, len, "frame");
      return { type, epoch, index, frame } as unknown as Extract<ColoInput | ColoOutput, { type: T }>;
    },
  };
}

export const coloInput = frameCodec("coloInput");
export const coloOutput = frameCodec("coloOutput");

export const coloCheckpoint: BodyCodec<ColoCheckpoint> = {
  preencode(s) {
    s.end += 24;
  },
  encode(s, r) {
    if (!REASONS.has(r.reason)) throw new ProtocolError("bad-value", `COLO_CHECKPOINT reason ${r.reason}`);
    writeU64(s, r.epoch, "epoch");
    writeU64(s, r.generation, "generation");
    writeU8(s, r.reason, "reason");
    writeU8(s, 0, "reserved");
    writeU16(s, 0, "reserved");
    writeU32(s, r.inputs, "inputs");
  },
  decode(s) {
    const epoch = readU64(s, "epoch");
    const generation = readU64(s, "generation");
    const reason = readU8(s, "reason");
    if (!REASONS.has(reason)) throw new ProtocolError("bad-value", `COLO_CHECKPOINT reason ${reason}`);
    const r1 = readU8(s, "reserved");
    const r2 = readU16(s, "reserved");
    if (r1 !== 0 || r2 !== 0) throw new ProtocolError("bad-value", "COLO_CHECKPOINT reserved bytes");
    const inputs = readU32(s, "inputs");
    return { type: "coloCheckpoint", epoch, generation, reason: reason as ColoReasonCode, inputs };
  },
};

/** Bytes of a dirty bitmap for `count` pages or blocks. */
export function bitmapBytes(count: number): number {
  return Math.ceil(count / 8);
}

/** The bitmap of `indexes` (each < `count`): bit i%8 of byte i/8, least significant bit first. */
export function toBitmap(indexes: ArrayLike<number>, count: number): Buffer {
  const b = Buffer.alloc(bitmapBytes(count));
  for (let k = 0; k < indexes.length; k++) {
    const i = indexes[k] as number;
    if (!Number.isInteger(i) || i < 0 || i >= count) throw new RangeError(`index ${i} outside [0, ${count})`);
    b[i >>> 3] = (b[i >>> 3] as number) | (1 << (i & 7));
  }
  return b;
}

/** The indexes set in a bitmap, ascending. */
export function fromBitmap(bitmap: Uint8Array): Uint32Array {
  let n = 0;
  for (const byte of bitmap) for (let v = byte; v !== 0; v &= v - 1) n++;
  const out = new Uint32Array(n);
  let k = 0;
  for (let i = 0; i < bitmap.length; i++) {
    const byte = bitmap[i] as number;
    if (byte === 0) continue;
    for (let bit = 0; bit < 8; bit++) if ((byte >> bit) & 1) out[k++] = i * 8 + bit;
  }
  return out;
}

function checkTail(bitmap: Uint8Array, count: number, what: string): void {
  // Why: bits past the last page would name pages that do not exist; one encoding per set.
  const used = count & 7;
  if (used !== 0 && (bitmap[bitmap.length - 1] as number) >> used !== 0) {
    throw new ProtocolError("bad-value", `${what} has bits past unit ${count - 1}`);
  }
}

/** A u32 length and a dirty-set bitmap of `count` units, checked as §9.1 orders (COLO_DIRTY, REWIND). */
export function readBitmap(s: WireState, count: number | undefined, what: string): Buffer {
  const len = readU32(s, `${what} length`);
  if (len > COLO_MAX_BITMAP) throw new ProtocolError("too-large", `${what} of ${len} bytes`);
  if (count === undefined) throw new ProtocolError("bad-order", `${what} before the geometry is known`);
  if (len !== bitmapBytes(count))
    throw new ProtocolError("bad-geometry", `${what} of ${len} bytes for ${count} units`);
  const b = readBytes(s, len, what);
  checkTail(b, count, what);
  return b;
}

/** COLO_DIRTY: the bitmaps' sizes are checked against the geometry when decoded (as batches' indexes are). */
export const coloDirty: BodyCodec<ColoDirty> = {
  preencode(s, r) {
    s.end += 8 + bitmapsSize([r.pageBitmap, r.blockBitmap]);
  },
  encode(s, r) {
    writeU64(s, r.epoch, "epoch");
    writeBitmaps(s, [r.pageBitmap, r.blockBitmap]);
  },
  decode(s, ctx) {
    const epoch = readU64(s, "epoch");
    const pageBitmap = readBitmap(s, ctx.geometry?.pages, "page bitmap");
    const blockBitmap = readBitmap(s, ctx.geometry?.diskBlocks, "block bitmap");
    return { type: "coloDirty", epoch, pageBitmap, blockBitmap };
  },
};

/** Bytes of length-prefixed bitmaps on the wire; each at most COLO_MAX_BITMAP (`too-large`). */
export function bitmapsSize(bitmaps: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of bitmaps) {
    if (b.length > COLO_MAX_BITMAP) throw new ProtocolError("too-large", `dirty bitmap of ${b.length} bytes`);
    n += 4 + b.length;
  }
  return n;
}

/** Writes each bitmap as a u32 length and its bytes. */
export function writeBitmaps(s: WireState, bitmaps: readonly Uint8Array[]): void {
  for (const b of bitmaps) {
    writeU32(s, b.length, "bitmap length");
    s.buf.set(b, s.start);
    s.start += b.length;
  }
}

/** The epoch field at the start of a record body, read from a whole frame. */
export function bodyEpoch(frame: Buffer): number {
  return frame.readUInt32LE(HEADER_SIZE + 4) * 0x1_0000_0000 + frame.readUInt32LE(HEADER_SIZE);
}

/** What `ColoOrder.start` needs to know of the checkpoint stream. */
export interface StreamPosition {
  /** Epoch of the checkpoint in progress (the next CHECKPOINT_END). */
  readonly openEpoch: number | undefined;
  /** The last CHECKPOINT_END completed a sync. */
  readonly lastEndSync: boolean;
  /** A PAGE_BATCH, VCPU or DEVICE of the open epoch went by. */
  readonly dataStarted: boolean;
}

/**
 * The order rules of a COLO session (SPEC §7.6), for one side: fed every
 * COLO record and every checkpoint data record in either direction (the
 * side's own and the peer's, as `StreamOrder` does). Throws `ProtocolError`
 * (`bad-order`, `bad-generation`, `bad-checkpoint`).
 */
export class ColoOrder {
  #active = false;
  #startEpoch = 0;
  /** The COLO epoch running at the primary: its inputs are being mirrored. */
  #epoch = 0;
  #inputs = 0;
  /** The last epoch a COLO_CHECKPOINT ended, and the last one a COLO_DIRTY answered. */
  #requested = 0;
  #dirty = 0;
  #outEpoch = 0;
  #outIndex = -1;

  /** Whether a COLO_START went by since the last SYNC_BEGIN. */
  get active(): boolean {
    return this.#active;
  }

  /** The COLO epoch running now (its inputs are being mirrored). */
  get epoch(): number {
    return this.#epoch;
  }

  start(epoch: number, generation: number, sessionGeneration: number | undefined, at: StreamPosition): void {
    if (generation !== sessionGeneration) {
      throw new ProtocolError(
        "bad-generation",
        `COLO_START generation ${generation}, session ${sessionGeneration}`,
      );
    }
    // Why: the secondary's guest starts from the synced image, so COLO begins right after the sync's end.
    if (this.#active || !at.lastEndSync || at.openEpoch !== epoch || at.dataStarted) {
      throw new ProtocolError("bad-order", `COLO_START(${epoch}) not right after a completed sync`);
    }
    this.#active = true;
    this.#startEpoch = epoch;
    this.#epoch = epoch;
    this.#inputs = 0;
    this.#requested = epoch - 1;
    this.#dirty = epoch - 1;
    this.#outEpoch = epoch;
    this.#outIndex = -1;
  }

  input(epoch: number, index: number): void {
    this.#need("COLO_INPUT");
    if (epoch !== this.#epoch || index !== this.#inputs) {
      throw new ProtocolError(
        "bad-order",
        `COLO_INPUT(${epoch}, ${index}), expected (${this.#epoch}, ${this.#inputs})`,
      );
    }
    this.#inputs++;
  }

  checkpoint(r: ColoCheckpoint, sessionGeneration: number | undefined): void {
    this.#need("COLO_CHECKPOINT");
    if (r.generation !== sessionGeneration) {
      throw new ProtocolError(
        "bad-generation",
        `COLO_CHECKPOINT generation ${r.generation}, session ${sessionGeneration}`,
      );
    }
    if (r.epoch !== this.#epoch) {
      throw new ProtocolError("bad-order", `COLO_CHECKPOINT(${r.epoch}) while epoch ${this.#epoch} runs`);
    }
    // Why: the secondary must have had every input the primary's checkpointed state consumed.
    if (r.inputs !== this.#inputs) {
      throw new ProtocolError(
        "bad-checkpoint",
        `COLO_CHECKPOINT says ${r.inputs} inputs, ${this.#inputs} went by`,
      );
    }
    this.#requested = r.epoch;
    this.#epoch = r.epoch + 1;
    this.#inputs = 0;
  }

  output(epoch: number, index: number): void {
    this.#need("COLO_OUTPUT");
    const next = epoch === this.#outEpoch ? this.#outIndex + 1 : 0;
    if (epoch < this.#outEpoch || epoch > this.#epoch || index !== next) {
      throw new ProtocolError(
        "bad-order",
        `COLO_OUTPUT(${epoch}, ${index}) after (${this.#outEpoch}, ${this.#outIndex}) with epoch ${this.#epoch} running`,
      );
    }
    this.#outEpoch = epoch;
    this.#outIndex = index;
  }

  dirty(epoch: number): void {
    this.#need("COLO_DIRTY");
    if (epoch !== this.#requested || this.#dirty === epoch) {
      throw new ProtocolError(
        "bad-order",
        `COLO_DIRTY(${epoch}): the checkpoint asked for is ${this.#requested}`,
      );
    }
    this.#dirty = epoch;
  }

  /** A PAGE_BATCH, VCPU, DEVICE or CHECKPOINT_END of `epoch` (DISK_WRITES stream as in Remus). */
  data(what: string, epoch: number): void {
    if (!this.#active || epoch < this.#startEpoch) return;
    // Why: the pages of a COLO checkpoint are the union of both sides' dirty sets, known only after COLO_DIRTY.
    if (epoch !== this.#requested || this.#dirty !== epoch) {
      throw new ProtocolError(
        "bad-order",
        `${what} of COLO epoch ${epoch} before its COLO_CHECKPOINT and COLO_DIRTY`,
      );
    }
  }

  /** SYNC_BEGIN: the secondary is a plain backup again until the next COLO_START. */
  reset(): void {
    this.#active = false;
  }

  #need(what: string): void {
    if (!this.#active) throw new ProtocolError("bad-order", `${what} outside a COLO session (no COLO_START)`);
  }
}
