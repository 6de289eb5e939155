/**
 * Command-line options with one schema per command: every option can come from
 * a flag (`--interval-ms 25`), an environment variable (`REMUSD_INTERVAL_MS`),
 * or a JSON config file (`--config FILE`, keys as flag names or camelCase), in
 * that order of precedence, then the default. Bad usage is a RemusError with
 * code `REMUSD_ERR_BAD_USAGE` (exit code 2, one line on stderr). remusd's
 * commands and remusctl's share this parser.
 */
import { readFileSync } from "node:fs";
import { usageError } from "../errors.js";
import { parseHostPort } from "../net/addr.js";

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
  /** Environment variable (default: REMUSD_ + NAME in upper snake case, unless the command says none). */
  readonly env?: string;
  readonly required?: boolean;
  /** Only a flag on the command line sets it: no environment variable, no config file key (dangerous switches). */
  readonly flagOnly?: boolean;
}

export interface CommandSpec {
  /** The program the command belongs to, in messages and help (default "remusd"). */
  readonly program?: string;
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly options: readonly OptSpec[];
  /** Whether arguments that are not options are allowed (returned as `positionals`). */
  readonly positionals?: boolean;
  /**
   * Whether an option without an `env` of its own reads REMUSD_ + NAME
   * (default true). When false, only options that name their variable read one.
   */
  readonly implicitEnv?: boolean;
  readonly details?: string;
  readonly examples?: readonly string[];
}

export type OptValues = Record<string, string | number | boolean | undefined>;

export const envName = (name: string): string => `REMUSD_${name.toUpperCase().replace(/-/g, "_")}`;
const camel = (name: string): string => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The environment variable an option of `cmd` reads, if any. */
export function envOf(cmd: CommandSpec, spec: OptSpec): string | undefined {
  if (spec.flagOnly) return undefined;
  return spec.env ?? (cmd.implicitEnv === false ? undefined : envName(spec.name));
}

/** "remusd primary": the program and the command, as messages and help name them. */
const titleOf = (cmd: CommandSpec): string => [cmd.program ?? "remusd", cmd.name].filter(Boolean).join(" ");

function coerce(spec: OptSpec, raw: string | number | boolean, source: string): string | number | boolean {
  const where = source === "--" ? `--${spec.name}` : `${source} ${spec.name}`;
  switch (spec.type) {
    case "bool": {
      if (typeof raw === "boolean") return raw;
      const s = String(raw).toLowerCase();
      if (["1", "true", "yes", "on", ""].includes(s)) return true;
      if (["0", "false", "no", "off"].includes(s)) return false;
      throw usageError(`${where}: expected true or false, got '${raw}'`);
    }
    case "int":
    case "number": {
      const n = typeof raw === "number" ? raw : Number(String(raw).trim());
      if (String(raw).trim() === "" || !Number.isFinite(n) || (spec.type === "int" && !Number.isInteger(n))) {
        throw usageError(
          `${where}: expected ${spec.type === "int" ? "an integer" : "a number"}, got '${raw}'`,
        );
      }
      if (spec.min !== undefined && n < spec.min)
        throw usageError(`${where}: ${n} is below the minimum ${spec.min}`);
      if (spec.max !== undefined && n > spec.max)
        throw usageError(`${where}: ${n} is above the maximum ${spec.max}`);
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
        throw usageError(`${where}: expected a ws://HOST:PORT URL, got '${raw}'`);
      }
      if (u.protocol !== "ws:" && u.protocol !== "wss:") {
        throw usageError(`${where}: expected a ws:// or wss:// URL, got '${raw}'`);
      }
      return String(raw);
    }
    case "choice": {
      const s = String(raw);
      if (!spec.choices?.includes(s))
        throw usageError(`${where}: must be one of ${spec.choices?.join(", ")}, got '${s}'`);
      return s;
    }
    case "string":
      return String(raw);
  }
}

/** What `parseOptions` found: every option's value, `--help`, and the positional arguments. */
export interface ParsedOptions {
  readonly values: OptValues;
  readonly help: boolean;
  /** Arguments that are not options, in order (only when the command allows them). */
  readonly positionals: string[];
  /** The options that were given (flag, environment or config file), not left to their default. */
  readonly given: ReadonlySet<string>;
}

/** Parses `argv` (after the command name) for `cmd`, reading env and the config file. */
export function parseOptions(
  cmd: CommandSpec,
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): ParsedOptions {
  const title = titleOf(cmd);
  const byName = new Map(cmd.options.map((o) => [o.name, o]));
  const fromFlags = new Map<string, string | boolean>();
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    if (!arg.startsWith("--") && cmd.positionals === true && !arg.startsWith("-")) {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith("--")) throw usageError(`unexpected argument '${arg}' (see ${title} --help)`);
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = byName.get(name);
    if (!spec) throw usageError(`unknown option --${name} for '${title}' (see --help)`);
    if (spec.type === "bool") {
      fromFlags.set(name, value ?? true);
      continue;
    }
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2))
        throw usageError(`option --${name} needs a value`);
      value = next;
      i++;
    }
    fromFlags.set(name, value);
  }
  if (help) return { values: {}, help, positionals, given: new Set() };

  let config: Record<string, unknown> = {};
  const configPath = (fromFlags.get("config") as string | undefined) ?? env.REMUSD_CONFIG;
  if (configPath !== undefined && byName.has("config")) {
    let text: string;
    try {
      text = readFileSync(configPath, "utf8");
    } catch (e) {
      throw usageError(`cannot read config file ${configPath}: ${(e as Error).message}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
        throw new Error("not a JSON object");
      config = parsed as Record<string, unknown>;
    } catch (e) {
      throw usageError(`config file ${configPath} is not a JSON object: ${(e as Error).message}`);
    }
    const known = new Set(cmd.options.flatMap((o) => [o.name, camel(o.name)]));
    for (const k of Object.keys(config)) {
      if (!known.has(k)) throw usageError(`config file ${configPath}: unknown option '${k}'`);
      const spec = cmd.options.find((o) => o.name === k || camel(o.name) === k);
      if (spec?.flagOnly)
        throw usageError(`config file ${configPath}: '${k}' can only be given as the flag --${spec.name}`);
    }
  }

  const values: OptValues = {};
  const given = new Set<string>();
  for (const spec of cmd.options) {
    let raw: string | number | boolean | undefined;
    let source = "option";
    const variable = envOf(cmd, spec);
    if (fromFlags.has(spec.name)) {
      raw = fromFlags.get(spec.name);
      source = "option --";
    } else if (variable !== undefined && env[variable] !== undefined) {
      raw = env[variable];
      source = `environment ${variable}:`;
    } else if (config[spec.name] !== undefined || config[camel(spec.name)] !== undefined) {
      const v = config[spec.name] ?? config[camel(spec.name)];
      if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
        throw usageError(`config file: option '${spec.name}' must be a string, number or boolean`);
      }
      raw = v;
      source = "config";
    } else {
      raw = spec.default;
    }
    if (source !== "option") given.add(spec.name);
    if (raw === undefined) {
      if (spec.required) {
        const or = variable === undefined ? "" : ` (or ${variable})`;
        throw usageError(`missing --${spec.name}${or}; see ${title} --help`);
      }
      values[spec.name] = undefined;
      continue;
    }
    values[spec.name] = coerce(spec, raw, source === "option --" ? "--" : source).valueOf();
  }
  return { values, help, positionals, given };
}

/** The `--help` text of a command. */
export function helpText(cmd: CommandSpec): string {
  const lines = [`${titleOf(cmd)}: ${cmd.summary}`, "", `Usage: ${cmd.usage}`, ""];
  if (cmd.details) lines.push(cmd.details, "");
  lines.push(...optionsHelp(cmd));
  if (cmd.examples?.length) lines.push("", "Examples:", ...cmd.examples.map((e) => `  ${e}`));
  return lines.join("\n");
}

/** The "Options:" part of a command's help: one line per option, then where else options come from. */
export function optionsHelp(cmd: CommandSpec): string[] {
  const lines = ["Options:"];
  const rows = cmd.options.map((o) => {
    const flag = o.type === "bool" ? `--${o.name}` : `--${o.name} ${o.placeholder ?? o.type.toUpperCase()}`;
    const def = o.default !== undefined && o.type !== "bool" ? ` (default ${o.default})` : "";
    const variable = envOf(cmd, o);
    return [flag, `${o.help}${def}${variable === undefined ? "" : ` [${variable}]`}`] as [string, string];
  });
  rows.push(["--help", "show this help"]);
  const w = Math.min(34, Math.max(...rows.map((r) => r[0].length)) + 2);
  for (const [f, h] of rows) lines.push(`  ${f.padEnd(w)}${h}`);
  if (cmd.options.some((o) => o.name === "config")) {
    lines.push("", "Every option can also be set in the environment (shown in brackets) or in a JSON");
    lines.push("file given with --config (keys as option names); flags win over the environment,");
    lines.push("which wins over the file.");
  } else if (cmd.options.some((o) => envOf(cmd, o) !== undefined)) {
    lines.push("", "Options shown with a variable in brackets can also be set in the environment;");
    lines.push("flags win over the environment.");
  }
  return lines;
}
