#!/usr/bin/env node
/**
 * `remusctl`: the operator's client of a daemon's control API.
 *
 *   remusctl [--control HOST:PORT] [--token T | --token-file F] COMMAND ...
 *
 * Exit code 0 on success, 1 when the daemon cannot be reached or refuses the
 * request (one line on stderr with the REMUSD_ERR_* code), 2 on bad usage.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Client, request } from "../api/client.js";
import {
  bucketDelta,
  bucketsOf,
  type Exposition,
  histogramQuantile,
  parseExposition,
  sampleValue,
} from "../api/promtext.js";
import type { Config, FailoverReply, FaultReply, ProcessesReply, Status } from "../api/schemas.js";
import { DEFAULT_CONTROL } from "../contract.js";
import { readSecret } from "../daemon/settings.js";
import { EXIT, exitCodeOf, failureLine, isRemusError, RemusError, usageError } from "../errors.js";
import { parseHostPort } from "../net/addr.js";
import { VERSION } from "../version.js";
import {
  type CommandSpec,
  helpText,
  type OptSpec,
  type OptValues,
  optionsHelp,
  parseOptions,
} from "./options.js";

/**
 * The options every command takes, before or after the command's name. Only
 * these read the environment (remusctl's own options have no variables).
 */
const GLOBAL: readonly OptSpec[] = [
  {
    name: "control",
    type: "string",
    default: DEFAULT_CONTROL,
    env: "REMUSD_CONTROL",
    placeholder: "HOST:PORT",
    help: "the daemon's control API",
  },
  {
    name: "token",
    type: "string",
    placeholder: "TOKEN",
    help: "the API token of mutating routes (default: from --token-file, else REMUSD_API_TOKEN)",
  },
  {
    name: "token-file",
    type: "string",
    env: "REMUSD_API_TOKEN_FILE",
    placeholder: "FILE",
    help: "read the token from FILE",
  },
];

interface Command {
  readonly summary: string;
  readonly usage: string;
  /** The command's own options (the global ones are added). */
  readonly options: readonly OptSpec[];
  /** Positional arguments allowed after the command (beyond none). */
  readonly positionals?: boolean;
  readonly details?: string;
  run(c: Client, v: OptValues, args: readonly string[]): Promise<void>;
}

/** The option schema of a command for the shared parser, with the global options. */
function specOf(name: string, cmd: Command): CommandSpec {
  return {
    program: "remusctl",
    name,
    summary: cmd.summary,
    usage: cmd.usage,
    options: [...cmd.options, ...GLOBAL],
    implicitEnv: false,
    ...(cmd.positionals ? { positionals: true } : {}),
    ...(cmd.details ? { details: cmd.details } : {}),
  };
}

/** The schema of `remusctl [global options]` without a command. */
const NO_COMMAND: CommandSpec = {
  program: "remusctl",
  name: "",
  summary: "control a remusd daemon through its control API",
  usage: "remusctl [--control HOST:PORT] [--token TOKEN | --token-file FILE] COMMAND [options]",
  options: GLOBAL,
  implicitEnv: false,
};

// ---- HTTP ----

const get = <T>(c: Client, path: string) => request(c, "GET", path) as Promise<T>;

// ---- formatting ----

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function ms(n: number | null | undefined, digits = 2): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "-";
  return n >= 100 ? `${Math.round(n)} ms` : `${n.toFixed(digits)} ms`;
}

function ago(iso: string): string {
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(s)) return iso;
  if (s < 1) return `${Math.max(0, Math.round(s * 1000))} ms ago`;
  if (s < 120) return `${s.toFixed(1)} s ago`;
  return `${Math.round(s / 60)} min ago`;
}

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) {
    for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  "))
    .join("\n");
}

/** How the daemon is fenced, and its lease: held until when, or who holds it. */
function fencingText(s: Status): string {
  const l = s.lease;
  if (s.fencing !== "lease" || !l) return "generation only (no lease: a partition can run two primaries)";
  const holder = l.holder ? `holder ${l.holder.nodeId} (generation ${l.holder.generation})` : "no holder";
  const deadline = l.deadlineInMs !== null ? `, deadline in ${ms(l.deadlineInMs, 0)}` : "";
  return `lease ${l.state}${deadline}, ${holder}`;
}

/** The readable summary of `remusctl status`. */
export function formatStatus(s: Status): string {
  const lc = s.lastCheckpoint;
  const ckpt = lc
    ? [
        `epoch ${lc.epoch}`,
        lc.pauseMs !== null ? `pause ${ms(lc.pauseMs, 3)}` : undefined,
        lc.durationMs !== null ? `${ms(lc.durationMs)} to ack` : undefined,
        lc.applyMs !== null ? `applied in ${ms(lc.applyMs, 3)}` : undefined,
        `${lc.dirtyPages} dirty pages`,
        lc.diskWrites !== null ? `${lc.diskWrites} disk writes` : undefined,
        lc.wireBytes !== null ? `${bytes(lc.wireBytes)} on the wire` : undefined,
        ago(lc.at),
      ]
        .filter((x) => x !== undefined)
        .join(", ")
    : "none yet";
  const p = s.peer;
  const peer = p.connected
    ? `connected, last seen ${ms(p.lastSeenMsAgo, 0)} ago, heartbeat RTT ${ms(p.heartbeatRttMs, 3)}`
    : "not connected";
  const dom = s.domain;
  const digest =
    dom.digest === null
      ? "no digest (--verify off)"
      : `digest ${dom.digest.slice(0, 16)}… at epoch ${dom.digestEpoch}`;
  const rc = s.lastRoleChange;
  const colo = s.colo;
  const mode =
    colo === null
      ? s.mode
      : `${s.mode}: ${colo.compared.match} frames matched, ${colo.compared.mismatch} differed, ${colo.compared.timeout} timed out; checkpoints ${Object.entries(
          colo.checkpoints,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(
            ", ",
          )}; divergence ${colo.divergencePerSecond.toFixed(2)} checkpoints/s, ${(colo.mismatchRatio * 100).toFixed(2)}% of frames`;
  const rw = colo?.rewriter;
  return table([
    ["role", `${s.role}, ${s.state}, generation ${s.generation} (remusd ${s.version})`],
    ["mode", mode],
    ...(rw
      ? [
          [
            "rewriter",
            `${rw.connections} connections, ${rw.offsets} renumbered${rw.failedOver ? " (kept after taking over)" : ""}`,
          ] as [string, string],
        ]
      : []),
    [
      "epoch",
      `${s.epoch.committed} committed, ${s.epoch.current} ${s.role === "primary" ? "open" : "current"}`,
    ],
    ["interval", `${s.intervalMs} ms`],
    ["fencing", fencingText(s)],
    ["last checkpoint", ckpt],
    ["peer", peer],
    [
      "netbuf",
      `${s.netbuf.packets} packets, ${bytes(s.netbuf.bytes)}, oldest ${ms(s.netbuf.oldestAgeMs, 1)}`,
    ],
    ["disk", `epoch ${s.disk.epoch}, ${s.disk.pendingWrites} pending writes`],
    [
      "domain",
      `${dom.pages} pages of ${dom.pageSize / 1024} KiB (${bytes(dom.pages * dom.pageSize)}), ${dom.diskBlocks} disk blocks, ${dom.running ? "running" : dom.imageValid ? "image valid" : "no complete image"}; ${digest}; generation ID ${dom.generationId}${dom.config ? `; guest ${dom.config.guestIp} (${dom.config.guestMac}), workload ${dom.config.workload}` : ""}`,
    ],
    ["last role change", `${rc.from ?? "-"} -> ${rc.to}: ${rc.reason} (${ago(rc.at)})`],
    ["last state change", s.lastStateChange],
  ]);
}

// ---- watch ----

/** One refresh of `remusctl watch`, computed from two successive /metrics scrapes. */
export interface WatchSample {
  readonly role: string;
  readonly state: string;
  readonly epoch: number;
  /** Null on the first refresh (no earlier scrape to compare with). */
  readonly checkpointsPerSecond: number | null;
  readonly pauseP50Ms: number | null;
  readonly pauseP99Ms: number | null;
  readonly dirtyPagesPerCheckpoint: number | null;
  readonly wireMBps: number | null;
  readonly compressionRatio: number | null;
  readonly netbufPackets: number;
  readonly netbufBytes: number;
  readonly peerUp: boolean;
}

/** Rates and percentiles between two scrapes `dt` seconds apart. */
export function watchSample(
  now: Exposition,
  before: Exposition | undefined,
  dt: number,
  status: Status,
): WatchSample {
  const v = (e: Exposition | undefined, name: string, labels?: Record<string, string>) =>
    e ? (sampleValue(e, name, labels) ?? 0) : 0;
  const delta = (name: string, labels?: Record<string, string>) =>
    v(now, name, labels) - v(before, name, labels);
  const rate = (name: string, labels?: Record<string, string>) =>
    before && dt > 0 ? delta(name, labels) / dt : null;
  const pause = bucketDelta(
    bucketsOf(now, "remusd_checkpoint_pause_seconds"),
    before ? bucketsOf(before, "remusd_checkpoint_pause_seconds") : [],
  );
  const q = (x: number) => {
    const r = histogramQuantile(x, pause);
    return r === undefined ? null : r * 1000;
  };
  const dirtyCount = delta("remusd_checkpoint_dirty_pages_count");
  const raw = delta("remusd_replication_bytes_total", { stage: "raw" });
  const wire = delta("remusd_replication_bytes_total", { stage: "wire" });
  return {
    role: status.role,
    state: status.state,
    epoch: v(now, "remusd_epoch_committed"),
    checkpointsPerSecond: rate("remusd_checkpoints_total", { result: "committed" }),
    pauseP50Ms: q(0.5),
    pauseP99Ms: q(0.99),
    dirtyPagesPerCheckpoint: dirtyCount > 0 ? delta("remusd_checkpoint_dirty_pages_sum") / dirtyCount : null,
    wireMBps: before && dt > 0 ? delta("remusd_replication_bytes_total", { stage: "wire" }) / dt / 1e6 : null,
    compressionRatio: wire > 0 ? raw / wire : null,
    netbufPackets: v(now, "remusd_netbuf_packets"),
    netbufBytes: v(now, "remusd_netbuf_bytes"),
    peerUp: v(now, "remusd_peer_up") === 1,
  };
}

function formatWatch(base: string, w: WatchSample): string[] {
  const f = (x: number | null, d = 2) => (x === null ? "-" : x.toFixed(d));
  return [
    `remusd at ${base}: ${w.role}, ${w.state}, peer ${w.peerUp ? "up" : "down"}      ${new Date().toISOString().slice(11, 19)}`,
    "",
    table([
      ["epoch (committed)", String(w.epoch)],
      ["checkpoints/s", f(w.checkpointsPerSecond, 1)],
      ["pause p50 / p99", `${ms(w.pauseP50Ms, 3)} / ${ms(w.pauseP99Ms, 3)}`],
      ["dirty pages/ckpt", f(w.dirtyPagesPerCheckpoint, 1)],
      ["wire", w.wireMBps === null ? "-" : `${f(w.wireMBps)} MB/s`],
      ["compression", w.compressionRatio === null ? "-" : `${f(w.compressionRatio)}x`],
      ["netbuf", `${w.netbufPackets} packets, ${bytes(w.netbufBytes)}`],
    ]),
  ];
}

async function watch(c: Client, v: OptValues): Promise<void> {
  const interval = v.interval as number;
  const count = (v.count as number | undefined) ?? Number.POSITIVE_INFINITY;
  const json = v.json === true;
  const tty = process.stdout.isTTY === true && !json;
  let before: { e: Exposition; t: number } | undefined;
  let stop = false;
  const onInt = () => {
    stop = true;
  };
  process.once("SIGINT", onInt);
  if (tty) process.stdout.write("\x1b[?25l\x1b[2J");
  try {
    for (let i = 0; i < count && !stop; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, interval * 1000));
      let lines: string[];
      try {
        const [text, status] = await Promise.all([get<string>(c, "/metrics"), get<Status>(c, "/v1/status")]);
        const t = performance.now();
        const e = parseExposition(text);
        const w = watchSample(e, before?.e, before ? (t - before.t) / 1000 : 0, status);
        before = { e, t };
        if (json) {
          process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), ...w })}\n`);
          continue;
        }
        lines = formatWatch(c.base, w);
      } catch (e) {
        // The first scrape must work; later, a daemon that went away is shown and retried.
        if (before === undefined || !isRemusError(e)) throw e;
        if (json) throw e;
        lines = [`${e.message}; retrying every ${interval} s (Ctrl-C to stop)`];
      }
      if (tty) process.stdout.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join("\n")}\n\x1b[J`);
      else process.stdout.write(`${lines.join("\n")}\n\n`);
    }
  } finally {
    process.off("SIGINT", onInt);
    if (tty) process.stdout.write("\x1b[?25h");
  }
}

// ---- config set ----

const CONFIG_KEYS: Record<string, { path: [string] | [string, string]; type: "int" | "bool" | "peer" }> = {
  peer: { path: ["peer"], type: "peer" },
  "interval-ms": { path: ["intervalMs"], type: "int" },
  intervalMs: { path: ["intervalMs"], type: "int" },
  compress: { path: ["compress"], type: "bool" },
  "heartbeat-ms": { path: ["heartbeat", "intervalMs"], type: "int" },
  "heartbeat.intervalMs": { path: ["heartbeat", "intervalMs"], type: "int" },
  "heartbeat-misses": { path: ["heartbeat", "misses"], type: "int" },
  "heartbeat.misses": { path: ["heartbeat", "misses"], type: "int" },
};

/** Turns `KEY=VALUE` arguments into a PATCH /v1/config body. */
export function configPatchOf(args: readonly string[]): Record<string, unknown> {
  if (args.length === 0)
    throw usageError("config set needs KEY=VALUE arguments (see remusctl config --help)");
  const patch: Record<string, unknown> = {};
  for (const a of args) {
    const eq = a.indexOf("=");
    if (eq <= 0) throw usageError(`expected KEY=VALUE, got '${a}'`);
    const key = a.slice(0, eq);
    const raw = a.slice(eq + 1).trim();
    const k = CONFIG_KEYS[key];
    if (!k)
      throw usageError(
        `unknown config key '${key}' (known: interval-ms, compress, heartbeat-ms, heartbeat-misses, peer)`,
      );
    let value: number | boolean | string | null;
    if (k.type === "peer") {
      if (raw === "" || raw === "none") value = null;
      else if (/^wss?:\/\/[^\s]+$/.test(raw)) value = raw;
      else throw usageError(`${key}: expected a ws://HOST:PORT URL or 'none', got '${raw}'`);
    } else if (k.type === "int") {
      value = Number(raw);
      if (raw === "" || !Number.isInteger(value))
        throw usageError(`${key}: expected an integer, got '${raw}'`);
    } else {
      const s = raw.toLowerCase();
      if (["true", "on", "yes", "1"].includes(s)) value = true;
      else if (["false", "off", "no", "0"].includes(s)) value = false;
      else throw usageError(`${key}: expected true or false, got '${raw}'`);
    }
    const [first, second] = k.path;
    if (second === undefined) patch[first] = value;
    else patch[first] = { ...((patch[first] as Record<string, unknown> | undefined) ?? {}), [second]: value };
  }
  return patch;
}

function formatConfig(cfg: Config, role: string | undefined): string {
  const lines = [
    table([
      ["interval-ms", String(cfg.intervalMs)],
      ["compress", String(cfg.compress)],
      ["heartbeat-ms", String(cfg.heartbeat.intervalMs)],
      ["heartbeat-misses", String(cfg.heartbeat.misses)],
      ["peer", cfg.peer ?? "none"],
    ]),
  ];
  if (cfg.pending) lines.push("(interval/compression changes take effect when the open epoch ends)");
  if (role === "backup") lines.push("(a backup uses interval-ms and compress once it becomes primary)");
  return lines.join("\n");
}

// ---- commands ----

const json = (what: string): OptSpec => ({ name: "json", type: "bool", help: `print ${what}` });

const COMMANDS: Record<string, Command> = {
  status: {
    summary: "role, state, epochs, last checkpoint, peer, netbuf, disk and domain",
    usage: "remusctl status [--json]",
    options: [json("the raw JSON of GET /v1/status")],
    async run(c, v) {
      const s = await get<Status>(c, "/v1/status");
      process.stdout.write(v.json ? `${JSON.stringify(s, null, 2)}\n` : `${formatStatus(s)}\n`);
    },
  },
  watch: {
    summary: "refresh in place: epoch, checkpoints/s, pause p50/p99, dirty pages, MB/s, compression, netbuf",
    usage: "remusctl watch [--interval SECONDS] [--count N] [--json]",
    options: [
      {
        name: "interval",
        type: "number",
        default: 1,
        min: 0.05,
        max: 3600,
        placeholder: "SECONDS",
        help: "time between two scrapes of /metrics",
      },
      {
        name: "count",
        type: "int",
        min: 1,
        placeholder: "N",
        help: "stop after N refreshes (default: until Ctrl-C)",
      },
      json("one JSON object per refresh instead of the screen"),
    ],
    details: "Rates and percentiles are computed from the difference of two successive /metrics scrapes.",
    run: (c, v) => watch(c, v),
  },
  switchover: {
    summary:
      "on a backup: swap the roles with no work lost (the primary's final checkpoint, then this backup takes over)",
    usage: "remusctl switchover [--json]",
    options: [json("the final status as JSON")],
    details:
      "The primary takes a final checkpoint, releases its output and stops; then this backup activates\n" +
      "from that checkpoint (with a lease: once the stopped primary released it). A former primary run by\n" +
      "remusd node rejoins as backup by itself. Waits until this daemon is the primary (at most 30 s).",
    async run(c, v) {
      await request(c, "POST", "/v1/failover", { planned: true });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const s = await get<Status>(c, "/v1/status");
        if (s.role === "primary") {
          if (v.json) process.stdout.write(`${JSON.stringify(s)}\n`);
          else
            process.stdout.write(
              `switchover complete: this daemon is now the primary (generation ${s.generation})\n`,
            );
          return;
        }
        if (Date.now() > deadline)
          throw new RemusError("REMUSD_ERR_TIMEOUT", "the switchover did not complete within 30 s");
        await new Promise((res) => setTimeout(res, 50));
      }
    },
  },
  failover: {
    summary:
      "on a backup: take over (a switchover while the primary is alive and connected; else activate now)",
    usage: "remusctl failover [--planned] [--wait] [--json]",
    options: [
      {
        name: "planned",
        type: "bool",
        help: "switchover: the primary takes a final checkpoint, stops, and this backup activates",
      },
      {
        name: "wait",
        type: "bool",
        help: "when a switchover was requested: wait until this daemon is the primary (at most 10 s)",
      },
      json("the raw JSON reply"),
    ],
    details:
      "With the primary alive and connected, a failover is always a switchover (final checkpoint, the\n" +
      "primary releases its output and stops, then this backup activates): activating beside a live\n" +
      "primary would roll back what it released. A backup whose image is stale (the primary went on\n" +
      "without it) refuses to activate.",
    async run(c, v) {
      const r = (await request(c, "POST", "/v1/failover", { planned: v.planned === true })) as FailoverReply;
      if (r.pending && v.wait) {
        const deadline = Date.now() + 10_000;
        for (;;) {
          const s = await get<Status>(c, "/v1/status");
          if (s.role === "primary") break;
          if (Date.now() > deadline)
            throw new RemusError("REMUSD_ERR_TIMEOUT", "the switchover did not complete within 10 s");
          await new Promise((res) => setTimeout(res, 50));
        }
        if (!v.json) process.stdout.write("switchover complete: this daemon is now the primary\n");
        else process.stdout.write(`${JSON.stringify({ ...r, activated: true, pending: false })}\n`);
        return;
      }
      if (v.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else if (r.activated) {
        process.stdout.write(
          `activated as primary from epoch ${r.epoch}${r.digest ? ` (digest ${r.digest.slice(0, 16)}…)` : ""}\n`,
        );
      } else {
        process.stdout.write(
          "switchover requested: the primary takes a final checkpoint, then this backup activates (--wait to wait)\n",
        );
      }
    },
  },
  checkpoint: {
    summary: "on a primary: checkpoint the open epoch now and wait for the backup's acknowledgement",
    usage: "remusctl checkpoint [--no-wait] [--json]",
    options: [
      { name: "no-wait", type: "bool", help: "return once requested, without waiting for the commit" },
      json("the raw JSON reply"),
    ],
    async run(c, v) {
      const wait = v["no-wait"] !== true;
      const r = (await request(c, "POST", `/v1/checkpoint${wait ? "?wait=true" : ""}`)) as {
        epoch: number;
        committed: boolean;
      };
      if (v.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else
        process.stdout.write(
          r.committed ? `epoch ${r.epoch} committed\n` : `checkpoint of epoch ${r.epoch} requested\n`,
        );
    },
  },
  config: {
    summary: "show or change the run-time configuration",
    usage: "remusctl config get [--json] | remusctl config set KEY=VALUE ...",
    options: [json("the raw JSON reply")],
    positionals: true,
    details:
      "Keys: interval-ms (checkpoint interval), compress (true|false), heartbeat-ms, heartbeat-misses;\n" +
      "bounds as for remusd's flags. Interval and compression take effect at the next epoch (a backup\n" +
      "keeps them for when it becomes primary); heartbeat settings apply at once, to the live link too.\n" +
      "peer: the backup a primary dials (ws://HOST:PORT, or none); set it on an activated primary to\n" +
      "re-protect it with a new backup.",
    async run(c, v, args) {
      const [sub, ...rest] = args;
      if (sub === "get" || sub === undefined) {
        if (rest.length > 0) throw usageError("config get takes no arguments");
        const [cfg, s] = await Promise.all([get<Config>(c, "/v1/config"), get<Status>(c, "/v1/status")]);
        process.stdout.write(v.json ? `${JSON.stringify(cfg)}\n` : `${formatConfig(cfg, s.role)}\n`);
        return;
      }
      if (sub !== "set") throw usageError(`unknown config subcommand '${sub}' (get or set)`);
      const cfg = (await request(c, "PATCH", "/v1/config", configPatchOf(rest))) as Config;
      process.stdout.write(v.json ? `${JSON.stringify(cfg)}\n` : `${formatConfig(cfg, undefined)}\n`);
    },
  },
  fault: {
    summary: "inject a fault (daemons started with --allow-fault-injection): crash, stall MS, link-cut MS",
    usage: "remusctl fault crash | remusctl fault stall MS | remusctl fault link-cut MS [--json]",
    options: [json("the raw JSON reply")],
    positionals: true,
    details:
      "crash: the daemon SIGKILLs itself. stall MS: its event loop is blocked for MS ms. link-cut MS: its\n" +
      "replication connections are torn down and none is dialled or accepted for MS ms. For rehearsals\n" +
      "(remusd drill); refused (403) by a daemon started without --allow-fault-injection.",
    async run(c, v, args) {
      const [kind, msText, ...extra] = args;
      if (kind !== "crash" && kind !== "stall" && kind !== "link-cut")
        throw usageError("fault needs one of: crash, stall MS, link-cut MS");
      if (extra.length > 0 || (kind === "crash" && msText !== undefined))
        throw usageError(`too many arguments for fault ${kind}`);
      let body: { ms: number } | undefined;
      if (kind !== "crash") {
        const ms = Number(msText);
        if (msText === undefined || !Number.isInteger(ms) || ms < 1 || ms > 60_000)
          throw usageError(`fault ${kind} needs MS, an integer from 1 to 60000, got '${msText ?? ""}'`);
        body = { ms };
      }
      const r = (await request(c, "POST", `/v1/faults/${kind}`, body)) as FaultReply;
      process.stdout.write(
        v.json
          ? `${JSON.stringify(r)}\n`
          : `${r.fault}${r.ms === null ? "" : ` for ${r.ms} ms`} injected into pid ${r.pid} at ${r.at}\n`,
      );
    },
  },
  ps: {
    summary: "the guest's process table",
    usage: "remusctl ps [--json]",
    options: [json("the raw JSON of GET /v1/domain/processes")],
    async run(c, v) {
      const r = await get<ProcessesReply>(c, "/v1/domain/processes");
      if (v.json) {
        process.stdout.write(`${JSON.stringify(r)}\n`);
        return;
      }
      const rows = [["PID", "PPID", "NAME", "PROGRAM", "STATE", "TICKS", "PAGES", "EXIT"]];
      for (const p of r.processes) {
        rows.push(
          [
            p.pid,
            p.ppid,
            p.name,
            p.program,
            p.state,
            p.ticks,
            p.pages,
            p.state === "exited" ? p.exitCode : "-",
          ].map(String),
        );
      }
      process.stdout.write(`${table(rows)}\n`);
    },
  },
};

function usage(): string {
  return [
    `remusctl ${VERSION}: ${NO_COMMAND.summary}`,
    "",
    `Usage: ${NO_COMMAND.usage}`,
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(12)}${c.summary}`),
    "",
    ...optionsHelp(NO_COMMAND),
    "",
    "Run 'remusctl COMMAND --help' for a command's options. Exit code 0 on success, 1 when the daemon",
    "cannot be reached or refuses the request, 2 on bad usage.",
  ].join("\n");
}

/** The name of the command in `argv`: the first argument that is neither an option nor an option's value. */
function commandAt(argv: readonly string[]): number {
  const withValue = new Set(GLOBAL.map((o) => `--${o.name}`));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith("-")) return i;
    if (withValue.has(a)) i++;
  }
  return -1;
}

/** Runs remusctl with `argv` (after the program name). */
async function main(argv: readonly string[]): Promise<void> {
  const env = process.env;
  const at = commandAt(argv);
  const name = at < 0 ? undefined : (argv[at] as string);
  const rest = at < 0 ? [...argv] : [...argv.slice(0, at), ...argv.slice(at + 1)];
  if (name === "help") {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  const cmd = name === undefined ? undefined : COMMANDS[name];
  if (name !== undefined && !cmd) throw usageError(`unknown command '${name}' (run remusctl --help)`);
  const spec = cmd && name ? specOf(name, cmd) : NO_COMMAND;
  const { values: v, help, positionals } = parseOptions(spec, rest, env);
  if (help) {
    process.stdout.write(`${spec === NO_COMMAND ? usage() : helpText(spec)}\n`);
    return;
  }
  if (!cmd) {
    process.stdout.write(`${usage()}\n`);
    process.exitCode = EXIT.usage;
    return;
  }
  const hp = parseHostPort((v.control as string).replace(/^https?:\/\//, ""), "--control");
  const host = hp.host.includes(":") ? `[${hp.host}]` : hp.host === "0.0.0.0" ? "127.0.0.1" : hp.host;
  // --token wins over a token file (--token-file or REMUSD_API_TOKEN_FILE), which wins over REMUSD_API_TOKEN.
  const token =
    v.token !== undefined
      ? String(v.token)
      : readSecret(v["token-file"] as string | undefined, env.REMUSD_API_TOKEN, "API token");
  await cmd.run({ base: `http://${host}:${hp.port}`, token }, v, positionals);
}

function isEntryPoint(): boolean {
  // Compare real paths: npm starts bins through a symlink.
  const argv1 = process.argv[1];
  if (argv1 === undefined) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const args = process.argv.slice(2);
  if (args[0] === "--version") {
    process.stdout.write(`${VERSION}\n`);
  } else {
    main(args).catch((e: unknown) => {
      process.stderr.write(`remusctl: ${failureLine(e)}\n`);
      process.exit(exitCodeOf(e));
    });
  }
}
