/**
 * kvd's server commands and the smaller commands standard Redis tools send
 * (STRLEN, SELECT, DBSIZE, FLUSHALL/FLUSHDB, HELLO refused, CONFIG, INFO,
 * COMMAND, CLIENT), through real TCP connections to the in-memory guest:
 * exact reply bytes where Redis 7.0's are fixed, structure where a reply is
 * a tree, and state that must live in guest memory (client names, run id,
 * counters) checked on a clone of the domain.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RespParser, type RespValue } from "../../src/client/resp.js";
import { COMMAND_NAMES, KVD_COMMANDS } from "../../src/guest/kvd/commands.js";
import { COMMAND_DOCS } from "../../src/guest/kvd/docs.js";
import { KVD_AOF_FILE, kvdStats, verifyKvdAof } from "../../src/guest/programs/kvd.js";
import { cmd, KvdWorld } from "./kvd-harness.js";

const OK = "+OK\r\n";
const NIL = "$-1\r\n";
const bulk = (v: string): string => `$${Buffer.byteLength(v, "latin1")}\r\n${v}\r\n`;
const arr = (...items: string[]): string => `*${items.length}\r\n${items.join("")}`;
const err = (m: string): string => `-ERR ${m}\r\n`;
const arity = (c: string): string => err(`wrong number of arguments for '${c}' command`);

function parse(bytes: string): RespValue {
  const p = new RespParser();
  p.push(Buffer.from(bytes, "latin1"));
  const v = p.next();
  assert.ok(v, `no complete reply in ${JSON.stringify(bytes.slice(0, 80))}`);
  assert.equal(p.pendingBytes, 0, "exactly one reply");
  return v;
}

/** A reply tree as plain JS: strings, numbers, null, arrays; status lines as "+TEXT". */
function plain(v: RespValue): unknown {
  switch (v.t) {
    case "simple":
      return `+${v.v}`;
    case "error":
      return `-${v.v}`;
    case "int":
      return v.v;
    case "bulk":
      return v.v === null ? null : v.v.toString("latin1");
    case "array":
      return v.v === null ? null : v.v.map(plain);
  }
}

/** A flat [k1, v1, k2, v2...] array as a Map. */
function pairs(a: unknown): Map<string, unknown> {
  assert.ok(Array.isArray(a) && a.length % 2 === 0, `a flat map: ${JSON.stringify(a)}`);
  const m = new Map<string, unknown>();
  for (let i = 0; i < a.length; i += 2) m.set(a[i] as string, a[i + 1]);
  return m;
}

/** INFO's text as section -> field -> value. */
function infoFields(text: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let cur: Map<string, string> | undefined;
  for (const line of text.split("\r\n")) {
    if (line.startsWith("# ")) {
      cur = new Map();
      out.set(line.slice(2), cur);
    } else if (line !== "") {
      const i = line.indexOf(":");
      assert.ok(cur && i > 0, `field line '${line}' inside a section`);
      cur.set(line.slice(0, i), line.slice(i + 1));
    }
  }
  return out;
}

function world(seed: number): { w: KvdWorld; q: (...a: string[]) => string; s: number } {
  const w = new KvdWorld({ seed });
  const s = w.connect();
  return { w, s, q: (...a: string[]) => w.ask(s, cmd(...a)) };
}

describe("kvd: small commands the tools use", () => {
  const { w, q } = world(31);

  it("STRLEN: the value's length in bytes, 0 for a missing key", () => {
    assert.equal(q("STRLEN", "nope"), ":0\r\n");
    q("SET", "k", "hello");
    assert.equal(q("STRLEN", "k"), ":5\r\n");
    assert.equal(w.ask(w.connect(), cmd("SET", "bin", Buffer.from([0, 255, 13, 10]))), OK);
    assert.equal(q("strlen", "bin"), ":4\r\n");
    q("SET", "e", "");
    assert.equal(q("STRLEN", "e"), ":0\r\n");
    assert.equal(q("STRLEN"), arity("strlen"));
    assert.equal(q("STRLEN", "a", "b"), arity("strlen"));
  });

  it("SELECT: database 0 only, refused like a server with `databases 1`", () => {
    assert.equal(q("SELECT", "0"), OK);
    assert.equal(q("SELECT", "1"), err("DB index is out of range"));
    assert.equal(q("SELECT", "-1"), err("DB index is out of range"));
    assert.equal(q("SELECT", "15"), err("DB index is out of range"));
    assert.equal(q("SELECT", "x"), err("value is not an integer or out of range"));
    assert.equal(q("SELECT", "00"), err("value is not an integer or out of range"));
    assert.equal(q("SELECT", "2147483648"), err("value is not an integer or out of range"));
    assert.equal(q("SELECT"), arity("select"));
    // Still database 0.
    assert.equal(q("GET", "k"), bulk("hello"));
  });

  it("DBSIZE, FLUSHDB and FLUSHALL, logged to the AOF", () => {
    q("FLUSHALL");
    q("MSET", "a", "1", "b", "2");
    assert.equal(q("DBSIZE"), ":2\r\n");
    assert.equal(q("FLUSHDB"), OK);
    assert.equal(q("DBSIZE"), ":0\r\n");
    q("SET", "c", "3");
    assert.equal(q("FLUSHDB", "ASYNC"), OK);
    assert.equal(q("FLUSHALL", "sync"), OK);
    assert.equal(q("FLUSHDB", "later"), err("syntax error"));
    assert.equal(q("DBSIZE", "x"), arity("dbsize"));
    const ino = w.k.fs.lookup(KVD_AOF_FILE);
    const aof = w.k.fs.read(ino, 0, w.k.fs.size(ino)).toString("latin1");
    assert.ok(aof.endsWith(cmd("SET", "c", "3").toString() + cmd("FLUSHALL") + cmd("FLUSHALL")));
    const v = verifyKvdAof(w.k);
    assert.ok(v.ok, v.error);
  });

  it("HELLO 2 and HELLO 3 are unknown commands, as on a server that speaks only RESP2", () => {
    assert.equal(q("HELLO", "3"), err("unknown command 'HELLO', with args beginning with: '3' "));
    assert.equal(q("hello", "2"), err("unknown command 'hello', with args beginning with: '2' "));
    assert.equal(
      q("HELLO", "3", "SETNAME", "x"),
      err("unknown command 'HELLO', with args beginning with: '3' 'SETNAME' 'x' "),
    );
    assert.equal(q("HELLO"), err("unknown command 'HELLO', with args beginning with: "));
    // The connection carries on in RESP2.
    assert.equal(q("PING"), "+PONG\r\n");
  });
});

describe("kvd: CONFIG", () => {
  const { w, q } = world(32);
  const maxmemory = String(w.k.pages.pageCount * 4096);

  it("CONFIG GET of the parameters redis-benchmark and monitoring read", () => {
    assert.equal(q("CONFIG", "GET", "save"), arr(bulk("save"), bulk("")));
    assert.equal(q("CONFIG", "GET", "appendonly"), arr(bulk("appendonly"), bulk("yes")));
    assert.equal(q("config", "get", "maxmemory"), arr(bulk("maxmemory"), bulk(maxmemory)));
    assert.equal(q("CONFIG", "GET", "MAXMEMORY"), arr(bulk("maxmemory"), bulk(maxmemory)));
    assert.equal(q("CONFIG", "GET", "databases"), arr(bulk("databases"), bulk("1")));
    assert.equal(q("CONFIG", "GET", "nosuch"), "*0\r\n");
  });

  it("glob patterns match like Redis's (case-insensitive), several patterns, no duplicates", () => {
    const names = (r: string): string[] => [...pairs(plain(parse(r))).keys()];
    assert.deepEqual(names(q("CONFIG", "GET", "*max*")), [
      "maxclients",
      "maxmemory",
      "maxmemory-policy",
      "proto-max-bulk-len",
    ]);
    assert.deepEqual(names(q("CONFIG", "GET", "MAXMEMORY*")), ["maxmemory", "maxmemory-policy"]);
    assert.deepEqual(names(q("CONFIG", "GET", "max?emory")), ["maxmemory"]);
    assert.deepEqual(names(q("CONFIG", "GET", "[st]*")), ["save", "tcp-keepalive", "timeout"]);
    assert.deepEqual(names(q("CONFIG", "GET", "[^a-r]ave")), ["save"]);
    assert.deepEqual(names(q("CONFIG", "GET", "a*", "appendonly", "*only")), [
      "appendfilename",
      "appendfsync",
      "appendonly",
    ]);
    assert.equal(names(q("CONFIG", "GET", "*")).length, 13);
    assert.deepEqual(names(q("CONFIG", "GET", "save", "appendonly")), ["save", "appendonly"]);
  });

  it("CONFIG SET is refused (kvd's parameters are fixed), with Redis's texts", () => {
    assert.equal(
      q("CONFIG", "SET", "save", ""),
      err("CONFIG SET failed (possibly related to argument 'save') - can't set immutable config"),
    );
    assert.equal(
      q("CONFIG", "SET", "nosuch", "1", "save", ""),
      err("Unknown option or number of arguments for CONFIG SET - 'nosuch'"),
    );
    assert.equal(q("CONFIG", "SET", "save"), arity("config|set"));
    assert.equal(q("CONFIG", "SET", "save", "", "appendonly"), arity("config|set"));
    assert.equal(q("CONFIG", "GET", "save"), arr(bulk("save"), bulk("")));
  });

  it("arity, unknown subcommands, REWRITE, HELP", () => {
    assert.equal(q("CONFIG"), arity("config"));
    assert.equal(q("CONFIG", "GET"), arity("config|get"));
    assert.equal(q("CONFIG", "Nope"), err("unknown subcommand 'Nope'. Try CONFIG HELP."));
    assert.equal(q("CONFIG", "REWRITE"), err("The server is running without a config file"));
    const help = plain(parse(q("CONFIG", "HELP"))) as string[];
    assert.ok(help.length > 4 && help.every((l) => l.startsWith("+")));
    assert.ok(help.some((l) => l.startsWith("+GET ")));
  });

  it("CONFIG RESETSTAT zeroes INFO's counters", () => {
    q("GET", "x");
    assert.equal(q("CONFIG", "RESETSTAT"), OK);
    const info = infoFields(plain(parse(q("INFO", "stats"))) as string);
    // RESETSTAT itself ran before the reset; INFO is the first command after it.
    assert.equal(info.get("Stats")?.get("keyspace_misses"), "0");
    assert.equal(info.get("Stats")?.get("total_connections_received"), "0");
    assert.equal(info.get("Stats")?.get("total_commands_processed"), "1");
  });
});

describe("kvd: INFO", () => {
  it("the default sections, in Redis's format, from guest memory", () => {
    const { w, q } = world(33);
    const raw = plain(parse(q("INFO"))) as string;
    assert.ok(raw.startsWith("# Server\r\nredis_version:7.0.0\r\n"), raw.slice(0, 60));
    assert.ok(raw.includes("\r\n\r\n# Clients\r\n"));
    assert.ok(raw.endsWith("\r\n"));
    const info = infoFields(raw);
    assert.deepEqual(
      [...info.keys()],
      ["Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "Cluster", "Keyspace"],
    );
    const server = info.get("Server") as Map<string, string>;
    assert.match(server.get("run_id") as string, /^[0-9a-f]{40}$/);
    assert.equal(server.get("tcp_port"), "6379");
    assert.equal(info.get("Clients")?.get("connected_clients"), "1");
    assert.equal(info.get("Memory")?.get("used_memory"), String(w.k.heap.bytesInUse));
    assert.equal(info.get("Memory")?.get("maxmemory"), String(w.k.pages.pageCount * 4096));
    assert.equal(info.get("Persistence")?.get("aof_enabled"), "1");
    assert.equal(info.get("Persistence")?.get("aof_last_write_status"), "ok");
    assert.equal(info.get("Replication")?.get("role"), "master");
    assert.equal(info.get("Cluster")?.get("cluster_enabled"), "0");
    // An empty keyspace has a header and no db line, as in Redis.
    assert.equal(info.get("Keyspace")?.size, 0);
  });

  it("sections by name, counters, keyspace, uptime on the guest clock", () => {
    const { w, q } = world(34);
    q("SET", "a", "1");
    q("SET", "b", "2", "PX", "100000");
    q("GET", "a");
    q("GET", "missing");
    q("STRLEN", "a");
    assert.equal(q("INFO", "keyspace"), bulk("# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n"));
    const stats = infoFields(plain(parse(q("INFO", "STATS"))) as string).get("Stats") as Map<string, string>;
    assert.equal(stats.get("keyspace_hits"), "2");
    assert.equal(stats.get("keyspace_misses"), "1");
    // INFO does not count itself (Redis counts a command once it has run).
    assert.equal(stats.get("total_commands_processed"), String((kvdStats(w.k)?.commands ?? 0) - 1));
    assert.equal(stats.get("total_connections_received"), "1");
    const two = infoFields(plain(parse(q("INFO", "server", "clients"))) as string);
    assert.deepEqual([...two.keys()], ["Server", "Clients"]);
    assert.equal(q("INFO", "nosuch"), bulk(""));
    const up = (): number =>
      Number(
        infoFields(plain(parse(q("INFO", "server"))) as string)
          .get("Server")
          ?.get("uptime_in_seconds"),
      );
    const before = up();
    w.run(3000);
    assert.equal(up(), before + 3);
  });

  it("expired keys are counted", () => {
    const { w, q } = world(35);
    q("SET", "t", "1", "PX", "5");
    w.run(20);
    assert.equal(q("GET", "t"), NIL);
    const stats = infoFields(plain(parse(q("INFO", "stats"))) as string).get("Stats");
    assert.equal(stats?.get("expired_keys"), "1");
  });
});

describe("kvd: COMMAND", () => {
  const { q } = world(36);

  it("documents exactly the commands it serves", () => {
    assert.deepEqual(Object.keys(COMMAND_DOCS).sort(), [...COMMAND_NAMES].sort());
    assert.ok(!KVD_COMMANDS.has("hello"));
  });

  it("COMMAND COUNT and COMMAND LIST (with FILTERBY)", () => {
    assert.equal(q("COMMAND", "COUNT"), `:${KVD_COMMANDS.size}\r\n`);
    const list = plain(parse(q("COMMAND", "LIST"))) as string[];
    assert.deepEqual(list, [...COMMAND_NAMES]);
    assert.ok(list.includes("get") && list.includes("config|get") && list.includes("client|setname"));
    assert.deepEqual(plain(parse(q("COMMAND", "LIST", "FILTERBY", "PATTERN", "c*|[gs]et*"))), [
      "config|get",
      "config|set",
      "client|getname",
      "client|setname",
    ]);
    const read = plain(parse(q("COMMAND", "LIST", "FILTERBY", "ACLCAT", "read"))) as string[];
    assert.deepEqual(read, ["get", "strlen", "exists", "mget", "ttl", "pttl", "dbsize"]);
    assert.equal(q("COMMAND", "LIST", "FILTERBY", "MODULE", "x"), "*0\r\n");
    assert.equal(q("COMMAND", "LIST", "FILTERBY", "COLOR", "x"), err("syntax error"));
    assert.equal(q("COMMAND", "LIST", "junk"), err("syntax error"));
  });

  it("COMMAND INFO: arity, flags, key positions, ACL categories, key specs, subcommands", () => {
    const [get, none, mset] = plain(parse(q("COMMAND", "INFO", "get", "nosuch", "MSET"))) as unknown[][];
    assert.deepEqual(get, [
      "get",
      2,
      ["+readonly", "+fast"],
      1,
      1,
      1,
      ["+@read", "+@string", "+@fast"],
      [],
      [
        [
          "flags",
          ["+RO", "+ACCESS"],
          "begin_search",
          ["type", "index", "spec", ["index", 1]],
          "find_keys",
          ["type", "range", "spec", ["lastkey", 0, "keystep", 1, "limit", 0]],
        ],
      ],
      [],
    ]);
    assert.equal(none, null);
    assert.deepEqual(mset?.slice(0, 6), ["mset", -3, ["+write", "+denyoom"], 1, -1, 2]);
    const [config] = plain(parse(q("COMMAND", "INFO", "config"))) as unknown[][];
    const subs = config?.[9] as unknown[][];
    assert.deepEqual(
      subs.map((s) => [s[0], s[1]]),
      [
        ["config|get", -3],
        ["config|set", -4],
        ["config|resetstat", 2],
        ["config|rewrite", 2],
        ["config|help", 2],
      ],
    );
    assert.equal((plain(parse(q("COMMAND", "INFO", "config|get"))) as unknown[][])[0]?.[0], "config|get");
    const all = plain(parse(q("COMMAND"))) as unknown[][];
    assert.equal(all.length, KVD_COMMANDS.size);
    assert.ok(all.every((c) => c.length === 10));
  });

  it("COMMAND DOCS: the tree redis-cli builds its help from", () => {
    const docs = pairs(plain(parse(q("COMMAND", "DOCS", "set", "nosuch", "client"))));
    assert.deepEqual([...docs.keys()], ["set", "client"]);
    const set = pairs(docs.get("set"));
    assert.equal(set.get("since"), "1.0.0");
    assert.equal(set.get("group"), "string");
    const args = (set.get("arguments") as unknown[]).map(pairs);
    assert.deepEqual(
      args.map((a) => a.get("name")),
      ["key", "value", "condition", "get", "expiration"],
    );
    assert.equal(args[0]?.get("key_spec_index"), 0);
    assert.deepEqual(args[2]?.get("flags"), ["+optional"]);
    assert.equal(args[3]?.get("token"), "GET");
    const exp = ((args[4] as Map<string, unknown>).get("arguments") as unknown[]).map(pairs);
    assert.deepEqual(
      exp.map((a) => [a.get("token"), a.get("type")]),
      [
        ["EX", "integer"],
        ["PX", "integer"],
        ["EXAT", "unix-time"],
        ["PXAT", "unix-time"],
        ["KEEPTTL", "pure-token"],
      ],
    );
    const client = pairs(docs.get("client"));
    const subs = pairs(client.get("subcommands"));
    assert.ok(subs.has("client|setname"));
    assert.equal(pairs(subs.get("client|setname")).get("since"), "2.6.9");
    const all = pairs(plain(parse(q("COMMAND", "DOCS"))));
    assert.equal(all.size, KVD_COMMANDS.size);
  });

  it("arity and unknown subcommands", () => {
    assert.equal(q("COMMAND", "COUNT", "x"), arity("command|count"));
    assert.equal(q("COMMAND", "GETKEYS", "get", "k"), err("unknown subcommand 'GETKEYS'. Try COMMAND HELP."));
    assert.ok((plain(parse(q("COMMAND", "HELP"))) as string[]).length > 4);
  });
});

describe("kvd: CLIENT", () => {
  it("ID, SETNAME, GETNAME, INFO and LIST, per connection", () => {
    const { w, q, s } = world(37);
    const s2 = w.connect();
    const q2 = (...a: string[]): string => w.ask(s2, cmd(...a));
    assert.equal(q("CLIENT", "ID"), ":1\r\n");
    assert.equal(q2("client", "id"), ":2\r\n");
    assert.equal(q("CLIENT", "GETNAME"), NIL);
    assert.equal(q("CLIENT", "SETNAME", "loader-1"), OK);
    assert.equal(q("CLIENT", "GETNAME"), bulk("loader-1"));
    assert.equal(q2("CLIENT", "GETNAME"), NIL);
    assert.equal(
      q("CLIENT", "SETNAME", "a b"),
      err("Client names cannot contain spaces, newlines or special characters."),
    );
    assert.equal(
      q("CLIENT", "SETNAME", "tab\there"),
      err("Client names cannot contain spaces, newlines or special characters."),
    );
    assert.equal(q("CLIENT", "GETNAME"), bulk("loader-1"));
    const info = plain(parse(q("CLIENT", "INFO"))) as string;
    assert.match(
      info,
      /^id=1 addr=10\.0\.0\.100:\d+ laddr=10\.0\.0\.10:6379 fd=\d+ name=loader-1 age=0 idle=0 flags=N db=0 /,
    );
    assert.match(info, / cmd=client\|info user=default redir=-1 resp=2\n$/);
    const list = (plain(parse(q2("CLIENT", "LIST"))) as string).split("\n");
    assert.equal(list.length, 3);
    assert.match(list[0] as string, /^id=1 .* name=loader-1 .* cmd=client\|info /);
    assert.match(list[1] as string, /^id=2 .* name= .* cmd=client\|list /);
    assert.equal(list[2], "");
    const only2 = plain(parse(q("CLIENT", "LIST", "ID", "2", "99"))) as string;
    assert.match(only2, /^id=2 [^\n]*\n$/);
    assert.match(plain(parse(q("CLIENT", "LIST", "TYPE", "normal"))) as string, /^id=1 .*\nid=2 .*\n$/);
    assert.equal(q("CLIENT", "LIST", "TYPE", "pubsub"), bulk(""));
    assert.equal(q("CLIENT", "LIST", "TYPE", "bogus"), err("Unknown client type 'bogus'"));
    assert.equal(q("CLIENT", "LIST", "ID", "0"), err("Invalid client ID"));
    assert.equal(q("CLIENT", "LIST", "ID", "x"), err("Invalid client ID"));
    assert.equal(q("CLIENT", "LIST", "junk"), err("syntax error"));
    assert.equal(q("CLIENT"), arity("client"));
    assert.equal(q("CLIENT", "SETNAME"), arity("client|setname"));
    assert.equal(q("CLIENT", "KILL", "x"), err("unknown subcommand 'KILL'. Try CLIENT HELP."));
    assert.equal(q("CLIENT", "SETNAME", ""), OK);
    assert.equal(q("CLIENT", "GETNAME"), NIL);
    assert.equal(w.ask(s, cmd("CLIENT", "SETNAME", "again")), OK);
  });

  it("a name lives in guest memory: a restored domain still has it, clearing or closing frees it", () => {
    const w = new KvdWorld({ seed: 38 });
    const baseline = w.k.heap.bytesInUse;
    const s = w.connect();
    const q = (...a: string[]): string => w.ask(s, cmd(...a));
    q("PING");
    const unnamed = w.k.heap.bytesInUse;
    assert.equal(q("CLIENT", "SETNAME", "x".repeat(3000)), OK);
    assert.equal(w.k.heap.bytesInUse - unnamed, 4096, "a 3000-byte name takes one page of the guest heap");
    const b = w.clone();
    assert.equal(b.ask(s, cmd("CLIENT", "GETNAME")), bulk("x".repeat(3000)));
    assert.equal(b.ask(s, cmd("CLIENT", "ID")), ":1\r\n");
    // The clone's run id is the original's: same domain, same server.
    const runId = (x: KvdWorld): string | undefined =>
      infoFields(plain(parse(x.ask(s, cmd("INFO", "server")))) as string)
        .get("Server")
        ?.get("run_id");
    assert.equal(runId(b), runId(w));
    assert.equal(b.ask(s, cmd("CLIENT", "SETNAME", "")), OK);
    assert.equal(b.k.heap.bytesInUse, unnamed);
    // Closed with its name: the block, buffers and name go back, and the socket after TIME_WAIT.
    q("QUIT");
    w.untilClosed(s);
    w.run(12_000, () => w.k.heap.bytesInUse === baseline);
    assert.equal(kvdStats(w.k)?.connections, 0);
    assert.equal(w.k.heap.bytesInUse, baseline);
  });
});
