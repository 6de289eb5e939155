import assert from "node:assert/strict";
import { after, test } from "node:test";
import {
  type DaemonArgOptions,
  getJson,
  inTempDir,
  kill,
  killAll,
  logLine,
  readEvents,
  startPair,
  startPrimary,
  waitFor,
} from "../helpers/procs.js";

after(killAll);

// A failure detector of 1 s, as in the other process tests. A shorter one (it was 400 ms) takes
// a primary that the shared machine starves of CPU while it syncs and starts its API for dead:
// the backup then rightly activates, and the pair never gets to the planned stop under test.
const HEARTBEAT_MS = 100;
const MISSES = 10;
const OPTS: DaemonArgOptions = { heartbeatMs: HEARTBEAT_MS, heartbeatMisses: MISSES, verify: true };

/** A pair under memory and disk load, five checkpoints in. */
const loadedPair = (dir: string) =>
  startPair(dir, { ...OPTS, workload: "dirty:rate=1000+disk:rate=16", ready: { commits: 5 } });

/**
 * Observes the backup for two heartbeat timeouts: long enough for a backup that took
 * the stop for a failure to activate. Polls its status and fails as soon as it did.
 */
async function staysBackup(control: string): Promise<{ role: string; state: string }> {
  const until = Date.now() + 2 * HEARTBEAT_MS * MISSES;
  let st: { role: string; state: string };
  do {
    st = (await getJson(`${control}/v1/status`)).body as { role: string; state: string };
    assert.equal(st.role, "backup", "the backup activated after a planned stop");
    await new Promise((r) => setTimeout(r, 10));
  } while (Date.now() < until);
  return st;
}

test("SIGTERM on the primary: final checkpoint, planned GOODBYE, the backup does not activate, exit 0", async () => {
  await inTempDir("shutdown-primary", async (dir) => {
    const { backup, primary, primaryLog: pLog, backupLog: bLog } = await loadedPair(dir);
    const code = await kill(primary.proc, "SIGTERM");
    assert.equal(code, 0, primary.proc.stderr.slice(-2000));
    const pEvents = readEvents(pLog);
    // The last checkpoint is marked final and was acknowledged before the link closed.
    const final = pEvents.find((e) => e.event === "checkpoint.sent" && e.final === true);
    assert.ok(final, "no final checkpoint in the primary's event log");
    assert.ok(pEvents.some((e) => e.event === "checkpoint.committed" && e.epoch === final.epoch));
    assert.ok(pEvents.some((e) => e.event === "peer.lost" && e.planned === true));
    assert.equal(pEvents.at(-1)?.event, "daemon.stopped", "the event log ends with daemon.stopped (flushed)");
    assert.ok(logLine(primary.proc, "shutting down"));
    assert.ok(logLine(primary.proc, "stopped"));

    await waitFor("the backup to log the planned stop", () =>
      readEvents(bLog).find((e) => e.event === "peer.lost" && e.planned === true),
    );
    const st = await staysBackup(backup.control);
    assert.equal(st.state, "waiting");
    const bEvents = readEvents(bLog);
    assert.ok(!bEvents.some((e) => e.event === "failover.activated"));
    // The backup holds exactly the final state the primary checkpointed.
    const applied = bEvents.find((e) => e.event === "checkpoint.applied" && e.epoch === final.epoch);
    assert.equal(applied?.digest, final.digest);

    assert.equal(await kill(backup.proc, "SIGINT"), 0, backup.proc.stderr.slice(-2000));
    assert.equal(readEvents(bLog).at(-1)?.event, "daemon.stopped");
  });
});

test("SIGTERM on the backup: the primary logs a planned peer loss and carries on unprotected", async () => {
  await inTempDir("shutdown-backup", async (dir) => {
    const { backup, primary, primaryLog: pLog } = await loadedPair(dir);
    assert.equal(await kill(backup.proc, "SIGTERM"), 0, backup.proc.stderr.slice(-2000));
    await waitFor("the primary to lose its backup", () =>
      readEvents(pLog).find((e) => e.event === "peer.lost" && e.planned === true),
    );
    await waitFor("unprotected", () =>
      readEvents(pLog).find((e) => e.event === "state.changed" && e.to === "unprotected"),
    );
    const st = (await getJson(`${primary.control}/v1/status`)).body as { role: string; state: string };
    assert.equal(st.role, "primary");
    assert.equal(st.state, "unprotected");
    assert.equal(primary.proc.exitCode, undefined, "the primary keeps running");
  });
});

test("a second signal during the shutdown exits at once (exit 1)", async () => {
  await inTempDir("shutdown-twice", async (dir) => {
    const primary = await startPrimary(dir, "primary", "ws://127.0.0.1:1", OPTS);
    // Two different signals are never merged by the kernel; the stop takes at least the GOODBYE grace.
    primary.proc.child.kill("SIGTERM");
    primary.proc.child.kill("SIGINT");
    assert.equal(await primary.proc.exited, 1);
    await waitFor("the log line", () => logLine(primary.proc, "second signal: exiting at once"));
  });
});
