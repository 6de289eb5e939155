/**
 * kvd's server commands, the ones standard tools send before or around their
 * work: CONFIG (GET with Redis's glob patterns, SET refused as for immutable
 * parameters, RESETSTAT, REWRITE, HELP), INFO (the sections and fields
 * redis-cli and monitoring read), COMMAND (INFO, DOCS, COUNT, LIST) and
 * CLIENT (ID, GETNAME, SETNAME, INFO, LIST). Every value comes from guest
 * memory (kvd's state block, its connection blocks, the kernel heap) or from
 * static program text (the parameter table below, docs.ts): nothing is kept
 * in JavaScript between calls, so a restored domain answers the same.
 */
import { formatIpv4 } from "../../net/wire.js";
import type { CommandSpec } from "./commands.js";
import { Conn } from "./conn.js";
import { type ArgDoc, COMMAND_DOCS, type CommandDoc } from "./docs.js";
import { type Exec, oom, option, reply } from "./exec.js";
import {
  CN,
  CN_SIZE,
  KF,
  KS,
  KVD_AOF_FILE,
  KVD_MAX_BULK,
  KVD_MAX_CLIENTS,
  KVD_MAX_QUERY,
  RUN_ID_BYTES,
} from "./layout.js";
import { arityReply, bulkReply, cstr, errorReply, intReply, REPLY } from "./proto.js";

/** The Redis version whose commands, replies and error texts kvd follows. */
export const REDIS_COMPAT_VERSION = "7.0.0";

// ---------------------------------------------------------------------------
// Reply encoding

/** A RESP2 reply tree: a bulk string, an integer, nil, a status line, or an array. */
type Resp = string | Buffer | number | null | { readonly status: string } | readonly Resp[];

function encode(v: Resp, out: Buffer[]): void {
  if (v === null) out.push(REPLY.nil);
  else if (typeof v === "number") out.push(intReply(v));
  else if (typeof v === "string") out.push(bulkReply(Buffer.from(v, "latin1")));
  else if (Buffer.isBuffer(v)) out.push(bulkReply(v));
  else if (Array.isArray(v)) {
    out.push(Buffer.from(`*${v.length}\r\n`));
    for (const e of v) encode(e, out);
  } else out.push(Buffer.from(`+${(v as { status: string }).status}\r\n`, "latin1"));
}

function replyTree(x: Exec, v: Resp): void {
  const out: Buffer[] = [];
  encode(v, out);
  reply(x, Buffer.concat(out));
}

const status = (s: string): { status: string } => ({ status: s });

// ---------------------------------------------------------------------------
// Glob patterns

function lowerByte(c: number, nocase: boolean): number {
  return nocase && c >= 0x41 && c <= 0x5a ? c + 32 : c;
}

/**
 * Redis's glob matching (its stringmatchlen): `*` any run, `?` one byte,
 * `[abc]`, `[^abc]`, `[a-z]` (a reversed range counts), `\x` a literal x.
 */
export function globMatch(p: Uint8Array, s: Uint8Array, nocase: boolean): boolean {
  return matchFrom(p, 0, s, 0, nocase);
}

function matchFrom(p: Uint8Array, pi: number, s: Uint8Array, si: number, nocase: boolean): boolean {
  while (pi < p.length && si <= s.length) {
    const c = p[pi] as number;
    if (c === 0x2a) {
      while (pi + 1 < p.length && p[pi + 1] === 0x2a) pi++;
      if (pi + 1 === p.length) return true;
      for (let k = si; k <= s.length; k++) if (matchFrom(p, pi + 1, s, k, nocase)) return true;
      return false;
    }
    if (si === s.length) return false;
    const sc = lowerByte(s[si] as number, nocase);
    if (c === 0x3f) {
      // any one byte
    } else if (c === 0x5b) {
      pi++;
      const not = p[pi] === 0x5e;
      if (not) pi++;
      let match = false;
      for (;;) {
        if (pi >= p.length) {
          pi--; // an unterminated set ends the pattern
          break;
        }
        const pc = p[pi] as number;
        if (pc === 0x5d) break;
        if (pc === 0x5c && pi + 1 < p.length) {
          pi++;
          if (lowerByte(p[pi] as number, nocase) === sc) match = true;
        } else if (pi + 2 < p.length && p[pi + 1] === 0x2d) {
          let lo = lowerByte(pc, nocase);
          let hi = lowerByte(p[pi + 2] as number, nocase);
          if (lo > hi) [lo, hi] = [hi, lo];
          pi += 2;
          if (sc >= lo && sc <= hi) match = true;
        } else if (lowerByte(pc, nocase) === sc) {
          match = true;
        }
        pi++;
      }
      if (not) match = !match;
      if (!match) return false;
    } else {
      let lit = c;
      if (c === 0x5c && pi + 1 < p.length) lit = p[++pi] as number;
      if (lowerByte(lit, nocase) !== sc) return false;
    }
    pi++;
    si++;
  }
  while (pi < p.length && p[pi] === 0x2a) pi++;
  return pi === p.length && si === s.length;
}

function hasGlob(b: Uint8Array): boolean {
  return b.some((c) => c === 0x2a || c === 0x3f || c === 0x5b);
}

// ---------------------------------------------------------------------------
// CONFIG

/** kvd's configuration parameters as CONFIG GET reports them: fixed by its design, some read from guest memory. */
const CONFIG_PARAMS: readonly [string, (x: Exec) => string][] = [
  ["appendfilename", () => KVD_AOF_FILE],
  // Each write is appended before its reply leaves, and replicated with the checkpoint that holds it.
  ["appendfsync", () => "always"],
  ["appendonly", () => "yes"],
  ["client-query-buffer-limit", () => String(KVD_MAX_QUERY)],
  ["databases", () => "1"],
  ["maxclients", () => String(KVD_MAX_CLIENTS)],
  // The guest's memory is the limit: writes get -OOM when its heap is exhausted.
  ["maxmemory", (x) => String(maxMemory(x))],
  ["maxmemory-policy", () => "noeviction"],
  ["port", (x) => String(x.k.mem.u32(x.st + KS.port))],
  ["proto-max-bulk-len", () => String(KVD_MAX_BULK)],
  // No RDB snapshots: the append-only file is kvd's only persistence.
  ["save", () => ""],
  ["tcp-keepalive", () => "0"],
  ["timeout", () => "0"],
];
const CONFIG_BY_NAME = new Map(CONFIG_PARAMS);

function maxMemory(x: Exec): number {
  return x.k.pages.pageCount * 4096;
}

const HELP: Readonly<Record<string, readonly string[]>> = {
  config: [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern> [<pattern> ...]",
    "    Return the parameters matching the glob-like patterns and their values.",
    "SET <directive> <value> [<directive> <value> ...]",
    "    Refused: kvd's parameters are fixed.",
    "RESETSTAT",
    "    Reset the counters reported by INFO.",
    "REWRITE",
    "    Refused: kvd has no configuration file.",
    "HELP",
    "    Print this help.",
  ],
  command: [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about the given commands, or all of them.",
    "INFO [<command-name> ...]",
    "    Return details about the given commands, or all of them.",
    "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
    "    Return a list of all command names, or those matching the filter.",
    "HELP",
    "    Print this help.",
  ],
  client: [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current connection.",
    "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
    "    Return information about client connections.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Print this help.",
  ],
};

/** The HELP subcommand of a container. */
export function helpReply(x: Exec, container: string): void {
  replyTree(x, (HELP[container] ?? []).map(status));
}

export function cmdConfig(x: Exec, a: Buffer[]): void {
  const sub = option(a[1] as Buffer);
  const m = x.k.mem;
  if (sub === "get") {
    const found = new Map<string, string>();
    for (let i = 2; i < a.length; i++) {
      const pat = a[i] as Buffer;
      if (!hasGlob(pat)) {
        const name = pat.toString("latin1").toLowerCase();
        const get = CONFIG_BY_NAME.get(name);
        if (get && !found.has(name)) found.set(name, get(x));
        continue;
      }
      for (const [name, get] of CONFIG_PARAMS) {
        if (!found.has(name) && globMatch(pat, Buffer.from(name, "latin1"), true)) found.set(name, get(x));
      }
    }
    replyTree(x, [...found].flat());
  } else if (sub === "set") {
    if (a.length % 2 !== 0) {
      x.conn.put(arityReply("config|set"));
      return;
    }
    // Redis reports the first offending parameter: unknown, or (all of kvd's) immutable.
    const name = cstr((a[2] as Buffer).subarray(0, 128));
    if (!CONFIG_BY_NAME.has(name.toLowerCase())) {
      x.conn.put(errorReply(`Unknown option or number of arguments for CONFIG SET - '${name}'`));
    } else {
      x.conn.put(
        errorReply(`CONFIG SET failed (possibly related to argument '${name}') - can't set immutable config`),
      );
    }
  } else if (sub === "resetstat") {
    for (const off of [KS.commands, KS.accepted, KS.rejected, KS.expiredKeys, KS.hits, KS.misses]) {
      m.setU64(x.st + off, 0);
    }
    x.conn.put(REPLY.ok);
  } else {
    x.conn.put(errorReply("The server is running without a config file"));
  }
}

// ---------------------------------------------------------------------------
// INFO

/** Redis's bytesToHuman. */
function human(n: number): string {
  if (n < 1024) return `${n}B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(2)}K`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(2)}M`;
  if (n < 1024 ** 4) return `${(n / 1024 ** 3).toFixed(2)}G`;
  return `${(n / 1024 ** 4).toFixed(2)}T`;
}

function runId(x: Exec): string {
  return x.k.mem.read(x.st + KS.runId, RUN_ID_BYTES).toString("hex");
}

const INFO_SECTIONS: readonly [string, (x: Exec) => [string, string | number][]][] = [
  [
    "Server",
    (x) => {
      const m = x.k.mem;
      const up = Math.floor((x.now - m.u64(x.st + KS.startMs)) / 1000);
      return [
        ["redis_version", REDIS_COMPAT_VERSION],
        ["redis_mode", "standalone"],
        ["os", "remusd guest"],
        ["arch_bits", 64],
        ["process_id", x.pid],
        ["run_id", runId(x)],
        // Read from the device block: it changes when this domain may have been duplicated (device.ts).
        ["vm_generation_id", x.k.domain.device.generationId.toString("hex")],
        ["tcp_port", m.u32(x.st + KS.port)],
        ["server_time_usec", x.now * 1000],
        ["uptime_in_seconds", up],
        ["uptime_in_days", Math.floor(up / 86400)],
        ["config_file", ""],
      ];
    },
  ],
  [
    "Clients",
    (x) => [
      ["connected_clients", x.k.mem.u32(x.st + KS.connCount)],
      ["maxclients", KVD_MAX_CLIENTS],
      ["blocked_clients", 0],
      ["tracking_clients", 0],
      ["clients_in_timeout_table", 0],
    ],
  ],
  [
    "Memory",
    (x) => {
      const used = x.k.heap.bytesInUse;
      const max = maxMemory(x);
      return [
        ["used_memory", used],
        ["used_memory_human", human(used)],
        ["maxmemory", max],
        ["maxmemory_human", human(max)],
        ["maxmemory_policy", "noeviction"],
        ["mem_allocator", "guest-heap"],
      ];
    },
  ],
  [
    "Persistence",
    (x) => {
      const m = x.k.mem;
      const err = (m.u32(x.st + KS.flags) & KF.AOF_WRITE_ERR) !== 0;
      return [
        ["loading", 0],
        ["async_loading", 0],
        ["rdb_bgsave_in_progress", 0],
        ["rdb_last_bgsave_status", "ok"],
        ["aof_enabled", 1],
        ["aof_rewrite_in_progress", 0],
        ["aof_rewrite_scheduled", 0],
        ["aof_last_write_status", err ? "err" : "ok"],
        ["aof_current_size", m.u64(x.st + KS.aofBytes)],
      ];
    },
  ],
  [
    "Stats",
    (x) => {
      const m = x.k.mem;
      const u = (off: number): number => m.u64(x.st + off);
      return [
        ["total_connections_received", u(KS.accepted)],
        ["total_commands_processed", u(KS.commands)],
        ["rejected_connections", u(KS.rejected)],
        ["expired_keys", u(KS.expiredKeys)],
        ["evicted_keys", 0],
        ["keyspace_hits", u(KS.hits)],
        ["keyspace_misses", u(KS.misses)],
      ];
    },
  ],
  [
    // kvd is a lone master inside the guest: remusd replicates the whole domain beneath it.
    "Replication",
    () => [
      ["role", "master"],
      ["connected_slaves", 0],
    ],
  ],
  ["Cluster", () => [["cluster_enabled", 0]]],
  [
    "Keyspace",
    (x) =>
      x.table.keys === 0 ? [] : [["db0", `keys=${x.table.keys},expires=${x.table.volatileKeys},avg_ttl=0`]],
  ],
];

export function cmdInfo(x: Exec, a: Buffer[]): void {
  const want = new Set<string>();
  if (a.length === 1) want.add("default");
  for (let i = 1; i < a.length; i++) want.add((a[i] as Buffer).toString("latin1").toLowerCase());
  const all = want.has("default") || want.has("all") || want.has("everything");
  const parts: string[] = [];
  for (const [name, fields] of INFO_SECTIONS) {
    if (!all && !want.has(name.toLowerCase())) continue;
    const lines = fields(x).map(([k, v]) => `${k}:${v}\r\n`);
    parts.push(`# ${name}\r\n${lines.join("")}`);
  }
  reply(x, bulkReply(Buffer.from(parts.join("\r\n"), "latin1")));
}

// ---------------------------------------------------------------------------
// COMMAND

/** Every command's full name ("get", "config|get"), in table order. */
export function fullNames(table: ReadonlyMap<string, CommandSpec>): string[] {
  return [...table].flatMap(([name, spec]) => [
    name,
    ...[...(spec.subcommands?.keys() ?? [])].map((s) => `${name}|${s}`),
  ]);
}

function docOf(full: string): CommandDoc {
  const d = COMMAND_DOCS[full];
  if (!d) throw new Error(`kvd: no documentation for command '${full}'`);
  return d;
}

function keySpecs(d: CommandDoc): Resp[] {
  if (!d.keys) return [];
  return [
    [
      "flags",
      d.keys.flags.map(status),
      "begin_search",
      ["type", "index", "spec", ["index", d.keys.first]],
      "find_keys",
      ["type", "range", "spec", ["lastkey", d.keys.last, "keystep", d.keys.step, "limit", 0]],
    ],
  ];
}

function commandInfo(full: string, spec: CommandSpec): Resp {
  const d = docOf(full);
  const k = d.keys;
  return [
    full,
    spec.arity,
    d.flags.map(status),
    k ? k.first : 0,
    k ? (k.last < 0 ? k.last : k.first + k.last) : 0,
    k ? k.step : 0,
    d.acl.map(status),
    [],
    keySpecs(d),
    [...(spec.subcommands ?? [])].map(([s, ss]) => commandInfo(`${full}|${s}`, ss)),
  ];
}

function argDocs(args: readonly ArgDoc[], keyArgs: boolean): Resp[] {
  return args.map((g) => {
    const out: Resp[] = ["name", g.name, "type", g.type];
    if (g.type === "key" && keyArgs) out.push("key_spec_index", 0);
    if (g.token !== undefined) out.push("token", g.token);
    const flags = [...(g.optional ? ["optional"] : []), ...(g.multiple ? ["multiple"] : [])];
    if (flags.length > 0) out.push("flags", flags.map(status));
    if (g.args) out.push("arguments", argDocs(g.args, keyArgs));
    return out;
  });
}

function commandDocs(full: string, spec: CommandSpec): Resp {
  const d = docOf(full);
  const out: Resp[] = ["summary", d.summary, "since", d.since, "group", d.group, "complexity", d.complexity];
  if (d.args) out.push("arguments", argDocs(d.args, d.keys !== undefined));
  if (spec.subcommands) {
    out.push(
      "subcommands",
      [...spec.subcommands].flatMap(([s, ss]) => [`${full}|${s}`, commandDocs(`${full}|${s}`, ss)]),
    );
  }
  return out;
}

/** A command by name as COMMAND INFO/DOCS take it: "get" or "config|get", any case. */
function findCommand(table: ReadonlyMap<string, CommandSpec>, b: Buffer): [string, CommandSpec] | undefined {
  const name = b.toString("latin1").toLowerCase();
  const bar = name.indexOf("|");
  if (bar < 0) {
    const s = table.get(name);
    return s ? [name, s] : undefined;
  }
  const s = table.get(name.slice(0, bar))?.subcommands?.get(name.slice(bar + 1));
  return s ? [name, s] : undefined;
}

export function cmdCommand(x: Exec, a: Buffer[], table: ReadonlyMap<string, CommandSpec>): void {
  if (a.length === 1) {
    replyTree(
      x,
      [...table].map(([n, s]) => commandInfo(n, s)),
    );
    return;
  }
  const sub = option(a[1] as Buffer);
  const names = a.slice(2);
  if (sub === "count") {
    x.conn.put(intReply(table.size));
  } else if (sub === "info") {
    const list = names.length === 0 ? [...table] : names.map((n) => findCommand(table, n));
    replyTree(
      x,
      list.map((f) => (f ? commandInfo(f[0], f[1]) : null)),
    );
  } else if (sub === "docs") {
    const list = names.length === 0 ? [...table] : names.map((n) => findCommand(table, n));
    replyTree(
      x,
      list.flatMap((f) => (f ? [f[0], commandDocs(f[0], f[1])] : [])),
    );
  } else {
    commandList(x, names, fullNames(table));
  }
}

function commandList(x: Exec, a: Buffer[], all: readonly string[]): void {
  if (a.length === 0) {
    replyTree(x, [...all]);
    return;
  }
  if (a.length !== 3 || option(a[0] as Buffer) !== "filterby") {
    x.conn.put(REPLY.syntax);
    return;
  }
  const by = option(a[1] as Buffer);
  const arg = a[2] as Buffer;
  let names: string[];
  if (by === "pattern") {
    names = all.filter((n) => globMatch(arg, Buffer.from(n, "latin1"), true));
  } else if (by === "aclcat") {
    const cat = `@${arg.toString("latin1").toLowerCase()}`;
    names = all.filter((n) => docOf(n).acl.includes(cat));
  } else if (by === "module") {
    names = []; // kvd loads no modules
  } else {
    x.conn.put(REPLY.syntax);
    return;
  }
  replyTree(x, names);
}

// ---------------------------------------------------------------------------
// CLIENT

/** One CLIENT LIST line (Redis's field names; the fields kvd has). */
function clientLine(x: Exec, conn: Conn, names: readonly string[]): string {
  const m = x.k.mem;
  const sock = conn.sock;
  const info = x.stack.info(sock);
  const u64 = (off: number): number => m.u64(conn.c + off);
  const last = conn.get(CN.lastCmd);
  const inLen = conn.get(CN.inLen);
  const mem = CN_SIZE + conn.get(CN.inCap) + conn.get(CN.outCap) + conn.get(CN.nameLen);
  return [
    `id=${u64(CN.id)}`,
    `addr=${formatIpv4(info.remoteIp)}:${info.remotePort}`,
    `laddr=${formatIpv4(x.stack.ip)}:${info.localPort}`,
    `fd=${sock}`,
    `name=${conn.name.toString("latin1")}`,
    `age=${Math.floor((x.now - u64(CN.createdMs)) / 1000)}`,
    `idle=${Math.floor((x.now - u64(CN.lastMs)) / 1000)}`,
    "flags=N",
    "db=0",
    "sub=0",
    "psub=0",
    "multi=-1",
    `qbuf=${inLen}`,
    `qbuf-free=${conn.get(CN.inCap) - inLen}`,
    `omem=${conn.outLen}`,
    `tot-mem=${mem}`,
    "events=r",
    `cmd=${last === 0 ? "NULL" : names[last - 1]}`,
    "user=default",
    "redir=-1",
    "resp=2",
  ].join(" ");
}

function clientList(x: Exec, a: Buffer[], names: readonly string[]): void {
  let ids: Set<number> | undefined;
  let normal = true;
  if (a.length === 4 && option(a[2] as Buffer) === "type") {
    const t = option(a[3] as Buffer);
    if (!["normal", "master", "replica", "slave", "pubsub"].includes(t)) {
      x.conn.put(errorReply(`Unknown client type '${cstr((a[3] as Buffer).subarray(0, 128))}'`));
      return;
    }
    normal = t === "normal"; // every kvd connection is a normal client
  } else if (a.length > 3 && option(a[2] as Buffer) === "id") {
    ids = new Set();
    for (let i = 3; i < a.length; i++) {
      const v = Number((a[i] as Buffer).toString("latin1"));
      if (!/^[0-9]+$/.test((a[i] as Buffer).toString("latin1")) || v < 1 || !Number.isSafeInteger(v)) {
        x.conn.put(errorReply("Invalid client ID"));
        return;
      }
      ids.add(v);
    }
  } else if (a.length !== 2) {
    x.conn.put(REPLY.syntax);
    return;
  }
  const m = x.k.mem;
  let text = "";
  if (normal) {
    for (let slot = 0; slot < KVD_MAX_CLIENTS; slot++) {
      const c = m.u32(x.st + KS.conns + slot * 4);
      if (c === 0) continue;
      const conn = new Conn(m, x.k.heap, c);
      if (ids && !ids.has(m.u64(c + CN.id))) continue;
      text += `${clientLine(x, conn, names)}\n`;
    }
  }
  reply(x, bulkReply(Buffer.from(text, "latin1")));
}

/** CLIENT's subcommands; `names` are the full command names `CN.lastCmd` indexes. */
export function cmdClient(x: Exec, a: Buffer[], names: readonly string[]): void {
  const sub = option(a[1] as Buffer);
  const conn = x.conn;
  if (sub === "id") {
    x.conn.put(intReply(x.k.mem.u64(conn.c + CN.id)));
  } else if (sub === "getname") {
    const name = conn.name;
    if (name.length === 0) x.conn.put(REPLY.nil);
    else reply(x, bulkReply(name));
  } else if (sub === "setname") {
    const name = a[2] as Buffer;
    // Like Redis: printable ASCII without spaces, so that CLIENT LIST stays parseable.
    if (name.some((c) => c < 0x21 || c > 0x7e)) {
      x.conn.put(errorReply("Client names cannot contain spaces, newlines or special characters."));
    } else if (!conn.setName(name)) {
      oom(x);
    } else {
      x.conn.put(REPLY.ok);
    }
  } else if (sub === "info") {
    reply(x, bulkReply(Buffer.from(`${clientLine(x, conn, names)}\n`, "latin1")));
  } else {
    clientList(x, a, names);
  }
}
