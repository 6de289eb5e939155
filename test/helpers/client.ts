/**
 * What a `remusd client` process reports, read the same way by every
 * real-process test: its progress lines (stderr) and its verdict (the last
 * stdout line), checked for nothing reset, lost or wrong.
 */
import assert from "node:assert/strict";
import { type Proc, startProc } from "./procs.js";

/** One `client progress` line. */
export interface ClientProgress {
  t: number;
  phase: string;
  requests: number;
  replies: number;
  resets: number;
}

/** The client's verdict (its summary line). */
export interface ClientSummary {
  ok: boolean;
  resets: number;
  lostWrites: number;
  wrongReads: number;
  replies: number;
  verifiedKeys: number;
  longestStallMs: number;
  errors: string[];
}

/** The progress lines the client printed so far. */
export function progressLines(stderr: string): ClientProgress[] {
  return stderr
    .split("\n")
    .filter((l) => l.includes('"client progress"'))
    .map((l) => JSON.parse(l) as ClientProgress);
}

/** Replies the client had counted at its last progress line (0 before the first). */
export function repliesSoFar(client: Proc): number {
  return progressLines(client.stderr).at(-1)?.replies ?? 0;
}

/**
 * Waits for the client to end and checks its verdict: nothing reset, lost or
 * wrong, some keys verified by the read-back, exit 0. Returns the summary.
 */
export async function expectCleanClient(client: Proc, what: string): Promise<ClientSummary> {
  const code = await client.exited;
  const summary = JSON.parse(client.stdout.trim().split("\n").pop() as string) as ClientSummary;
  const why = `${what}: ${JSON.stringify(summary)}`;
  assert.equal(summary.resets, 0, why);
  assert.equal(summary.lostWrites, 0, why);
  assert.equal(summary.wrongReads, 0, why);
  assert.equal(summary.ok, true, why);
  assert.ok(summary.verifiedKeys > 0, why);
  assert.equal(code, 0, why);
  return summary;
}

/** Asserts the client got replies in its run phase after it had `repliesAtKill` (service went on after a fault). */
export function expectRepliesAfter(client: Proc, repliesAtKill: number): void {
  const runAfter = progressLines(client.stderr).filter((p) => p.phase === "run" && p.replies > repliesAtKill);
  assert.ok(runAfter.length > 0, `no replies after the failover (at kill ${repliesAtKill})`);
}

/** `remusd client` with 8 connections on the vswitch for `seconds`, its progress on stderr every second. */
export function startClient(switchAddr: string, seconds: number, seed: number): Proc {
  return startProc("client", [
    "client",
    "--switch",
    switchAddr,
    "--connections",
    "8",
    "--duration",
    String(seconds),
    "--seed",
    String(seed),
    "--progress",
  ]);
}
