import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { CowCapturer } from "../../src/domain/capture.js";
import { unitHashInto } from "../../src/domain/digest.js";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { PAGE_SIZE } from "../../src/domain/memory.js";
import { bootGuest } from "../../src/guest/guest.js";
import { parseWorkload } from "../../src/guest/workload.js";

/**
 * What a backup does to its domain: a full sync writes every page (zeros with
 * zeroPage, the rest through writablePage), then checkpoints apply pages and
 * reset the replication logs. Without --verify nobody asks for the digest until
 * activation, so the digest's own log is the whole sync plus every apply since.
 */
function syncAndApply(d: Domain, nonZero: number): void {
  for (let p = 0; p < d.pages; p++) {
    if (p < nonZero) d.memory.writablePage(p).fill(p & 0xff || 1);
    else d.memory.zeroPage(p);
  }
  d.resetLogs();
  const page = Buffer.alloc(PAGE_SIZE, 7);
  d.applyPages([1, 2, 3], Buffer.concat([page, page, page]));
  d.resetLogs();
}

test("the digest's backlog is what was written since the last hash, and resetLogs does not touch it", () => {
  const d = new Domain(geometryOfMiB(4, 1));
  syncAndApply(d, 300);
  // resetLogs cleared the replication logs but not the digest's: everything the sync wrote
  // (the 300 non-zero pages; zero pages were left alone) is still to be hashed.
  assert.equal(d.memory.log.count, 0);
  assert.equal(d.digestPending, 300);
  // digestStep works the backlog off a slice at a time, and the digest stays exact.
  assert.equal(d.digestStep(100), 200);
  // A time budget stops a slice early: a clock that has already run out allows one slice of 64.
  let now = 0;
  assert.equal(
    d.digestStep(1000, () => (now += 5), 2),
    136,
  );
  assert.equal(d.digestStep(1000), 0);
  assert.equal(d.digest(), d.digestFull());
  // After that, a digest costs only what changed since.
  const page = Buffer.alloc(PAGE_SIZE, 9);
  d.applyPages([10, 11], Buffer.concat([page, page]));
  d.resetLogs();
  assert.equal(d.digestPending, 2);
  assert.equal(d.digest(), d.digestFull());
  assert.equal(d.digestPending, 0);
});

test("digestStep interleaved with guest writes, applies and captures keeps the digest exact (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.constant(-1), fc.constant(-2), fc.integer({ min: 0, max: 400 })), {
        maxLength: 30,
      }),
      fc.nat(1000),
      (steps, seed) => {
        const d = new Domain(geometryOfMiB(2, 1));
        const k = bootGuest(d, { seed, workload: parseWorkload("dirty:rate=40000,hot=0.5,pattern=uniform") });
        const cow = new CowCapturer(d.memory);
        const caps = [];
        for (const s of steps) {
          if (s === -1) caps.push(cow.capture(d.collectDirty()));
          else if (s === -2) d.resetLogs();
          else if (s === 0) caps.shift()?.release();
          else {
            k.run(1 + (s % 7));
            d.digestStep(s);
          }
        }
        assert.equal(d.digest(), d.digestFull());
        for (const c of caps) c.release();
      },
    ),
    { seed: 31, numRuns: 40 },
  );
});

test("digest work hashed elsewhere, finishing in any order, interleaved with writes and slices, keeps the digest exact (property)", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant("run" as const), n: fc.integer({ min: 1, max: 8 }) }),
          fc.record({ op: fc.constant("take" as const), n: fc.integer({ min: 1, max: 300 }) }),
          fc.record({ op: fc.constant("finish" as const), n: fc.nat(10) }),
          fc.record({ op: fc.constant("step" as const), n: fc.integer({ min: 1, max: 200 }) }),
          fc.record({ op: fc.constant("digest" as const), n: fc.constant(0) }),
        ),
        { maxLength: 40 },
      ),
      fc.nat(1000),
      (steps, seed) => {
        const d = new Domain(geometryOfMiB(2, 1));
        const k = bootGuest(d, { seed, workload: parseWorkload("dirty:rate=40000,hot=0.5,pattern=uniform") });
        // Work out on "other threads": hashed when taken (as a worker would read the page then),
        // folded later in any order.
        const out: { w: NonNullable<ReturnType<Domain["takeDigestWork"]>>; hashes: Uint32Array }[] = [];
        for (const s of steps) {
          if (s.op === "run") k.run(s.n);
          else if (s.op === "take") {
            const w = d.takeDigestWork(s.n);
            if (!w) continue;
            const hashes = new Uint32Array(w.pfns.length * 4);
            w.pfns.forEach((p, i) => {
              unitHashInto(p, d.memory.page(p), hashes, i * 4);
            });
            out.push({ w, hashes });
          } else if (s.op === "finish") {
            const i = s.n % Math.max(1, out.length);
            const [job] = out.splice(i, 1);
            if (job) d.foldDigestWork(job.w, job.hashes);
          } else if (s.op === "step") d.digestStep(s.n);
          else assert.equal(d.digest(), d.digestFull());
        }
        for (const job of out) d.foldDigestWork(job.w, job.hashes);
        assert.equal(d.digest(), d.digestFull());
      },
    ),
    { seed: 47, numRuns: 60 },
  );
});
