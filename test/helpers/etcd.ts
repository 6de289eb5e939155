/**
 * A real etcd for tests: a cluster of `etcd` processes (Debian etcd-server
 * 3.4) on 127.0.0.1 ephemeral ports, with short heartbeat and election
 * timeouts and temporary data folders, started healthy and stopped with
 * everything removed. Also a TCP proxy the test controls, to cut one client
 * from etcd without closing its connections.
 *
 * The rule for a missing `etcd` binary: with CI set the tests that need it
 * fail (startEtcdCluster throws); without CI they are skipped with the reason
 * (`etcdSkip`), so a developer without etcd-server still runs the rest.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  etcdInstalled,
  etcdJson,
  etcdMemberArgs,
  planEtcdCluster,
  waitEtcdHealthy,
} from "../../src/proc/etcd.js";
import { type Proc, startCommand } from "./procs.js";

export interface EtcdMember {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** HOST:PORT of its client API. */
  readonly endpoint: string;
  readonly proc: Proc;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** `etcd://H:P,H:P,H:P/PREFIX` for `--lease`. */
  leaseUrl(prefix: string): string;
  /** The members still running. */
  live(): EtcdMember[];
  /** The current leader, as the live members report it (waits until they agree on one). */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  /** Sends `signal` to one member and waits for it to exit. */
  kill(m: EtcdMember, signal?: NodeJS.Signals): Promise<void>;
  /** Kills every member and removes the data folders. */
  stop(): Promise<void>;
}

export interface EtcdOptions {
  readonly members?: number;
  /** --heartbeat-interval in ms. */
  readonly heartbeatMs?: number;
  /** --election-timeout in ms (etcd's shortest lease TTL is 1.5 × this, rounded up to a second). */
  readonly electionMs?: number;
}

/**
 * The `skip` option of a suite that needs etcd: false when etcd is installed
 * or CI is set (then a missing etcd fails the suite), else the reason.
 */
export function etcdSkip(): string | false {
  if (etcdInstalled() || process.env.CI) return false;
  return "etcd is not installed (apt-get install etcd-server); CI fails instead of skipping";
}

/** Starts a cluster and waits until every member reports itself healthy (a leader is elected). */
export async function startEtcdCluster(o: EtcdOptions = {}): Promise<EtcdCluster> {
  if (!etcdInstalled())
    throw new Error("etcd is not installed: apt-get install etcd-server (.ci/run installs it)");
  const dir = mkdtempSync(join(tmpdir(), "remusd-etcd-"));
  const plan = await planEtcdCluster(dir, o.members ?? 3, `remusd-test-${process.pid}-${Date.now()}`, o);
  const members: EtcdMember[] = plan.members.map((m) => ({
    name: m.name,
    clientPort: m.clientPort,
    peerPort: m.peerPort,
    endpoint: `127.0.0.1:${m.clientPort}`,
    proc: startCommand(`etcd-${m.name}`, "etcd", etcdMemberArgs(plan, m)),
  }));
  const running = (m: EtcdMember): boolean => m.proc.exitCode === undefined;
  const cluster: EtcdCluster = {
    members,
    leaseUrl: (prefix) => `etcd://${members.map((m) => m.endpoint).join(",")}${prefix}`,
    live: () => members.filter(running),
    async leader(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const st = await Promise.all(
          cluster
            .live()
            .map(async (m) => ({ m, s: await etcdJson(`http://${m.endpoint}/v3/maintenance/status`, "{}") })),
        );
        const leaders = new Set(st.map((x) => String(x.s?.leader ?? "")));
        if (leaders.size === 1 && !leaders.has("") && !leaders.has("0")) {
          const id = [...leaders][0];
          const found = st.find(
            (x) => String((x.s?.header as Record<string, unknown> | undefined)?.member_id) === id,
          )?.m;
          if (found) return found;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the etcd members did not agree on a leader in ${timeoutMs} ms`);
    },
    async kill(m, signal = "SIGKILL") {
      if (running(m)) m.proc.child.kill(signal);
      await m.proc.exited;
    },
    async stop() {
      for (const m of members) if (running(m)) m.proc.child.kill("SIGKILL");
      await Promise.all(members.map((m) => m.proc.exited));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitEtcdHealthy(plan, (name) => {
      const m = members.find((x) => x.name === name) as EtcdMember;
      return running(m) ? undefined : `code ${m.proc.exitCode}: ${m.proc.stderr.slice(-2000)}`;
    });
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/**
 * A TCP proxy on 127.0.0.1 in front of `target`: `cut()` stops forwarding in
 * both directions while the connections stay open (a partition, not a
 * reset: nothing is lost, nothing arrives); `heal()` lets the bytes flow again.
 */
export class TcpProxy {
  private cutOff = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const a = server.address();
    if (a === null || typeof a === "string") throw new Error("no port");
    const proxy = new TcpProxy(server, a.port);
    server.on("connection", (client) => proxy.join(client, connect(target.port, target.host)));
    return proxy;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.cutOff = true;
    for (const s of this.sockets) s.pause();
  }

  heal(): void {
    this.cutOff = false;
    for (const s of this.sockets) s.resume();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  private join(a: Socket, b: Socket): void {
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      this.sockets.add(from);
      from.on("data", (d) => to.write(d));
      from.on("error", () => to.destroy());
      from.on("close", () => {
        this.sockets.delete(from);
        to.destroy();
      });
      if (this.cutOff) from.pause();
    }
  }
}
