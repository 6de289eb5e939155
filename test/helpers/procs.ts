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
  rmSync(dir, { recursive: true, force: true });
}

export interface DaemonArgOptions {
  /** The replication key (written to DIR/key), or false for --insecure. */
  readonly key?: string | false;
  /** An API token (written to DIR/token). */
  readonly token?: string;
  readonly domainMib?: number;
  readonly diskMib?: number;
  readonly heartbeatMs?: number;
  readonly heartbeatMisses?: number;
  readonly verify?: boolean;
  /** The vswitch to attach the guest NIC to. */
  readonly switchAddr?: string;
}

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
    const keyFile = join(dir, "key");
    writeFileSync(keyFile, o.key ?? "test-replication-key-0123456789");
    args.push("--auth-key-file", keyFile);
  }
  if (o.token !== undefined) {
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, `${o.token}\n`);
    args.push("--api-token-file", tokenFile);
  }
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

export interface TestPair {
  readonly backup: DaemonInfo;
  readonly primary: DaemonInfo;
  readonly backupLog: string;
  readonly primaryLog: string;
}

/** Starts a backup, then a primary that dials it, with `daemonArgs` for both. */
export async function startPair(
  dir: string,
  o: DaemonArgOptions & { workload?: string; primaryArgs?: string[]; backupArgs?: string[] } = {},
): Promise<TestPair> {
  const backup = await startDaemon("backup", "backup", [
    "--listen",
    "127.0.0.1:0",
    ...daemonArgs(dir, "backup", o),
    ...(o.backupArgs ?? []),
  ]);
  const primary = await startDaemon("primary", "primary", [
    "--peer",
    `ws://127.0.0.1:${backup.replicationPort}`,
    "--workload",
    o.workload ?? "web",
    ...daemonArgs(dir, "primary", o),
    ...(o.primaryArgs ?? []),
  ]);
  return { backup, primary, backupLog: join(dir, "backup.jsonl"), primaryLog: join(dir, "primary.jsonl") };
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
