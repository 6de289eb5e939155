/**
 * Command-line options with one schema per command: every option can come from
 * a flag (`--interval-ms 25`), an environment variable (`REMUSD_INTERVAL_MS`),
 * or a JSON config file (`--config FILE`, keys as flag names or camelCase), in
 * that order of precedence, then the default. Bad usage is a `UsageError`
 * (exit code 2, one line on stderr).
 */
import { readFileSync } from "node:fs";
import { parseIpv4, parseMac } from "../net/wire.js";

export type OptType = "string" | "int" | "number" | "bool" | "hostport" | "wsurl" | "choice";

export interface OptSpec {
  readonly name: string;
  readonly type: OptType;
  readonly help: string;
  readonly default?: string | number | boolean;
  readonly placeholder?: string;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  /** Environment variable (default: REMUSD_ + NAME in upper snake case). */
  readonly env?: string;
  readonly required?: boolean;
}

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly options: readonly OptSpec[];
  readonly details?: string;
  readonly examples?: readonly string[];
}

export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export type OptValues = Record<string, string | number | boolean | undefined>;

export const envName = (name: string): string => `REMUSD_${name.toUpperCase().replace(/-/g, "_")}`;
const camel = (name: string): string => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function parseHostPort(v: string, what = "address"): HostPort {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(v.trim());
  if (!m) throw new UsageError(`${what} must be HOST:PORT, got '${v}'`);
  const port = Number(m[2]);
  if (port > 65535) throw new UsageError(`${what}: port ${port} is above 65535`);
  const host = (m[1] as string).replace(/^\[|\]$/g, "") || "0.0.0.0";
  return { host, port };
}

function coerce(spec: OptSpec, raw: string | number | boolean, source: string): string | number | boolean {
  const where = source === "--" ? `--${spec.name}` : `${source} ${spec.name}`;
  switch (spec.type) {
    case "bool": {
      if (typeof raw === "boolean") return raw;
      const s = String(raw).toLowerCase();
      if (["1", "true", "yes", "on", ""].includes(s)) return true;
      if (["0", "false", "no", "off"].includes(s)) return false;
      throw new UsageError(`${where}: expected true or false, got '${raw}'`);
    }
    case "int":
    case "number": {
      const n = typeof raw === "number" ? raw : Number(String(raw).trim());
      if (String(raw).trim() === "" || !Number.isFinite(n) || (spec.type === "int" && !Number.isInteger(n))) {
        throw new UsageError(
          `${where}: expected ${spec.type === "int" ? "an integer" : "a number"}, got '${raw}'`,
        );
      }
      if (spec.min !== undefined && n < spec.min)
        throw new UsageError(`${where}: ${n} is below the minimum ${spec.min}`);
      if (spec.max !== undefined && n > spec.max)
        throw new UsageError(`${where}: ${n} is above the maximum ${spec.max}`);
      return n;
    }
    case "hostport":
      parseHostPort(String(raw), where);
      return String(raw);
    case "wsurl": {
      let u: URL;
      try {
        u = new URL(String(raw));
      } catch {
        throw new UsageError(`${where}: expected a ws://HOST:PORT URL, got '${raw}'`);
      }
      if (u.protocol !== "ws:" && u.protocol !== "wss:") {
        throw new UsageError(`${where}: expected a ws:// or wss:// URL, got '${raw}'`);
      }
      return String(raw);
    }
    case "choice": {
      const s = String(raw);
      if (!spec.choices?.includes(s))
        throw new UsageError(`${where}: must be one of ${spec.choices?.join(", ")}, got '${s}'`);
      return s;
    }
    case "string":
      return String(raw);
  }
}

/** A MAC address option (aa:bb:cc:dd:ee:ff), or a UsageError. */
export function parseMacOption(s: string, what: string): Uint8Array {
  try {
    return parseMac(s);
  } catch {
    throw new UsageError(`${what}: bad MAC address '${s}' (want aa:bb:cc:dd:ee:ff)`);
  }
}

/** An IPv4 address option, or a UsageError. */
export function parseIpOption(s: string, what: string): number {
  try {
    return parseIpv4(s);
  } catch {
    throw new UsageError(`${what}: bad IPv4 address '${s}'`);
  }
}

/** Parses `argv` (after the command name) for `cmd`, reading env and the config file. */
export function parseOptions(
  cmd: CommandSpec,
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { values: OptValues; help: boolean } {
  const byName = new Map(cmd.options.map((o) => [o.name, o]));
  const fromFlags = new Map<string, string | boolean>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    if (!arg.startsWith("--"))
      throw new UsageError(`unexpected argument '${arg}' (see remusd ${cmd.name} --help)`);
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = byName.get(name);
    if (!spec) throw new UsageError(`unknown option --${name} for 'remusd ${cmd.name}' (see --help)`);
    if (spec.type === "bool") {
      fromFlags.set(name, value ?? true);
      continue;
    }
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2))
        throw new UsageError(`option --${name} needs a value`);
      value = next;
      i++;
    }
    fromFlags.set(name, value);
  }
  if (help) return { values: {}, help };

  let config: Record<string, unknown> = {};
  const configPath = (fromFlags.get("config") as string | undefined) ?? env.REMUSD_CONFIG;
  if (configPath !== undefined && byName.has("config")) {
    let text: string;
    try {
      text = readFileSync(configPath, "utf8");
    } catch (e) {
      throw new UsageError(`cannot read config file ${configPath}: ${(e as Error).message}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
        throw new Error("not a JSON object");
      config = parsed as Record<string, unknown>;
    } catch (e) {
      throw new UsageError(`config file ${configPath} is not a JSON object: ${(e as Error).message}`);
    }
    const known = new Set(cmd.options.flatMap((o) => [o.name, camel(o.name)]));
    for (const k of Object.keys(config)) {
      if (!known.has(k)) throw new UsageError(`config file ${configPath}: unknown option '${k}'`);
    }
  }

  const values: OptValues = {};
  for (const spec of cmd.options) {
    let raw: string | number | boolean | undefined;
    let source = "option";
    if (fromFlags.has(spec.name)) {
      raw = fromFlags.get(spec.name);
      source = "option --";
    } else if (env[spec.env ?? envName(spec.name)] !== undefined) {
      raw = env[spec.env ?? envName(spec.name)];
      source = `environment ${spec.env ?? envName(spec.name)}:`;
    } else if (config[spec.name] !== undefined || config[camel(spec.name)] !== undefined) {
      const v = config[spec.name] ?? config[camel(spec.name)];
      if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
        throw new UsageError(`config file: option '${spec.name}' must be a string, number or boolean`);
      }
      raw = v;
      source = "config";
    } else {
      raw = spec.default;
    }
    if (raw === undefined) {
      if (spec.required) {
        throw new UsageError(
          `missing --${spec.name} (or ${spec.env ?? envName(spec.name)}); see remusd ${cmd.name} --help`,
        );
      }
      values[spec.name] = undefined;
      continue;
    }
    values[spec.name] = coerce(spec, raw, source === "option --" ? "--" : source).valueOf();
  }
  return { values, help };
}

/** The `--help` text of a command. */
export function helpText(cmd: CommandSpec): string {
  const lines = [`remusd ${cmd.name}: ${cmd.summary}`, "", `Usage: ${cmd.usage}`, ""];
  if (cmd.details) lines.push(cmd.details, "");
  lines.push("Options:");
  const rows = cmd.options.map((o) => {
    const flag = o.type === "bool" ? `--${o.name}` : `--${o.name} ${o.placeholder ?? o.type.toUpperCase()}`;
    const def = o.default !== undefined && o.type !== "bool" ? ` (default ${o.default})` : "";
    return [flag, `${o.help}${def} [${o.env ?? envName(o.name)}]`] as [string, string];
  });
  rows.push(["--help", "show this help"]);
  const w = Math.min(34, Math.max(...rows.map((r) => r[0].length)) + 2);
  for (const [f, h] of rows) lines.push(`  ${f.padEnd(w)}${h}`);
  lines.push("", "Every option can also be set in the environment (shown in brackets) or in a JSON");
  lines.push("file given with --config (keys as option names); flags win over the environment,");
  lines.push("which wins over the file.");
  if (cmd.examples?.length) lines.push("", "Examples:", ...cmd.examples.map((e) => `  ${e}`));
  return lines.join("\n");
}
