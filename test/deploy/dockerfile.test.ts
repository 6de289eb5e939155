/**
 * The Dockerfile and .dockerignore. There is no Docker engine here, so the
 * static part checks the file against the daemon's contract, and the slow part
 * replays what `docker build` would do outside Docker: the build context (the
 * repository as a fresh clone has it, filtered by .dockerignore), then every
 * COPY, WORKDIR, ENV and RUN of the build stage (npm ci with native builds,
 * the TypeScript build, npm ci --omit=dev) in a temp folder standing for the
 * stage's file system, then the runtime stage's COPY steps. It then starts the
 * result the way the ENTRYPOINT does: a backup, the image's healthcheck
 * against it, and a primary that syncs it.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join, posix } from "node:path";
import { after, describe, test } from "node:test";
import { DEFAULT_PORTS, HEALTH_PATH, READY_PATH } from "../../src/contract.js";
import {
  type Dockerfile,
  dockerIgnored,
  execForm,
  type Instruction,
  parseDockerfile,
  parseDockerignore,
  parseKeyValues,
  ROOT,
  readText,
  repoFiles,
  type Stage,
  splitFlags,
  substituteVars,
} from "./lib.js";

const pkg = JSON.parse(readText("package.json")) as {
  version: string;
  license: string;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  allowScripts?: Record<string, boolean>;
};
const df: Dockerfile = parseDockerfile(readText("Dockerfile"));
const buildStage = df.stages.find((s) => s.name === "build");
const runtime = df.stages[df.stages.length - 1] as Stage;

function all(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

function one(stage: Stage, keyword: string): Instruction {
  const list = all(stage, keyword);
  assert.equal(list.length, 1, `exactly one ${keyword} in stage ${stage.name ?? "(last)"}`);
  return list[0] as Instruction;
}

/** ARG defaults and ENV values of a stage, for substitution. */
function stageVars(stage: Stage): Map<string, string> {
  const vars = new Map(df.globalArgs);
  for (const ins of stage.instructions) {
    if (ins.keyword === "ARG" || ins.keyword === "ENV") {
      for (const [k, v] of parseKeyValues(ins.args)) vars.set(k, substituteVars(v, vars));
    }
  }
  return vars;
}

/** COPY sources and destination (shell form, no quoting). */
function copyArgs(ins: Instruction): { from: string | undefined; sources: string[]; dest: string } {
  const { flags, rest } = splitFlags(ins.args);
  const parts = rest.split(/\s+/);
  assert.ok(parts.length >= 2, `COPY at line ${ins.line} needs a source and a destination`);
  return { from: flags.get("from"), sources: parts.slice(0, -1), dest: parts[parts.length - 1] as string };
}

const contextRules = parseDockerignore(readText(".dockerignore"));
const context = repoFiles().filter((f) => !dockerIgnored(contextRules, f));

describe("Dockerfile", () => {
  test("has a build stage and a runtime stage on the same pinned Node.js LTS slim image", () => {
    assert.ok(buildStage, "a stage named 'build'");
    assert.ok(df.stages.length >= 2, "multi-stage");
    assert.notEqual(runtime, buildStage, "the runtime stage is not the build stage");
    for (const s of df.stages) {
      assert.match(
        s.from,
        /^node:(20|22)\.\d+\.\d+-bookworm-slim$/,
        `pinned Node.js 20/22 slim tag, got ${s.from}`,
      );
    }
    // The native addons are compiled against the build stage's Node ABI.
    assert.equal(runtime.from, buildStage.from, "build and runtime use the same Node.js release");
    const major = Number(/^node:(\d+)/.exec(runtime.from)?.[1]);
    const engines =
      (JSON.parse(readText("package.json")) as { engines?: { node?: string } }).engines?.node ?? "";
    const min = Number(/(\d+)/.exec(engines)?.[1] ?? 0);
    assert.ok(major >= min, `image Node.js ${major} satisfies engines ${engines}`);
  });

  test("the build stage installs the native toolchain and runs npm ci, the build, npm ci --omit=dev", () => {
    assert.ok(buildStage);
    const runs = all(buildStage, "RUN").map((r) => splitFlags(r.args).rest);
    const apt = runs.find((r) => /apt-get install/.test(r));
    assert.ok(apt, "an apt-get install in the build stage");
    for (const p of ["python3", "make", "g++"])
      assert.match(apt, new RegExp(`\\s${p.replace("+", "\\+")}(\\s|$)`), `installs ${p}`);
    const full = runs.findIndex((r) => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r));
    const build = runs.findIndex((r) => /\bnpm run build\b/.test(r));
    const prod = runs.findIndex((r) => /\bnpm ci\b.*--omit=dev/.test(r));
    assert.ok(
      full >= 0 && build > full && prod > build,
      "npm ci, then npm run build, then npm ci --omit=dev",
    );
    for (const r of runs)
      assert.doesNotMatch(
        r,
        /--ignore-scripts/,
        "lz4, classic-level and bufferutil need their install scripts",
      );
  });

  test("the runtime stage: non-root user, data volume, ports, healthcheck, entrypoint, labels", () => {
    const vars = stageVars(runtime);
    const user = one(runtime, "USER").args;
    const uid = user.split(":")[0] as string;
    assert.match(uid, /^\d+$/, "a numeric USER (Kubernetes runAsNonRoot can verify it)");
    assert.notEqual(Number(uid), 0, "not root");

    const dataDir = vars.get("REMUSD_DATA_DIR");
    assert.ok(dataDir, "ENV REMUSD_DATA_DIR names the data folder");
    const volumes = execForm(one(runtime, "VOLUME").args);
    assert.ok(volumes.includes(dataDir), `VOLUME ${dataDir}`);

    const control = vars.get("REMUSD_CONTROL");
    assert.equal(
      control,
      `0.0.0.0:${DEFAULT_PORTS.control}`,
      "the control API is reachable from outside the container",
    );

    const exposed = new Set(all(runtime, "EXPOSE").flatMap((e) => e.args.split(/\s+/)));
    for (const p of [
      `${DEFAULT_PORTS.replication}/tcp`,
      `${DEFAULT_PORTS.control}/tcp`,
      `${DEFAULT_PORTS.vswitch}/udp`,
    ]) {
      assert.ok(exposed.has(p), `EXPOSE ${p}`);
    }

    const hc = one(runtime, "HEALTHCHECK").args;
    const cmd = /\bCMD\s+(\[.*\])\s*$/.exec(hc);
    assert.ok(cmd, "HEALTHCHECK CMD in exec form");
    const hcArgv = execForm(cmd[1] as string);
    assert.equal(hcArgv[0], "node", "the healthcheck runs on node (no curl in the slim image)");
    const script = hcArgv[1] as string;
    const copied = all(runtime, "COPY")
      .map(copyArgs)
      .find((c) => c.from === undefined && posix.resolve("/app", c.dest) === script);
    assert.ok(copied, `${script} is copied from the build context`);
    assert.ok(
      context.includes(copied.sources[0] as string),
      "the healthcheck script is in the build context",
    );
    assert.match(
      readText(copied.sources[0] as string),
      new RegExp(HEALTH_PATH.replace("/", "\\/")),
      `checks ${HEALTH_PATH}`,
    );

    const entry = execForm(one(runtime, "ENTRYPOINT").args);
    const workdir = one(runtime, "WORKDIR").args;
    assert.deepEqual(
      entry,
      ["node", posix.join(workdir, pkg.bin.remusd as string)],
      "ENTRYPOINT is the remusd bin",
    );

    const labels = new Map<string, string>();
    for (const l of all(runtime, "LABEL"))
      for (const [k, v] of parseKeyValues(l.args)) labels.set(k, substituteVars(v, vars));
    assert.equal(labels.get("org.opencontainers.image.title"), "remusd");
    assert.equal(
      labels.get("org.opencontainers.image.version"),
      pkg.version,
      "the version label follows package.json",
    );
    assert.equal(labels.get("org.opencontainers.image.licenses"), pkg.license);
    for (const k of ["description", "revision", "created"])
      assert.ok(labels.has(`org.opencontainers.image.${k}`), k);
  });

  test(".dockerignore keeps the context to the build's inputs", () => {
    for (const f of context) {
      assert.doesNotMatch(f, /(^|\/)(node_modules|dist|\.git)\//, `${f} is not sent to the builder`);
      assert.doesNotMatch(f, /^(test|bench|deploy\/(?!docker\/))/, `${f} is not needed by the build`);
    }
    for (const f of ["package.json", "package-lock.json", "tsconfig.json", "src/cli/remusd.ts", "LICENSE"]) {
      assert.ok(context.includes(f), `${f} is in the context`);
    }
    // Every COPY from the context names something that is in it.
    for (const s of df.stages) {
      for (const c of all(s, "COPY").map(copyArgs)) {
        if (c.from !== undefined) continue;
        for (const src of c.sources) {
          assert.ok(
            context.some((f) => f === src || f.startsWith(`${src}/`)),
            `COPY ${src} (line ${s.instructions.find((i) => i.args.includes(src))?.line}) is in the context`,
          );
        }
      }
    }
    const bytes = context.reduce((n, f) => n + statSync(join(ROOT, f)).size, 0);
    assert.ok(bytes < 5 * 1024 * 1024, `context is ${bytes} bytes`);
  });
});

// ---- the build, replayed outside Docker ----

const tmp = mkdtempSync(join(tmpdir(), "remusd-dockerfile-"));
const children: ChildProcess[] = [];

after(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  }
  await Promise.all(
    children.map((c) =>
      c.exitCode === null && c.signalCode === null
        ? new Promise((r) => c.once("exit", r))
        : Promise.resolve(),
    ),
  );
  rmSync(tmp, { recursive: true, force: true });
});

/** An image file system path inside the folder standing for a stage's root. */
function inRoot(root: string, p: string): string {
  return join(root, p);
}

/** Replays COPY (from the context or an earlier stage), WORKDIR, ENV and RUN of a stage. */
function replayStage(
  stage: Stage,
  root: string,
  ctx: string,
  stageRoots: ReadonlyMap<string, string>,
  opts: { run: boolean },
): { workdir: string; env: Map<string, string>; skippedRuns: string[] } {
  let workdir = "/";
  const env = new Map<string, string>();
  const vars = new Map(df.globalArgs);
  const skippedRuns: string[] = [];
  for (const ins of stage.instructions) {
    switch (ins.keyword) {
      case "ARG":
      case "ENV":
        for (const [k, v] of parseKeyValues(ins.args)) {
          vars.set(k, substituteVars(v, vars));
          if (ins.keyword === "ENV") env.set(k, substituteVars(v, vars));
        }
        break;
      case "WORKDIR":
        workdir = posix.resolve(workdir, substituteVars(ins.args, vars));
        mkdirSync(inRoot(root, workdir), { recursive: true });
        break;
      case "COPY": {
        const c = copyArgs(ins);
        const srcRoot = c.from === undefined ? ctx : stageRoots.get(c.from);
        assert.ok(srcRoot, `COPY --from=${c.from}: no such stage`);
        const dest = posix.resolve(workdir, c.dest);
        for (const src of c.sources) {
          const from = c.from === undefined ? join(ctx, src) : inRoot(srcRoot, src);
          assert.ok(existsSync(from), `COPY source ${src} (line ${ins.line}) exists`);
          const target =
            c.dest.endsWith("/") || c.sources.length > 1
              ? inRoot(root, posix.join(dest, basename(src)))
              : inRoot(root, dest);
          mkdirSync(dirname(target), { recursive: true });
          cpSync(from, target, { recursive: true, verbatimSymlinks: true });
        }
        break;
      }
      case "RUN": {
        const cmd = splitFlags(ins.args).rest;
        // System packages and users belong to the image's OS; here the host provides them.
        if (!opts.run || /^(apt-get|groupadd|useradd)\b/.test(cmd) || /\bln -s\b/.test(cmd)) {
          skippedRuns.push(cmd);
          break;
        }
        const r = spawnSync("sh", ["-c", cmd], {
          cwd: inRoot(root, workdir),
          encoding: "utf8",
          // A clean environment, as in a build container: no npm_config_* of an outer `npm test`.
          env: {
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            HOME: process.env.HOME ?? tmp,
            ...Object.fromEntries(env),
          },
          maxBuffer: 64 * 1024 * 1024,
        });
        assert.equal(
          r.status,
          0,
          `RUN ${cmd} (line ${ins.line}) failed:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`,
        );
        break;
      }
      default:
        break;
    }
  }
  return { workdir, env, skippedRuns };
}

function waitForLine(child: ChildProcess, out: { text: string }, re: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (re.test(out.text)) {
        child.stderr?.off("data", check);
        child.off("exit", onExit);
        resolve();
      }
    };
    const onExit = (code: number | null) =>
      reject(new Error(`${what} exited (${code}) before it started:\n${out.text.slice(-3000)}`));
    child.stderr?.on("data", check);
    child.once("exit", onExit);
    check();
  });
}

function startNode(
  args: string[],
  cwd: string,
  env: Record<string, string>,
): { child: ChildProcess; out: { text: string } } {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  const out = { text: "" };
  child.stderr?.on("data", (d: Buffer) => {
    out.text += d.toString();
  });
  return { child, out };
}

async function pollStatus(url: string, want: number, what: string): Promise<void> {
  // Polls until the status matches; no timing is asserted, the test's own timeout bounds it.
  for (;;) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === want) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
    if (children.some((c) => c.exitCode !== null))
      throw new Error(`a daemon exited while waiting for ${what}`);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

test("the Dockerfile's build steps work in a clean copy, and the result runs", {
  timeout: 15 * 60_000,
}, async () => {
  assert.ok(buildStage);
  const ctx = join(tmp, "context");
  for (const f of context) {
    mkdirSync(dirname(join(ctx, f)), { recursive: true });
    cpSync(join(ROOT, f), join(ctx, f));
  }
  // The host stands in for the apt-get step: the same toolchain must be here.
  for (const tool of ["python3", "make", "g++"]) {
    assert.equal(
      spawnSync(tool, ["--version"]).status,
      0,
      `${tool} (the build stage installs it) is on this machine`,
    );
  }

  const buildRoot = join(tmp, "build-root");
  const built = replayStage(buildStage, buildRoot, ctx, new Map(), { run: true });
  assert.ok(
    built.skippedRuns.some((r) => r.startsWith("apt-get")),
    "only the apt-get step was left to the host",
  );

  const runtimeRoot = join(tmp, "runtime-root");
  const stageRoots = new Map([["build", buildRoot]]);
  const rt = replayStage(runtime, runtimeRoot, ctx, stageRoots, { run: false });
  const app = join(runtimeRoot, rt.workdir);

  // Production dependencies only.
  const lock = JSON.parse(readText("package-lock.json")) as { packages: Record<string, { dev?: boolean }> };
  const devOnly = Object.entries(lock.packages).filter(([path, p]) => path !== "" && p.dev === true);
  assert.ok(
    devOnly.some(([path]) => path === "node_modules/typescript"),
    "the lockfile marks dev-only packages",
  );
  for (const [path] of devOnly)
    assert.ok(!existsSync(join(app, path)), `dev-only ${path} is not in the image`);
  for (const dep of Object.keys(pkg.dependencies)) {
    assert.ok(
      existsSync(join(app, "node_modules", dep, "package.json")),
      `dependency ${dep} is in the image`,
    );
  }
  // The native addons were built and load from the image's node_modules.
  const natives = Object.keys(pkg.allowScripts ?? {});
  assert.ok(natives.includes("lz4"), "package.json allowScripts names the native modules");
  const probe = `
    const { createRequire } = require("node:module");
    const req = createRequire(${JSON.stringify(join(app, "package.json"))});
    const lz4 = req("lz4");
    const src = Buffer.alloc(8192, "remusd page ");
    const out = Buffer.alloc(lz4.encodeBound(src.length));
    const n = lz4.encodeBlock(src, out);
    const back = Buffer.alloc(src.length);
    if (lz4.decodeBlock(out.subarray(0, n), back) !== src.length || !back.equals(src)) throw new Error("lz4 round trip");
    for (const m of ${JSON.stringify(natives)}) req(m);
    const bu = req("bufferutil");
    if (typeof bu.mask !== "function") throw new Error("bufferutil has no mask()");
    // remusd's own TAP binding, where dist/src/vswitch/tapdev.js looks for it.
    const tap = req("./build/Release/tap.node");
    if (typeof tap.open !== "function") throw new Error("the TAP binding has no open()");
  `;
  const loaded = spawnSync(process.execPath, ["-e", probe], { cwd: app, encoding: "utf8" });
  assert.equal(loaded.status, 0, `native modules load from the image: ${loaded.stderr}`);
  // The bins the image links onto PATH exist (for each one whose source exists).
  for (const [name, rel] of Object.entries(pkg.bin)) {
    const src = rel.replace(/^dist\//, "").replace(/\.js$/, ".ts");
    if (existsSync(join(ROOT, src)))
      assert.ok(existsSync(join(app, rel)), `bin ${name} (${rel}) is in the image`);
  }

  // Start it as the ENTRYPOINT does, with the image's environment (the data folder mapped into the temp root).
  const entry = execForm(one(runtime, "ENTRYPOINT").args);
  const script = join(runtimeRoot, entry[1] as string);
  const env = Object.fromEntries(rt.env);
  const dataDir = join(runtimeRoot, env.REMUSD_DATA_DIR ?? "/var/lib/remusd");
  const backup = startNode(
    [
      script,
      "backup",
      "--insecure",
      "--listen",
      "127.0.0.1:0",
      "--control",
      "127.0.0.1:0",
      "--domain-mib",
      "4",
      "--disk-mib",
      "4",
    ],
    app,
    { ...env, REMUSD_DATA_DIR: join(dataDir, "backup") },
  );
  await waitForLine(backup.child, backup.out, /"msg":"remusd backup started"/, "the backup");
  const line = JSON.parse(
    backup.out.text.split("\n").find((l) => l.includes('"msg":"remusd backup started"')) as string,
  ) as { control: string; replication: number };
  const control = line.control;
  const health = await fetch(`${control}${HEALTH_PATH}`);
  assert.equal(health.status, 200, `${HEALTH_PATH} answers 200`);
  // A backup no primary has synced is alive but not ready: the deploy files rely on this.
  const ready = await fetch(`${control}${READY_PATH}`);
  await ready.arrayBuffer();
  assert.equal(ready.status, 503, `${READY_PATH} is 503 before the first sync`);

  // The image's healthcheck script, as HEALTHCHECK runs it.
  const hc = execForm(/\bCMD\s+(\[.*\])\s*$/.exec(one(runtime, "HEALTHCHECK").args)?.[1] as string);
  const hcScript = join(runtimeRoot, hc[1] as string);
  const port = new URL(control).port;
  const ok = spawnSync(process.execPath, [hcScript], {
    env: { REMUSD_CONTROL: `0.0.0.0:${port}` },
    encoding: "utf8",
  });
  assert.equal(ok.status, 0, `healthcheck passes against a live daemon: ${ok.stderr}`);
  const notReady = spawnSync(process.execPath, [hcScript, READY_PATH], {
    env: { REMUSD_CONTROL: `127.0.0.1:${port}` },
  });
  assert.equal(notReady.status, 1, "healthcheck of /readyz fails on a waiting backup");
  const closed = await freePort();
  const down = spawnSync(process.execPath, [hcScript], { env: { REMUSD_CONTROL: `127.0.0.1:${closed}` } });
  assert.equal(down.status, 1, "healthcheck fails when nothing answers");

  // A primary from the same tree syncs the backup (LZ4 pages over the WebSocket).
  startNode(
    [
      script,
      "primary",
      "--insecure",
      "--peer",
      `ws://127.0.0.1:${line.replication}`,
      "--control",
      "127.0.0.1:0",
      "--domain-mib",
      "4",
      "--disk-mib",
      "4",
      "--workload",
      "idle",
    ],
    app,
    { ...env, REMUSD_DATA_DIR: join(dataDir, "primary") },
  );
  await pollStatus(`${control}${READY_PATH}`, 200, "the backup to become ready");
  const status = (await (await fetch(`${control}/v1/status`)).json()) as { role: string; state: string };
  assert.equal(status.role, "backup");
  assert.equal(status.state, "standby");
  assert.ok(
    readFileSync(join(dataDir, "backup", "node.json"), "utf8").includes("nodeId"),
    "state lands in the data folder",
  );
});
