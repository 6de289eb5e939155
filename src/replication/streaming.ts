/**
 * The primary's streaming work, a piece at a time (sans-IO): the pre-copy of
 * a sync (every page and disk block from live memory, then rounds of the
 * pages written meanwhile) and each captured checkpoint (PAGE_BATCH*,
 * DISK_WRITES*, VCPU, DEVICE, CHECKPOINT_END).
 *
 * Data flow:
 *
 *   StreamJob.fill ─ pages ─► BatchEncoder ─► page workers (pool, or this thread)
 *        │                        │ Ticket: an unsealed frame, some time later
 *        │                        ▼
 *        └─ disk, records ─► outbox, in stream order ─ flush ─► sealBatch / encode ─► Conn
 *
 * A job is a list of parts: pages of a capture, pages of live memory, disk
 * blocks, single records, and a "more" part that decides when it is reached
 * what comes next (the sync's rounds). `fill` submits work while the turn's
 * budget lasts; `flush` sends, in the order they were submitted, the items
 * that are ready. Frames are sealed (session, sequence number, CRC trailer)
 * as they are sent, so the order on the wire is the order of submission
 * whatever thread finished first. Records (DISK_WRITES built here, VCPU,
 * DEVICE, CHECKPOINT_END, which needs the stream's counts at that moment) are
 * built when their turn comes.
 *
 * Invariants:
 *  - A job never calls back into the machine: it reports what it sent.
 *  - A capture is read until every ticket of its job has ended (`settled`),
 *    not just until its frames are sent; the machine releases it only then.
 *  - A ticket that failed because the workers broke is encoded again on this
 *    thread; any other failure is a bug and ends the link (`StreamError`).
 */
import type { EpochCapture } from "../domain/capture.js";
import type { Domain } from "../domain/domain.js";
import { BatchEncoder } from "../pipeline/encoder.js";
import type { EncodeResult } from "../pipeline/jobs.js";
import type { PageWorkers, Ticket } from "../pipeline/pool.js";
import type { SentPageCache } from "../protocol/delta.js";
import type { ReplicationRecord } from "../protocol/records.js";
import type { Conn } from "./conn.js";

/** 4 KiB units read on this thread when their batch is built: disk blocks. */
export interface Units {
  readonly count: number;
  /** The unit's block number. */
  index(i: number): number;
  /** The unit's 4096 bytes (read when its batch is encoded). */
  data(i: number): Uint8Array;
}

/** Guest pages by position: pfn(i) strictly increasing. */
export interface PageList {
  readonly count: number;
  pfn(i: number): number;
}

/** Every page of guest memory. */
export function allPages(d: Domain): PageList {
  return { count: d.pages, pfn: (i) => i };
}

/** The pages of a (sorted) pfn list. */
export function pageList(pfns: Uint32Array): PageList {
  return { count: pfns.length, pfn: (i) => pfns[i] as number };
}

/** Every block of the virtual disk, from the live disk. */
export function allBlocks(d: Domain): Units {
  return { count: d.disk.blocks, index: (i) => i, data: (i) => d.disk.view(i) };
}

export interface BatchOptions {
  /** Units per batch record (1..512). */
  readonly batchPages: number;
  /** LZ4-compress the units on the wire. */
  readonly compress: boolean;
}

/** Bytes handed to the link: `raw` before compression and framing, `wire` as framed. */
export interface Sent {
  raw: number;
  wire: number;
}

/** Where and how a job's page batches are encoded. */
export interface Encoding extends BatchOptions {
  readonly domain: Domain;
  /** The page workers (a pool of threads, or this thread). */
  readonly workers: PageWorkers;
  /** This thread: the fallback when the workers broke. */
  readonly inline: PageWorkers;
  /** XOR bases of this sync (only toward a backup that set HELLO DELTA). */
  readonly cache: SentPageCache | undefined;
  /** Parts of at most this many pages are encoded on this thread: two thread hops cost more than the work. */
  readonly inlinePages: number;
}

/** What one turn may still do: submit `units` more pages or blocks, until `stopAt` on `clock`. */
export interface Budget {
  units: number;
  readonly stopAt: number;
  readonly clock: () => number;
  /** Page jobs in the workers at most (more wait for the next turn). */
  readonly maxQueued: number;
}

export function spent(b: Budget): boolean {
  return b.units <= 0 || b.clock() >= b.stopAt;
}

/** Default: parts of at most this many pages are encoded on the sending thread (latency over parallelism). */
export const INLINE_PAGES = 128;

/** A failure that is not the link's: the machine ends the link with it. */
export class StreamError extends Error {}

/**
 * Sends DISK_WRITES of `units` from `from`, at most `maxRecords` of them,
 * encoded here; returns the next unit. Disk blocks never have XOR bases.
 */
export function sendDisk(
  c: Conn,
  epoch: number,
  u: Units,
  from: number,
  opts: BatchOptions,
  maxRecords: number,
  sent: Sent,
): number {
  let next = from;
  for (let r = 0; r < maxRecords && next < u.count; r++) {
    const start = next;
    const n = Math.min(opts.batchPages, u.count - start);
    const out = c.codec.encodeDiskWrites(
      epoch,
      n,
      (i) => u.index(start + i),
      (i) => u.data(start + i),
      { compress: opts.compress },
    );
    c.sendFrame(out.frame);
    sent.raw += out.rawBytes;
    sent.wire += out.wireBytes;
    next += n;
  }
  return next;
}

/** One part of a job. */
export type Part =
  /** Pages of a checkpoint's capture. */
  | { readonly kind: "capture"; readonly capture: EpochCapture }
  /** Pages of live memory (the sync). */
  | { readonly kind: "memory"; readonly pages: PageList }
  | { readonly kind: "disk"; readonly units: Units }
  | { readonly kind: "record"; readonly raw: number; readonly record: (c: Conn) => ReplicationRecord }
  /** Decided once everything before it is sent: the next part, or none (the sync's rounds). */
  | { readonly kind: "more"; readonly next: () => Part | undefined };

type OutItem =
  | {
      readonly kind: "batch";
      ticket: Ticket<EncodeResult>;
      /** The same batch again, on this thread (after the workers broke). */
      readonly again: () => Ticket<EncodeResult>;
      retried: boolean;
    }
  | {
      readonly kind: "send";
      readonly send: (c: Conn, sent: Sent) => void;
      /** Built here when sent (DISK_WRITES: zero checks, LZ4): waits for a turn with budget left. */
      readonly costly: boolean;
    };

/** The streaming of one epoch's data. */
export class StreamJob {
  private parts: Part[];
  private part = 0;
  private unit = 0;
  private readonly out: OutItem[] = [];
  private head = 0;
  /** Tickets submitted and not ended, for `settled`. */
  private open: Ticket<EncodeResult>[] = [];

  constructor(
    readonly epoch: number,
    parts: readonly Part[],
  ) {
    this.parts = [...parts];
  }

  /** Every part submitted and every frame sent. */
  get done(): boolean {
    return this.part >= this.parts.length && this.head === this.out.length;
  }

  /** No ticket of this job is still running (its capture may be released). */
  get settled(): boolean {
    this.open = this.open.filter((t) => !t.done);
    return this.open.length === 0;
  }

  /** Frames submitted and not yet sent. */
  get queued(): number {
    return this.out.length - this.head;
  }

  /** Submits the next parts' work while `b` lasts. Returns whether it submitted anything. */
  fill(enc: Encoding, b: Budget): boolean {
    let any = false;
    while (this.part < this.parts.length && !spent(b)) {
      const p = this.parts[this.part] as Part;
      switch (p.kind) {
        case "record":
          this.out.push({
            kind: "send",
            send: (c, sent) => {
              sent.raw += p.raw;
              sent.wire += c.send(p.record(c));
            },
            costly: false,
          });
          this.part++;
          any = true;
          continue;
        case "more": {
          // Decided only once everything before it went out (a round drains what was written meanwhile).
          if (this.head !== this.out.length) return any;
          const next = p.next();
          if (next === undefined) this.part++;
          else {
            this.parts.splice(this.part, 0, next);
            this.unit = 0;
          }
          any = true;
          continue;
        }
        case "disk": {
          const total = p.units.count;
          if (this.unit >= total) break;
          const from = this.unit;
          const n = Math.min(enc.batchPages, total - from);
          this.unit += n;
          b.units -= n;
          const opts = { batchPages: enc.batchPages, compress: enc.compress };
          this.out.push({
            kind: "send",
            send: (c, sent) => sendDisk(c, this.epoch, p.units, from, opts, 1, sent),
            costly: true,
          });
          any = true;
          continue;
        }
        case "capture":
        case "memory": {
          const total = p.kind === "capture" ? p.capture.count : p.pages.count;
          if (this.unit >= total) break;
          if (enc.workers.inFlight >= b.maxQueued && !enc.workers.broken) return any;
          const from = this.unit;
          const n = Math.min(enc.batchPages, total - from);
          this.unit += n;
          b.units -= n;
          const submit = (w: PageWorkers): Ticket<EncodeResult> => {
            const e = new BatchEncoder(w, {
              compress: enc.compress,
              ...(enc.cache ? { cache: enc.cache } : {}),
            });
            if (p.kind === "capture") return e.capture(this.epoch, p.capture, from, n);
            const pfns = new Uint32Array(n);
            for (let i = 0; i < n; i++) pfns[i] = p.pages.pfn(from + i);
            return e.memoryPages(this.epoch, enc.domain.memory, pfns);
          };
          const here = enc.workers.broken !== undefined || total <= enc.inlinePages;
          const ticket = submit(here ? enc.inline : enc.workers);
          this.open.push(ticket);
          this.out.push({
            kind: "batch",
            ticket,
            again: () => {
              const t = submit(enc.inline);
              this.open.push(t);
              return t;
            },
            retried: here,
          });
          any = true;
          continue;
        }
      }
      this.part++;
      this.unit = 0;
    }
    return any;
  }

  /**
   * Sends the ready items in submission order; stops at the first batch still
   * being encoded, and before a batch built here once `b` is spent. Throws
   * `StreamError` for a batch that cannot be encoded.
   */
  flush(c: Conn, sent: Sent, b: Budget): void {
    while (this.head < this.out.length) {
      const item = this.out[this.head] as OutItem;
      if (item.kind === "send") {
        if (item.costly && b.clock() >= b.stopAt) return;
        item.send(c, sent);
      } else {
        const t = item.ticket;
        if (!t.done) return;
        if (t.error !== undefined || t.result === undefined) {
          if (item.retried) throw new StreamError(`a page batch could not be encoded: ${t.error?.message}`);
          item.ticket = item.again();
          item.retried = true;
          continue;
        }
        const r = t.result;
        c.sendFrame(c.codec.sealBatch(r.frame as Buffer, r.bodyCrc));
        sent.raw += r.rawBytes;
        sent.wire += r.wireBytes;
      }
      this.out[this.head++] = undefined as unknown as OutItem;
    }
  }
}
