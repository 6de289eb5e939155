/**
 * The domain's configuration as it travels with the replication stream
 * (DOMAIN_CONFIG, proto/SPEC.md §6.16): what a node needs to hold and, after
 * a failover, run the domain, beyond its bytes. The idea is libxl's: the
 * toolstack keeps the domain's config beside it so the domain can be
 * recreated on the other side. A backup started with only its own addresses
 * and the key takes all of it from its primary; a setting it was given
 * explicitly must agree (`configConflicts`), or nothing changes.
 */
import { formatIpv4, formatMac } from "../net/wire.js";
import { PAGE_SIZE } from "./memory.js";

/** What a domain is, besides its bytes. */
export interface DomainConfig {
  /** Guest memory in 4096-byte pages. */
  readonly pages: number;
  /** Virtual disk in 4096-byte blocks. */
  readonly diskBlocks: number;
  /** The checkpoint interval in ms. */
  readonly intervalMs: number;
  /** The guest NIC's MAC address (6 bytes). */
  readonly guestMac: Uint8Array;
  /** The guest's IPv4 address as a u32. */
  readonly guestIp: number;
  /** The `--workload` spec the guest was booted with. */
  readonly workload: string;
}

/** The settings a node was given explicitly (flag, environment or config file): only these can conflict. */
export type PinnedConfig = Partial<DomainConfig>;

/** One setting that differs between the node's own and the stream's. */
export interface ConfigConflict {
  /** The option that was given, e.g. `--domain-mib`. */
  readonly option: string;
  readonly local: string;
  readonly stream: string;
}

const MIB_PAGES = (1024 * 1024) / PAGE_SIZE;

/** How each setting is named and shown (MiB for sizes, as the options take them). */
const FIELDS: readonly {
  readonly key: keyof DomainConfig;
  readonly option: string;
  readonly show: (v: DomainConfig[keyof DomainConfig]) => string;
}[] = [
  { key: "pages", option: "--domain-mib", show: (v) => `${(v as number) / MIB_PAGES} MiB` },
  { key: "diskBlocks", option: "--disk-mib", show: (v) => `${(v as number) / MIB_PAGES} MiB` },
  { key: "intervalMs", option: "--interval-ms", show: (v) => `${v} ms` },
  { key: "guestMac", option: "--guest-mac", show: (v) => formatMac(v as Uint8Array) },
  { key: "guestIp", option: "--guest-ip", show: (v) => formatIpv4(v as number) },
  { key: "workload", option: "--workload", show: (v) => `'${v}'` },
];

function same(a: DomainConfig[keyof DomainConfig], b: DomainConfig[keyof DomainConfig]): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.from(a).equals(Buffer.from(b));
  return a === b;
}

/** The settings of `pinned` that `cfg` contradicts, in a fixed order (empty: they agree). */
export function configConflicts(pinned: PinnedConfig, cfg: DomainConfig): ConfigConflict[] {
  const out: ConfigConflict[] = [];
  for (const f of FIELDS) {
    const mine = pinned[f.key];
    if (mine === undefined || same(mine, cfg[f.key])) continue;
    out.push({ option: f.option, local: f.show(mine), stream: f.show(cfg[f.key]) });
  }
  return out;
}

/** One line naming every conflict, for the log, the event and the process's exit message. */
export function describeConflicts(conflicts: readonly ConfigConflict[]): string {
  return conflicts
    .map((c) => `${c.option} is ${c.local} here, the primary's domain has ${c.stream}`)
    .join("; ");
}

/** The configuration as JSON-friendly values (status, events). */
export function configSummary(cfg: DomainConfig): {
  memoryMiB: number;
  diskMiB: number;
  intervalMs: number;
  guestMac: string;
  guestIp: string;
  workload: string;
} {
  return {
    memoryMiB: cfg.pages / MIB_PAGES,
    diskMiB: cfg.diskBlocks / MIB_PAGES,
    intervalMs: cfg.intervalMs,
    guestMac: formatMac(cfg.guestMac),
    guestIp: formatIpv4(cfg.guestIp),
    workload: cfg.workload,
  };
}
