/**
 * One error class for the whole daemon and its command-line tools. Every
 * condition has a stable `REMUSD_ERR_*` code (listed in docs/errors.md);
 * `cause` is kept. Codes map to an HTTP status (`httpStatusOf`, the control
 * API) and to a process exit code (`exitCodeOf`, remusd and remusctl) here and
 * nowhere else.
 */

export const ERROR_CODES = {
  REMUSD_ERR_BAD_USAGE: { http: 400, text: "bad command-line usage or configuration" },
  REMUSD_ERR_BAD_REQUEST: { http: 400, text: "bad API request body or parameters" },
  REMUSD_ERR_BAD_GEOMETRY: {
    http: 400,
    text: "domain geometry (memory, disk) is invalid or does not match the peer",
  },
  REMUSD_ERR_OUT_OF_RANGE: {
    http: 400,
    text: "an address, pfn, block number or length is outside its bounds",
  },
  REMUSD_ERR_TOO_LARGE: { http: 413, text: "a write, record or value exceeds its documented limit" },
  REMUSD_ERR_BAD_WORKLOAD: { http: 400, text: "the --workload spec is not understood" },
  REMUSD_ERR_NO_SPACE: { http: 507, text: "the guest ran out of memory, disk blocks, inodes or table slots" },
  REMUSD_ERR_NOT_FOUND: { http: 404, text: "no such file, process, key or route" },
  REMUSD_ERR_BAD_FD: { http: 400, text: "the file descriptor is not open" },
  REMUSD_ERR_CORRUPT: { http: 500, text: "guest state failed a consistency check" },
  REMUSD_ERR_PROTOCOL: {
    http: 502,
    text: "a replication record is malformed, out of order or fails its checksum",
  },
  REMUSD_ERR_AUTH: { http: 401, text: "authentication failed" },
  REMUSD_ERR_FORBIDDEN: { http: 403, text: "the operation is refused by configuration" },
  REMUSD_ERR_WRONG_ROLE: { http: 409, text: "the operation is not valid for this daemon's role or state" },
  REMUSD_ERR_FENCED: {
    http: 409,
    text: "a peer with a newer generation exists; this daemon will not act as primary",
  },
  REMUSD_ERR_PEER_UNAVAILABLE: { http: 503, text: "the replication peer is not connected" },
  REMUSD_ERR_TIMEOUT: { http: 504, text: "the operation did not finish in time" },
  REMUSD_ERR_UNREACHABLE: { http: 503, text: "the daemon's control API cannot be reached" },
  REMUSD_ERR_BAD_REPLY: {
    http: 502,
    text: "the control API answered with something that is not a remusd reply",
  },
  REMUSD_ERR_INTERNAL: { http: 500, text: "an internal error" },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class RemusError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RemusError";
    this.code = code;
  }
}

/** Bad command-line usage or configuration: the message names the option and what was wrong. */
export function usageError(message: string, options?: { cause?: unknown }): RemusError {
  return new RemusError("REMUSD_ERR_BAD_USAGE", message, options);
}

/** True when `code` is one of `ERROR_CODES` (e.g. a code read from an API reply). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
}

export function isRemusError(e: unknown, code?: ErrorCode): e is RemusError {
  return e instanceof RemusError && (code === undefined || e.code === code);
}

export function httpStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code].http;
}

/** Exit codes of remusd and remusctl. */
export const EXIT = { ok: 0, runtime: 1, usage: 2 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit code of a process that fails with `e`: 2 for bad usage, 1 for anything else. */
export function exitCodeOf(e: unknown): ExitCode {
  return isRemusError(e, "REMUSD_ERR_BAD_USAGE") ? EXIT.usage : EXIT.runtime;
}

/**
 * The one line a command prints on stderr when it fails with `e`: the message
 * alone for bad usage (it names the option), `CODE: message` for a runtime failure.
 */
export function failureLine(e: unknown): string {
  if (isRemusError(e, "REMUSD_ERR_BAD_USAGE")) return e.message;
  if (isRemusError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}
