/**
 * kvd's program: start (listen, open and replay the AOF) and the per-tick
 * loop (accept, then for each connection from a rotating start: flush output,
 * read input, execute the complete requests within the tick's budgets, flush
 * again; then the active expiry cycle and the table's incremental rehash).
 * Stateless code: everything it needs between ticks is in kvd's state block,
 * its connection blocks and the table (see src/guest/programs/kvd.ts).
 */
import { RemusError } from "../../errors.js";
import type { NetStack } from "../../net/stack.js";
import type { Kernel, Proc } from "../kernel.js";
import { requireStack } from "../netd.js";
import { applyAofRecord, parseAof } from "./aof.js";
import { execute } from "./commands.js";
import { Conn, roundPages } from "./conn.js";
import { type Exec, reclaimExpired } from "./exec.js";
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
  RUN_ID_BYTES,
} from "./layout.js";
import { errorReply, NO_PROGRESS, parseRequest, REPLY } from "./proto.js";
import { KvTable } from "./table.js";

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
    const outBefore = conn.outLen;
    execute(x, r.args);
    perturbReply(x, conn.outLen - outBefore);
    m.setU64(x.st + KS.commands, m.u64(x.st + KS.commands) + 1);
    m.setU64(conn.c + CN.commands, m.u64(conn.c + CN.commands) + 1);
    m.setU64(conn.c + CN.lastMs, x.now);
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

/** Injected divergence (tests): may change one byte of the reply just produced, the last `len` output bytes. */
function perturbReply(x: Exec, len: number): void {
  const sw = x.k.domain.divergence;
  if (sw === undefined || len <= 0) return;
  const conn = x.conn;
  const at = conn.get(CN.outBuf) + conn.get(CN.outHead) + conn.outLen - len;
  const p = sw.perturbReply(x.k.mem.view(at, len));
  if (p) x.k.mem.setU8(at + p.offset, p.value);
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

function serviceConn(x: Exec, slot: number): void {
  const stack = x.stack;
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
    const id = m.u64(st + KS.nextClientId) + 1;
    m.setU64(st + KS.nextClientId, id);
    m.setU64(c + CN.id, id);
    m.setU64(c + CN.createdMs, k.nowMs);
    m.setU64(c + CN.lastMs, k.nowMs);
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
  if (keys.length > 0) reclaimExpired(x, keys);
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
  m.setU64(st + KS.startMs, k.nowMs);
  for (let i = 0; i < RUN_ID_BYTES; i += 4) m.setU32(st + KS.runId + i, k.random32());
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
  const x: Exec = { k, pid: p.pid, st, table, stack, now: k.nowMs, slot: 0, conn: new Conn(m, k.heap, 0) };
  const start = m.u32(st + KS.connCursor);
  for (let i = 0; i < KVD_MAX_CLIENTS; i++) {
    const slot = (start + i) % KVD_MAX_CLIENTS;
    const c = m.u32(st + KS.conns + slot * 4);
    if (c === 0) continue;
    x.conn = new Conn(m, k.heap, c);
    x.slot = slot;
    serviceConn(x, slot);
  }
  m.setU32(st + KS.connCursor, (start + 1) % KVD_MAX_CLIENTS);
  activeExpire(x);
  table.maintain();
}
