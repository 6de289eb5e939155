/**
 * The event log (`--event-log FILE`): JSON Lines, one object a line, every line
 * with `ts`, `event`, `role`, `epoch`. Each line is written with one
 * synchronous write to a file opened for appending, so it reaches the kernel
 * before the call returns and survives a SIGKILL of the daemon.
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
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
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown> & { event: string; epoch: number });
}
