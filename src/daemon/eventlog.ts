/**
 * The event log (`--event-log FILE`): JSON Lines, one object a line, every line
 * with `ts`, `event`, `role`, `epoch`. Each line is written with one
 * synchronous write to a file opened for appending, so it reaches the kernel
 * before the call returns and survives a SIGKILL of the daemon. The last
 * events (checkpoint events excepted: forty a second would crowd out the rest)
 * are also kept in memory with a sequence number, for GET /v1/events.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";

export interface EventFields {
  readonly [k: string]: unknown;
}

/** An event as GET /v1/events returns it. */
export type RecentEvent = {
  seq: number;
  ts: string;
  event: string;
  role: string;
  epoch: number;
} & EventFields;

/** How many events the in-memory buffer keeps. */
export const RECENT_EVENTS = 1024;

/** Events too frequent for the in-memory buffer. */
const NOT_KEPT: ReadonlySet<string> = new Set([
  "checkpoint.sent",
  "checkpoint.committed",
  "checkpoint.applied",
]);

export class EventLog {
  private fd: number | undefined;
  private readonly recentEvents: RecentEvent[] = [];
  private seq = 0;

  constructor(readonly path: string | undefined) {
    if (path) {
      mkdirSync(dirname(path), { recursive: true });
      this.fd = openSync(path, "a");
    }
  }

  write(event: string, role: string, epoch: number, fields: EventFields = {}): void {
    const ts = new Date().toISOString();
    if (!NOT_KEPT.has(event)) {
      this.recentEvents.push({ ...fields, seq: ++this.seq, ts, event, role, epoch });
      if (this.recentEvents.length > RECENT_EVENTS) this.recentEvents.shift();
    }
    if (this.fd === undefined) return;
    const line = `${JSON.stringify({ ts, event, role, epoch, ...fields })}\n`;
    writeSync(this.fd, line);
  }

  /** The kept events with a sequence number above `since`, and whether some of those were dropped. */
  recent(since = 0): { events: RecentEvent[]; dropped: boolean } {
    const first = this.recentEvents[0];
    return {
      events: this.recentEvents.filter((e) => e.seq > since),
      dropped: first !== undefined && first.seq > since + 1,
    };
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

/** Reads an event log back (for tests and tools). */
export function parseEventLog(
  text: string,
): Array<Record<string, unknown> & { event: string; epoch: number }> {
  return parseJsonLines(text) as Array<Record<string, unknown> & { event: string; epoch: number }>;
}

/** Reads an event log file back ([] when it does not exist yet). */
export function readEventLog(file: string): ReturnType<typeof parseEventLog> {
  return existsSync(file) ? parseEventLog(readFileSync(file, "utf8")) : [];
}

/**
 * The JSON objects of a JSON Lines text (an event log, or pino's stderr).
 * Lines that are not complete JSON objects (other output, or a line still
 * being written by another process) are skipped.
 */
export function parseJsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // an incomplete line
    }
  }
  return out;
}
