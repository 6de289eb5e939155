/**
 * `remusd demo`: the whole system on one machine, with a failover.
 *
 * Starts real child processes on loopback with ephemeral ports (a vswitch, a
 * backup, a primary running kvd and a workload, and `remusd client` load),
 * shows live progress, SIGKILLs the primary, shows the failover, lets the
 * workload continue on the new primary, prints a summary, and exits 0 only if
 * the client saw zero resets, zero lost writes and zero wrong reads.
 *
 * Fencing: the strongest the machine has. With the `etcd` binary installed
 * the demo runs its own one-member etcd and the pair is two `remusd node`s
 * under a lease (the first to start holds it and runs the domain; after the
 * kill the other takes over once the lease expires, and the killed node,
 * restarted, rejoins as backup by itself). Without etcd it is a fixed
 * primary and backup with generation-only fencing, and the demo says so.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { percentile } from "../bench/stats.js";
import { parseJsonLines, readEventLog } from "../daemon/eventlog.js";
import { type Child, spawnRemusd, started, waitFor } from "../proc/children.js";
import { etcdInstalled, type LocalEtcd, startLocalEtcd } from "../proc/etcd.js";
import type { OptValues } from "./options.js";

/** The demo's lease TTL: short for a quick failover, long enough to ride out a loaded machine's stalls. */
const LEASE_TTL_S = 2;

async function getJson(url: string): Promise<Record<string, unknown> | undefined> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return (await r.json()) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "-");

export async function runDemo(v: OptValues): Promise<void> {
  const killAfter = (v["kill-after"] as number) * 1000;
  const after = (v.after as number) * 1000;
  const keep = v["keep-running"] === true;
  const tty = process.stdout.isTTY === true;
  const dir = (v.dir as string | undefined) ?? mkdtempSync(join(tmpdir(), "remusd-demo-"));
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, "replication.key");
  const tokenFile = join(dir, "api.token");
  writeFileSync(keyFile, randomBytes(24).toString("hex"), { mode: 0o600 });
  writeFileSync(tokenFile, randomBytes(16).toString("hex"), { mode: 0o600 });
  const pLog = join(dir, "primary.events.jsonl");
  const bLog = join(dir, "backup.events.jsonl");
  const children: Child[] = [];
  const say = (s: string) => process.stdout.write(`${s}\n`);
  let etcd: LocalEtcd | undefined;
  const cleanup = async (keepPrimary: Child | undefined) => {
    for (const c of children) if (c !== keepPrimary && !c.exited) c.proc.kill("SIGKILL");
    await Promise.all(children.filter((c) => c !== keepPrimary).map((c) => c.exit));
    if (keepPrimary === undefined) await etcd?.stop();
  };
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    void cleanup(undefined).then(() => {
      if (v.dir === undefined) rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onSigint);

  try {
    say(`remusd demo: working directory ${dir}`);
    const common = (name: string) => [
      "--control",
      "127.0.0.1:0",
      "--auth-key-file",
      keyFile,
      "--api-token-file",
      tokenFile,
      "--data-dir",
      join(dir, name),
      "--verify",
      "--heartbeat-ms",
      "50",
      "--heartbeat-misses",
      "6",
      "--domain-mib",
      String(v["domain-mib"]),
    ];
    if (etcdInstalled()) {
      etcd = await startLocalEtcd(join(dir, "etcd"));
      say(`  fencing  lease on etcd ${etcd.endpoint} (our own one-member etcd; lease TTL ${LEASE_TTL_S} s)`);
    } else {
      say(
        "  fencing  generation-only: WARNING etcd is not installed (apt-get install etcd-server), so a\n" +
          "           partition with both daemons up could run two primaries; with etcd the demo uses a lease",
      );
    }
    const leaseUrl = etcd && `etcd://${etcd.endpoint}/remusd-demo`;
    // Under a lease both daemons are `remusd node`: the lease decides the roles.
    const nodeArgs = (name: string): string[] =>
      leaseUrl === undefined
        ? []
        : [
            "--lease",
            leaseUrl,
            "--lease-ttl-s",
            String(LEASE_TTL_S),
            "--node-id",
            name,
            "--listen",
            "127.0.0.1:0",
          ];
    const sw = spawnRemusd("vswitch", ["vswitch", "--listen", "127.0.0.1:0"]);
    children.push(sw);
    const swPort = (await waitFor("the vswitch", () => started(sw, "remusd vswitch started"), 15000))
      .port as number;
    const startDaemon = async (role: "primary" | "backup", args: string[]) => {
      const c = spawnRemusd(
        role,
        leaseUrl === undefined ? [role, ...args] : ["node", ...nodeArgs(role), ...args],
      );
      children.push(c);
      const line = leaseUrl === undefined ? `remusd ${role} started` : "remusd node started";
      return { child: c, info: await waitFor(`the ${role}`, () => started(c, line), 15000) };
    };
    const switchArgs = ["--switch", `127.0.0.1:${swPort}`];
    const primaryArgs = [
      "--event-log",
      pLog,
      ...switchArgs,
      "--workload",
      v.workload as string,
      ...common("primary"),
    ];
    const backupArgs = ["--event-log", bLog, ...switchArgs, ...common("backup")];
    let primary: Child;
    let pInfo: Record<string, unknown>;
    let bInfo: Record<string, unknown>;
    if (leaseUrl === undefined) {
      bInfo = (await startDaemon("backup", ["--listen", "127.0.0.1:0", ...backupArgs])).info;
      const bUrl = `ws://127.0.0.1:${bInfo.replication as number}`;
      ({ child: primary, info: pInfo } = await startDaemon("primary", [
        "--peer",
        bUrl,
        "--listen",
        "127.0.0.1:0",
        ...primaryArgs,
      ]));
    } else {
      // The first node takes the lease and boots the domain; the second follows it.
      ({ child: primary, info: pInfo } = await startDaemon("primary", primaryArgs));
      await waitFor(
        "the first node to hold the lease",
        async () =>
          ((await getJson(`${pInfo.control as string}/v1/status`))?.lease as { state?: string } | undefined)
            ?.state === "held",
        30000,
      );
      bInfo = (await startDaemon("backup", backupArgs)).info;
    }
    const pControl = pInfo.control as string;
    const bControl = bInfo.control as string;
    say(`  vswitch  udp://127.0.0.1:${swPort}`);
    say(`  backup   ${bControl}  (replication ws://127.0.0.1:${bInfo.replication as number})`);
    say(`  primary  ${pControl}`);
    const t0 = Date.now();
    await waitFor(
      "the first sync",
      async () => (await getJson(`${pControl}/v1/status`))?.state === "protected",
      30000,
    );
    say(
      `  protected after ${((Date.now() - t0) / 1000).toFixed(1)} s (full sync of ${v["domain-mib"]} MiB done)`,
    );
    const clientDuration = (killAfter + after) / 1000;
    const client = spawnRemusd("client", [
      "client",
      "--switch",
      `127.0.0.1:${swPort}`,
      "--connections",
      String(v.connections),
      "--duration",
      String(clientDuration),
      "--seed",
      String(v.seed),
      "--progress",
    ]);
    children.push(client);

    // Live progress until the kill.
    const loadStart = Date.now();
    let lastLine = "";
    const progress = async (phase: string, control: string, log: string): Promise<void> => {
      const ev = readEventLog(log).filter((e) => e.event === "checkpoint.committed");
      const recent = ev.slice(-400);
      const pauses = recent.map((e) => e.pauseMs as number);
      const wire = ev.reduce((a, e) => a + ((e.wireBytes as number) ?? 0), 0);
      const raw = ev.reduce((a, e) => a + ((e.rawBytes as number) ?? 0), 0);
      const st = await getJson(`${control}/v1/status`);
      const nb = (st?.netbuf as { packets?: number } | undefined)?.packets ?? 0;
      const cp = parseJsonLines(client.stderr).filter((o) => o.msg === "client progress");
      const last = cp[cp.length - 1];
      const role = `${String(st?.role ?? "?")}/${String(st?.state ?? "?")}`;
      const replication =
        ev.length > 0
          ? `pause p50 ${fmt(percentile(pauses, 50), 2)} ms p99 ${fmt(percentile(pauses, 99), 2)} ms` +
            `  replicated ${fmt(wire / 1e6)} MB (x${fmt(raw / Math.max(1, wire))} compression)  netbuf ${nb}`
          : "no backup: no checkpoints, output leaves at once";
      const line =
        `${phase.padEnd(11)} ${role.padEnd(20)} epoch ${String((st?.epoch as { committed?: number } | undefined)?.committed ?? "-").padStart(5)}` +
        `  ${replication}  client ${fmt((last?.rps as number) ?? 0, 0)} req/s, ${(last?.replies as number) ?? 0} replies`;
      if (tty)
        process.stdout.write(
          `\r${line.slice(0, (process.stdout.columns ?? 200) - 1).padEnd(lastLine.length)}`,
        );
      else if (line !== lastLine) say(line);
      lastLine = line;
    };
    while (Date.now() - loadStart < killAfter) {
      await progress("protected", pControl, pLog);
      await new Promise((r) => setTimeout(r, tty ? 250 : 1000));
    }
    if (tty) process.stdout.write("\n");

    // The failover.
    const lastCommitted = Math.max(
      0,
      ...readEventLog(pLog)
        .filter((e) => e.event === "checkpoint.committed")
        .map((e) => e.epoch as number),
    );
    const killedAt = Date.now();
    primary.proc.kill("SIGKILL");
    say(`SIGKILL primary (pid ${primary.proc.pid}) at epoch ${lastCommitted} ...`);
    const activated = await waitFor(
      "the backup to activate",
      () => readEventLog(bLog).find((e) => e.event === "failover.activated"),
      30000,
    );
    const activationMs = Date.parse(activated.ts as string) - killedAt;
    say(
      `  backup activated from epoch ${activated.epoch as number} after ${activationMs} ms (${activated.reason as string}); digest ${(activated.digest as string).slice(0, 16)}… matches the primary's: ${
        readEventLog(pLog).find((e) => e.event === "checkpoint.sent" && e.epoch === activated.epoch)
          ?.digest === activated.digest
      }`,
    );
    // Under a lease the pair heals itself: the killed node, restarted with its
    // own data directory, rejoins as the new primary's backup.
    let rejoinedMs: number | undefined;
    let current = bControl;
    if (leaseUrl !== undefined) {
      const restartedAt = Date.now();
      say("restarting the killed node: it rejoins as backup by itself ...");
      const rejoined = await startDaemon("primary", [
        ...primaryArgs.map((a) => (a === pLog ? join(dir, "rejoined.events.jsonl") : a)),
      ]);
      // Whichever node holds the lease by then: a lease lost to a long stall
      // swaps the roles once more, and the pair still heals.
      const controls = [bControl, rejoined.info.control as string];
      const holder = await waitFor(
        "a protected pair again",
        async () => {
          for (const c of controls) if ((await getJson(`${c}/v1/status`))?.state === "protected") return c;
          return undefined;
        },
        60000,
      );
      rejoinedMs = Date.now() - restartedAt;
      current = holder;
      say(
        `  protected again ${(rejoinedMs / 1000).toFixed(1)} s after the restart` +
          (holder === bControl ? "" : " (the roles swapped again: the restarted node holds the lease)"),
      );
    }
    while (!client.exited) {
      await progress("failed over", bControl, bLog);
      await new Promise((r) => setTimeout(r, tty ? 250 : 1000));
    }
    if (tty) process.stdout.write("\n");
    await client.exit;
    const summary = parseJsonLines(client.stdout).pop();
    if (!summary) throw new Error(`the client printed no summary:\n${client.stderr.slice(-1500)}`);
    const pEvents = readEventLog(pLog).filter((e) => e.event === "checkpoint.committed");
    const pauses = pEvents.map((e) => e.pauseMs as number);
    const wire = pEvents.reduce((a, e) => a + (e.wireBytes as number), 0);
    const raw = pEvents.reduce((a, e) => a + (e.rawBytes as number), 0);
    const st = await getJson(`${current}/v1/status`);
    const rows: [string, string][] = [
      ["checkpoints committed (old primary)", String(pEvents.length)],
      ["pause p50 / p99", `${fmt(percentile(pauses, 50), 2)} ms / ${fmt(percentile(pauses, 99), 2)} ms`],
      [
        "replicated on the wire",
        `${fmt(wire / 1e6)} MB (raw ${fmt(raw / 1e6)} MB, compression x${fmt(raw / Math.max(1, wire))})`,
      ],
      [
        "failover: kill to activation",
        `${activationMs} ms, resumed epoch ${activated.epoch as number} (last committed ${lastCommitted})`,
      ],
      ["new primary", `${String(st?.role)} / ${String(st?.state)} / generation ${String(st?.generation)}`],
      [
        "fencing",
        leaseUrl === undefined
          ? "generation-only (no etcd on this machine)"
          : `lease on etcd; the killed node rejoined, protected again after ${fmt((rejoinedMs ?? 0) / 1000)} s`,
      ],
      [
        "client requests / replies",
        `${summary.requests as number} / ${summary.replies as number} (${summary.requestsPerSec as number} req/s)`,
      ],
      ["client longest stall", `${Math.round(summary.longestStallMs as number)} ms`],
      ["resets / reconnects", `${summary.resets as number} / ${summary.reconnects as number}`],
      ["lost acknowledged writes", String(summary.lostWrites)],
      ["wrong reads", String(summary.wrongReads)],
      ["keys verified at the end", String(summary.verifiedKeys)],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    say("");
    say("summary");
    for (const [k, val] of rows) say(`  ${k.padEnd(w)}  ${val}`);
    const ok = summary.ok === true;
    say("");
    say(
      ok
        ? "PASS: no reset, no lost write, no wrong read across the failover"
        : `FAIL: ${JSON.stringify(summary.errors)}`,
    );
    process.exitCode = ok ? 0 : 1;
    if (keep && !interrupted) {
      say("");
      say("the new primary keeps running (Ctrl-C stops it):");
      say(`  status   ${current}/v1/status`);
      say(`  docs     ${current}/docs`);
      say(`  metrics  ${current}/metrics`);
      say(`  token    ${tokenFile}`);
      await new Promise(() => {});
    }
  } catch (e) {
    // What the daemons said last is the first thing a user needs when a step times out.
    for (const c of children)
      if (c.stderr.length > 0)
        say(`--- ${c.name}, last lines of its log:\n${c.stderr.split("\n").slice(-6).join("\n")}`);
    throw e;
  } finally {
    if (!interrupted) await cleanup(undefined);
    if (v.dir === undefined && !keep) rmSync(dir, { recursive: true, force: true });
  }
}
