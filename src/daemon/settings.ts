/**
 * Turns parsed command-line options into a daemon's settings: reads the
 * replication key and API token, checks the security rules (no key without
 * --insecure, no open mutating API without a token or --unsafe-open-api, no
 * --no-netbuf without --unsafe) and resolves defaults.
 */
import { readFileSync } from "node:fs";
import { availableParallelism, hostname } from "node:os";
import { join } from "node:path";
import { INTERVAL_MS } from "../bounds.js";
import type { PinnedConfig } from "../domain/config.js";
import { type DivergenceSwitch, parseDivergence } from "../domain/divergence.js";
import { type DomainGeometry, geometryOfMiB } from "../domain/domain.js";
import { isRemusError, usageError } from "../errors.js";
import { parseWorkload, type WorkloadSpec } from "../guest/workload.js";
import { type LeaseSpec, type LeaseTiming, leaseTiming, parseLeaseSpec } from "../lease/spec.js";
import { type HostPort, parseHostPort, parseIpOption, parseMacOption } from "../net/addr.js";
import type { HeartbeatConfig } from "../replication/heartbeat.js";

/** Option values by flag name, as the command-line parser produces them. */
export type OptionValues = Readonly<Record<string, string | number | boolean | undefined>>;

export interface DaemonSettings {
  /** The role the daemon starts in (`remusd node`: decided by the lease at start, see `node`). */
  readonly role: "primary" | "backup";
  /** `remusd node`: the lease decides the role, and the node without it follows the holder. */
  readonly node: boolean;
  /** Where the lease lives (`none`: generation-only fencing). */
  readonly lease: LeaseSpec;
  readonly leaseTiming: LeaseTiming;
  /** This node's name in the lease record, and the addresses the record advertises. */
  readonly nodeName: string;
  readonly advertise: string | undefined;
  readonly advertiseControl: string | undefined;
  /** `--holder-label`: on Kubernetes, this node labels its own pod KEY=true while it holds the lease, else false. */
  readonly holderLabel: string | undefined;
  readonly control: HostPort;
  readonly listen: HostPort | undefined;
  readonly peer: string | undefined;
  readonly dataDir: string;
  readonly eventLog: string | undefined;
  readonly verify: boolean;
  readonly geometry: DomainGeometry;
  readonly key: Buffer;
  readonly insecure: boolean;
  readonly apiToken: string | undefined;
  readonly apiAuth: "mutating" | "all";
  readonly unsafeOpenApi: boolean;
  readonly heartbeat: HeartbeatConfig;
  readonly switchAddr: HostPort | undefined;
  readonly guestMac: Uint8Array;
  readonly guestIp: number;
  readonly netbuf: boolean;
  readonly seed: number;
  readonly logLevel: string;
  readonly intervalMs: number;
  readonly workload: WorkloadSpec;
  readonly maxInFlight: number;
  readonly maxInFlightBytes: number;
  readonly compress: boolean;
  /** Page worker threads (0: none, the event loop's thread does the work). */
  readonly workers: number;
  /** How the primary's pause captures pages. */
  readonly capture: "cow" | "copy";
  /** POST /v1/faults/* may crash, stall or cut this daemon (never without --allow-fault-injection). */
  readonly allowFaultInjection: boolean;
  /** Remus or COLO (both daemons of a pair must agree). */
  readonly mode: "remus" | "colo";
  /** Divergence injected into this replica's guest (--inject-divergence, a rehearsal switch). */
  readonly divergence: DivergenceSwitch | undefined;
  /** The domain settings given explicitly: a backup's primary must agree with them (the rest it adopts). */
  readonly pinned: PinnedConfig;
}

/**
 * A secret from `file` (trimmed; a file that cannot be read or is empty is bad
 * usage) or else from the environment value `envValue`: a file named by an
 * option wins over a secret in the environment.
 */
export function readSecret(
  file: string | undefined,
  envValue: string | undefined,
  what: string,
): string | undefined {
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw usageError(`cannot read ${what} file ${file}: ${(e as Error).message}`, { cause: e });
    }
    const v = text.trim();
    if (v.length === 0) throw usageError(`${what} file ${file} is empty`);
    return v;
  }
  if (envValue !== undefined && envValue.trim() !== "") return envValue.trim();
  return undefined;
}

/**
 * The domain settings among `given` (the options set explicitly), as the
 * domain's configuration names them (src/domain/config.ts).
 */
export function pinnedConfig(
  given: ReadonlySet<string>,
  s: Pick<DaemonSettings, "geometry" | "intervalMs" | "guestMac" | "guestIp" | "workload">,
): PinnedConfig {
  return {
    ...(given.has("domain-mib") ? { pages: s.geometry.memoryBytes / 4096 } : {}),
    ...(given.has("disk-mib") ? { diskBlocks: s.geometry.diskBytes / 4096 } : {}),
    ...(given.has("interval-ms") ? { intervalMs: s.intervalMs } : {}),
    ...(given.has("guest-mac") ? { guestMac: s.guestMac } : {}),
    ...(given.has("guest-ip") ? { guestIp: s.guestIp } : {}),
    ...(given.has("workload") ? { workload: s.workload.text } : {}),
  };
}

export function resolveSettings(
  command: "primary" | "backup" | "node",
  v: OptionValues,
  env: NodeJS.ProcessEnv = process.env,
  given: ReadonlySet<string> = new Set(),
): DaemonSettings {
  const role = command === "primary" ? "primary" : "backup";
  const lease = parseLeaseSpec((v.lease as string | undefined) ?? "none");
  if (command === "node" && lease.kind === "none") {
    throw usageError(
      "remusd node decides its role by the lease: give --lease etcd://HOST:PORT/PREFIX (for fixed roles without a lease, run remusd primary and remusd backup)",
    );
  }
  const timing = leaseTiming(
    (v["lease-ttl-s"] as number | undefined) ?? 5,
    (v["lease-margin-ms"] as number | undefined) ?? 0,
  );
  const key = readSecret(v["auth-key-file"] as string | undefined, env.REMUSD_AUTH_KEY, "replication key");
  const insecure = v.insecure === true;
  if (!key && !insecure) {
    throw usageError(
      "no replication key: give --auth-key-file FILE (or REMUSD_AUTH_KEY), or --insecure to run without authentication",
    );
  }
  if (key && key.length < 16) throw usageError("the replication key must be at least 16 characters");
  const apiToken = readSecret(v["api-token-file"] as string | undefined, env.REMUSD_API_TOKEN, "API token");
  if (v["api-auth"] === "all" && !apiToken) {
    throw usageError("--api-auth all needs an API token: give --api-token-file FILE (or REMUSD_API_TOKEN)");
  }
  if (v["no-netbuf"] === true && v.unsafe !== true) {
    throw usageError(
      "--no-netbuf gives up output commit (clients may see output the backup cannot reproduce); add --unsafe to confirm",
    );
  }
  const divSpec = v["inject-divergence"] as string | undefined;
  if (divSpec !== undefined && v["allow-fault-injection"] !== true) {
    throw usageError(
      "--inject-divergence needs --allow-fault-injection (it is for rehearsals, never production)",
    );
  }
  let divergence: DivergenceSwitch | undefined;
  let geometry: DomainGeometry;
  let workload: WorkloadSpec;
  try {
    geometry = geometryOfMiB(v["domain-mib"] as number, v["disk-mib"] as number);
    workload = parseWorkload((v.workload as string | undefined) ?? "idle");
    divergence = divSpec !== undefined ? parseDivergence(divSpec) : undefined;
  } catch (e) {
    if (isRemusError(e)) throw usageError(e.message, { cause: e });
    throw e;
  }
  const guestMac = parseMacOption(v["guest-mac"] as string, "--guest-mac");
  const guestIp = parseIpOption(v["guest-ip"] as string, "--guest-ip");
  const intervalMs = (v["interval-ms"] as number | undefined) ?? INTERVAL_MS.default;
  return {
    role,
    node: command === "node",
    lease,
    leaseTiming: timing,
    nodeName: (v["node-id"] as string | undefined) ?? hostname(),
    advertise: v.advertise as string | undefined,
    advertiseControl: v["advertise-control"] as string | undefined,
    holderLabel: v["holder-label"] as string | undefined,
    control: parseHostPort(v.control as string, "--control"),
    listen: v.listen ? parseHostPort(v.listen as string, "--listen") : undefined,
    peer: v.peer as string | undefined,
    dataDir: (v["data-dir"] as string | undefined) ?? join(".remusd", command),
    eventLog: v["event-log"] as string | undefined,
    verify: v.verify === true,
    geometry,
    key: key ? Buffer.from(key, "utf8") : Buffer.alloc(0),
    insecure: !key,
    apiToken,
    apiAuth: (v["api-auth"] as "mutating" | "all" | undefined) ?? "mutating",
    unsafeOpenApi: v["unsafe-open-api"] === true,
    heartbeat: { intervalMs: v["heartbeat-ms"] as number, misses: v["heartbeat-misses"] as number },
    switchAddr: v.switch ? parseHostPort(v.switch as string, "--switch") : undefined,
    guestMac,
    guestIp,
    netbuf: v["no-netbuf"] !== true,
    seed: v.seed as number,
    logLevel: (v["log-level"] as string | undefined) ?? "info",
    intervalMs,
    workload,
    maxInFlight: (v["max-inflight"] as number | undefined) ?? 1,
    maxInFlightBytes: ((v["max-inflight-mib"] as number | undefined) ?? 256) * 1024 * 1024,
    compress: v["no-compress"] !== true,
    workers: (v.workers as number | undefined) ?? availableParallelism(),
    capture: (v.capture as "cow" | "copy" | undefined) ?? "cow",
    allowFaultInjection: v["allow-fault-injection"] === true,
    mode: (v.mode as "remus" | "colo" | undefined) ?? "remus",
    divergence,
    pinned: pinnedConfig(given, { geometry, intervalMs, guestMac, guestIp, workload }),
  };
}
