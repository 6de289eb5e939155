/**
 * The primary's streaming work, sent a piece at a time (sans-IO): the
 * pre-copy of a full sync (every page and disk block from live memory) and
 * each captured checkpoint (PAGE_BATCH*, DISK_WRITES*, VCPU, DEVICE,
 * CHECKPOINT_END).
 *
 * A `StreamJob` is a list of parts: runs of 4 KiB units sent as batch
 * records, and single records built when their turn comes (CHECKPOINT_END
 * needs the stream's counts at that moment). The machine steps the head job
 * while the link is below its high-water mark; a step sends one record and
 * returns what it sent, so a job never calls back into the machine.
 */
import type { Domain } from "../domain/domain.js";
import type { ReplicationRecord } from "../protocol/records.js";
import type { Conn } from "./conn.js";

/** 4 KiB units to send in batch records: guest pages or disk blocks. */
export interface Units {
  readonly count: number;
  /** The unit's pfn or block number. */
  index(i: number): number;
  /** The unit's 4096 bytes (read when its batch is encoded). */
  data(i: number): Uint8Array;
}

/** Every page of guest memory, from live memory. */
export function allPages(d: Domain): Units {
  return { count: d.pages, index: (i) => i, data: (i) => d.memory.page(i) };
}

/** Every block of the virtual disk, from the live disk. */
export function allBlocks(d: Domain): Units {
  return { count: d.disk.blocks, index: (i) => i, data: (i) => d.disk.view(i) };
}

/** Batch records carry pages (PAGE_BATCH) or disk blocks (DISK_WRITES). */
export type BatchKind = "pages" | "disk";

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

/**
 * Sends units `from`.. of `u` as batch records of epoch `epoch`, at most
 * `maxRecords` of them; returns the next unit to send. The one loop that
 * turns units into PAGE_BATCH and DISK_WRITES records.
 */
export function sendBatches(
  c: Conn,
  kind: BatchKind,
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
    const index = (i: number) => u.index(start + i);
    const data = (i: number) => u.data(start + i);
    const out =
      kind === "pages"
        ? c.codec.encodePageBatch(epoch, n, index, data, { compress: opts.compress })
        : c.codec.encodeDiskWrites(epoch, n, index, data, { compress: opts.compress });
    c.sendFrame(out.frame);
    sent.raw += out.rawBytes;
    sent.wire += out.wireBytes;
    next += n;
  }
  return next;
}

/** One part of a job: a run of units, or one record built when its turn comes. */
export type Part =
  | { readonly kind: BatchKind; readonly units: Units }
  | { readonly kind: "record"; readonly raw: number; readonly record: (c: Conn) => ReplicationRecord };

/** The streaming of one epoch's data, one record per step. */
export class StreamJob {
  private part = 0;
  private unit = 0;

  constructor(
    readonly epoch: number,
    private readonly parts: readonly Part[],
  ) {}

  /** Sends the next record; returns true when the job is finished (its last record went out). */
  step(c: Conn, opts: BatchOptions, sent: Sent): boolean {
    for (;;) {
      const p = this.parts[this.part];
      if (!p) return true;
      if (p.kind === "record") {
        sent.raw += p.raw;
        sent.wire += c.send(p.record(c));
        this.part++;
        return this.part === this.parts.length;
      }
      if (this.unit < p.units.count) {
        this.unit = sendBatches(c, p.kind, this.epoch, p.units, this.unit, opts, 1, sent);
        return false;
      }
      this.part++;
      this.unit = 0;
    }
  }
}
