/**
 * A COLO pair as users reach it: a vswitch with a TAP port in a network
 * namespace, the pair as processes in `--mode colo`, and clients on the
 * Linux kernel's TCP inside the namespace. redis-benchmark runs through the
 * comparator (replies leave once both replicas produced them); then the
 * primary is SIGKILLed under a live connection: the secondary, whose guest
 * accepted that connection with its own ISN, takes over without rollback and
 * its rewriter keeps the kernel's sequence numbers valid: no reset, no wrong
 * reply, every acknowledged write there. The tools are required (Debian
 * redis-tools): without them this test fails, it does not skip.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { Status } from "../../src/api/schemas.js";
import { getJson, inTempDir, kill, killAll, readEvents, startPair, waitFor } from "../helpers/procs.js";
import {
  inNs,
  kvClientSummary,
  makeNetns,
  ackedSoFar as progress,
  redisBenchmarkRows,
  requireTapHost,
  startNsKvClient,
  startTapVswitch,
} from "../vswitch/netns.js";

after(killAll);

const GUEST = "10.0.0.10";

test("COLO through a TAP port: redis-benchmark on matching output, then a SIGKILL of the primary under a kernel TCP connection", async (t) => {
  requireTapHost(["redis-cli", "redis-benchmark"]);
  const net = makeNetns("cor");
  try {
    await inTempDir("colo-redis", async (dir) => {
      const sw = await startTapVswitch(`${net.dev},netns=${net.ns},ip=10.0.0.1/24`);
      const colo = { args: ["--mode", "colo"] };
      const pair = await startPair(dir, {
        switchAddr: sw.addr,
        workload: "idle",
        verify: true,
        primary: colo,
        backup: colo,
      });
      const bench = await inNs(
        net.ns,
        ["redis-benchmark", "-h", GUEST, "-c", "8", "-n", "2000", "-P", "1", "-t", "set,get", "--csv"],
        "",
        120_000,
      );
      assert.equal(bench.code, 0, bench.stderr);
      assert.doesNotMatch(bench.stdout + bench.stderr, /WARNING|ERR/);
      const rows = redisBenchmarkRows(bench.stdout);
      assert.deepEqual(
        rows.map((r) => r[0]),
        ["SET", "GET"],
        bench.stdout,
      );
      t.diagnostic(
        `redis-benchmark -c 8 -P 1 under COLO: ${rows.map((r) => `${r[0]} ${r[1]}/s`).join(", ")}`,
      );
      const st = (await getJson(`${pair.primary.control}/v1/status`)).body as Status;
      assert.ok(st.colo && st.colo.compared.match >= 4000, JSON.stringify(st.colo));

      const client = startNsKvClient(net.ns, GUEST);
      await waitFor("50 acknowledged writes", () => progress(client) >= 50 || client.exitCode !== undefined);
      assert.equal(client.exitCode, undefined, `client ended early: ${client.stdout}${client.stderr}`);
      const before = (await getJson(`${pair.backup.control}/v1/status`)).body as Status;
      const renumbered = before.colo?.rewriter?.offsets ?? 0;
      await kill(pair.primary.proc, "SIGKILL");
      await waitFor("failover.activated", () =>
        readEvents(pair.backupLog).some((e) => e.event === "failover.activated"),
      );
      const atFailover = progress(client);
      await waitFor(
        "50 more acknowledged writes after the failover",
        () => progress(client) >= atFailover + 50 || client.exitCode !== undefined,
      );
      client.child.kill("SIGTERM");
      await client.exited;
      const s = kvClientSummary(client);
      assert.equal(s.resets, 0, "no connection reset");
      assert.equal(s.closed, false, "the connection stayed open");
      assert.deepEqual(s.wrong, [], "every reply was right");
      assert.equal(s.counter, s.acked, "one INCR per acknowledged SET, none lost or repeated");
      const after = (await getJson(`${pair.backup.control}/v1/status`)).body as Status;
      assert.equal(after.role, "primary");
      assert.ok(after.colo?.rewriter?.failedOver);
      t.diagnostic(`connections renumbered on the secondary at the kill: ${renumbered}`);
      assert.ok(renumbered >= 1, "the live connection had the same ISN on both replicas");
    });
  } finally {
    await killAll();
    net.remove();
  }
});
