/**
 * Real processes: a backup started with only its addresses and the key takes
 * the domain's configuration from its primary's stream (DOMAIN_CONFIG); one
 * started with a --domain-mib that contradicts it stops with a usage error
 * (exit code 2), having changed nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  getJson,
  inTempDir,
  killAll,
  readEvents,
  startBackup,
  startPrimary,
  waitFor,
} from "../helpers/procs.js";

after(killAll);

test("a backup with no domain flags adopts the primary's domain, syncs it exactly and stands by", async () => {
  await inTempDir("adopt", async (dir) => {
    const b = await startBackup(dir, "b", { domainMib: null, verify: true });
    const p = await startPrimary(dir, "p", `ws://127.0.0.1:${b.replicationPort}`, {
      domainMib: 12,
      diskMib: 6,
      verify: true,
      workload: "web",
      args: ["--interval-ms", "40", "--guest-mac", "02:00:00:00:00:42", "--guest-ip", "10.0.0.42"],
    });
    const bLog = join(dir, "b.jsonl");
    const pLog = join(dir, "p.jsonl");
    await waitFor("the primary to be protected", () =>
      readEvents(pLog).some((e) => e.event === "state.changed" && e.to === "protected"),
    );
    const adopted = readEvents(bLog).find((e) => e.event === "domain.config");
    assert.ok(adopted, "the backup logged the configuration it adopted");
    assert.deepEqual(
      [
        adopted.memoryMiB,
        adopted.diskMiB,
        adopted.intervalMs,
        adopted.guestMac,
        adopted.guestIp,
        adopted.workload,
      ],
      [12, 6, 40, "02:00:00:00:00:42", "10.0.0.42", "web"],
    );
    assert.equal(adopted.reshaped, true, "the default 64 MiB domain was resized to 12 MiB");
    // --verify: the backup's digest after each apply is the primary's at the pause.
    await waitFor(
      "a few applied checkpoints",
      () => readEvents(bLog).filter((e) => e.event === "checkpoint.applied").length >= 3,
    );
    const sent = new Map(
      readEvents(pLog)
        .filter((e) => e.event === "checkpoint.sent")
        .map((e) => [e.epoch, e.digest]),
    );
    const applied = readEvents(bLog).filter((e) => e.event === "checkpoint.applied");
    for (const e of applied) assert.equal(e.digest, sent.get(e.epoch), `epoch ${e.epoch}`);
    const st = (await getJson(`${b.control}/v1/status`)).body as {
      state: string;
      domain: { generationId: string; config: { memoryMiB: number; workload: string; guestIp: string } };
    };
    assert.equal(st.state, "standby");
    assert.deepEqual(
      [st.domain.config.memoryMiB, st.domain.config.workload, st.domain.config.guestIp],
      [12, "web", "10.0.0.42"],
    );
    // The VM Generation ID travels with the device block: the backup holds the primary's.
    const ps = (await getJson(`${p.control}/v1/status`)).body as { domain: { generationId: string } };
    assert.match(ps.domain.generationId, /^[0-9a-f]{32}$/);
    assert.notEqual(ps.domain.generationId, "0".repeat(32));
    assert.equal(st.domain.generationId, ps.domain.generationId);
    assert.equal(p.proc.exitCode, undefined);
  });
});

test("a backup whose --domain-mib contradicts its primary's domain exits with code 2 and changes nothing", async () => {
  await inTempDir("conflict", async (dir) => {
    const b = await startBackup(dir, "b", { domainMib: 16, diskMib: 6 });
    const p = await startPrimary(dir, "p", `ws://127.0.0.1:${b.replicationPort}`, {
      domainMib: 12,
      diskMib: 6,
    });
    const code = await b.proc.exited;
    assert.equal(code, 2);
    assert.match(b.proc.stderr, /--domain-mib is 16 MiB here, the primary's domain has 12 MiB/);
    const events = readEvents(join(dir, "b.jsonl"));
    const conflict = events.find((e) => e.event === "config.conflict");
    assert.deepEqual(conflict?.conflicts, [{ option: "--domain-mib", local: "16 MiB", stream: "12 MiB" }]);
    assert.equal(events.filter((e) => e.event === "sync.started").length, 0, "no sync began");
    // The primary was told its backup stopped: it runs on unprotected.
    await waitFor("the primary unprotected", () =>
      readEvents(join(dir, "p.jsonl")).some((e) => e.event === "peer.lost"),
    );
    const st = (await getJson(`${p.control}/v1/status`)).body as { state: string };
    assert.equal(st.state, "unprotected");
  });
});
