/**
 * `remusd node` pairs as real processes on a real etcd (test/helpers/etcd.ts),
 * shared by the process tests of `remusd node` (test/node/node.process.test.ts,
 * test/colo/colo-lease.process.test.ts): start a node, read its status, a
 * `remusd client` on the vswitch, and the one-releaser check over the nodes'
 * event logs.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { expectCleanClient } from "./client.js";
import { type EtcdCluster, startEtcdCluster } from "./etcd.js";
import {
  type DaemonInfo,
  daemonArgs,
  getJson,
  inTempDir,
  logLine,
  type Proc,
  readEvents,
  startProc,
  startVswitch,
  waitFor,
} from "./procs.js";

/** The checking client the node tests run (test/helpers/client.ts). */
export { startClient } from "./client.js";

/** The control API token of every node these tests start. */
export const TOKEN = "node-test-token-0123456789";
/**
 * The lease TTL of the process tests, in seconds: 2, as the demo's. With 1 s a
 * node starved of CPU by a loaded machine (two test files at once beside
 * other work) sometimes missed its renewals for a whole TTL, and a lone
 * primary that loses its lease before a backup synced leaves the lineage
 * with no image to resume (README "Failure modes"): the pair then waits.
 */
export const LEASE_TTL_S = "2";

/** A started `remusd node`: its process, control API, replication port and event log. */
export interface NodeProc extends DaemonInfo {
  readonly name: string;
  readonly log: string;
  /** When the test killed it (its output window ends there at the latest). */
  killedAt?: number;
}

/** What these tests read of `GET /v1/status`. */
export interface Status {
  role: string;
  state: string;
  generation: number;
  fencing: string;
  lease: { state: string; holder: { nodeId: string } | null } | null;
  mode: string;
}

/** The node's status. */
export async function status(n: DaemonInfo): Promise<Status> {
  return (await getJson(`${n.control}/v1/status`)).body as Status;
}

/** Polls `cond` every 25 ms until it holds (a throw counts as not yet), at most `ms`. */
export async function until(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await cond()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts `remusd node` `name` on a 1 s lease (16 MiB, idle workload, the vswitch), with `extra` flags. */
export async function startNode(
  dir: string,
  name: string,
  leaseUrl: string,
  switchAddr: string,
  extra: string[] = [],
): Promise<NodeProc> {
  const args = [
    "node",
    "--listen",
    "127.0.0.1:0",
    "--lease",
    leaseUrl,
    "--lease-ttl-s",
    LEASE_TTL_S,
    "--node-id",
    name,
    "--workload",
    "idle",
    ...daemonArgs(dir, name, { token: TOKEN, domainMib: 16, diskMib: 8, switchAddr }),
    "--allow-fault-injection",
    ...extra,
  ];
  const proc = startProc(name, args);
  const line = await waitFor(`${name} to start`, () => {
    if (proc.exitCode !== undefined)
      throw new Error(`${name} exited with ${proc.exitCode}: ${proc.stderr.slice(-2000)}`);
    return logLine(proc, "remusd node started");
  }).catch((e: Error) => {
    throw new Error(`${e.message}\n${proc.stderr.slice(-3000)}`);
  });
  return {
    name,
    proc,
    control: line.control as string,
    replicationPort: line.replication as number,
    log: join(dir, `${name}.jsonl`),
  };
}

/** The client's verdict is clean (test/helpers/client.ts); prints its longest stall. */
export async function expectClean(client: Proc, what: string): Promise<void> {
  const summary = await expectCleanClient(client, what);
  console.log(`# ${what}: longest client stall ${summary.longestStallMs} ms`);
}

/** The windows in which each node could release output, from its event log; they must not overlap. */
export function assertOneReleaser(nodes: readonly NodeProc[]): void {
  const windows: { node: string; from: number; to: number }[] = [];
  for (const n of nodes) {
    let open: { node: string; from: number; to: number } | undefined;
    for (const e of readEvents(n.log)) {
      const t = Date.parse(e.ts as string);
      if (e.event === "lease.acquired") {
        open = { node: n.name, from: t, to: Number.POSITIVE_INFINITY };
        windows.push(open);
      } else if ((e.event === "lease.lost" || e.event === "lease.released") && open) {
        open.to = Date.parse(e.releasableUntil as string);
        open = undefined;
      } else if (e.event === "role.changed" && e.reason === "started" && open) {
        // A restart: the previous incarnation died (killed) without a word.
        open.to = Math.min(open.to, n.killedAt ?? t);
        open = undefined;
      }
    }
    // A window that opened after the kill is a restarted incarnation's: it stays open.
    if (open && n.killedAt !== undefined && open.from <= n.killedAt) open.to = n.killedAt;
  }
  windows.sort((a, b) => a.from - b.from);
  for (let i = 1; i < windows.length; i++) {
    const p = windows[i - 1] as { node: string; from: number; to: number };
    const c = windows[i] as { node: string; from: number; to: number };
    assert.ok(
      p.to <= c.from,
      `${p.node} could release until ${new Date(p.to).toISOString()}, after ${c.node} acquired at ${new Date(c.from).toISOString()}`,
    );
  }
}

/**
 * A fresh pair on its own lease prefix: a (the first holder, primary) and b
 * (its backup), protected; `extra` flags for both.
 */
export async function pair(
  dir: string,
  etcd: EtcdCluster,
  prefix: string,
  leaseUrl = etcd.leaseUrl(prefix),
  extra: string[] = [],
): Promise<{ a: NodeProc; b: NodeProc; sw: string; url: string }> {
  const sw = (await startVswitch()).addr;
  const a = await startNode(dir, "a", leaseUrl, sw, extra);
  await until("a to hold the lease", async () => (await status(a)).lease?.state === "held");
  const b = await startNode(dir, "b", etcd.leaseUrl(prefix), sw, extra);
  await until("a to be protected by b", async () => (await status(a)).state === "protected", 60_000);
  const sb = await status(b);
  assert.equal(sb.role, "backup");
  assert.equal(sb.fencing, "lease");
  assert.equal(sb.lease?.holder?.nodeId, "a");
  return { a, b, sw, url: leaseUrl };
}

/**
 * Runs `fn` in a fresh folder with a fresh etcd cluster (one per test: `inTempDir`
 * ends every process the test started, etcd's members too).
 */
export function withEtcd(
  prefix: string,
  fn: (dir: string, etcd: EtcdCluster) => Promise<void>,
): Promise<void> {
  return inTempDir(prefix, async (dir) => {
    const etcd = await startEtcdCluster();
    try {
      await fn(dir, etcd);
    } finally {
      await etcd.stop();
    }
  });
}
