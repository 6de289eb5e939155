/**
 * RESP2 for kvd: the request parser (multibulk and inline, incremental, with
 * Redis's limits and protocol error texts), Redis's strict integer syntax
 * (`string2ll`), inline argument splitting with Redis's quoting rules, and
 * reply encoders. Pure functions over byte buffers: the parse progress that
 * must survive a tick is stored by the caller in the connection block.
 */
import { KVD_MAX_BULK, KVD_MAX_INLINE, KVD_MAX_MULTIBULK } from "./layout.js";

const CR = 13;
const LF = 10;

export const INT64_MAX = (1n << 63n) - 1n;
export const INT64_MIN = -(1n << 63n);

/**
 * Redis's `string2ll` over `buf[start, end)`: a canonical signed 64-bit decimal
 * (no sign other than a leading '-', no leading zeros, no spaces, "0" but not
 * "-0", fewer than 21 bytes). Returns null when the bytes are not one.
 */
export function string2ll(buf: Uint8Array, start: number, end: number): bigint | null {
  const len = end - start;
  if (len <= 0 || len >= 21) return null;
  if (len === 1 && buf[start] === 0x30) return 0n;
  let p = start;
  let negative = false;
  if (buf[p] === 0x2d) {
    negative = true;
    p++;
    if (p === end) return null;
  }
  const first = buf[p] as number;
  if (first < 0x31 || first > 0x39) return null;
  for (let i = p; i < end; i++) {
    const c = buf[i] as number;
    if (c < 0x30 || c > 0x39) return null;
  }
  // Up to 20 digits: exact in BigInt (a double is exact only to 2^53).
  const v = BigInt(Buffer.from(buf.buffer, buf.byteOffset + p, end - p).toString("latin1"));
  if (negative) return v > -INT64_MIN ? null : -v;
  return v > INT64_MAX ? null : v;
}

/** `string2ll` as a number, for lengths: exact up to 2^53, beyond that only its sign and magnitude matter. */
function lengthOf(buf: Uint8Array, start: number, end: number): number | null {
  const len = end - start;
  if (len > 0 && len <= 15) {
    // Fast path with the same syntax rules.
    if (len === 1 && buf[start] === 0x30) return 0;
    let p = start;
    let neg = false;
    if (buf[p] === 0x2d) {
      neg = true;
      p++;
      if (p === end) return null;
    }
    const first = buf[p] as number;
    if (first < 0x31 || first > 0x39) return null;
    let v = 0;
    for (let i = p; i < end; i++) {
      const c = buf[i] as number;
      if (c < 0x30 || c > 0x39) return null;
      v = v * 10 + (c - 0x30);
    }
    return neg ? -v : v;
  }
  const b = string2ll(buf, start, end);
  return b === null ? null : Number(b);
}

/** Where the parser stopped in an incomplete request (offsets relative to the request's first byte). */
export interface ParseProgress {
  /** Multibulk: argument count once the `*N` line was read, 0 before. */
  argc: number;
  /** Multibulk: complete arguments so far. */
  done: number;
  /** Next byte to examine: the next `$N` header, or how far a line was searched for its end. */
  off: number;
}

export const NO_PROGRESS: ParseProgress = { argc: 0, done: 0, off: 0 };

export type ParseResult =
  /** No complete request yet; keep `progress` for the next attempt. */
  | { readonly kind: "need"; readonly progress: ParseProgress }
  /** An empty request (blank inline line, `*0`, `*-1`): skip to `end`. */
  | { readonly kind: "empty"; readonly end: number }
  /** A complete command; `args` are views of the buffer (multibulk) or copies (inline). */
  | { readonly kind: "command"; readonly args: Buffer[]; readonly end: number }
  /** A protocol error: reply `-ERR <message>` and close, like Redis. */
  | { readonly kind: "error"; readonly message: string };

function indexOfByte(buf: Buffer, byte: number, from: number, end: number): number {
  const i = buf.indexOf(byte, from);
  return i < 0 || i >= end ? -1 : i;
}

/**
 * Parses the request starting at `buf[start]` (data up to `end`), resuming
 * from `progress`. A request starting with '*' is multibulk, anything else is
 * an inline command line, as in Redis's processInputBuffer.
 */
export function parseRequest(buf: Buffer, start: number, end: number, progress: ParseProgress): ParseResult {
  if (buf[start] === 0x2a) return parseMultibulk(buf, start, end, progress);
  return parseInline(buf, start, end, progress);
}

function parseInline(buf: Buffer, start: number, end: number, progress: ParseProgress): ParseResult {
  const nl = indexOfByte(buf, LF, start + progress.off, end);
  if (nl < 0) {
    if (end - start > KVD_MAX_INLINE)
      return { kind: "error", message: "Protocol error: too big inline request" };
    return { kind: "need", progress: { argc: 0, done: 0, off: end - start } };
  }
  let lineEnd = nl;
  if (lineEnd > start && buf[lineEnd - 1] === CR) lineEnd--;
  // Redis splits the line as a C string: a NUL ends it.
  const nul = indexOfByte(buf, 0, start, lineEnd);
  const args = splitArgs(buf.subarray(start, nul < 0 ? lineEnd : nul));
  if (args === null) return { kind: "error", message: "Protocol error: unbalanced quotes in request" };
  if (args.length === 0) return { kind: "empty", end: nl + 1 };
  return { kind: "command", args, end: nl + 1 };
}

function parseMultibulk(buf: Buffer, start: number, end: number, progress: ParseProgress): ParseResult {
  let { argc, done, off } = progress;
  if (argc === 0) {
    const cr = indexOfByte(buf, CR, start + off, end);
    if (cr < 0) {
      if (end - start > KVD_MAX_INLINE)
        return { kind: "error", message: "Protocol error: too big mbulk count string" };
      return { kind: "need", progress: { argc: 0, done: 0, off: end - start } };
    }
    // The byte after '\r' must have arrived (Redis skips it without looking).
    if (cr + 1 >= end) return { kind: "need", progress: { argc: 0, done: 0, off: cr - start } };
    const n = lengthOf(buf, start + 1, cr);
    if (n === null || n > KVD_MAX_MULTIBULK)
      return { kind: "error", message: "Protocol error: invalid multibulk length" };
    if (n <= 0) return { kind: "empty", end: cr + 2 };
    argc = n;
    done = 0;
    off = cr + 2 - start;
  }
  while (done < argc) {
    const p = start + off;
    const cr = indexOfByte(buf, CR, p, end);
    if (cr < 0) {
      if (end - p > KVD_MAX_INLINE)
        return { kind: "error", message: "Protocol error: too big bulk count string" };
      return { kind: "need", progress: { argc, done, off } };
    }
    if (cr + 1 >= end) return { kind: "need", progress: { argc, done, off } };
    if (buf[p] !== 0x24) {
      // Redis formats the byte with %c into a C string: a NUL byte ends the message there.
      const got = buf[p] === 0 ? "" : `${String.fromCharCode(buf[p] as number)}'`;
      return { kind: "error", message: `Protocol error: expected '$', got '${got}` };
    }
    const n = lengthOf(buf, p + 1, cr);
    if (n === null || n < 0 || n > KVD_MAX_BULK)
      return { kind: "error", message: "Protocol error: invalid bulk length" };
    const dataEnd = cr + 2 + n + 2; // Redis skips the two bytes after the data without checking them
    if (dataEnd > end) return { kind: "need", progress: { argc, done, off } };
    done++;
    off = dataEnd - start;
  }
  // Complete: collect the arguments (headers were validated above).
  const args: Buffer[] = [];
  let p = start;
  p = (indexOfByte(buf, CR, p, end) as number) + 2;
  for (let i = 0; i < argc; i++) {
    const cr = indexOfByte(buf, CR, p, end);
    const n = lengthOf(buf, p + 1, cr) as number;
    args.push(buf.subarray(cr + 2, cr + 2 + n));
    p = cr + 2 + n + 2;
  }
  return { kind: "command", args, end: start + off };
}

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/**
 * Splits an inline command line into arguments with Redis's rules (its
 * sdssplitargs): blanks separate arguments; "double quotes" take \xHH, \n, \r,
 * \t, \b, \a and \<any>; 'single quotes' take \' only; a closing quote must be
 * followed by a blank or the end. Null for unbalanced quotes.
 */
export function splitArgs(line: Uint8Array): Buffer[] | null {
  const out: Buffer[] = [];
  const n = line.length;
  const at = (i: number): number => (i < n ? (line[i] as number) : 0);
  let p = 0;
  for (;;) {
    while (p < n && isSpace(at(p))) p++;
    if (p >= n) return out;
    const cur: number[] = [];
    let inq = false;
    let insq = false;
    let done = false;
    while (!done) {
      const c = at(p);
      if (inq) {
        if (c === 0x5c && at(p + 1) === 0x78 && hexVal(at(p + 2)) >= 0 && hexVal(at(p + 3)) >= 0) {
          cur.push(hexVal(at(p + 2)) * 16 + hexVal(at(p + 3)));
          p += 3;
        } else if (c === 0x5c && p + 1 < n) {
          p++;
          const e = at(p);
          cur.push(e === 0x6e ? 10 : e === 0x72 ? 13 : e === 0x74 ? 9 : e === 0x62 ? 8 : e === 0x61 ? 7 : e);
        } else if (c === 0x22) {
          if (p + 1 < n && !isSpace(at(p + 1))) return null;
          done = true;
        } else if (p >= n) {
          return null;
        } else {
          cur.push(c);
        }
      } else if (insq) {
        if (c === 0x5c && at(p + 1) === 0x27) {
          p++;
          cur.push(0x27);
        } else if (c === 0x27) {
          if (p + 1 < n && !isSpace(at(p + 1))) return null;
          done = true;
        } else if (p >= n) {
          return null;
        } else {
          cur.push(c);
        }
      } else if (p >= n || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
        done = true;
      } else if (c === 0x22) {
        inq = true;
      } else if (c === 0x27) {
        insq = true;
      } else {
        cur.push(c);
      }
      if (p < n) p++;
    }
    out.push(Buffer.from(cur));
  }
}

// ---- replies ----

export const REPLY = {
  ok: Buffer.from("+OK\r\n"),
  pong: Buffer.from("+PONG\r\n"),
  nil: Buffer.from("$-1\r\n"),
  zero: Buffer.from(":0\r\n"),
  syntax: Buffer.from("-ERR syntax error\r\n"),
  notInteger: Buffer.from("-ERR value is not an integer or out of range\r\n"),
  overflow: Buffer.from("-ERR increment or decrement would overflow\r\n"),
  oom: Buffer.from("-OOM command not allowed when used memory > 'maxmemory'.\r\n"),
  maxClients: Buffer.from("-ERR max number of clients reached\r\n"),
} as const;

/** An error reply `-ERR <message>\r\n` (message bytes as latin1); CR and LF inside become spaces, as in Redis. */
export function errorReply(message: string, code = "ERR"): Buffer {
  return Buffer.from(`-${code} ${message.replace(/[\r\n]/g, " ")}\r\n`, "latin1");
}

export function intReply(v: bigint | number): Buffer {
  return Buffer.from(`:${v}\r\n`);
}

export function bulkHeader(len: number): Buffer {
  return Buffer.from(`$${len}\r\n`);
}

export function bulkReply(v: Uint8Array): Buffer {
  return Buffer.concat([bulkHeader(v.length), v, CRLF]);
}

export const CRLF = Buffer.from("\r\n");

export function arrayHeader(n: number): Buffer {
  return Buffer.from(`*${n}\r\n`);
}

/** Bytes of a bulk reply of `len` bytes. */
export function bulkSize(len: number): number {
  return 1 + String(len).length + 2 + len + 2;
}

/** A RESP array of bulk strings (a command, as written to the AOF). */
export function encodeArray(parts: readonly Uint8Array[]): Buffer {
  const chunks: Uint8Array[] = [arrayHeader(parts.length)];
  for (const p of parts) chunks.push(bulkHeader(p.length), p, CRLF);
  return Buffer.concat(chunks);
}

/** A C string's view of an argument: the bytes before its first NUL (how Redis's printf sees it). */
export function cstr(b: Uint8Array): string {
  const i = b.indexOf(0);
  return Buffer.from(b.buffer, b.byteOffset, i < 0 ? b.length : i).toString("latin1");
}

/** Redis's reply to an unknown command: the name and up to ~128 bytes of its arguments, quoted. */
export function unknownCommandReply(args: readonly Uint8Array[]): Buffer {
  let list = "";
  for (let i = 1; i < args.length && list.length < 128; i++) {
    list += `'${cstr(args[i] as Uint8Array).slice(0, 128 - list.length)}' `;
  }
  const name = cstr(args[0] as Uint8Array).slice(0, 128);
  return errorReply(`unknown command '${name}', with args beginning with: ${list}`);
}

export function arityReply(name: string): Buffer {
  return errorReply(`wrong number of arguments for '${name}' command`);
}
