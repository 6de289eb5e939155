/**
 * Frames: 16-byte header | body | u32 CRC-32 trailer (proto/SPEC.md §4).
 * `encodeFrame` / `decodeFrame` are pure functions; `FrameCodec` adds the
 * per-connection state (session tag, next sequence number in each direction,
 * geometry) and is still free of I/O and timers.
 */

import { crc32 } from "node:zlib";
import { type BatchFrame, type BatchOptions, encodeBatchFrame, sealFrame, writeHeader } from "./batch.js";
import { BODY_CODECS, type BodyCodec, decodeBody } from "./bodies.js";
import {
  FRAME_OVERHEAD,
  HEADER_SIZE,
  LIMITS,
  MAGIC,
  PROTOCOL_VERSION,
  RECORD_TYPE,
  RECORD_TYPE_NAME,
  TRAILER_SIZE,
} from "./constants.js";
import { ProtocolError } from "./errors.js";
import type { Geometry, ReplicationRecord } from "./records.js";
import type { WireState } from "./wire.js";

/** The header fields a sender chooses. */
export interface FrameFields {
  session: number;
  seq: number;
}

/** The 16-byte header as read, without any check beyond its length. */
export interface FrameHeader {
  magic: number;
  version: number;
  type: number;
  session: number;
  seq: number;
  bodyLen: number;
}

export interface DecodeOptions {
  /** The session tag the frame must carry; `null` when the caller checks it. */
  session: number | null;
  /** The sequence number the frame must carry; `null` when the caller checks it. */
  seq: number | null;
  /** Bounds from the handshake; batches cannot be decoded without them. */
  geometry?: Geometry;
  /**
   * Decode every lz4 block (into a scratch page) to check it yields exactly
   * 4096 bytes. Default true. Turn off only if every entry goes through
   * `decodePageInto` before the batch is acted on, which checks the same.
   */
  verifyPages?: boolean;
}

function asBuffer(frame: Uint8Array): Buffer {
  return Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
}

/** Encodes one record as a complete frame. Throws `ProtocolError` if the record breaks a rule of the format. */
export function encodeFrame(record: ReplicationRecord, fields: FrameFields): Buffer {
  // The map pairs each type with its own codec; TypeScript cannot follow that through the index.
  const codec = BODY_CODECS[record.type] as unknown as BodyCodec<ReplicationRecord>;
  const s: WireState = { buf: Buffer.alloc(0), start: HEADER_SIZE, end: HEADER_SIZE };
  codec.preencode(s, record);
  const bodyLen = s.end - HEADER_SIZE;
  if (bodyLen > LIMITS.maxBody)
    throw new ProtocolError("too-large", `${record.type} body of ${bodyLen} bytes`);
  const out = Buffer.allocUnsafe(s.end + TRAILER_SIZE);
  writeHeader(out, RECORD_TYPE[record.type], fields.session, fields.seq, bodyLen);
  s.buf = out;
  codec.encode(s, record);
  if (s.start !== s.end)
    throw new Error(`internal: ${record.type} wrote ${s.start - HEADER_SIZE} of ${bodyLen} bytes`);
  out.writeUInt32LE(crc32(out.subarray(0, s.end)), s.end);
  return out;
}

/** Reads the header fields of a frame of at least 16 bytes; checks nothing else. */
export function readFrameHeader(frame: Uint8Array): FrameHeader {
  const b = asBuffer(frame);
  if (b.length < HEADER_SIZE)
    throw new ProtocolError("truncated", `frame of ${b.length} bytes has no header`);
  return {
    magic: b.readUInt16LE(0),
    version: b[2]!,
    type: b[3]!,
    session: b.readUInt32LE(4),
    seq: b.readUInt32LE(8),
    bodyLen: b.readUInt32LE(12),
  };
}

/** The CRC trailer of a frame, as the number `streamCrc` chains over. */
export function frameCrc(frame: Uint8Array): number {
  const b = asBuffer(frame);
  if (b.length < FRAME_OVERHEAD) throw new ProtocolError("truncated", `frame of ${b.length} bytes`);
  return b.readUInt32LE(b.length - TRAILER_SIZE);
}

/**
 * The body of a frame (a view). Used to bind the exact HELLO bytes into the
 * AUTH MAC. Does no check: decode the frame first.
 */
export function frameBody(frame: Uint8Array): Buffer {
  const b = asBuffer(frame);
  return b.subarray(HEADER_SIZE, b.length - TRAILER_SIZE);
}

/** The exact body bytes of a record, e.g. a HELLO for `computeAuthMac`. Every record has one encoding. */
export function encodeBody(record: ReplicationRecord): Buffer {
  return frameBody(encodeFrame(record, { session: 0, seq: 0 }));
}

/**
 * Checks and decodes one frame. The checks run in the order of SPEC §9, so
 * every bad input has exactly one documented `ProtocolError` reason. Byte
 * fields of the result are views into `frame`.
 */
export function decodeFrame(frame: Uint8Array, opts: DecodeOptions): ReplicationRecord {
  const b = asBuffer(frame);
  if (b.length < FRAME_OVERHEAD) throw new ProtocolError("truncated", `frame of ${b.length} bytes`);
  if (b.readUInt16LE(0) !== MAGIC)
    throw new ProtocolError("bad-magic", `magic 0x${b.readUInt16LE(0).toString(16)}`);
  const bodyLen = b.readUInt32LE(12);
  // Why: the limit is checked before the length is used for anything.
  if (bodyLen > LIMITS.maxBody) throw new ProtocolError("too-large", `body length ${bodyLen}`);
  const end = HEADER_SIZE + bodyLen;
  if (b.length < end + TRAILER_SIZE)
    throw new ProtocolError("truncated", `frame of ${b.length} bytes, header says ${end + TRAILER_SIZE}`);
  if (b.length > end + TRAILER_SIZE)
    throw new ProtocolError("trailing-bytes", `${b.length - end - TRAILER_SIZE} bytes after the trailer`);
  const crc = crc32(b.subarray(0, end));
  if (crc !== b.readUInt32LE(end))
    throw new ProtocolError(
      "bad-crc",
      `crc 0x${crc.toString(16)}, trailer 0x${b.readUInt32LE(end).toString(16)}`,
    );
  if (b[2] !== PROTOCOL_VERSION) throw new ProtocolError("bad-version", `version ${b[2]}`);
  const type = RECORD_TYPE_NAME.get(b[3]!);
  if (type === undefined) throw new ProtocolError("unknown-type", `type 0x${b[3]!.toString(16)}`);
  const session = b.readUInt32LE(4);
  if (opts.session !== null && session !== opts.session) {
    throw new ProtocolError(
      "bad-session",
      `session 0x${session.toString(16)}, expected 0x${opts.session.toString(16)}`,
    );
  }
  const seq = b.readUInt32LE(8);
  if (opts.seq !== null && seq !== opts.seq)
    throw new ProtocolError("bad-seq", `seq ${seq}, expected ${opts.seq}`);
  const s: WireState = { buf: b, start: HEADER_SIZE, end };
  return decodeBody(type, s, { geometry: opts.geometry, verifyPages: opts.verifyPages ?? true });
}

/**
 * The per-connection framing state of one side: the session tag, the next
 * sequence number to send and to expect, and the geometry. Pure: it never
 * touches a socket or a clock.
 *
 * Session tags follow SPEC §5: frames up to and including a side's AUTH carry
 * tag 0; after it, the tag set by `setSessionTag` (computed once both HELLOs
 * are known). The codec switches on its own when it encodes or decodes AUTH.
 *
 * After a `ProtocolError` from `decode`, close the connection; the codec is
 * not meant to continue.
 */
export class FrameCodec {
  #sendSeq = 0;
  #recvSeq = 0;
  #sendSession = 0;
  #recvSession = 0;
  #tag: number | undefined;
  #geometry: Geometry | undefined;
  readonly #verifyPages: boolean;

  constructor(opts: { verifyPages?: boolean } = {}) {
    this.#verifyPages = opts.verifyPages ?? true;
  }

  /** Sequence number of the next frame `encode` produces. */
  get nextSendSeq(): number {
    return this.#sendSeq;
  }

  /** Sequence number the next decoded frame must carry. */
  get nextRecvSeq(): number {
    return this.#recvSeq;
  }

  get sendSession(): number {
    return this.#sendSession;
  }

  get recvSession(): number {
    return this.#recvSession;
  }

  get geometry(): Geometry | undefined {
    return this.#geometry;
  }

  /** Sets the session tag (`sessionTag(...)`); call once both HELLOs are known, before AUTH. */
  setSessionTag(tag: number): void {
    if (!Number.isInteger(tag) || tag < 1 || tag > 0xffff_ffff) throw new RangeError(`session tag ${tag}`);
    this.#tag = tag;
  }

  /** Sets the bounds from the handshake; batches are rejected until then. */
  setGeometry(geometry: Geometry): void {
    this.#geometry = { ...geometry };
  }

  /** Encodes a record as the next frame. */
  encode(record: ReplicationRecord): Buffer {
    if (record.type === "auth" && this.#tag === undefined)
      throw new ProtocolError("bad-order", "AUTH before the session tag is known");
    const frame = encodeFrame(record, { session: this.#sendSession, seq: this.#sendSeq });
    this.#advanceSend(record.type === "auth");
    return frame;
  }

  /** Builds the next frame as a PAGE_BATCH from guest pages (see `encodeBatchFrame`). */
  encodePageBatch(
    epoch: number,
    count: number,
    pfnOf: (i: number) => number,
    pageOf: (i: number) => Uint8Array,
    opts: BatchOptions,
  ): BatchFrame {
    const out = encodeBatchFrame(
      "pageBatch",
      epoch,
      count,
      pfnOf,
      pageOf,
      this.#withGeometry(opts),
      this.#fields(),
    );
    this.#advanceSend(false);
    return out;
  }

  /** Builds the next frame as a DISK_WRITES from disk blocks (see `encodeBatchFrame`). */
  encodeDiskWrites(
    epoch: number,
    count: number,
    blockOf: (i: number) => number,
    dataOf: (i: number) => Uint8Array,
    opts: BatchOptions,
  ): BatchFrame {
    const out = encodeBatchFrame(
      "diskWrites",
      epoch,
      count,
      blockOf,
      dataOf,
      this.#withGeometry(opts),
      this.#fields(),
    );
    this.#advanceSend(false);
    return out;
  }

  /**
   * Makes a batch frame built unsealed elsewhere (a worker thread: see
   * `encodeBatchFrame` without a header) the next frame: stamps the session and
   * sequence number and writes the trailer from `bodyCrc`.
   */
  sealBatch(frame: Buffer, bodyCrc: number): Buffer {
    sealFrame(frame, this.#sendSession, this.#sendSeq, bodyCrc);
    this.#advanceSend(false);
    return frame;
  }

  /** Checks and decodes the next received frame. The sequence number advances only on success. */
  decode(frame: Uint8Array): ReplicationRecord {
    const record = decodeFrame(frame, {
      session: this.#recvSession,
      seq: this.#recvSeq,
      geometry: this.#geometry,
      verifyPages: this.#verifyPages,
    });
    if (record.type === "auth") {
      if (this.#tag === undefined) throw new ProtocolError("bad-order", "AUTH before the peer's HELLO");
      this.#recvSession = this.#tag;
    }
    this.#recvSeq = (this.#recvSeq + 1) >>> 0;
    return record;
  }

  #fields(): FrameFields {
    return { session: this.#sendSession, seq: this.#sendSeq };
  }

  #withGeometry(opts: BatchOptions): BatchOptions {
    return opts.geometry !== undefined || this.#geometry === undefined
      ? opts
      : { ...opts, geometry: this.#geometry };
  }

  #advanceSend(wasAuth: boolean): void {
    // Why: u32 sequence numbers wrap; at 10^4 frames/s that takes five days.
    this.#sendSeq = (this.#sendSeq + 1) >>> 0;
    if (wasAuth && this.#tag !== undefined) this.#sendSession = this.#tag;
  }
}
