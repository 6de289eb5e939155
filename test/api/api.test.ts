import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Value } from "@sinclair/typebox/value";
import type { FastifyInstance } from "fastify";
import { Config, Status } from "../../src/api/schemas.js";
import { buildApi } from "../../src/api/server.js";
import { ROUTES } from "../../src/contract.js";
import type { ERROR_CODES } from "../../src/errors.js";
import { cleanup, tempDir, waitFor } from "../helpers/procs.js";
import { type Pair, startPair } from "./harness.js";

const TOKEN = "api-test-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };

let dir: string;
let pair: Pair;
let p: FastifyInstance;
let b: FastifyInstance;

before(async () => {
  dir = tempDir("api");
  pair = await startPair(dir);
  p = await buildApi(pair.primary, { auth: { token: TOKEN, mode: "mutating", unsafeOpen: false } });
  b = await buildApi(pair.backup, { auth: { token: TOKEN, mode: "mutating", unsafeOpen: false } });
});

after(async () => {
  await p?.close();
  await b?.close();
  await pair?.stop();
  cleanup(dir);
});

function json(r: { body: string }): Record<string, unknown> {
  return JSON.parse(r.body) as Record<string, unknown>;
}

function assertError(
  r: { statusCode: number; body: string },
  status: number,
  code: keyof typeof ERROR_CODES,
): void {
  assert.equal(r.statusCode, status, r.body);
  const body = json(r);
  assert.deepEqual(Object.keys(body).sort(), ["code", "message"]);
  assert.equal(body.code, code);
  assert.equal(typeof body.message, "string");
  assert.ok((body.message as string).length > 0);
}

describe("routes and docs", () => {
  test("every route of the contract is served", () => {
    for (const r of ROUTES) assert.ok(p.hasRoute({ method: r.method, url: r.url }), `${r.method} ${r.url}`);
  });

  test("/docs serves the UI and /docs/json an OpenAPI document generated from the route schemas", async () => {
    const ui = await p.inject({ method: "GET", url: "/docs" });
    assert.ok(ui.statusCode === 200 || ui.statusCode === 302, String(ui.statusCode));
    const r = await p.inject({ method: "GET", url: "/docs/json" });
    assert.equal(r.statusCode, 200);
    const doc = json(r) as {
      openapi: string;
      paths: Record<
        string,
        Record<string, { security?: unknown; responses: Record<string, unknown>; requestBody?: unknown }>
      >;
    };
    assert.match(doc.openapi, /^3\./);
    for (const route of ROUTES) {
      if (route.url === "/docs") continue;
      const op = doc.paths[route.url]?.[route.method.toLowerCase()];
      assert.ok(op, `${route.method} ${route.url} is missing from the OpenAPI document`);
      assert.ok(op.responses["200"], `${route.url} has no 200 reply schema`);
      assert.ok(op.responses["4XX"] ?? op.responses["4xx"], `${route.url} has no error reply schema`);
      assert.equal(op.security !== undefined, route.mutating, `${route.url}: security matches 'mutating'`);
    }
    assert.ok(doc.paths["/v1/config"]?.patch?.requestBody, "PATCH /v1/config documents its body");
  });
});

describe("status", () => {
  test("a protected primary reports the full status", async () => {
    await waitFor("a committed checkpoint", () => pair.primary.lastCheckpoint);
    const r = await p.inject({ method: "GET", url: "/v1/status" });
    assert.equal(r.statusCode, 200);
    const s = json(r);
    assert.ok(Value.Check(Status, s), JSON.stringify([...Value.Errors(Status, s)].slice(0, 3)));
    const st = s as Status;
    assert.equal(st.role, "primary");
    assert.equal(st.state, "protected");
    assert.equal(st.peer.connected, true);
    assert.ok(st.epoch.committed >= 1);
    assert.ok(st.epoch.current > st.epoch.committed);
    assert.ok(
      st.lastCheckpoint && st.lastCheckpoint.pauseMs !== null && st.lastCheckpoint.wireBytes !== null,
    );
    assert.equal(st.domain.pages, pair.primary.domain.pages);
    assert.deepEqual(st.netbuf, {
      packets: 0,
      bytes: 0,
      oldestAgeMs: 0,
      outputCommit: true,
      holding: true,
      attached: false,
    });
    assert.equal(st.lastRoleChange.to, "primary");
    assert.equal(st.lastRoleChange.reason, "started");
  });

  test("a standby backup reports the checkpoints it applied", async () => {
    await waitFor("an applied checkpoint", () => pair.backup.lastCheckpoint);
    const st = json(await b.inject({ method: "GET", url: "/v1/status" })) as Status;
    assert.ok(Value.Check(Status, st));
    assert.equal(st.role, "backup");
    assert.equal(st.state, "standby");
    assert.equal(st.peer.connected, true);
    assert.equal(st.domain.imageValid, true);
    assert.equal(st.domain.running, false);
    assert.ok(st.lastCheckpoint && st.lastCheckpoint.applyMs !== null && st.lastCheckpoint.pauseMs === null);
  });

  test("probes: /healthz, and /readyz 200 for a running primary and a standby backup", async () => {
    assert.deepEqual(json(await p.inject({ method: "GET", url: "/healthz" })), { ok: true });
    const rp = await p.inject({ method: "GET", url: "/readyz" });
    assert.equal(rp.statusCode, 200);
    assert.deepEqual(json(rp), { ready: true, role: "primary", state: "protected" });
    assert.equal((await b.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
  });

  test("digest, process table and counter check", async () => {
    const d = json(await b.inject({ method: "GET", url: "/v1/domain/digest" }));
    assert.match(d.digest as string, /^[0-9a-f]+$/);
    assert.equal(d.live, false);
    const ps = json(await p.inject({ method: "GET", url: "/v1/domain/processes" })) as {
      processes: { name: string }[];
    };
    assert.ok(ps.processes.some((x) => x.name === "counter"));
    const c = json(await p.inject({ method: "GET", url: "/v1/domain/counter" }));
    assert.equal(c.ok, true);
  });
});

describe("errors", () => {
  test("unknown route: 404 REMUSD_ERR_NOT_FOUND", async () => {
    assertError(await p.inject({ method: "GET", url: "/v1/nope" }), 404, "REMUSD_ERR_NOT_FOUND");
    assertError(
      await p.inject({ method: "DELETE", url: "/v1/status", headers: auth }),
      404,
      "REMUSD_ERR_NOT_FOUND",
    );
  });

  test("validation errors: 400 REMUSD_ERR_BAD_REQUEST with the offending field", async () => {
    const patch = (body: unknown) =>
      p.inject({
        method: "PATCH",
        url: "/v1/config",
        headers: auth,
        payload: body as Record<string, unknown>,
      });
    const r = await patch({ intervalMs: 0 });
    assertError(r, 400, "REMUSD_ERR_BAD_REQUEST");
    assert.match(json(r).message as string, /intervalMs/);
    assertError(await patch({ intervalMs: 60_001 }), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(await patch({ heartbeat: { misses: 1 } }), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(await patch({ intervalMS: 30 }), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(await patch({}), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(await patch({ compress: "maybe" }), 400, "REMUSD_ERR_BAD_REQUEST");
    // Bodies are taken as typed: a number in a string, or a boolean in a string, is no number or boolean.
    assertError(await patch({ intervalMs: "30" }), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(await patch({ heartbeat: { intervalMs: "50" } }), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(await patch({ compress: "false" }), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(await patch({ compress: 0 }), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(await patch({ peer: 7 }), 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(
      await b.inject({ method: "POST", url: "/v1/failover", headers: auth, payload: { planned: "true" } }),
      400,
      "REMUSD_ERR_BAD_REQUEST",
    );
    assertError(
      await b.inject({ method: "POST", url: "/v1/failover", headers: auth, payload: { planned: 1 } }),
      400,
      "REMUSD_ERR_BAD_REQUEST",
    );
    const bad = await p.inject({
      method: "PATCH",
      url: "/v1/config",
      headers: { ...auth, "content-type": "application/json" },
      payload: "{not json",
    });
    assertError(bad, 400, "REMUSD_ERR_BAD_REQUEST");
    assertError(
      await p.inject({ method: "POST", url: "/v1/checkpoint?wait=perhaps", headers: auth }),
      400,
      "REMUSD_ERR_BAD_REQUEST",
    );
    // Nothing changed.
    assert.equal(pair.primary.runtime.intervalMs, 25);
    assert.equal(pair.primary.runtime.compress, true);
    assert.equal(pair.backup.role, "backup");
  });

  test("wrong role: 409 REMUSD_ERR_WRONG_ROLE", async () => {
    assertError(
      await p.inject({ method: "POST", url: "/v1/failover", headers: auth, payload: {} }),
      409,
      "REMUSD_ERR_WRONG_ROLE",
    );
    assertError(
      await b.inject({ method: "POST", url: "/v1/checkpoint", headers: auth }),
      409,
      "REMUSD_ERR_WRONG_ROLE",
    );
  });
});

describe("checkpoint and runtime configuration", () => {
  test("POST /v1/checkpoint?wait=true returns once the backup acknowledged the epoch", async () => {
    const r = await p.inject({ method: "POST", url: "/v1/checkpoint?wait=true", headers: auth });
    assert.equal(r.statusCode, 200, r.body);
    const c = json(r) as { epoch: number; committed: boolean };
    assert.equal(c.committed, true);
    assert.ok((pair.primary.primary?.committed ?? 0) >= c.epoch);
  });

  test("PATCH /v1/config on the primary: interval and compression from the next epoch, heartbeat at once", async () => {
    const m = pair.primary.primary;
    assert.ok(m);
    const r = await p.inject({
      method: "PATCH",
      url: "/v1/config",
      headers: auth,
      payload: { intervalMs: 40, compress: false, heartbeat: { intervalMs: 60 } },
    });
    assert.equal(r.statusCode, 200, r.body);
    const cfg = json(r) as Config;
    assert.ok(Value.Check(Config, cfg));
    assert.equal(cfg.intervalMs, 40);
    assert.equal(cfg.compress, false);
    assert.deepEqual(cfg.heartbeat, { intervalMs: 60, misses: 50 });
    assert.equal(m.config.heartbeat.intervalMs, 60);
    const from = m.epoch;
    await waitFor("the next epoch", () => m.epoch > from);
    assert.equal(m.config.intervalMs, 40);
    assert.equal(m.config.compress, false);
    const now = json(await p.inject({ method: "GET", url: "/v1/config" })) as Config;
    assert.equal(now.pending, false);
    assert.equal((json(await p.inject({ method: "GET", url: "/v1/status" })) as Status).intervalMs, 40);
  });

  test("PATCH /v1/config on a backup is kept and applies when it becomes primary (failover route)", async () => {
    const r = await b.inject({
      method: "PATCH",
      url: "/v1/config",
      headers: auth,
      payload: { intervalMs: 33 },
    });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal((json(r) as Config).pending, false);
    const f = await b.inject({
      method: "POST",
      url: "/v1/failover",
      headers: auth,
      payload: { planned: false },
    });
    assert.equal(f.statusCode, 200, f.body);
    const body = json(f);
    // The primary is alive: an unplanned failover is a clean handover (final checkpoint, then activation).
    assert.equal(body.activated, false);
    assert.equal(body.pending, true);
    await waitFor("the handover", () => pair.backup.role === "primary");
    assert.equal(pair.backup.primary?.config.intervalMs, 33);
    const st = json(await b.inject({ method: "GET", url: "/v1/status" })) as Status;
    assert.equal(st.role, "primary");
    assert.equal(st.state, "unprotected");
    assert.equal(st.lastRoleChange.from, "backup");
    assert.match(st.lastRoleChange.reason, /planned/);
    assert.equal(st.generation, 2);
    assert.equal(pair.primary.primary?.state, "stopped");
  });
});
