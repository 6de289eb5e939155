import assert from "node:assert/strict";
import { test } from "node:test";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { bootGuest } from "../../src/guest/guest.js";
import { Heap } from "../../src/guest/mm.js";
import { COUNTER_FILE, counterValue, verifyCounter } from "../../src/guest/programs/basic.js";
import { parseWorkload } from "../../src/guest/workload.js";

test("the scheduler runs every process once per tick and keeps a process table", () => {
  const d = new Domain(geometryOfMiB(4, 4));
  const k = bootGuest(d, { seed: 2, workload: parseWorkload("dirty:rate=1000,hot=0.1+disk:rate=64") });
  k.run(250);
  const ps = k.listProcesses();
  assert.deepEqual(
    ps.map((p) => [p.pid, p.ppid, p.program]),
    [
      [1, 0, "init"],
      [2, 1, "counter"],
      [3, 1, "dirtier"],
      [4, 1, "diskwriter"],
    ],
  );
  const byName = Object.fromEntries(ps.map((p) => [p.program, p]));
  assert.equal(byName.counter?.ticks, 250);
  assert.equal(byName.dirtier?.ticks, 250);
  assert.equal(byName.init?.state, "sleeping");
  assert.ok((byName.dirtier?.pages ?? 0) > 10);
  assert.equal(d.vcpu.ticks, 250);
  assert.equal(d.vcpu.clockNs, 250_000_000);
  assert.equal(counterValue(k), 250);
  assert.ok(verifyCounter(k).ok);
  assert.ok(k.fs.list().some((f) => f.name === COUNTER_FILE));
  assert.ok(k.fs.list().some((f) => f.name === "cc-00.o" && f.size > 0));
});

test("the dirtier dirties about `rate` pages per second of guest time", () => {
  const d = new Domain(geometryOfMiB(16, 4));
  const k = bootGuest(d, { seed: 4, workload: parseWorkload("dirty:rate=5000,hot=0.5,pattern=seq") });
  d.collectDirty();
  k.run(100); // 0.1 s of guest time: 500 sequential pages
  const dirty = d.collectDirty().length;
  assert.ok(dirty >= 500 && dirty < 540, `dirty pages ${dirty}`);
});

test("the dirtier's fill: whole pages of zeros, half-compressible or random template copies, stamped", () => {
  for (const fill of ["zeros", "half", "random"] as const) {
    const d = new Domain(geometryOfMiB(4, 1));
    const k = bootGuest(d, {
      seed: 5,
      workload: parseWorkload(`dirty:rate=4000,hot=0.5,pattern=seq,fill=${fill}`),
    });
    k.run(50);
    d.collectDirty();
    k.run(50); // 200 sequential whole pages
    const pfns = d.collectDirty();
    assert.ok(pfns.length >= 200, `${fill}: ${pfns.length} pages`);
    const pages = [...pfns].map((p) => d.memory.page(p)).filter((pg) => pg.readUInt32LE(2048) !== 0);
    const zeros = [...pfns].filter((p) => d.memory.page(p).every((b) => b === 0)).length;
    if (fill === "zeros") assert.ok(zeros >= 190, `zeros: ${zeros} zero pages`);
    else {
      // Whole pages of the mix: far more than a 32-byte record's worth of bytes set, and each write distinct.
      assert.ok(pages.length >= 190, `${fill}: ${pages.length} full pages`);
      const stamps = new Set(pages.map((pg) => pg.readUInt32LE(0)));
      assert.ok(stamps.size >= 190, `${fill}: ${stamps.size} distinct stamps`);
    }
  }
  assert.throws(() => parseWorkload("dirty:fill=ones"), /fill must be/);
});

test("heap: chunks are reused, large allocations take pages, all state in memory", () => {
  const d = new Domain(geometryOfMiB(2, 1));
  const k = bootGuest(d, { seed: 1, workload: parseWorkload("idle") });
  const h = k.heap;
  const before = h.pages.freePages;
  const a = h.alloc(100);
  const b = h.alloc(100);
  assert.notEqual(a, b);
  h.free(a, 100);
  assert.equal(h.alloc(120), a); // same 128-byte class, LIFO reuse
  const big = h.alloc(10000);
  assert.equal(big % 4096, 0);
  h.free(big, 10000);
  // A second handle sees the same heap.
  const h2 = new Heap(d.memory, h.hdr);
  assert.equal(h2.bytesInUse, h.bytesInUse);
  assert.ok(h.pages.freePages <= before);
});

test("running out of guest pages is a typed error", () => {
  const d = new Domain(geometryOfMiB(1, 1));
  const k = bootGuest(d, { seed: 1, workload: parseWorkload("idle") });
  assert.throws(() => k.pages.alloc(10_000), /out of guest pages/);
  assert.equal(k.pages.tryAlloc(10_000), 0);
});
