/**
 * A pool of worker threads that encode and decode page batches (jobs.ts), so
 * that compression, decompression and CRC run on the machine's other cores
 * while the event loop keeps the guest, the sockets and the timers.
 *
 * Data flow (encode, the primary):
 *
 *   main: capture.shared() ─► share() buffers once ─► encode(job) ─► Ticket
 *         (SentPageCache.reserve plans the delta slots; pinned until release)
 *   worker: settle CoW pages, zero/XOR/LZ4/CRC ─► unsealed frame (transferred)
 *   main: ticket.done, in submission order ─► sealFrame(seq) ─► send
 *         ─► SentPageCache.release
 *
 * Decode (the backup) is the mirror: the receiving thread checks the frame,
 * picks each entry's destination (staging, or the image during a full sync)
 * and base, and a worker expands the pages into shared memory.
 *
 * Properties:
 *  - Jobs start in submission order on each worker and each job's result is
 *    its own; a caller that consumes tickets in the order it submitted them
 *    (`TicketQueue`) sends frames in order whatever thread finished first.
 *  - No page is copied to submit a job: jobs name shared buffers by number.
 *    A buffer is posted to every worker once (`share`), before any job that
 *    names it, because messages to one worker arrive in order.
 *  - A job's result is a `Ticket` the sans-IO machines can poll (`done`)
 *    without awaiting, or await (`promise`).
 *  - A worker that dies fails its jobs and the pool (`broken`): the caller
 *    falls back to encoding on its own thread.
 *
 * `PageWorkers` is what callers see; `PagePool` runs the jobs on threads and
 * `InlineWorkers` (inline.ts) runs the same job code on the calling thread
 * (the fallback, and the simulations, which cannot run threads).
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { bufferKey } from "./buffers.js";
import type { DecodeJob, DecodeResult, EncodeJob, EncodeResult, HashJob, HashResult } from "./jobs.js";

/** Messages to a worker. */
export type ToWorker =
  | { op: "share"; key: number; buffer: SharedArrayBuffer }
  | { op: "unshare"; key: number }
  | { op: "encode"; id: number; job: EncodeJob }
  | { op: "decode"; id: number; job: DecodeJob }
  | { op: "hash"; id: number; job: HashJob };

type Result = EncodeResult | DecodeResult | HashResult;
type FromWorker = { id: number; result: Result } | { id: number; error: string };

/**
 * A job's outcome, pollable without awaiting. The promise is made only when
 * someone asks for it: a settled promise queues a microtask, and a long
 * synchronous run (a simulation) never drains those, so every ticket would
 * stay reachable until it ends.
 */
export class Ticket<T> {
  done = false;
  result: T | undefined;
  error: Error | undefined;
  private waiters: { resolve: (v: T) => void; reject: (e: Error) => void }[] | undefined;

  /** The outcome as a promise (rejects with `error`). */
  get promise(): Promise<T> {
    if (this.done) {
      return this.error !== undefined ? Promise.reject(this.error) : Promise.resolve(this.result as T);
    }
    return new Promise<T>((resolve, reject) => {
      (this.waiters ??= []).push({ resolve, reject });
    });
  }

  /** Runs synchronously when the job ends, before anyone sees the outcome (bookkeeping). */
  beforeSettle: ((result: T | undefined, error: Error | undefined) => void) | undefined;
  /** @internal */
  settle(result: T | undefined, error: Error | undefined): void {
    if (this.done) return;
    this.beforeSettle?.(result, error);
    this.beforeSettle = undefined;
    this.done = true;
    if (error) this.error = error;
    else this.result = result as T;
    const w = this.waiters;
    this.waiters = undefined;
    if (w === undefined) return;
    for (const x of w) {
      if (error) x.reject(error);
      else x.resolve(result as T);
    }
  }
}

/** Tickets consumed strictly in the order they were added. */
export class TicketQueue<T> {
  private readonly q: Ticket<T>[] = [];
  get length(): number {
    return this.q.length;
  }
  push(t: Ticket<T>): void {
    this.q.push(t);
  }
  /** The oldest ticket if it is done (removed), else undefined. */
  shift(): Ticket<T> | undefined {
    const t = this.q[0];
    if (!t?.done) return undefined;
    this.q.shift();
    return t;
  }
  /** The oldest ticket once it is done (removed). */
  async next(): Promise<Ticket<T> | undefined> {
    const t = this.q[0];
    if (!t) return undefined;
    await t.promise.catch(() => {});
    this.q.shift();
    return t;
  }
}

/** Where batch jobs run: worker threads (`PagePool`) or the calling thread (`InlineWorkers`). */
export interface PageWorkers {
  /** Threads that run the jobs (0: the calling thread). */
  readonly threads: number;
  /** Why the workers stopped working, if they did (then every job fails at once). */
  readonly broken: Error | undefined;
  /** Jobs submitted and not finished. */
  readonly inFlight: number;
  /** The number jobs use for `buffer`, registering it the first time. */
  share(buffer: SharedArrayBuffer): number;
  /** Forgets `buffer` (no job may name it any more). */
  unshare(buffer: SharedArrayBuffer): void;
  encode(job: EncodeJob): Ticket<EncodeResult>;
  decode(job: DecodeJob): Ticket<DecodeResult>;
  hash(job: HashJob): Ticket<HashResult>;
  close(): Promise<void>;
}

interface Slot {
  readonly worker: Worker;
  readonly pending: Map<number, Ticket<Result>>;
}

export interface PagePoolOptions {
  /** Worker threads (default: the machine's cores). */
  readonly threads?: number;
  /** Called on the owning thread after any job finished (a daemon steps its node then). */
  readonly onSettle?: () => void;
}

export class PagePool implements PageWorkers {
  readonly threads: number;
  private readonly slots: Slot[] = [];
  /** Buffers posted to the workers. */
  private readonly posted = new WeakSet<SharedArrayBuffer>();
  private nextId = 1;
  private _broken: Error | undefined;
  private closed = false;

  constructor(private readonly opts: PagePoolOptions = {}) {
    this.threads = Math.max(1, Math.floor(opts.threads ?? availableParallelism()));
    const url = new URL("./worker.js", import.meta.url);
    for (let t = 0; t < this.threads; t++) {
      const worker = new Worker(url);
      // The pool must not keep a process alive on its own.
      worker.unref();
      const slot: Slot = { worker, pending: new Map() };
      worker.on("message", (m: FromWorker) => {
        const ticket = slot.pending.get(m.id);
        if (!ticket) return;
        slot.pending.delete(m.id);
        this.settled(ticket, m);
      });
      worker.on("error", (e) => this.fail(slot, e));
      worker.on("exit", (code) => {
        if (!this.closed) this.fail(slot, new Error(`pipeline worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  private settled(ticket: Ticket<Result>, m: FromWorker): void {
    if ("error" in m) ticket.settle(undefined, new Error(`pipeline worker: ${m.error}`));
    else {
      const r = m.result;
      // A transferred frame arrives as a Uint8Array; callers get a Buffer over the same bytes.
      if ("frame" in r)
        (r as { frame: Uint8Array }).frame = Buffer.from(r.frame.buffer, r.frame.byteOffset, r.frame.length);
      ticket.settle(r, undefined);
    }
    this.opts.onSettle?.();
  }

  /** Why the pool stopped working (a worker died), if it did. */
  get broken(): Error | undefined {
    return this._broken;
  }

  /** Jobs submitted and not finished. */
  get inFlight(): number {
    let n = 0;
    for (const s of this.slots) n += s.pending.size;
    return n;
  }

  /** The number jobs use for `buffer`, posting it to the workers the first time. */
  share(buffer: SharedArrayBuffer): number {
    const key = bufferKey(buffer);
    if (this.posted.has(buffer)) return key;
    this.posted.add(buffer);
    for (const s of this.slots) s.worker.postMessage({ op: "share", key, buffer } satisfies ToWorker);
    return key;
  }

  /** Lets the workers drop `buffer` (no job may name it any more). */
  unshare(buffer: SharedArrayBuffer): void {
    if (!this.posted.delete(buffer)) return;
    const key = bufferKey(buffer);
    for (const s of this.slots) s.worker.postMessage({ op: "unshare", key } satisfies ToWorker);
  }

  encode(job: EncodeJob): Ticket<EncodeResult> {
    return this.submit("encode", job) as Ticket<EncodeResult>;
  }

  decode(job: DecodeJob): Ticket<DecodeResult> {
    return this.submit("decode", job) as Ticket<DecodeResult>;
  }

  hash(job: HashJob): Ticket<HashResult> {
    return this.submit("hash", job) as Ticket<HashResult>;
  }

  private submit(op: "encode" | "decode" | "hash", job: EncodeJob | DecodeJob | HashJob): Ticket<Result> {
    const ticket = new Ticket<Result>();
    if (this._broken || this.closed) {
      ticket.settle(undefined, this._broken ?? new Error("the page pool is closed"));
      return ticket;
    }
    // The least busy worker; ties go to the first, so one job at a time stays on one thread.
    let slot = this.slots[0] as Slot;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    const id = this.nextId++;
    slot.pending.set(id, ticket);
    if (op === "decode") {
      // Cloning a view clones its whole ArrayBuffer (a socket's read buffer, say): move an
      // exact copy of the frame instead (wire bytes, compressed: the cheap side).
      const frame = new Uint8Array((job as DecodeJob).frame);
      slot.worker.postMessage({ op, id, job: { ...job, frame } } as ToWorker, [frame.buffer]);
    } else {
      slot.worker.postMessage({ op, id, job } as ToWorker);
    }
    return ticket;
  }

  private fail(slot: Slot, e: Error): void {
    this._broken ??= e;
    for (const t of slot.pending.values()) t.settle(undefined, e);
    slot.pending.clear();
    this.opts.onSettle?.();
  }

  /** Stops every worker; jobs still in flight fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new Error("the page pool is closed");
    for (const s of this.slots) {
      for (const t of s.pending.values()) t.settle(undefined, err);
      s.pending.clear();
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
