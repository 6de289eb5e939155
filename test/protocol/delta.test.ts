import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { crc32 } from "node:zlib";
import fc from "fast-check";
import { mulberry32u32 } from "../../src/prng.js";
import {
  crc32Combine,
  decodeFrame,
  decodePageInto,
  encodeBatchFrame,
  isProtocolError,
  PAGE_ENCODING,
  PAGE_SIZE,
  SentPageCache,
  sealFrame,
  xorPage,
} from "../../src/protocol/index.js";

const PAGES = 48;
const GEOMETRY = { pages: PAGES, diskBlocks: 8, vcpuSize: 16, deviceSize: 64 };

/** A receiver's image: decodes batches in stream order, XOR_LZ4 against its own current page. */
class Receiver {
  readonly image = Buffer.alloc(PAGES * PAGE_SIZE);
  xorSeen = 0;
  apply(frame: Buffer): void {
    const r = decodeFrame(frame, { session: 1, seq: 0, geometry: GEOMETRY });
    assert.equal(r.type, "pageBatch");
    if (r.type !== "pageBatch") return;
    for (const e of r.entries) {
      if (e.enc === PAGE_ENCODING.xorLz4) this.xorSeen++;
      // Base and destination are the same page of the image (decoding in place).
      decodePageInto(e, this.image, e.pfn * PAGE_SIZE, this.image, e.pfn * PAGE_SIZE);
    }
  }
}

type Op =
  | { k: "record"; pfn: number; slot: number; v: number }
  | { k: "scramble"; pfn: number; seed: number }
  | { k: "zero"; pfn: number }
  | { k: "checkpoint" }
  | { k: "discard" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant("record" as const),
      pfn: fc.nat(PAGES - 1),
      slot: fc.nat(127),
      v: fc.nat(0xffffffff),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("scramble" as const), pfn: fc.nat(PAGES - 1), seed: fc.nat() }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("zero" as const), pfn: fc.nat(PAGES - 1) }) },
  { weight: 3, arbitrary: fc.constant({ k: "checkpoint" as const }) },
  { weight: 1, arbitrary: fc.constant({ k: "discard" as const }) },
);

/**
 * Runs a sender (memory + dirty set + cache) against a receiver. A checkpoint
 * sends the dirty pages in batches of at most 7. A "discard" is a checkpoint
 * whose frames never reach the receiver; with `obeyRule` the sender then does
 * what the spec says (forget every version: the next thing is a SYNC_BEGIN,
 * which resends what the receiver missed), without it it only re-sends.
 */
function run(ops: Op[], capacity: number, obeyRule: boolean): { equal: boolean; xor: number } {
  const mem = Buffer.alloc(PAGES * PAGE_SIZE);
  const rx = new Receiver();
  const cache = new SentPageCache(PAGES, capacity);
  let dirty = new Set<number>();
  let missed = new Set<number>();
  const send = (pfns: number[], deliver: boolean) => {
    for (let i = 0; i < pfns.length; i += 7) {
      const chunk = pfns.slice(i, i + 7);
      const out = encodeBatchFrame(
        "pageBatch",
        1,
        chunk.length,
        (k) => chunk[k] as number,
        (k) => mem.subarray((chunk[k] as number) * PAGE_SIZE, ((chunk[k] as number) + 1) * PAGE_SIZE),
        { compress: true, delta: cache },
        { session: 1, seq: 0 },
      );
      if (deliver) rx.apply(out.frame);
    }
  };
  for (const op of ops) {
    switch (op.k) {
      case "record":
        // A 32-byte record in one of 128 slots, like the dirty workload.
        mem.writeUInt32LE(op.v, op.pfn * PAGE_SIZE + op.slot * 32);
        mem.writeUInt32LE(op.pfn, op.pfn * PAGE_SIZE + op.slot * 32 + 4);
        dirty.add(op.pfn);
        break;
      case "scramble": {
        const r = mulberry32u32(op.seed);
        for (let i = 0; i < PAGE_SIZE; i += 4) mem.writeUInt32LE(r(), op.pfn * PAGE_SIZE + i);
        dirty.add(op.pfn);
        break;
      }
      case "zero":
        mem.fill(0, op.pfn * PAGE_SIZE, (op.pfn + 1) * PAGE_SIZE);
        dirty.add(op.pfn);
        break;
      case "checkpoint":
      case "discard": {
        const pfns = [...new Set([...dirty, ...missed])].sort((a, b) => a - b);
        dirty = new Set();
        const deliver = op.k === "checkpoint";
        send(pfns, deliver);
        if (deliver) missed = new Set();
        else {
          for (const p of pfns) missed.add(p);
          if (obeyRule) cache.clear();
        }
        break;
      }
    }
  }
  send(
    [...new Set([...dirty, ...missed])].sort((a, b) => a - b),
    true,
  );
  return { equal: rx.image.equals(mem), xor: rx.xorSeen };
}

describe("XOR_LZ4 deltas", () => {
  it("a receiver that decodes in order ends with the sender's pages, whatever the cache forgets (property)", () => {
    let xor = 0;
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 10, maxLength: 150, size: "max" }),
        fc.integer({ min: 1, max: PAGES + 4 }),
        (ops, capacity) => {
          const r = run(ops, capacity, true);
          assert.ok(r.equal, "receiver image differs from the sender's memory");
          xor += r.xor;
        },
      ),
      { seed: 0xd17a, numRuns: 300 },
    );
    assert.ok(xor > 100, `only ${xor} XOR_LZ4 pages were exercised`);
  });

  it("the invalidation rule matters: keeping the cache across a discarded checkpoint corrupts pages", () => {
    // Page 3 is sent, then changed and sent in a checkpoint the receiver discards, then changed again.
    const ops: Op[] = [
      { k: "record", pfn: 3, slot: 1, v: 1 },
      { k: "checkpoint" },
      { k: "record", pfn: 3, slot: 2, v: 2 },
      { k: "discard" },
      { k: "record", pfn: 3, slot: 4, v: 4 },
      { k: "checkpoint" },
    ];
    assert.equal(run(ops, 8, true).equal, true);
    assert.equal(run(ops, 8, false).equal, false);
  });

  it("a small rewrite travels as a few dozen bytes; zero pages carry no data and drop their base", () => {
    const cache = new SentPageCache(PAGES, 4);
    const page = Buffer.alloc(PAGE_SIZE);
    const r = mulberry32u32(5);
    for (let i = 0; i < PAGE_SIZE; i += 4) page.writeUInt32LE(r() & 0x0f0f0f0f, i);
    const opts = { compress: true, delta: cache };
    const first = encodeBatchFrame(
      "pageBatch",
      1,
      1,
      () => 2,
      () => page,
      opts,
      { session: 1, seq: 0 },
    );
    assert.equal(first.xorPages, 0);
    assert.equal(cache.size, 1);
    page.write("32 bytes of a rewritten record!!", 640);
    const second = encodeBatchFrame(
      "pageBatch",
      2,
      1,
      () => 2,
      () => page,
      opts,
      { session: 1, seq: 1 },
    );
    assert.equal(second.xorPages, 1);
    // 40 bytes of header, prefix, entry and trailer, and the delta's LZ4 block (32 literal bytes).
    assert.ok(second.wireBytes < 120, `delta frame of ${second.wireBytes} bytes`);
    assert.ok(first.wireBytes > 1000);
    const zero = encodeBatchFrame(
      "pageBatch",
      3,
      1,
      () => 2,
      () => Buffer.alloc(PAGE_SIZE),
      opts,
      {
        session: 1,
        seq: 2,
      },
    );
    assert.equal(zero.zeroPages, 1);
    assert.equal(cache.size, 0);
  });

  it("the cache changes only for a frame that was built; DISK_WRITES never use it", () => {
    const cache = new SentPageCache(PAGES, 8);
    const page = Buffer.alloc(PAGE_SIZE, 9);
    assert.throws(
      () =>
        encodeBatchFrame(
          "pageBatch",
          1,
          2,
          (i) => [1, PAGES + 5][i] as number,
          () => page,
          { compress: true, delta: cache, geometry: GEOMETRY },
          { session: 1, seq: 0 },
        ),
      (e: unknown) => isProtocolError(e) && e.reason === "out-of-range",
    );
    assert.equal(cache.size, 0);
    assert.throws(
      () =>
        encodeBatchFrame(
          "diskWrites",
          1,
          1,
          () => 1,
          () => page,
          { compress: true, delta: cache },
          {
            session: 1,
            seq: 0,
          },
        ),
      (e: unknown) => isProtocolError(e) && e.reason === "bad-encoding",
    );
    // Without compression there is no delta either (and nothing is recorded).
    encodeBatchFrame(
      "pageBatch",
      1,
      1,
      () => 1,
      () => page,
      { compress: false, delta: cache },
      { session: 1, seq: 0 },
    );
    assert.equal(cache.size, 0);
  });

  it("xorPage: aligned and unaligned operands, in place", () => {
    const r = mulberry32u32(9);
    const a = Buffer.alloc(PAGE_SIZE + 3);
    const b = Buffer.alloc(PAGE_SIZE + 1);
    for (let i = 0; i < a.length; i++) a[i] = r() & 0xff;
    for (let i = 0; i < b.length; i++) b[i] = r() & 0xff;
    for (const [ao, bo] of [
      [0, 0],
      [3, 1],
    ] as const) {
      const want = Buffer.alloc(PAGE_SIZE);
      for (let i = 0; i < PAGE_SIZE; i++) want[i] = (a[ao + i] as number) ^ (b[bo + i] as number);
      const dst = Buffer.alloc(PAGE_SIZE);
      xorPage(dst, 0, a, ao, b, bo);
      assert.deepEqual(dst, want);
      const inPlace = Buffer.from(a);
      xorPage(inPlace, ao, inPlace, ao, b, bo);
      assert.deepEqual(inPlace.subarray(ao, ao + PAGE_SIZE), want);
    }
  });
});

describe("SentPageCache", () => {
  it("holds at most its capacity; CLOCK keeps recently used versions", () => {
    const c = new SentPageCache(100, 4);
    const page = (v: number) => Buffer.alloc(PAGE_SIZE, v);
    for (const p of [1, 2, 3, 4]) c.store(p, page(p));
    assert.equal(c.size, 4);
    // One pass of the hand clears every reference bit, then evicts the first unreferenced: 1.
    c.store(5, page(5));
    assert.equal(c.size, 4);
    assert.equal(c.base(1), undefined);
    assert.equal(c.stats.evictions, 1);
    // 2 is used again, so the next eviction skips it.
    assert.deepEqual(c.base(2), page(2));
    c.store(6, page(6));
    assert.deepEqual(c.base(2), page(2));
    assert.equal(c.base(3), undefined);
  });

  it("pinned slots are never evicted or reassigned; clear forgets everything", () => {
    const c = new SentPageCache(10, 2);
    c.store(1, Buffer.alloc(PAGE_SIZE, 1));
    c.store(2, Buffer.alloc(PAGE_SIZE, 2));
    const s1 = c.lookup(1);
    const s2 = c.lookup(2);
    c.pin(s1);
    c.pin(s2);
    assert.equal(c.assign(3), -1);
    assert.equal(c.stats.refused, 1);
    // Pinned slots are not readable, and a new version of a page whose slot is pinned dooms the old one.
    assert.equal(c.base(1), undefined);
    assert.equal(c.assign(1), -1);
    c.unpin(s1);
    assert.equal(c.base(1), undefined, "the superseded version was dropped at unpin");
    assert.deepEqual(c.base(2), undefined);
    c.unpin(s2);
    assert.deepEqual(c.base(2), Buffer.alloc(PAGE_SIZE, 2));
    assert.ok(c.assign(3) >= 0);
    // clear() with a slot still held: dropped now if free, at release if pinned.
    const s3 = c.lookup(3);
    c.pin(s3);
    c.clear();
    assert.equal(c.size, 1);
    c.unpin(s3);
    assert.equal(c.size, 0);
    for (const p of [1, 2, 3]) assert.equal(c.base(p), undefined);
  });
});

describe("frames built off the sending thread", () => {
  it("crc32Combine(crc(a), crc(b), |b|) is crc(a ‖ b) (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 5000 }), (a, b) => {
        assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(Buffer.concat([a, b])));
      }),
      { seed: 11, numRuns: 300 },
    );
  });

  it("an unsealed batch frame, sealed later, is the frame built sealed (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant(0), fc.constant(1), fc.nat(255)), { minLength: 1, maxLength: 40 }),
        fc.nat({ max: 0xffff_ffff }),
        fc.nat({ max: 0xffff_ffff }),
        (kinds, session, seq) => {
          const pages = kinds.map((k, i) => {
            const p = Buffer.alloc(PAGE_SIZE);
            const r = mulberry32u32(i);
            if (k === 1) for (let j = 0; j < PAGE_SIZE; j += 4) p.writeUInt32LE(r(), j);
            else if (k > 1) p.fill(k, 0, 64 * (i + 1));
            return p;
          });
          const build = (header?: { session: number; seq: number }) =>
            encodeBatchFrame(
              "pageBatch",
              9,
              pages.length,
              (i) => i,
              (i) => pages[i] as Buffer,
              { compress: true },
              header,
            );
          const sealed = build({ session, seq });
          const open = build();
          assert.equal(typeof open.bodyCrc, "number");
          sealFrame(open.frame, session, seq, open.bodyCrc as number);
          assert.deepEqual(open.frame, sealed.frame);
        },
      ),
      { seed: 12, numRuns: 60 },
    );
  });
});
