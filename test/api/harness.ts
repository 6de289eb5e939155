/**
 * In-process daemons for API tests: a backup and a primary paired over
 * loopback in this process, with a silent logger, and the API built with
 * `buildApi` (requests go through `inject`, no port).
 */
import { FormatRegistry } from "@sinclair/typebox";
import { pino } from "pino";
import { parseOptions } from "../../src/cli/options.js";
import { BACKUP_SPEC, PRIMARY_SPEC } from "../../src/cli/specs.js";
import { Daemon } from "../../src/daemon/daemon.js";
import { type DaemonSettings, resolveSettings } from "../../src/daemon/settings.js";
import { backupArgs, type DaemonOptions, primaryArgs, waitFor } from "../helpers/procs.js";

// TypeBox's Value.Check knows no formats by itself; the API's replies use date-time.
if (!FormatRegistry.Has("date-time")) {
  FormatRegistry.Set(
    "date-time",
    (v) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(v) && !Number.isNaN(Date.parse(v)),
  );
}

// Generous heartbeat timeouts: these tests run beside CPU-heavy ones and test no failure detection.
const SMALL: DaemonOptions = { key: false, domainMib: 4, diskMib: 2, heartbeatMs: 100, heartbeatMisses: 50 };

/** Settings from command-line style arguments and `env` (not the process's environment). */
export function settingsOf(
  role: "primary" | "backup",
  args: string[],
  env: NodeJS.ProcessEnv = {},
): DaemonSettings {
  const { values, given } = parseOptions(role === "primary" ? PRIMARY_SPEC : BACKUP_SPEC, args, env);
  return resolveSettings(role, values, env, given);
}

/** A daemon (not started) with a silent logger. */
export function daemonOf(role: "primary" | "backup", args: string[], env: NodeJS.ProcessEnv = {}): Daemon {
  return new Daemon(settingsOf(role, args, env), pino({ level: "silent" }));
}

export interface Pair {
  readonly primary: Daemon;
  readonly backup: Daemon;
  stop(): Promise<void>;
}

/** Starts a backup and a primary in this process and waits until the primary is protected. */
export async function startPair(
  dir: string,
  extra: { primary?: string[]; backup?: string[] } = {},
): Promise<Pair> {
  const backup = daemonOf("backup", backupArgs(dir, "backup", { ...SMALL, args: extra.backup ?? [] }));
  await backup.start();
  const primary = daemonOf(
    "primary",
    primaryArgs(dir, "primary", `ws://127.0.0.1:${backup.replicationPort}`, {
      ...SMALL,
      workload: "dirty:rate=500",
      args: extra.primary ?? [],
    }),
  );
  await primary.start();
  await waitFor("the primary to be protected", () => primary.primary?.state === "protected");
  return {
    primary,
    backup,
    stop: async () => {
      await primary.stop(1000);
      await backup.stop(1000);
    },
  };
}
