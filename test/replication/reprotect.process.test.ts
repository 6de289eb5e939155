import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  type DaemonArgOptions,
  getJson,
  inTempDir,
  kill,
  killAll,
  readEvents,
  startBackup,
  startPair,
  waitFor,
} from "../helpers/procs.js";

after(killAll);

test("after a failover, the activated primary is re-protected by a new backup (PATCH /v1/config peer)", async () => {
  await inTempDir("reprotect", async (dir) => {
    const opts: DaemonArgOptions = { token: "reprotect-token-0123456789", domainMib: 16, verify: true };
    const {
      backup: b1,
      primary: p,
      backupLog: b1Log,
    } = await startPair(dir, { ...opts, backup: { name: "b1" }, primary: { name: "p" } });
    await kill(p.proc, "SIGKILL");
    await waitFor("b1 activated", () => readEvents(b1Log).some((e) => e.event === "failover.activated"));
    const b2 = await startBackup(dir, "b2", opts);
    const auth = { authorization: "Bearer reprotect-token-0123456789", "content-type": "application/json" };
    // Without the token the change is refused.
    const refused = await getJson(`${b1.control}/v1/config`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ peer: `ws://127.0.0.1:${b2.replicationPort}` }),
    });
    assert.equal(refused.status, 401);
    const bad = await getJson(`${b1.control}/v1/config`, {
      method: "PATCH",
      headers: auth,
      body: JSON.stringify({ peer: "http://nope" }),
    });
    assert.equal(bad.status, 400);
    const ok = await getJson(`${b1.control}/v1/config`, {
      method: "PATCH",
      headers: auth,
      body: JSON.stringify({ peer: `ws://127.0.0.1:${b2.replicationPort}` }),
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal((ok.body as { peer: string }).peer, `ws://127.0.0.1:${b2.replicationPort}`);
    await waitFor("b1 protected again", () =>
      readEvents(b1Log).some((e) => e.event === "state.changed" && e.to === "protected"),
    );
    const st = (await getJson(`${b1.control}/v1/status`)).body as {
      role: string;
      state: string;
      generation: number;
    };
    assert.deepEqual([st.role, st.state, st.generation], ["primary", "protected", 2]);
    // The new backup holds generation 2's image and applies its checkpoints.
    await waitFor(
      "b2 applies",
      () => readEvents(join(dir, "b2.jsonl")).filter((e) => e.event === "checkpoint.applied").length > 3,
    );
  });
});
