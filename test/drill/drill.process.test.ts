/**
 * `remusd drill --local`: five failovers of mixed kinds against a pair it
 * starts itself, under the checking client's load; it must exit 0 with no
 * lost write and no reset, and its HTML report must render in headless
 * Chromium with charts that have data and numbers that match the JSON.
 */
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import type { DrillReport } from "../../src/drill/measure.js";
import { chromiumSkip, dumpDom, screenshot } from "../helpers/chromium.js";
import { inTempDir, killAll, startProc } from "../helpers/procs.js";

after(killAll);

/** The attribute `name` of every element of `dom` that matches `selector` (a tag plus attribute tests). */
function attrs(dom: string, re: RegExp): string[] {
  return [...dom.matchAll(re)].map((m) => m[1] as string);
}

test("remusd drill --local: 5 failovers of mixed kinds, 0 lost writes, 0 resets, exit 0; the HTML report renders", {
  skip: chromiumSkip(),
}, async (t) => {
  await inTempDir("drill", async (dir) => {
    const json = join(dir, "drill.json");
    const html = join(dir, "drill.html");
    const drill = startProc("drill", [
      "drill",
      "--local",
      "--failovers",
      "5",
      "--faults",
      "sigkill,switchover,crash",
      "--dwell",
      "1",
      "--domain-mib",
      "8",
      "--connections",
      "4",
      // Slack for a machine shared with other test runs: a stalled daemon must not look dead (a
      // spurious failover); the kills are detected by the closed link, not by the heartbeat.
      "--heartbeat-ms",
      "250",
      "--heartbeat-misses",
      "20",
      "--dir",
      join(dir, "pair"),
      "--json",
      json,
      "--html",
      html,
    ]);
    const code = await drill.exited;
    assert.equal(code, 0, `${drill.stdout}\n${drill.stderr.slice(-3000)}`);
    // Not a TTY: plain lines, no escape sequences.
    assert.ok(!drill.stdout.includes("\u001b["), "no escape sequences");
    assert.match(drill.stdout, /^PASS/m);
    const r = JSON.parse(readFileSync(json, "utf8")) as DrillReport;
    assert.equal(r.ok, true);
    assert.deepEqual(
      r.failovers.map((f) => f.fault),
      ["sigkill", "switchover", "crash", "sigkill", "switchover"],
    );
    assert.equal(r.totals.lostWrites, 0);
    assert.equal(r.totals.resets, 0);
    assert.ok(r.client?.finished && r.client.ok, JSON.stringify(r.client));
    assert.ok(r.client.verifiedKeys > 0, "acknowledged writes were read back");
    for (const f of r.failovers) {
      t.diagnostic(
        `#${f.index} ${f.fault}: activation ${f.activationMs} ms, first output ${f.firstOutputMs} ms, stall max ${f.stall.maxMs} ms, protected after ${f.protectedMs} ms, resync ${f.resyncBytes} B`,
      );
      assert.ok(f.ok, `failover ${f.index}: ${f.problems.join("; ")}`);
      assert.equal(f.activated, true);
      assert.ok(f.activationMs !== null && f.activationMs >= 0);
      assert.ok(f.firstOutputMs !== null, `failover ${f.index}: output.resumed`);
      assert.ok(f.resyncBytes !== null && f.resyncBytes > 0, `failover ${f.index}: resync bytes`);
      assert.ok(f.stall.requests > 0, `failover ${f.index}: requests across the event`);
      assert.ok(f.client && f.client.verifiedKeys > 0, `failover ${f.index}: an audit read writes back`);
      assert.equal(f.reason, f.fault === "switchover" ? "planned" : "peer_lost");
      assert.equal(f.oldPrimary, f.fault === "switchover" ? "stopped" : "gone");
    }
    assert.ok(r.timeline.bins.some((b) => b.repliesPerSec > 0));

    // The page, as a browser renders it.
    const dom = await dumpDom(html);
    assert.match(dom, /<body[^>]*data-rendered="yes"/, "the page's script ran");
    assert.match(dom, /id="verdict">PASS</);
    const points = (id: string) => Number(new RegExp(`id="${id}"[^>]*data-points="(\\d+)"`).exec(dom)?.[1]);
    assert.ok(points("latency") > 10, "the latency chart has data");
    assert.ok(points("throughput") > 10, "the throughput chart has data");
    assert.equal(
      attrs(dom, /class="failover-marker[^"]*" data-index="(\d+)"/g).length,
      2 * r.failovers.length,
    );
    // Every card and every table cell shows the JSON's number.
    for (const [k, v] of Object.entries(r.totals)) {
      const m = new RegExp(`class="card[^"]*" data-field="${k}" data-value="([^"]*)"`).exec(dom);
      if (k === "failovers" || k === "wrongReads") continue;
      assert.ok(m, `card ${k}`);
      assert.equal(m[1], v === null ? "" : String(v), `card ${k}`);
    }
    const rows = [...dom.matchAll(/<tr class="failover" data-index="(\d+)">(.*?)<\/tr>/g)];
    assert.equal(rows.length, r.failovers.length);
    for (const [i, row] of rows.entries()) {
      const f = r.failovers[i] as DrillReport["failovers"][number];
      const cell = (field: string) =>
        new RegExp(`data-field="${field}" data-value="([^"]*)"`).exec(row[2] as string)?.[1];
      assert.equal(cell("fault"), f.fault);
      assert.equal(cell("activationMs"), String(f.activationMs));
      assert.equal(cell("firstOutputMs"), String(f.firstOutputMs));
      assert.equal(cell("stallMaxMs"), String(f.stall.maxMs));
      assert.equal(cell("lostWrites"), String(f.client?.lostWrites));
      assert.equal(cell("resets"), String(f.client?.resets));
      assert.equal(cell("resyncBytes"), String(f.resyncBytes));
      assert.equal(cell("result"), "ok");
    }
    // Self-contained: nothing to fetch.
    const page = readFileSync(html, "utf8");
    assert.doesNotMatch(page, /<(link|img|iframe)\b|<script[^>]+src=|https?:\/\/(?!www\.w3\.org)/);
    const png = join(dir, "drill.png");
    await screenshot(html, png);
    assert.ok(statSync(png).size > 20_000, "a screenshot with content");
  });
});

test("remusd drill: bad usage exits 2 with one line", async () => {
  const cases: [string[], RegExp][] = [
    [["drill"], /--local .* or --control/],
    [["drill", "--local", "--faults", "sigkill,nap"], /unknown fault 'nap'/],
    [["drill", "--control", "127.0.0.1:1"], /exactly two values/],
    [["drill", "--control", "127.0.0.1:1,127.0.0.1:2"], /--switch HOST:PORT, or --no-check/],
    [["drill", "--local", "--heal", "true"], /for a running pair/],
  ];
  for (const [args, re] of cases) {
    const p = startProc("drill-bad", args);
    assert.equal(await p.exited, 2, args.join(" "));
    assert.match(p.stderr, re);
    assert.equal(p.stderr.trim().split("\n").length, 1);
  }
});
