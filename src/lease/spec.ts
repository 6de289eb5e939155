/**
 * The `--lease` option and its timing options: `none` (generation-only
 * fencing) or `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`, plus the TTL, the
 * margin and the renewal schedule derived from them. Bad values are usage
 * errors that name the option.
 */
import { usageError } from "../errors.js";
import { type HostPort, parseHostPort } from "../net/addr.js";

/** Where the lease lives: nowhere (generation-only fencing) or an etcd cluster. */
export type LeaseSpec =
  | { readonly kind: "none" }
  | {
      readonly kind: "etcd";
      readonly endpoints: readonly HostPort[];
      /** The key prefix of this domain's lease, with a leading and no trailing slash: `/remusd/demo`. */
      readonly prefix: string;
    };

export type EtcdLeaseSpec = Extract<LeaseSpec, { kind: "etcd" }>;

const USAGE = "--lease must be 'none' or etcd://HOST:PORT[,HOST:PORT...]/PREFIX";
/** Endpoints at most; more is a typo or an attack on the option, not a cluster. */
const MAX_ENDPOINTS = 16;
const PREFIX_RE = /^(\/[A-Za-z0-9._-]+)+$/;

/** Parses the value of `--lease`. */
export function parseLeaseSpec(value: string): LeaseSpec {
  const v = value.trim();
  if (v === "none") return { kind: "none" };
  const m = /^etcd:\/\/([^/]*)(\/.*)?$/.exec(v);
  if (!m) throw usageError(`${USAGE}, got '${value}'`);
  const hosts = m[1] as string;
  const prefix = (m[2] ?? "").replace(/\/+$/, "");
  if (hosts === "") throw usageError(`${USAGE}: no endpoint in '${value}'`);
  const parts = hosts.split(",");
  if (parts.length > MAX_ENDPOINTS) throw usageError(`--lease: at most ${MAX_ENDPOINTS} endpoints`);
  const endpoints = parts.map((p) => {
    const hp = parseHostPort(p, "--lease endpoint");
    if (p.trim().startsWith(":") || hp.port === 0)
      throw usageError(`--lease endpoint must name a host and a port other than 0, got '${p}'`);
    return hp;
  });
  if (prefix === "") throw usageError(`${USAGE}: the PREFIX (e.g. /remusd/demo) is missing in '${value}'`);
  if (!PREFIX_RE.test(prefix) || prefix.length > 256)
    throw usageError(
      `--lease PREFIX must be /NAME[/NAME...] of letters, digits, '.', '_' and '-' (at most 256 characters), got '${prefix}'`,
    );
  return { kind: "etcd", endpoints, prefix };
}

/** `etcd://h1:p1,h2:p2/prefix`: the spec as the option writes it. */
export function formatLeaseSpec(spec: LeaseSpec): string {
  if (spec.kind === "none") return "none";
  const hosts = spec.endpoints.map((e) =>
    e.host.includes(":") ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`,
  );
  return `etcd://${hosts.join(",")}${spec.prefix}`;
}

/** The times the lease works with, in ms of the node's monotonic clock. */
export interface LeaseTiming {
  /** The TTL asked of the service (etcd grants whole seconds, and may raise it to its own minimum). */
  readonly ttlMs: number;
  /** Output stops this long before the deadline: room for clock-rate drift and frames already on their way. */
  readonly marginMs: number;
  /** A renewal is sent this long after the previous one was sent. */
  readonly renewEveryMs: number;
  /** A renewal or an acquisition attempt that failed is retried after this long. */
  readonly retryMs: number;
  /** A request to the service that got no answer after this long counts as failed. */
  readonly requestTimeoutMs: number;
}

/** `--lease-ttl-s`: whole seconds, as etcd grants them. */
export const LEASE_TTL_S = { min: 1, max: 600, default: 5 } as const;
/** `--lease-margin-ms` (0: a tenth of the TTL, at least 100 ms). */
export const LEASE_MARGIN_MS = { min: 0, max: 300_000, default: 0 } as const;

/**
 * The timing of a lease with `ttlS` seconds and `marginMs` (0: the default).
 * Renewals go out every third of the TTL (as etcd's own clients do), so two
 * may fail before the deadline; the margin must leave the lease usable
 * between renewals.
 */
export function leaseTiming(ttlS: number, marginMs = 0): LeaseTiming {
  if (!Number.isInteger(ttlS) || ttlS < LEASE_TTL_S.min || ttlS > LEASE_TTL_S.max)
    throw usageError(
      `--lease-ttl-s: expected an integer from ${LEASE_TTL_S.min} to ${LEASE_TTL_S.max}, got ${ttlS}`,
    );
  const ttlMs = ttlS * 1000;
  const margin = marginMs === 0 ? Math.max(100, Math.round(ttlMs / 10)) : marginMs;
  const renewEveryMs = Math.round(ttlMs / 3);
  if (!(margin >= 0) || margin > ttlMs - renewEveryMs - renewEveryMs / 2)
    throw usageError(
      `--lease-margin-ms: ${margin} ms leaves no time to renew a ${ttlS} s lease (at most ${Math.floor(ttlMs - renewEveryMs * 1.5)} ms)`,
    );
  return {
    ttlMs,
    marginMs: margin,
    renewEveryMs,
    retryMs: Math.max(50, Math.round(ttlMs / 10)),
    requestTimeoutMs: renewEveryMs,
  };
}
