/**
 * kvd's command table and dispatch, and the commands on keys. A command runs
 * against the connection's `Exec` and writes its whole reply into the
 * connection's output buffer (`OUT_RESERVE` bytes are guaranteed free before
 * it runs; a larger reply makes room first or answers -OOM). Writes follow one
 * order: allocate, append the AOF record, then change memory (see exec.ts).
 * The server commands (CONFIG, INFO, COMMAND, CLIENT) are in admin.ts, the
 * metadata COMMAND reports in docs.ts.
 */

import { cmdClient, cmdCommand, cmdConfig, cmdInfo, fullNames, helpReply } from "./admin.js";
import { AOF_CMD } from "./aof.js";
import { appendAof, type Exec, lookup, lookupRead, oom, option, putValue, reply } from "./exec.js";
import { CF, CN } from "./layout.js";
import {
  arityReply,
  arrayHeader,
  bulkReply,
  bulkSize,
  cstr,
  encodeArray,
  errorReply,
  INT64_MAX,
  INT64_MIN,
  intReply,
  REPLY,
  string2ll,
  unknownCommandReply,
} from "./proto.js";

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
  const f = lookupRead(x, a[1] as Buffer);
  if (!f) x.conn.put(REPLY.nil);
  else if (x.conn.outEnsure(bulkSize(x.table.valLen(f.entry)))) putValue(x, f.entry);
  else oom(x);
}

function cmdMget(x: Exec, a: Buffer[]): void {
  const entries: number[] = [];
  let size = arrayHeader(a.length - 1).length;
  for (let i = 1; i < a.length; i++) {
    // A live entry found here stays live for the rest of this command (same `now`).
    const f = lookupRead(x, a[i] as Buffer);
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
  for (let i = 1; i < a.length; i++) if (lookupRead(x, a[i] as Buffer)) n++;
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

/** FLUSHALL and FLUSHDB (one database: the same thing). */
function cmdFlush(x: Exec, a: Buffer[]): void {
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
  const f = lookupRead(x, a[1] as Buffer);
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

function cmdStrlen(x: Exec, a: Buffer[]): void {
  const f = lookupRead(x, a[1] as Buffer);
  x.conn.put(intReply(f ? x.table.valLen(f.entry) : 0));
}

function cmdSelect(x: Exec, a: Buffer[]): void {
  const b = a[1] as Buffer;
  const id = string2ll(b, 0, b.length);
  // Redis parses a C int first, then checks the range against `databases` (1 here).
  if (id === null || id > 2147483647n || id < -2147483648n) x.conn.put(REPLY.notInteger);
  else if (id !== 0n) x.conn.put(errorReply("DB index is out of range"));
  else x.conn.put(REPLY.ok);
}

function cmdEchoLike(x: Exec, v: Buffer): void {
  reply(x, bulkReply(v));
}

/** One command (or subcommand) kvd serves. */
export interface CommandSpec {
  /** Redis's arity: exact count when positive, minimum count when negative (the name included). */
  readonly arity: number;
  /** Absent for a container whose every use names a subcommand (CONFIG, CLIENT). */
  readonly run?: (x: Exec, a: Buffer[]) => void;
  /** Subcommands by lower-case name (the second argument). */
  readonly subcommands?: ReadonlyMap<string, CommandSpec>;
}

const sub = (entries: [string, CommandSpec][]): ReadonlyMap<string, CommandSpec> => new Map(entries);

/** The commands kvd serves, by lower-case name. HELLO is absent on purpose: kvd speaks RESP2 only. */
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
  ["strlen", { arity: 2, run: cmdStrlen }],
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
  ["ttl", { arity: 2, run: (x, a) => cmdTtl(x, a, false) }],
  ["pttl", { arity: 2, run: (x, a) => cmdTtl(x, a, true) }],
  ["dbsize", { arity: 1, run: (x) => x.conn.put(intReply(x.table.keys)) }],
  ["flushall", { arity: -1, run: cmdFlush }],
  ["flushdb", { arity: -1, run: cmdFlush }],
  ["select", { arity: 2, run: cmdSelect }],
  ["info", { arity: -1, run: cmdInfo }],
  [
    "config",
    {
      arity: -2,
      subcommands: sub([
        ["get", { arity: -3, run: (x, a) => cmdConfig(x, a) }],
        ["set", { arity: -4, run: (x, a) => cmdConfig(x, a) }],
        ["resetstat", { arity: 2, run: (x, a) => cmdConfig(x, a) }],
        ["rewrite", { arity: 2, run: (x, a) => cmdConfig(x, a) }],
        ["help", { arity: 2, run: (x) => helpReply(x, "config") }],
      ]),
    },
  ],
  [
    "command",
    {
      arity: -1,
      run: (x, a) => cmdCommand(x, a, KVD_COMMANDS),
      subcommands: sub([
        ["count", { arity: 2, run: (x, a) => cmdCommand(x, a, KVD_COMMANDS) }],
        ["docs", { arity: -2, run: (x, a) => cmdCommand(x, a, KVD_COMMANDS) }],
        ["info", { arity: -2, run: (x, a) => cmdCommand(x, a, KVD_COMMANDS) }],
        ["list", { arity: -2, run: (x, a) => cmdCommand(x, a, KVD_COMMANDS) }],
        ["help", { arity: 2, run: (x) => helpReply(x, "command") }],
      ]),
    },
  ],
  [
    "client",
    {
      arity: -2,
      subcommands: sub([
        ["id", { arity: 2, run: (x, a) => cmdClient(x, a, COMMAND_NAMES) }],
        ["getname", { arity: 2, run: (x, a) => cmdClient(x, a, COMMAND_NAMES) }],
        ["setname", { arity: 3, run: (x, a) => cmdClient(x, a, COMMAND_NAMES) }],
        ["info", { arity: 2, run: (x, a) => cmdClient(x, a, COMMAND_NAMES) }],
        ["list", { arity: -2, run: (x, a) => cmdClient(x, a, COMMAND_NAMES) }],
        ["help", { arity: 2, run: (x) => helpReply(x, "client") }],
      ]),
    },
  ],
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

/** Every command's full name ("get", "config|get"), in table order: `CN.lastCmd` is 1 + an index here. */
export const COMMAND_NAMES: readonly string[] = fullNames(KVD_COMMANDS);
const NAME_INDEX = new Map(COMMAND_NAMES.map((n, i) => [n, i]));

function lower(b: Buffer): string | undefined {
  return b.length <= 32 ? b.toString("latin1").toLowerCase() : undefined;
}

/**
 * Looks the command up the way Redis 7 does (a container's second argument
 * names the subcommand), checks its arity, records it as the connection's
 * last command (CLIENT LIST's `cmd`, so it shows itself) and runs it.
 */
export function execute(x: Exec, args: Buffer[]): void {
  const name0 = args[0] as Buffer;
  const name = lower(name0);
  let spec = name === undefined ? undefined : KVD_COMMANDS.get(name);
  if (!spec || name === undefined) {
    x.conn.put(unknownCommandReply(args));
    return;
  }
  let full = name;
  if (spec.subcommands && args.length >= 2) {
    const s = lower(args[1] as Buffer);
    const found = s === undefined ? undefined : spec.subcommands.get(s);
    if (!found) {
      const given = (args[1] as Buffer).subarray(0, 128);
      x.conn.put(errorReply(`unknown subcommand '${cstr(given)}'. Try ${name.toUpperCase()} HELP.`));
      return;
    }
    spec = found;
    full = `${name}|${s}`;
  }
  if ((spec.arity > 0 && args.length !== spec.arity) || args.length < -spec.arity || !spec.run) {
    x.conn.put(arityReply(full));
    return;
  }
  x.conn.set(CN.lastCmd, (NAME_INDEX.get(full) as number) + 1);
  spec.run(x, args);
}
