/**
 * The drill's report as one self-contained HTML page: inline CSS, inline SVG
 * charts drawn here (they show without JavaScript), the report's JSON in a
 * script element, and a few lines of inline JavaScript for the charts' hover
 * read-out. No network is needed to open it: no CDN, no font, no image file.
 *
 * Every number on the page carries `data-field`/`data-value` (cards, rows)
 * or `data-*` counts (charts), so a test can compare the page with the JSON.
 */
import { fmtBytes, fmtMs } from "./drill.js";
import type { DrillReport, FailoverRecord, TimelineBin } from "./measure.js";
import { COLUMNS, rowOf } from "./report.js";

const esc = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string,
  );

const W = 1000;
const H = 250;
const M = { l: 56, r: 56, t: 26, b: 30 };
const PW = W - M.l - M.r;
const PH = H - M.t - M.b;

const f1 = (x: number) => (Math.round(x * 10) / 10).toString();

/** x of a time (ms after the start). */
const xOf = (t: number, span: number) => M.l + (t / Math.max(1, span)) * PW;

/** The failovers as bands and labelled lines on a chart. */
function markers(r: DrillReport, span: number): string {
  return r.failovers
    .map((f) => {
      const x0 = xOf(f.at, span);
      const xa = xOf(f.at + (f.activationMs ?? 0), span);
      const xp = f.protectedMs === null ? xa : xOf(f.at + f.protectedMs, span);
      const cls = f.ok ? "ok" : "bad";
      return (
        `<g class="failover-marker ${cls}" data-index="${f.index}">` +
        `<rect class="unprotected" x="${f1(xa)}" y="${M.t}" width="${f1(Math.max(1, xp - xa))}" height="${PH}"><title>#${f.index}: unprotected until the new backup synced (${esc(fmtMs(f.protectedMs))} after the fault)</title></rect>` +
        `<rect class="down" x="${f1(x0)}" y="${M.t}" width="${f1(Math.max(1.5, xa - x0))}" height="${PH}"><title>#${f.index} ${esc(f.fault)}: from the fault to the activation (${esc(fmtMs(f.activationMs))})</title></rect>` +
        `<line x1="${f1(x0)}" x2="${f1(x0)}" y1="${M.t - 4}" y2="${M.t + PH}"/>` +
        `<text x="${f1(x0 + 3)}" y="${M.t - 8}">#${f.index} ${esc(f.fault)}</text></g>`
      );
    })
    .join("");
}

function timeAxis(span: number): string {
  const s = span / 1000;
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((x) => s / x <= 12) ?? 1200;
  let out = "";
  for (let t = 0; t <= s; t += step) {
    const x = xOf(t * 1000, span);
    out += `<line class="grid" x1="${f1(x)}" x2="${f1(x)}" y1="${M.t}" y2="${M.t + PH}"/><text class="tick" x="${f1(x)}" y="${H - 10}" text-anchor="middle">${t} s</text>`;
  }
  return out;
}

function path(points: [number, number][]): string {
  let d = "";
  let pen = false;
  for (const [x, y] of points) {
    if (Number.isNaN(y)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${f1(x)},${f1(y)}`;
    pen = true;
  }
  return d;
}

/** Request latency per bin (p50, p99, max), on a log scale. */
function latencyChart(r: DrillReport, span: number): string {
  const bins = r.timeline.bins;
  const binMs = r.timeline.binMs;
  const top = Math.max(1000, ...bins.map((b) => b.maxMs ?? 0));
  const lo = 1;
  const yOf = (ms: number) => M.t + PH - (Math.log10(Math.max(lo, ms)) / Math.log10(top)) * PH;
  const series = (k: keyof Pick<TimelineBin, "p50Ms" | "p99Ms" | "maxMs">) =>
    bins.map((b): [number, number] => [
      xOf(b.t + binMs / 2, span),
      b[k] === null ? Number.NaN : yOf(b[k] as number),
    ]);
  let ticks = "";
  for (let v = 1; v <= top; v *= 10) {
    const y = yOf(v);
    ticks += `<line class="grid" x1="${M.l}" x2="${M.l + PW}" y1="${f1(y)}" y2="${f1(y)}"/><text class="tick" x="${M.l - 6}" y="${f1(y + 4)}" text-anchor="end">${v >= 1000 ? `${v / 1000} s` : `${v} ms`}</text>`;
  }
  const points = bins.filter((b) => b.maxMs !== null).length;
  return (
    `<svg id="latency" class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="request latency over time" data-bins="${bins.length}" data-points="${points}" data-bin-ms="${binMs}" data-span-ms="${span}">` +
    `${ticks}${timeAxis(span)}${markers(r, span)}` +
    `<path class="s-max" d="${path(series("maxMs"))}"/>` +
    `<path class="s-p99" d="${path(series("p99Ms"))}"/>` +
    `<path class="s-p50" d="${path(series("p50Ms"))}"/>` +
    `<g class="hover"><line y1="${M.t}" y2="${M.t + PH}"/></g></svg>`
  );
}

/** Replies per second per bin (and a user's command's reported rate, on its own axis). */
function throughputChart(r: DrillReport, span: number): string {
  const bins = r.timeline.bins;
  const binMs = r.timeline.binMs;
  const top = Math.max(10, ...bins.map((b) => b.repliesPerSec)) * 1.1;
  const yOf = (v: number) => M.t + PH - (v / top) * PH;
  const pts = bins.map((b): [number, number] => [xOf(b.t + binMs / 2, span), yOf(b.repliesPerSec)]);
  const area =
    pts.length > 0
      ? `${path(pts)}L${f1((pts[pts.length - 1] as [number, number])[0])},${M.t + PH}L${f1((pts[0] as [number, number])[0])},${M.t + PH}Z`
      : "";
  let ticks = "";
  const step = niceStep(top / 4);
  for (let v = 0; v <= top; v += step) {
    const y = yOf(v);
    ticks += `<line class="grid" x1="${M.l}" x2="${M.l + PW}" y1="${f1(y)}" y2="${f1(y)}"/><text class="tick" x="${M.l - 6}" y="${f1(y + 4)}" text-anchor="end">${v}</text>`;
  }
  let cmd = "";
  const rates = r.command?.rates ?? [];
  if (rates.length > 0) {
    const ctop = Math.max(10, ...rates.map((x) => x.rps)) * 1.1;
    const cy = (v: number) => M.t + PH - (v / ctop) * PH;
    cmd =
      `<path class="s-cmd" d="${path(rates.map((x): [number, number] => [xOf(x.t, span), cy(x.rps)]))}"/>` +
      `<text class="tick" x="${M.l + PW + 6}" y="${M.t + 10}">${Math.round(ctop)}</text><text class="tick" x="${M.l + PW + 6}" y="${M.t + PH}">0</text>`;
  }
  const points = bins.filter((b) => b.repliesPerSec > 0).length;
  return (
    `<svg id="throughput" class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="throughput over time" data-bins="${bins.length}" data-points="${points}" data-command-points="${rates.length}">` +
    `${ticks}${timeAxis(span)}${markers(r, span)}<path class="s-rps" d="${area}"/>${cmd}` +
    `<g class="hover"><line y1="${M.t}" y2="${M.t + PH}"/></g></svg>`
  );
}

function niceStep(x: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(1, x)));
  return ([1, 2, 5, 10].find((m) => m * p >= x) ?? 10) * p;
}

/** The per-failover table: the summary table's columns, each cell with its JSON value. */
function failoverTable(r: DrillReport): string {
  const values = (f: FailoverRecord): (string | number | null)[] => [
    f.index,
    f.fault,
    `${f.from}-${f.to}`,
    f.detectionMs,
    f.activationMs,
    f.firstOutputMs,
    f.stall.maxMs,
    f.client?.resets ?? null,
    f.client?.lostWrites ?? null,
    (f.client ? f.client.wrongReads + f.client.protocolErrors : 0) + f.commandErrors,
    f.oldPrimary,
    f.protectedMs,
    f.resyncBytes,
    f.ok ? "ok" : "fail",
  ];
  const fields = [
    "index",
    "fault",
    "sides",
    "detectionMs",
    "activationMs",
    "firstOutputMs",
    "stallMaxMs",
    "resets",
    "lostWrites",
    "errors",
    "oldPrimary",
    "protectedMs",
    "resyncBytes",
    "result",
  ];
  const head = COLUMNS.map((c) => `<th>${esc(c)}</th>`).join("");
  const rows = r.failovers
    .map((f) => {
      const text = rowOf(f);
      const v = values(f);
      const cells = text
        .map(
          (t, i) =>
            `<td data-field="${fields[i]}" data-value="${esc(String(v[i] ?? ""))}"${i === text.length - 1 ? ` class="${f.ok ? "ok" : "bad"}"` : ""}>${esc(t)}</td>`,
        )
        .join("");
      const problems = f.problems.length
        ? `<tr class="problems"><td></td><td colspan="${COLUMNS.length - 1}">${f.problems.map(esc).join("<br>")}</td></tr>`
        : "";
      return `<tr class="failover" data-index="${f.index}">${cells}</tr>${problems}`;
    })
    .join("");
  return `<table id="failovers"><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}

function card(field: string, label: string, value: number | null, text: string, bad = false): string {
  return `<div class="card${bad ? " bad" : ""}" data-field="${field}" data-value="${value ?? ""}"><div class="v">${esc(text)}</div><div class="k">${esc(label)}</div></div>`;
}

const CSS = `
:root{--fg:#1d2330;--mut:#6b7385;--bg:#f6f7fb;--card:#fff;--ok:#1f9d55;--bad:#d64545;--amber:#f0a202;--p50:#2b6cb0;--p99:#dd6b20;--max:#c53030;--rps:#3182ce}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:24px}
header{display:flex;align-items:center;gap:18px;margin-bottom:18px}
.verdict{font-weight:700;font-size:22px;padding:8px 16px;border-radius:10px;color:#fff}
.verdict.ok{background:var(--ok)}.verdict.bad{background:var(--bad)}
h1{font-size:22px;margin:0}h2{font-size:16px;margin:22px 0 8px}
.sub{color:var(--mut)}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:10px}
.card{background:var(--card);border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.card .v{font-size:24px;font-weight:650}.card .k{color:var(--mut);font-size:12px}
.card.bad .v{color:var(--bad)}
.panel{background:var(--card);border-radius:10px;padding:10px 12px;box-shadow:0 1px 2px rgba(0,0,0,.06);position:relative}
svg.chart{width:100%;height:auto;display:block}
.grid{stroke:#e6e8ef;stroke-width:1}.tick{fill:var(--mut);font-size:11px}
.s-p50{fill:none;stroke:var(--p50);stroke-width:1.6}.s-p99{fill:none;stroke:var(--p99);stroke-width:1.3}
.s-max{fill:none;stroke:var(--max);stroke-width:1;opacity:.55}
.s-rps{fill:rgba(49,130,206,.25);stroke:var(--rps);stroke-width:1.3}.s-cmd{fill:none;stroke:#805ad5;stroke-width:1.4;stroke-dasharray:4 3}
.l.p50{color:var(--p50)}.l.p99{color:var(--p99)}.l.max{color:var(--max)}.l.rps{color:var(--rps)}.l.cmd{color:#805ad5}
.failover-marker line{stroke:var(--bad);stroke-width:1.2}.failover-marker text{fill:var(--fg);font-size:11px;font-weight:600}
.failover-marker .down{fill:rgba(214,69,69,.35)}.failover-marker .unprotected{fill:rgba(240,162,2,.16)}
.hover line{stroke:#888;stroke-dasharray:2 2;display:none}
.tip{position:absolute;pointer-events:none;background:#1d2330;color:#fff;font-size:12px;padding:4px 8px;border-radius:6px;display:none;white-space:nowrap}
table{width:100%;border-collapse:collapse;background:var(--card);border-radius:10px;overflow:hidden;box-shadow:0 1px 2px rgba(0,0,0,.06);font-size:12px}
th,td{padding:6px 6px;text-align:right;border-bottom:1px solid #eef0f5;white-space:nowrap}
th{background:#eef1f7;font-weight:600;color:#3a4254}
td:nth-child(2),td:nth-child(3),td:nth-child(11),th:nth-child(2),th:nth-child(3),th:nth-child(11){text-align:left}
td.ok{color:var(--ok);font-weight:700}td.bad{color:var(--bad);font-weight:700}
tr.problems td{text-align:left;color:var(--bad);white-space:normal}
.key{display:flex;gap:16px;color:var(--mut);font-size:12px;margin:6px 2px}
.sw{display:inline-block;width:12px;height:10px;border-radius:2px;vertical-align:-1px;margin-right:4px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;background:var(--card);padding:12px;border-radius:10px;margin:0}
dt{color:var(--mut)}dd{margin:0}
ul.problems{color:var(--bad)}
`;

const JS = `
(function(){
  var data = JSON.parse(document.getElementById("drill-data").textContent);
  var bins = data.timeline.bins, binMs = data.timeline.binMs;
  document.querySelectorAll("svg.chart").forEach(function(svg){
    var panel = svg.parentNode, tip = document.createElement("div");
    tip.className = "tip"; panel.appendChild(tip);
    var line = svg.querySelector(".hover line"), span = Number(document.getElementById("latency").dataset.spanMs);
    svg.addEventListener("mousemove", function(ev){
      var box = svg.getBoundingClientRect(), x = (ev.clientX - box.left) * ${W} / box.width;
      var t = (x - ${M.l}) / ${PW} * span, i = Math.floor(t / binMs), b = bins[i];
      if (!b) { line.style.display = "none"; tip.style.display = "none"; return; }
      line.setAttribute("x1", x); line.setAttribute("x2", x); line.style.display = "block";
      var f = function(v){ return v === null ? "-" : Math.round(v) + " ms"; };
      tip.textContent = (b.t / 1000).toFixed(1) + " s: " + b.repliesPerSec + " replies/s, p50 " + f(b.p50Ms) + ", p99 " + f(b.p99Ms) + ", max " + f(b.maxMs);
      tip.style.display = "block"; tip.style.left = Math.min(ev.clientX - box.left + 12, box.width - 320) + "px"; tip.style.top = "8px";
    });
    svg.addEventListener("mouseleave", function(){ line.style.display = "none"; tip.style.display = "none"; });
  });
  document.body.dataset.rendered = "yes";
})();
`;

/** The whole page. */
export function htmlReport(r: DrillReport): string {
  const span = r.durationMs;
  const t = r.totals;
  const title = `remusd drill: ${r.ok ? "PASS" : "FAIL"}, ${t.passed}/${t.failovers} failovers`;
  const c = r.client;
  const problems = [
    ...r.failovers.flatMap((f) => f.problems.map((p) => `failover ${f.index}: ${p}`)),
    ...r.problems,
  ];
  const settings = Object.entries(r.settings)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(typeof v === "string" ? v : JSON.stringify(v))}</dd>`)
    .join("");
  const json = JSON.stringify(r).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body data-ok="${r.ok}"><main>
<header><div class="verdict ${r.ok ? "ok" : "bad"}" id="verdict">${r.ok ? "PASS" : "FAIL"}</div>
<div><h1>Failover drill</h1><div class="sub">${esc(r.pair)} · ${esc(r.startedAt.replace("T", " ").slice(0, 19))} UTC · ${esc(fmtMs(r.durationMs))} · ${esc(r.tool)}</div></div></header>
<section class="cards">
${card("passed", "failovers passed", t.passed, `${t.passed}/${t.failovers}`, t.passed < t.failovers)}
${card("lostWrites", "lost acknowledged writes", t.lostWrites, String(t.lostWrites), t.lostWrites > 0)}
${card("resets", "connection resets", t.resets, String(t.resets), t.resets > 0)}
${card("errors", "errors", t.errors, String(t.errors), t.errors > 0)}
${card("medianActivationMs", "median activation", t.medianActivationMs, fmtMs(t.medianActivationMs))}
${card("maxStallMs", "longest request", t.maxStallMs, fmtMs(t.maxStallMs))}
</section>
<h2>Request latency</h2>
<div class="panel">${latencyChart(r, span)}</div>
<div class="key"><span class="l p50">━ p50</span><span class="l p99">━ p99</span><span class="l max">━ max</span><span>of the requests sent in each ${r.timeline.binMs} ms (log scale)</span><span><span class="sw" style="background:rgba(214,69,69,.5)"></span>fault → activation</span><span><span class="sw" style="background:rgba(240,162,2,.3)"></span>unprotected until the new backup synced</span></div>
<h2>Throughput</h2>
<div class="panel">${throughputChart(r, span)}</div>
<div class="key"><span class="l rps">■ checking client: replies per second</span>${r.command?.rates.length ? `<span class="l cmd">╍ the client command's requests per second (right axis)</span>` : ""}</div>
<h2>Failovers</h2>
${failoverTable(r)}
<div class="key"><span>times are from the fault · stall: the slowest request across the event (p50/p99/max in the JSON and the terminal table) · resync: the new backup's full sync</span></div>
${problems.length ? `<h2>Problems</h2><ul class="problems">${problems.map((p) => `<li>${esc(p)}</li>`).join("")}</ul>` : ""}
<h2>Client and settings</h2>
<dl>
<dt>checking client</dt><dd>${c ? `${c.requests} requests, ${c.replies} replies, ${c.verifiedKeys} acknowledged values read back, ${c.reconnects} reconnects, longest stall ${Math.round(c.longestStallMs)} ms` : "none (lost writes not checked)"}</dd>
${r.command ? `<dt>client command</dt><dd><code>${esc(r.command.command)}</code>: ${r.command.runs} runs, ${r.command.exits} early exits, ${r.command.errorLines.length} error lines</dd>` : ""}
<dt>resync bytes</dt><dd>${r.failovers.map((f) => esc(fmtBytes(f.resyncBytes))).join(", ")}</dd>
${settings}
</dl>
</main>
<script type="application/json" id="drill-data">${json}</script>
<script>${JS}</script>
</body></html>
`;
}
