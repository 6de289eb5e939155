import assert from "node:assert/strict";
import { after, test } from "node:test";
import {
  expectCleanClient,
  expectRepliesAfter,
  type ClientProgress as Progress,
  progressLines,
} from "../helpers/client.js";
import { inTempDir, kill, killAll, readEvents, startPair, startProc, waitFor } from "../helpers/procs.js";

after(killAll);

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
    await expectCleanClient(client, "SIGKILL of the primary");
    // Replies continued after the failover, before the final read-back began.
    expectRepliesAfter(client, repliesAtKill);
    assert.ok((activated.epoch as number) > 0);
    await kill(backup.proc, "SIGTERM");
  });
});
