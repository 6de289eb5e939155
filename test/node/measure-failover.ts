/**
 * Measures, with real processes in one run, the time from SIGKILL of the
 * primary to the first guest frame the new primary released (its
 * `output.resumed` event), and the longest stall `remusd client` saw:
 * a fixed pair without a lease (`remusd primary`/`remusd backup`, heartbeat
 * 100 ms x 10) and a `remusd node` pair on a real three-member etcd (TTL 1 s),
 * alternating round by round. Not a test: run it by hand after a build,
 * `node dist/test/node/measure-failover.js [ROUNDS]`.
 */
import { join } from "node:path";
import { startEtcdCluster } from "../helpers/etcd.js";
import {
  daemonArgs,
  getJson,
  kill,
  killAll,
  logLine,
  type Proc,
  readEvents,
  startPair,
  startProc,
  startVswitch,
  tempDir,
  waitFor,
} from "../helpers/procs.js";

const rounds = Number(process.argv[2] ?? 3);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function client(sw: string, seconds: number): Proc {
  return startProc("client", ["client", "--switch", sw, "--connections", "8", "--duration", String(seconds)]);
}

async function verdict(c: Proc): Promise<{ stall: number; ok: boolean }> {
  await c.exited;
  const s = JSON.parse(c.stdout.trim().split("\n").pop() as string) as {
    longestStallMs: number;
    ok: boolean;
    resets: number;
    lostWrites: number;
    wrongReads: number;
  };
  return { stall: s.longestStallMs, ok: s.ok && s.resets === 0 && s.lostWrites === 0 && s.wrongReads === 0 };
}

/** ms from `killedAt` to the new primary's output.resumed (its first released frame). */
async function resumed(log: string, killedAt: number): Promise<number> {
  const e = await waitFor(
    "output.resumed",
    () => readEvents(log).find((x) => x.event === "output.resumed" && Date.parse(x.ts as string) >= killedAt),
    30_000,
  );
  return Date.parse(e.ts as string) - killedAt;
}

async function withoutLease(): Promise<{ ms: number; stall: number; ok: boolean }> {
  const dir = tempDir("measure-none-");
  const pair = await startPair(dir, { vswitch: true, domainMib: 16, diskMib: 8, workload: "idle" });
  const c = client(pair.switchAddr as string, 8);
  await sleep(3000);
  const killedAt = Date.now();
  await kill(pair.primary.proc);
  const ms = await resumed(pair.backupLog, killedAt);
  const v = await verdict(c);
  await killAll();
  return { ms, ...v };
}

async function withLease(): Promise<{ ms: number; stall: number; ok: boolean }> {
  const dir = tempDir("measure-lease-");
  const etcd = await startEtcdCluster();
  const sw = (await startVswitch()).addr;
  const node = async (name: string) => {
    const proc = startProc(name, [
      "node",
      "--listen",
      "127.0.0.1:0",
      "--lease",
      etcd.leaseUrl("/measure"),
      "--lease-ttl-s",
      "1",
      "--node-id",
      name,
      "--workload",
      "idle",
      ...daemonArgs(dir, name, { domainMib: 16, diskMib: 8, switchAddr: sw }),
    ]);
    const line = await waitFor(`${name}`, () => logLine(proc, "remusd node started"));
    return { proc, control: line.control as string };
  };
  const a = await node("a");
  await waitFor("a holds the lease", async () => {
    const s = (await getJson(`${a.control}/v1/status`)).body as { lease?: { state: string } };
    return s.lease?.state === "held";
  });
  await node("b");
  await waitFor("protected", async () => {
    const s = (await getJson(`${a.control}/v1/status`)).body as { state: string };
    return s.state === "protected";
  });
  const c = client(sw, 8);
  await sleep(3000);
  const killedAt = Date.now();
  await kill(a.proc);
  const ms = await resumed(join(dir, "b.jsonl"), killedAt);
  const v = await verdict(c);
  await etcd.stop();
  await killAll();
  return { ms, ...v };
}

try {
  for (let i = 0; i < rounds; i++) {
    const n = await withoutLease();
    const l = await withLease();
    console.log(
      `round ${i + 1}: kill to first released output: without a lease ${n.ms} ms (client stall ${n.stall} ms, clean ${n.ok}); with a lease (TTL 1 s) ${l.ms} ms (client stall ${l.stall} ms, clean ${l.ok})`,
    );
  }
} finally {
  await killAll();
}
