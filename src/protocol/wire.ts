/**
 * Primitive field codecs over a `{buf, start, end}` state, in the
 * preencode / encode / decode style: preencode adds a field's size to `end`,
 * encode writes at `start` and advances it, decode reads at `start`, never
 * past `end`, and advances it. All integers are little-endian.
 *
 * Decoders check every length against the bytes left before reading, and
 * every value against its limit before it is used.
 */

import { isUtf8 } from "node:buffer";
import type { BodyCodec } from "./bodies.js";
import { LIMITS } from "./constants.js";
import { ProtocolError } from "./errors.js";
import type { Ack } from "./records.js";

export interface WireState {
  buf: Buffer;
  start: number;
  end: number;
}

const TWO_32 = 0x1_0000_0000;
/** Largest high word of a u64 that still fits Number.MAX_SAFE_INTEGER. */
const MAX_SAFE_HIGH = 0x1f_ffff;

/** Throws `truncated` unless `n` more bytes can be read. */
export function need(s: WireState, n: number, field: string): void {
  if (s.end - s.start < n) {
    throw new ProtocolError("truncated", `${field} needs ${n} bytes, ${s.end - s.start} left`);
  }
}

export function readU8(s: WireState, field: string): number {
  need(s, 1, field);
  return s.buf[s.start++]!;
}

export function readU16(s: WireState, field: string): number {
  need(s, 2, field);
  const v = s.buf.readUInt16LE(s.start);
  s.start += 2;
  return v;
}

export function readU32(s: WireState, field: string): number {
  need(s, 4, field);
  const v = s.buf.readUInt32LE(s.start);
  s.start += 4;
  return v;
}

/** A u64 counter. Values above 2^53 - 1 are invalid in version 1 (`bad-value`). */
export function readU64(s: WireState, field: string): number {
  need(s, 8, field);
  const lo = s.buf.readUInt32LE(s.start);
  const hi = s.buf.readUInt32LE(s.start + 4);
  // Why: a counter beyond 2^53 would silently lose precision in JavaScript.
  if (hi > MAX_SAFE_HIGH) throw new ProtocolError("bad-value", `${field} exceeds 2^53 - 1`);
  s.start += 8;
  return hi * TWO_32 + lo;
}

export function readU64Big(s: WireState, field: string): bigint {
  need(s, 8, field);
  const v = s.buf.readBigUInt64LE(s.start);
  s.start += 8;
  return v;
}

/** A view of the next `n` bytes of the frame (no copy). */
export function readBytes(s: WireState, n: number, field: string): Buffer {
  need(s, n, field);
  const v = s.buf.subarray(s.start, s.start + n);
  s.start += n;
  return v;
}

/** A length-prefixed UTF-8 string; the length is checked against `max` before anything else. */
export function readString(s: WireState, lenBytes: 1 | 2, max: number, field: string): string {
  const len = lenBytes === 1 ? readU8(s, `${field} length`) : readU16(s, `${field} length`);
  if (len > max) throw new ProtocolError("too-large", `${field} is ${len} bytes, limit ${max}`);
  const bytes = readBytes(s, len, field);
  // Why: strict UTF-8 (no overlongs, no surrogates) keeps every string's encoding unique.
  if (!isUtf8(bytes)) throw new ProtocolError("bad-encoding", `${field} is not valid UTF-8`);
  return bytes.toString("utf8");
}

/** Throws `trailing-bytes` unless the state is fully consumed. */
export function expectEnd(s: WireState, what: string): void {
  if (s.start !== s.end) {
    throw new ProtocolError("trailing-bytes", `${s.end - s.start} bytes after the ${what} body`);
  }
}

function checkUint(v: number, max: number, field: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new ProtocolError("bad-value", `${field} ${v} is not an integer in 0..${max}`);
  }
}

export function writeU8(s: WireState, v: number, field: string): void {
  checkUint(v, 0xff, field);
  s.buf[s.start++] = v;
}

export function writeU16(s: WireState, v: number, field: string): void {
  checkUint(v, 0xffff, field);
  s.buf.writeUInt16LE(v, s.start);
  s.start += 2;
}

export function writeU32(s: WireState, v: number, field: string): void {
  checkUint(v, 0xffff_ffff, field);
  s.buf.writeUInt32LE(v, s.start);
  s.start += 4;
}

export function writeU64(s: WireState, v: number, field: string): void {
  checkUint(v, LIMITS.maxU64Number, field);
  s.buf.writeUInt32LE(v >>> 0, s.start);
  s.buf.writeUInt32LE(Math.floor(v / TWO_32), s.start + 4);
  s.start += 8;
}

export function writeU64Big(s: WireState, v: bigint, field: string): void {
  if (typeof v !== "bigint" || v < 0n || v > 0xffff_ffff_ffff_ffffn) {
    throw new ProtocolError("bad-value", `${field} is not a u64`);
  }
  s.buf.writeBigUInt64LE(v, s.start);
  s.start += 8;
}

/** Writes exactly `n` bytes; `bytes` must have that length. */
export function writeFixed(s: WireState, bytes: Uint8Array, n: number, field: string): void {
  if (bytes.length !== n)
    throw new ProtocolError("bad-value", `${field} must be ${n} bytes, got ${bytes.length}`);
  s.buf.set(bytes, s.start);
  s.start += n;
}

/** Size of a length-prefixed string, checked against its limit. */
export function preencodeString(str: string, max: number, field: string): number {
  const n = Buffer.byteLength(str, "utf8");
  if (n > max) throw new ProtocolError("too-large", `${field} is ${n} bytes, limit ${max}`);
  return n;
}

export function writeString(s: WireState, str: string, lenBytes: 1 | 2, field: string): void {
  const n = Buffer.byteLength(str, "utf8");
  if (lenBytes === 1) writeU8(s, n, `${field} length`);
  else writeU16(s, n, `${field} length`);
  s.start += s.buf.write(str, s.start, n, "utf8");
}

/** A body that begins with an epoch and a generation (ACK; COLO_START, which goes on). */
export const epochGeneration = {
  write(s: WireState, r: { epoch: number; generation: number }): void {
    writeU64(s, r.epoch, "epoch");
    writeU64(s, r.generation, "generation");
  },
  read(s: WireState): { epoch: number; generation: number } {
    const epoch = readU64(s, "epoch");
    const generation = readU64(s, "generation");
    return { epoch, generation };
  },
};

/** ACK: an epoch and a generation. */
export const ackCodec: BodyCodec<Ack> = {
  preencode(s) {
    s.end += 16;
  },
  encode(s, r) {
    epochGeneration.write(s, r);
  },
  decode(s) {
    return { type: "ack", ...epochGeneration.read(s) };
  },
};
