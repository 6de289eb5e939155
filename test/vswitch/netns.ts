/**
 * Network namespaces and TAP-attached vswitches for process tests. Each test
 * makes its own namespace (named after the test process, so parallel test
 * files and other engineers' runs never share one) and removes it whatever
 * happens. Root, iproute2 and /dev/net/tun are required: a machine without
 * them fails these tests with a message saying what is missing, it does not
 * skip them.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type Proc, startCommand, startVswitch } from "../helpers/procs.js";

let seq = 0;

/** Fails loudly unless the machine can run TAP tests (root, ip, /dev/net/tun) and has `tools`. */
export function requireTapHost(tools: readonly string[] = []): void {
  assert.equal(process.getuid?.(), 0, "TAP tests need root (CI runs as root)");
  assert.ok(existsSync("/dev/net/tun"), "TAP tests need /dev/net/tun");
  for (const t of ["ip", ...tools]) {
    let found = true;
    try {
      execFileSync("sh", ["-c", `command -v ${t}`], { stdio: "ignore" });
    } catch {
      found = false;
    }
    assert.ok(
      found,
      `'${t}' is not installed: .ci/run installs it (Debian: iproute2, redis-tools, util-linux)`,
    );
  }
}

/** A fresh namespace and a device name for one test; `remove()` deletes the namespace. */
export function makeNetns(tag: string): { ns: string; dev: string; remove: () => void } {
  seq++;
  const ns = `remusd-${tag}-${process.pid}-${seq}`;
  // Device names have at most 15 bytes.
  const dev = `r${tag.slice(0, 3)}${(process.pid % 100000).toString(36)}${seq}`.slice(0, 15);
  execFileSync("ip", ["netns", "add", ns]);
  return {
    ns,
    dev,
    remove: () => {
      try {
        execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
      } catch {
        // already gone
      }
    },
  };
}

/** True when network device `dev` exists in namespace `ns`. */
export function deviceExists(ns: string, dev: string): boolean {
  try {
    execFileSync("ip", ["-n", ns, "link", "show", "dev", dev], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Starts `remusd vswitch` with a TAP port and waits until it listens; returns the process and its UDP port. */
export async function startTapVswitch(tap: string): Promise<{ proc: Proc; port: number; addr: string }> {
  const { proc, addr } = await startVswitch(["--tap", tap]);
  return { proc, addr, port: Number(addr.split(":")[1]) };
}

/** Runs a command in the namespace to completion, with an optional stdin; kills it after `timeoutMs`. */
export function inNs(
  ns: string,
  cmd: string[],
  input = "",
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn("ip", ["netns", "exec", ns, ...cmd], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.end(input);
  });
}

/** The writes a TAP-side checking client (its `{"acked":N}` stdout lines) had acknowledged so far. */
export function ackedSoFar(p: Proc): number {
  let acked = 0;
  for (const line of p.stdout.split("\n")) {
    if (line.startsWith('{"acked"')) acked = (JSON.parse(line) as { acked: number }).acked;
  }
  return acked;
}

/** The rows of `redis-benchmark --csv` output: [test, requests/s, latency columns...], quotes removed. */
export function redisBenchmarkRows(stdout: string): string[][] {
  return stdout
    .split("\n")
    .filter((l) => /^"[^"]+","[0-9.]+"/.test(l))
    .map((l) => l.split(",").map((c) => c.replace(/"/g, "")));
}

/** What test/vswitch/kv-client.ts prints at the end of a live run. */
export interface KvClientSummary {
  acked: number;
  counter: number;
  reads: number;
  wrong: string[];
  resets: number;
  closed: boolean;
  maxLatencyMs: number;
}

/** The kernel-TCP checking client (test/vswitch/kv-client.ts) in `ns`, one live connection to `guest`'s kvd. */
export function startNsKvClient(ns: string, guest: string): Proc {
  const clientJs = join(process.cwd(), "dist", "test", "vswitch", "kv-client.js");
  return startCommand("kv-client", "ip", [
    "netns",
    "exec",
    ns,
    process.execPath,
    clientJs,
    guest,
    "6379",
    "live",
  ]);
}

/** The summary line the kv-client printed when it ended. */
export function kvClientSummary(client: Proc): KvClientSummary {
  const line = client.stdout.split("\n").find((l) => l.startsWith('{"summary"'));
  assert.ok(line, `no summary from the client: ${client.stdout}${client.stderr}`);
  return (JSON.parse(line) as { summary: KvClientSummary }).summary;
}
