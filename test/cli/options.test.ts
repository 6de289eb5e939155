import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { helpText, parseOptions } from "../../src/cli/options.js";
import { BACKUP_SPEC, PRIMARY_SPEC } from "../../src/cli/specs.js";
import { isRemusError } from "../../src/errors.js";

const usage = (f: () => unknown, re: RegExp) =>
  assert.throws(f, (e) => isRemusError(e, "REMUSD_ERR_BAD_USAGE") && re.test(e.message));

test("flags win over the environment, which wins over the config file, which wins over defaults", () => {
  const dir = mkdtempSync(join(tmpdir(), "remusd-opts-"));
  const cfg = join(dir, "c.json");
  writeFileSync(cfg, JSON.stringify({ intervalMs: 40, "heartbeat-ms": 70, verify: true, peer: "ws://a:1" }));
  const env = { REMUSD_INTERVAL_MS: "30", REMUSD_CONFIG: cfg };
  const a = parseOptions(PRIMARY_SPEC, ["--interval-ms", "20"], env).values;
  assert.equal(a["interval-ms"], 20);
  assert.equal(a["heartbeat-ms"], 70);
  assert.equal(a.verify, true);
  assert.equal(a.peer, "ws://a:1");
  assert.equal(parseOptions(PRIMARY_SPEC, [], env).values["interval-ms"], 30);
  assert.equal(
    parseOptions(PRIMARY_SPEC, ["--peer=ws://b:2"], { REMUSD_CONFIG: cfg }).values["interval-ms"],
    40,
  );
  assert.equal(parseOptions(PRIMARY_SPEC, ["--peer", "ws://b:2"], {}).values["interval-ms"], 25);
  assert.equal(parseOptions(BACKUP_SPEC, ["--verify=false"], { REMUSD_VERIFY: "1" }).values.verify, false);
});

test("bad usage is a REMUSD_ERR_BAD_USAGE error with a one-line reason", () => {
  usage(() => parseOptions(BACKUP_SPEC, ["--bogus"], {}), /unknown option --bogus/);
  usage(() => parseOptions(BACKUP_SPEC, ["--listen"], {}), /needs a value/);
  usage(() => parseOptions(BACKUP_SPEC, ["--listen", "x"], {}), /--listen must be HOST:PORT/);
  usage(() => parseOptions(BACKUP_SPEC, ["--domain-mib", "0"], {}), /below the minimum/);
  usage(() => parseOptions(BACKUP_SPEC, ["--domain-mib", "1.5"], {}), /integer/);
  usage(() => parseOptions(BACKUP_SPEC, [], { REMUSD_HEARTBEAT_MS: "soon" }), /REMUSD_HEARTBEAT_MS/);
  usage(() => parseOptions(PRIMARY_SPEC, [], {}), /missing --peer/);
  usage(() => parseOptions(PRIMARY_SPEC, ["--peer", "http://x:1"], {}), /ws:\/\//);
  usage(() => parseOptions(BACKUP_SPEC, ["stray"], {}), /unexpected argument/);
  const dir = mkdtempSync(join(tmpdir(), "remusd-opts-"));
  writeFileSync(join(dir, "bad.json"), JSON.stringify({ nope: 1 }));
  usage(() => parseOptions(BACKUP_SPEC, ["--config", join(dir, "bad.json")], {}), /unknown option 'nope'/);
  writeFileSync(join(dir, "broken.json"), "{");
  usage(() => parseOptions(BACKUP_SPEC, ["--config", join(dir, "broken.json")], {}), /not a JSON object/);
  usage(
    () => parseOptions(BACKUP_SPEC, ["--config", join(dir, "missing.json")], {}),
    /cannot read config file/,
  );
});

test("--help lists every option with its environment variable", () => {
  const r = parseOptions(PRIMARY_SPEC, ["--help"], {});
  assert.equal(r.help, true);
  const text = helpText(PRIMARY_SPEC);
  for (const o of PRIMARY_SPEC.options) {
    assert.ok(text.includes(`--${o.name}`), o.name);
    const variable = `REMUSD_${o.name.toUpperCase().replace(/-/g, "_")}`;
    // A flag-only option (a dangerous switch) has no variable, and says so by showing none.
    assert.equal(text.includes(variable), o.flagOnly !== true, o.name);
  }
});

test("--allow-fault-injection is a flag only: neither the environment nor a config file turns it on", () => {
  const on = parseOptions(PRIMARY_SPEC, ["--peer", "ws://x:1", "--allow-fault-injection"], {});
  assert.equal(on.values["allow-fault-injection"], true);
  const env = parseOptions(PRIMARY_SPEC, ["--peer", "ws://x:1"], { REMUSD_ALLOW_FAULT_INJECTION: "1" });
  assert.equal(env.values["allow-fault-injection"], undefined);
  const dir = mkdtempSync(join(tmpdir(), "remusd-opts-"));
  writeFileSync(join(dir, "faults.json"), JSON.stringify({ allowFaultInjection: true }));
  assert.throws(
    () => parseOptions(PRIMARY_SPEC, ["--peer", "ws://x:1", "--config", join(dir, "faults.json")], {}),
    /can only be given as the flag --allow-fault-injection/,
  );
});
