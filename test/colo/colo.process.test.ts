/**
 * A COLO pair as real processes (two `remusd --mode colo`, a vswitch, and
 * `remusd client` checking every reply): the primary is SIGKILLed under
 * load; the secondary takes over from its own state and the clients' TCP
 * sessions carry on. Each replica's guest draws its own random numbers, so
 * the connections were accepted with other ISNs on the secondary: the test
 * reads from the secondary's status that they were renumbered before the kill
 * and are still renumbered by the new primary after it.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { Status } from "../../src/api/schemas.js";
import {
  expectCleanClient,
  expectRepliesAfter,
  type ClientProgress as Progress,
  progressLines,
} from "../helpers/client.js";
import {
  getJson,
  inTempDir,
  kill,
  killAll,
  readEvents,
  startPair,
  startProc,
  waitFor,
} from "../helpers/procs.js";

after(killAll);

test("real processes, COLO: SIGKILL of the primary under client load; the secondary goes on from its own state with its rewriter, sessions carry on", async () => {
  await inTempDir("colo", async (dir) => {
    const colo = { args: ["--mode", "colo"] };
    const pair = await startPair(dir, {
      vswitch: true,
      domainMib: 32,
      verify: true,
      primary: colo,
      backup: colo,
    });
    const { backup, primary, backupLog, primaryLog } = pair;
    const client = startProc("client", [
      "client",
      "--switch",
      pair.switchAddr as string,
      "--connections",
      "8",
      "--duration",
      "8",
      "--seed",
      "11",
      "--progress",
    ]);
    await waitFor("client replies", () => {
      const p = progressLines(client.stderr);
      return (
        p.length > 0 && (p[p.length - 1] as Progress).replies > 300 && (p[p.length - 1] as Progress).t > 2.5
      );
    });
    // The primary serves on matching output; the secondary renumbers the sessions it accepted with its own ISNs.
    const pStatus = (await getJson(`${primary.control}/v1/status`)).body as Status;
    const bStatus = (await getJson(`${backup.control}/v1/status`)).body as Status;
    assert.equal(pStatus.mode, "colo");
    assert.ok(pStatus.colo && pStatus.colo.compared.match > 200, JSON.stringify(pStatus.colo));
    const rw = bStatus.colo?.rewriter;
    assert.ok(
      rw && rw.offsets >= 1,
      `the secondary renumbers no connection: ${JSON.stringify(bStatus.colo)}`,
    );
    await kill(primary.proc, "SIGKILL");
    const repliesAtKill = (progressLines(client.stderr).pop() as Progress).replies;
    const activated = await waitFor("activation", () =>
      readEvents(backupLog).find((e) => e.event === "failover.activated"),
    ).catch((e: Error) => {
      // What the secondary did instead: its last events and log lines.
      const tail = readEvents(backupLog)
        .slice(-25)
        .map((x) => JSON.stringify(x));
      throw new Error(`${e.message}\n${tail.join("\n")}\n${backup.proc.stderr.slice(-3000)}`);
    });
    await expectCleanClient(client, "COLO: SIGKILL of the primary");
    expectRepliesAfter(client, repliesAtKill);
    // No rollback: the new primary's rewriter still renumbers the sessions opened before the kill.
    const after = (await getJson(`${backup.control}/v1/status`)).body as Status;
    assert.equal(after.role, "primary");
    assert.ok(
      after.colo?.rewriter?.failedOver && after.colo.rewriter.offsets >= 1,
      JSON.stringify(after.colo),
    );
    // It went on from its own state: the epoch it activated from is the sync's (or a later checkpoint's).
    const synced = readEvents(primaryLog).find((e) => e.event === "sync.completed");
    assert.ok(synced && (activated.epoch as number) >= (synced.epoch as number));
    await kill(backup.proc, "SIGTERM");
  });
});
