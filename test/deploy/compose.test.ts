/**
 * deploy/compose.yaml (there is no `docker compose` here): every remusd command
 * line parses with the daemon's own option parser, the pair agrees on its
 * geometry and addresses, the start order, healthchecks, restart policies,
 * secrets and volumes hold together, and Prometheus and Grafana point at what
 * the file defines. Also runs deploy/gen-secrets.sh.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { describe, test } from "node:test";
import { DEFAULT_PORTS, HEALTH_PATH, METRICS_PATH } from "../../src/contract.js";
import {
  arr,
  DEPLOY,
  hostPort,
  interpolate,
  obj,
  parseCommandLine,
  ROOT,
  readText,
  readYaml,
  str,
} from "./lib.js";

type Service = Record<string, unknown>;

const compose = obj(interpolate(readYaml("deploy/compose.yaml")), "compose.yaml");
const services = obj(compose.services, "services");
const service = (name: string): Service => obj(services[name], `service ${name}`);
const REMUSD_IMAGE = str(service("backup").image, "backup image");

/** The services that run the remusd image, with their parsed command lines. */
const daemons = Object.entries(services)
  .map(([name, s]) => [name, obj(s, name)] as const)
  .filter(([, s]) => s.image === REMUSD_IMAGE)
  .map(([name, s]) => {
    const argv = arr(s.command, `${name}.command`).map((a) => String(a));
    const env = Object.fromEntries(
      Object.entries(obj(s.environment ?? {}, `${name}.environment`)).map(([k, v]) => [k, String(v)]),
    );
    return { name, s, argv, env, parsed: parseCommandLine(argv, env) };
  });
const daemon = (name: string) => {
  const d = daemons.find((x) => x.name === name);
  assert.ok(d, `service ${name} runs the remusd image`);
  return d;
};

function dependsOn(s: Service): Record<string, Record<string, unknown>> {
  const d = s.depends_on;
  if (d === undefined) return {};
  if (Array.isArray(d))
    return Object.fromEntries(d.map((n) => [String(n), { condition: "service_started" }]));
  return Object.fromEntries(
    Object.entries(obj(d, "depends_on")).map(([k, v]) => [k, obj(v, `depends_on.${k}`)]),
  );
}

/** Every service `name` pulls up when started (depends_on, transitively). */
function pulledUp(name: string, seen = new Set<string>()): Set<string> {
  for (const dep of Object.keys(dependsOn(service(name)))) {
    if (!seen.has(dep)) {
      seen.add(dep);
      pulledUp(dep, seen);
    }
  }
  return seen;
}

/** host path (relative to deploy/) → container path of a service's bind mounts, and named volumes. */
function mounts(s: Service): { binds: Map<string, string>; named: Map<string, string> } {
  const binds = new Map<string, string>();
  const named = new Map<string, string>();
  for (const v of arr(s.volumes ?? [], "volumes")) {
    const [src, dst] = str(v, "volume").split(":") as [string, string];
    if (src.startsWith(".") || src.startsWith("/")) binds.set(src, dst);
    else named.set(src, dst);
  }
  return { binds, named };
}

/** The repository file a container path maps to through a service's bind mounts. */
function hostFileOf(s: Service, containerPath: string): string | undefined {
  for (const [src, dst] of mounts(s).binds) {
    if (containerPath === dst || containerPath.startsWith(`${dst}/`)) {
      return join(DEPLOY, src, containerPath.slice(dst.length));
    }
  }
  return undefined;
}

describe("compose.yaml", () => {
  test("has the vswitch, the pair, a client profile, Prometheus and Grafana", () => {
    for (const n of ["vswitch", "backup", "primary", "client", "prometheus", "grafana"])
      assert.ok(services[n], n);
    assert.deepEqual(daemon("backup").parsed.command, "backup");
    assert.deepEqual(daemon("primary").parsed.command, "primary");
    assert.deepEqual(daemon("vswitch").parsed.command, "vswitch");
    assert.deepEqual(daemon("client").parsed.command, "client");
    assert.deepEqual(service("client").profiles, ["client"], "the client only runs with --profile client");
    for (const n of ["prometheus", "grafana"])
      assert.match(str(service(n).image, n), /:v?\d+\.\d+\.\d+$/, `${n} image is pinned`);
  });

  test("the pair's addresses and settings agree", () => {
    const b = daemon("backup").parsed.values;
    const p = daemon("primary").parsed.values;
    const vs = daemon("vswitch").parsed.values;
    for (const v of [b, p]) {
      // Reachable by healthchecks and Prometheus from outside the container.
      assert.deepEqual(hostPort(v.control), { host: "0.0.0.0", port: DEFAULT_PORTS.control });
      assert.notEqual(v.insecure, true, "never --insecure");
      assert.notEqual(v["unsafe-open-api"], true, "never --unsafe-open-api");
      assert.notEqual(v["no-netbuf"], true, "output commit stays on");
    }
    assert.deepEqual(hostPort(b.listen), { host: "0.0.0.0", port: DEFAULT_PORTS.replication });
    const peer = new URL(str(p.peer, "--peer"));
    assert.equal(peer.hostname, "backup", "the primary dials the backup service");
    assert.equal(Number(peer.port), hostPort(b.listen).port, "on the port the backup listens on");
    assert.deepEqual(hostPort(vs.listen), { host: "0.0.0.0", port: DEFAULT_PORTS.vswitch });
    for (const n of ["backup", "primary", "client"]) {
      const sw = hostPort(daemon(n).parsed.values.switch);
      assert.deepEqual(
        sw,
        { host: "vswitch", port: DEFAULT_PORTS.vswitch },
        `${n} attaches to the vswitch service`,
      );
    }
    for (const k of ["domain-mib", "disk-mib", "heartbeat-ms", "heartbeat-misses", "guest-mac", "guest-ip"]) {
      assert.equal(p[k], b[k], `primary and backup agree on --${k}`);
    }
  });

  test("secrets: the daemons read the key and token from compose secrets", () => {
    const secrets = obj(compose.secrets, "secrets");
    for (const n of ["backup", "primary"]) {
      const d = daemon(n);
      const granted = new Set(arr(d.s.secrets, `${n}.secrets`).map((x) => str(x, "secret")));
      for (const flag of ["auth-key-file", "api-token-file"]) {
        const path = str(d.parsed.values[flag], `--${flag}`);
        const m = /^\/run\/secrets\/([A-Za-z0-9_.-]+)$/.exec(path);
        assert.ok(m, `${n} --${flag} reads /run/secrets/NAME, got ${path}`);
        assert.ok(granted.has(m[1] as string), `${n} is granted secret ${m[1]}`);
        assert.ok(secrets[m[1] as string], `secret ${m[1]} is defined`);
      }
      for (const k of Object.keys(d.env))
        assert.ok(!/AUTH_KEY$|API_TOKEN$/.test(k), `${n}: no secret in the environment (${k})`);
    }
    // Every secret file is one deploy/gen-secrets.sh writes, in a folder git ignores.
    const tmp = mkdtempSync(join(tmpdir(), "remusd-secrets-"));
    try {
      const dir = join(tmp, "s");
      const r = spawnSync("sh", [join(DEPLOY, "gen-secrets.sh"), dir, "0644"], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(statSync(dir).mode & 0o777, 0o700, "the secrets folder is private");
      const generated = new Set(readdirSync(dir));
      for (const [name, def] of Object.entries(secrets)) {
        const file = str(obj(def, name).file, `secret ${name} file`);
        assert.equal(posix.dirname(file), "./secrets", `${name} lives in deploy/secrets`);
        const base = posix.basename(file);
        assert.ok(generated.has(base), `gen-secrets.sh writes ${base}`);
        const value = readFileSync(join(dir, base), "utf8");
        assert.match(value, /^[0-9a-f]{64}$/, `${base} is 32 random bytes in hex`);
        assert.equal(
          statSync(join(dir, base)).mode & 0o777,
          0o644,
          `${base} is readable by the container user`,
        );
      }
      const before = readFileSync(join(dir, "auth_key"), "utf8");
      assert.equal(spawnSync("sh", [join(DEPLOY, "gen-secrets.sh"), dir]).status, 0);
      assert.equal(
        readFileSync(join(dir, "auth_key"), "utf8"),
        before,
        "a second run keeps existing secrets",
      );
      assert.equal(statSync(join(dir, "auth_key")).mode & 0o777, 0o600, "mode 0600 by default");
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    assert.match(readText("deploy/secrets/.gitignore"), /^\*$/m, "deploy/secrets is ignored by git");
  });

  test("start order, healthchecks and restart policies", () => {
    const p = service("primary");
    assert.deepEqual(
      dependsOn(p).backup,
      { condition: "service_healthy" },
      "the primary starts once the backup is healthy",
    );
    for (const n of ["backup", "primary"]) {
      const hc = obj(service(n).healthcheck, `${n}.healthcheck`);
      const t = arr(hc.test, "healthcheck.test").map(String);
      assert.equal(t[0], "CMD");
      // Liveness: the backup is not ready before a primary synced it.
      assert.equal(t[t.length - 1], HEALTH_PATH, `${n}'s healthcheck probes ${HEALTH_PATH}`);
      const script = t[2] as string;
      assert.match(
        readText("Dockerfile"),
        new RegExp(`COPY \\S+ \\./${posix.basename(script)}`),
        `${script} is in the image`,
      );
    }
    // The image's healthcheck targets the control API; services without one turn it off.
    for (const d of daemons) {
      if (d.name === "backup" || d.name === "primary") continue;
      assert.equal(
        obj(d.s.healthcheck, `${d.name}.healthcheck`).disable,
        true,
        `${d.name} has no control API`,
      );
    }
    assert.ok(
      ["always", "unless-stopped", "on-failure"].includes(str(service("backup").restart, "backup restart")),
    );
    assert.equal(service("primary").restart, "no", "a primary is never restarted automatically");
    for (const n of Object.keys(services)) {
      if (n !== "primary") assert.ok(!pulledUp(n).has("primary"), `starting ${n} does not start a primary`);
    }
  });

  test("volumes, ports and hardening", () => {
    const declared = obj(compose.volumes, "volumes");
    for (const [n, s] of Object.entries(services)) {
      for (const [vol, dst] of mounts(obj(s, n)).named) {
        assert.ok(vol in declared, `${n}: volume ${vol} is declared`);
        assert.ok(dst.startsWith("/"), dst);
      }
      for (const [src] of mounts(obj(s, n)).binds)
        assert.ok(existsSync(join(DEPLOY, src)), `${n}: ${src} exists`);
    }
    for (const n of ["backup", "primary"]) {
      const d = daemon(n);
      const dataDir = str(d.parsed.values["data-dir"], "--data-dir");
      assert.ok([...mounts(d.s).named.values()].includes(dataDir), `${n}'s --data-dir is a named volume`);
      const ports = arr(d.s.ports ?? [], "ports").map((x) => str(x, "port"));
      for (const p of ports) {
        const container = Number(p.split(":").pop()?.split("/")[0]);
        assert.ok(
          container === DEFAULT_PORTS.control || container === DEFAULT_PORTS.replication,
          `${n} publishes a daemon port (${p})`,
        );
        if (container === DEFAULT_PORTS.control)
          assert.match(p, /^127\.0\.0\.1:/, "the control API is published on loopback only");
      }
    }
    for (const d of daemons) {
      assert.equal(d.s.read_only, true, `${d.name}: read-only root file system`);
      assert.deepEqual(d.s.cap_drop, ["ALL"], `${d.name}: no capabilities`);
    }
  });

  test("Prometheus scrapes both daemons and loads the rules; Grafana is provisioned", () => {
    const prom = service("prometheus");
    const cfgArg = arr(prom.command, "prometheus.command")
      .map(String)
      .find((a) => a.startsWith("--config.file="));
    assert.ok(cfgArg);
    const cfgFile = hostFileOf(prom, cfgArg.slice("--config.file=".length));
    assert.ok(cfgFile && existsSync(cfgFile), "the config file is mounted from deploy/prometheus");
    const cfg = obj(readYaml(posix.relative(ROOT, cfgFile)), "prometheus.yml");
    assert.ok(arr(cfg.rule_files, "rule_files").length > 0, "alert rules are loaded");
    const job = arr(cfg.scrape_configs, "scrape_configs")
      .map((j) => obj(j, "job"))
      .find((j) => j.job_name === "remusd");
    assert.ok(job, "a remusd job");
    assert.equal(job.metrics_path ?? "/metrics", METRICS_PATH);
    assert.match(str(job.scrape_interval, "scrape_interval"), /^[1-9]s$/, "scraped every few seconds");
    const targets = arr(job.static_configs, "static_configs").flatMap((c) =>
      arr(obj(c, "static").targets, "targets").map(String),
    );
    const scraped = new Set(
      targets.map((t) => {
        const hp = hostPort(t);
        assert.equal(hp.port, DEFAULT_PORTS.control, `${t} is a control port`);
        return hp.host;
      }),
    );
    assert.deepEqual(scraped, new Set(["primary", "backup"]), "both daemons are scraped by service name");

    const graf = service("grafana");
    const provisioning = hostFileOf(graf, "/etc/grafana/provisioning");
    assert.ok(provisioning && existsSync(join(provisioning, "datasources")), "datasources are provisioned");
    const ds = obj(readYaml("deploy/grafana/provisioning/datasources/prometheus.yaml"), "datasource");
    const url = new URL(str(obj(arr(ds.datasources, "datasources")[0], "ds").url, "url"));
    assert.equal(url.hostname, "prometheus", "Grafana reads the prometheus service");
    assert.ok(services[url.hostname]);
    const providers = obj(readYaml("deploy/grafana/provisioning/dashboards/remusd.yaml"), "dashboards");
    const path = str(
      obj(obj(arr(providers.providers, "providers")[0], "provider").options, "options").path,
      "path",
    );
    const dashDir = hostFileOf(graf, path);
    assert.ok(dashDir && existsSync(join(dashDir, "remusd.json")), `the dashboard is mounted at ${path}`);
    const admin = obj(graf.environment, "grafana.environment").GF_SECURITY_ADMIN_PASSWORD__FILE;
    assert.match(str(admin, "admin password"), /^\/run\/secrets\//, "Grafana's admin password is a secret");
  });
});
