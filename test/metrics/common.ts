/** Shared set-up of the real-process metrics tests: a protected pair of daemons. */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { type DaemonInfo, daemonArgs, readEvents, startDaemon, waitFor } from "../helpers/procs.js";

export interface Pair {
  readonly primary: DaemonInfo;
  readonly backup: DaemonInfo;
  readonly primaryLog: string;
}

/** Starts a backup and a primary (small domain, authenticated link) and waits for commits. */
export async function startPair(dir: string): Promise<Pair> {
  const common = (name: string) => daemonArgs(dir, name, { key: "metrics-test-key-0123456789" });
  const backup = await startDaemon("backup", "backup", ["--listen", "127.0.0.1:0", ...common("backup")]);
  const primary = await startDaemon("primary", "primary", [
    "--peer",
    `ws://127.0.0.1:${backup.replicationPort}`,
    "--workload",
    "dirty:rate=1000+disk:rate=16",
    ...common("primary"),
  ]);
  const primaryLog = join(dir, "primary.jsonl");
  await waitFor(
    "committed checkpoints",
    () => readEvents(primaryLog).filter((e) => e.event === "checkpoint.committed").length >= 3,
  );
  return { primary, backup, primaryLog };
}

/** Finds a program on PATH, or fails the test with a clear message (CI installs it: .ci/run). */
export async function requireProgram(name: string, pkg: string): Promise<string> {
  const found = await new Promise<string | undefined>((resolve) => {
    const c = spawn("sh", ["-c", `command -v ${name}`], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    c.stdout.on("data", (d: Buffer) => (out += d.toString()));
    c.on("close", (code) => resolve(code === 0 ? out.trim() : undefined));
  });
  if (!found) {
    throw new Error(
      `'${name}' is not installed: this test needs the Debian package '${pkg}' (apt-get install ${pkg}; .ci/run installs it)`,
    );
  }
  return found;
}

/** Runs `cmd args` with `input` on stdin; resolves with its exit code and output. */
export function run(
  cmd: string,
  args: string[],
  input: string,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    c.stdout.on("data", (d: Buffer) => (out += d.toString()));
    c.stderr.on("data", (d: Buffer) => (out += d.toString()));
    c.on("error", reject);
    c.on("close", (code) => resolve({ code, out }));
    c.stdin.end(input);
  });
}
