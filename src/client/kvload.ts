/**
 * The client's load generator and checker for the guest's kvd (sans-IO: it
 * drives a NetStack and is polled with the time; the real `remusd client` and
 * the in-process simulations both use it).
 *
 * Each connection owns its own keys, so the expected result of every command
 * is known exactly: SET makes an acknowledged write, INCR must return the
 * previous value plus one, GET must return the last acknowledged value. Any
 * other reply is a wrong read; a key whose acknowledged value is missing in the
 * final read-back is a lost write. A connection that is reset or closed by the
 * server counts as a reset. Because output commit holds every reply until the
 * state that produced it is on the backup, none of these may happen across a
 * failover.
 *
 * `sharedCounter` is the other traffic: every connection INCRs one key they
 * all share, so a reply depends on how the server interleaved requests of
 * different connections (what a COLO pair's replicas may do differently).
 * Its checks: every reply is an integer above the last this connection got
 * and no two replies are equal (each INCR is one step of one counter); the
 * final read-back may not be below the highest acknowledged value (lost
 * write), and with no reset the acknowledged values are consecutive and the
 * read-back is the last of them.
 */
import type { NetStack } from "../net/stack.js";
import { mulberry32 } from "../prng.js";
import { encodeCommand, RespError, RespParser, type RespValue } from "./resp.js";

export interface KvLoadOptions {
  readonly connections: number;
  readonly seed: number;
  readonly targetIp: number;
  readonly port: number;
  /** Keys per connection for SET/GET, and counters per connection for INCR. */
  readonly keysPerConnection: number;
  /** Requests in flight per connection (pipelining). */
  readonly pipeline: number;
  /** Stop issuing new commands after this many per connection (undefined: until `finish`). */
  readonly maxRequestsPerConnection?: number;
  /** Called with every reply: when its request was sent and now (the times given to `poll`). */
  readonly onReply?: (sentAt: number, now: number) => void;
  /**
   * Mean think time in ms between a reply and the connection's next request
   * (uniform in [0, 2x], seeded; default 0). With it, requests arrive at
   * random points of the primary's epochs instead of right after a commit.
   */
  readonly thinkMs?: number;
  /** Every connection INCRs one shared key instead of working on its own keys (see the header). */
  readonly sharedCounter?: boolean;
}

export const DEFAULT_KVLOAD: Omit<KvLoadOptions, "targetIp" | "seed"> = {
  connections: 8,
  port: 6379,
  keysPerConnection: 16,
  pipeline: 2,
};

type Expect =
  | { kind: "set"; key: string; value: string }
  | { kind: "incr"; key: string; value: number }
  | { kind: "get"; key: string; value: string | null; final: boolean }
  | { kind: "shared"; key: string; final: boolean };

interface Conn {
  readonly index: number;
  sock: number;
  phase: "connecting" | "open" | "closing" | "closed";
  parser: RespParser;
  outstanding: { expect: Expect; sentAt: number }[];
  outbuf: Buffer;
  issued: number;
  lastProgress: number;
  /** Think time: no new request before this. */
  nextAt: number;
  /** After a reset: when to reconnect, and how many times in a row it failed. */
  retryAt: number;
  failures: number;
  /** Bumped at every reset: a reconnected connection works on fresh keys. */
  generation: number;
}

export interface KvLoadSummary {
  connections: number;
  requests: number;
  replies: number;
  resets: number;
  reconnects: number;
  longestStallMs: number;
  lostWrites: number;
  wrongReads: number;
  verifiedKeys: number;
  protocolErrors: number;
  errors: string[];
  ok: boolean;
}

export class KvLoad {
  private readonly conns: Conn[] = [];
  private readonly model = new Map<string, string>();
  private readonly counters = new Map<string, number>();
  /** sharedCounter: the values acknowledged (their range), and the last one each connection got. */
  private readonly sharedSeen = new Set<number>();
  private sharedMin = Number.POSITIVE_INFINITY;
  private sharedMax = 0;
  private readonly sharedLast: number[] = [];
  private readonly rand: () => number;
  private readonly thinkRand: () => number;
  private phase: "run" | "drain" | "verify" | "done" = "run";
  /** An audit is under way: after its read-back the load resumes instead of ending. */
  private auditing = false;
  /** Audits completed (`audit`). */
  audits = 0;
  readonly summary: KvLoadSummary = newKvLoadSummary();
  /** Replies received per poll, for rate displays. */
  repliesSince = 0;

  constructor(
    private readonly stack: NetStack,
    readonly opts: KvLoadOptions,
    now: number,
  ) {
    this.rand = mulberry32(opts.seed);
    this.thinkRand = mulberry32(opts.seed ^ 0x7417_7417);
    for (let i = 0; i < opts.connections; i++) {
      this.conns.push(this.open(i, now));
    }
    this.summary.connections = opts.connections;
  }

  private open(index: number, now: number): Conn {
    const sock = this.stack.connect(this.opts.targetIp, this.opts.port);
    return {
      index,
      sock,
      phase: "connecting",
      parser: new RespParser(),
      outstanding: [],
      outbuf: Buffer.alloc(0),
      issued: 0,
      lastProgress: now,
      nextAt: 0,
      retryAt: 0,
      failures: 0,
      generation: 0,
    };
  }

  private error(msg: string): void {
    if (this.summary.errors.length < 20) this.summary.errors.push(msg);
  }

  get done(): boolean {
    return this.phase === "done";
  }

  get currentPhase(): string {
    return this.phase;
  }

  /** Stops issuing load; drains outstanding replies, then reads back every acknowledged key. */
  finish(): void {
    this.auditing = false;
    if (this.phase === "run") this.phase = "drain";
  }

  /**
   * Checks every acknowledged write now, then carries on: drains what is in
   * flight, reads back every key (a missing value is a lost write, counted in
   * `summary.lostWrites`), and resumes the load. `audits` counts the
   * completed ones.
   */
  audit(): void {
    if (this.phase !== "run") return;
    this.auditing = true;
    this.phase = "drain";
  }

  /** The shared counter's key: per seed, so runs against one guest with different seeds do not meet. */
  private get sharedKey(): string {
    return `shared:${this.opts.seed}`;
  }

  private nextCommand(c: Conn): { args: string[]; expect: Expect } {
    if (this.opts.sharedCounter) {
      const key = this.sharedKey;
      return { args: ["INCR", key], expect: { kind: "shared", key, final: false } };
    }
    const r = this.rand();
    const k = Math.floor(this.rand() * this.opts.keysPerConnection);
    if (r < 0.4) {
      const key = `${this.prefix(c)}k${k}`;
      const value = `v${c.index}-${c.issued}-${Math.floor(this.rand() * 1e9).toString(36)}`;
      return { args: ["SET", key, value], expect: { kind: "set", key, value } };
    }
    if (r < 0.7) {
      const key = `${this.prefix(c)}n${k}`;
      const value = (this.counters.get(key) ?? 0) + 1;
      this.counters.set(key, value);
      return { args: ["INCR", key], expect: { kind: "incr", key, value } };
    }
    const key = `${this.prefix(c)}k${k}`;
    return {
      args: ["GET", key],
      expect: { kind: "get", key, value: this.pendingValue(c, key), final: false },
    };
  }

  /** Keys of a connection: its index and generation, so keys in doubt after a reset are never reused. */
  private prefix(c: Conn): string {
    return `c${c.index}.${c.generation}:`;
  }

  /** The value a GET must see: the last SET of this key issued on this connection (replies come in order). */
  private pendingValue(c: Conn, key: string): string | null {
    for (let i = c.outstanding.length - 1; i >= 0; i--) {
      const e = (c.outstanding[i] as { expect: Expect }).expect;
      if (e.kind === "set" && e.key === key) return e.value;
    }
    return this.model.get(key) ?? null;
  }

  private enqueue(c: Conn, args: string[], expect: Expect, now: number): void {
    c.outbuf = c.outbuf.length ? Buffer.concat([c.outbuf, encodeCommand(args)]) : encodeCommand(args);
    c.outstanding.push({ expect, sentAt: now });
    this.summary.requests++;
    c.issued++;
  }

  private check(c: Conn, expect: Expect, v: RespValue): void {
    const where = `conn ${c.index} ${expect.kind} ${expect.key}`;
    if (v.t === "error") {
      this.summary.wrongReads++;
      this.error(`${where}: error reply ${v.v}`);
      return;
    }
    switch (expect.kind) {
      case "set":
        if (v.t === "simple" && v.v === "OK") this.model.set(expect.key, expect.value);
        else {
          this.summary.wrongReads++;
          this.error(`${where}: SET answered ${JSON.stringify(v)}`);
        }
        return;
      case "incr":
        if (v.t !== "int" || v.v !== expect.value) {
          this.summary.wrongReads++;
          this.error(
            `${where}: INCR gave ${v.t === "int" ? v.v : JSON.stringify(v)}, expected ${expect.value}`,
          );
        }
        return;
      case "shared":
        this.checkShared(c, expect, v);
        return;
      case "get": {
        const got = v.t === "bulk" ? (v.v === null ? null : v.v.toString()) : undefined;
        if (got === expect.value) {
          if (expect.final) this.summary.verifiedKeys++;
          return;
        }
        if (expect.final) {
          this.summary.lostWrites++;
          this.error(`${where}: acknowledged value '${expect.value}' read back as ${JSON.stringify(got)}`);
        } else {
          this.summary.wrongReads++;
          this.error(`${where}: GET gave ${JSON.stringify(got)}, expected ${JSON.stringify(expect.value)}`);
        }
        return;
      }
    }
  }

  private checkShared(c: Conn, expect: Expect & { kind: "shared" }, v: RespValue): void {
    const where = `conn ${c.index} ${expect.final ? "GET" : "INCR"} ${expect.key}`;
    // INCR answers an integer; GET a bulk string (none: the key was never incremented).
    const n = expect.final
      ? v.t === "bulk"
        ? v.v === null
          ? 0
          : Number(v.v.toString())
        : Number.NaN
      : v.t === "int"
        ? v.v
        : Number.NaN;
    if (!Number.isSafeInteger(n)) {
      this.summary.wrongReads++;
      this.error(`${where}: answered ${JSON.stringify(v)}`);
      return;
    }
    if (expect.final) {
      const { sharedMax: max, sharedMin: min } = this;
      const acked = this.sharedSeen.size;
      if (n < max) {
        this.summary.lostWrites++;
        this.error(`${where}: read back ${n}, below the acknowledged ${max}`);
      } else if (this.summary.resets === 0 && acked > 0 && (n !== max || max - min + 1 !== acked)) {
        this.summary.wrongReads++;
        this.error(`${where}: read back ${n} after ${acked} acknowledged INCRs from ${min} to ${max}`);
      } else this.summary.verifiedKeys++;
      return;
    }
    const last = this.sharedLast[c.index] ?? Number.NEGATIVE_INFINITY;
    if (n <= last || this.sharedSeen.has(n)) {
      this.summary.wrongReads++;
      this.error(
        `${where}: INCR gave ${n}, ${n <= last ? `not above this connection's ${last}` : "given before"}`,
      );
      return;
    }
    this.sharedLast[c.index] = n;
    this.sharedSeen.add(n);
    this.sharedMin = Math.min(this.sharedMin, n);
    this.sharedMax = Math.max(this.sharedMax, n);
  }

  /** Advances every connection; call after the stack processed input and before stack.poll(). */
  poll(now: number): void {
    if (this.phase === "done") return;
    for (const c of this.conns) {
      if (c.phase === "closed") {
        if (now < c.retryAt) continue;
        const { failures, generation } = c;
        Object.assign(c, this.open(c.index, now));
        c.failures = failures;
        c.generation = generation;
        this.summary.reconnects++;
      }
      const st = this.stack.state(c.sock);
      if (c.phase === "connecting") {
        if (st === "ESTABLISHED") {
          c.phase = "open";
          c.failures = 0;
          c.lastProgress = now;
        } else if (st === "CLOSED") {
          this.reset(c, now, `connect failed (${this.stack.error(c.sock)})`);
          continue;
        }
      }
      if (c.phase === "open" && (st === "CLOSED" || st === "CLOSE_WAIT" || this.stack.eof(c.sock))) {
        this.reset(
          c,
          now,
          `connection ${st === "CLOSED" ? `reset (${this.stack.error(c.sock)})` : "closed by the server"}`,
        );
        continue;
      }
      if (c.phase !== "open") continue;
      // Read replies.
      for (;;) {
        const data = this.stack.recv(c.sock, 65536);
        if (!data || data.length === 0) break;
        c.parser.push(data);
      }
      try {
        for (let v = c.parser.next(); v; v = c.parser.next()) {
          const o = c.outstanding.shift();
          if (!o) {
            this.summary.protocolErrors++;
            this.error(`conn ${c.index}: a reply nobody asked for`);
            continue;
          }
          this.summary.replies++;
          this.repliesSince++;
          this.opts.onReply?.(o.sentAt, now);
          this.summary.longestStallMs = Math.max(
            this.summary.longestStallMs,
            now - Math.max(o.sentAt, c.lastProgress),
          );
          c.lastProgress = now;
          if (this.opts.thinkMs) c.nextAt = now + this.thinkRand() * 2 * this.opts.thinkMs;
          this.check(c, o.expect, v);
        }
      } catch (e) {
        this.summary.protocolErrors++;
        this.error(`conn ${c.index}: ${e instanceof RespError ? e.message : String(e)}`);
        this.stack.abort(c.sock);
        this.reset(c, now, "unparsable reply", true);
        continue;
      }
      if (c.outstanding.length > 0) {
        this.summary.longestStallMs = Math.max(
          this.summary.longestStallMs,
          now - Math.max(c.outstanding[0]?.sentAt ?? now, c.lastProgress),
        );
      }
      // Issue commands.
      const limit = this.opts.maxRequestsPerConnection;
      while (
        this.phase === "run" &&
        now >= c.nextAt &&
        c.outstanding.length < this.opts.pipeline &&
        (limit === undefined || c.issued < limit)
      ) {
        const cmd = this.nextCommand(c);
        this.enqueue(c, cmd.args, cmd.expect, now);
      }
      // Flush what the socket accepts.
      if (c.outbuf.length > 0) {
        const n = this.stack.send(c.sock, c.outbuf);
        if (n > 0) c.outbuf = c.outbuf.subarray(n);
      }
    }
    this.advancePhase(now);
  }

  private reset(c: Conn, now: number, why: string, aborted = false): void {
    this.summary.resets++;
    this.error(`conn ${c.index}: ${why}`);
    if (!aborted) this.stack.close(c.sock);
    // Requests in flight on a reset connection have unknown outcomes: their keys are in doubt and
    // are not checked again; the reconnected connection works on fresh keys (a new generation).
    for (const o of c.outstanding) {
      if (o.expect.kind === "set") this.model.delete(o.expect.key);
      if (o.expect.kind === "incr") this.counters.delete(o.expect.key);
    }
    c.generation++;
    c.outstanding = [];
    c.outbuf = Buffer.alloc(0);
    c.parser = new RespParser();
    c.phase = "closed";
    // Back off: 50 ms doubling to 1 s, so a refused port is not hammered.
    c.retryAt = now + Math.min(1000, 50 * 2 ** c.failures);
    c.failures++;
  }

  private advancePhase(now: number): void {
    const idle = this.conns.every((c) => c.outstanding.length === 0 && c.outbuf.length === 0);
    if (this.phase === "run") {
      const limit = this.opts.maxRequestsPerConnection;
      if (limit !== undefined && this.conns.every((c) => c.issued >= limit)) this.phase = "drain";
      else return;
    }
    if (this.phase === "drain" && idle && this.conns.every((c) => c.phase === "open")) {
      this.phase = "verify";
      for (const c of this.conns) {
        for (const [key, value] of this.model) {
          if (key.startsWith(`c${c.index}.`))
            this.enqueue(c, ["GET", key], { kind: "get", key, value, final: true }, now);
        }
        for (const [key, value] of this.counters) {
          // A counter's last acknowledged INCR value: GET returns it as a string.
          if (key.startsWith(`c${c.index}.`))
            this.enqueue(c, ["GET", key], { kind: "get", key, value: String(value), final: true }, now);
        }
      }
      const first = this.conns[0];
      if (this.opts.sharedCounter && first) {
        const key = this.sharedKey;
        this.enqueue(first, ["GET", key], { kind: "shared", key, final: true }, now);
      }
      return;
    }
    if (this.phase === "verify" && idle && this.auditing) {
      this.auditing = false;
      this.audits++;
      this.phase = "run";
      return;
    }
    if (this.phase === "verify" && idle) {
      this.phase = "done";
      for (const c of this.conns) {
        this.stack.close(c.sock);
        c.phase = "closing";
      }
      this.summary.ok =
        this.summary.resets === 0 &&
        this.summary.lostWrites === 0 &&
        this.summary.wrongReads === 0 &&
        this.summary.protocolErrors === 0;
    }
  }
}

/** A summary before any work: all counts 0, ok. */
export function newKvLoadSummary(): KvLoadSummary {
  return {
    connections: 0,
    requests: 0,
    replies: 0,
    resets: 0,
    reconnects: 0,
    longestStallMs: 0,
    lostWrites: 0,
    wrongReads: 0,
    verifiedKeys: 0,
    protocolErrors: 0,
    errors: [],
    ok: true,
  };
}
