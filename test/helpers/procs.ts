/**
 * Real-process test helpers: start remusd commands as child processes on
 * ephemeral loopback ports, wait for conditions (polling with a deadline, never
 * a fixed sleep), read event logs, and kill exactly the processes we started.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseJsonLines, readEventLog } from "../../src/daemon/eventlog.js";

export const REMUSD = join(process.cwd(), "dist", "src", "cli", "remusd.js");
export const REMUSCTL = join(process.cwd(), "dist", "src", "cli", "remusctl.js");

export interface Proc {
  readonly child: ChildProcess;
  readonly name: string;
  stderr: string;
  stdout: string;
  exited: Promise<number | null>;
  exitCode: number | null | undefined;
}

const started = new Set<Proc>();

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `remusd-${prefix}-`));
}

export function startProc(name: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  return startCommand(name, process.execPath, [REMUSD, ...args], env);
}

/** Starts any program (e.g. prometheus) under the same bookkeeping: `killAll` ends it. */
export function startCommand(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Proc {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const p: Proc = {
    child,
    name,
    stderr: "",
    stdout: "",
    exitCode: undefined,
    exited: new Promise((resolve) => child.on("exit", (code) => resolve(code))),
  };
  child.stderr?.on("data", (d: Buffer) => {
    p.stderr += d.toString();
  });
  child.stdout?.on("data", (d: Buffer) => {
    p.stdout += d.toString();
  });
  void p.exited.then((c) => {
    p.exitCode = c;
    started.delete(p);
  });
  started.add(p);
  return p;
}

/** Polls `cond` every 20 ms until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(
  what: string,
  cond: () => T | undefined | false,
  timeoutMs = 20000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The JSON log line with `msg`, once the process printed it. */
export function logLine(p: Proc, msg: string): Record<string, unknown> | undefined {
  return parseJsonLines(p.stderr).find((o) => o.msg === msg);
}

export interface DaemonInfo {
  readonly proc: Proc;
  readonly control: string;
  readonly replicationPort: number | undefined;
}

/** Starts a daemon and waits for its "started" line; returns its addresses. */
export async function startDaemon(
  role: "primary" | "backup",
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<DaemonInfo> {
  const proc = startProc(name, [role, ...args], env);
  const line = await waitFor(`${name} to start`, () => {
    if (proc.exitCode !== undefined)
      throw new Error(`${name} exited with ${proc.exitCode}: ${proc.stderr.slice(-2000)}`);
    return logLine(proc, `remusd ${role} started`);
  });
  return {
    proc,
    control: line.control as string,
    replicationPort: typeof line.replication === "number" ? line.replication : undefined,
  };
}

export const readEvents = readEventLog;

export async function getJson(url: string, init?: RequestInit): Promise<{ status: number; body: unknown }> {
  const r = await fetch(url, init);
  const text = await r.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: r.status, body };
}

export function kill(p: Proc, signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
  if (p.exitCode === undefined && p.child.pid !== undefined) p.child.kill(signal);
  return p.exited;
}

/** Kills every process this test file started (call from `after`). */
export async function killAll(): Promise<void> {
  const all = [...started];
  for (const p of all) if (p.child.pid !== undefined && p.exitCode === undefined) p.child.kill("SIGKILL");
  await Promise.all(all.map((p) => p.exited));
}

/** Runs remusctl to completion; returns its exit code and output. */
export async function remusctl(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = startCommand("remusctl", process.execPath, [REMUSCTL, ...args], env);
  // 'close', not 'exit': the output pipes are drained by then.
  const code = await new Promise<number | null>((resolve) => p.child.on("close", (c) => resolve(c)));
  return { code, stdout: p.stdout, stderr: p.stderr };
}

export function cleanup(dir: string): void {
  // REMUSD_KEEP_TEST_DIRS=1 keeps every test's logs and event logs for a post-mortem.
  if (process.env.REMUSD_KEEP_TEST_DIRS) return;
  rmSync(dir, { recursive: true, force: true });
}

export interface DaemonArgOptions {
  /** The replication key (written to DIR/NAME.key), or false for --insecure. */
  readonly key?: string | false;
  /** An API token (written to DIR/token). */
  readonly token?: string;
  /** The domain's size (default 8 and 4 MiB); null: no --domain-mib/--disk-mib at all (a backup adopts its primary's). */
  readonly domainMib?: number | null;
  readonly diskMib?: number;
  readonly heartbeatMs?: number;
  readonly heartbeatMisses?: number;
  readonly verify?: boolean;
  /** The vswitch to attach the guest NIC to. */
  readonly switchAddr?: string;
}

/** The file `daemonArgs` writes the API token to. */
export const tokenFileOf = (dir: string): string => join(dir, "token");

/** The key of a test pair (both sides read it from their own file). */
const PAIR_KEY = "test-replication-key-0123456789";

/**
 * The options every test daemon gets: an ephemeral control port, its own data
 * folder and event log (DIR/NAME, DIR/NAME.jsonl), a small domain, and the
 * pair's key.
 */
export function daemonArgs(dir: string, name: string, o: DaemonArgOptions = {}): string[] {
  const args = [
    "--control",
    "127.0.0.1:0",
    "--data-dir",
    join(dir, name),
    "--event-log",
    join(dir, `${name}.jsonl`),
  ];
  if (o.key === false) args.push("--insecure");
  else {
    const keyFile = join(dir, `${name}.key`);
    writeFileSync(keyFile, o.key ?? PAIR_KEY);
    args.push("--auth-key-file", keyFile);
  }
  if (o.token !== undefined) {
    writeFileSync(tokenFileOf(dir), `${o.token}\n`);
    args.push("--api-token-file", tokenFileOf(dir));
  }
  if (o.domainMib !== null)
    args.push("--domain-mib", String(o.domainMib ?? 8), "--disk-mib", String(o.diskMib ?? 4));
  args.push(
    "--heartbeat-ms",
    String(o.heartbeatMs ?? 100),
    "--heartbeat-misses",
    String(o.heartbeatMisses ?? 10),
  );
  if (o.verify) args.push("--verify");
  if (o.switchAddr) args.push("--switch", o.switchAddr);
  return args;
}

/** One daemon of a test: `daemonArgs`, a primary's workload, and arguments of its own. */
export interface DaemonOptions extends DaemonArgOptions {
  /** What a primary's guest runs (default web). */
  readonly workload?: string;
  /** More arguments, after the others. */
  readonly args?: readonly string[];
}

/** The arguments (after `backup`) of a test backup listening for primaries at `listen`. */
export function backupArgs(
  dir: string,
  name: string,
  o: DaemonOptions = {},
  listen = "127.0.0.1:0",
): string[] {
  return ["--listen", listen, ...daemonArgs(dir, name, o), ...(o.args ?? [])];
}

/** The arguments (after `primary`) of a test primary that dials the backup at `peer` (ws://HOST:PORT). */
export function primaryArgs(dir: string, name: string, peer: string, o: DaemonOptions = {}): string[] {
  return ["--peer", peer, "--workload", o.workload ?? "web", ...daemonArgs(dir, name, o), ...(o.args ?? [])];
}

/** Starts a backup process (see `backupArgs`) and waits until it listens. */
export function startBackup(
  dir: string,
  name: string,
  o: DaemonOptions = {},
  listen?: string,
): Promise<DaemonInfo> {
  return startDaemon("backup", name, backupArgs(dir, name, o, listen));
}

/** Starts a primary process (see `primaryArgs`) and waits until it runs. */
export function startPrimary(
  dir: string,
  name: string,
  peer: string,
  o: DaemonOptions = {},
): Promise<DaemonInfo> {
  return startDaemon("primary", name, primaryArgs(dir, name, peer, o));
}

/** Starts a vswitch on an ephemeral UDP port (with more options, e.g. --tap); returns its process and HOST:PORT. */
export async function startVswitch(
  args: readonly string[] = [],
): Promise<{ readonly proc: Proc; readonly addr: string }> {
  const proc = startProc("vswitch", ["vswitch", "--listen", "127.0.0.1:0", ...args]);
  const line = await waitFor("the vswitch to start", () => {
    if (proc.exitCode !== undefined) throw new Error(`vswitch exited with ${proc.exitCode}: ${proc.stderr}`);
    return logLine(proc, "remusd vswitch started");
  });
  return { proc, addr: `127.0.0.1:${line.port as number}` };
}

/** A protected pair of test daemons (see `startPair`). */
export interface PairOptions extends DaemonArgOptions {
  /** The primary's workload (default web). */
  readonly workload?: string;
  /** The primary's name (default "primary") and more arguments of its own. */
  readonly primary?: { readonly name?: string; readonly args?: readonly string[] };
  /** The backup's name (default "backup") and more arguments of its own. */
  readonly backup?: { readonly name?: string; readonly args?: readonly string[] };
  /** Start a vswitch first and attach both guest NICs to it. */
  readonly vswitch?: boolean;
  /** What to wait for: the primary protected (default), or this many committed checkpoints. */
  readonly ready?: "protected" | { readonly commits: number };
}

export interface TestPair {
  readonly backup: DaemonInfo;
  readonly primary: DaemonInfo;
  /** The event logs (DIR/NAME.jsonl). */
  readonly backupLog: string;
  readonly primaryLog: string;
  /** The vswitch's HOST:PORT, with `vswitch: true`. */
  readonly switchAddr: string | undefined;
}

/**
 * Starts a protected pair as real processes: a vswitch (if asked), a backup on
 * an ephemeral port, a primary that dials it, both with `daemonArgs`; then waits
 * until the pair is ready (the primary protected, or a number of commits).
 * `killAll` (or `inTempDir`) ends them.
 */
export async function startPair(dir: string, o: PairOptions = {}): Promise<TestPair> {
  const { workload, primary: p, backup: b, vswitch, ready = "protected", ...daemon } = o;
  const switchAddr = vswitch ? (await startVswitch()).addr : undefined;
  const common: DaemonArgOptions = switchAddr ? { ...daemon, switchAddr } : daemon;
  const bName = b?.name ?? "backup";
  const pName = p?.name ?? "primary";
  const backup = await startBackup(dir, bName, { ...common, args: b?.args ?? [] });
  const primary = await startPrimary(dir, pName, `ws://127.0.0.1:${backup.replicationPort}`, {
    ...common,
    workload: workload ?? "web",
    args: p?.args ?? [],
  });
  const primaryLog = join(dir, `${pName}.jsonl`);
  try {
    if (ready === "protected") {
      await waitFor("the primary to be protected", () =>
        readEvents(primaryLog).some((e) => e.event === "state.changed" && e.to === "protected"),
      );
    } else {
      await waitFor(
        `${ready.commits} committed checkpoints`,
        () =>
          readEvents(primaryLog).filter((e) => e.event === "checkpoint.committed").length >= ready.commits,
      );
    }
  } catch (e) {
    throw new Error(
      `${(e as Error).message}\nprimary: ${primary.proc.stderr.slice(-3000)}\nbackup: ${backup.proc.stderr.slice(-3000)}`,
    );
  }
  return { backup, primary, backupLog: join(dir, `${bName}.jsonl`), primaryLog, switchAddr };
}

/**
 * Runs `fn` with a fresh temporary folder, then kills every process the test
 * started and removes the folder, whatever happened.
 */
export async function inTempDir(prefix: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir(prefix);
  try {
    await fn(dir);
  } finally {
    await killAll();
    cleanup(dir);
  }
}
