/** Shared set-up of the real-process metrics tests. */
import { spawn } from "node:child_process";
import { type PairOptions, startPair, type TestPair } from "../helpers/procs.js";

/** The pair the metrics tests scrape: memory and disk load, three checkpoints in. */
const METRICS_PAIR: PairOptions = { workload: "dirty:rate=1000+disk:rate=16", ready: { commits: 3 } };

/** Starts the protected pair of the metrics tests (see `startPair`). */
export function startMetricsPair(dir: string): Promise<TestPair> {
  return startPair(dir, METRICS_PAIR);
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
