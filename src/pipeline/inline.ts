/**
 * The page pool's jobs on the calling thread: the same job code (jobs.ts) as
 * the worker threads run, behind the same `PageWorkers` interface, so a
 * caller has one path whether threads do the work or not. It is the
 * fallback when the pool is broken or absent, and what the simulations use
 * (they cannot run threads): there a seeded `defer` runs each job later, in
 * any order, so the callers' waiting and ordering code runs as it does
 * against threads. Buffers have one numbering per process (buffers.ts), so a
 * job built for the threads runs here unchanged once its buffers are shared here.
 */
import { bufferKey } from "./buffers.js";
import {
  type DecodeJob,
  type DecodeResult,
  type EncodeJob,
  type EncodeResult,
  EncodeScratch,
  type HashJob,
  type HashResult,
  runDecode,
  runEncode,
  runHash,
} from "./jobs.js";
import { type PageWorkers, Ticket } from "./pool.js";

export interface InlineWorkersOptions {
  /**
   * Runs a job later instead of at once (a simulation passes a seeded
   * scheduler; jobs may then finish in any order). Default: at once, so a
   * ticket is done when it is returned.
   */
  readonly defer?: (run: () => void) => void;
}

export class InlineWorkers implements PageWorkers {
  readonly threads = 0;
  readonly broken = undefined;
  private readonly views = new Map<number, Uint8Array>();
  /** Made on the first encode (2 MiB; a backup never encodes). */
  private scratch: EncodeScratch | undefined;
  private pending = 0;
  private closed = false;
  private readonly table = {
    get: (key: number): Uint8Array => {
      const v = this.views.get(key);
      if (!v) throw new Error(`shared buffer ${key} was never shared`);
      return v;
    },
  };

  constructor(private readonly opts: InlineWorkersOptions = {}) {}

  get inFlight(): number {
    return this.pending;
  }

  share(buffer: SharedArrayBuffer): number {
    const key = bufferKey(buffer);
    if (!this.views.has(key)) this.views.set(key, new Uint8Array(buffer));
    return key;
  }

  unshare(buffer: SharedArrayBuffer): void {
    this.views.delete(bufferKey(buffer));
  }

  encode(job: EncodeJob): Ticket<EncodeResult> {
    return this.run(() => runEncode(job, this.table, (this.scratch ??= new EncodeScratch())));
  }

  decode(job: DecodeJob): Ticket<DecodeResult> {
    return this.run(() => runDecode(job, this.table));
  }

  hash(job: HashJob): Ticket<HashResult> {
    return this.run(() => runHash(job, this.table));
  }

  private run<T>(work: () => T): Ticket<T> {
    const ticket = new Ticket<T>();
    if (this.closed) {
      ticket.settle(undefined, new Error("the page workers are closed"));
      return ticket;
    }
    const go = () => {
      this.pending--;
      if (this.closed) {
        ticket.settle(undefined, new Error("the page workers are closed"));
        return;
      }
      let result: T;
      try {
        result = work();
      } catch (e) {
        ticket.settle(undefined, e instanceof Error ? e : new Error(String(e)));
        return;
      }
      ticket.settle(result, undefined);
    };
    this.pending++;
    if (this.opts.defer) this.opts.defer(go);
    else go();
    return ticket;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
