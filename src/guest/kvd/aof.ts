/**
 * kvd's append-only file: the record format (RESP arrays of bulk strings, as
 * in Redis's AOF) and a strict reader. kvd writes only these records, each
 * describing the state it leaves behind:
 *
 *   SET key value               the key now holds value, without expiry
 *   SET key value PXAT ms       ... with an absolute expiry in guest ms
 *   MSET key value [key value]  each key holds its value, without expiry
 *   DEL key [key ...]           the keys are gone (explicit, or reclaimed after expiring)
 *   FLUSHALL                    every key is gone
 *
 * Replaying them in order from an empty table yields exactly the table kvd
 * holds in memory (expired-but-unreclaimed keys included), which is what
 * `verifyKvdAof` checks.
 */

/** One key's state in a replayed model. */
export interface AofItem {
  readonly value: Buffer;
  /** Absolute expiry in guest ms; 0n = none. */
  readonly expireAt: bigint;
}

export const AOF_CMD = {
  set: Buffer.from("SET"),
  mset: Buffer.from("MSET"),
  del: Buffer.from("DEL"),
  flushall: Buffer.from("FLUSHALL"),
  pxat: Buffer.from("PXAT"),
} as const;

export type AofRecord = Buffer[];

function readLine(data: Buffer, off: number, what: string): { n: number; next: number } {
  const cr = data.indexOf(13, off);
  if (cr < 0 || data[cr + 1] !== 10) throw new Error(`truncated ${what} header at byte ${off}`);
  const text = data.toString("latin1", off + 1, cr);
  if (!/^(0|[1-9][0-9]{0,9})$/.test(text)) throw new Error(`bad ${what} length '${text}' at byte ${off}`);
  return { n: Number(text), next: cr + 2 };
}

/** Parses a whole AOF into records. Throws an Error describing the first malformed byte. */
export function parseAof(data: Buffer): AofRecord[] {
  const out: AofRecord[] = [];
  let off = 0;
  while (off < data.length) {
    if (data[off] !== 0x2a) throw new Error(`expected '*' at byte ${off}`);
    const h = readLine(data, off, "array");
    if (h.n === 0) throw new Error(`empty record at byte ${off}`);
    off = h.next;
    const rec: Buffer[] = [];
    for (let i = 0; i < h.n; i++) {
      if (data[off] !== 0x24) throw new Error(`expected '$' at byte ${off}`);
      const b = readLine(data, off, "bulk");
      const end = b.next + b.n;
      if (end + 2 > data.length || data[end] !== 13 || data[end + 1] !== 10)
        throw new Error(`truncated bulk at byte ${off}`);
      rec.push(data.subarray(b.next, end));
      off = end + 2;
    }
    out.push(rec);
  }
  return out;
}

function parseExpiry(b: Buffer): bigint {
  const t = b.toString("latin1");
  if (!/^[1-9][0-9]{0,18}$/.test(t)) throw new Error(`bad PXAT time '${t}'`);
  const v = BigInt(t);
  if (v >= 1n << 63n) throw new Error(`PXAT time ${t} out of range`);
  return v;
}

/** The effect of one record, for a replayer: calls exactly one of the callbacks per key or flush. */
export interface AofSink {
  set(key: Buffer, value: Buffer, expireAt: bigint): void;
  del(key: Buffer): void;
  flush(): void;
}

/** Applies one record to `sink`. Throws on a record kvd never writes. */
export function applyAofRecord(rec: AofRecord, sink: AofSink): void {
  const name = (rec[0] as Buffer).toString("latin1");
  switch (name) {
    case "SET":
      if (rec.length === 3) sink.set(rec[1] as Buffer, rec[2] as Buffer, 0n);
      else if (rec.length === 5 && (rec[3] as Buffer).equals(AOF_CMD.pxat))
        sink.set(rec[1] as Buffer, rec[2] as Buffer, parseExpiry(rec[4] as Buffer));
      else throw new Error(`malformed SET record of ${rec.length} parts`);
      return;
    case "MSET":
      if (rec.length < 3 || rec.length % 2 === 0)
        throw new Error(`malformed MSET record of ${rec.length} parts`);
      for (let i = 1; i < rec.length; i += 2) sink.set(rec[i] as Buffer, rec[i + 1] as Buffer, 0n);
      return;
    case "DEL":
      if (rec.length < 2) throw new Error("DEL record without keys");
      for (let i = 1; i < rec.length; i++) sink.del(rec[i] as Buffer);
      return;
    case "FLUSHALL":
      if (rec.length !== 1) throw new Error("malformed FLUSHALL record");
      sink.flush();
      return;
    default:
      throw new Error(`unknown record '${name.slice(0, 32)}'`);
  }
}

/** Replays an AOF into a JavaScript map keyed by the key's bytes as latin1. Throws on malformed input. */
export function replayAof(data: Buffer): Map<string, AofItem> {
  const model = new Map<string, AofItem>();
  const sink: AofSink = {
    set: (key, value, expireAt) => model.set(key.toString("latin1"), { value: Buffer.from(value), expireAt }),
    del: (key) => model.delete(key.toString("latin1")),
    flush: () => model.clear(),
  };
  for (const rec of parseAof(data)) applyAofRecord(rec, sink);
  return model;
}
