/**
 * Real processes for the benchmark cases that need them: a vswitch, a backup
 * and a primary (`remusd` daemons on 127.0.0.1, `--insecure`, ephemeral
 * ports, each under the loop-lag monitor, looplag.ts), `remusd client`, and
 * what their event logs and monitors say afterwards. Every process started
 * here is stopped (SIGTERM, then SIGKILL) by `Procs.stopAll`, whatever
 * happened.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { LoopLagReport } from "./looplag.js";

const CLI = fileURLToPath(new URL("../cli/remusd.js", import.meta.url));
const LOOPLAG = fileURLToPath(new URL("./looplag.js", import.meta.url));

/** A free TCP (and, in practice, UDP) port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One line of an event log. */
export interface Ev {
  readonly ts: string;
  readonly event: string;
  readonly epoch: number;
  readonly [k: string]: unknown;
}

/** A daemon started by `Procs`. */
export interface Daemon {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly dir: string;
  readonly eventLog: string;
  /** The replication address (a backup's), for the primary's --peer. */
  readonly listen?: string;
  /** The control API's address. */
  readonly control?: string;
}

export function readEvents(file: string): Ev[] {
  if (!existsSync(file)) return [];
  const out: Ev[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as Ev);
    } catch {
      // A line being written right now.
    }
  }
  return out;
}

/** The process's user + system CPU seconds so far (Linux /proc), NaN when unknown. */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const f = (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

export interface DaemonOptions {
  readonly domainMiB: number;
  readonly intervalMs?: number;
  readonly workload?: string;
  readonly verify?: boolean;
  readonly switchAddr?: string;
  /** More flags. */
  readonly args?: readonly string[];
}

export class Procs {
  private readonly procs: ChildProcess[] = [];
  constructor(private readonly root: string) {}

  private start(
    name: string,
    args: string[],
    opts: { looplag?: string; stdout?: "pipe" } = {},
  ): ChildProcess {
    const node = opts.looplag ? ["--import", LOOPLAG] : [];
    // REMUSD_BENCH_PROF=DIR: the daemons run under --cpu-prof (a profile per thread in DIR/NAME).
    const prof = process.env.REMUSD_BENCH_PROF;
    if (prof && opts.looplag) node.push("--cpu-prof", "--cpu-prof-dir", join(prof, name));
    const child = spawn(process.execPath, [...node, CLI, ...args], {
      env: { ...process.env, ...(opts.looplag ? { LOOPLAG_OUT: opts.looplag } : {}) },
      stdio: ["ignore", opts.stdout ?? "ignore", "ignore"],
    });
    this.procs.push(child);
    child.on("error", () => {});
    return child;
  }

  /** A vswitch; resolves with its address once it listens. */
  async vswitch(): Promise<string> {
    const addr = `127.0.0.1:${await freePort()}`;
    this.start("vswitch", ["vswitch", "--listen", addr, "--log-level", "error"]);
    await sleep(300);
    return addr;
  }

  private daemonArgs(name: string, o: DaemonOptions): { dir: string; eventLog: string; args: string[] } {
    const dir = join(this.root, name);
    mkdirSync(dir, { recursive: true });
    const eventLog = join(dir, "events.jsonl");
    const args = [
      "--insecure",
      "--unsafe-open-api",
      "--log-level",
      "error",
      "--data-dir",
      join(dir, "data"),
      "--event-log",
      eventLog,
      "--domain-mib",
      String(o.domainMiB),
      ...(o.verify ? ["--verify"] : []),
      ...(o.switchAddr ? ["--switch", o.switchAddr] : []),
      ...(o.args ?? []),
    ];
    return { dir, eventLog, args };
  }

  /** A backup listening on `listen` (default: a fresh port); with `healthy` (default), once its API answers. */
  async backup(name: string, o: DaemonOptions, listenOn?: string, healthy = true): Promise<Daemon> {
    const listen = listenOn ?? `127.0.0.1:${await freePort()}`;
    const control = `127.0.0.1:${await freePort()}`;
    const { dir, eventLog, args } = this.daemonArgs(name, o);
    const proc = this.start(name, ["backup", "--listen", listen, "--control", control, ...args], {
      looplag: join(dir, "looplag.json"),
    });
    // Started when its API answers: its own start-up (loading, compiling schemas) is then behind it.
    if (healthy) await this.healthy(control, 30_000);
    return { name, proc, dir, eventLog, listen, control };
  }

  /** Points a primary at the backup at `listen` (PATCH /v1/config; the daemons run with --unsafe-open-api). */
  async setPeer(d: Daemon, listen: string): Promise<void> {
    if (d.control === undefined) throw new Error(`${d.name} has no control address`);
    const r = await fetch(`http://${d.control}/v1/config`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ peer: `ws://${listen}` }),
    });
    if (!r.ok) throw new Error(`PATCH /v1/config on ${d.name}: ${r.status} ${await r.text()}`);
  }

  /** Waits until GET /healthz on `control` answers 200 (at most `ms`). */
  private async healthy(control: string, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      try {
        const r = await fetch(`http://${control}/healthz`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`the daemon at ${control} never became healthy`);
  }

  /**
   * A primary dialling `peer` (a backup's replication address, or one nobody
   * listens on yet); with `healthy`, resolves once its API answers.
   */
  async primary(name: string, peer: string, o: DaemonOptions, healthy = false): Promise<Daemon> {
    const control = `127.0.0.1:${await freePort()}`;
    const { dir, eventLog, args } = this.daemonArgs(name, o);
    const proc = this.start(
      name,
      [
        "primary",
        "--peer",
        `ws://${peer}`,
        "--control",
        control,
        "--interval-ms",
        String(o.intervalMs ?? 25),
        "--workload",
        o.workload ?? "web",
        ...args,
      ],
      { looplag: join(dir, "looplag.json") },
    );
    if (healthy) await this.healthy(control, 30_000);
    return { name, proc, dir, eventLog, control };
  }

  /**
   * `remusd client`'s arguments for the COLO cases' load: 8 connections, one
   * request in flight each (`-P 1`), for `seconds`.
   */
  static closedLoop(seconds: number): string[] {
    return ["--connections", "8", "--pipeline", "1", "--duration", String(seconds)];
  }

  /** `remusd client` against the guest's kvd; resolves with its JSON summary (undefined if it printed none). */
  client(switchAddr: string, args: readonly string[]): Promise<Record<string, unknown> | undefined> {
    const child = this.start("client", ["client", "--switch", switchAddr, ...args], { stdout: "pipe" });
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString("utf8");
    });
    return new Promise((resolve) => {
      child.on("exit", () => {
        try {
          resolve(JSON.parse(out.trim().split("\n").at(-1) ?? "") as Record<string, unknown>);
        } catch {
          resolve(undefined);
        }
      });
    });
  }

  /** Waits until `file` has an event matching `pred` (polling), at most `ms`; returns it. */
  async waitEvent(file: string, pred: (e: Ev) => boolean, ms: number): Promise<Ev | undefined> {
    const end = Date.now() + ms;
    for (;;) {
      const e = readEvents(file).find(pred);
      if (e || Date.now() > end) return e;
      await sleep(50);
    }
  }

  /** Stops a process: SIGTERM (a daemon's graceful stop writes its monitor's report), SIGKILL after `ms`. */
  async stop(p: ChildProcess, ms = 8000): Promise<void> {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), ms);
    await gone;
    clearTimeout(t);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => this.stop(p)));
  }
}

/** A daemon's loop-lag report (written when it exited), if any. */
export function loopLag(d: Daemon): LoopLagReport | undefined {
  try {
    return JSON.parse(readFileSync(join(d.dir, "looplag.json"), "utf8")) as LoopLagReport;
  } catch {
    return undefined;
  }
}

/** The primary's committed checkpoints after its sync (`sync.completed`). */
export function steadyCommits(events: readonly Ev[]): Ev[] {
  const sync = events.find((e) => e.event === "sync.completed");
  if (!sync) return [];
  return events.filter((e) => e.event === "checkpoint.committed" && e.epoch > sync.epoch);
}

export const ms = (e: Ev): number => Date.parse(e.ts);
