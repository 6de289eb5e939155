/**
 * kvd through real TCP connections: exact reply bytes for every command and
 * error case (Redis 7's wording), pipelining, requests split anywhere, big
 * values, expiry on the guest clock, protocol errors, limits, backpressure,
 * the AOF's content and its agreement with memory.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { bootGuest, KVD_PROGRAM_ID as GUEST_KVD_ID } from "../../src/guest/guest.js";
import { Heap } from "../../src/guest/mm.js";
import {
  KVD_AOF_FILE,
  KVD_MAX_BULK,
  KVD_MAX_CLIENTS,
  KVD_PROGRAM_ID,
  kvdSnapshot,
  kvdStats,
  verifyKvdAof,
} from "../../src/guest/programs/kvd.js";
import { parseWorkload } from "../../src/guest/workload.js";
import { cmd, GUEST, KvdWorld } from "./kvd-harness.js";

function aofText(w: KvdWorld): string {
  const ino = w.k.fs.lookup(KVD_AOF_FILE);
  return w.k.fs.read(ino, 0, w.k.fs.size(ino)).toString("latin1");
}

function assertAof(w: KvdWorld): void {
  const v = verifyKvdAof(w.k);
  assert.ok(v.ok, v.error);
}

/** Ticks until a request sent now executes at guest time `t`. */
function execAt(w: KvdWorld, t: number): void {
  assert.ok(w.k.nowMs < t, `already at ${w.k.nowMs}, wanted ${t}`);
  while (w.k.nowMs < t - 1) w.tick();
}

const bulk = (v: string): string => `$${Buffer.byteLength(v, "latin1")}\r\n${v}\r\n`;
const NIL = "$-1\r\n";
const OK = "+OK\r\n";
const SYNTAX = "-ERR syntax error\r\n";
const NOT_INT = "-ERR value is not an integer or out of range\r\n";
const OVERFLOW = "-ERR increment or decrement would overflow\r\n";
const arity = (c: string): string => `-ERR wrong number of arguments for '${c}' command\r\n`;

describe("kvd: program", () => {
  it("runs as program 6 named kvd, listening on 6379, with an empty AOF", () => {
    assert.equal(KVD_PROGRAM_ID, GUEST_KVD_ID);
    const w = new KvdWorld();
    assert.ok(w.k.listProcesses().some((p) => p.program === "kvd" && p.name === "kvd"));
    const s = w.connect();
    assert.equal(w.ask(s, "PING\r\n"), "+PONG\r\n");
    assert.equal(w.k.fs.size(w.k.fs.lookup(KVD_AOF_FILE)), 0);
    assert.equal(kvdStats(w.k)?.connections, 1);
    assertAof(w);
  });
});

describe("kvd: receive interrupt", () => {
  it("answers a request between ticks at a receive interrupt; guest time and every process's ticks stay", () => {
    const w = new KvdWorld({ seed: 3 });
    const s = w.connect();
    w.client.send(s, Buffer.from("PING\r\n"));
    w.client.poll();
    const before = { now: w.k.nowMs, ticks: w.domain.vcpu.ticks, procs: w.k.listProcesses() };
    assert.equal(w.drain(s).length, 0, "nothing answered before the guest ran");
    w.interrupt();
    w.client.poll();
    assert.equal(w.drain(s).toString("latin1"), "+PONG\r\n");
    assert.equal(w.k.nowMs, before.now);
    assert.equal(w.domain.vcpu.ticks, before.ticks);
    assert.deepEqual(w.k.listProcesses(), before.procs, "no process was counted a tick");
    // The next tick carries on as usual.
    assert.equal(w.ask(s, "PING\r\n"), "+PONG\r\n");
  });
});

describe("kvd: commands", () => {
  const w = new KvdWorld({ seed: 7 });
  const s = w.connect();
  const q = (...a: (string | Buffer)[]): string => w.ask(s, cmd(...a));

  it("PING and ECHO", () => {
    assert.equal(q("PING"), "+PONG\r\n");
    assert.equal(q("ping", "hello world"), bulk("hello world"));
    assert.equal(q("PING", "a", "b"), arity("ping"));
    assert.equal(q("ECHO", "x\r\ny"), bulk("x\r\ny"));
    assert.equal(q("ECHO", ""), bulk(""));
    assert.equal(q("ECHO"), arity("echo"));
    assert.equal(q("echo", "a", "b"), arity("echo"));
  });

  it("SET and GET, binary-safe, with empty keys and values", () => {
    assert.equal(q("SET", "k", "v"), OK);
    assert.equal(q("GET", "k"), bulk("v"));
    assert.equal(q("GET", "missing"), NIL);
    const bin = Buffer.from([0, 13, 10, 255, 36, 42, 0]);
    assert.equal(q("SET", bin, bin), OK);
    assert.deepEqual(
      w.request(s, cmd("GET", bin)).bytes,
      Buffer.concat([Buffer.from("$7\r\n"), bin, Buffer.from("\r\n")]),
    );
    assert.equal(q("SET", "", ""), OK);
    assert.equal(q("GET", ""), bulk(""));
    assert.equal(q("set", "k", "v2"), OK);
    assert.equal(q("gEt", "k"), bulk("v2"));
    assert.equal(q("GET"), arity("get"));
    assert.equal(q("GET", "a", "b"), arity("get"));
    assert.equal(q("SET", "k"), arity("set"));
    assertAof(w);
  });

  it("SET NX / XX / GET and their combinations", () => {
    q("DEL", "n");
    assert.equal(q("SET", "n", "1", "NX"), OK);
    assert.equal(q("SET", "n", "2", "NX"), NIL);
    assert.equal(q("GET", "n"), bulk("1"));
    assert.equal(q("SET", "n", "3", "XX"), OK);
    assert.equal(q("SET", "absent", "3", "xx"), NIL);
    assert.equal(q("EXISTS", "absent"), ":0\r\n");
    assert.equal(q("SET", "n", "4", "NX", "XX"), SYNTAX);
    assert.equal(q("SET", "n", "4", "XX", "NX"), SYNTAX);
    assert.equal(q("SET", "n", "4", "NX", "NX"), NIL); // repeated flags are allowed
    assert.equal(q("SET", "n", "5", "GET"), bulk("3"));
    assert.equal(q("SET", "fresh", "5", "GET"), NIL);
    assert.equal(q("GET", "fresh"), bulk("5"));
    assert.equal(q("SET", "n", "6", "NX", "GET"), bulk("5")); // Redis 7: NX with GET returns the old value, sets nothing
    assert.equal(q("GET", "n"), bulk("5"));
    assert.equal(q("SET", "nx-absent", "6", "XX", "GET"), NIL);
    assert.equal(q("EXISTS", "nx-absent"), ":0\r\n");
    assert.equal(q("SET", "n", "7", "FOO"), SYNTAX);
    assert.equal(q("SET", "n", "7", "NXX"), SYNTAX);
    assert.equal(q("SET", "n", "7", "EX"), SYNTAX);
    assert.equal(q("GET", "n"), bulk("5"));
    assertAof(w);
  });

  it("SET EX / PX / EXAT / PXAT / KEEPTTL validation", () => {
    const inv = "-ERR invalid expire time in 'set' command\r\n";
    assert.equal(q("SET", "e", "v", "EX", "0"), inv);
    assert.equal(q("SET", "e", "v", "EX", "-5"), inv);
    assert.equal(q("SET", "e", "v", "PX", "0"), inv);
    assert.equal(q("SET", "e", "v", "EX", "abc"), NOT_INT);
    assert.equal(q("SET", "e", "v", "EX", "1.5"), NOT_INT);
    assert.equal(q("SET", "e", "v", "EX", "01"), NOT_INT);
    assert.equal(q("SET", "e", "v", "EX", " 1"), NOT_INT);
    assert.equal(q("SET", "e", "v", "EX", "9223372036854775808"), NOT_INT);
    assert.equal(q("SET", "e", "v", "EX", "9223372036854776"), inv); // * 1000 would overflow
    assert.equal(q("SET", "e", "v", "PX", "9223372036854775807"), inv); // + now overflows
    assert.equal(q("SET", "e", "v", "PXAT", "9223372036854775807"), OK);
    assert.equal(q("PTTL", "e"), `:${9223372036854775807n - BigInt(w.k.nowMs)}\r\n`);
    assert.equal(q("SET", "e", "v", "EX", "10", "PX", "100"), SYNTAX);
    assert.equal(q("SET", "e", "v", "PX", "10", "EX", "100"), SYNTAX);
    assert.equal(q("SET", "e", "v", "EX", "10", "EXAT", "100"), SYNTAX);
    assert.equal(q("SET", "e", "v", "KEEPTTL", "EX", "10"), SYNTAX);
    assert.equal(q("SET", "e", "v", "PX", "10", "KEEPTTL"), SYNTAX);
    assert.equal(q("SET", "e", "v", "EX", "abc", "NX", "XX"), SYNTAX); // syntax is checked before the number
    assert.equal(q("SET", "e", "v", "EX", "10", "EX", "20"), OK); // the last one wins
    assert.equal(q("TTL", "e"), ":20\r\n");
    assert.equal(q("SET", "e", "v2", "KEEPTTL"), OK);
    assert.equal(q("TTL", "e"), ":20\r\n");
    assert.equal(q("SET", "e", "v3"), OK);
    assert.equal(q("TTL", "e"), ":-1\r\n");
    assert.equal(q("TTL", "nope"), ":-2\r\n");
    assert.equal(q("PTTL", "nope"), ":-2\r\n");
    assertAof(w);
  });

  it("expiry follows the guest clock: alive at the expiry millisecond, gone one later", () => {
    const { execMs: t0 } = w.request(s, cmd("SET", "px", "v", "PX", "100"));
    execAt(w, t0 + 50);
    assert.equal(q("PTTL", "px"), ":50\r\n");
    assert.equal(q("TTL", "px"), ":0\r\n"); // 49 ms rounds to 0 s
    execAt(w, t0 + 100);
    assert.equal(q("GET", "px"), bulk("v"));
    assert.equal(q("GET", "px"), NIL);
    assert.equal(q("EXISTS", "px"), ":0\r\n");
    const { execMs: t1 } = w.request(s, cmd("SET", "ex", "v", "ex", "2"));
    execAt(w, t1 + 1500);
    assert.equal(q("TTL", "ex"), ":1\r\n"); // 500 ms left: TTL rounds to the nearest second
    execAt(w, t1 + 2000);
    assert.equal(q("PTTL", "ex"), ":0\r\n");
    assert.equal(q("EXISTS", "ex", "ex"), ":0\r\n");
    // Absolute times are guest milliseconds (EXAT: seconds).
    const now = w.k.nowMs;
    const at = Math.ceil((now + 3000) / 1000);
    assert.equal(q("SET", "at", "v", "EXAT", String(at)), OK);
    execAt(w, at * 1000);
    assert.equal(q("GET", "at"), bulk("v"));
    assert.equal(q("GET", "at"), NIL);
    assert.equal(q("SET", "past", "v", "PXAT", "1"), OK); // accepted, and expired at once
    assert.equal(q("GET", "past"), NIL);
    // INCR keeps the expiry; SET without KEEPTTL drops it.
    const { execMs: t2 } = w.request(s, cmd("SET", "cnt", "1", "PX", "1000"));
    assert.equal(q("INCR", "cnt"), ":2\r\n");
    assert.equal(q("PTTL", "cnt"), `:${t2 + 1000 - (t2 + 2)}\r\n`);
    assertAof(w);
  });

  it("DEL and EXISTS count keys (EXISTS counts repeats, DEL does not)", () => {
    q("FLUSHALL");
    q("MSET", "a", "1", "b", "2", "c", "3");
    assert.equal(q("EXISTS", "a", "a", "b", "zz"), ":3\r\n");
    assert.equal(q("DEL", "a", "a", "b", "zz"), ":2\r\n");
    assert.equal(q("DEL", "a"), ":0\r\n");
    assert.equal(q("EXISTS", "a", "b", "c"), ":1\r\n");
    assert.equal(q("DEL"), arity("del"));
    assert.equal(q("EXISTS"), arity("exists"));
    assertAof(w);
  });

  it("INCR / DECR / INCRBY / DECRBY with 64-bit signed semantics", () => {
    q("FLUSHALL");
    assert.equal(q("INCR", "i"), ":1\r\n");
    assert.equal(q("INCRBY", "i", "41"), ":42\r\n");
    assert.equal(q("DECR", "i"), ":41\r\n");
    assert.equal(q("DECRBY", "i", "50"), ":-9\r\n");
    assert.equal(q("GET", "i"), bulk("-9"));
    assert.equal(q("DECR", "fresh"), ":-1\r\n");
    q("SET", "max", "9223372036854775807");
    assert.equal(q("INCR", "max"), OVERFLOW);
    assert.equal(q("INCRBY", "max", "0"), ":9223372036854775807\r\n");
    assert.equal(q("INCRBY", "max", "-9223372036854775808"), ":-1\r\n");
    q("SET", "min", "-9223372036854775808");
    assert.equal(q("DECR", "min"), OVERFLOW);
    assert.equal(q("INCRBY", "min", "-1"), OVERFLOW);
    assert.equal(q("INCRBY", "min", "9223372036854775807"), ":-1\r\n");
    assert.equal(q("DECRBY", "i", "-9223372036854775808"), "-ERR decrement would overflow\r\n");
    assert.equal(q("INCRBY", "i", "9223372036854775808"), NOT_INT);
    assert.equal(q("INCRBY", "i", "1e3"), NOT_INT);
    assert.equal(q("INCRBY", "i"), arity("incrby"));
    for (const bad of ["abc", " 1", "1 ", "01", "-0", "+1", "", "1.0", "99999999999999999999", "-"]) {
      q("SET", "bad", bad);
      assert.equal(q("INCR", "bad"), NOT_INT, `INCR on '${bad}'`);
      assert.equal(q("GET", "bad"), bulk(bad));
    }
    q("SET", "z", "0");
    assert.equal(q("INCR", "z"), ":1\r\n");
    q("SET", "neg", "-10");
    assert.equal(q("INCR", "neg"), ":-9\r\n");
    assertAof(w);
  });

  it("MGET, MSET, DBSIZE, FLUSHALL", () => {
    assert.equal(q("FLUSHALL"), OK);
    assert.equal(q("DBSIZE"), ":0\r\n");
    assert.equal(q("MSET", "a", "1", "b", "2", "a", "3"), OK);
    assert.equal(q("MGET", "a", "b", "c", "a"), `*4\r\n${bulk("3")}${bulk("2")}${NIL}${bulk("3")}`);
    assert.equal(q("MSET", "a", "1", "b"), arity("mset"));
    assert.equal(q("MSET", "a"), arity("mset"));
    assert.equal(q("MGET"), arity("mget"));
    assert.equal(q("DBSIZE"), ":2\r\n");
    assert.equal(q("DBSIZE", "x"), arity("dbsize"));
    assert.equal(q("FLUSHALL", "ASYNC"), OK);
    assert.equal(q("FLUSHALL", "sync"), OK);
    assert.equal(q("FLUSHALL", "now"), SYNTAX);
    assert.equal(q("FLUSHALL", "sync", "async"), SYNTAX);
    assert.equal(q("DBSIZE"), ":0\r\n");
    assertAof(w);
  });

  it("unknown commands, Redis 7 wording", () => {
    assert.equal(q("FOO"), "-ERR unknown command 'FOO', with args beginning with: \r\n");
    assert.equal(
      q("foo", "a", "b c"),
      "-ERR unknown command 'foo', with args beginning with: 'a' 'b c' \r\n",
    );
    assert.equal(q("X", "a\r\nb"), "-ERR unknown command 'X', with args beginning with: 'a  b' \r\n");
    assert.equal(q("X", "a\0b"), "-ERR unknown command 'X', with args beginning with: 'a' \r\n");
    const long = "y".repeat(200);
    // The argument list stops once it reaches 128 bytes; each argument is cut to what is left.
    assert.equal(
      q("Z".repeat(150), long, "more"),
      `-ERR unknown command '${"Z".repeat(128)}', with args beginning with: '${"y".repeat(128)}' \r\n`,
    );
    assert.equal(
      q("X", "a".repeat(100), "b".repeat(100)),
      `-ERR unknown command 'X', with args beginning with: '${"a".repeat(100)}' '${"b".repeat(25)}' \r\n`,
    );
  });

  it("inline commands, with Redis's quoting rules", () => {
    assert.equal(w.ask(s, "PING\r\n"), "+PONG\r\n");
    assert.equal(w.ask(s, "ping\n"), "+PONG\r\n");
    assert.equal(w.ask(s, "  SET   il  'hello world'  \r\n"), OK);
    assert.equal(w.ask(s, "GET il\r\n"), bulk("hello world"));
    assert.equal(w.ask(s, 'SET il "a\\x41\\n\\t\\"q\\\\"\r\n'), OK);
    assert.equal(w.ask(s, "GET il\r\n"), bulk('aA\n\t"q\\'));
    assert.equal(w.ask(s, "SET il 'it\\'s'\r\n"), OK);
    assert.equal(w.ask(s, "GET il\r\n"), bulk("it's"));
    assert.equal(w.ask(s, 'SET il a"b c"\r\n'), OK); // a quote inside a word opens a quoted part
    assert.equal(w.ask(s, "GET il\r\n"), bulk("ab c"));
    assert.equal(w.ask(s, "\r\n\r\n\n  \r\nECHO x\r\n"), bulk("x")); // blank lines are skipped
    assert.equal(w.ask(s, "INCRBY  ic  5\r\nGET ic\r\n", 2), `:5\r\n${bulk("5")}`);
  });

  it("pipelines: a hundred commands in one segment, replies in order", () => {
    const parts: Buffer[] = [];
    let want = "";
    q("DEL", "p");
    for (let i = 0; i < 100; i++) {
      parts.push(i % 3 === 0 ? Buffer.from("INCR p\r\n") : cmd("INCR", "p"));
      want += `:${i + 1}\r\n`;
    }
    assert.equal(w.ask(s, Buffer.concat(parts), 100), want);
    assertAof(w);
  });

  it("QUIT answers +OK and closes", () => {
    const c = w.connect();
    w.send(c, Buffer.concat([cmd("QUIT"), cmd("PING")]));
    const r = w.untilClosed(c);
    assert.ok(r.closed);
    assert.equal(r.bytes.toString(), OK);
    w.client.close(c);
    w.run(5);
    assert.equal(kvdStats(w.k)?.connections, 1);
  });
});

describe("kvd: protocol errors close the connection after the error, like Redis", () => {
  const cases: [string, string | Buffer, string][] = [
    ["bad multibulk count", "*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n"],
    ["multibulk count over INT_MAX", "*2147483648\r\n", "-ERR Protocol error: invalid multibulk length\r\n"],
    ["'$' missing", "*1\r\nfoo\r\n", "-ERR Protocol error: expected '$', got 'f'\r\n"],
    ["negative bulk length", "*1\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n"],
    ["bulk over the limit", `*1\r\n$${KVD_MAX_BULK + 1}\r\n`, "-ERR Protocol error: invalid bulk length\r\n"],
    ["bulk length with a plus", "*1\r\n$+3\r\nfoo\r\n", "-ERR Protocol error: invalid bulk length\r\n"],
    ["unbalanced quotes", 'SET a "b\r\n', "-ERR Protocol error: unbalanced quotes in request\r\n"],
    ["junk after a closing quote", "SET a 'b'c\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"],
    ["inline line over 64 KiB", "A".repeat(64 * 1024 + 1), "-ERR Protocol error: too big inline request\r\n"],
    [
      "count line over 64 KiB",
      `*${"1".repeat(64 * 1024 + 1)}`,
      "-ERR Protocol error: too big mbulk count string\r\n",
    ],
    [
      "bulk count line over 64 KiB",
      `*1\r\n$${"1".repeat(64 * 1024 + 1)}`,
      "-ERR Protocol error: too big bulk count string\r\n",
    ],
  ];
  const w = new KvdWorld({ seed: 11 });
  for (const [name, req, want] of cases) {
    it(name, () => {
      const c = w.connect();
      // A valid command before the bad one is executed first; nothing after it is. (After an
      // over-long line, a following command's line end would end the line: send none.)
      const after = name.includes("64 KiB") ? Buffer.alloc(0) : cmd("INCR", "after");
      w.send(c, Buffer.concat([cmd("INCR", "before"), Buffer.from(req), after]));
      const r = w.untilClosed(c);
      assert.ok(r.closed, "closed");
      assert.match(r.bytes.toString("latin1"), /^:\d+\r\n/);
      assert.equal(r.bytes.toString("latin1").replace(/^:\d+\r\n/, ""), want);
      w.client.close(c);
    });
  }
  it("nothing after a protocol error was executed", () => {
    const c = w.connect();
    assert.equal(w.ask(c, cmd("EXISTS", "after")), ":0\r\n");
    assert.equal(w.ask(c, cmd("GET", "before")), bulk(String(cases.length)));
    w.client.close(c);
  });
  it("empty multibulk requests are skipped, not errors", () => {
    const c = w.connect();
    assert.equal(w.ask(c, `*0\r\n*-1\r\n${cmd("PING").toString()}`), "+PONG\r\n");
    assert.equal(w.ask(c, "*-9223372036854775808\r\nPING\r\n"), "+PONG\r\n");
    assert.equal(w.ask(c, "*1\r\n$4\r\nPINGxx"), "+PONG\r\n"); // the two bytes after a bulk are not checked
    w.client.close(c);
    w.run(5);
    assert.equal(kvdStats(w.k)?.connections, 0);
    assertAof(w);
  });
});

describe("kvd: requests split across segments", () => {
  it("at every byte boundary of a mixed stream", () => {
    const w = new KvdWorld({ seed: 5 });
    const s = w.connect();
    for (let i = 0; ; i++) {
      const stream = Buffer.concat([
        cmd("SET", "split", `v${i}`),
        Buffer.from("GET split\r\n"),
        cmd("ECHO", "a\r\nb"),
        Buffer.from("EXISTS split split\r\n"),
        cmd("MGET", "split", "none"),
      ]);
      if (i > stream.length) break;
      const want = `+OK\r\n${bulk(`v${i}`)}${bulk("a\r\nb")}:2\r\n*2\r\n${bulk(`v${i}`)}${NIL}`;
      w.send(s, stream.subarray(0, i));
      w.tick();
      w.tick();
      const r = w.request(s, stream.subarray(i), 5);
      assert.equal(r.bytes.toString("latin1"), want, `split at ${i}`);
    }
    assertAof(w);
  });

  it("one byte per tick", () => {
    const w = new KvdWorld({ seed: 6 });
    const s = w.connect();
    const stream = Buffer.concat([cmd("SET", "k", "hello"), Buffer.from("GET k\r\n"), cmd("INCR", "n")]);
    const got: Buffer[] = [];
    for (const b of stream) {
      w.send(s, Buffer.from([b]));
      w.tick();
      got.push(w.drain(s));
    }
    w.run(5);
    got.push(w.drain(s));
    assert.equal(Buffer.concat(got).toString(), `+OK\r\n${bulk("hello")}:1\r\n`);
  });
});

describe("kvd: big values and backpressure", () => {
  it("values up to the 512 KiB limit round-trip exactly", () => {
    const w = new KvdWorld({ seed: 8 });
    const s = w.connect();
    for (const size of [KVD_MAX_BULK, 300 * 1024 + 7, 4096, 4095]) {
      const v = Buffer.alloc(size);
      for (let i = 0; i < size; i++) v[i] = (i * 131 + size) & 0xff;
      assert.equal(w.ask(s, cmd("SET", `big${size}`, v)), OK);
      const r = w.request(s, cmd("GET", `big${size}`)).bytes;
      assert.deepEqual(r, Buffer.concat([Buffer.from(`$${size}\r\n`), v, Buffer.from("\r\n")]));
    }
    const key = Buffer.alloc(KVD_MAX_BULK, 0x6b);
    assert.equal(w.ask(s, cmd("SET", key, "kv")), OK);
    assert.equal(w.ask(s, cmd("GET", key)), bulk("kv"));
    assertAof(w);
  });

  it("a reader that does not read stops kvd reading its requests; nothing is lost", () => {
    const w = new KvdWorld({ seed: 9 });
    const s = w.connect();
    const v = Buffer.alloc(100 * 1024, 0x61);
    w.ask(s, cmd("SET", "v", v));
    const heapBefore = new Heap(w.k.mem, 0x80).bytesInUse;
    const n = 60;
    const req = Buffer.concat(Array.from({ length: n }, () => cmd("GET", "v")));
    w.client.send(s, req);
    w.run(300);
    // kvd holds at most about one reply beyond its 64 KiB soft limit; the rest waits in TCP.
    const grown = new Heap(w.k.mem, 0x80).bytesInUse - heapBefore;
    assert.ok(grown < 600 * 1024, `guest heap grew by ${grown}`);
    assert.ok((kvdStats(w.k)?.commands ?? 0) < 10, "kvd stopped executing");
    const one = Buffer.concat([Buffer.from(`$${v.length}\r\n`), v, Buffer.from("\r\n")]);
    let got = 0;
    for (let t = 0; t < 5000 && got < one.length * n; t++) {
      w.tick();
      const d = w.drain(s);
      for (let i = 0; i < d.length; i++) {
        assert.equal(d[i], one[(got + i) % one.length], `byte ${got + i}`);
      }
      got += d.length;
    }
    assert.equal(got, one.length * n);
  });

  it("one connection's pipeline cannot starve another", () => {
    const w = new KvdWorld({ seed: 10 });
    const a = w.connect();
    const b = w.connect();
    w.client.send(a, Buffer.from("PING\r\n".repeat(2000)));
    const r = w.request(b, "PING\r\n", 1, 2);
    assert.equal(r.bytes.toString(), "+PONG\r\n");
    const early = w.drain(a).length / 7;
    assert.ok(early <= 64 * 2, `a got ${early} replies in the first ticks`);
    w.run(200);
    assert.equal(w.drain(a).length / 7 + early, 2000);
  });

  it("a request over the 2 MiB query limit closes the connection", () => {
    const w = new KvdWorld({ seed: 12, domainMiB: 24 });
    const s = w.connect();
    const args = ["MSET"];
    for (let i = 0; i < 5; i++) args.push(`k${i}`, "x".repeat(KVD_MAX_BULK));
    const req = cmd(...args);
    let off = 0;
    let t = 0;
    for (; t < 5000 && w.client.state(s) === "ESTABLISHED"; t++) {
      const n = w.client.send(s, req.subarray(off));
      if (n > 0) off += n;
      w.tick();
    }
    assert.ok(["CLOSED", "CLOSE_WAIT"].includes(w.client.state(s)), "kvd hung up");
    assert.ok(off > 2 * 1024 * 1024 && off < req.length, `sent ${off} of ${req.length}`);
    assert.equal(kvdStats(w.k)?.connections, 0);
    const c = w.connect();
    assert.equal(w.ask(c, "DBSIZE\r\n"), ":0\r\n");
  });
});

describe("kvd: clients, EOF, resets", () => {
  it(`the ${KVD_MAX_CLIENTS + 1}th client gets -ERR max number of clients reached and is closed`, () => {
    const w = new KvdWorld({ seed: 13, domainMiB: 48, clientMiB: 48 });
    const socks: number[] = [];
    for (let i = 0; i < KVD_MAX_CLIENTS; i++) socks.push(w.connect());
    w.run(3);
    assert.equal(kvdStats(w.k)?.connections, KVD_MAX_CLIENTS);
    const extra = w.connect();
    const r = w.untilClosed(extra);
    assert.ok(r.closed);
    assert.equal(r.bytes.toString(), "-ERR max number of clients reached\r\n");
    assert.equal(w.ask(socks[63] as number, "PING\r\n"), "+PONG\r\n");
    w.client.close(socks[0] as number);
    w.client.close(extra);
    w.run(5);
    const again = w.connect();
    assert.equal(w.ask(again, "PING\r\n"), "+PONG\r\n");
  });

  it("a client that half-closes gets its replies, then kvd closes", () => {
    const w = new KvdWorld({ seed: 14 });
    const s = w.connect();
    w.send(s, Buffer.from("SET a 1\r\nGET a\r\n"));
    w.client.shutdown(s);
    const r = w.untilClosed(s);
    assert.ok(r.closed);
    assert.equal(r.bytes.toString(), `+OK\r\n${bulk("1")}`);
    w.run(5);
    assert.equal(kvdStats(w.k)?.connections, 0);
  });

  it("a client that resets mid-request is forgotten, its partial request discarded", () => {
    const w = new KvdWorld({ seed: 15 });
    const s = w.connect();
    w.send(s, Buffer.from("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc"));
    w.run(3);
    w.client.abort(s);
    w.run(5);
    assert.equal(kvdStats(w.k)?.connections, 0);
    const c = w.connect();
    assert.equal(w.ask(c, "EXISTS k\r\n"), ":0\r\n");
  });
});

describe("kvd: the append-only file", () => {
  it("records each write as the state it leaves, expiries as absolute PXAT", () => {
    const w = new KvdWorld({ seed: 16 });
    const s = w.connect();
    const q = (...a: string[]): string => w.ask(s, cmd(...a));
    q("SET", "a", "1");
    const { execMs: t } = w.request(s, cmd("SET", "b", "2", "PX", "100"));
    q("INCR", "a");
    q("INCR", "b");
    q("GET", "a"); // reads write nothing
    q("SET", "a", "9", "NX"); // an aborted write writes nothing
    q("DEL", "a", "zz", "a");
    q("MSET", "x", "1", "y", "2");
    q("FLUSHALL");
    const exp = String(t + 100);
    const want = [
      cmd("SET", "a", "1"),
      cmd("SET", "b", "2", "PXAT", exp),
      cmd("SET", "a", "2"),
      cmd("SET", "b", "3", "PXAT", exp),
      cmd("DEL", "a"),
      cmd("MSET", "x", "1", "y", "2"),
      cmd("FLUSHALL"),
    ];
    assert.equal(aofText(w), Buffer.concat(want).toString());
    assertAof(w);
  });

  it("expired keys are reclaimed by reads and by the active cycle, each logged as DEL", () => {
    const w = new KvdWorld({ seed: 17 });
    const s = w.connect();
    const args = ["MSET"];
    for (let i = 0; i < 300; i++) args.push(`p${i}`, "x");
    w.ask(s, cmd(...args));
    const { execMs: t0 } = w.request(s, cmd("SET", "e0", "v", "PX", "1000"));
    for (let i = 1; i < 200; i++) w.send(s, cmd("SET", `e${i}`, "v", "PX", String(1000 + (i % 50))));
    w.run(20);
    w.drain(s);
    assert.equal(w.ask(s, "DBSIZE\r\n"), ":500\r\n");
    execAt(w, t0 + 1001);
    assert.equal(w.ask(s, "GET e0\r\n"), NIL);
    w.run(3000);
    assert.equal(w.ask(s, "DBSIZE\r\n"), ":300\r\n");
    assert.equal(kvdStats(w.k)?.volatileKeys, 0);
    assert.equal(kvdSnapshot(w.k).size, 300);
    assert.ok(aofText(w).includes(cmd("DEL", "e0").toString()));
    assertAof(w);
  });

  it("the table grows and shrinks by incremental rehashing, serving reads throughout", () => {
    const w = new KvdWorld({ seed: 18, domainMiB: 32, diskMiB: 16 });
    const s = w.connect();
    let sawRehash = false;
    for (let b = 0; b < 20; b++) {
      const args = ["MSET"];
      for (let i = 0; i < 500; i++) args.push(`key:${b}:${i}`, `${b * 500 + i}`);
      assert.equal(w.ask(s, cmd(...args)), OK);
      sawRehash ||= kvdStats(w.k)?.rehashing ?? false;
      assert.equal(w.ask(s, cmd("GET", `key:${b}:7`)), bulk(String(b * 500 + 7)));
      assert.equal(w.ask(s, cmd("GET", "key:0:499")), bulk("499"));
    }
    w.run(50);
    assert.ok(sawRehash, "a rehash was in progress at some point");
    assert.ok((kvdStats(w.k)?.buckets ?? 0) >= 8192);
    assert.equal(w.ask(s, "DBSIZE\r\n"), ":10000\r\n");
    assertAof(w);
    assert.equal(w.ask(s, "FLUSHALL\r\n"), OK);
    w.run(200);
    assert.equal(kvdStats(w.k)?.buckets, 64);
    assertAof(w);
  });

  it("a full disk refuses the write with -MISCONF and changes nothing in memory", () => {
    const w = new KvdWorld({ seed: 19, diskMiB: 1 });
    const s = w.connect();
    const v = Buffer.alloc(100 * 1024, 0x7a);
    let refused = -1;
    for (let i = 0; i < 20 && refused < 0; i++) {
      const r = w.ask(s, cmd("SET", `big${i}`, v));
      if (r !== OK) {
        assert.equal(r, "-MISCONF Errors writing to the AOF file: No space left on device\r\n");
        refused = i;
      }
    }
    assert.ok(refused > 0, "the disk filled up");
    assert.equal(w.ask(s, cmd("EXISTS", `big${refused}`)), ":0\r\n");
    assert.equal(w.ask(s, cmd("DBSIZE")), `:${refused}\r\n`);
    assert.equal(w.ask(s, cmd("INCR", `big0`)), NOT_INT);
    assert.equal(kvdStats(w.k)?.aofErrors, 1);
    assertAof(w);
    // Reads keep working.
    assert.equal(w.request(s, cmd("GET", "big0")).bytes.length, v.length + 11);
  });

  it("a guest booted on a disk holding an AOF loads it", () => {
    const w = new KvdWorld({ seed: 20 });
    const s = w.connect();
    w.ask(s, cmd("MSET", "a", "1", "b", "2"));
    w.ask(s, cmd("SET", "c", "3", "PX", "100000"));
    w.ask(s, cmd("DEL", "b"));
    const d = new Domain(w.domain.geometry);
    d.disk.buf.set(w.domain.disk.buf);
    const k = bootGuest(d, { seed: 21, workload: parseWorkload("idle"), net: GUEST });
    const snap = kvdSnapshot(k);
    assert.deepEqual([...snap.keys()].sort(), ["a", "c"]);
    assert.equal(snap.get("c")?.value.toString(), "3");
    assert.ok(verifyKvdAof(k).ok);
  });

  it("verifyKvdAof notices memory and file disagreeing", () => {
    const w = new KvdWorld({ seed: 22 });
    const s = w.connect();
    w.ask(s, cmd("SET", "a", "hello"));
    assertAof(w);
    // Flip a byte of the value behind kvd's back.
    const snap = kvdSnapshot(w.k);
    assert.equal(snap.get("a")?.value.toString(), "hello");
    const at = w.domain.memory.buf.indexOf(Buffer.from("ahello"));
    assert.ok(at > 0);
    w.domain.memory.setU8(at + 1, 0x48);
    const v = verifyKvdAof(w.k);
    assert.equal(v.ok, false);
    assert.match(v.error ?? "", /value differs/);
  });
});

describe("kvd: without a network", () => {
  it("is not started on a guest without a NIC", () => {
    const d = new Domain(geometryOfMiB(4, 2));
    const k = bootGuest(d, { seed: 1, workload: parseWorkload("idle") });
    assert.equal(k.procsOf(KVD_PROGRAM_ID).length, 0);
    assert.deepEqual(verifyKvdAof(k), { ok: false, keys: 0, error: "kvd is not running" });
  });
});
