/**
 * The domain's configuration (src/domain/config.ts): which explicitly given
 * settings a primary's DOMAIN_CONFIG contradicts, and how that is said.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  configConflicts,
  configSummary,
  type DomainConfig,
  describeConflicts,
} from "../../src/domain/config.js";

const CFG: DomainConfig = {
  pages: 256 * 64,
  diskBlocks: 256 * 16,
  intervalMs: 25,
  guestMac: Buffer.from("020000000010", "hex"),
  guestIp: 0x0a00000a,
  workload: "web",
};

test("only settings that were given and differ conflict, named by their option", () => {
  assert.deepEqual(configConflicts({}, CFG), []);
  assert.deepEqual(configConflicts({ ...CFG, guestMac: Buffer.from("020000000010", "hex") }, CFG), []);
  const c = configConflicts(
    { pages: 256 * 128, guestMac: Buffer.from("020000000011", "hex"), workload: "web" },
    CFG,
  );
  assert.deepEqual(c, [
    { option: "--domain-mib", local: "128 MiB", stream: "64 MiB" },
    { option: "--guest-mac", local: "02:00:00:00:00:11", stream: "02:00:00:00:00:10" },
  ]);
  assert.equal(
    describeConflicts(c),
    "--domain-mib is 128 MiB here, the primary's domain has 64 MiB; --guest-mac is 02:00:00:00:00:11 here, the primary's domain has 02:00:00:00:00:10",
  );
  assert.deepEqual(
    configConflicts({ intervalMs: 40, guestIp: 0x0a00000b, diskBlocks: 256 }, CFG).map((x) => x.option),
    ["--disk-mib", "--interval-ms", "--guest-ip"],
  );
});

test("the summary shows sizes in MiB and addresses as text", () => {
  assert.deepEqual(configSummary(CFG), {
    memoryMiB: 64,
    diskMiB: 16,
    intervalMs: 25,
    guestMac: "02:00:00:00:00:10",
    guestIp: "10.0.0.10",
    workload: "web",
  });
});
