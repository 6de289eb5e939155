/**
 * `remusd drill`: the command line of src/drill. Resolves the options, sets
 * up the pair (its own with --local, or a running one), runs the drill, and
 * writes the summary table, the JSON and the HTML page.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSecret } from "../daemon/settings.js";
import { runDrill } from "../drill/drill.js";
import { htmlReport } from "../drill/html.js";
import { LocalPair, type PairDriver, RemotePair } from "../drill/pair.js";
import { planFaults } from "../drill/plan.js";
import { Progress } from "../drill/progress.js";
import { summaryText } from "../drill/report.js";
import { usageError } from "../errors.js";
import { parseHostPort, parseIpOption } from "../net/addr.js";
import type { OptValues } from "./options.js";

function pairOf(list: string | undefined, what: string): [string, string] | undefined {
  if (list === undefined) return undefined;
  const parts = list.split(",").map((s) => s.trim());
  if (parts.length !== 2 || parts.some((p) => p === ""))
    throw usageError(`${what} needs exactly two values separated by a comma, got '${list}'`);
  return parts as [string, string];
}

export async function runDrillCommand(v: OptValues): Promise<void> {
  const local = v.local === true;
  const controls = pairOf(v.control as string | undefined, "--control");
  if (local === (controls !== undefined))
    throw usageError("give either --local (the drill starts its own pair) or --control HOST:PORT,HOST:PORT");
  for (const c of controls ?? []) parseHostPort(c.replace(/^https?:\/\//, ""), "--control");
  const peers = pairOf(v.peers as string | undefined, "--peers");
  for (const p of peers ?? []) {
    if (!/^wss?:\/\/[^\s]+$/.test(p)) throw usageError(`--peers: expected ws://HOST:PORT, got '${p}'`);
  }
  if (local && (v.heal !== undefined || peers !== undefined || v.switch !== undefined)) {
    throw usageError(
      "--heal, --peers and --switch are for a running pair (--control); --local sets them up itself",
    );
  }
  if (!local && (v.tap !== undefined || v.dir !== undefined))
    throw usageError("--tap and --dir are for --local");
  parseIpOption(v.target as string, "--target");
  const failovers = v.failovers as number;
  const faults = planFaults(v.faults as string, failovers, v.seed as number);
  const check = v["no-check"] !== true;
  if (!local && check && v.switch === undefined)
    throw usageError("the checking client needs the pair's vswitch: give --switch HOST:PORT, or --no-check");
  const json = v.json as string | undefined;
  const html = v.html as string | undefined;

  const progress = new Progress(process.stdout, failovers);
  const say = (s: string) => progress.log(s);
  const dir = local
    ? ((v.dir as string | undefined) ?? mkdtempSync(join(tmpdir(), "remusd-drill-")))
    : undefined;
  say(`remusd drill: ${failovers} failovers: ${faults.join(", ")}`);
  let pair: PairDriver | undefined;
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    say(`interrupted (${sig}): stopping`);
    void (pair?.stop() ?? Promise.resolve()).then(() => {
      if (dir && v.dir === undefined) rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    if (local) {
      say(`starting a vswitch and a pair in ${dir}`);
      pair = await LocalPair.start(
        {
          dir: dir as string,
          domainMib: v["domain-mib"] as number,
          workload: v.workload as string,
          heartbeatMs: v["heartbeat-ms"] as number,
          heartbeatMisses: v["heartbeat-misses"] as number,
          verify: v.verify === true,
          tap: v.tap as string | undefined,
        },
        say,
      );
    } else {
      const token = readSecret(
        v["token-file"] as string | undefined,
        process.env.REMUSD_API_TOKEN,
        "API token",
      );
      pair = new RemotePair({
        controls: controls as [string, string],
        token,
        peers,
        heal: v.heal as string | undefined,
        switchAddr: v.switch as string | undefined,
        healTimeoutMs: (v["protect-timeout"] as number) * 1000,
      });
    }
    const report = await runDrill({
      pair,
      faults,
      faultMs: v["fault-ms"] as number | undefined,
      dwellMs: (v.dwell as number) * 1000,
      check: check
        ? {
            connections: v.connections as number,
            pipeline: v.pipeline as number,
            keys: 16,
            seed: v.seed as number,
            target: v.target as string,
          }
        : null,
      command: v.client as string | undefined,
      activationTimeoutMs: (v["activation-timeout"] as number) * 1000,
      protectTimeoutMs: (v["protect-timeout"] as number) * 1000,
      progress,
      settings: {
        mode: local ? "local" : "running pair",
        failovers,
        faultSpec: v.faults,
        seed: v.seed,
        dwellS: v.dwell,
        ...(local
          ? {
              domainMib: v["domain-mib"],
              workload: v.workload,
              heartbeatMs: v["heartbeat-ms"],
              heartbeatMisses: v["heartbeat-misses"],
            }
          : {}),
        checkingClient: check ? { connections: v.connections, pipeline: v.pipeline } : null,
        command: v.client ?? null,
      },
    });
    if (interrupted) return;
    say("");
    say(summaryText(report));
    if (json) {
      writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
      say(`JSON report: ${json}`);
    }
    if (html) {
      writeFileSync(html, htmlReport(report));
      say(`HTML report: ${html}`);
    }
    process.exitCode = report.ok ? 0 : 1;
  } finally {
    await pair?.stop();
    if (dir && v.dir === undefined && !interrupted) rmSync(dir, { recursive: true, force: true });
  }
}
