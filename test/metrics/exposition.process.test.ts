import assert from "node:assert/strict";
import { after, test } from "node:test";
import { parseExposition, sampleValue } from "../../src/api/promtext.js";
import { METRIC_LABELS, METRICS } from "../../src/contract.js";
import { inTempDir, killAll } from "../helpers/procs.js";
import { requireProgram, run, startMetricsPair } from "./common.js";

after(killAll);

/**
 * prom-client's default metrics include three gauges named `*_total`, which
 * promtool's linter flags; they are prom-client's standard names (dashboards
 * use them), not ours. Every other complaint fails the test.
 */
const KNOWN_DEFAULT_LINT = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

test("both daemons expose every required metric with its type; promtool accepts the exposition", async () => {
  const promtool = await requireProgram("promtool", "prometheus");
  await inTempDir("exposition", async (dir) => {
    const pair = await startMetricsPair(dir);
    for (const [role, d] of [
      ["primary", pair.primary],
      ["backup", pair.backup],
    ] as const) {
      const r = await fetch(`${d.control}/metrics`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const text = await r.text();
      const e = parseExposition(text);
      for (const [name, type] of Object.entries(METRICS)) {
        assert.ok(text.includes(`# TYPE ${name} ${type}\n`), `${role}: no '# TYPE ${name} ${type}'`);
        assert.ok(
          e.samples.some((s) => s.name === name || s.name.startsWith(`${name}_`)),
          `${role}: ${name} has no sample`,
        );
      }
      assert.equal(e.types.get("process_cpu_seconds_total"), "counter", "default process metrics");
      assert.equal(sampleValue(e, "remusd_role", { role }), 1);
      for (const reason of METRIC_LABELS.failoverReason) {
        assert.equal(
          sampleValue(e, "remusd_failovers_total", { reason }),
          0,
          `${role}: failovers{reason=${reason}}`,
        );
      }
      assert.equal(sampleValue(e, "remusd_peer_up"), 1, `${role}: peer up`);
      assert.ok(
        (sampleValue(e, "remusd_checkpoints_total", { result: "committed" }) ?? 0) >= 1,
        `${role}: checkpoints`,
      );
      assert.ok((sampleValue(e, "remusd_epoch_committed") ?? 0) >= 1);
      const lint = await run(promtool, ["check", "metrics"], text);
      const problems = lint.out
        .split("\n")
        .filter((l) => l.trim() !== "")
        .filter((l) => !KNOWN_DEFAULT_LINT.some((k) => l.startsWith(`${k} `)));
      assert.deepEqual(problems, [], `${role}: promtool check metrics:\n${lint.out}`);
      assert.ok(
        lint.code === 0 || lint.out.trim() !== "",
        `promtool failed without saying why (exit ${lint.code})`,
      );
    }
  });
});
