/**
 * One error class for the whole daemon. Every condition has a stable
 * `REMUSD_ERR_*` code (listed in the README); `cause` is kept. The control API
 * maps codes to HTTP status in one place (`httpStatusOf`).
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

export function isRemusError(e: unknown, code?: ErrorCode): e is RemusError {
  return e instanceof RemusError && (code === undefined || e.code === code);
}

export function httpStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code].http;
}
