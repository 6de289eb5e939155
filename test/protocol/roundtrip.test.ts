import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  decodeFrame,
  decodePageInto,
  encodeBatchFrame,
  encodeFrame,
  FRAME_OVERHEAD,
  PAGE_ENCODING,
  PAGE_SIZE,
  type ReplicationRecord,
} from "../../src/protocol/index.js";
import { arbRecords, normalize, TEST_GEOMETRY } from "./helpers.js";

const SEED = 0x5244;
const fields = fc.record({ session: fc.nat({ max: 0xffff_ffff }), seq: fc.nat({ max: 0xffff_ffff }) });

describe("round trips (fast-check, seeded)", () => {
  for (const [type, arb] of Object.entries(arbRecords) as [string, fc.Arbitrary<ReplicationRecord>][]) {
    it(`${type}: encode → decode is the identity, decode → encode gives the same bytes`, () => {
      fc.assert(
        fc.property(arb, fields, (record, f) => {
          const frame = encodeFrame(record, f);
          const decoded = decodeFrame(frame, { session: f.session, seq: f.seq, geometry: TEST_GEOMETRY });
          assert.deepEqual(normalize(decoded), normalize(record));
          assert.deepEqual(encodeFrame(decoded, f), frame);
        }),
        { seed: SEED, numRuns: type === "pageBatch" || type === "diskWrites" ? 150 : 400 },
      );
    });
  }

  it("every page of a decoded batch expands to the page that was encoded", () => {
    fc.assert(
      fc.property(arbRecords.pageBatch, (record) => {
        const frame = encodeFrame(record, { session: 7, seq: 1 });
        const decoded = decodeFrame(frame, { session: 7, seq: 1, geometry: TEST_GEOMETRY });
        assert.equal(decoded.type, "pageBatch");
        if (decoded.type !== "pageBatch") return;
        const staging = Buffer.alloc(PAGE_SIZE * (decoded.entries.length + 1), 0xaa);
        decoded.entries.forEach((e, i) => {
          decodePageInto(e, staging, PAGE_SIZE * (i + 1));
        });
        // The first slot was not written to.
        assert.ok(staging.subarray(0, PAGE_SIZE).every((b) => b === 0xaa));
        record.entries.forEach((e, i) => {
          const got = staging.subarray(PAGE_SIZE * (i + 1), PAGE_SIZE * (i + 2));
          const want = Buffer.alloc(PAGE_SIZE);
          decodePageInto(e, want, 0);
          assert.deepEqual(got, want);
          if (e.enc === PAGE_ENCODING.raw) assert.deepEqual(got, Buffer.from(e.data));
          if (e.enc === PAGE_ENCODING.zero) assert.ok(got.every((b) => b === 0));
        });
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("encodeBatchFrame: pages come back bit for bit, with and without compression", () => {
    const pageKinds = fc.array(fc.tuple(fc.constantFrom("zero", "text", "random"), fc.nat()), {
      minLength: 1,
      maxLength: 40,
    });
    fc.assert(
      fc.property(pageKinds, fc.boolean(), fc.nat({ max: 1000 }), (kinds, compress, base) => {
        const memory = Buffer.alloc(PAGE_SIZE * kinds.length);
        kinds.forEach(([kind, seed], i) => {
          const page = memory.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
          let x = seed | 1;
          for (let j = 0; j < PAGE_SIZE; j++) {
            x = (Math.imul(x, 1103515245) + 12345) >>> 0;
            if (kind === "text") page[j] = 97 + ((j * 7 + seed) % 5);
            else if (kind === "random") page[j] = x >>> 24;
          }
        });
        const pfnOf = (i: number) => base + i * 3;
        const pageOf = (i: number) => memory.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
        const out = encodeBatchFrame(
          "pageBatch",
          9,
          kinds.length,
          pfnOf,
          pageOf,
          { compress },
          { session: 3, seq: 4 },
        );
        assert.equal(out.wireBytes, out.frame.length);
        assert.equal(out.rawBytes, kinds.length * PAGE_SIZE);
        assert.equal(out.zeroPages + out.rawPages + out.lz4Pages, kinds.length);
        if (!compress) assert.equal(out.lz4Pages, 0);
        const r = decodeFrame(out.frame, { session: 3, seq: 4, geometry: TEST_GEOMETRY });
        assert.equal(r.type, "pageBatch");
        if (r.type !== "pageBatch") return;
        assert.equal(r.epoch, 9);
        const dst = Buffer.alloc(PAGE_SIZE);
        r.entries.forEach((e, i) => {
          assert.equal(e.pfn, pfnOf(i));
          decodePageInto(e, dst, 0);
          assert.deepEqual(dst, pageOf(i));
          const zero = pageOf(i).every((b) => b === 0);
          assert.equal(e.enc === PAGE_ENCODING.zero, zero);
        });
        // The fast path and the record encoder agree byte for byte.
        assert.deepEqual(encodeFrame(r, { session: 3, seq: 4 }), out.frame);
        assert.ok(out.frame.length <= FRAME_OVERHEAD + 12 + kinds.length * (8 + PAGE_SIZE));
      }),
      { seed: SEED, numRuns: 120 },
    );
  });
});
