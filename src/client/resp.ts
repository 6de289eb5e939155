/**
 * RESP2 (the Redis serialization protocol) for the client: encoding commands as
 * arrays of bulk strings, and an incremental reply parser that accepts bytes
 * split anywhere. Limits keep a hostile server from making it allocate without
 * bound.
 */

export type RespValue =
  | { t: "simple"; v: string }
  | { t: "error"; v: string }
  | { t: "int"; v: number }
  | { t: "bulk"; v: Buffer | null }
  | { t: "array"; v: RespValue[] | null };

export const RESP_MAX_BULK = 512 * 1024 * 1024;
const MAX_LINE = 64 * 1024;
const MAX_ARRAY = 1024 * 1024;

export class RespError extends Error {}

/** Encodes a command as a RESP array of bulk strings. */
export function encodeCommand(args: readonly (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === "string" ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/** Incremental parser of RESP2 replies. */
export class RespParser {
  private buf = Buffer.alloc(0);

  push(data: Uint8Array): void {
    this.buf = this.buf.length === 0 ? Buffer.from(data) : Buffer.concat([this.buf, data]);
  }

  get pendingBytes(): number {
    return this.buf.length;
  }

  /** The next complete value, or undefined if more bytes are needed. Throws RespError on bad input. */
  next(): RespValue | undefined {
    const r = this.parse(0, 0);
    if (!r) return undefined;
    this.buf = this.buf.subarray(r.end);
    return r.value;
  }

  private line(off: number): { text: string; end: number } | undefined {
    const i = this.buf.indexOf("\r\n", off);
    if (i < 0) {
      if (this.buf.length - off > MAX_LINE) throw new RespError("RESP line too long");
      return undefined;
    }
    return { text: this.buf.toString("latin1", off, i), end: i + 2 };
  }

  private int(text: string): number {
    if (!/^-?\d+$/.test(text)) throw new RespError(`bad RESP integer '${text.slice(0, 40)}'`);
    return Number(text);
  }

  private parse(off: number, depth: number): { value: RespValue; end: number } | undefined {
    if (depth > 8) throw new RespError("RESP nesting too deep");
    if (off >= this.buf.length) return undefined;
    const type = String.fromCharCode(this.buf[off] as number);
    const l = this.line(off + 1);
    if (!l) return undefined;
    switch (type) {
      case "+":
        return { value: { t: "simple", v: l.text }, end: l.end };
      case "-":
        return { value: { t: "error", v: l.text }, end: l.end };
      case ":":
        return { value: { t: "int", v: this.int(l.text) }, end: l.end };
      case "$": {
        const n = this.int(l.text);
        if (n === -1) return { value: { t: "bulk", v: null }, end: l.end };
        if (n < 0 || n > RESP_MAX_BULK) throw new RespError(`bad bulk length ${n}`);
        if (this.buf.length < l.end + n + 2) return undefined;
        if (this.buf[l.end + n] !== 13 || this.buf[l.end + n + 1] !== 10)
          throw new RespError("bulk string not followed by CRLF");
        return {
          value: { t: "bulk", v: Buffer.from(this.buf.subarray(l.end, l.end + n)) },
          end: l.end + n + 2,
        };
      }
      case "*": {
        const n = this.int(l.text);
        if (n === -1) return { value: { t: "array", v: null }, end: l.end };
        if (n < 0 || n > MAX_ARRAY) throw new RespError(`bad array length ${n}`);
        const items: RespValue[] = [];
        let end = l.end;
        for (let i = 0; i < n; i++) {
          const r = this.parse(end, depth + 1);
          if (!r) return undefined;
          items.push(r.value);
          end = r.end;
        }
        return { value: { t: "array", v: items }, end };
      }
      default:
        throw new RespError(`bad RESP type byte 0x${(this.buf[off] as number).toString(16)}`);
    }
  }
}
