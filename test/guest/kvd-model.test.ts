/**
 * kvd against a JavaScript reference model of the same Redis semantics:
 * random command sequences (with guest time passing between them) must get
 * byte-identical replies, and the AOF must agree with memory after every
 * step. Then restore: a copy of the domain taken mid-stream behaves exactly
 * like the original.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { kvdSnapshot, verifyKvdAof } from "../../src/guest/programs/kvd.js";
import { cmd, KvdWorld } from "./kvd-harness.js";

const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

interface Item {
  v: Buffer;
  exp: bigint;
}

const bulk = (v: Buffer | string): Buffer => {
  const b = typeof v === "string" ? Buffer.from(v) : v;
  return Buffer.concat([Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n")]);
};
const NIL = Buffer.from("$-1\r\n");
const OK = Buffer.from("+OK\r\n");
const int = (n: bigint | number): Buffer => Buffer.from(`:${n}\r\n`);
const err = (m: string): Buffer => Buffer.from(`-ERR ${m}\r\n`);

/** Redis's canonical integer syntax, for the model (written independently of kvd's parser). */
function toInt(b: Buffer): bigint | null {
  const s = b.toString("latin1");
  if (!/^(0|-?[1-9][0-9]*)$/.test(s) || s.length > 20) return null;
  const v = BigInt(s);
  return v > I64_MAX || v < I64_MIN ? null : v;
}

type Ttl =
  | { t: "none" }
  | { t: "EX" | "PX" | "EXAT" | "PXAT"; n: number }
  | { t: "KEEPTTL" }
  | { t: "EXPX" }
  | { t: "BADNUM" };
type Op =
  | { op: "set"; key: string; val: string; cond: "" | "NX" | "XX" | "NXXX"; get: boolean; ttl: Ttl }
  | { op: "get" | "incr" | "decr" | "ttl" | "pttl"; key: string }
  | { op: "incrby" | "decrby"; key: string; by: string }
  | { op: "del" | "exists" | "mget"; keys: string[] }
  | { op: "mset"; pairs: [string, string][] }
  | { op: "dbsize" | "flushall" | "ping" }
  | { op: "echo"; val: string }
  | { op: "unknown"; name: string; args: string[] }
  | { op: "arity" }
  | { op: "wait"; ms: number }
  /**
   * Wait until a request executes `delta` ms from the key's expiry (if it has one within 5 s),
   * then touch the key with `touch`: the expiry boundary and the lazy reclamation path.
   */
  | {
      op: "waitexp";
      key: string;
      /** Chooses among the keys due to expire within 5 s, if any (else `key` is used). */
      pick: number;
      delta: number;
      touch: "get" | "pttl" | "exists" | "incr" | "keepttl";
    };

/** The command a `waitexp` runs at the boundary. */
function touchOp(o: { key: string; touch: string }): Op {
  switch (o.touch) {
    case "get":
      return { op: "get", key: o.key };
    case "pttl":
      return { op: "pttl", key: o.key };
    case "exists":
      return { op: "exists", keys: [o.key, o.key] };
    case "incr":
      return { op: "incr", key: o.key };
    default:
      return { op: "set", key: o.key, val: "5", cond: "", get: true, ttl: { t: "KEEPTTL" } };
  }
}

/** The reference: Redis semantics on a Map, evaluated at the guest time the command ran. */
class Model {
  readonly map = new Map<string, Item>();

  private lookup(k: string, now: number): Item | undefined {
    const it = this.map.get(k);
    if (!it) return undefined;
    if (it.exp !== 0n && BigInt(now) > it.exp) {
      this.map.delete(k);
      return undefined;
    }
    return it;
  }

  private liveCount(now: number): number {
    let n = 0;
    for (const it of this.map.values()) if (it.exp === 0n || BigInt(now) <= it.exp) n++;
    return n;
  }

  /** The exact reply, or for DBSIZE the range it must fall in. */
  apply(o: Op, now: number): Buffer | { dbsize: [number, number] } {
    switch (o.op) {
      case "set": {
        if (o.cond === "NXXX" || o.ttl.t === "EXPX") return err("syntax error");
        let exp = 0n;
        if (o.ttl.t === "BADNUM") return err("value is not an integer or out of range");
        if (o.ttl.t === "EX" || o.ttl.t === "PX" || o.ttl.t === "EXAT" || o.ttl.t === "PXAT") {
          if (o.ttl.n <= 0) return err("invalid expire time in 'set' command");
          const ms = BigInt(o.ttl.n) * (o.ttl.t === "EX" || o.ttl.t === "EXAT" ? 1000n : 1n);
          exp = o.ttl.t === "EX" || o.ttl.t === "PX" ? ms + BigInt(now) : ms;
        }
        const old = this.lookup(o.key, now);
        if ((o.cond === "NX" && old) || (o.cond === "XX" && !old)) return o.get && old ? bulk(old.v) : NIL;
        if (o.ttl.t === "KEEPTTL" && old) exp = old.exp;
        this.map.set(o.key, { v: Buffer.from(o.val), exp });
        return o.get ? (old ? bulk(old.v) : NIL) : OK;
      }
      case "get": {
        const it = this.lookup(o.key, now);
        return it ? bulk(it.v) : NIL;
      }
      case "incr":
      case "decr":
      case "incrby":
      case "decrby": {
        let by = "by" in o ? toInt(Buffer.from(o.by)) : o.op === "incr" ? 1n : -1n;
        if (by === null) return err("value is not an integer or out of range");
        if (o.op === "decrby") {
          if (by === I64_MIN) return err("decrement would overflow");
          by = -by;
        }
        const it = this.lookup(o.key, now);
        const cur = it ? toInt(it.v) : 0n;
        if (cur === null) return err("value is not an integer or out of range");
        const next = cur + by;
        if (next > I64_MAX || next < I64_MIN) return err("increment or decrement would overflow");
        this.map.set(o.key, { v: Buffer.from(String(next)), exp: it ? it.exp : 0n });
        return int(next);
      }
      case "ttl":
      case "pttl": {
        const it = this.lookup(o.key, now);
        if (!it) return int(-2);
        if (it.exp === 0n) return int(-1);
        let t = it.exp - BigInt(now);
        if (t < 0n) t = 0n;
        return int(o.op === "pttl" ? t : (t + 500n) / 1000n);
      }
      case "del": {
        let n = 0;
        for (const k of new Set(o.keys)) {
          if (this.lookup(k, now)) n++;
          this.map.delete(k);
        }
        return int(n);
      }
      case "exists":
        return int(o.keys.filter((k) => this.lookup(k, now)).length);
      case "mget":
        return Buffer.concat([
          Buffer.from(`*${o.keys.length}\r\n`),
          ...o.keys.map((k) => {
            const it = this.lookup(k, now);
            return it ? bulk(it.v) : NIL;
          }),
        ]);
      case "mset":
        for (const [k, v] of o.pairs) this.map.set(k, { v: Buffer.from(v), exp: 0n });
        return OK;
      case "dbsize":
        // Like Redis, kvd counts keys that expired but were not reclaimed yet.
        return { dbsize: [this.liveCount(now), this.map.size] };
      case "flushall":
        this.map.clear();
        return OK;
      case "ping":
        return Buffer.from("+PONG\r\n");
      case "echo":
        return bulk(o.val);
      case "unknown":
        return err(
          `unknown command '${o.name}', with args beginning with: ${o.args.map((a) => `'${a}' `).join("")}`,
        );
      case "arity":
        return err("wrong number of arguments for 'get' command");
      case "wait":
        return Buffer.alloc(0);
      case "waitexp":
        return this.apply(touchOp(o), now);
    }
  }
}

function encode(o: Op): Buffer {
  switch (o.op) {
    case "set": {
      const a = ["SET", o.key, o.val];
      if (o.cond === "NXXX") a.push("NX", "XX");
      else if (o.cond) a.push(o.cond);
      if (o.get) a.push("GET");
      if (o.ttl.t === "KEEPTTL") a.push("KEEPTTL");
      else if (o.ttl.t === "EXPX") a.push("EX", "1", "PX", "1");
      else if (o.ttl.t === "BADNUM") a.push("px", "12x");
      else if (o.ttl.t !== "none") a.push(o.ttl.t.toLowerCase(), String(o.ttl.n));
      return cmd(...a);
    }
    case "get":
    case "incr":
    case "decr":
    case "ttl":
    case "pttl":
      return cmd(o.op.toUpperCase(), o.key);
    case "incrby":
    case "decrby":
      return cmd(o.op, o.key, o.by);
    case "del":
    case "exists":
    case "mget":
      return cmd(o.op.toUpperCase(), ...o.keys);
    case "mset":
      return cmd("MSET", ...o.pairs.flat());
    case "dbsize":
    case "flushall":
    case "ping":
      // Inline form now and then.
      return Buffer.from(`${o.op.toUpperCase()}\r\n`);
    case "echo":
      return cmd("ECHO", o.val);
    case "unknown":
      return cmd(o.name, ...o.args);
    case "arity":
      return cmd("GET");
    case "wait":
      return Buffer.alloc(0);
    case "waitexp":
      return encode(touchOp(o));
  }
}

const key = fc.constantFrom("a", "b", "n", "k:1");
const val = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom("0", "1", "-1", "41", "9223372036854775807", "-9223372036854775808"),
  },
  { weight: 1, arbitrary: fc.constantFrom("abc", "", "07", "x y", "-0") },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);
const amount = fc.oneof(
  fc.constantFrom("1", "-1", "0", "100", "9223372036854775807", "-9223372036854775808", "x", "1.5"),
  fc.bigInt({ min: I64_MIN, max: I64_MAX }).map(String),
);
const ttl: fc.Arbitrary<Ttl> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Ttl>({ t: "none" }) },
  {
    weight: 4,
    arbitrary: fc.record({ t: fc.constantFrom("EX" as const), n: fc.integer({ min: -1, max: 3 }) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ t: fc.constantFrom("PX" as const), n: fc.integer({ min: -1, max: 1500 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constantFrom("EXAT" as const, "PXAT" as const),
      n: fc.integer({ min: 1, max: 8000 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant<Ttl>({ t: "KEEPTTL" }) },
  { weight: 1, arbitrary: fc.constantFrom<Ttl>({ t: "EXPX" }, { t: "BADNUM" }) },
);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant("set" as const),
      key,
      val,
      cond: fc.constantFrom("" as const, "" as const, "NX" as const, "XX" as const, "NXXX" as const),
      get: fc.boolean(),
      ttl,
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({ op: fc.constantFrom("get" as const, "incr" as const, "decr" as const), key }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom("ttl" as const, "pttl" as const), key }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constantFrom("incrby" as const, "decrby" as const), key, by: amount }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constantFrom("del" as const, "exists" as const, "mget" as const),
      keys: fc.array(key, { minLength: 1, maxLength: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("mset" as const),
      pairs: fc.array(fc.tuple(key, val), { minLength: 1, maxLength: 3 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom("dbsize" as const, "ping" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("flushall" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("echo" as const), val }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("unknown" as const),
      name: fc.constantFrom("FOO", "getx", "SETT"),
      args: fc.array(fc.stringMatching(/^[a-z0-9]{0,8}$/), { maxLength: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("arity" as const) }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("wait" as const), ms: fc.integer({ min: 0, max: 1200 }) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("waitexp" as const),
      key,
      pick: fc.nat(),
      delta: fc.integer({ min: -1, max: 1 }),
      touch: fc.constantFrom(
        "get" as const,
        "pttl" as const,
        "exists" as const,
        "incr" as const,
        "keepttl" as const,
      ),
    }),
  },
);

/** Runs one op on a world; returns the reply bytes and the guest time it executed at. */
function runOp(w: KvdWorld, s: number, m: Model, o: Op): { bytes: Buffer; execMs: number } {
  if (o.op === "wait") {
    w.run(o.ms);
    return { bytes: Buffer.alloc(0), execMs: w.k.nowMs };
  }
  if (o.op === "waitexp") {
    const exp = m.map.get(o.key)?.exp ?? 0n;
    // (`check` has resolved the key.)
    // The next request executes at guest time nowMs + 1.
    if (exp !== 0n && exp - BigInt(w.k.nowMs) < 5000n) while (w.k.nowMs < Number(exp) + o.delta - 1) w.tick();
  }
  return w.request(s, encode(o));
}

/** A `waitexp` aimed at a key that is due to expire soon, when there is one. */
function resolve(m: Model, o: Op, now: number): Op {
  if (o.op !== "waitexp") return o;
  const due = [...m.map]
    .filter(([, it]) => it.exp !== 0n && it.exp >= BigInt(now) && it.exp - BigInt(now) < 5000n)
    .map(([k]) => k)
    .sort();
  return due.length === 0 ? o : { ...o, key: due[o.pick % due.length] as string };
}

function check(w: KvdWorld, s: number, m: Model, op: Op, i: number): Buffer {
  const o = resolve(m, op, w.k.nowMs);
  const { bytes, execMs } = runOp(w, s, m, o);
  const want = m.apply(o, execMs);
  if (Buffer.isBuffer(want)) {
    assert.equal(
      bytes.toString("latin1"),
      want.toString("latin1"),
      `step ${i}: ${JSON.stringify(o)} at ${execMs}`,
    );
  } else {
    const n = Number(/^:(\d+)\r\n$/.exec(bytes.toString())?.[1] ?? -1);
    assert.ok(n >= want.dbsize[0] && n <= want.dbsize[1], `step ${i}: DBSIZE ${n} outside ${want.dbsize}`);
  }
  const v = verifyKvdAof(w.k);
  assert.ok(v.ok, `step ${i}: ${v.error}`);
  return bytes;
}

const RUNS = Number(process.env.REMUSD_KVD_RUNS ?? 60);
const FC_SEED = Number(process.env.REMUSD_KVD_FC_SEED ?? 20240611);

describe("kvd against the reference model", () => {
  it(`random command sequences give the model's replies; the AOF agrees after every step (${RUNS} runs)`, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1 << 30 }),
        fc.array(op, { minLength: 1, maxLength: 60 }),
        (seed, ops) => {
          const w = new KvdWorld({ seed, domainMiB: 8, diskMiB: 4 });
          const s = w.connect();
          const m = new Model();
          for (const [i, o] of ops.entries()) check(w, s, m, o, i);
          // Live keys match the model exactly.
          const snap = kvdSnapshot(w.k);
          const now = BigInt(w.k.nowMs);
          const live = [...m.map].filter(([, it]) => it.exp === 0n || now <= it.exp);
          assert.equal(snap.size, live.length);
          for (const [k, it] of live) {
            assert.deepEqual(snap.get(k)?.value, it.v, k);
            assert.equal(snap.get(k)?.expireAtMs, it.exp === 0n ? null : it.exp, k);
          }
        },
      ),
      { numRuns: RUNS, seed: FC_SEED },
    );
  });
});

describe("kvd on a restored copy of the domain", () => {
  it("a copy taken at a random step continues exactly like the original (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1 << 30 }),
        fc.array(op, { minLength: 2, maxLength: 40 }),
        fc.nat(),
        (seed, ops, at) => {
          const a = new KvdWorld({ seed, domainMiB: 8, diskMiB: 4 });
          const s = a.connect();
          const m = new Model();
          const cut = at % ops.length;
          for (let i = 0; i < cut; i++) check(a, s, m, ops[i] as Op, i);
          const b = a.clone();
          const mb = new Model();
          for (const [k, v] of m.map) mb.map.set(k, v);
          for (let i = cut; i < ops.length; i++) {
            const ra = check(a, s, m, ops[i] as Op, i);
            const rb = check(b, s, mb, ops[i] as Op, i);
            assert.deepEqual(rb, ra, `step ${i}`);
          }
          assert.equal(b.domain.digest(), a.domain.digest());
        },
      ),
      { numRuns: Math.ceil(RUNS / 2), seed: FC_SEED + 1 },
    );
  });

  it("mid-request, mid-reply and mid-rehash: the copy finishes every request identically", () => {
    const a = new KvdWorld({ seed: 99, domainMiB: 16, diskMiB: 8 });
    const s1 = a.connect();
    const s2 = a.connect();
    // Enough keys that the table is rehashing, a big value on the way in, and replies not read yet.
    const args = ["MSET"];
    for (let i = 0; i < 300; i++) args.push(`k${i}`, `v${i}`);
    a.send(s1, cmd(...args));
    const big = Buffer.alloc(200 * 1024, 0x62);
    const bigSet = cmd("SET", "big", big);
    a.send(s2, bigSet.subarray(0, 70_000));
    a.run(3);
    a.send(s1, Buffer.from("INCR n\r\nINCR n\r\nGET k7\r\n"));
    a.send(s2, bigSet.subarray(70_000, 90_001));
    a.run(1);
    a.send(s1, Buffer.from("*2\r\n$3\r\nGET\r\n$3\r\nk1"));
    assert.ok(verifyKvdAof(a.k).ok);
    const b = a.clone();
    const finish = (w: KvdWorld): string[] => {
      w.send(s1, Buffer.from("2\r\nDBSIZE\r\n"));
      w.send(s2, bigSet.subarray(90_001));
      w.send(s2, cmd("GET", "big"));
      const out1: Buffer[] = [];
      const out2: Buffer[] = [];
      for (let t = 0; t < 400; t++) {
        w.tick();
        out1.push(w.drain(s1));
        out2.push(w.drain(s2));
        assert.ok(verifyKvdAof(w.k).ok);
      }
      return [Buffer.concat(out1).toString("latin1"), Buffer.concat(out2).toString("latin1")];
    };
    const ra = finish(a);
    const rb = finish(b);
    assert.deepEqual(rb, ra);
    // DBSIZE runs before the rest of the big value has arrived.
    assert.equal(ra[0], `+OK\r\n:1\r\n:2\r\n$2\r\nv7\r\n$3\r\nv12\r\n:301\r\n`);
    assert.equal(ra[1], `+OK\r\n$${big.length}\r\n${big.toString("latin1")}\r\n`);
    assert.equal(b.domain.digest(), a.domain.digest());
    assert.deepEqual(kvdSnapshot(b.k), kvdSnapshot(a.k));
  });
});
