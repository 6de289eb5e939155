/**
 * deploy/systemd: the unit files parse, ExecStart (with the example
 * EnvironmentFiles as environment) parses with the daemon's own options, the
 * restart policies are the documented ones, the hardening is there, and the
 * real `systemd-analyze verify` accepts the units without a warning (on copies
 * whose ExecStart binary is this node, since verify wants an existing
 * executable) and `systemd-analyze security` rates them well.
 *
 * systemd-analyze comes from Debian's `systemd` package (.ci/run installs it).
 * Without it these tests fail: they do not skip.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { describe, test } from "node:test";
import { DEFAULT_PORTS } from "../../src/contract.js";
import {
  DEPLOY,
  hostPort,
  parseCommandLine,
  parseEnvFile,
  parseUnit,
  readText,
  runTool,
  type Unit,
} from "./lib.js";

const HOW = "install Debian's 'systemd' package (apt-get install systemd), as .ci/run does";
const DIR = "deploy/systemd";
const INSTANCE = "demo";

const unitFiles = readdirSync(join(DEPLOY, "systemd")).filter((f) => f.endsWith(".service"));

function unit(file: string): Unit {
  return parseUnit(readText(`${DIR}/${file}`));
}

function value(u: Unit, section: string, key: string): string | undefined {
  const v = u.get(section)?.get(key);
  return v?.[v.length - 1];
}

function values(u: Unit, section: string, key: string): string[] {
  return u.get(section)?.get(key) ?? [];
}

/** The unit name systemd gives an instance of a template (or the file name). */
function instanceName(file: string): string {
  return file.replace("@.service", `@${INSTANCE}.service`);
}

/** Expands the specifiers the units use, as systemd would for instance `demo` of a system unit. */
function specifiers(s: string, file: string): string {
  return s.replace(/%([a-zA-Z%])/g, (_m, c: string) => {
    switch (c) {
      case "i":
      case "I":
        return INSTANCE;
      case "S":
        return "/var/lib";
      case "d":
        return `/run/credentials/${instanceName(file)}`;
      case "%":
        return "%";
      default:
        throw new Error(`${file}: specifier %${c} is not handled by this test`);
    }
  });
}

/** ExecStart split into argv (the units use no quoting). */
function execStart(u: Unit, file: string): string[] {
  const line = value(u, "Service", "ExecStart");
  assert.ok(line, `${file}: ExecStart`);
  assert.doesNotMatch(line, /["'$]/, `${file}: ExecStart needs no quoting or variables`);
  return specifiers(line, file).split(/\s+/);
}

/** The example EnvironmentFile shipped for a unit's EnvironmentFile path. */
function exampleEnv(u: Unit, file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ef of values(u, "Service", "EnvironmentFile")) {
    const path = specifiers(ef.replace(/^-/, ""), file);
    assert.match(path, /^\/etc\/remusd\//, `${file}: EnvironmentFile under /etc/remusd`);
    Object.assign(env, parseEnvFile(readText(`${DIR}/examples/${posix.basename(path)}`)));
  }
  return env;
}

const roles = ["primary", "backup"] as const;
const roleFile = (role: string) => `remusd-${role}@.service`;

describe("systemd units", () => {
  test("an instance unit per role, and a vswitch unit", () => {
    for (const r of roles) assert.ok(unitFiles.includes(roleFile(r)), roleFile(r));
    assert.ok(unitFiles.includes("remusd-vswitch.service"));
  });

  test("ExecStart and the example EnvironmentFiles parse with the daemon's options", () => {
    const parsed = new Map<string, ReturnType<typeof parseCommandLine>>();
    for (const file of unitFiles) {
      const u = unit(file);
      const argv = execStart(u, file);
      assert.equal(argv[0], "/usr/local/bin/remusd", `${file}: the remusd bin (npm install -g)`);
      const env = exampleEnv(u, file);
      const cmd = parseCommandLine(argv.slice(1), env);
      parsed.set(file, cmd);
      for (const k of Object.keys(env))
        assert.ok(!/AUTH_KEY$|API_TOKEN$/.test(k), `${file}: no secret in an env file`);
    }
    const p = parsed.get(roleFile("primary"))?.values ?? {};
    const b = parsed.get(roleFile("backup"))?.values ?? {};
    for (const v of [p, b]) {
      assert.notEqual(v.insecure, true);
      assert.notEqual(v["no-netbuf"], true);
    }
    assert.equal(hostPort(b.listen).port, DEFAULT_PORTS.replication);
    assert.equal(
      Number(new URL(String(p.peer)).port),
      hostPort(b.listen).port,
      "the primary dials the backup's port",
    );
    assert.equal(hostPort(p.control).port, DEFAULT_PORTS.control);
    for (const k of ["domain-mib", "disk-mib", "heartbeat-ms", "heartbeat-misses", "switch"]) {
      assert.equal(p[k], b[k], `the example pair agrees on --${k}`);
    }
    const vs = parsed.get("remusd-vswitch.service")?.values ?? {};
    assert.equal(
      hostPort(vs.listen).port,
      hostPort(p.switch).port,
      "the daemons attach to the vswitch's port",
    );
  });

  test("data folder, secrets and user", () => {
    const sysusers = readText(`${DIR}/remusd.sysusers.conf`);
    for (const file of unitFiles) {
      const u = unit(file);
      const user = value(u, "Service", "User");
      assert.ok(user && user !== "root", `${file}: a dedicated user`);
      assert.match(sysusers, new RegExp(`^u ${user} `, "m"), `${file}: sysusers.d creates ${user}`);
      if (!file.includes("@")) continue;
      const argv = execStart(u, file);
      const cmd = parseCommandLine(argv.slice(1), exampleEnv(u, file));
      const state = value(u, "Service", "StateDirectory");
      assert.ok(state, `${file}: StateDirectory`);
      assert.equal(
        cmd.values["data-dir"],
        `/var/lib/${specifiers(state, file)}`,
        `${file}: --data-dir is the StateDirectory`,
      );
      const creds = new Map(
        values(u, "Service", "LoadCredential").map((c) => {
          const [id, path] = c.split(":") as [string, string];
          return [id, specifiers(path, file)];
        }),
      );
      for (const flag of ["auth-key-file", "api-token-file"]) {
        const path = String(cmd.values[flag]);
        assert.equal(
          posix.dirname(path),
          `/run/credentials/${instanceName(file)}`,
          `${file}: --${flag} is a credential`,
        );
        const src = creds.get(posix.basename(path));
        assert.ok(src, `${file}: LoadCredential ${posix.basename(path)}`);
        assert.equal(src, `/etc/remusd/${INSTANCE}/${posix.basename(path)}`);
      }
      // gen-secrets.sh writes the same file names (run as: gen-secrets.sh /etc/remusd/demo).
      for (const id of creds.keys())
        assert.match(readText("deploy/gen-secrets.sh"), new RegExp(`\\b${id}\\b`));
    }
  });

  test("restart policies: the backup restarts and starts at boot; the primary never does either", () => {
    const b = unit(roleFile("backup"));
    assert.equal(value(b, "Service", "Restart"), "on-failure");
    assert.ok(
      values(b, "Install", "WantedBy").includes("multi-user.target"),
      "the backup is enabled at boot",
    );
    const p = unit(roleFile("primary"));
    assert.ok(["no", undefined].includes(value(p, "Service", "Restart")), "the primary is not restarted");
    assert.equal(p.has("Install"), false, "the primary cannot be enabled (no automatic start at boot)");
    assert.ok(
      Number.parseInt(value(p, "Service", "TimeoutStopSec") ?? "0", 10) >= 10,
      "time for the final checkpoint",
    );
  });

  test("hardening", () => {
    const want: Record<string, string> = {
      ProtectSystem: "strict",
      NoNewPrivileges: "yes",
      PrivateTmp: "yes",
      ProtectHome: "yes",
      PrivateDevices: "yes",
      ProtectKernelTunables: "yes",
      ProtectKernelModules: "yes",
      ProtectControlGroups: "yes",
      RestrictSUIDSGID: "yes",
      LockPersonality: "yes",
      CapabilityBoundingSet: "",
    };
    for (const file of unitFiles) {
      const u = unit(file);
      for (const [k, v] of Object.entries(want))
        assert.equal(value(u, "Service", k), v, `${file}: ${k}=${v}`);
      const filters = values(u, "Service", "SystemCallFilter");
      assert.ok(
        filters.includes("@system-service") && filters.includes("~@privileged"),
        `${file}: a system call filter`,
      );
      assert.ok(value(u, "Service", "RestrictAddressFamilies"), `${file}: RestrictAddressFamilies`);
      // V8 compiles code at run time: this one would kill node.
      assert.equal(
        value(u, "Service", "MemoryDenyWriteExecute"),
        undefined,
        `${file}: no MemoryDenyWriteExecute`,
      );
    }
  });

  test("systemd-analyze verify accepts the units and security rates them", () => {
    const tmp = mkdtempSync(join(tmpdir(), "remusd-systemd-"));
    try {
      const names: string[] = [];
      for (const file of unitFiles) {
        // verify checks that ExecStart's binary exists: point it at this node.
        const text = readFileSync(join(DEPLOY, "systemd", file), "utf8");
        assert.match(text, /^ExecStart=\/usr\/local\/bin\/remusd /m);
        writeFileSync(
          join(tmp, file),
          text.replace(/^ExecStart=\/usr\/local\/bin\/remusd /m, `ExecStart=${process.execPath} `),
        );
        const name = instanceName(file);
        if (name !== file) symlinkSync(file, join(tmp, name));
        names.push(name);
      }
      const r = runTool("systemd-analyze", ["verify", "--man=no", ...names.map((n) => `./${n}`)], {
        cwd: tmp,
        how: HOW,
      });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      assert.equal(`${r.stdout}${r.stderr}`.trim(), "", "no warnings");
      for (const n of names) {
        // Exposure 2.0 of 10 at most ("OK").
        const s = runTool(
          "systemd-analyze",
          ["security", "--offline=yes", "--threshold=20", "--no-pager", `./${n}`],
          {
            cwd: tmp,
            how: HOW,
          },
        );
        assert.equal(s.status, 0, `${n}: ${s.stdout.split("\n").slice(-3).join("\n")}${s.stderr}`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
