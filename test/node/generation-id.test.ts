/**
 * The VM Generation ID (src/domain/device.ts): 128 bits in the device block,
 * drawn from the node's entropy at boot, carried unchanged by every
 * checkpoint (so a failover or a switchover resumes it), and drawn anew
 * when the domain starts from an image that may also exist elsewhere (a
 * restore).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Domain } from "../../src/domain/domain.js";
import { Prng } from "../../src/prng.js";
import { protectedPair } from "../sim/cluster.js";
import { check } from "../sim/history.js";

const ZERO = Buffer.alloc(16);

test("a booted domain has a generation ID from its node's entropy; the backup holds the same; a failover keeps it", () => {
  const { world, cluster, a, b } = protectedPair(51);
  const id = a.domain.device.generationId;
  assert.notDeepEqual(id, ZERO);
  world.runFor(30);
  assert.deepEqual(b.domain.device.generationId, id, "it travels with the device block");
  a.kill("reset");
  world.run(() => b.node.roleName === "primary", 1000);
  assert.equal(b.node.roleName, "primary");
  world.runFor(30);
  assert.deepEqual(b.domain.device.generationId, id, "unchanged through the failover: the domain continues");
  assert.deepEqual(check(cluster.history), []);
});

test("a planned switchover keeps the generation ID", () => {
  const { world, a, b } = protectedPair(52);
  const id = a.domain.device.generationId;
  world.runFor(20);
  b.node.failover(true, world.now);
  world.run(() => b.node.roleName === "primary", 1000);
  assert.equal(b.node.roleName, "primary");
  assert.deepEqual(b.domain.device.generationId, id);
});

test("two booted domains differ; a restore from an image draws a new ID and changes nothing else", () => {
  const p1 = protectedPair(53);
  const p2 = protectedPair(54);
  assert.notDeepEqual(p1.a.domain.device.generationId, p2.a.domain.device.generationId);
  const image = p1.b.domain;
  const restored = new Domain(image.geometry);
  restored.restoreFrom(image, new Prng(7));
  const id = restored.device.generationId;
  assert.notDeepEqual(id, image.device.generationId);
  assert.notDeepEqual(id, ZERO);
  // Only the ID differs: put the image's back and the two are the same state.
  restored.device.generationId = image.device.generationId;
  assert.equal(restored.digestFull(), image.digestFull());
  // A plain copy (what a checkpoint apply amounts to) keeps it.
  const copy = new Domain(image.geometry);
  copy.copyFrom(image);
  assert.deepEqual(copy.device.generationId, image.device.generationId);
});
