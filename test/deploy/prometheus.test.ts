/**
 * deploy/prometheus and deploy/grafana: the real promtool checks the scrape
 * configuration and the alert rules and runs the rules' unit tests; every
 * metric and label value the rules, their tests and the dashboard use is one
 * the daemon exports; every alert is tested both firing and silent; runbook
 * links point at headings of deploy/README.md; the dashboard's PromQL parses
 * (promtool again) and covers what operators watch.
 *
 * promtool comes from Debian's `prometheus` package (.ci/run installs it).
 * Without it these tests fail: they do not skip.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { stringify } from "yaml";
import {
  arr,
  boundedLabelValuesIn,
  DEPLOY,
  exportedSeries,
  LABEL_VALUES,
  markdownAnchors,
  obj,
  readText,
  readYaml,
  remusdNamesIn,
  runTool,
  str,
} from "./lib.js";

const HOW = "install Debian's 'prometheus' package (apt-get install prometheus), as .ci/run does";
const PROM = join(DEPLOY, "prometheus");
const RULES = "deploy/prometheus/rules/remusd.yml";
const RULE_TESTS = "deploy/prometheus/tests/remusd.test.yml";

function promtool(args: string[]): { status: number; out: string } {
  const r = runTool("promtool", args, { cwd: PROM, how: HOW });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

const rules: Rule[] = arr(obj(readYaml(RULES), "rules").groups, "groups").flatMap((g) =>
  arr(obj(g, "group").rules, "rules").map((r) => obj(r, "rule") as unknown as Rule),
);
const alerts = rules.filter((r) => r.alert !== undefined);
const known = exportedSeries();

function checkNames(expr: string, where: string): void {
  for (const name of remusdNamesIn(expr))
    assert.ok(known.has(name), `${where}: ${name} is not a series remusd exports`);
  for (const { label, value } of boundedLabelValuesIn(expr)) {
    const allowed = LABEL_VALUES[label];
    assert.ok(
      allowed?.has(value),
      `${where}: ${label}="${value}" is not a value remusd exports (${[...(allowed ?? [])]})`,
    );
  }
}

describe("Prometheus configuration and alert rules", () => {
  test("promtool check config", () => {
    const r = promtool(["check", "config", "prometheus.yml"]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /SUCCESS: 1 rule files found/, "the rules are loaded by the config");
  });

  test("promtool check rules", () => {
    const r = promtool(["check", "rules", "rules/remusd.yml"]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  test("promtool test rules (the rules' unit tests pass)", () => {
    const r = promtool(["test", "rules", "tests/remusd.test.yml"]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });

  test("the alerts cover what the issue asks for", () => {
    const names = new Set(alerts.map((a) => a.alert));
    const exprOf = (n: string) => alerts.find((a) => a.alert === n)?.expr ?? "";
    for (const n of [
      "RemusdDomainUnprotected",
      "RemusdCheckpointsStalled",
      "RemusdCheckpointPauseHigh",
      "RemusdOutputDelayHigh",
      "RemusdFailover",
      "RemusdReplicationPeerDown",
    ]) {
      assert.ok(names.has(n), n);
    }
    assert.match(exprOf("RemusdDomainUnprotected"), /remusd_state\{state=~"[^"]*protected/);
    assert.match(exprOf("RemusdCheckpointsStalled"), /remusd_checkpoints_total\{result="committed"\}/);
    assert.match(exprOf("RemusdCheckpointPauseHigh"), /remusd_checkpoint_pause_seconds_bucket/);
    assert.match(exprOf("RemusdOutputDelayHigh"), /remusd_output_release_delay_seconds_bucket/);
    assert.match(exprOf("RemusdFailover"), /remusd_failovers_total/);
    assert.match(exprOf("RemusdReplicationPeerDown"), /remusd_peer_up/);
    for (const a of alerts) {
      assert.ok(
        ["critical", "warning", "info"].includes(a.labels?.severity ?? ""),
        `${a.alert} has a severity`,
      );
      assert.ok(a.annotations?.summary, `${a.alert} has a summary`);
    }
  });

  test("rules and their tests use only series and label values remusd exports", () => {
    for (const r of rules) checkNames(r.expr, r.alert ?? r.record ?? "rule");
    const tests = obj(readYaml(RULE_TESTS), "rule tests");
    for (const t of arr(tests.tests, "tests")) {
      for (const s of arr(obj(t, "test").input_series ?? [], "input_series")) {
        const series = str(obj(s, "series").series, "series");
        checkNames(series, `test series ${series}`);
        const name = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(series)?.[1] ?? "";
        assert.ok(name === "up" || known.has(name), `test series ${name} is one remusd exports`);
      }
    }
  });

  test("every alert is tested firing and tested silent", () => {
    const tests = arr(obj(readYaml(RULE_TESTS), "rule tests").tests, "tests");
    const fires = new Set<string>();
    const silent = new Set<string>();
    for (const t of tests) {
      for (const a of arr(obj(t, "test").alert_rule_test ?? [], "alert_rule_test")) {
        const at = obj(a, "alert_rule_test");
        const name = str(at.alertname, "alertname");
        if (arr(at.exp_alerts ?? [], "exp_alerts").length > 0) fires.add(name);
        else silent.add(name);
      }
    }
    for (const a of alerts) {
      assert.ok(fires.has(a.alert as string), `${a.alert} has a test where it fires`);
      assert.ok(silent.has(a.alert as string), `${a.alert} has a test where it stays silent`);
    }
  });

  test("runbook links point at headings of deploy/README.md", () => {
    const anchors = markdownAnchors(readText("deploy/README.md"));
    let links = 0;
    for (const a of alerts) {
      const rb = a.annotations?.runbook;
      if (rb === undefined) continue;
      const m = /^deploy\/README\.md#(.+)$/.exec(rb);
      assert.ok(m, `${a.alert}: runbook ${rb}`);
      assert.ok(anchors.has(m[1] as string), `${a.alert}: deploy/README.md has no heading #${m[1]}`);
      links++;
    }
    assert.ok(links >= 3, "the failover alerts link their runbooks");
  });
});

// ---- Grafana ----

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid?: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { expr: string; datasource?: { uid?: string } }[];
}

const dashboard = obj(JSON.parse(readText("deploy/grafana/dashboards/remusd.json")), "dashboard");
const panels = arr(dashboard.panels, "panels") as Panel[];
const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, expr: t.expr })));

/** A Grafana expression with its variables replaced by what Prometheus would get. */
function grafanaToPromql(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__range", "1h")
    .replaceAll("$__interval", "15s")
    .replace(/\$\{?([a-z_]+)\}?/g, ".*");
}

describe("Grafana dashboard and provisioning", () => {
  test("panels: unique ids, inside the 24-column grid, not overlapping", () => {
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, "unique panel ids");
    for (const p of panels) {
      const g = p.gridPos;
      assert.ok(
        g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0,
        `${p.title}: gridPos ${JSON.stringify(g)}`,
      );
    }
    for (const a of panels) {
      for (const b of panels) {
        if (a.id >= b.id) continue;
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        assert.ok(!overlap, `panels '${a.title}' and '${b.title}' overlap`);
      }
    }
  });

  test("every query uses the datasource variable and series remusd exports", () => {
    const vars = arr(obj(dashboard.templating, "templating").list, "templating.list").map((v) =>
      obj(v, "var"),
    );
    const dsVar = vars.find((v) => v.type === "datasource");
    assert.ok(dsVar, "a datasource variable");
    assert.equal(dsVar.query, "prometheus");
    const ref = `\${${str(dsVar.name, "name")}}`;
    for (const p of panels) {
      assert.equal(p.datasource?.uid, ref, `${p.title}: datasource`);
      assert.ok((p.targets ?? []).length > 0, `${p.title} has a query`);
      for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, ref, `${p.title}: target datasource`);
    }
    for (const { panel, expr } of exprs) checkNames(expr, panel.title);
  });

  test("the dashboard shows what the issue lists", () => {
    const has = (re: RegExp, what: string) =>
      assert.ok(
        exprs.some((e) => re.test(e.expr)),
        `a panel shows ${what}`,
      );
    has(/rate\(remusd_checkpoints_total/, "checkpoints per second");
    for (const h of [
      "remusd_checkpoint_pause_seconds",
      "remusd_checkpoint_duration_seconds",
      "remusd_output_release_delay_seconds",
      "remusd_heartbeat_rtt_seconds",
    ]) {
      has(new RegExp(`histogram_quantile\\(0\\.5, .*${h}_bucket`), `${h} p50`);
      has(new RegExp(`histogram_quantile\\(0\\.99, .*${h}_bucket`), `${h} p99`);
    }
    has(/remusd_checkpoint_dirty_pages/, "dirty pages per epoch");
    has(
      /remusd_replication_bytes_total\{stage="raw"[^}]*\}.*\/.*remusd_replication_bytes_total\{stage="wire"/,
      "the compression ratio",
    );
    has(/rate\(remusd_replication_bytes_total\{[^}]*\}\[/, "wire and raw bytes per second");
    has(/remusd_netbuf_packets/, "netbuf depth (packets)");
    has(/remusd_netbuf_bytes/, "netbuf depth (bytes)");
    has(/remusd_role/, "the role");
    has(/remusd_state\{state="protected"/, "the protection state");
    has(/remusd_failovers_total/, "failovers");
    has(/remusd_peer_up/, "the replication peer");
  });

  test("promtool parses every dashboard query", () => {
    const tmp = mkdtempSync(join(tmpdir(), "remusd-dash-"));
    try {
      const file = join(tmp, "dashboard-queries.yml");
      const group = {
        name: "dashboard",
        rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: grafanaToPromql(e.expr) })),
      };
      writeFileSync(file, stringify({ groups: [group] }));
      const r = runTool("promtool", ["check", "rules", file], { how: HOW });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      assert.match(r.stdout, new RegExp(`SUCCESS: ${exprs.length} rules found`));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("provisioning: a Prometheus datasource and a file provider", () => {
    const ds = arr(
      obj(readYaml("deploy/grafana/provisioning/datasources/prometheus.yaml"), "ds").datasources,
      "datasources",
    );
    assert.equal(obj(ds[0], "ds").type, "prometheus");
    const providers = arr(
      obj(readYaml("deploy/grafana/provisioning/dashboards/remusd.yaml"), "p").providers,
      "providers",
    );
    assert.equal(obj(providers[0], "provider").type, "file");
    assert.equal(dashboard.uid, "remusd-overview", "a stable uid for links");
  });
});
