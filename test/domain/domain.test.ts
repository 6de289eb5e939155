import assert from "node:assert/strict";
import { test } from "node:test";
import { CopyCapturer } from "../../src/domain/capture.js";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { PAGE_SIZE } from "../../src/domain/memory.js";
import { isRemusError } from "../../src/errors.js";
import { bootGuest, Kernel } from "../../src/guest/guest.js";
import { verifyCounter } from "../../src/guest/programs/basic.js";
import { parseWorkload } from "../../src/guest/workload.js";

const GEO = geometryOfMiB(4, 4);
const WORKLOAD = parseWorkload("dirty:rate=20000,hot=0.3,pattern=zipf+disk:rate=512");

/** Copies every epoch's dirty pages, disk blocks, vCPU and device from `src` into `dst` (a checkpoint, in process). */
function checkpointInto(src: Domain, dst: Domain, capturer: CopyCapturer): void {
  const pfns = src.collectDirty();
  const cap = capturer.capture(pfns);
  const blocks = src.collectDiskWrites();
  for (let i = 0; i < cap.count; i++) dst.memory.writePage(cap.pfn(i), cap.page(i));
  const blockData = Buffer.concat([...blocks].map((b) => src.disk.view(b)));
  dst.applyDiskBlocks(blocks, blockData);
  dst.loadVcpu(src.vcpu.regs);
  dst.loadDevice(src.device.regs);
  cap.release();
}

test("determinism: same seed and inputs give equal digests after every tick", () => {
  const a = new Domain(GEO);
  const b = new Domain(GEO);
  const ka = bootGuest(a, { seed: 7, workload: WORKLOAD });
  const kb = bootGuest(b, { seed: 7, workload: WORKLOAD });
  assert.equal(a.digest(), b.digest());
  for (let t = 0; t < 3000; t++) {
    ka.tick();
    kb.tick();
    assert.equal(a.digest(), b.digest(), `tick ${t}`);
  }
  // And a different seed diverges.
  const c = new Domain(GEO);
  bootGuest(c, { seed: 8, workload: WORKLOAD }).run(10);
  assert.notEqual(c.digest(), a.digest());
});

test("the incremental digest equals the digest recomputed from scratch", () => {
  const d = new Domain(GEO);
  const k = bootGuest(d, { seed: 3, workload: WORKLOAD });
  for (let i = 0; i < 20; i++) {
    k.run(37);
    if (i % 3 === 0) d.collectDirty();
    if (i % 4 === 0) d.collectDiskWrites();
    assert.equal(d.digest(), d.digestFull());
  }
});

test("the digest sees page swaps, vCPU and device changes", () => {
  const d = new Domain(GEO);
  d.memory.fill(0, PAGE_SIZE, 1);
  d.memory.fill(PAGE_SIZE, PAGE_SIZE, 2);
  const before = d.digest();
  d.memory.fill(0, PAGE_SIZE, 2);
  d.memory.fill(PAGE_SIZE, PAGE_SIZE, 1);
  assert.notEqual(d.digest(), before);
  const x = d.digest();
  d.vcpu.random32();
  assert.notEqual(d.digest(), x);
  const y = d.digest();
  d.device.bump("rxFrames");
  assert.notEqual(d.digest(), y);
});

test("a domain built from captured epochs continues with the original's digests", () => {
  const src = new Domain(GEO);
  const dst = new Domain(GEO);
  const ks = bootGuest(src, { seed: 11, workload: WORKLOAD });
  const capturer = new CopyCapturer(src.memory, 8);
  // Initial full copy (epoch 0) then incremental epochs.
  src.memory.log.markEverything();
  src.disk.log.markEverything();
  checkpointInto(src, dst, capturer);
  assert.equal(dst.digest(), src.digest());
  for (let epoch = 1; epoch <= 40; epoch++) {
    ks.run(1 + (epoch % 7) * 5);
    checkpointInto(src, dst, capturer);
    assert.equal(dst.digest(), src.digest(), `epoch ${epoch}`);
  }
  // The copy runs on its own and stays in lock step with the original.
  const kd = new Kernel(dst);
  for (let t = 0; t < 500; t++) {
    ks.tick();
    kd.tick();
    assert.equal(dst.digest(), src.digest(), `after restore, tick ${t}`);
  }
});

test("the counter and its file agree after restoring from any epoch", () => {
  const src = new Domain(GEO);
  const ks = bootGuest(src, { seed: 5, workload: WORKLOAD });
  const capturer = new CopyCapturer(src.memory);
  const backup = new Domain(GEO);
  src.memory.log.markEverything();
  src.disk.log.markEverything();
  checkpointInto(src, backup, capturer);
  for (let epoch = 1; epoch <= 25; epoch++) {
    ks.run(13);
    checkpointInto(src, backup, capturer);
    // Restore a fresh domain from this epoch's committed state.
    const restored = new Domain(GEO);
    restored.copyFrom(backup);
    const kr = new Kernel(restored);
    const check = verifyCounter(kr);
    assert.ok(check.ok, `epoch ${epoch}: ${check.error}`);
    assert.ok(check.counter > 0);
    kr.run(17);
    const after = verifyCounter(kr);
    assert.ok(after.ok, `epoch ${epoch} after running: ${after.error}`);
    assert.equal(after.counter, check.counter + 17);
  }
});

test("files and their offsets survive a restore", () => {
  const src = new Domain(GEO);
  const k = bootGuest(src, { seed: 9, workload: parseWorkload("idle") });
  const pid = 1;
  const fd = k.open(pid, "notes.txt", { create: true });
  const text = Buffer.from(`${"x".repeat(10000)}the end\n`);
  k.append(pid, fd, text);
  k.seek(pid, fd, 0);
  assert.equal(k.read(pid, fd, 5000).length, 5000);
  const restored = new Domain(GEO);
  restored.copyFrom(src);
  const kr = new Kernel(restored);
  assert.deepEqual(kr.openFiles(), k.openFiles());
  assert.equal(kr.tell(pid, fd), 5000);
  const rest = kr.read(pid, fd, 100000);
  assert.equal(Buffer.compare(rest, text.subarray(5000)), 0);
  assert.equal(Buffer.compare(kr.fs.read(kr.fs.lookup("notes.txt"), 0, 1 << 20), text), 0);
});

test("bad input: typed errors and an unchanged domain", () => {
  const d = new Domain(GEO);
  const k = bootGuest(d, { seed: 1, workload: parseWorkload("idle") });
  k.run(5);
  const digest = d.digest();
  const cases: [() => unknown, string][] = [
    [() => d.memory.writePage(d.pages, Buffer.alloc(PAGE_SIZE)), "REMUSD_ERR_OUT_OF_RANGE"],
    [() => d.applyPages([0, d.pages], Buffer.alloc(2 * PAGE_SIZE)), "REMUSD_ERR_OUT_OF_RANGE"],
    [() => d.disk.write(d.disk.blocks, 0, Buffer.alloc(1)), "REMUSD_ERR_OUT_OF_RANGE"],
    [() => d.disk.write(0, 4000, Buffer.alloc(200)), "REMUSD_ERR_TOO_LARGE"],
    [() => d.memory.write(d.memory.size - 4, Buffer.alloc(8)), "REMUSD_ERR_OUT_OF_RANGE"],
    [() => parseWorkload("bogus"), "REMUSD_ERR_BAD_WORKLOAD"],
    [() => parseWorkload("dirty:rate=-1"), "REMUSD_ERR_BAD_WORKLOAD"],
    [() => parseWorkload("dirty:pattern=spiral"), "REMUSD_ERR_BAD_WORKLOAD"],
    [() => k.read(1, 99, 10), "REMUSD_ERR_BAD_FD"],
    [() => k.open(1, "missing"), "REMUSD_ERR_NOT_FOUND"],
    [() => k.open(1, "n".repeat(100), { create: true }), "REMUSD_ERR_BAD_REQUEST"],
    [() => geometryOfMiB(0, 4), "REMUSD_ERR_BAD_GEOMETRY"],
    [() => geometryOfMiB(4097, 4), "REMUSD_ERR_BAD_GEOMETRY"],
  ];
  for (const [f, code] of cases) {
    assert.throws(f, (e) => isRemusError(e) && e.code === code && e.message.length > 0, code);
  }
  assert.equal(d.digest(), digest);
});

test("a full disk fails an append with nothing written", () => {
  const d = new Domain(geometryOfMiB(4, 1));
  const k = bootGuest(d, { seed: 1, workload: parseWorkload("idle") });
  const fd = k.open(1, "big", { create: true });
  let n = 0;
  for (;;) {
    try {
      k.append(1, fd, Buffer.alloc(64 * 1024, 1));
      n++;
    } catch (e) {
      assert.ok(isRemusError(e, "REMUSD_ERR_NO_SPACE"));
      break;
    }
  }
  assert.ok(n > 5);
  const digest = d.digest();
  assert.throws(() => k.append(1, fd, Buffer.alloc(64 * 1024, 2)), /disk full/);
  assert.equal(d.digest(), digest);
});

test("a 4096 MiB domain boots, runs, checkpoints and digests (costs follow the dirty pages, not the size)", () => {
  const d = new Domain(geometryOfMiB(4096, 16));
  const k = bootGuest(d, { seed: 1, workload: parseWorkload("dirty:rate=50000,hot=0.001,pattern=uniform") });
  k.run(20);
  const capturer = new CopyCapturer(d.memory);
  const pfns = d.collectDirty();
  assert.ok(pfns.length > 0 && pfns.length < 5000, `dirty ${pfns.length}`);
  assert.ok((pfns[pfns.length - 1] as number) < d.pages);
  const cap = capturer.capture(pfns);
  assert.equal(cap.count, pfns.length);
  cap.release();
  const a = d.digest();
  k.run(1);
  assert.notEqual(d.digest(), a);
  assert.ok(verifyCounter(k).ok);
});
