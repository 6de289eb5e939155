/**
 * Helpers of the deployment tests (test/deploy): where the repository is, the
 * daemon's contract as the deploy files must use it (command specs, metric and
 * label names), a Dockerfile parser, .dockerignore matching, compose variable
 * interpolation and a systemd unit parser. The tests read the daemon's facts
 * from the compiled sources (dist/src), never from copies.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { type CommandSpec, envName, type OptValues, parseOptions } from "../../src/cli/options.js";
import * as specs from "../../src/cli/specs.js";
import { METRIC_LABELS, METRICS, NODE_METRICS } from "../../src/contract.js";
import { Metrics } from "../../src/metrics.js";
import { STATES as ALL_STATES } from "../../src/states.js";

/** The repository root (this file runs as dist/test/deploy/lib.js). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const DEPLOY = join(ROOT, "deploy");

export function readText(rel: string): string {
  return readFileSync(join(ROOT, rel), "utf8");
}

export function readYaml(rel: string): unknown {
  // merge: compose files share blocks through YAML merge keys (<<).
  return parseYaml(readText(rel), { merge: true });
}

export function readYamlDocs(rel: string): unknown[] {
  return parseAllDocuments(readText(rel), { merge: true }).map((d) => {
    if (d.errors.length > 0) throw new Error(`${rel}: ${d.errors.map((e) => e.message).join("; ")}`);
    return d.toJS() as unknown;
  });
}

/** A YAML/JSON mapping, or a failure naming `what`. */
export function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${what}: expected a mapping`);
  return v as Record<string, unknown>;
}

export function arr(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list`);
  return v;
}

export function str(v: unknown, what: string): string {
  if (typeof v !== "string") throw new Error(`${what}: expected a string, got ${JSON.stringify(v)}`);
  return v;
}

/** Every `remusd` command spec that src/cli/specs.ts exports, by command name. */
export const COMMAND_SPECS: ReadonlyMap<string, CommandSpec> = new Map(
  Object.values(specs as Record<string, unknown>)
    .filter(
      (v): v is CommandSpec =>
        typeof v === "object" &&
        v !== null &&
        "name" in v &&
        "options" in v &&
        Array.isArray((v as CommandSpec).options),
    )
    .map((s) => [s.name, s]),
);

/** Environment variables that hold secrets themselves (not options). */
export const SECRET_ENV = new Set(["REMUSD_AUTH_KEY", "REMUSD_API_TOKEN"]);

export function specOf(command: string): CommandSpec {
  const s = COMMAND_SPECS.get(command);
  if (!s)
    throw new Error(`'remusd ${command}' is not a command (specs: ${[...COMMAND_SPECS.keys()].join(", ")})`);
  return s;
}

/** The environment variables a command reads its options from. */
export function envNamesOf(command: string): Set<string> {
  return new Set(specOf(command).options.map((o) => o.env ?? envName(o.name)));
}

/**
 * Parses a deploy file's `remusd COMMAND ARGS...` with the daemon's own option
 * parser and the given environment (only that one: not the test's). Throws the
 * daemon's REMUSD_ERR_BAD_USAGE error for an unknown flag, a bad value or a missing option.
 */
export function parseCommandLine(
  argv: readonly string[],
  env: Record<string, string> = {},
): { command: string; values: OptValues } {
  const [command, ...rest] = argv;
  if (command === undefined) throw new Error("empty remusd command line");
  const spec = specOf(command);
  for (const k of Object.keys(env)) {
    if (k.startsWith("REMUSD_") && !SECRET_ENV.has(k) && !envNamesOf(command).has(k)) {
      throw new Error(`environment ${k} is not an option of 'remusd ${command}'`);
    }
  }
  const { values, help } = parseOptions(spec, rest, env);
  if (help) throw new Error(`'remusd ${command}' line asks for --help`);
  return { command, values };
}

/** HOST and PORT of a HOST:PORT option value. */
export function hostPort(v: unknown): { host: string; port: number } {
  const s = str(v, "HOST:PORT");
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

/** Every state a daemon can report in remusd_state{state}. */
export const STATES: ReadonlySet<string> = new Set(ALL_STATES);

/** The values each bounded label of the remusd metrics may take. */
export const LABEL_VALUES: Readonly<Record<string, ReadonlySet<string>>> = {
  role: new Set(METRIC_LABELS.role),
  result: new Set(METRIC_LABELS.checkpointResult),
  stage: new Set(METRIC_LABELS.replicationStage),
  reason: new Set(METRIC_LABELS.failoverReason),
  state: STATES,
};

/**
 * Every series name a daemon exports: the contract's metrics, whatever the
 * metrics module registers (remusd_state, process metrics), and the
 * histogram series.
 */
export function exportedSeries(): Set<string> {
  const names = new Set<string>();
  const types = new Map<string, string>([...Object.entries(METRICS), ...Object.entries(NODE_METRICS)]);
  for (const m of new Metrics("0.0.0-test").registry.getMetricsAsArray())
    types.set(m.name, m.type.toString());
  for (const [name, type] of types) {
    if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
    else if (type === "summary") for (const s of ["", "_sum", "_count"]) names.add(name + s);
    else names.add(name);
  }
  return names;
}

/** remusd_* names a PromQL expression mentions. */
export function remusdNamesIn(expr: string): string[] {
  return [...expr.matchAll(/\b(remusd_[a-z0-9_]+)\b/g)].map((m) => m[1] as string);
}

/** `label="value"` / `label=~"a|b"` matchers of the bounded labels in an expression. */
export function boundedLabelValuesIn(expr: string): { label: string; value: string }[] {
  const out: { label: string; value: string }[] = [];
  for (const m of expr.matchAll(/\b(role|result|stage|reason|state)\s*(=~|=|!=|!~)\s*"([^"]*)"/g)) {
    const label = m[1] as string;
    const op = m[2] as string;
    const v = m[3] as string;
    if (op === "=~" || op === "!~") {
      for (const alt of v.split("|")) out.push({ label, value: alt });
    } else {
      out.push({ label, value: v });
    }
  }
  return out;
}

/** Runs a tool and returns its exit code and output; a missing tool is a test failure that says how to get it. */
export function runTool(
  tool: string,
  args: readonly string[],
  opts: { cwd?: string; how: string },
): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(tool, args, { cwd: opts.cwd ?? ROOT, encoding: "utf8" });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") {
    throw new Error(`${tool} is not installed: ${opts.how}`);
  }
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The files of a fresh clone of the working tree: tracked plus untracked-but-not-ignored, as they are now. */
export function repoFiles(): string[] {
  const out = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  return [...new Set(out.split("\0").filter((f) => f !== ""))].filter((f) => {
    const p = join(ROOT, f);
    return existsSync(p) && statSync(p).isFile();
  });
}

// ---- .dockerignore ----

interface IgnoreRule {
  readonly negate: boolean;
  readonly re: RegExp;
}

function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        // "**/" matches any number of folders, "**" anything.
        if (glob[i + 2] === "/") {
          re += "(?:.*/)?";
          i += 2;
        } else {
          re += ".*";
          i++;
        }
      } else {
        re += "[^/]*";
      }
    } else if (c === "?") {
      re += "[^/]";
    } else {
      re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
    }
  }
  return new RegExp(`^${re}$`);
}

/** Parses .dockerignore text into rules (Docker semantics: last matching rule wins, `!` re-includes). */
export function parseDockerignore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split("\n")) {
    let line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const negate = line.startsWith("!");
    if (negate) line = line.slice(1).trim();
    line = line.replace(/^\/+/, "").replace(/\/+$/, "");
    rules.push({ negate, re: globToRegExp(line) });
  }
  return rules;
}

/** Whether `path` is left out of the build context: a rule matches the path or one of its parent folders. */
export function dockerIgnored(rules: readonly IgnoreRule[], path: string): boolean {
  const parts = path.split("/");
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
  let ignored = false;
  for (const r of rules) {
    if (prefixes.some((p) => r.re.test(p))) ignored = !r.negate;
  }
  return ignored;
}

// ---- Dockerfile ----

export interface Instruction {
  readonly keyword: string;
  /** Text after the keyword, continuation lines joined. */
  readonly args: string;
  readonly line: number;
}

export interface Stage {
  readonly name: string | undefined;
  /** The base image with the ARG defaults substituted. */
  readonly from: string;
  readonly instructions: Instruction[];
}

export interface Dockerfile {
  readonly globalArgs: Map<string, string>;
  readonly stages: Stage[];
}

/** Substitutes ${VAR}, ${VAR:-default} and $VAR from `vars`; unknown variables are an error. */
export function substituteVars(s: string, vars: ReadonlyMap<string, string>): string {
  return s.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_m, a, def, b) => {
      const name = (a ?? b) as string;
      const v = vars.get(name);
      if (v !== undefined && v !== "") return v;
      if (def !== undefined) return def as string;
      if (v !== undefined) return v;
      throw new Error(`undefined variable ${name} in '${s}'`);
    },
  );
}

/** Splits `A=b C="d e"` (ENV, LABEL, ARG) into pairs. */
export function parseKeyValues(s: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of s.matchAll(/([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    let v = m[2] as string;
    if (v.startsWith('"')) v = JSON.parse(v) as string;
    out.set(m[1] as string, v);
  }
  return out;
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split("\n");
  const instructions: Instruction[] = [];
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] as string;
    if (/^\s*(#.*)?$/.test(first)) continue;
    const start = i;
    let joined = first;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      joined = joined.replace(/\\\s*$/, "");
      i++;
      const next = lines[i] as string;
      // Comment lines inside a continuation are dropped, as Docker does.
      if (/^\s*#/.test(next)) {
        joined += "\\";
        continue;
      }
      joined += ` ${next.trim()}`;
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(joined);
    if (!m) throw new Error(`Dockerfile line ${start + 1}: cannot parse '${joined}'`);
    instructions.push({
      keyword: (m[1] as string).toUpperCase(),
      args: (m[2] as string).trim(),
      line: start + 1,
    });
  }
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`Dockerfile line ${ins.line}: bad FROM`);
      stages.push({ name: m[2], from: substituteVars(m[1] as string, globalArgs), instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== "ARG")
        throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} before the first FROM`);
      for (const [k, v] of parseKeyValues(ins.args)) globalArgs.set(k, v);
    } else {
      (stages[stages.length - 1] as Stage).instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

/** Options (`--from=build`, `--mount=...`) and the rest of an instruction's arguments. */
export function splitFlags(args: string): { flags: Map<string, string>; rest: string } {
  const flags = new Map<string, string>();
  let rest = args;
  for (;;) {
    const m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest);
    if (!m) break;
    flags.set(m[1] as string, m[2] ?? "");
    rest = rest.slice(m[0].length);
  }
  return { flags, rest };
}

/** The JSON array of an exec-form instruction (ENTRYPOINT, CMD, HEALTHCHECK CMD). */
export function execForm(s: string): string[] {
  const v: unknown = JSON.parse(s);
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
    throw new Error(`not an exec-form array: ${s}`);
  return v as string[];
}

// ---- compose ----

/** Resolves compose interpolation (${VAR:-default}, ${VAR-default}, $$) everywhere, with `env` as the environment. */
export function interpolate<T>(v: T, env: Readonly<Record<string, string>> = {}): T {
  if (typeof v === "string") {
    const out = v.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)-([^}]*))?\}/g, (m, name, colon, def) => {
      if (m === "$$") return "$";
      const val = env[name as string];
      if (def !== undefined) {
        if (val === undefined || (colon === ":" && val === "")) return def as string;
        return val;
      }
      if (val === undefined) throw new Error(`compose variable ${name} has no default`);
      return val;
    });
    return out as T;
  }
  if (Array.isArray(v)) return v.map((x) => interpolate(x, env)) as T;
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolate(x, env)])) as T;
  }
  return v;
}

// ---- systemd ----

export type Unit = Map<string, Map<string, string[]>>;

/** Parses a unit file: sections of `Key=value` lines (a key may repeat). */
export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      section = new Map();
      unit.set(sec[1] as string, section);
      continue;
    }
    const kv = /^([A-Za-z0-9]+)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`unit line not understood: ${line}`);
    const list = section.get(kv[1] as string) ?? [];
    list.push(kv[2] as string);
    section.set(kv[1] as string, list);
  }
  return unit;
}

/** Parses an EnvironmentFile (KEY=value lines, # comments). */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`environment file line not understood: ${line}`);
    let v = m[2] as string;
    if (/^".*"$/.test(v) || /^'.*'$/.test(v)) v = v.slice(1, -1);
    env[m[1] as string] = v;
  }
  return env;
}

/** GitHub's anchor of a Markdown heading. */
export function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** The anchors of every heading of a Markdown text. */
export function markdownAnchors(text: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    if (fenced) continue;
    const m = /^#{1,6}\s+(.*)$/.exec(line);
    if (m) out.add(headingAnchor(m[1] as string));
  }
  return out;
}
