/**
 * A local etcd (Debian etcd-server 3.4) on 127.0.0.1 ephemeral ports: the
 * arguments of each member, free ports, and the wait until every member is
 * healthy. `remusd demo` runs a one-member etcd from here so the demo uses
 * the lease when the machine has etcd; the tests' three-member clusters
 * (test/helpers/etcd.ts) are built from the same pieces.
 */
import { spawn, spawnSync } from "node:child_process";
import { createServer, type Server } from "node:net";
import { join } from "node:path";

/** Whether the `etcd` binary is on the PATH. */
export function etcdInstalled(): boolean {
  const r = spawnSync("etcd", ["--version"], { encoding: "utf8" });
  return r.status === 0;
}

/** `n` free TCP ports on 127.0.0.1, held open together so they are distinct. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.listen(0, "127.0.0.1", () => resolve());
      });
    }
    return servers.map((s) => {
      const a = s.address();
      if (a === null || typeof a === "string") throw new Error("no port");
      return a.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** One member's place: its name and its client and peer ports on 127.0.0.1. */
export interface EtcdMemberPlace {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
}

export interface EtcdClusterPlan {
  readonly dir: string;
  readonly members: readonly EtcdMemberPlace[];
  /** --initial-cluster-token: unique per cluster so strangers never join. */
  readonly token: string;
  /** --heartbeat-interval in ms (default 50). */
  readonly heartbeatMs?: number;
  /** --election-timeout in ms (default 500; etcd's shortest lease TTL is 1.5 × this, rounded up to a second). */
  readonly electionMs?: number;
}

/** Lays out `n` members on free ports. */
export async function planEtcdCluster(
  dir: string,
  n: number,
  token: string,
  timing: { heartbeatMs?: number; electionMs?: number } = {},
): Promise<EtcdClusterPlan> {
  const ports = await freePorts(2 * n);
  const members = Array.from({ length: n }, (_, i) => ({
    name: `m${i + 1}`,
    clientPort: ports[2 * i] as number,
    peerPort: ports[2 * i + 1] as number,
  }));
  return { dir, members, token, ...timing };
}

/** The command line of member `m` of `plan`. */
export function etcdMemberArgs(plan: EtcdClusterPlan, m: EtcdMemberPlace): string[] {
  const peer = (p: EtcdMemberPlace): string => `http://127.0.0.1:${p.peerPort}`;
  const client = `http://127.0.0.1:${m.clientPort}`;
  return [
    `--name=${m.name}`,
    `--data-dir=${join(plan.dir, m.name)}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer(m)}`,
    `--initial-advertise-peer-urls=${peer(m)}`,
    `--initial-cluster=${plan.members.map((p) => `${p.name}=${peer(p)}`).join(",")}`,
    `--initial-cluster-token=${plan.token}`,
    "--initial-cluster-state=new",
    `--heartbeat-interval=${plan.heartbeatMs ?? 50}`,
    `--election-timeout=${plan.electionMs ?? 500}`,
    "--logger=zap",
    "--log-outputs=stderr",
    "--log-level=warn",
  ];
}

/** GET (or POST `body` to) an etcd HTTP endpoint; undefined when it does not answer. */
export async function etcdJson(url: string, body?: string): Promise<Record<string, unknown> | undefined> {
  try {
    const r = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      ...(body === undefined ? {} : { body }),
      signal: AbortSignal.timeout(1000),
    });
    if (!r.ok) return undefined;
    return (await r.json()) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * Waits until every member of `plan` reports itself healthy (a leader is
 * elected). `exited(name)` returns a reason when that member's process has
 * ended (then the wait fails at once with it).
 */
export async function waitEtcdHealthy(
  plan: EtcdClusterPlan,
  exited: (name: string) => string | undefined,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const m of plan.members) {
      const why = exited(m.name);
      if (why !== undefined) throw new Error(`etcd ${m.name} exited: ${why}`);
    }
    const health = await Promise.all(
      plan.members.map((m) => etcdJson(`http://127.0.0.1:${m.clientPort}/health`)),
    );
    if (health.every((h) => h?.health === "true")) return;
    if (Date.now() > deadline) throw new Error(`etcd not healthy after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A one-member etcd of our own (for `remusd demo`): its client endpoint and how to stop it. */
export interface LocalEtcd {
  readonly endpoint: string;
  stop(): Promise<void>;
}

/** Starts a one-member etcd with its data under `dir` and waits until it is healthy. */
export async function startLocalEtcd(dir: string): Promise<LocalEtcd> {
  const plan = await planEtcdCluster(dir, 1, `remusd-demo-${process.pid}`);
  const m = plan.members[0] as EtcdMemberPlace;
  const proc = spawn("etcd", etcdMemberArgs(plan, m), { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  let exitCode: number | null | undefined;
  proc.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exit = new Promise<void>((resolve) => {
    proc.on("exit", (c) => {
      exitCode = c;
      resolve();
    });
    // A spawn that fails (no etcd binary) reports 'error' and no 'exit'.
    proc.on("error", (e) => {
      stderr += String(e);
      exitCode ??= -1;
      resolve();
    });
  });
  const stop = async (): Promise<void> => {
    if (exitCode === undefined) proc.kill("SIGKILL");
    await exit;
  };
  try {
    await waitEtcdHealthy(plan, () => (exitCode === undefined ? undefined : `code ${exitCode}: ${stderr}`));
  } catch (e) {
    await stop();
    throw e;
  }
  return { endpoint: `127.0.0.1:${m.clientPort}`, stop };
}
