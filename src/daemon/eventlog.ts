/**
 * The event log (`--event-log FILE`): JSON Lines, one object a line, every line
 * with `ts`, `event`, `role`, `epoch`. Each line is written with one
 * synchronous write to a file opened for appending, so it reaches the kernel
 * before the call returns and survives a SIGKILL of the daemon.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";

export interface EventFields {
  readonly [k: string]: unknown;
}

export class EventLog {
  private fd: number | undefined;

  constructor(readonly path: string | undefined) {
    if (path) {
      mkdirSync(dirname(path), { recursive: true });
      this.fd = openSync(path, "a");
    }
  }

  write(event: string, role: string, epoch: number, fields: EventFields = {}): void {
    if (this.fd === undefined) return;
    const line = `${JSON.stringify({ ts: new Date().toISOString(), event, role, epoch, ...fields })}\n`;
    writeSync(this.fd, line);
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
