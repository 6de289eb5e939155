/**
 * kvd's server loop and commands: connections with input/output buffers in
 * guest memory, RESP request parsing, command execution against the hash
 * table, and the append-only file. Stateless code: everything it needs
 * between calls is in kvd's state block, its connection blocks and the table
 * (see the layout at the top of src/guest/programs/kvd.ts).
 */
import type { GuestMemory } from "../../domain/memory.js";
import { PAGE_SIZE } from "../../domain/memory.js";
import { isRemusError, RemusError } from "../../errors.js";
import type { NetStack } from "../../net/stack.js";
import type { Kernel, Proc } from "../kernel.js";
import type { Heap } from "../mm.js";
import { requireStack } from "../netd.js";
import { AOF_CMD, applyAofRecord, parseAof } from "./aof.js";
import {
  ACCEPTS_PER_TICK,
  BUF_MIN,
  CF,
  CN,
  CN_SIZE,
  COMMANDS_PER_TICK,
  IN_HIGH_WATER,
  KS,
  KVD_AOF_FILE,
  KVD_MAGIC,
  KVD_MAX_CLIENTS,
  KVD_MAX_QUERY,
  KVD_PORT,
  OUT_RESERVE,
  OUT_SOFT_LIMIT,
  READ_PER_TICK,
} from "./layout.js";
import {
  arityReply,
  arrayHeader,
  bulkHeader,
  bulkReply,
  bulkSize,
  CRLF,
  encodeArray,
  errorReply,
  INT64_MAX,
  INT64_MIN,
  intReply,
  NO_PROGRESS,
  type ParseProgress,
  parseRequest,
  REPLY,
  string2ll,
  unknownCommandReply,
} from "./proto.js";
import { type Found, KvTable } from "./table.js";

function roundPages(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

// ---------------------------------------------------------------------------
// Connection buffers

/** A handle on one connection block. */
class Conn {
  constructor(
    readonly mem: GuestMemory,
    readonly heap: Heap,
    readonly c: number,
  ) {}
  get(off: number): number {
    return this.mem.u32(this.c + off);
  }
  set(off: number, v: number): void {
    this.mem.setU32(this.c + off, v);
  }
  get sock(): number {
    return this.get(CN.sock);
  }
  hasFlag(f: number): boolean {
    return (this.get(CN.flags) & f) !== 0;
  }
  setFlag(f: number, on: boolean): void {
    const v = this.get(CN.flags);
    this.set(CN.flags, on ? v | f : v & ~f);
  }
  get outLen(): number {
    return this.get(CN.outLen);
  }

  /** Makes room for `n` more output bytes; false when the heap cannot provide it. */
  outEnsure(n: number): boolean {
    const m = this.mem;
    const cap = this.get(CN.outCap);
    const head = this.get(CN.outHead);
    const len = this.get(CN.outLen);
    if (head + len + n <= cap) return true;
    const buf = this.get(CN.outBuf);
    if (len + n <= cap) {
      m.copyWithin(buf, buf + head, len);
      this.set(CN.outHead, 0);
      return true;
    }
    const newCap = Math.max(BUF_MIN, cap * 2, roundPages(len + n));
    const nb = this.heap.tryAlloc(newCap);
    if (nb === 0) return false;
    if (len > 0) m.copyWithin(nb, buf + head, len);
    if (buf !== 0) this.heap.free(buf, cap);
    this.set(CN.outBuf, nb);
    this.set(CN.outCap, newCap);
    this.set(CN.outHead, 0);
    return true;
  }

  /** Appends bytes; room must have been ensured. */
  put(b: Uint8Array): void {
    const at = this.get(CN.outBuf) + this.get(CN.outHead) + this.get(CN.outLen);
    this.mem.write(at, b);
    this.set(CN.outLen, this.get(CN.outLen) + b.length);
  }

  /** Appends `len` bytes of guest memory at `addr`; room must have been ensured. */
  putMem(addr: number, len: number): void {
    const at = this.get(CN.outBuf) + this.get(CN.outHead) + this.get(CN.outLen);
    this.mem.copyWithin(at, addr, len);
    this.set(CN.outLen, this.get(CN.outLen) + len);
  }

  /** Moves pending output into the socket's send buffer. False when the connection can no longer send. */
  flush(stack: NetStack): boolean {
    const len = this.get(CN.outLen);
    if (len > 0) {
      const head = this.get(CN.outHead);
      const n = stack.send(this.sock, this.mem.view(this.get(CN.outBuf) + head, len));
      if (n < 0) return false;
      this.set(CN.outHead, n === len ? 0 : head + n);
      this.set(CN.outLen, len - n);
    }
    // An idle large buffer goes back to the heap.
    const cap = this.get(CN.outCap);
    if (this.get(CN.outLen) === 0 && cap > BUF_MIN) {
      this.heap.free(this.get(CN.outBuf), cap);
      this.set(CN.outBuf, 0);
      this.set(CN.outCap, 0);
      this.set(CN.outHead, 0);
    }
    return true;
  }

  freeBuffers(): void {
    const ib = this.get(CN.inBuf);
    if (ib !== 0) this.heap.free(ib, this.get(CN.inCap));
    const ob = this.get(CN.outBuf);
    if (ob !== 0) this.heap.free(ob, this.get(CN.outCap));
  }

  progress(): ParseProgress {
    return { argc: this.get(CN.pArgc), done: this.get(CN.pDone), off: this.get(CN.pOff) };
  }
  setProgress(p: ParseProgress): void {
    this.set(CN.pArgc, p.argc);
    this.set(CN.pDone, p.done);
    this.set(CN.pOff, p.off);
  }
}

// ---------------------------------------------------------------------------
// Command execution

/** Everything a command needs, for one tick (a transient handle: no state survives the tick here). */
interface Exec {
  readonly k: Kernel;
  readonly pid: number;
  readonly st: number;
  readonly table: KvTable;
  readonly now: number;
  conn: Conn;
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
function appendAof(x: Exec, rec: Buffer): Buffer | null {
  const m = x.k.mem;
  try {
    const size = x.k.append(x.pid, m.u32(x.st + KS.aofFd), rec);
    m.setU64(x.st + KS.aofBytes, size);
    return null;
  } catch (e) {
    if (isRemusError(e, "REMUSD_ERR_NO_SPACE") || isRemusError(e, "REMUSD_ERR_TOO_LARGE")) {
      m.setU32(x.st + KS.aofErrors, m.u32(x.st + KS.aofErrors) + 1);
      return misconf(isRemusError(e, "REMUSD_ERR_NO_SPACE") ? "No space left on device" : "File too large");
    }
    throw e;
  }
}

function oom(x: Exec): void {
  const m = x.k.mem;
  m.setU32(x.st + KS.oomErrors, m.u32(x.st + KS.oomErrors) + 1);
  x.conn.put(REPLY.oom);
}

/**
 * The live entry of `key`, or undefined. An expired entry found on the way
 * is reclaimed (logged as DEL first; if the log cannot be written it simply
 * stays, still invisible).
 */
function lookup(x: Exec, key: Uint8Array): Found | undefined {
  const f = x.table.find(key);
  if (!f) return undefined;
  if (!x.table.isExpired(f.entry, x.now)) return f;
  if (appendAof(x, encodeArray([AOF_CMD.del, key])) === null) x.table.remove(f);
  return undefined;
}

/** Writes a bulk reply of an entry's value (room for `bulkSize` must be ensured). */
function putValue(x: Exec, e: number): void {
  const len = x.table.valLen(e);
  x.conn.put(bulkHeader(len));
  x.conn.putMem(x.table.valAddr(e), len);
  x.conn.put(CRLF);
}

/** The bytes before the first NUL, lower-cased: how Redis's C-string option comparisons see an argument. */
function option(b: Uint8Array): string {
  const i = b.indexOf(0);
  const len = i < 0 ? b.length : i;
  if (len > 16) return "";
  return Buffer.from(b.buffer, b.byteOffset, len).toString("latin1").toLowerCase();
}

const SF = { NX: 1, XX: 2, GET: 4, KEEPTTL: 8, EX: 16, PX: 32, EXAT: 64, PXAT: 128 } as const;

function cmdSet(x: Exec, a: Buffer[]): void {
  const key = a[1] as Buffer;
  const value = a[2] as Buffer;
  let flags = 0;
  let expire: Buffer | undefined;
  for (let j = 3; j < a.length; j++) {
    const o = option(a[j] as Buffer);
    const hasNext = j < a.length - 1;
    if (o === "nx" && !(flags & SF.XX)) flags |= SF.NX;
    else if (o === "xx" && !(flags & SF.NX)) flags |= SF.XX;
    else if (o === "get") flags |= SF.GET;
    else if (o === "keepttl" && !(flags & (SF.EX | SF.EXAT | SF.PX | SF.PXAT))) flags |= SF.KEEPTTL;
    else if (o === "ex" && !(flags & (SF.KEEPTTL | SF.EXAT | SF.PX | SF.PXAT)) && hasNext) {
      flags |= SF.EX;
      expire = a[++j];
    } else if (o === "px" && !(flags & (SF.KEEPTTL | SF.EX | SF.EXAT | SF.PXAT)) && hasNext) {
      flags |= SF.PX;
      expire = a[++j];
    } else if (o === "exat" && !(flags & (SF.KEEPTTL | SF.EX | SF.PX | SF.PXAT)) && hasNext) {
      flags |= SF.EXAT;
      expire = a[++j];
    } else if (o === "pxat" && !(flags & (SF.KEEPTTL | SF.EX | SF.EXAT | SF.PX)) && hasNext) {
      flags |= SF.PXAT;
      expire = a[++j];
    } else {
      x.conn.put(REPLY.syntax);
      return;
    }
  }
  let expireAt = 0n;
  if (expire) {
    const v = string2ll(expire, 0, expire.length);
    if (v === null) {
      x.conn.put(REPLY.notInteger);
      return;
    }
    const seconds = (flags & (SF.EX | SF.EXAT)) !== 0;
    let ms = v;
    if (ms <= 0n || (seconds && ms > INT64_MAX / 1000n)) {
      x.conn.put(errorReply("invalid expire time in 'set' command"));
      return;
    }
    if (seconds) ms *= 1000n;
    if (flags & (SF.EX | SF.PX)) ms += BigInt(x.now);
    if (ms > INT64_MAX) {
      // Redis's signed addition wraps negative here and it reports the same error.
      x.conn.put(errorReply("invalid expire time in 'set' command"));
      return;
    }
    expireAt = ms;
  }
  const found = lookup(x, key);
  const getOld = (flags & SF.GET) !== 0;
  if ((flags & SF.NX && found) || (flags & SF.XX && !found)) {
    if (!getOld || !found) x.conn.put(REPLY.nil);
    else if (x.conn.outEnsure(bulkSize(x.table.valLen(found.entry)))) putValue(x, found.entry);
    else oom(x);
    return;
  }
  if (!expire && flags & SF.KEEPTTL && found) expireAt = x.table.expireAt(found.entry);
  if (getOld && found && !x.conn.outEnsure(bulkSize(x.table.valLen(found.entry)))) {
    oom(x);
    return;
  }
  const staged = stageSet(x, key, value, expireAt);
  if (!staged) return;
  const { e, hash } = staged;
  // The old value is replied before the entry that holds it is freed.
  if (getOld) {
    if (found) putValue(x, found.entry);
    else x.conn.put(REPLY.nil);
  } else {
    x.conn.put(REPLY.ok);
  }
  x.table.put(e, x.table.find(key, hash));
}

/**
 * The first two steps of every write of a value: allocate its entry, then log it
 * to the AOF. On failure nothing changed (the entry is freed, the error replied)
 * and it returns undefined; the caller then links the entry into the table.
 */
function stageSet(
  x: Exec,
  key: Buffer,
  value: Buffer,
  expireAt: bigint,
): { e: number; hash: number } | undefined {
  const hash = x.table.hash(key);
  const e = x.table.newEntry(key, hash, value, expireAt);
  if (e === 0) {
    oom(x);
    return undefined;
  }
  const rec =
    expireAt === 0n
      ? encodeArray([AOF_CMD.set, key, value])
      : encodeArray([AOF_CMD.set, key, value, AOF_CMD.pxat, Buffer.from(String(expireAt))]);
  const err = appendAof(x, rec);
  if (err) {
    x.table.freeEntry(e);
    x.conn.put(err);
    return undefined;
  }
  return { e, hash };
}

function cmdGet(x: Exec, a: Buffer[]): void {
  const f = lookup(x, a[1] as Buffer);
  if (!f) x.conn.put(REPLY.nil);
  else if (x.conn.outEnsure(bulkSize(x.table.valLen(f.entry)))) putValue(x, f.entry);
  else oom(x);
}

function cmdMget(x: Exec, a: Buffer[]): void {
  const entries: number[] = [];
  let size = arrayHeader(a.length - 1).length;
  for (let i = 1; i < a.length; i++) {
    // A live entry found here stays live for the rest of this command (same `now`).
    const f = lookup(x, a[i] as Buffer);
    entries.push(f ? f.entry : 0);
    size += f ? bulkSize(x.table.valLen(f.entry)) : REPLY.nil.length;
  }
  if (!x.conn.outEnsure(size)) {
    oom(x);
    return;
  }
  x.conn.put(arrayHeader(entries.length));
  for (const e of entries) {
    if (e === 0) x.conn.put(REPLY.nil);
    else putValue(x, e);
  }
}

function incrBy(x: Exec, key: Buffer, incr: bigint): void {
  const f = lookup(x, key);
  let old = 0n;
  if (f) {
    const v = x.table.valueView(f.entry);
    const parsed = string2ll(v, 0, v.length);
    if (parsed === null) {
      x.conn.put(REPLY.notInteger);
      return;
    }
    old = parsed;
  }
  if (
    (incr < 0n && old < 0n && incr < INT64_MIN - old) ||
    (incr > 0n && old > 0n && incr > INT64_MAX - old)
  ) {
    x.conn.put(REPLY.overflow);
    return;
  }
  const next = old + incr;
  const value = Buffer.from(String(next));
  const expireAt = f ? x.table.expireAt(f.entry) : 0n;
  const staged = stageSet(x, key, value, expireAt);
  if (!staged) return;
  const { e, hash } = staged;
  x.table.put(e, x.table.find(key, hash));
  x.conn.put(intReply(next));
}

function parseIncrement(x: Exec, b: Buffer): bigint | null {
  const v = string2ll(b, 0, b.length);
  if (v === null) x.conn.put(REPLY.notInteger);
  return v;
}

function cmdDel(x: Exec, a: Buffer[]): void {
  const present: Buffer[] = [];
  const seen = new Set<string>();
  let live = 0;
  for (let i = 1; i < a.length; i++) {
    const key = a[i] as Buffer;
    const ks = key.toString("latin1");
    if (seen.has(ks)) continue;
    seen.add(ks);
    const f = x.table.find(key);
    if (!f) continue;
    present.push(key);
    if (!x.table.isExpired(f.entry, x.now)) live++;
  }
  if (present.length > 0) {
    const err = appendAof(x, encodeArray([AOF_CMD.del, ...present]));
    if (err) {
      x.conn.put(err);
      return;
    }
    for (const key of present) {
      const f = x.table.find(key);
      if (f) x.table.remove(f);
    }
  }
  x.conn.put(intReply(live));
}

function cmdExists(x: Exec, a: Buffer[]): void {
  let n = 0;
  for (let i = 1; i < a.length; i++) if (lookup(x, a[i] as Buffer)) n++;
  x.conn.put(intReply(n));
}

function cmdMset(x: Exec, a: Buffer[]): void {
  if (a.length % 2 === 0) {
    x.conn.put(arityReply("mset"));
    return;
  }
  const made: { e: number; key: Buffer; hash: number }[] = [];
  for (let i = 1; i < a.length; i += 2) {
    const key = a[i] as Buffer;
    const hash = x.table.hash(key);
    const e = x.table.newEntry(key, hash, a[i + 1] as Buffer, 0n);
    if (e === 0) {
      for (const m of made) x.table.freeEntry(m.e);
      oom(x);
      return;
    }
    made.push({ e, key, hash });
  }
  const err = appendAof(x, encodeArray([AOF_CMD.mset, ...a.slice(1)]));
  if (err) {
    for (const m of made) x.table.freeEntry(m.e);
    x.conn.put(err);
    return;
  }
  for (const m of made) x.table.put(m.e, x.table.find(m.key, m.hash));
  x.conn.put(REPLY.ok);
}

function cmdFlushall(x: Exec, a: Buffer[]): void {
  if (a.length > 2 || (a.length === 2 && !["sync", "async"].includes(option(a[1] as Buffer)))) {
    x.conn.put(REPLY.syntax);
    return;
  }
  const err = appendAof(x, encodeArray([AOF_CMD.flushall]));
  if (err) {
    x.conn.put(err);
    return;
  }
  x.table.clear();
  x.conn.put(REPLY.ok);
}

function cmdTtl(x: Exec, a: Buffer[], ms: boolean): void {
  const f = lookup(x, a[1] as Buffer);
  if (!f) {
    x.conn.put(intReply(-2));
    return;
  }
  if (!x.table.hasExpiry(f.entry)) {
    x.conn.put(intReply(-1));
    return;
  }
  let ttl = x.table.expireAt(f.entry) - BigInt(x.now);
  if (ttl < 0n) ttl = 0n;
  x.conn.put(intReply(ms ? ttl : (ttl + 500n) / 1000n));
}

function cmdEchoLike(x: Exec, v: Buffer): void {
  if (x.conn.outEnsure(bulkSize(v.length))) x.conn.put(bulkReply(v));
  else oom(x);
}

interface CommandSpec {
  /** Redis's arity: exact count when positive, minimum count when negative (the name included). */
  readonly arity: number;
  readonly run: (x: Exec, a: Buffer[]) => void;
}

/** The commands kvd serves, by lower-case name. */
export const KVD_COMMANDS: ReadonlyMap<string, CommandSpec> = new Map<string, CommandSpec>([
  [
    "ping",
    {
      arity: -1,
      run: (x, a) => {
        if (a.length > 2) x.conn.put(arityReply("ping"));
        else if (a.length === 2) cmdEchoLike(x, a[1] as Buffer);
        else x.conn.put(REPLY.pong);
      },
    },
  ],
  ["echo", { arity: 2, run: (x, a) => cmdEchoLike(x, a[1] as Buffer) }],
  ["set", { arity: -3, run: cmdSet }],
  ["get", { arity: 2, run: cmdGet }],
  ["del", { arity: -2, run: cmdDel }],
  ["exists", { arity: -2, run: cmdExists }],
  ["incr", { arity: 2, run: (x, a) => incrBy(x, a[1] as Buffer, 1n) }],
  ["decr", { arity: 2, run: (x, a) => incrBy(x, a[1] as Buffer, -1n) }],
  [
    "incrby",
    {
      arity: 3,
      run: (x, a) => {
        const v = parseIncrement(x, a[2] as Buffer);
        if (v !== null) incrBy(x, a[1] as Buffer, v);
      },
    },
  ],
  [
    "decrby",
    {
      arity: 3,
      run: (x, a) => {
        const v = parseIncrement(x, a[2] as Buffer);
        if (v === null) return;
        if (v === INT64_MIN) x.conn.put(errorReply("decrement would overflow"));
        else incrBy(x, a[1] as Buffer, -v);
      },
    },
  ],
  ["mget", { arity: -2, run: cmdMget }],
  ["mset", { arity: -3, run: cmdMset }],
  ["dbsize", { arity: 1, run: (x) => x.conn.put(intReply(x.table.keys)) }],
  ["flushall", { arity: -1, run: cmdFlushall }],
  ["ttl", { arity: 2, run: (x, a) => cmdTtl(x, a, false) }],
  ["pttl", { arity: 2, run: (x, a) => cmdTtl(x, a, true) }],
  [
    "quit",
    {
      arity: -1,
      run: (x) => {
        x.conn.put(REPLY.ok);
        x.conn.setFlag(CF.CLOSE_AFTER_REPLY, true);
      },
    },
  ],
]);

function execute(x: Exec, args: Buffer[]): void {
  const name0 = args[0] as Buffer;
  const spec = name0.length <= 16 ? KVD_COMMANDS.get(name0.toString("latin1").toLowerCase()) : undefined;
  if (!spec) {
    x.conn.put(unknownCommandReply(args));
    return;
  }
  if ((spec.arity > 0 && args.length !== spec.arity) || args.length < -spec.arity) {
    x.conn.put(arityReply(name0.toString("latin1").toLowerCase()));
    return;
  }
  spec.run(x, args);
}

// ---------------------------------------------------------------------------
// The per-tick loop

/** Reads what the connection may take this tick. False when its request exceeds KVD_MAX_QUERY (drop it). */
function readInput(stack: NetStack, conn: Conn): boolean {
  const avail = stack.recvAvailable(conn.sock);
  if (avail === 0) return true;
  const inLen = conn.get(CN.inLen);
  let cap = conn.get(CN.inCap);
  let want = Math.min(avail, READ_PER_TICK);
  if (cap - inLen < want) {
    const newCap = Math.min(KVD_MAX_QUERY, Math.max(BUF_MIN, cap * 2, roundPages(inLen + want)));
    if (newCap > cap) {
      const nb = conn.heap.tryAlloc(newCap);
      if (nb !== 0) {
        const ob = conn.get(CN.inBuf);
        if (inLen > 0) conn.mem.copyWithin(nb, ob, inLen);
        if (ob !== 0) conn.heap.free(ob, cap);
        conn.set(CN.inBuf, nb);
        conn.set(CN.inCap, newCap);
        cap = newCap;
      }
    }
    want = Math.min(want, cap - inLen);
    if (want === 0) {
      if (!conn.hasFlag(CF.NEED_MORE)) return true; // complete requests wait; read later
      if (inLen >= KVD_MAX_QUERY) return false;
      // The heap cannot grow the buffer: answer like Redis under maxmemory and hang up.
      if (conn.outEnsure(REPLY.oom.length)) conn.put(REPLY.oom);
      conn.setFlag(CF.CLOSE_AFTER_REPLY, true);
      return true;
    }
  }
  const data = stack.recv(conn.sock, want);
  if (data && data.length > 0) {
    conn.mem.write(conn.get(CN.inBuf) + inLen, data);
    conn.set(CN.inLen, inLen + data.length);
  }
  return true;
}

/** Executes the complete requests in the input buffer, within this tick's budget. */
function processInput(x: Exec): void {
  const conn = x.conn;
  const m = x.k.mem;
  const inLen = conn.get(CN.inLen);
  if (inLen === 0) {
    conn.setFlag(CF.NEED_MORE, true);
    return;
  }
  const inBuf = conn.get(CN.inBuf);
  // Read-only view of the input: commands write elsewhere (entries, output, disk), so it stays valid.
  const view = m.view(inBuf, inLen);
  let pos = 0;
  let progress = conn.progress();
  let needMore = false;
  let budget = COMMANDS_PER_TICK;
  while (pos < inLen && !conn.hasFlag(CF.CLOSE_AFTER_REPLY)) {
    if (budget === 0 || conn.outLen >= OUT_SOFT_LIMIT || !conn.outEnsure(OUT_RESERVE)) break;
    const r = parseRequest(view, pos, inLen, pos === 0 ? progress : NO_PROGRESS);
    if (r.kind === "need") {
      progress = r.progress;
      needMore = true;
      break;
    }
    progress = NO_PROGRESS;
    if (r.kind === "error") {
      conn.put(errorReply(r.message));
      conn.setFlag(CF.CLOSE_AFTER_REPLY, true);
      pos = inLen;
      break;
    }
    pos = r.end;
    if (r.kind === "empty") continue;
    budget--;
    execute(x, r.args);
    m.setU64(x.st + KS.commands, m.u64(x.st + KS.commands) + 1);
    m.setU64(conn.c + CN.commands, m.u64(conn.c + CN.commands) + 1);
  }
  if (pos >= inLen) needMore = true;
  conn.setFlag(CF.NEED_MORE, needMore);
  if (pos > 0) {
    // Keep the unprocessed tail at offset 0 (the parse progress is relative to it).
    if (pos < inLen) m.copyWithin(inBuf, inBuf + pos, inLen - pos);
    conn.set(CN.inLen, inLen - pos);
  }
  conn.setProgress(progress);
  const cap = conn.get(CN.inCap);
  if (conn.get(CN.inLen) === 0 && cap > BUF_MIN) {
    x.k.heap.free(inBuf, cap);
    conn.set(CN.inBuf, 0);
    conn.set(CN.inCap, 0);
  }
}

function dropConn(k: Kernel, st: number, slot: number, stack: NetStack, conn: Conn): void {
  const m = k.mem;
  const sock = conn.sock;
  if (stack.state(sock) !== "CLOSED") {
    // Unread input would turn the close into a reset that can overtake our last reply.
    while (stack.recvAvailable(sock) > 0) stack.recv(sock, 65536);
  }
  stack.close(sock);
  conn.freeBuffers();
  k.heap.free(conn.c, CN_SIZE);
  m.setU32(st + KS.conns + slot * 4, 0);
  m.setU32(st + KS.connCount, m.u32(st + KS.connCount) - 1);
}

function serviceConn(x: Exec, stack: NetStack, slot: number): void {
  const conn = x.conn;
  const sock = conn.sock;
  if (stack.state(sock) === "CLOSED" || !conn.flush(stack)) {
    dropConn(x.k, x.st, slot, stack, conn);
    return;
  }
  if (!conn.hasFlag(CF.CLOSE_AFTER_REPLY)) {
    const inLen = conn.get(CN.inLen);
    if (conn.outLen < OUT_SOFT_LIMIT && (inLen < IN_HIGH_WATER || conn.hasFlag(CF.NEED_MORE))) {
      if (!readInput(stack, conn)) {
        // Over the query buffer limit: Redis closes such a client without a reply.
        dropConn(x.k, x.st, slot, stack, conn);
        return;
      }
    }
    processInput(x);
    if (!conn.flush(stack)) {
      dropConn(x.k, x.st, slot, stack, conn);
      return;
    }
  }
  if (conn.outLen > 0) return;
  if (conn.hasFlag(CF.CLOSE_AFTER_REPLY) || (conn.hasFlag(CF.NEED_MORE) && stack.eof(sock))) {
    dropConn(x.k, x.st, slot, stack, conn);
  }
}

function acceptNew(k: Kernel, st: number, stack: NetStack): void {
  const m = k.mem;
  const l = m.u32(st + KS.listener);
  for (let i = 0; i < ACCEPTS_PER_TICK; i++) {
    const s = stack.accept(l);
    if (s === 0) return;
    m.setU64(st + KS.accepted, m.u64(st + KS.accepted) + 1);
    const count = m.u32(st + KS.connCount);
    const c = count < KVD_MAX_CLIENTS ? k.heap.tryAlloc(CN_SIZE) : 0;
    if (c === 0) {
      // Like Redis: one error line, then close.
      m.setU64(st + KS.rejected, m.u64(st + KS.rejected) + 1);
      stack.send(s, count < KVD_MAX_CLIENTS ? REPLY.oom : REPLY.maxClients);
      // Unread input would turn the close into a reset that can overtake the error line.
      while (stack.recvAvailable(s) > 0) stack.recv(s, 65536);
      stack.close(s);
      continue;
    }
    m.setU32(c + CN.sock, s);
    m.setU32(c + CN.flags, CF.NEED_MORE);
    for (let slot = 0; slot < KVD_MAX_CLIENTS; slot++) {
      const a = st + KS.conns + slot * 4;
      if (m.u32(a) === 0) {
        m.setU32(a, c);
        break;
      }
    }
    m.setU32(st + KS.connCount, count + 1);
  }
}

/** The active expiry cycle: reclaims a few expired keys per tick (logged as DEL first). */
function activeExpire(x: Exec): void {
  const keys = x.table.expiredSample(x.now);
  if (keys.length === 0) return;
  if (appendAof(x, encodeArray([AOF_CMD.del, ...keys])) !== null) return;
  for (const key of keys) {
    const f = x.table.find(key);
    if (f) x.table.remove(f);
  }
}

/**
 * Program start: listen, open the AOF, lay out the table and load the AOF
 * if the disk already holds one (a guest booted on an existing disk).
 */
export function kvdStart(k: Kernel, p: Proc): void {
  const m = k.mem;
  const st = p.stateAddr;
  const stack = requireStack(k);
  const port = p.arg(0) || KVD_PORT;
  m.setU32(st + KS.port, port);
  if (!KvTable.format(m, k.heap, st, k.random32())) {
    k.exit(p, 12);
    return;
  }
  const fd = k.open(p.pid, KVD_AOF_FILE, { create: true });
  m.setU32(st + KS.aofFd, fd);
  const size = k.fstat(p.pid, fd).size;
  if (size > 0) {
    const table = new KvTable(m, k.heap, st);
    const data = k.fs.read(k.fstat(p.pid, fd).ino, 0, size);
    let failed = false;
    const sink = {
      set: (key: Buffer, value: Buffer, expireAt: bigint) => {
        const h = table.hash(key);
        const e = failed ? 0 : table.newEntry(key, h, value, expireAt);
        if (e === 0) failed = true;
        else table.put(e, table.find(key, h));
        table.rehashStep(1 << 30);
        table.maintain();
      },
      del: (key: Buffer) => {
        const f = table.find(key);
        if (f) table.remove(f);
      },
      flush: () => table.clear(),
    };
    try {
      for (const rec of parseAof(data)) applyAofRecord(rec, sink);
    } catch (e) {
      throw new RemusError(
        "REMUSD_ERR_CORRUPT",
        `kvd: ${KVD_AOF_FILE} is malformed: ${(e as Error).message}`,
      );
    }
    if (failed) {
      k.exit(p, 12); // ENOMEM: the guest cannot hold what its disk says
      return;
    }
    table.rehashStep(1 << 30);
  }
  m.setU64(st + KS.aofBytes, size);
  m.setU32(st + KS.listener, stack.listen(port, 128));
  m.setU32(st + KS.magic, KVD_MAGIC);
}

/** One tick: accept, serve every connection (from a rotating start), expire, rehash. */
export function kvdStep(k: Kernel, p: Proc): void {
  const m = k.mem;
  const st = p.stateAddr;
  if (m.u32(st + KS.magic) !== KVD_MAGIC) return;
  const stack = requireStack(k);
  const table = new KvTable(m, k.heap, st);
  acceptNew(k, st, stack);
  const x: Exec = { k, pid: p.pid, st, table, now: k.nowMs, conn: new Conn(m, k.heap, 0) };
  const start = m.u32(st + KS.connCursor);
  for (let i = 0; i < KVD_MAX_CLIENTS; i++) {
    const slot = (start + i) % KVD_MAX_CLIENTS;
    const c = m.u32(st + KS.conns + slot * 4);
    if (c === 0) continue;
    x.conn = new Conn(m, k.heap, c);
    serviceConn(x, stack, slot);
  }
  m.setU32(st + KS.connCursor, (start + 1) % KVD_MAX_CLIENTS);
  activeExpire(x);
  table.maintain();
}
