/**
 * The option schemas of every `remusd` command (DESIGN.md Part 1). One place,
 * so `--help`, the environment variables, the config file and the docs agree.
 */
import { HEARTBEAT_MISSES, HEARTBEAT_MS, INTERVAL_MS } from "../bounds.js";
import { DEFAULT_CONTROL, DEFAULT_LISTEN, DEFAULT_PORTS } from "../contract.js";
import { LOG_LEVELS } from "../daemon/logging.js";
import { DEFAULT_DISK_MIB, DEFAULT_DOMAIN_MIB } from "../domain/domain.js";
import { LEASE_MARGIN_MS, LEASE_TTL_S } from "../lease/spec.js";
import type { CommandSpec, OptSpec } from "./options.js";

const config: OptSpec = {
  name: "config",
  type: "string",
  placeholder: "FILE",
  help: "read options from a JSON file",
};
const logLevel: OptSpec = {
  name: "log-level",
  type: "choice",
  choices: LOG_LEVELS,
  default: "info",
  placeholder: "LEVEL",
  help: "log level of the JSON logs on stderr",
};

/** Options both daemons share. */
const daemonCommon: OptSpec[] = [
  {
    name: "control",
    type: "hostport",
    default: DEFAULT_CONTROL,
    placeholder: "HOST:PORT",
    help: "address of the control API (HTTP: status, failover, metrics, docs)",
  },
  { name: "data-dir", type: "string", placeholder: "DIR", help: "state directory (default .remusd/ROLE)" },
  { name: "event-log", type: "string", placeholder: "FILE", help: "append events as JSON lines to FILE" },
  {
    name: "verify",
    type: "bool",
    help: "compute the domain digest at every checkpoint (proves exact failover; lengthens pauses)",
  },
  {
    name: "workers",
    type: "int",
    min: 0,
    max: 64,
    placeholder: "N",
    help: "threads that compress and decompress pages (default: one per core; 0: the event loop's own thread)",
  },
  {
    name: "domain-mib",
    type: "int",
    default: DEFAULT_DOMAIN_MIB,
    min: 1,
    max: 4096,
    placeholder: "N",
    help: "guest memory in MiB",
  },
  {
    name: "disk-mib",
    type: "int",
    default: DEFAULT_DISK_MIB,
    min: 1,
    max: 4096,
    placeholder: "N",
    help: "virtual disk in MiB",
  },
  {
    name: "auth-key-file",
    type: "string",
    placeholder: "FILE",
    help: "file holding the replication key shared by the pair (or REMUSD_AUTH_KEY holds the key itself)",
  },
  {
    name: "insecure",
    type: "bool",
    help: "run without a replication key (anyone can pair with this daemon)",
  },
  {
    name: "api-token-file",
    type: "string",
    placeholder: "FILE",
    help: "file holding the bearer token of the mutating API routes (or REMUSD_API_TOKEN holds the token)",
  },
  {
    name: "api-auth",
    type: "choice",
    choices: ["mutating", "all"],
    default: "mutating",
    placeholder: "WHICH",
    help: "which API routes need the token: mutating, or all (including /metrics)",
  },
  { name: "unsafe-open-api", type: "bool", help: "allow the mutating API routes without a token" },
  {
    name: "heartbeat-ms",
    type: "int",
    ...HEARTBEAT_MS,
    placeholder: "N",
    help: "heartbeat interval",
  },
  {
    name: "heartbeat-misses",
    type: "int",
    ...HEARTBEAT_MISSES,
    placeholder: "N",
    help: "heartbeats missed before the peer counts as lost",
  },
  {
    name: "switch",
    type: "hostport",
    placeholder: "HOST:PORT",
    help: "attach the guest's NIC to the vswitch at HOST:PORT (UDP)",
  },
  {
    name: "guest-mac",
    type: "string",
    default: "02:00:00:00:00:10",
    placeholder: "MAC",
    help: "the guest NIC's MAC address",
  },
  {
    name: "guest-ip",
    type: "string",
    default: "10.0.0.10",
    placeholder: "IP",
    help: "the guest's IPv4 address",
  },
  {
    name: "no-netbuf",
    type: "bool",
    help: "release guest output without waiting for commits (needs --unsafe)",
  },
  { name: "unsafe", type: "bool", help: "allow settings that give up output commit" },
  {
    name: "allow-fault-injection",
    type: "bool",
    flagOnly: true,
    help: "accept POST /v1/faults/crash|stall|link-cut (with the API token): for rehearsals such as remusd drill, never in production",
  },
  {
    name: "seed",
    type: "int",
    default: 1,
    min: 0,
    max: 0xffffffff,
    placeholder: "N",
    help: "seed of the guest's random state",
  },
  {
    name: "mode",
    type: "choice",
    choices: ["remus", "colo"],
    default: "remus",
    placeholder: "MODE",
    help: "remus: checkpoints on a timer, output held until acknowledged; colo: a lock-stepped secondary, output released when both replicas produced it (both daemons must agree)",
  },
  {
    name: "inject-divergence",
    type: "string",
    placeholder: "SPEC",
    help: "make this replica's guest diverge on purpose, e.g. reply=0.02,stall=0.05,seed=1 (needs --allow-fault-injection; COLO rehearsals)",
  },
  logLevel,
  config,
];

/**
 * The lease options of `remusd node` (DESIGN.md "Fencing and roles"; parsed
 * further by src/lease/spec.ts: parseLeaseSpec, leaseTiming).
 */
export const LEASE_OPTIONS: readonly OptSpec[] = [
  {
    name: "lease",
    type: "string",
    required: true,
    placeholder: "SPEC",
    help: "where the primary's lease lives: etcd://HOST:PORT[,HOST:PORT...]/PREFIX, or none (generation-only fencing: a partition can run two primaries)",
  },
  {
    name: "lease-ttl-s",
    type: "int",
    min: LEASE_TTL_S.min,
    max: LEASE_TTL_S.max,
    default: LEASE_TTL_S.default,
    placeholder: "N",
    help: "lease TTL in seconds: after a crash the other node takes over about this long later",
  },
  {
    name: "lease-margin-ms",
    type: "int",
    min: LEASE_MARGIN_MS.min,
    max: LEASE_MARGIN_MS.max,
    default: LEASE_MARGIN_MS.default,
    placeholder: "N",
    help: "stop output this long before the lease's deadline (0: a tenth of the TTL, at least 100 ms)",
  },
  {
    name: "node-id",
    type: "string",
    placeholder: "NAME",
    help: "this node's name in the lease record (default: the host name)",
  },
  {
    name: "advertise",
    type: "wsurl",
    placeholder: "URL",
    help: "the replication address the other node dials, written in the lease record (default ws://LISTEN)",
  },
  {
    name: "advertise-control",
    type: "hostport",
    placeholder: "HOST:PORT",
    help: "the control API address written in the lease record (default --control)",
  },
  {
    name: "holder-label",
    type: "string",
    placeholder: "KEY",
    help: "on Kubernetes: label this node's own pod KEY=true while it holds the lease and KEY=false otherwise (PATCH through the service account), so a Service can select the holder; a usage error outside a pod",
  },
];

/** The lease options of `remusd primary` and `remusd backup` (fixed roles): `--lease` is optional, `none` by default. */
const FIXED_LEASE_OPTIONS: readonly OptSpec[] = LEASE_OPTIONS.filter((o) => o.name !== "holder-label").map(
  (o) => (o.name === "lease" ? { ...o, required: false, default: "none" } : o),
);

export const BACKUP_SPEC: CommandSpec = {
  name: "backup",
  summary: "run a backup: receive checkpoints, apply them atomically, take over when the primary dies",
  usage: "remusd backup --listen HOST:PORT --control HOST:PORT [options]",
  options: [
    {
      name: "listen",
      type: "hostport",
      default: DEFAULT_LISTEN,
      placeholder: "HOST:PORT",
      help: "replication address to listen on (WebSocket)",
    },
    ...daemonCommon,
    ...FIXED_LEASE_OPTIONS,
  ],
  examples: [
    "remusd backup --listen 127.0.0.1:7780 --control 127.0.0.1:7782 --auth-key-file key --data-dir /var/lib/remusd",
  ],
};

export const PRIMARY_SPEC: CommandSpec = {
  name: "primary",
  summary: "run the protected domain and checkpoint it to a backup many times a second",
  usage: "remusd primary --peer ws://HOST:PORT --control HOST:PORT [options]",
  options: [
    {
      name: "peer",
      type: "wsurl",
      required: true,
      placeholder: "URL",
      help: `the backup's replication address, e.g. ws://127.0.0.1:${DEFAULT_PORTS.replication}`,
    },
    {
      name: "listen",
      type: "hostport",
      placeholder: "HOST:PORT",
      help: "also accept backups that dial in at this address (used after a failover, too)",
    },
    {
      name: "interval-ms",
      type: "int",
      ...INTERVAL_MS,
      placeholder: "N",
      help: "checkpoint interval (epoch length)",
    },
    {
      name: "workload",
      type: "string",
      default: "web",
      placeholder: "SPEC",
      help: "what the guest runs: idle, web, compile, dirty:rate=N,hot=F,pattern=uniform|zipf|seq, disk:rate=KIB, joined with +",
    },
    {
      name: "max-inflight",
      type: "int",
      default: 1,
      min: 1,
      max: 16,
      placeholder: "N",
      help: "checkpoints in flight at most",
    },
    {
      name: "max-inflight-mib",
      type: "int",
      default: 256,
      min: 1,
      max: 65_536,
      placeholder: "N",
      help: "checkpoints in flight hold at most N MiB of pages (past it the epoch stretches)",
    },
    {
      name: "capture",
      type: "choice",
      choices: ["cow", "copy"],
      default: "cow",
      placeholder: "HOW",
      help: "how the pause captures dirty pages: cow (copy-on-write: the domain resumes at once) or copy",
    },
    { name: "no-compress", type: "bool", help: "send pages without LZ4 compression" },
    ...daemonCommon,
    ...FIXED_LEASE_OPTIONS,
  ],
  examples: [
    "remusd primary --peer ws://127.0.0.1:7780 --control 127.0.0.1:7781 --auth-key-file key --workload web",
  ],
};

const FIXED_LEASE_NAMES = new Set(FIXED_LEASE_OPTIONS.map((o) => o.name));

export const NODE_SPEC: CommandSpec = {
  name: "node",
  summary: "run one node of a leased pair: the lease decides its role (primary, or the holder's backup)",
  usage:
    "remusd node --listen HOST:PORT --control HOST:PORT --lease etcd://HOST:PORT[,HOST:PORT...]/PREFIX [options]",
  options: [
    {
      name: "listen",
      type: "hostport",
      default: DEFAULT_LISTEN,
      placeholder: "HOST:PORT",
      help: "replication address to listen on (WebSocket): the backup dials the lease holder, whose address is in the lease",
    },
    ...PRIMARY_SPEC.options.filter(
      (o) => o.name !== "peer" && o.name !== "listen" && !FIXED_LEASE_NAMES.has(o.name),
    ),
    ...LEASE_OPTIONS,
  ],
  examples: [
    "remusd node --listen 10.0.0.1:7780 --control 10.0.0.1:7781 --advertise ws://10.0.0.1:7780 --lease etcd://10.0.0.9:2379/remusd/demo --auth-key-file key --node-id host-a",
  ],
  details:
    "The node that holds the lease runs the domain as primary; the other follows the holder (its address is in the lease record) and syncs as its backup. A primary that cannot renew stops its domain before the lease can be taken and rejoins as backup; a restarted node rejoins as backup. Only a lease prefix that never had a holder boots a fresh domain.",
};

export const VSWITCH_SPEC: CommandSpec = {
  name: "vswitch",
  summary: "run the virtual LAN: an L2 learning switch that guest NICs and clients attach to over UDP",
  usage: "remusd vswitch --listen HOST:PORT [--tap NAME[,netns=NS][,ip=CIDR]] [options]",
  options: [
    {
      name: "listen",
      type: "hostport",
      default: `127.0.0.1:${DEFAULT_PORTS.vswitch}`,
      placeholder: "HOST:PORT",
      help: "UDP address to listen on",
    },
    {
      name: "mac-aging-s",
      type: "int",
      default: 300,
      min: 1,
      max: 86_400,
      placeholder: "N",
      help: "forget a MAC after N seconds of silence",
    },
    {
      name: "stats-s",
      type: "int",
      default: 0,
      min: 0,
      max: 86_400,
      placeholder: "N",
      help: "log port counters every N seconds (0: never)",
    },
    {
      name: "tap",
      type: "string",
      placeholder: "NAME[,netns=NS][,ip=CIDR]",
      help: "also attach Linux TAP device NAME as a port (created if absent, deleted on exit; needs root or CAP_NET_ADMIN): netns= moves it into a network namespace, ip= gives it an address",
    },
    logLevel,
    config,
  ],
  examples: [
    "remusd vswitch --listen 127.0.0.1:7790",
    "remusd vswitch --listen 127.0.0.1:7790 --tap remus0,ip=10.0.0.1/24   # then: redis-cli -h 10.0.0.10",
  ],
};

export const CLIENT_SPEC: CommandSpec = {
  name: "client",
  summary: "load generator and checker for the guest's kvd: prints a JSON summary, exits 1 on any violation",
  usage: "remusd client --switch HOST:PORT [options]",
  details:
    "Opens TCP connections (with remusd's own TCP/IP stack, attached to the vswitch) to the guest's kvd, runs a seeded\n" +
    "mix of SET/INCR/GET while keeping a model of every acknowledged write, then reads every key back. The summary\n" +
    "counts requests, replies, resets, reconnects, the longest stall, lost acknowledged writes and wrong reads.",
  options: [
    {
      name: "switch",
      type: "hostport",
      required: true,
      placeholder: "HOST:PORT",
      help: "the vswitch to attach to",
    },
    {
      name: "connections",
      type: "int",
      default: 8,
      min: 1,
      max: 1024,
      placeholder: "N",
      help: "TCP connections to open",
    },
    {
      name: "duration",
      type: "number",
      default: 10,
      min: 0.1,
      max: 86_400,
      placeholder: "SECONDS",
      help: "how long to run the load",
    },
    {
      name: "seed",
      type: "int",
      default: 1,
      min: 0,
      max: 0xffffffff,
      placeholder: "N",
      help: "seed of the command mix",
    },
    {
      name: "target",
      type: "string",
      default: "10.0.0.10",
      placeholder: "IP",
      help: "the guest's IPv4 address",
    },
    {
      name: "port",
      type: "int",
      default: 6379,
      min: 1,
      max: 65535,
      placeholder: "N",
      help: "kvd's TCP port",
    },
    {
      name: "ip",
      type: "string",
      default: "10.0.0.100",
      placeholder: "IP",
      help: "this client's IPv4 address",
    },
    {
      name: "mac",
      type: "string",
      default: "02:00:00:00:01:00",
      placeholder: "MAC",
      help: "this client's MAC address",
    },
    {
      name: "pipeline",
      type: "int",
      default: 2,
      min: 1,
      max: 64,
      placeholder: "N",
      help: "requests in flight per connection",
    },
    {
      name: "think-ms",
      type: "int",
      default: 0,
      min: 0,
      max: 60_000,
      placeholder: "N",
      help: "mean think time between a reply and the next request (uniform in [0, 2N] ms)",
    },
    {
      name: "keys",
      type: "int",
      default: 16,
      min: 1,
      max: 100_000,
      placeholder: "N",
      help: "keys (and counters) per connection",
    },
    {
      name: "shared-counter",
      type: "bool",
      help: "every connection INCRs one key they share (replies depend on how the server interleaves connections)",
    },
    { name: "progress", type: "bool", help: "print a JSON progress line on stderr every second" },
    {
      name: "drain-timeout",
      type: "number",
      default: 60,
      min: 1,
      max: 3600,
      placeholder: "SECONDS",
      help: "time allowed for the final read-back",
    },
    config,
  ],
  examples: ["remusd client --switch 127.0.0.1:7790 --connections 8 --duration 10"],
};

export const DEMO_SPEC: CommandSpec = {
  name: "demo",
  summary:
    "run a vswitch, a backup, a primary with kvd and client load on this machine, kill the primary, show the failover",
  usage: "remusd demo [options]",
  details:
    "Everything runs as real child processes on 127.0.0.1 with ephemeral ports; no network, Docker or other service\n" +
    "is needed. Exits 0 only if the client saw zero resets, zero lost writes and zero wrong reads.",
  options: [
    {
      name: "kill-after",
      type: "number",
      default: 5,
      min: 1,
      max: 3600,
      placeholder: "SECONDS",
      help: "SIGKILL the primary after this long under load",
    },
    {
      name: "after",
      type: "number",
      default: 5,
      min: 1,
      max: 3600,
      placeholder: "SECONDS",
      help: "keep the load running this long after the failover",
    },
    {
      name: "connections",
      type: "int",
      default: 8,
      min: 1,
      max: 256,
      placeholder: "N",
      help: "client TCP connections",
    },
    {
      name: "workload",
      type: "string",
      default: "web",
      placeholder: "SPEC",
      help: "the guest's workload (see remusd primary --help)",
    },
    {
      name: "domain-mib",
      type: "int",
      default: 64,
      min: 4,
      max: 4096,
      placeholder: "N",
      help: "guest memory in MiB",
    },
    {
      name: "seed",
      type: "int",
      default: 1,
      min: 0,
      max: 0xffffffff,
      placeholder: "N",
      help: "seed of the client's command mix",
    },
    {
      name: "dir",
      type: "string",
      placeholder: "DIR",
      help: "keep keys, data and event logs in DIR (default: a temporary folder, removed)",
    },
    {
      name: "keep-running",
      type: "bool",
      help: "leave the new primary up and print its URLs (Ctrl-C stops it)",
    },
  ],
  examples: ["remusd demo", "remusd demo --kill-after 10 --keep-running"],
};

export const BENCH_SPEC: CommandSpec = {
  name: "bench",
  summary: "run the benchmark suite: medians with their spread, ratios measured side by side in one run",
  usage: "remusd bench [--quick] [--json FILE] [--only NAME]",
  options: [
    { name: "quick", type: "bool", help: "a reduced set of cases, sizes and rounds (under a minute)" },
    {
      name: "json",
      type: "string",
      placeholder: "FILE",
      help: "also write the results as JSON to FILE ('-': print JSON instead of the table)",
    },
    {
      name: "only",
      type: "string",
      placeholder: "NAME",
      help: "run only the benchmarks whose name contains NAME",
    },
  ],
  examples: ["remusd bench --quick", "remusd bench --json bench.json", "remusd bench --only pause"],
};

export const DRILL_SPEC: CommandSpec = {
  name: "drill",
  summary:
    "rehearse failovers against a pair under client load, measure each one, and report (table, JSON, HTML)",
  usage:
    "remusd drill --local [options] | remusd drill --control HOST:PORT,HOST:PORT [--token-file FILE] [options]",
  details:
    "Each failover: steady load, the fault, the backup's activation, the old primary's fate, re-protection (a new\n" +
    "backup with an empty data folder, PATCH /v1/config peer=... on the new primary, as deploy/README.md's runbook\n" +
    "says), the full resync, and a read-back of every acknowledged write. Faults: sigkill (the drill kills the\n" +
    "primary's process; a daemon on this host), crash, stall, link-cut (POST /v1/faults/*: daemons started with\n" +
    "--allow-fault-injection), switchover (planned), manual (activation of the backup while the primary lives).\n" +
    "--local starts a vswitch and a pair as child processes on 127.0.0.1 (with fault injection) and stops them at\n" +
    "the end. Measured per failover: detection, activation, first output released, client stall (p50/p99/max of\n" +
    "the requests across the event), resets, lost acknowledged writes, errors, the old primary's fate, time to\n" +
    "protected, resync time and bytes. Exits 0 only if every failover activated and was re-protected with no lost\n" +
    "write, no reset, no wrong reply, no client error and never two primaries.",
  options: [
    { name: "local", type: "bool", help: "start a vswitch and a pair as children and drill them" },
    {
      name: "control",
      type: "string",
      placeholder: "HOST:PORT,HOST:PORT",
      help: "the control addresses of a running pair (instead of --local)",
    },
    {
      name: "token-file",
      type: "string",
      placeholder: "FILE",
      help: "the pair's API token (or REMUSD_API_TOKEN holds it)",
    },
    {
      name: "peers",
      type: "string",
      placeholder: "URL,URL",
      help: "the two sides' replication addresses (ws://...), in --control's order: the new primary is pointed at the healed side",
    },
    {
      name: "heal",
      type: "string",
      placeholder: "CMD",
      help: "shell command that brings a dead side back as a backup (env REMUSD_DRILL_SIDE=1|2, REMUSD_DRILL_CONTROL, REMUSD_DRILL_PRIMARY); without it the drill waits for the pair to heal",
    },
    {
      name: "switch",
      type: "hostport",
      placeholder: "HOST:PORT",
      help: "the vswitch the checking client attaches to (a running pair; --local has its own)",
    },
    {
      name: "failovers",
      type: "int",
      default: 5,
      min: 1,
      max: 1000,
      placeholder: "N",
      help: "how many failovers",
    },
    {
      name: "faults",
      type: "string",
      default: "mix",
      placeholder: "LIST",
      help: "the fault of each failover: a list (sigkill,crash,stall,link-cut,switchover,manual), cycled; mix (a seeded draw of all); mix:A,B (of these)",
    },
    {
      name: "fault-ms",
      type: "int",
      min: 1,
      max: 60_000,
      placeholder: "N",
      help: "how long a stall or link cut lasts (default: three heartbeat timeouts, at least 1000)",
    },
    {
      name: "dwell",
      type: "number",
      default: 2,
      min: 0.1,
      max: 3600,
      placeholder: "SECONDS",
      help: "steady protected load before each fault",
    },
    {
      name: "seed",
      type: "int",
      default: 1,
      min: 0,
      max: 0xffffffff,
      placeholder: "N",
      help: "seed of the fault mix and of the client's commands",
    },
    {
      name: "client",
      type: "string",
      placeholder: "CMD",
      help: "also run this command as load for the whole drill (sh -c; restarted if it ends), e.g. 'ip netns exec ns1 redis-benchmark -h 10.0.0.10 -l -t set,get'",
    },
    { name: "no-check", type: "bool", help: "no checking client (lost writes are then not checked)" },
    {
      name: "connections",
      type: "int",
      default: 8,
      min: 1,
      max: 256,
      placeholder: "N",
      help: "the checking client's TCP connections",
    },
    {
      name: "pipeline",
      type: "int",
      default: 2,
      min: 1,
      max: 64,
      placeholder: "N",
      help: "the checking client's requests in flight per connection",
    },
    {
      name: "target",
      type: "string",
      default: "10.0.0.10",
      placeholder: "IP",
      help: "the guest's IPv4 address",
    },
    { name: "json", type: "string", placeholder: "FILE", help: "write the report as JSON to FILE" },
    {
      name: "html",
      type: "string",
      placeholder: "FILE",
      help: "write the report as one self-contained HTML page to FILE (charts inline, no network needed)",
    },
    {
      name: "domain-mib",
      type: "int",
      default: 16,
      min: 4,
      max: 4096,
      placeholder: "N",
      help: "--local: guest memory in MiB",
    },
    {
      name: "workload",
      type: "string",
      default: "web",
      placeholder: "SPEC",
      help: "--local: the guest's workload (see remusd primary --help)",
    },
    {
      name: "heartbeat-ms",
      type: "int",
      ...HEARTBEAT_MS,
      default: 100,
      placeholder: "N",
      help: "--local: the pair's heartbeat interval",
    },
    {
      name: "heartbeat-misses",
      type: "int",
      ...HEARTBEAT_MISSES,
      default: 10,
      placeholder: "N",
      help: "--local: heartbeats missed before the peer counts as lost (a busy machine needs slack: a spurious timeout is a failover)",
    },
    {
      name: "verify",
      type: "bool",
      help: "--local: the daemons compute the domain digest at every checkpoint",
    },
    {
      name: "tap",
      type: "string",
      placeholder: "NAME[,netns=NS][,ip=CIDR]",
      help: "--local: give the vswitch a TAP port (root), for a --client through the kernel's TCP",
    },
    {
      name: "dir",
      type: "string",
      placeholder: "DIR",
      help: "--local: keep keys, data and event logs in DIR (default: a temporary folder, removed)",
    },
    {
      name: "activation-timeout",
      type: "number",
      default: 30,
      min: 1,
      max: 3600,
      placeholder: "SECONDS",
      help: "a failover fails when the backup has not activated by then",
    },
    {
      name: "protect-timeout",
      type: "number",
      default: 60,
      min: 1,
      max: 3600,
      placeholder: "SECONDS",
      help: "a failover fails when the pair is not protected again by then",
    },
    config,
  ],
  examples: [
    "remusd drill --local --failovers 5 --html drill.html",
    "remusd drill --local --faults sigkill,switchover,crash,stall,link-cut --json drill.json",
    "remusd drill --control host-a:7781,host-b:7781 --token-file token --switch lan:7790 --faults switchover,crash --peers ws://host-a:7780,ws://host-b:7780 --heal 'ssh host-$REMUSD_DRILL_SIDE systemctl restart remusd-backup@demo'",
  ],
};
