/**
 * The parts of the rewind resync (src/replication/rewind.ts) without a
 * network: the domain's dirty-since bitmap, which images a primary accepts
 * to rewind, and what the rewind sends.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Domain } from "../../src/domain/domain.js";
import { toBitmap } from "../../src/protocol/colo.js";
import { rewindBaseOf, rewindRecord, rewindRefusal, rewindSet } from "../../src/replication/rewind.js";

const MIB = 1024 * 1024;

test("the dirty-since bitmap keeps every page and block written since tracking began, however often the logs drain", () => {
  const d = new Domain({ memoryBytes: MIB, diskBytes: MIB });
  d.memory.setU32(4096 * 3, 1);
  assert.equal(d.dirtySince(), undefined, "nothing tracked yet");
  d.collectDirty();
  d.trackDirtySince();
  d.memory.setU32(4096 * 7, 1);
  d.disk.setU32(5, 0, 9);
  d.collectDirty(); // an epoch's capture
  d.collectDiskWrites();
  d.memory.setU32(4096 * 2, 1);
  d.resetLogs(); // a full sync to some backup
  d.memory.setU32(4096 * 9, 1);
  const s = d.dirtySince();
  assert.deepEqual([...(s?.pages ?? [])], [2, 7, 9]);
  assert.deepEqual([...(s?.blocks ?? [])], [5]);
  // Reading it drains nothing: the next epoch still captures page 9.
  assert.deepEqual([...d.collectDirty()], [9]);
  d.untrackDirtySince();
  assert.equal(d.dirtySince(), undefined);
});

test("a demoted primary's rewind base is what its logs hold (written after its last acknowledged epoch), read without draining", () => {
  const d = new Domain({ memoryBytes: MIB, diskBytes: MIB });
  d.memory.setU32(4096 * 11, 1);
  d.memory.setU32(4096 * 4, 1);
  d.disk.setU32(3, 0, 1);
  const base = rewindBaseOf(d, 4, 120);
  assert.deepEqual([base.generation, base.epoch, [...base.pages], [...base.blocks]], [4, 120, [4, 11], [3]]);
  assert.equal(d.memory.log.count, 2);
  const r = rewindRecord(base, d.pages, d.disk.blocks);
  assert.deepEqual(r.pageBitmap, toBitmap([4, 11], d.pages));
  assert.deepEqual(r.blockBitmap, toBitmap([3], d.disk.blocks));
});

test("a primary rewinds only an image of its own history: the generation it continues, an epoch at or before its activation", () => {
  const lineage = { generation: 3, epoch: 500 };
  assert.equal(rewindRefusal({ generation: 3, epoch: 500 }, lineage, true), undefined);
  assert.equal(rewindRefusal({ generation: 3, epoch: 12 }, lineage, true), undefined);
  assert.match(rewindRefusal({ generation: 3, epoch: 501 }, lineage, true) ?? "", /after epoch 500/);
  assert.match(rewindRefusal({ generation: 2, epoch: 400 }, lineage, true) ?? "", /generation 2/);
  assert.match(rewindRefusal({ generation: 3, epoch: 400 }, undefined, true) ?? "", /booted/);
  assert.match(rewindRefusal({ generation: 3, epoch: 400 }, lineage, false) ?? "", /booted/);
});

test("a rewind sends the union of the former primary's dirtied set and the primary's own since activation", () => {
  const d = new Domain({ memoryBytes: MIB, diskBytes: MIB });
  const offer = {
    type: "rewind" as const,
    generation: 3,
    epoch: 10,
    pageBitmap: toBitmap([1, 5, 200], d.pages),
    blockBitmap: toBitmap([7], d.disk.blocks),
  };
  const set = rewindSet(offer, { pages: Uint32Array.of(5, 9), blocks: Uint32Array.of(2, 7) }, d);
  assert.deepEqual([...set.pages], [1, 5, 9, 200]);
  assert.deepEqual([...set.blocks], [2, 7]);
});
