/**
 * kvd: the guest's key-value server. It listens on TCP port 6379 (or args[0])
 * and speaks RESP2 like Redis 7.0 for PING, ECHO, SET (NX/XX/GET/KEEPTTL/EX/PX/
 * EXAT/PXAT), GET, STRLEN, DEL, EXISTS, INCR, INCRBY, DECR, DECRBY, MGET, MSET,
 * TTL, PTTL, DBSIZE, FLUSHALL, FLUSHDB, SELECT (database 0 only), QUIT, and
 * the server commands standard tools send: CONFIG GET/SET/RESETSTAT/REWRITE,
 * INFO, COMMAND (INFO, DOCS, COUNT, LIST) and CLIENT (ID, GETNAME, SETNAME,
 * INFO, LIST); multibulk and inline, pipelined. HELLO is an unknown command,
 * as on a server that speaks only RESP2, so clients stay on RESP2.
 * Every write is appended to `kvd.aof` on the guest's disk in the same tick
 * as the memory change. Code in src/guest/kvd/: layout.ts (offsets, limits),
 * table.ts (hash table), proto.ts (RESP), aof.ts (log format), conn.ts (a
 * connection's buffers), exec.ts (what commands share), commands.ts (the
 * table, dispatch, commands on keys), admin.ts (server commands), docs.ts
 * (what COMMAND reports), loop.ts (start and the tick).
 *
 * # Why everything is in guest memory
 *
 * The domain is checkpointed as pages; a backup that resumes from a
 * checkpoint must find every key, every half-received request and every
 * reply not yet taken by TCP exactly where the primary left them. So kvd's
 * code keeps nothing in JavaScript between ticks: the table, the connections
 * and their buffers are below, reached from the process's state block.
 *
 * # Memory layout (offset tables in src/guest/kvd/layout.ts)
 *
 *   state block KS (process state, 448 B; u32 unless noted)
 *     0x00 magic "KVD1" · 0x04 listener socket · 0x08 AOF fd · 0x0c port · 0x10 hash seed ·
 *     0x14 table (bucket array) · 0x18 table size (buckets, power of 2) · 0x1c old table
 *     (0 = not rehashing) · 0x20 old size · 0x24 rehash cursor · 0x28 keys · 0x2c keys
 *     with an expiry · 0x30 active-expiry cursor · 0x34 connections · 0x38 connection
 *     cursor · 0x3c flags (1 last AOF write failed) · 0x40 u64 commands · 0x48 u64 AOF
 *     size · 0x50 u64 accepted · 0x58 u64 rejected · 0x60 AOF write errors · 0x64 OOM
 *     errors · 0x68 u64 start time · 0x70 u64 expired keys · 0x78 u64 keyspace hits ·
 *     0x80 u64 misses · 0x88 run id (20 random bytes) · 0xa0 u64 next client id ·
 *     0xc0 u32 conns[64]: connection block address, 0 = free slot
 *   bucket array (heap)   u32[size]: head entry address of each chain, 0 = empty
 *   entry EN (heap, 24 B + key + value)
 *     0x00 next · 0x04 hash · 0x08 key length · 0x0c value length · 0x10 expiry low u32 ·
 *     0x14 expiry high u32 (absolute guest ms, 0 = none) · 0x18 key bytes, then value bytes
 *   connection CN (heap, 128 B)
 *     0x00 socket · 0x04 flags (1 close after reply, 2 need more input) · 0x08 input
 *     buffer · 0x0c its capacity · 0x10 bytes buffered · 0x14 parse progress: argc ·
 *     0x18 arguments complete · 0x1c offset · 0x20 output buffer · 0x24 its capacity ·
 *     0x28 head · 0x2c pending bytes · 0x30 u64 commands · 0x38 name (heap) · 0x3c its
 *     length · 0x40 u64 client id · 0x48 u64 accept time · 0x50 u64 last command time ·
 *     0x58 last command (1 + index in the list of full command names)
 *   buffers (heap)  input: bytes received, not yet a complete request, from offset 0;
 *                   output: reply bytes not yet taken by the socket's send buffer, [head, head+len)
 *
 * # Invariants
 *
 * - Memory and `kvd.aof` agree at every tick boundary: a write allocates what
 *   it needs first, then appends its record, then changes memory; a failed
 *   append (disk full) changes nothing and the client gets `-MISCONF`. So
 *   replaying the AOF from empty gives exactly the entries in memory
 *   (`verifyKvdAof`), at every checkpoint.
 * - Every entry sits in the chain of bucket `hash & (size-1)` of its table;
 *   while rehashing, old buckets below the cursor are empty and new keys go to
 *   the new table. `keys` and `keys with an expiry` count the entries.
 * - An entry is live while its expiry is 0 or >= the guest clock (Redis's
 *   rule). Expired entries are invisible and reclaimed when touched or by the
 *   active cycle, each reclamation logged as DEL first.
 * - A connection's parse progress describes the request at offset 0 of its
 *   input buffer; processed requests are removed at the end of the tick.
 * - Reply bytes are never dropped: they wait in the output buffer until the
 *   socket takes them, and while 64 KiB wait, the connection's requests are
 *   neither read nor executed (backpressure through TCP's window).
 * - Per tick: at most 64 commands and 32 KiB read per connection, 16 accepts,
 *   512 rehashed buckets, 32 expired keys; FLUSHALL is the one O(keys) step.
 *
 * # Limits
 *
 * Keys and values up to 512 KiB (a longer bulk string is a protocol error:
 * `-ERR Protocol error: invalid bulk length`, then close, like Redis's
 * proto-max-bulk-len); inline lines and header lines up to 64 KiB; one
 * request up to 2 MiB buffered (beyond: the connection is closed without a
 * reply, like client-query-buffer-limit); 64 clients (`-ERR max number of
 * clients reached`); memory is the guest heap (`-OOM ...` when exhausted).
 */
import { type Kernel, registerProgram } from "../kernel.js";
import { type AofItem, replayAof } from "../kvd/aof.js";
import { KS, KS_SIZE, KVD_AOF_FILE, KVD_MAGIC, KVD_PROGRAM_ID } from "../kvd/layout.js";
import { kvdStart, kvdStep } from "../kvd/loop.js";
import { KvTable } from "../kvd/table.js";

export {
  KVD_AOF_FILE,
  KVD_MAX_BULK,
  KVD_MAX_CLIENTS,
  KVD_MAX_INLINE,
  KVD_MAX_QUERY,
  KVD_PORT,
  KVD_PROGRAM_ID,
} from "../kvd/layout.js";

registerProgram({
  id: KVD_PROGRAM_ID,
  name: "kvd",
  wakeOnNetwork: true,
  stateSize: KS_SIZE,
  start: kvdStart,
  step: kvdStep,
});

/** One key as kvd holds it. */
export interface KvdItem {
  readonly value: Buffer;
  /** Absolute expiry in guest milliseconds, or null. */
  readonly expireAtMs: bigint | null;
}

function kvdTable(k: Kernel): KvTable | undefined {
  const p = k.procsOf(KVD_PROGRAM_ID)[0];
  if (!p || k.mem.u32(p.stateAddr + KS.magic) !== KVD_MAGIC) return undefined;
  return new KvTable(k.mem, k.heap, p.stateAddr);
}

/**
 * The live keys of the running kvd (not expired at the guest's current
 * time), keyed by the key's bytes as latin1. Empty when kvd is not running.
 */
export function kvdSnapshot(k: Kernel): Map<string, KvdItem> {
  const out = new Map<string, KvdItem>();
  const t = kvdTable(k);
  if (!t) return out;
  const now = k.nowMs;
  t.forEachEntry((e) => {
    if (t.isExpired(e, now)) return;
    const exp = t.expireAt(e);
    out.set(t.key(e).toString("latin1"), { value: t.value(e), expireAtMs: exp === 0n ? null : exp });
  });
  return out;
}

/** Counters of the running kvd, for tests and status pages. */
export interface KvdStats {
  readonly keys: number;
  readonly volatileKeys: number;
  readonly buckets: number;
  readonly rehashing: boolean;
  readonly connections: number;
  readonly commands: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly aofBytes: number;
  readonly aofErrors: number;
  readonly oomErrors: number;
}

/** kvd's counters, or undefined when it is not running. */
export function kvdStats(k: Kernel): KvdStats | undefined {
  const t = kvdTable(k);
  if (!t) return undefined;
  const m = k.mem;
  const st = t.st;
  return {
    keys: t.keys,
    volatileKeys: t.volatileKeys,
    buckets: t.bucketCount,
    rehashing: t.rehashing,
    connections: m.u32(st + KS.connCount),
    commands: m.u64(st + KS.commands),
    accepted: m.u64(st + KS.accepted),
    rejected: m.u64(st + KS.rejected),
    aofBytes: m.u64(st + KS.aofBytes),
    aofErrors: m.u32(st + KS.aofErrors),
    oomErrors: m.u32(st + KS.oomErrors),
  };
}

export interface KvdAofCheck {
  readonly ok: boolean;
  /** Entries compared (every entry in memory, expired-but-unreclaimed ones included). */
  readonly keys: number;
  readonly error?: string;
}

/**
 * Replays `kvd.aof` from the disk into a temporary JavaScript model and
 * compares it with kvd's table in guest memory: the same keys, values and
 * expiry times, entry for entry. Also checks the table's own structure (every
 * entry in its bucket, counters) and that the file has the size kvd last
 * recorded. Holds at every tick boundary, so on every restored checkpoint.
 */
export function verifyKvdAof(k: Kernel): KvdAofCheck {
  const t = kvdTable(k);
  if (!t) return { ok: false, keys: 0, error: "kvd is not running" };
  const bad = (error: string): KvdAofCheck => ({ ok: false, keys: t.keys, error });
  const structure = t.check();
  if (structure) return bad(`table: ${structure}`);
  const ino = k.fs.lookup(KVD_AOF_FILE);
  const size = ino < 0 ? 0 : k.fs.size(ino);
  const recorded = k.mem.u64(t.st + KS.aofBytes);
  if (size !== recorded) return bad(`${KVD_AOF_FILE} has ${size} bytes, kvd recorded ${recorded}`);
  let model: Map<string, AofItem>;
  try {
    model = replayAof(ino < 0 ? Buffer.alloc(0) : k.fs.read(ino, 0, size));
  } catch (e) {
    return bad(`${KVD_AOF_FILE}: ${(e as Error).message}`);
  }
  let error: string | undefined;
  let n = 0;
  t.forEachEntry((e) => {
    if (error) return;
    n++;
    const key = t.key(e).toString("latin1");
    const want = model.get(key);
    if (!want) error = `key ${JSON.stringify(key.slice(0, 64))} is in memory but not in the AOF`;
    else if (!want.value.equals(t.value(e))) error = `key ${JSON.stringify(key.slice(0, 64))}: value differs`;
    else if (want.expireAt !== t.expireAt(e))
      error = `key ${JSON.stringify(key.slice(0, 64))}: expiry ${t.expireAt(e)} in memory, ${want.expireAt} in the AOF`;
  });
  if (error) return bad(error);
  if (n !== model.size) return bad(`${n} entries in memory, ${model.size} keys in the AOF`);
  return { ok: true, keys: n };
}
