/**
 * The guest as users reach it: a vswitch with a TAP port in a network
 * namespace, a protected pair (backup and primary as processes), and the real
 * Redis tools (Debian redis-tools) plus a Node client on the kernel's TCP,
 * all run inside the namespace with `ip netns exec`. redis-cli and
 * redis-benchmark must work without warnings; then the primary is SIGKILLed
 * while the long-lived client writes and reads: no reset, no wrong reply,
 * and every acknowledged write is there through a new connection. The tools
 * are required: without them this test fails, it does not skip.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { inTempDir, kill, killAll, readEvents, startPair, waitFor } from "../helpers/procs.js";
import {
  inNs,
  kvClientSummary,
  makeNetns,
  ackedSoFar as progress,
  redisBenchmarkRows,
  requireTapHost,
  startNsKvClient,
  startTapVswitch,
} from "./netns.js";

after(killAll);

const GUEST = "10.0.0.10";

test("redis-cli and redis-benchmark through a TAP port, and a SIGKILL of the primary under a live connection", async (t) => {
  requireTapHost(["redis-cli", "redis-benchmark"]);
  const net = makeNetns("rds");
  try {
    await inTempDir("redis-tools", async (dir) => {
      const sw = await startTapVswitch(`${net.dev},netns=${net.ns},ip=10.0.0.1/24`);
      // startPair returns once the primary is protected.
      const pair = await startPair(dir, { switchAddr: sw.addr, workload: "idle", verify: true });

      // redis-cli, one command per run.
      const cli = async (...args: string[]): Promise<string> => {
        const r = await inNs(net.ns, ["redis-cli", "-h", GUEST, ...args]);
        assert.equal(r.code, 0, `redis-cli ${args.join(" ")}: ${r.stderr}`);
        return r.stdout.trimEnd();
      };
      assert.equal(await cli("PING"), "PONG");
      assert.equal(await cli("SET", "greeting", "hello"), "OK");
      assert.equal(await cli("GET", "greeting"), "hello");
      assert.equal(await cli("STRLEN", "greeting"), "5");
      assert.equal(await cli("CONFIG", "GET", "appendonly"), "appendonly\nyes");
      assert.match(await cli("INFO", "server"), /^# Server\r?\nredis_version:7\.0\.0/);
      assert.equal(await cli("SELECT", "1"), "ERR DB index is out of range");
      // -3 asks for HELLO 3 first: refused, redis-cli carries on in RESP2.
      const resp3 = await inNs(net.ns, ["redis-cli", "-3", "-h", GUEST, "PING"]);
      assert.equal(resp3.stdout.trim(), "PONG");
      assert.match(resp3.stderr, /HELLO 3 failed: ERR unknown command 'HELLO'/);
      // Commands on stdin: redis-cli builds its help from COMMAND DOCS.
      const piped = await inNs(net.ns, ["redis-cli", "-h", GUEST], "help STRLEN\nDBSIZE\n");
      assert.equal(piped.code, 0, piped.stderr);
      assert.match(piped.stdout, /STRLEN.*key/);
      assert.match(piped.stdout, /Returns the length of a key's string value/);

      // redis-benchmark: no warning about CONFIG, every test reports a rate.
      const bench = await inNs(net.ns, [
        "redis-benchmark",
        "-h",
        GUEST,
        "-c",
        "4",
        "-n",
        "400",
        "-P",
        "4",
        "-t",
        "ping,set,get,incr,mset",
        "--csv",
      ]);
      assert.equal(bench.code, 0, bench.stderr);
      assert.doesNotMatch(bench.stdout + bench.stderr, /WARNING|ERR/);
      const rows = redisBenchmarkRows(bench.stdout);
      assert.deepEqual(
        rows.map((r) => r[0]),
        ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"],
        bench.stdout,
      );
      for (const r of rows) assert.ok(Number(r[1]) > 0, `${r[0]}: ${r[1]} requests/s`);

      // A long-lived connection through a failover.
      const client = startNsKvClient(net.ns, GUEST);
      await waitFor("50 acknowledged writes", () => progress(client) >= 50 || client.exitCode !== undefined);
      assert.equal(client.exitCode, undefined, `client ended early: ${client.stdout}${client.stderr}`);
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
      t.diagnostic(`client: ${s.acked} writes acknowledged, longest request ${s.maxLatencyMs.toFixed(0)} ms`);
      assert.equal(s.resets, 0, "no connection reset");
      assert.equal(s.closed, false, "the connection stayed open");
      assert.deepEqual(s.wrong, [], "every reply was right");
      assert.ok(s.acked >= atFailover + 50, `acked ${s.acked}`);
      assert.equal(s.counter, s.acked, "one INCR per acknowledged SET, none lost or repeated");

      // Every acknowledged write, read back through a new connection to the new primary.
      const keys = Array.from({ length: s.acked }, (_, i) => `live:${i}`);
      const got = await inNs(net.ns, ["redis-cli", "-h", GUEST, "--raw", "MGET", ...keys]);
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(
        got.stdout.trimEnd().split("\n"),
        keys.map((_, i) => `v-${i}`),
      );
      assert.equal(await cli("GET", "live:counter"), String(s.counter));
      assert.equal(await cli("GET", "greeting"), "hello");
    });
  } finally {
    await killAll();
    net.remove();
  }
});
