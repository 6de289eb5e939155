import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, test } from "node:test";
import { WebSocket } from "ws";
import {
  type DaemonArgOptions,
  getJson,
  inTempDir,
  kill,
  killAll,
  readEvents,
  startBackup,
  startPair,
  startPrimary,
  waitFor,
} from "../helpers/procs.js";

after(killAll);

const OPTS: DaemonArgOptions = { verify: true, domainMib: 16, diskMib: 8 };

test("SIGKILL of the primary: the backup activates from the last committed epoch with the primary's digest", async () => {
  await inTempDir("failover", async (dir) => {
    const {
      backup,
      primary,
      primaryLog: pLog,
      backupLog: bLog,
    } = await startPair(dir, {
      ...OPTS,
      workload: "dirty:rate=3000,hot=0.2,pattern=zipf+disk:rate=64",
      primary: { args: ["--interval-ms", "20"] },
      ready: { commits: 20 },
    });
    await kill(primary.proc, "SIGKILL");
    const activated = await waitFor("failover.activated", () =>
      readEvents(bLog).find((e) => e.event === "failover.activated"),
    );
    const pEvents = readEvents(pLog);
    const lastCommitted = Math.max(
      ...pEvents.filter((e) => e.event === "checkpoint.committed").map((e) => e.epoch),
    );
    // The backup resumed from an epoch at least as new as the last one the primary saw committed...
    assert.ok(activated.epoch >= lastCommitted, `activated ${activated.epoch} < committed ${lastCommitted}`);
    // ...and its state is exactly the primary's state at that epoch.
    const sent = pEvents.find((e) => e.event === "checkpoint.sent" && e.epoch === activated.epoch);
    assert.ok(sent, `the primary's log has no checkpoint.sent for epoch ${activated.epoch}`);
    assert.equal(activated.digest, sent.digest);
    const applied = readEvents(bLog).find(
      (e) => e.event === "checkpoint.applied" && e.epoch === activated.epoch,
    );
    assert.equal(applied?.digest, sent.digest);
    // The daemon is now the primary, unprotected, and reports it.
    const status = await getJson(`${backup.control}/v1/status`);
    const st = status.body as { role: string; state: string; generation: number };
    assert.equal(st.role, "primary");
    assert.equal(st.state, "unprotected");
    assert.equal(st.generation, 2);
    assert.ok(readEvents(bLog).some((e) => e.event === "role.changed" && e.to === "primary"));
    // The counter's file on the activated domain has no gap and no repeat: read it through the API.
    const ps = (await getJson(`${backup.control}/v1/domain/processes`)).body as {
      processes: { name: string; ticks: number }[];
    };
    assert.ok(ps.processes.some((p) => p.name === "counter"));
    const check = await getJson(`${backup.control}/v1/domain/counter`);
    assert.equal(check.status, 200, JSON.stringify(check.body));
    const c = check.body as { ok: boolean; counter: number; lines: number; error?: string };
    assert.ok(c.ok, c.error);
    assert.ok(c.counter > 0 && c.lines === c.counter);
    await kill(backup.proc, "SIGTERM");
  });
});

test("SIGKILL of the backup: the primary goes unprotected, a new backup resyncs it and it is protected again", async () => {
  await inTempDir("backup-loss", async (dir) => {
    const {
      backup: backup1,
      primary,
      primaryLog: pLog,
    } = await startPair(dir, { ...OPTS, backup: { name: "backup1" } });
    const port = backup1.replicationPort as number;
    const status = async () =>
      (await getJson(`${primary.control}/v1/status`)).body as { state: string; peer: { connected: boolean } };
    await kill(backup1.proc, "SIGKILL");
    await waitFor("primary unprotected", () =>
      readEvents(pLog).some((e) => e.event === "state.changed" && e.to === "unprotected"),
    );
    assert.equal((await status()).state, "unprotected");
    assert.ok(readEvents(pLog).some((e) => e.event === "peer.lost" && e.planned === false));
    // A new backup on the same address: the primary reconnects (with backoff) and resyncs.
    const before = readEvents(pLog).filter((e) => e.event === "state.changed" && e.to === "protected").length;
    await startBackup(dir, "backup2", OPTS, `127.0.0.1:${port}`);
    await waitFor(
      "protected again",
      () =>
        readEvents(pLog).filter((e) => e.event === "state.changed" && e.to === "protected").length > before,
    );
    assert.equal((await status()).state, "protected");
    assert.ok(readEvents(pLog).some((e) => e.event === "sync.started" && e.mode === "full"));
  });
});

test("real sockets: strangers on the replication port (raw TCP garbage, a WebSocket with junk frames, a wrong key) change nothing", async () => {
  await inTempDir("strangers", async (dir) => {
    // Protected: the backup applied the sync and acknowledged it, so it is in standby.
    const { backup, backupLog: bLog } = await startPair(dir, { ...OPTS, workload: "idle" });
    const port = backup.replicationPort as number;
    // 1. Raw TCP garbage (not even HTTP).
    await new Promise<void>((resolve) => {
      const s = connect(port, "127.0.0.1", () => s.write(Buffer.alloc(300, 0x41)));
      s.on("close", () => resolve());
      s.on("error", () => resolve());
      setTimeout(() => s.destroy(), 2000).unref();
    });
    // 2. A WebSocket that sends junk binary and text frames.
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`);
      ws.on("open", () => {
        ws.send(Buffer.from("not a replication frame at all"));
        ws.send("text is not allowed either");
      });
      ws.on("close", () => resolve());
      ws.on("error", () => resolve());
    });
    // 3. A primary with the wrong key.
    const intruder = await startPrimary(dir, "intruder", `ws://127.0.0.1:${port}`, {
      ...OPTS,
      key: "a-completely-different-key-987654",
      workload: "idle",
    });
    await waitFor(
      "the intruder refused",
      () => readEvents(bLog).filter((e) => e.event === "peer.refused").length >= 3,
    );
    await kill(intruder.proc, "SIGKILL");
    const committed = async () =>
      ((await getJson(`${backup.control}/v1/status`)).body as { epoch: { committed: number } }).epoch
        .committed;
    const before = await committed();
    await waitFor("the real pair goes on", async () => (await committed()) > before + 5);
    const st = (await getJson(`${backup.control}/v1/status`)).body as { state: string; role: string };
    assert.equal(st.role, "backup");
    assert.equal(st.state, "standby");
    assert.ok(!readEvents(bLog).some((e) => e.event === "peer.lost" || e.event === "failover.activated"));
    const reasons = readEvents(bLog)
      .filter((e) => e.event === "peer.refused")
      .map((e) => String(e.reason));
    assert.ok(
      reasons.some((r) => /auth/i.test(r)),
      reasons.join(" | "),
    );
  });
});
