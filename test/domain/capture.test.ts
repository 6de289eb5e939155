import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import {
  type Capturer,
  CopyCapturer,
  CowCapturer,
  type EpochCapture,
  sharedPage,
  sharedViews,
} from "../../src/domain/capture.js";
import { DirtyLog, GuestMemory, PAGE_SIZE } from "../../src/domain/memory.js";
import { isRemusError } from "../../src/errors.js";

const PAGES = 32;
const SIZE = PAGES * PAGE_SIZE;

type Step =
  | { k: "write"; addr: number; len: number; v: number }
  | { k: "u32"; addr: number; v: number }
  | { k: "copyWithin"; dst: number; src: number; len: number }
  | { k: "capture"; pages: number[] }
  | { k: "release"; which: number }
  | { k: "check" };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({ addr: fc.nat(SIZE - 1), len: fc.integer({ min: 1, max: 9000 }), v: fc.nat(255) })
      .map(({ addr, len, v }) => ({ k: "write" as const, addr: Math.min(addr, SIZE - len), len, v })),
  },
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant("u32" as const), addr: fc.nat(SIZE - 4), v: fc.nat(0xffffffff) }),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ dst: fc.nat(SIZE - 1), src: fc.nat(SIZE - 1), len: fc.integer({ min: 1, max: 6000 }) })
      .map(({ dst, src, len }) => ({
        k: "copyWithin" as const,
        dst: Math.min(dst, SIZE - len),
        src: Math.min(src, SIZE - len),
        len,
      })),
  },
  {
    weight: 2,
    arbitrary: fc
      .uniqueArray(fc.nat(PAGES - 1), { minLength: 0, maxLength: PAGES })
      .map((pages) => ({ k: "capture" as const, pages })),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("release" as const), which: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.constant({ k: "check" as const }) },
);

interface Held {
  cap: EpochCapture;
  /** The pages' bytes at the pause, in capture order. */
  expect: Buffer[];
}

/** Every page of every outstanding capture reads as at its pause, through page() and through the shared view. */
function checkAll(held: Held[]): void {
  for (const h of held) {
    const views = sharedViews(h.cap.shared());
    for (let i = 0; i < h.cap.count; i++) {
      const want = h.expect[i] as Buffer;
      assert.ok(Buffer.from(h.cap.page(i)).equals(want), `page ${i} (pfn ${h.cap.pfn(i)}) via page()`);
      assert.ok(Buffer.from(sharedPage(views, i)).equals(want), `page ${i} via sharedPage`);
    }
  }
}

function runScenario(make: (m: GuestMemory) => Capturer, steps: Step[], shuffle: number): void {
  const m = new GuestMemory(SIZE);
  for (let p = 0; p < PAGES; p++) m.fill(p * PAGE_SIZE, PAGE_SIZE, p + 1);
  const capturer = make(m);
  const held: Held[] = [];
  for (const s of steps) {
    switch (s.k) {
      case "write":
        m.fill(s.addr, s.len, s.v);
        break;
      case "u32":
        m.setU32(s.addr, s.v);
        break;
      case "copyWithin":
        m.copyWithin(s.dst, s.src, s.len);
        break;
      case "capture": {
        const pfns = Uint32Array.from(s.pages);
        const expect = s.pages.map((p) => Buffer.from(m.page(p)));
        held.push({ cap: capturer.capture(pfns), expect });
        break;
      }
      case "release": {
        if (held.length === 0) break;
        const [h] = held.splice((s.which + shuffle) % held.length, 1);
        h?.cap.release();
        assert.throws(() => h?.cap.page(0), /not available/);
        break;
      }
      case "check":
        checkAll(held);
        break;
    }
    assert.equal(capturer.inUse, held.length);
  }
  checkAll(held);
  // Release in a shuffled order; each release leaves the others intact.
  while (held.length > 0) {
    const [h] = held.splice(shuffle % held.length, 1);
    h?.cap.release();
    checkAll(held);
    m.fill(0, SIZE, 0xee);
  }
  assert.equal(capturer.inUse, 0);
  if (capturer instanceof CowCapturer)
    assert.ok(
      capturer.frozen.every((t) => t === 0),
      "nothing stays frozen",
    );
}

for (const [name, make] of [
  ["copy", (m: GuestMemory) => new CopyCapturer(m, 4)],
  ["copy-on-write", (m: GuestMemory) => new CowCapturer(m, 4)],
] as const) {
  test(`${name} capture: every captured view equals the pause-time bytes whatever the guest writes after (property)`, () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 60 }), fc.nat(1000), (steps, shuffle) =>
        runScenario(make, steps, shuffle),
      ),
      { seed: 20261204, numRuns: 250 },
    );
  });
}

test("copy-on-write: the pause copies nothing; a write copies only the page it touches, once", () => {
  const m = new GuestMemory(SIZE);
  for (let p = 0; p < PAGES; p++) m.fill(p * PAGE_SIZE, PAGE_SIZE, p + 1);
  const c = new CowCapturer(m, 4);
  const cap = c.capture(Uint32Array.from([3, 5, 7]));
  // Until written, the capture reads live memory (the same bytes, no copy).
  assert.equal(cap.page(1).buffer, m.shared);
  m.setU8(5 * PAGE_SIZE + 10, 0);
  const saved = cap.page(1);
  assert.notEqual(saved.buffer, m.shared);
  assert.equal(saved[10], 6);
  m.setU8(5 * PAGE_SIZE + 11, 0); // second write: no second copy, the saved bytes stay
  assert.equal(cap.page(1)[11], 6);
  assert.equal(cap.page(0).buffer, m.shared);
  cap.release();
  assert.ok(c.frozen.every((t) => t === 0));
});

test("capture of a bad pfn throws a typed error and freezes nothing", () => {
  for (const c of [new CopyCapturer(GuestMemory.ofMiB(1)), new CowCapturer(GuestMemory.ofMiB(1))]) {
    assert.throws(
      () => c.capture(Uint32Array.from([1, 2, 256])),
      (e) => isRemusError(e) && e.code === "REMUSD_ERR_OUT_OF_RANGE",
    );
    assert.equal(c.inUse, 0);
    if (c instanceof CowCapturer) assert.ok(c.frozen.every((t) => t === 0));
  }
});

test("copy-on-write with a worker thread settling pages while the guest writes them", async () => {
  const pages = 1024;
  const m = new GuestMemory(pages * PAGE_SIZE);
  for (let p = 0; p < pages; p++) m.fill(p * PAGE_SIZE, PAGE_SIZE, p & 0xff);
  const c = new CowCapturer(m);
  const rounds = 20;
  const sets = 5;
  // Capture r takes the pages p with p % 5 === r % 5, so the last five captures are disjoint.
  const setOf = (r: number) =>
    Uint32Array.from({ length: pages }, (_, i) => i).filter((p) => p % sets === r % sets);
  // flags[0]: go (set by the main thread); set by the worker: flags[1] done, flags[2] ready,
  // flags[3] the pfn it is reading now (+1), so the guest can write exactly that page.
  const flags = new Int32Array(new SharedArrayBuffer(16));
  const worker = new Worker(
    `
    const { parentPort } = require("node:worker_threads");
    parentPort.once("message", async ({ url, caps, flagsBuf }) => {
      const { sharedViews, sharedPage } = await import(url);
      const flags = new Int32Array(flagsBuf);
      const views = caps.map(sharedViews);
      Atomics.store(flags, 2, 1);
      Atomics.notify(flags, 2);
      Atomics.wait(flags, 0, 0);
      const out = [];
      // Newest first: the last captures still have live pages, which the guest is writing now.
      for (const v of views.reverse()) {
        let sum = 0;
        const bad = [];
        for (let i = 0; i < v.count; i++) {
          Atomics.store(flags, 3, v.pfns[i] + 1);
          const page = sharedPage(v, i);
          const want = page[0];
          // A page is whole: all 4096 bytes as at the pause (one value per page and round).
          for (let k = 0; k < page.length; k++) if (page[k] !== want) { bad.push(i); break; }
          sum += want;
        }
        out.push({ sum, bad });
      }
      Atomics.store(flags, 1, 1);
      parentPort.postMessage(out.reverse());
    });`,
    { eval: true },
  );
  try {
    const caps: EpochCapture[] = [];
    const sums: number[] = [];
    // Each round captures a set of pages, then the guest rewrites the pages outside it (which
    // settles older captures' pages). The last five captures keep their pages live in memory.
    for (let r = 0; r < rounds; r++) {
      const pfns = setOf(r);
      let sum = 0;
      for (const p of pfns) sum += m.u8(p * PAGE_SIZE);
      sums.push(sum);
      caps.push(c.capture(pfns));
      if (r >= rounds - sets) continue;
      for (let p = 0; p < pages; p++) {
        if (p % sets !== r % sets) m.fill(p * PAGE_SIZE, PAGE_SIZE, (p + r + 1) & 0xff);
      }
    }
    const done = new Promise<{ sum: number; bad: number[] }[]>((res, rej) => {
      worker.once("message", res);
      worker.once("error", rej);
    });
    worker.postMessage({
      url: new URL("../../src/domain/capture.js", import.meta.url).href,
      caps: caps.map((x) => x.shared()),
      flagsBuf: flags.buffer,
    });
    // Start together, then keep the guest writing single bytes (a page read while the guest
    // writes it would show a foreign 0xff) until the worker has read every capture.
    while (Atomics.load(flags, 2) === 0) Atomics.wait(flags, 2, 0, 50);
    Atomics.store(flags, 0, 1);
    Atomics.notify(flags, 0);
    for (let k = 0; Atomics.load(flags, 1) === 0; k++) {
      const reading = Atomics.load(flags, 3) - 1;
      const pfn = k % 2 === 0 && reading >= 0 ? reading : (k * 7919) % pages;
      m.setU8(pfn * PAGE_SIZE + ((k * 31) % PAGE_SIZE), 0xff);
    }
    const got = await done;
    for (let r = 0; r < rounds; r++) {
      assert.deepEqual(got[r]?.bad, [], `round ${r}: torn pages`);
      assert.equal(got[r]?.sum, sums[r], `round ${r}: page contents`);
    }
    for (const x of caps) x.release();
    assert.equal(c.inUse, 0);
  } finally {
    await worker.terminate();
  }
});

test("DirtyLog: a dense drain walks the bitmap and gives the same sorted set (property)", () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.nat(4095), { maxLength: 4096 }), (pfns) => {
      const log = new DirtyLog(4096);
      for (const p of pfns) log.mark(p);
      const got = [...log.drain()];
      assert.deepEqual(
        got,
        [...pfns].sort((a, b) => a - b),
      );
      assert.equal(log.count, 0);
      for (const p of pfns) assert.equal(log.has(p), false);
    }),
    { seed: 7, numRuns: 200 },
  );
});

test("zeroPage leaves zero pages alone (not written, not dirty) and zeroes the rest", () => {
  const m = new GuestMemory(8 * PAGE_SIZE);
  assert.equal(m.isPristine(3), true);
  assert.equal(m.zeroPage(3), false);
  assert.equal(m.log.count, 0);
  m.setU8(3 * PAGE_SIZE + 9, 1);
  assert.equal(m.isPristine(3), false);
  m.log.clear();
  assert.equal(m.zeroPage(3), true);
  assert.deepEqual([...m.log.drain()], [3]);
  assert.ok(m.page(3).every((b) => b === 0));
  // Written but zero again: compared, not written.
  assert.equal(m.zeroPage(3), false);
  assert.equal(m.log.count, 0);
});

test("noteWritten marks pages a worker wrote behind the accessors, and is refused under a capture", () => {
  const m = new GuestMemory(8 * PAGE_SIZE);
  m.buf.fill(7, 2 * PAGE_SIZE, 3 * PAGE_SIZE); // as a worker decoding into shared memory would
  m.noteWritten([2, 5]);
  assert.deepEqual([...m.log.drain()], [2, 5]);
  assert.equal(m.hashLog.count, 2);
  assert.equal(m.isPristine(2), false);
  const cap = new CowCapturer(m).capture(Uint32Array.from([1]));
  assert.throws(
    () => m.noteWritten([3]),
    (e) => isRemusError(e) && e.code === "REMUSD_ERR_INTERNAL",
  );
  assert.throws(() => new GuestMemory(PAGE_SIZE).noteWritten([1]), /outside/);
  cap.release();
});
