import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { bearerOf, tokenMatches } from "../../src/api/auth.js";
import { buildApi } from "../../src/api/server.js";
import type { Daemon } from "../../src/daemon/daemon.js";
import { isRemusError } from "../../src/errors.js";
import { cleanup, tempDir } from "../helpers/procs.js";
import { daemonOf, settingsOf } from "./harness.js";

const TOKEN = "auth-test-token-0123456789";

let dir: string;
let d: Daemon;

before(async () => {
  dir = tempDir("auth");
  d = daemonOf("backup", [
    "--insecure",
    "--listen",
    "127.0.0.1:0",
    "--data-dir",
    join(dir, "b"),
    "--domain-mib",
    "2",
    "--disk-mib",
    "1",
  ]);
  await d.start();
});

after(async () => {
  await d?.stop(500);
  cleanup(dir);
});

const api = (token: string | undefined, mode: "mutating" | "all", unsafeOpen = false) =>
  buildApi(d, { auth: { token, mode, unsafeOpen } });

test("tokens compare in constant time over equal-length digests; Bearer parsing", () => {
  assert.equal(tokenMatches(TOKEN, TOKEN), true);
  assert.equal(tokenMatches(TOKEN, `${TOKEN}x`), false);
  assert.equal(tokenMatches(TOKEN, ""), false);
  assert.equal(bearerOf(`Bearer ${TOKEN}`), TOKEN);
  assert.equal(bearerOf(`bearer   ${TOKEN}`), TOKEN);
  assert.equal(bearerOf(`Basic ${TOKEN}`), undefined);
  assert.equal(bearerOf("Bearer"), undefined);
  assert.equal(bearerOf(undefined), undefined);
});

test("no token configured: reads are open, mutating routes are refused with 403", async () => {
  const app = await api(undefined, "mutating");
  try {
    assert.equal((await app.inject({ method: "GET", url: "/v1/status" })).statusCode, 200);
    assert.equal((await app.inject({ method: "GET", url: "/metrics" })).statusCode, 200);
    for (const r of [
      { method: "POST", url: "/v1/failover", payload: {} },
      { method: "POST", url: "/v1/checkpoint" },
      { method: "PATCH", url: "/v1/config", payload: { intervalMs: 30 } },
    ] as const) {
      const res = await app.inject(r);
      assert.equal(res.statusCode, 403, `${r.url}: ${res.body}`);
      assert.equal(res.json().code, "REMUSD_ERR_FORBIDDEN");
      assert.match(res.json().message, /--api-token-file/);
      assert.equal(res.headers["www-authenticate"], undefined);
    }
    // A token sent anyway changes nothing: there is none to match.
    const res = await app.inject({
      method: "POST",
      url: "/v1/checkpoint",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(res.statusCode, 403);
  } finally {
    await app.close();
  }
});

test("--unsafe-open-api without a token opens the mutating routes", async () => {
  const app = await api(undefined, "mutating", true);
  try {
    const res = await app.inject({
      method: "PATCH",
      url: "/v1/config",
      payload: { heartbeat: { misses: 12 } },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().heartbeat.misses, 12);
  } finally {
    await app.close();
  }
});

test("with a token: 401 + WWW-Authenticate when missing or wrong, through when right", async () => {
  const app = await api(TOKEN, "mutating");
  try {
    const missing = await app.inject({ method: "POST", url: "/v1/checkpoint" });
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.json().code, "REMUSD_ERR_AUTH");
    assert.match(String(missing.headers["www-authenticate"]), /^Bearer realm="remusd"$/);
    const basic = await app.inject({
      method: "POST",
      url: "/v1/checkpoint",
      headers: { authorization: `Basic ${TOKEN}` },
    });
    assert.equal(basic.statusCode, 401);
    const wrong = await app.inject({
      method: "POST",
      url: "/v1/checkpoint",
      headers: { authorization: "Bearer nope" },
    });
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().code, "REMUSD_ERR_AUTH");
    assert.match(String(wrong.headers["www-authenticate"]), /error="invalid_token"/);
    // Past the gate, the backup refuses for its role: proof the token was accepted. No body is
    // an unplanned failover, refused by a backup without an image.
    const bare = await app.inject({
      method: "POST",
      url: "/v1/failover",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(bare.statusCode, 409, bare.body);
    assert.match(bare.json().message, /no complete image/);
    const right = await app.inject({
      method: "POST",
      url: "/v1/checkpoint",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(right.statusCode, 409);
    assert.equal(right.json().code, "REMUSD_ERR_WRONG_ROLE");
    // Reads, metrics and probes stay open.
    for (const url of ["/v1/status", "/v1/config", "/metrics", "/healthz", "/docs/json"]) {
      assert.equal((await app.inject({ method: "GET", url })).statusCode, 200, url);
    }
  } finally {
    await app.close();
  }
});

test("--api-auth all: every route but the probes needs the token", async () => {
  const app = await api(TOKEN, "all");
  try {
    for (const url of ["/v1/status", "/v1/config", "/metrics", "/docs/json", "/v1/domain/processes"]) {
      const res = await app.inject({ method: "GET", url });
      assert.equal(res.statusCode, 401, url);
      assert.equal(res.json().code, "REMUSD_ERR_AUTH");
    }
    assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
    // A backup without an image is not ready; the probe answers without a token all the same.
    const ready = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 503);
    assert.deepEqual(ready.json(), { ready: false, role: "backup", state: "waiting" });
    const ok = await app.inject({
      method: "GET",
      url: "/v1/status",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.json().role, "backup");
  } finally {
    await app.close();
  }
});

test("settings: the token comes from --api-token-file or REMUSD_API_TOKEN; --api-auth all needs one", () => {
  const file = join(dir, "token");
  writeFileSync(file, `${TOKEN}\n`);
  const base = ["--insecure", "--listen", "127.0.0.1:0", "--data-dir", join(dir, "x")];
  assert.equal(settingsOf("backup", [...base, "--api-token-file", file]).apiToken, TOKEN);
  assert.equal(settingsOf("backup", base, { REMUSD_API_TOKEN: TOKEN }).apiToken, TOKEN);
  assert.equal(settingsOf("backup", base).apiToken, undefined);
  assert.throws(
    () => settingsOf("backup", [...base, "--api-auth", "all"]),
    (e) => isRemusError(e, "REMUSD_ERR_BAD_USAGE"),
  );
  assert.equal(
    settingsOf("backup", [...base, "--api-auth", "all"], { REMUSD_API_TOKEN: TOKEN }).apiAuth,
    "all",
  );
});
