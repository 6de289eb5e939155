/**
 * What every kvd command runs with, and the steps commands share: appending
 * to the AOF, looking a key up (reclaiming it when it expired), replying a
 * stored value, the out-of-memory reply. A transient handle for one tick: no
 * state survives the tick here, it is all in guest memory.
 */
import { isRemusError } from "../../errors.js";
import type { NetStack } from "../../net/stack.js";
import type { Kernel } from "../kernel.js";
import { AOF_CMD } from "./aof.js";
import type { Conn } from "./conn.js";
import { KF, KS } from "./layout.js";
import { bulkHeader, CRLF, encodeArray, errorReply, REPLY } from "./proto.js";
import type { Found, KvTable } from "./table.js";

/** Everything a command needs, for one tick. */
export interface Exec {
  readonly k: Kernel;
  readonly pid: number;
  /** kvd's state block. */
  readonly st: number;
  readonly table: KvTable;
  readonly stack: NetStack;
  /** Guest time of this tick, ms. */
  readonly now: number;
  /** Slot of the connection being served (its address is in `KS.conns`). */
  slot: number;
  conn: Conn;
}

export function bumpU64(x: Exec, off: number): void {
  x.k.mem.setU64(x.st + off, x.k.mem.u64(x.st + off) + 1);
}

function misconf(reason: string): Buffer {
  return errorReply(`Errors writing to the AOF file: ${reason}`, "MISCONF");
}

/**
 * Appends one record to the AOF. Null on success, else the error reply. Called
 * before the memory change it describes (and after every allocation that
 * change needs), so a failure leaves memory as it was: memory and file agree
 * at every tick boundary, and so at every checkpoint.
 */
export function appendAof(x: Exec, rec: Buffer): Buffer | null {
  const m = x.k.mem;
  const flags = m.u32(x.st + KS.flags);
  try {
    const size = x.k.append(x.pid, m.u32(x.st + KS.aofFd), rec);
    m.setU64(x.st + KS.aofBytes, size);
    if (flags & KF.AOF_WRITE_ERR) m.setU32(x.st + KS.flags, flags & ~KF.AOF_WRITE_ERR);
    return null;
  } catch (e) {
    if (isRemusError(e, "REMUSD_ERR_NO_SPACE") || isRemusError(e, "REMUSD_ERR_TOO_LARGE")) {
      m.setU32(x.st + KS.aofErrors, m.u32(x.st + KS.aofErrors) + 1);
      m.setU32(x.st + KS.flags, flags | KF.AOF_WRITE_ERR);
      return misconf(isRemusError(e, "REMUSD_ERR_NO_SPACE") ? "No space left on device" : "File too large");
    }
    throw e;
  }
}

export function oom(x: Exec): void {
  const m = x.k.mem;
  m.setU32(x.st + KS.oomErrors, m.u32(x.st + KS.oomErrors) + 1);
  x.conn.put(REPLY.oom);
}

/** Reclaims expired entries (logged as one DEL first). False when the log could not be written: they stay, invisible. */
export function reclaimExpired(x: Exec, keys: readonly Uint8Array[]): boolean {
  if (appendAof(x, encodeArray([AOF_CMD.del, ...keys])) !== null) return false;
  for (const key of keys) {
    const f = x.table.find(key);
    if (f) x.table.remove(f);
  }
  const m = x.k.mem;
  m.setU64(x.st + KS.expiredKeys, m.u64(x.st + KS.expiredKeys) + keys.length);
  return true;
}

/**
 * The live entry of `key`, or undefined. An expired entry found on the way
 * is reclaimed (logged as DEL first; if the log cannot be written it simply
 * stays, still invisible).
 */
export function lookup(x: Exec, key: Uint8Array): Found | undefined {
  const f = x.table.find(key);
  if (!f) return undefined;
  if (!x.table.isExpired(f.entry, x.now)) return f;
  reclaimExpired(x, [key]);
  return undefined;
}

/** `lookup` for a read command: also counts a keyspace hit or miss (INFO). */
export function lookupRead(x: Exec, key: Uint8Array): Found | undefined {
  const f = lookup(x, key);
  bumpU64(x, f ? KS.hits : KS.misses);
  return f;
}

/** Writes a bulk reply of an entry's value (room for `bulkSize` must be ensured). */
export function putValue(x: Exec, e: number): void {
  const len = x.table.valLen(e);
  x.conn.put(bulkHeader(len));
  x.conn.putMem(x.table.valAddr(e), len);
  x.conn.put(CRLF);
}

/** Puts a reply of any size: room is made first, else the OOM error. */
export function reply(x: Exec, b: Uint8Array): void {
  if (x.conn.outEnsure(b.length)) x.conn.put(b);
  else oom(x);
}

/** The bytes before the first NUL, lower-cased: how Redis's C-string option comparisons see an argument. */
export function option(b: Uint8Array): string {
  const i = b.indexOf(0);
  const len = i < 0 ? b.length : i;
  if (len > 16) return "";
  return Buffer.from(b.buffer, b.byteOffset, len).toString("latin1").toLowerCase();
}
