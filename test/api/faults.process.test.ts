/**
 * The fault-injection routes (POST /v1/faults/crash|stall|link-cut) on real
 * daemons: refused without --allow-fault-injection (403) and without the
 * token (401), strict about their bodies (400, no coercion), and real with
 * the flag: a link cut makes the backup take over, a stall leaves the daemon
 * alive, a crash ends the process with SIGKILL.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { getJson, inTempDir, killAll, readEvents, startPair, waitFor } from "../helpers/procs.js";

after(killAll);

const TOKEN = "fault-test-token-0123456789";
const post = (control: string, path: string, body?: unknown, token: string | null = TOKEN) =>
  getJson(`${control}${path}`, {
    method: "POST",
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });

test("fault routes are refused without --allow-fault-injection, and need the token", async () => {
  await inTempDir("faults-off", async (dir) => {
    const pair = await startPair(dir, { token: TOKEN, workload: "idle" });
    for (const [path, body] of [
      ["/v1/faults/crash", undefined],
      ["/v1/faults/stall", { ms: 100 }],
      ["/v1/faults/link-cut", { ms: 100 }],
    ] as const) {
      const r = await post(pair.primary.control, path, body);
      assert.equal(r.status, 403, path);
      assert.equal((r.body as { code: string }).code, "REMUSD_ERR_FORBIDDEN");
      assert.match((r.body as { message: string }).message, /--allow-fault-injection/);
      assert.equal(
        (await post(pair.primary.control, path, body, null)).status,
        401,
        `${path} without a token`,
      );
    }
    // Still alive and protected: nothing happened.
    const st = await getJson(`${pair.primary.control}/v1/status`);
    assert.equal((st.body as { state: string }).state, "protected");
    assert.equal(readEvents(pair.primaryLog).filter((e) => e.event === "fault.injected").length, 0);
  });
});

test("with --allow-fault-injection: strict bodies, then a link cut, a stall and a crash", async () => {
  await inTempDir("faults-on", async (dir) => {
    const flag = { args: ["--allow-fault-injection"] };
    const pair = await startPair(dir, { token: TOKEN, workload: "idle", primary: flag, backup: flag });
    const p = pair.primary.control;
    for (const body of [{ ms: "500" }, { ms: 1.5 }, {}, { ms: 500, extra: 1 }, { ms: 0 }, { ms: 60_001 }]) {
      const r = await post(p, "/v1/faults/stall", body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal((r.body as { code: string }).code, "REMUSD_ERR_BAD_REQUEST");
    }
    assert.equal((await post(p, "/v1/faults/link-cut", undefined)).status, 400, "link-cut needs {ms}");
    assert.equal((await post(p, "/v1/faults/stall", { ms: 100 }, null)).status, 401);
    assert.equal(readEvents(pair.primaryLog).filter((e) => e.event === "fault.injected").length, 0);

    // A link cut: both sides lose the link at once; the backup takes over.
    const cut = await post(p, "/v1/faults/link-cut", { ms: 2000 });
    assert.equal(cut.status, 200);
    assert.equal((cut.body as { fault: string; ms: number }).fault, "link-cut");
    await waitFor("the backup to activate", () =>
      readEvents(pair.backupLog).find((e) => e.event === "failover.activated" && e.reason === "peer_lost"),
    );
    const pev = readEvents(pair.primaryLog);
    const fi = pev.findIndex((e) => e.event === "fault.injected" && e.fault === "link-cut" && e.ms === 2000);
    assert.ok(fi >= 0);
    assert.ok(
      pev.slice(fi).some((e) => e.event === "peer.lost"),
      "the primary lost its backup",
    );

    // A stall of the new primary: it answers again afterwards.
    const b = pair.backup.control;
    const stall = await post(b, "/v1/faults/stall", { ms: 300 });
    assert.equal(stall.status, 200);
    assert.equal((await getJson(`${b}/healthz`)).status, 200);
    assert.ok(readEvents(pair.backupLog).some((e) => e.event === "fault.injected" && e.fault === "stall"));

    // A crash: the reply comes back, then the process dies of SIGKILL.
    const crash = await post(p, "/v1/faults/crash");
    assert.equal(crash.status, 200);
    assert.equal((crash.body as { pid: number }).pid, pair.primary.proc.child.pid);
    await pair.primary.proc.exited;
    assert.equal(pair.primary.proc.child.signalCode, "SIGKILL");
    assert.ok(readEvents(pair.primaryLog).some((e) => e.event === "fault.injected" && e.fault === "crash"));
  });
});
