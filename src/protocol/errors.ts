import { RemusError } from "../errors.js";

/**
 * Why a frame or a record was rejected. Stable strings: tests, logs and the
 * GOODBYE message use them. proto/SPEC.md §9 says which check yields which.
 */
export const PROTOCOL_ERROR_REASONS = [
  "bad-magic",
  "bad-version",
  "too-large",
  "truncated",
  "trailing-bytes",
  "bad-crc",
  "unknown-type",
  "bad-session",
  "bad-seq",
  "bad-value",
  "out-of-range",
  "bad-encoding",
  "bad-order",
  "bad-generation",
  "bad-geometry",
  "bad-checkpoint",
] as const;

export type ProtocolErrorReason = (typeof PROTOCOL_ERROR_REASONS)[number];

/**
 * A replication frame or record is malformed, out of order or fails a check.
 * The connection it came from must be closed: after one bad frame nothing
 * later on that stream can be trusted.
 */
export class ProtocolError extends RemusError {
  readonly reason: ProtocolErrorReason;

  constructor(reason: ProtocolErrorReason, message: string, options?: { cause?: unknown }) {
    super("REMUSD_ERR_PROTOCOL", `${reason}: ${message}`, options);
    this.name = "ProtocolError";
    this.reason = reason;
  }
}

export function isProtocolError(e: unknown, reason?: ProtocolErrorReason): e is ProtocolError {
  return e instanceof ProtocolError && (reason === undefined || e.reason === reason);
}
