import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  cleanup,
  type DaemonInfo,
  getJson,
  killAll,
  logLine,
  remusctl,
  startPair,
  tempDir,
  tokenFileOf,
  waitFor,
} from "../helpers/procs.js";

const TOKEN = "remusctl-test-token-0123456789";

let dir: string;
let primary: DaemonInfo;
let backup: DaemonInfo;
let tokenFile: string;

/** The environment of every remusctl run: nothing inherited that could change its behaviour. */
const ENV = { REMUSD_CONTROL: "", REMUSD_API_TOKEN: "", REMUSD_API_TOKEN_FILE: "" };
const ctl = (d: DaemonInfo, args: string[], env: NodeJS.ProcessEnv = {}) =>
  remusctl(["--control", new URL(d.control).host, ...args], { ...ENV, ...env });

before(async () => {
  dir = tempDir("remusctl");
  tokenFile = tokenFileOf(dir);
  ({ backup, primary } = await startPair(dir, { key: false, token: TOKEN, ready: { commits: 1 } }));
});

after(async () => {
  await killAll();
  cleanup(dir);
});

test("status: a readable summary, and --json for scripts", async () => {
  const r = await ctl(primary, ["status"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^role +primary, protected, generation 1/m);
  assert.match(r.stdout, /^peer +connected/m);
  const j = await ctl(backup, ["status", "--json"]);
  assert.equal(j.code, 0, j.stderr);
  const s = JSON.parse(j.stdout) as { role: string; state: string; epoch: { committed: number } };
  assert.equal(s.role, "backup");
  assert.equal(s.state, "standby");
});

test("ps: the guest's process table", async () => {
  const r = await ctl(primary, ["ps"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^PID +PPID +NAME/);
  assert.match(r.stdout, /\bcounter\b/);
});

test("checkpoint: needs the token (from --token-file, --token or REMUSD_API_TOKEN); waits for the commit", async () => {
  const denied = await ctl(primary, ["checkpoint"]);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /^remusctl: REMUSD_ERR_AUTH: .+\n$/);
  const r = await ctl(primary, ["--token-file", tokenFile, "checkpoint"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^epoch \d+ committed\n$/);
  assert.equal((await ctl(primary, ["checkpoint", "--token", TOKEN, "--json"])).code, 0);
  assert.equal((await ctl(primary, ["checkpoint"], { REMUSD_API_TOKEN: TOKEN })).code, 0);
  const wrongRole = await ctl(backup, ["checkpoint"], { REMUSD_API_TOKEN: TOKEN });
  assert.equal(wrongRole.code, 1);
  assert.match(wrongRole.stderr, /REMUSD_ERR_WRONG_ROLE/);
});

test("config get/set: validated by the daemon, usage errors exit 2", async () => {
  const set = await ctl(primary, ["config", "set", "interval-ms=30", "heartbeat-misses=12"], {
    REMUSD_API_TOKEN_FILE: tokenFile,
  });
  assert.equal(set.code, 0, set.stderr);
  const get = await ctl(primary, ["config", "get", "--json"]);
  assert.equal(get.code, 0, get.stderr);
  const cfg = JSON.parse(get.stdout) as { intervalMs: number; heartbeat: { misses: number } };
  assert.equal(cfg.intervalMs, 30);
  assert.equal(cfg.heartbeat.misses, 12);
  const readable = await ctl(primary, ["config"]);
  assert.match(readable.stdout, /^interval-ms +30$/m);
  const out = await ctl(primary, ["config", "set", "interval-ms=0"], { REMUSD_API_TOKEN: TOKEN });
  assert.equal(out.code, 1);
  assert.match(out.stderr, /REMUSD_ERR_BAD_REQUEST: .*intervalMs/);
  for (const args of [["config", "set", "colour=blue"], ["config", "frob"], ["status", "--frob"], ["frob"]]) {
    const r = await ctl(primary, args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});

test("watch --json: successive samples with rates from /metrics", async () => {
  const r = await ctl(primary, ["watch", "--json", "--count", "2", "--interval", "0.3"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 2);
  assert.equal(lines[0]?.checkpointsPerSecond, null);
  assert.equal(typeof lines[1]?.checkpointsPerSecond, "number");
  assert.equal(typeof lines[1]?.wireMBps, "number");
  assert.ok((lines[1]?.epoch as number) >= (lines[0]?.epoch as number));
  const screen = await ctl(primary, ["watch", "--count", "1"]);
  assert.match(screen.stdout, /checkpoints\/s/);
  assert.match(screen.stdout, /pause p50 \/ p99/);
});

test("--help on every command; an unreachable daemon is one line and exit 1", async () => {
  for (const args of [
    ["--help"],
    ["status", "--help"],
    ["watch", "--help"],
    ["failover", "--help"],
    ["checkpoint", "--help"],
    ["config", "--help"],
    ["ps", "--help"],
  ]) {
    const r = await remusctl(args, ENV);
    assert.equal(r.code, 0, args.join(" "));
    assert.match(r.stdout, /Usage: remusctl/);
    // Every key `config set` takes is listed (deploy/README.md uses peer).
    if (args[0] === "config") {
      for (const key of ["interval-ms", "compress", "heartbeat-ms", "heartbeat-misses", "peer"]) {
        assert.match(r.stdout, new RegExp(`\\b${key}\\b`), key);
      }
    }
  }
  const r = await remusctl(["--control", "127.0.0.1:1", "status"], ENV);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^remusctl: REMUSD_ERR_UNREACHABLE: cannot reach remusd at http:\/\/127\.0\.0\.1:1: .+\n$/,
  );
  const env = await remusctl(["status"], { ...ENV, REMUSD_CONTROL: "127.0.0.1:1" });
  assert.equal(env.code, 1);
  assert.match(env.stderr, /127\.0\.0\.1:1/);
});

test("failover --planned --wait: the backup takes over; its logs rebind to primary, generation 2", async () => {
  const r = await ctl(backup, ["failover", "--planned", "--wait", "--token", TOKEN]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /now the primary/);
  const s = (await getJson(`${backup.control}/v1/status`)).body as { role: string; generation: number };
  assert.equal(s.role, "primary");
  assert.equal(s.generation, 2);
  const changed = await waitFor("the role change log line", () =>
    logLine(backup.proc, "role changed: backup -> primary"),
  );
  assert.equal(changed.role, "primary");
  assert.equal(changed.generation, 2);
  const again = await ctl(backup, ["failover", "--token", TOKEN]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /REMUSD_ERR_WRONG_ROLE/);
});
