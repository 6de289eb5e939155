#!/usr/bin/env node
/**
 * `remusd`: the daemons (primary, backup), the vswitch, the client, the demo
 * and the benchmarks. Exit code 0 on success, 1 on a runtime failure, 2 on bad
 * usage, with a one-line reason on stderr.
 */
import { startApi } from "../api/server.js";
import { runBench } from "../bench/index.js";
import { Daemon } from "../daemon/daemon.js";
import { resolveSettings } from "../daemon/settings.js";
import { EXIT, exitCodeOf, failureLine, usageError } from "../errors.js";
import { VERSION } from "../version.js";
import { runClient } from "./client.js";
import { runDemo } from "./demo.js";
import { runDrillCommand } from "./drill.js";
import { type CommandSpec, helpText, type OptValues, parseOptions } from "./options.js";
import {
  BACKUP_SPEC,
  BENCH_SPEC,
  CLIENT_SPEC,
  DEMO_SPEC,
  DRILL_SPEC,
  NODE_SPEC,
  PRIMARY_SPEC,
  VSWITCH_SPEC,
} from "./specs.js";
import { runVswitch } from "./vswitch.js";

const COMMANDS: Record<string, { spec: CommandSpec; run: (argv: string[]) => Promise<void> }> = {
  primary: { spec: PRIMARY_SPEC, run: (a) => runDaemon("primary", PRIMARY_SPEC, a) },
  backup: { spec: BACKUP_SPEC, run: (a) => runDaemon("backup", BACKUP_SPEC, a) },
  node: { spec: NODE_SPEC, run: (a) => runDaemon("node", NODE_SPEC, a) },
  vswitch: { spec: VSWITCH_SPEC, run: (a) => runSimple(VSWITCH_SPEC, a, runVswitch) },
  client: { spec: CLIENT_SPEC, run: (a) => runSimple(CLIENT_SPEC, a, runClient) },
  demo: { spec: DEMO_SPEC, run: (a) => runSimple(DEMO_SPEC, a, runDemo) },
  drill: { spec: DRILL_SPEC, run: (a) => runSimple(DRILL_SPEC, a, runDrillCommand) },
  bench: {
    spec: BENCH_SPEC,
    run: (a) =>
      runSimple(BENCH_SPEC, a, async (v) => {
        await runBench({
          quick: v.quick === true,
          ...(v.json ? { json: v.json as string } : {}),
          ...(v.only ? { only: v.only as string } : {}),
        });
      }),
  },
};

async function runSimple(
  spec: CommandSpec,
  argv: string[],
  run: (v: OptValues) => Promise<void>,
): Promise<void> {
  const { values, help } = parseOptions(spec, argv);
  if (help) {
    process.stdout.write(`${helpText(spec)}\n`);
    return;
  }
  await run(values);
}

function usage(): string {
  return [
    `remusd ${VERSION}: high-availability replication of a running domain (Remus-style checkpointing)`,
    "",
    "Usage: remusd COMMAND [options]",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)}${c.spec.summary}`),
    "",
    "Run 'remusd COMMAND --help' for a command's options.",
  ].join("\n");
}

async function runDaemon(
  role: "primary" | "backup" | "node",
  spec: CommandSpec,
  argv: string[],
): Promise<void> {
  const { values, help, given } = parseOptions(spec, argv);
  if (help) {
    process.stdout.write(`${helpText(spec)}\n`);
    return;
  }
  const settings = resolveSettings(role, values, process.env, given);
  const d = new Daemon(settings);
  await d.start();
  const api = await startApi(d, settings.control.host, settings.control.port);
  d.log.info(
    {
      control: `http://${settings.control.host}:${api.port}`,
      replication: d.replicationPort,
      peer: settings.peer,
      insecure: settings.insecure,
    },
    `remusd ${role} started`,
  );
  if (settings.apiToken === undefined && !settings.unsafeOpenApi) {
    d.log.warn(
      "no API token: the mutating routes (failover, checkpoint, config changes) are refused; give --api-token-file FILE or REMUSD_API_TOKEN",
    );
  } else if (settings.apiToken === undefined) {
    d.log.warn(
      "--unsafe-open-api: anyone who reaches the control address can fail over or reconfigure this daemon",
    );
  }
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      d.log.warn({ signal: sig }, "second signal: exiting at once");
      d.flushLog();
      process.exit(EXIT.runtime);
    }
    d.log.info({ signal: sig, state: d.node.state }, "shutting down");
    void (async () => {
      let code: number = EXIT.ok;
      try {
        // Stop accepting requests first, then the final checkpoint and the planned GOODBYE.
        await api.app.close();
        await d.stop();
        d.log.info({ epoch: d.node.committed }, "stopped");
      } catch (e) {
        d.log.error({ err: e }, "error while shutting down");
        code = EXIT.runtime;
      }
      d.flushLog();
      process.exit(code);
    })();
  };
  // A conflict the daemon cannot resolve itself (its settings contradict its primary's domain):
  // it has changed nothing; it stops and exits with the error's code.
  d.onFatal = (e) => {
    process.stderr.write(`remusd: ${failureLine(e)}\n`);
    d.log.error({ code: e.code }, e.message);
    void d.stop(0).finally(() => {
      d.flushLog();
      process.exit(exitCodeOf(e));
    });
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(`${usage()}\n`);
    if (cmd === undefined) process.exitCode = EXIT.usage;
    return;
  }
  if (cmd === "--version" || cmd === "version") {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const c = COMMANDS[cmd];
  if (!c) throw usageError(`unknown command '${cmd}' (run remusd --help)`);
  await c.run(rest);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`remusd: ${failureLine(e)}\n`);
  process.exit(exitCodeOf(e));
});
