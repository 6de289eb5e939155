/**
 * The daemon's logs: pino JSON lines on stderr (one object a line, for log
 * shippers and the tests that parse them), or a short readable line per record
 * when stderr is a terminal. The daemon binds child loggers to its role and
 * generation and rebinds them when either changes.
 */
import { type DestinationStream, type Level, type Logger, pino } from "pino";

/** The levels `--log-level` accepts. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

/** A root logger and the way to flush it. */
export interface DaemonLogger {
  readonly logger: Logger;
  /** Writes out what is still buffered; call before `process.exit`. */
  flush(): void;
}

/** Options of `createLogger`. */
export interface LoggerOptions {
  readonly level: string;
  /** Readable lines instead of JSON (default: when stderr is a terminal). */
  readonly pretty?: boolean;
  /** Where to write (default: stderr, fd 2). */
  readonly fd?: number;
}

/** Creates the root logger of a daemon. */
export function createLogger(opts: LoggerOptions): DaemonLogger {
  const fd = opts.fd ?? 2;
  const pretty = opts.pretty ?? (fd === 2 && process.stderr.isTTY === true);
  const sonic = pino.destination({ fd, sync: false });
  const dest: DestinationStream = pretty
    ? { write: (line: string) => void sonic.write(formatLine(line, process.stderr.hasColors?.() ?? false)) }
    : sonic;
  const logger = pino({ level: opts.level, base: { pid: process.pid } }, dest);
  return {
    logger,
    flush: () => {
      try {
        sonic.flushSync();
      } catch {
        // Nothing buffered, or the fd is already gone: there is nothing left to save.
      }
    },
  };
}

const LEVEL_NAMES: Record<number, Level> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};
const LEVEL_COLOURS: Record<string, string> = {
  trace: "90",
  debug: "36",
  info: "32",
  warn: "33",
  error: "31",
  fatal: "35",
};
const HIDDEN = new Set(["level", "time", "pid", "hostname", "msg", "role", "generation", "v"]);

/**
 * One pino JSON line as `12:00:01.234 INFO  primary/g2  message key=value ...`.
 * Lines that are not JSON pass through unchanged.
 */
export function formatLine(line: string, colour = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const t = typeof o.time === "number" ? new Date(o.time).toISOString().slice(11, 23) : "";
  const level = LEVEL_NAMES[o.level as number] ?? String(o.level);
  let tag = level.toUpperCase().padEnd(5);
  if (colour) tag = `\x1b[${LEVEL_COLOURS[level] ?? "0"}m${tag}\x1b[0m`;
  const who =
    o.role === undefined
      ? ""
      : `${String(o.role)}${o.generation === undefined ? "" : `/g${String(o.generation)}`}  `;
  const fields = Object.entries(o)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${k}=${formatValue(v)}`)
    .join(" ");
  return `${t} ${tag} ${who}${String(o.msg ?? "")}${fields ? `  ${fields}` : ""}\n`;
}

function formatValue(v: unknown): string {
  if (typeof v === "string") return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  if (v && typeof v === "object" && "stack" in v && typeof v.stack === "string") return `\n${v.stack}`;
  return JSON.stringify(v);
}
