#!/usr/bin/env node
/**
 * `remusd`: the daemons (primary, backup), the vswitch, the client, the demo
 * and the benchmarks. Exit code 0 on success, 1 on a runtime failure, 2 on bad
 * usage, with a one-line reason on stderr.
 */
import { startApi } from "../api/server.js";
import { Daemon } from "../daemon/daemon.js";
import { resolveSettings } from "../daemon/settings.js";
import { isRemusError } from "../errors.js";
import { VERSION } from "../version.js";
import { type CommandSpec, helpText, parseOptions, UsageError } from "./options.js";
import { BACKUP_SPEC, PRIMARY_SPEC } from "./specs.js";

const COMMANDS: Record<string, { spec: CommandSpec; run: (argv: string[]) => Promise<void> }> = {
  primary: { spec: PRIMARY_SPEC, run: (a) => runDaemon("primary", PRIMARY_SPEC, a) },
  backup: { spec: BACKUP_SPEC, run: (a) => runDaemon("backup", BACKUP_SPEC, a) },
};

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

async function runDaemon(role: "primary" | "backup", spec: CommandSpec, argv: string[]): Promise<void> {
  const { values, help } = parseOptions(spec, argv);
  if (help) {
    process.stdout.write(`${helpText(spec)}\n`);
    return;
  }
  const settings = resolveSettings(role, values);
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
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      d.log.warn({ signal: sig }, "second signal: exiting at once");
      process.exit(1);
    }
    d.log.info({ signal: sig }, "shutting down");
    void (async () => {
      await api.app.close();
      await d.stop();
      process.exit(0);
    })();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(`${usage()}\n`);
    if (cmd === undefined) process.exitCode = 2;
    return;
  }
  if (cmd === "--version" || cmd === "version") {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const c = COMMANDS[cmd];
  if (!c) throw new UsageError(`unknown command '${cmd}' (run remusd --help)`);
  await c.run(rest);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof UsageError) {
    process.stderr.write(`remusd: ${e.message}\n`);
    process.exit(2);
  }
  const msg = isRemusError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
  process.stderr.write(`remusd: ${msg}\n`);
  process.exit(1);
});
