/**
 * The domain's configuration travels with the stream (DOMAIN_CONFIG, SPEC
 * §6.16): a backup given no domain settings takes its primary's memory and
 * disk size, interval, guest addresses and workload; a setting it was given
 * that contradicts them stops it and changes nothing.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GUEST, pairOf } from "../sim/cluster.js";
import { check } from "../sim/history.js";

test("a backup with a domain of another size and no settings of its own adopts the primary's domain, syncs, and resumes it exactly", () => {
  const { world, cluster, a, b } = pairOf(41, {
    domainMiB: 4,
    diskMiB: 2,
    backupDomainMiB: 1,
    intervalMs: 7,
    net: GUEST,
    workload: "idle",
  });
  assert.equal(b.domain.pages, 256, "the backup starts with its own (placeholder) size");
  world.run(() => a.node.state === "protected", 3000);
  assert.equal(a.node.state, "protected");
  assert.equal(b.node.state, "standby");
  assert.equal(b.domain.pages, 1024);
  assert.equal(b.domain.disk.blocks, 512);
  const [adopted] = cluster.history.events("domain.config", "b");
  assert.deepEqual(adopted?.e, {
    type: "domain.config",
    memoryMiB: 4,
    diskMiB: 2,
    intervalMs: 7,
    guestMac: "02:00:00:00:00:10",
    guestIp: "10.0.0.10",
    workload: "idle",
    reshaped: true,
  });
  assert.deepEqual(b.node.domainConfig, a.node.domainConfig);
  world.runFor(40);
  a.kill("reset");
  world.run(() => b.node.roleName === "primary", 1000);
  assert.equal(b.node.roleName, "primary");
  // The promoted node runs the domain with the adopted interval.
  assert.equal(b.node.config.intervalMs, 7);
  assert.deepEqual(check(cluster.history), []);
});

test("a backup given a --domain-mib that contradicts its primary's refuses the domain: CONFIG_MISMATCH, config.conflict, stopped, nothing changed", () => {
  const { world, cluster, a, b } = pairOf(42, {
    domainMiB: 4,
    backupDomainMiB: 2,
    pinned: { pages: 512 },
  });
  const before = b.domain.digestFull();
  world.run(() => b.node.state === "stopped", 2000);
  assert.equal(b.node.state, "stopped");
  const [conflict] = cluster.history.events("config.conflict", "b");
  assert.deepEqual(conflict?.e.conflicts, [{ option: "--domain-mib", local: "2 MiB", stream: "4 MiB" }]);
  assert.equal(b.node.configError, "--domain-mib is 2 MiB here, the primary's domain has 4 MiB");
  assert.equal(b.domain.pages, 512, "the backup's domain is untouched");
  assert.equal(b.domain.digestFull(), before);
  assert.equal(cluster.history.events("sync.started", "b").length, 0);
  // The primary knows its backup stopped (it will not activate): it runs unprotected, releasing.
  world.runFor(50);
  assert.equal(a.node.state, "unprotected");
  assert.equal(a.node.primary?.output, "release");
  assert.deepEqual(check(cluster.history), []);
});
