import assert from "node:assert/strict";
import { after, test } from "node:test";
import { inTempDir, kill, killAll, readEvents, startPair, startProc, waitFor } from "../helpers/procs.js";

after(killAll);

interface Progress {
  t: number;
  phase: string;
  requests: number;
  replies: number;
  resets: number;
}

function progressLines(stderr: string): Progress[] {
  return stderr
    .split("\n")
    .filter((l) => l.includes('"client progress"'))
    .map((l) => JSON.parse(l) as Progress);
}

test("real processes: SIGKILL of the primary under client load; TCP sessions carry on with nothing lost", async () => {
  await inTempDir("netfail", async (dir) => {
    const pair = await startPair(dir, { vswitch: true, domainMib: 32, verify: true });
    const { backup, primary, backupLog: bLog } = pair;
    const swAddr = pair.switchAddr as string;
    const client = startProc("client", [
      "client",
      "--switch",
      swAddr,
      "--connections",
      "8",
      "--duration",
      "8",
      "--seed",
      "7",
      "--progress",
    ]);
    // Load flows, then the primary dies mid-stream.
    await waitFor("client replies", () => {
      const p = progressLines(client.stderr);
      return (
        p.length > 0 && (p[p.length - 1] as Progress).replies > 200 && (p[p.length - 1] as Progress).t > 2.5
      );
    });
    await kill(primary.proc, "SIGKILL");
    const repliesAtKill = (progressLines(client.stderr).pop() as Progress).replies;
    const activated = await waitFor("activation", () =>
      readEvents(bLog).find((e) => e.event === "failover.activated"),
    );
    const code = await client.exited;
    const summary = JSON.parse(client.stdout.trim().split("\n").pop() as string) as {
      ok: boolean;
      resets: number;
      lostWrites: number;
      wrongReads: number;
      replies: number;
      verifiedKeys: number;
      longestStallMs: number;
      errors: string[];
    };
    assert.equal(summary.resets, 0, JSON.stringify(summary.errors));
    assert.equal(summary.lostWrites, 0, JSON.stringify(summary.errors));
    assert.equal(summary.wrongReads, 0, JSON.stringify(summary.errors));
    assert.equal(summary.ok, true, JSON.stringify(summary.errors));
    assert.equal(code, 0);
    assert.ok(summary.verifiedKeys > 0);
    // Replies continued after the failover, before the final read-back began.
    const runAfter = progressLines(client.stderr).filter(
      (p) => p.phase === "run" && p.replies > repliesAtKill,
    );
    assert.ok(runAfter.length > 0, `no replies after the failover (at kill ${repliesAtKill})`);
    assert.ok((activated.epoch as number) > 0);
    await kill(backup.proc, "SIGTERM");
  });
});
