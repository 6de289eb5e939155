/**
 * Measures, on a real three-member etcd cluster (heartbeat 50 ms, election
 * 500 ms), the time from a holder's last renewal (its send time) until a
 * contender acquires the lease, for TTL 1, 2 and 5 s. Not a test: run it by
 * hand after a build, `node dist/test/lease/measure-takeover.js [ROUNDS]`.
 */
import { EtcdLeaseService } from "../../src/lease/etcd.js";
import { Lease } from "../../src/lease/lease.js";
import { leaseTiming, parseLeaseSpec } from "../../src/lease/spec.js";
import { startEtcdCluster } from "../helpers/etcd.js";

const rounds = Number(process.argv[2] ?? 5);
const etcd = await startEtcdCluster();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
try {
  for (const ttlS of [1, 2, 5]) {
    const figures: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const spec = parseLeaseSpec(etcd.leaseUrl(`/measure/ttl${ttlS}/r${i}`));
      if (spec.kind !== "etcd") throw new Error("spec");
      const timing = leaseTiming(ttlS);
      const mk = (node: string): Lease =>
        new Lease({
          service: new EtcdLeaseService(spec, { requestTimeoutMs: timing.requestTimeoutMs }),
          timing,
          candidate: { nodeId: node, address: `ws://${node}:7780`, control: `${node}:7781` },
        });
      const a = mk("a");
      const b = mk("b");
      a.campaign();
      while (a.state !== "held") await sleep(5);
      b.campaign();
      await sleep(ttlS * 1000 + 200);
      const lastSent = (a.deadline as number) - a.core.grantedTtlMs;
      a.close(); // stops renewing, no revoke: a crash as etcd sees it
      while (b.state !== "held") await sleep(1);
      figures.push(performance.now() - lastSent);
      b.close();
    }
    figures.sort((x, y) => x - y);
    const med = figures[Math.floor(figures.length / 2)] as number;
    console.log(
      `TTL ${ttlS} s: last renewal sent → contender holds: median ${med.toFixed(0)} ms, min ${(figures[0] as number).toFixed(0)}, max ${(figures.at(-1) as number).toFixed(0)} (${rounds} rounds; ${figures.map((f) => f.toFixed(0)).join(", ")})`,
    );
  }
} finally {
  await etcd.stop();
}
