/**
 * Real processes (a vswitch, a protected pair, `remusd client` with 8 TCP
 * connections throughout): frozen daemons (SIGSTOP/SIGCONT), forged fencing
 * frames from a stranger, and a manual failover with the primary alive. In
 * every case the client sees no reset, no lost write, no wrong read, and its
 * final read-back finishes.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, test } from "node:test";
import { WebSocket } from "ws";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { GOODBYE_REASON, ROLE } from "../../src/protocol/constants.js";
import { FrameCodec } from "../../src/protocol/frame.js";
import { expectCleanClient, startClient } from "../helpers/client.js";
import {
  type DaemonInfo,
  getJson,
  inTempDir,
  kill,
  killAll,
  type Proc,
  readEvents,
  startPair,
  waitFor,
} from "../helpers/procs.js";

after(killAll);

const DOMAIN_MIB = 16;
const DISK_MIB = 8;

function replies(client: Proc): number {
  const lines = client.stderr.split("\n").filter((l) => l.includes('"client progress"'));
  const last = lines.at(-1);
  return last ? (JSON.parse(last) as { replies: number }).replies : 0;
}

/** Waits for the client to end and checks its verdict: nothing reset, lost or wrong, the read-back finished. */
async function expectClean(client: Proc, what: string): Promise<void> {
  await expectCleanClient(client, what);
}

/** Polls `d`'s status until `cond` holds (20 s at most). */
async function untilStatus(
  what: string,
  d: DaemonInfo,
  cond: (s: { role: string; state: string }) => boolean,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = await status(d);
    if (cond(s)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function status(d: DaemonInfo): Promise<{ role: string; state: string; generation: number }> {
  return (await getJson(`${d.control}/v1/status`)).body as {
    role: string;
    state: string;
    generation: number;
  };
}

/** SIGSTOP for `ms`, then SIGCONT (the wait is the fault itself, not a synchronisation). */
async function freeze(p: Proc, ms: number): Promise<void> {
  p.child.kill("SIGSTOP");
  await new Promise((r) => setTimeout(r, ms));
  p.child.kill("SIGCONT");
}

/** Sends `frames` on a new WebSocket to the replication port, then waits until the daemon closes it. */
function forge(port: number, frames: Buffer[]): Promise<void> {
  return new Promise<void>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    ws.on("open", () => {
      for (const f of frames) ws.send(f);
    });
    ws.on("close", () => resolve());
    ws.on("error", () => resolve());
  });
}

/** The two fencing frames a stranger (no key) could send: GOODBYE FENCED first, and a high-generation primary's HELLO. */
function fencingFrames(): Buffer[][] {
  const d = new Domain(geometryOfMiB(DOMAIN_MIB, DISK_MIB));
  const goodbye = new FrameCodec().encode({
    type: "goodbye",
    reason: GOODBYE_REASON.fenced,
    generation: 1000,
    epoch: 1_000_000,
    message: "you are fenced",
  });
  const hello = new FrameCodec().encode({
    type: "hello",
    role: ROLE.primary,
    flags: 0,
    generation: 1000,
    pageSize: 4096,
    pages: d.pages,
    diskBlockSize: 4096,
    diskBlocks: d.disk.blocks,
    vcpuSize: d.vcpu.regs.length,
    deviceSize: d.device.regs.length,
    committedEpoch: 1_000_000,
    nonce: randomBytes(32),
    nodeId: randomBytes(16),
    software: "intruder",
  });
  return [[goodbye], [hello]];
}

/** Forges both fencing frames against `d` and checks it is still the primary it was, and says why it refused. */
async function expectForgeriesRefused(d: DaemonInfo, log: string): Promise<void> {
  const before = await status(d);
  const refused = readEvents(log).filter((e) => e.event === "peer.refused").length;
  for (const frames of fencingFrames()) await forge(d.replicationPort as number, frames);
  await waitFor("both forgeries refused", () =>
    readEvents(log).filter((e) => e.event === "peer.refused").length >= refused + 2 ? true : undefined,
  );
  const after = await status(d);
  assert.equal(after.role, "primary");
  assert.equal(after.state, before.state);
  assert.equal(after.generation, before.generation);
  assert.equal((await getJson(`${d.control}/readyz`)).status, 200);
  assert.ok(!readEvents(log).some((e) => e.event === "fenced"), "not fenced");
}

/**
 * The frozen primary released nothing of what it held: it either read the
 * FENCED claim first (protected straight to fenced), or saw its link end
 * first and, doubting after its own long stall, held its output
 * (unprotected, "output held") until it met the new primary and was fenced.
 * It never judged its backup dead by its own clock and let output go.
 */
function expectNothingReleased(log: string, since: number): void {
  const changes = readEvents(log).filter(
    (e) => e.event === "state.changed" && Date.parse(String(e.ts)) >= since,
  );
  const why = JSON.stringify(changes);
  assert.equal(changes.at(-1)?.to, "fenced", why);
  for (const c of changes.slice(0, -1)) {
    assert.equal(c.to, "unprotected", why);
    assert.match(String(c.reason), /output held/, why);
  }
}

test("one pair under client load: forged fencing frames against the primary, the backup frozen 5 s, the primary frozen 1.25 s, forged frames against the new primary", async () => {
  await inTempDir("stalls", async (dir) => {
    const pair = await startPair(dir, {
      vswitch: true,
      verify: true,
      domainMib: DOMAIN_MIB,
      diskMib: DISK_MIB,
      primary: { args: ["--listen", "127.0.0.1:0"] },
    });
    const { primary, backup, primaryLog: pLog, backupLog: bLog } = pair;
    const client = startClient(pair.switchAddr as string, 18, 11);
    await waitFor("client replies", () => replies(client) > 100);

    // 1. A stranger's GOODBYE FENCED and high-generation HELLO change nothing.
    await expectForgeriesRefused(primary, pLog);

    // 2. The backup frozen 5 s: the primary drops it and serves on; the backup wakes, reads
    // CONTINUING, does not activate from its stale image, and is resynced.
    const protectedBefore = readEvents(pLog).filter(
      (e) => e.event === "state.changed" && e.to === "protected",
    ).length;
    await freeze(backup.proc, 5000);
    await waitFor("protected again", () =>
      readEvents(pLog).filter((e) => e.event === "state.changed" && e.to === "protected").length >
      protectedBefore
        ? true
        : undefined,
    );
    assert.ok(
      !readEvents(bLog).some((e) => e.event === "failover.activated"),
      "the frozen backup did not activate",
    );
    assert.ok(
      readEvents(pLog).some((e) => e.event === "peer.lost" && /heartbeat timeout/.test(String(e.reason))),
    );
    assert.equal((await status(backup)).role, "backup");

    // 3. The primary frozen 1.25 s (past the 1 s heartbeat timeout): the backup takes over; the old
    // primary wakes, reads the FENCED claim before it acts on its own timeout, and stops.
    const frozenAt = Date.now(); // the daemons stamp their log with the same clock
    await freeze(primary.proc, 1250);
    await waitFor("activation", () => readEvents(bLog).find((e) => e.event === "failover.activated"));
    await untilStatus("the old primary fenced", primary, (s) => s.state === "fenced");
    const fenced = readEvents(pLog).find((e) => e.event === "fenced");
    assert.equal(fenced?.peerGeneration, 2);
    expectNothingReleased(pLog, frozenAt);

    // 4. The new primary (the activated backup, listening) refuses the same forgeries.
    await expectForgeriesRefused(backup, bLog);
    await expectClean(client, "after the stalls");
    await kill(backup.proc, "SIGTERM");
  });
});

test("the primary frozen 3 s under client load: the backup takes over, the old primary is fenced, nothing of it released", async () => {
  await inTempDir("stall3", async (dir) => {
    const pair = await startPair(dir, {
      vswitch: true,
      verify: true,
      domainMib: DOMAIN_MIB,
      diskMib: DISK_MIB,
    });
    const { primary, backupLog: bLog, primaryLog: pLog } = pair;
    const client = startClient(pair.switchAddr as string, 9, 12);
    await waitFor("client replies", () => replies(client) > 100);
    const frozenAt = Date.now();
    await freeze(primary.proc, 3000);
    await untilStatus("the old primary fenced", primary, (s) => s.state === "fenced");
    expectNothingReleased(pLog, frozenAt);
    // The frozen daemon measured its own stall.
    const metrics = String((await getJson(`${primary.control}/metrics`)).body);
    const sum = Number(/^remusd_loop_stall_seconds_sum (\S+)$/m.exec(metrics)?.[1]);
    assert.ok(sum >= 2.9, `remusd_loop_stall_seconds_sum ${sum}`);
    const act = readEvents(bLog).find((e) => e.event === "failover.activated");
    assert.equal(act?.reason, "heartbeat_timeout");
    // The backup resumed exactly what the primary checkpointed, logged before its END left.
    const sent = readEvents(pLog).find((e) => e.event === "checkpoint.sent" && e.epoch === act?.epoch);
    assert.equal(sent?.digest, act?.digest);
    await expectClean(client, "after a 3 s freeze of the primary");
  });
});

test("POST /v1/failover with the primary alive under client load is a clean handover, never a rollback", async () => {
  await inTempDir("handover", async (dir) => {
    const pair = await startPair(dir, {
      vswitch: true,
      verify: true,
      domainMib: DOMAIN_MIB,
      diskMib: DISK_MIB,
      backup: { args: ["--unsafe-open-api"] },
    });
    const { primary, backup, backupLog: bLog, primaryLog: pLog } = pair;
    const client = startClient(pair.switchAddr as string, 8, 13);
    await waitFor("client replies", () => replies(client) > 100);
    const r = await getJson(`${backup.control}/v1/failover`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { activated: false, pending: true, epoch: null, digest: null });
    await untilStatus("the handover", backup, (s) => s.role === "primary");
    const act = readEvents(bLog).find((e) => e.event === "failover.activated");
    assert.equal(act?.reason, "planned");
    // It resumed the primary's final checkpoint, and the primary stopped (not fenced: nothing rolled back).
    const final = readEvents(pLog).find((e) => e.event === "checkpoint.sent" && e.final === true);
    assert.equal(act?.epoch, final?.epoch);
    assert.equal(act?.digest, final?.digest);
    assert.equal((await status(primary)).state, "stopped");
    await expectClean(client, "after the handover");
  });
});
