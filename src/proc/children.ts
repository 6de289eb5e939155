/**
 * remusd's own child processes (`remusd demo`, `remusd drill --local`): start
 * a remusd command, keep its output, wait for its "started" log line, and
 * poll for a condition with a deadline.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseJsonLines } from "../daemon/eventlog.js";

const REMUSD = fileURLToPath(new URL("../cli/remusd.js", import.meta.url));

/** A remusd child process and what it printed (stderr: the last few MB). */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  stderr: string;
  stdout: string;
  readonly exit: Promise<number | null>;
  exited: boolean;
}

/** Starts `remusd ARGS...` with this Node.js. */
export function spawnRemusd(name: string, args: readonly string[]): Child {
  const proc = spawn(process.execPath, [REMUSD, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const c: Child = {
    name,
    proc,
    stderr: "",
    stdout: "",
    exited: false,
    exit: new Promise((resolve) => proc.on("exit", (code) => resolve(code))),
  };
  void c.exit.then(() => {
    c.exited = true;
  });
  proc.stderr?.on("data", (d: Buffer) => {
    c.stderr += d.toString();
    if (c.stderr.length > 4_000_000) c.stderr = c.stderr.slice(-1_000_000);
  });
  proc.stdout?.on("data", (d: Buffer) => {
    c.stdout += d.toString();
  });
  return c;
}

/** Polls `f` every 50 ms until it returns something truthy; throws after `ms`. */
export async function waitFor<T>(
  what: string,
  f: () => T | undefined | false | Promise<T | undefined | false>,
  ms: number,
  everyMs = 50,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The JSON log line `msg` of a child, once printed; throws if the child exited. */
export function started(c: Child, msg: string): Record<string, unknown> | undefined {
  if (c.exited) throw new Error(`${c.name} exited early:\n${c.stderr.slice(-1500)}`);
  return parseJsonLines(c.stderr).find((o) => o.msg === msg);
}
