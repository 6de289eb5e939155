import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import { cleanup, getJson, kill, killAll, type Proc, startCommand, tempDir } from "../helpers/procs.js";
import { requireProgram, startMetricsPair } from "./common.js";

after(killAll);

interface PromReply<T> {
  status: string;
  data: T;
}
interface Target {
  labels: Record<string, string>;
  health: string;
  lastError: string;
}
interface Vector {
  resultType: string;
  result: { metric: Record<string, string>; value: [number, string] }[];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

/** Polls an async condition every 100 ms until it yields a truthy value or the deadline passes. */
async function until<T>(
  what: string,
  cond: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("a real Prometheus scrapes the primary and the backup: both up, checkpoints counted", async () => {
  const prometheus = await requireProgram("prometheus", "prometheus");
  const dir = tempDir("prometheus");
  let prom: Proc | undefined;
  try {
    const pair = await startMetricsPair(dir);
    const primary = new URL(pair.primary.control).host;
    const backup = new URL(pair.backup.control).host;
    const config = join(dir, "prometheus.yml");
    // JSON is YAML: no YAML writer needed.
    writeFileSync(
      config,
      JSON.stringify({
        global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
        scrape_configs: [{ job_name: "remusd", static_configs: [{ targets: [primary, backup] }] }],
      }),
    );
    let base = "";
    for (let attempt = 0; attempt < 3 && base === ""; attempt++) {
      const port = await freePort();
      const p = startCommand("prometheus", prometheus, [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, `tsdb-${attempt}`)}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ]);
      const url = `http://127.0.0.1:${port}`;
      const ready = await until(`prometheus on port ${port} to be ready`, async () => {
        if (p.exitCode !== undefined) return "exited";
        return (await fetch(`${url}/-/ready`)).status === 200 ? "ready" : undefined;
      });
      if (ready === "ready") {
        prom = p;
        base = url;
      } else if (!/address already in use/.test(p.stderr)) {
        throw new Error(`prometheus exited with ${p.exitCode}: ${p.stderr.slice(-2000)}`);
      }
    }
    assert.ok(prom, "prometheus did not start (port races three times)");

    const targets = await until("both targets up", async () => {
      const r = (await getJson(`${base}/api/v1/targets`)).body as PromReply<{ activeTargets: Target[] }>;
      const t = r.data.activeTargets;
      return t.length === 2 && t.every((x) => x.health === "up") ? t : undefined;
    });
    assert.deepEqual(targets.map((t) => t.labels.instance).sort(), [primary, backup].sort());

    const query = async (q: string) => {
      const r = (await getJson(`${base}/api/v1/query?query=${encodeURIComponent(q)}`))
        .body as PromReply<Vector>;
      assert.equal(r.status, "success");
      return r.data.result;
    };
    const up = await query('up{job="remusd"}');
    assert.deepEqual(
      up.map((s) => s.value[1]),
      ["1", "1"],
    );
    const roles = await query("remusd_role == 1");
    assert.deepEqual(
      roles.map((s) => `${s.metric.instance}=${s.metric.role}`).sort(),
      [`${primary}=primary`, `${backup}=backup`].sort(),
    );

    const committed = async () => {
      const r = await query(`remusd_checkpoints_total{result="committed",instance="${primary}"}`);
      return r.length === 1 ? Number(r[0]?.value[1]) : undefined;
    };
    const first = await until("a first sample of remusd_checkpoints_total", committed);
    const later = await until("remusd_checkpoints_total to increase", async () => {
      const v = await committed();
      return v !== undefined && v > first ? v : undefined;
    });
    assert.ok(later > first);
    assert.equal((await query(`remusd_build_info{instance="${backup}"}`)).length, 1);
  } finally {
    if (prom) await kill(prom, "SIGTERM");
    await killAll();
    cleanup(dir);
  }
});
