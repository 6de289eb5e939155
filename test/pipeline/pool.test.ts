import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CopyCapturer, CowCapturer, type EpochCapture } from "../../src/domain/capture.js";
import { GuestMemory, PAGE_SIZE } from "../../src/domain/memory.js";
import { BatchEncoder } from "../../src/pipeline/encoder.js";
import { type EncodeResult, EncodeScratch, runEncode } from "../../src/pipeline/jobs.js";
import { PagePool, type Ticket, TicketQueue } from "../../src/pipeline/pool.js";
import { mulberry32u32 } from "../../src/prng.js";
import {
  decodeFrame,
  decodePageInto,
  encodeBatchFrame,
  FrameCodec,
  PAGE_ENCODING,
  SentPageCache,
} from "../../src/protocol/index.js";

const PAGES = 2048;
const GEOMETRY = { pages: PAGES, diskBlocks: 64, vcpuSize: 16, deviceSize: 64 };

/** Guest memory with a mix of zero, compressible, sparse and random pages (seeded). */
function fillMemory(m: GuestMemory, seed: number): void {
  const r = mulberry32u32(seed);
  for (let p = 0; p < m.pages; p++) {
    const kind = r() % 4;
    const a = p * PAGE_SIZE;
    if (kind === 0) continue;
    if (kind === 1) for (let i = 0; i < PAGE_SIZE; i += 4) m.setU32(a + i, r());
    else if (kind === 2) for (let i = 0; i < PAGE_SIZE; i += 64) m.setU32(a + i, r() & 0xff);
    else m.fill(a, PAGE_SIZE, 0x41 + (p % 26));
  }
}

/** A guest that rewrites 32-byte records in random pages (what makes deltas small). */
function scribble(m: GuestMemory, r: () => number, writes: number): void {
  for (let k = 0; k < writes; k++) {
    const p = r() % m.pages;
    m.setU32(p * PAGE_SIZE + (r() % 128) * 32, r());
  }
}

function pagesOf(cap: EpochCapture): Buffer[] {
  return Array.from({ length: cap.count }, (_, i) => Buffer.from(cap.page(i)));
}

/** A receiver's image: applies sealed frames in order, XOR_LZ4 against its own pages. */
function applyFrame(image: Buffer, frame: Buffer, codec: FrameCodec): void {
  const r = codec.decode(frame);
  assert.equal(r.type, "pageBatch");
  if (r.type !== "pageBatch") return;
  for (const e of r.entries) decodePageInto(e, image, e.pfn * PAGE_SIZE, image, e.pfn * PAGE_SIZE);
}

function codecs(): { tx: FrameCodec; rx: FrameCodec } {
  const tx = new FrameCodec();
  const rx = new FrameCodec();
  rx.setGeometry(GEOMETRY);
  return { tx, rx };
}

describe("page pool", () => {
  let pool: PagePool;
  before(() => {
    pool = new PagePool({ threads: 2 });
  });
  after(async () => {
    await pool.close();
  });

  it("encodes a capture to the same frames as the sending thread would (copy and copy-on-write, with deltas)", async () => {
    for (const make of [(m: GuestMemory) => new CopyCapturer(m), (m: GuestMemory) => new CowCapturer(m)]) {
      const m = new GuestMemory(PAGES * PAGE_SIZE);
      fillMemory(m, 1);
      const capturer = make(m);
      const r = mulberry32u32(2);
      // Both caches hold every page: no eviction, so both paths make the same choices.
      const asyncCache = new SentPageCache(PAGES, PAGES);
      const syncCache = new SentPageCache(PAGES, PAGES);
      const enc = new BatchEncoder(pool, { compress: true, geometry: GEOMETRY, cache: asyncCache });
      const a = codecs();
      const b = codecs();
      let xor = 0;
      for (let round = 0; round < 4; round++) {
        m.log.clear();
        scribble(m, r, 3000);
        const cap = capturer.capture(m.log.drain());
        const queue = new TicketQueue<EncodeResult>();
        for (let from = 0; from < cap.count; from += 512)
          queue.push(enc.capture(7, cap, from, Math.min(512, cap.count - from)));
        // The guest runs on while the workers encode (copy-on-write pages are settled first).
        scribble(m, r, 3000);
        for (let from = 0; from < cap.count; from += 512) {
          const t = (await queue.next()) as Ticket<EncodeResult>;
          assert.ok(t.result, String(t.error));
          const got = a.tx.sealBatch(t.result.frame as Buffer, t.result.bodyCrc);
          const n = Math.min(512, cap.count - from);
          // The sending thread's encoding of the same pause-time pages (captured before the scribble).
          const want = b.tx.encodePageBatch(
            7,
            n,
            (i) => cap.pfn(from + i),
            (i) => cap.page(from + i),
            {
              compress: true,
              delta: syncCache,
            },
          );
          assert.deepEqual(got, want.frame, `round ${round}, batch at ${from}`);
          xor += t.result.xorPages;
        }
        cap.release();
      }
      assert.ok(xor > 1000, `only ${xor} XOR pages`);
      assert.equal(capturer.inUse, 0);
    }
  });

  it("deltas through the pool with a small cache: the receiver ends with every page as captured", async () => {
    const m = new GuestMemory(PAGES * PAGE_SIZE);
    fillMemory(m, 3);
    const image = Buffer.alloc(PAGES * PAGE_SIZE);
    const cache = new SentPageCache(PAGES, 300);
    const enc = new BatchEncoder(pool, { compress: true, geometry: GEOMETRY, cache });
    const { tx, rx } = codecs();
    // A full sync from live memory (torn pages are resent below), then checkpoints of copy-on-write captures.
    const queue = new TicketQueue<EncodeResult>();
    for (let p = 0; p < PAGES; p += 512) queue.push(enc.memory(1, m, p, 512));
    const cow = new CowCapturer(m);
    const r = mulberry32u32(4);
    m.log.clear();
    const send = async () => {
      for (let t = await queue.next(); t; t = await queue.next()) {
        assert.ok(t.result, String(t.error));
        applyFrame(image, tx.sealBatch(t.result.frame as Buffer, t.result.bodyCrc), rx);
      }
    };
    await send();
    for (let round = 0; round < 6; round++) {
      scribble(m, r, 4000);
      const cap = cow.capture(m.log.drain());
      const want = pagesOf(cap);
      for (let from = 0; from < cap.count; from += 200)
        queue.push(enc.capture(2 + round, cap, from, Math.min(200, cap.count - from)));
      scribble(m, r, 2000); // written during the send: the capture keeps the pause-time bytes
      await send();
      for (let i = 0; i < cap.count; i++) {
        const p = cap.pfn(i);
        assert.ok(image.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE).equals(want[i] as Buffer), `pfn ${p}`);
      }
      cap.release();
    }
    assert.ok(cache.stats.hits > 0 && cache.stats.evictions > 0, JSON.stringify(cache.stats));
  });

  it("decodes batches into shared memory, XOR_LZ4 against a base in shared memory", async () => {
    const src = Buffer.alloc(64 * PAGE_SIZE);
    const r = mulberry32u32(5);
    for (let i = 0; i < src.length; i += 4) src.writeUInt32LE(r() & 0x00ff00ff, i);
    const baseMem = new SharedArrayBuffer(64 * PAGE_SIZE);
    const base = Buffer.from(baseMem);
    base.set(src);
    const cache = new SentPageCache(64, 64);
    for (let p = 0; p < 64; p++) cache.store(p, src.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
    for (let p = 0; p < 64; p += 3) src.writeUInt32LE(0xdeadbeef, p * PAGE_SIZE + 100);
    for (let p = 1; p < 64; p += 5) src.fill(0, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    const frame = encodeBatchFrame(
      "pageBatch",
      3,
      64,
      (i) => i,
      (i) => src.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE),
      { compress: true, delta: cache },
      { session: 0, seq: 0 },
    );
    assert.ok(frame.xorPages > 0);
    const dstMem = new SharedArrayBuffer(64 * PAGE_SIZE);
    const dstOffsets = new Float64Array(64).map((_, i) => (63 - i) * PAGE_SIZE); // reversed slots
    const t = pool.decode({
      kind: "pageBatch",
      frame: frame.frame,
      geometry: { pages: 64, diskBlocks: 0 },
      dstKeys: new Int32Array(64).fill(pool.share(dstMem)),
      dstOffsets,
      baseKeys: new Int32Array(64).fill(pool.share(baseMem)),
      baseOffsets: new Float64Array(64).map((_, i) => i * PAGE_SIZE),
    });
    const res = await t.promise;
    assert.deepEqual(res, { ok: true, pages: 64 });
    const dst = Buffer.from(dstMem);
    for (let i = 0; i < 64; i++) {
      assert.ok(
        dst
          .subarray((63 - i) * PAGE_SIZE, (64 - i) * PAGE_SIZE)
          .equals(src.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)),
        `page ${i}`,
      );
    }
    // A corrupted block is a failed result for that entry, not a dead worker.
    const bad = Buffer.from(frame.frame);
    const first = decodeFrame(frame.frame, { session: 0, seq: 0, geometry: { pages: 64, diskBlocks: 0 } });
    assert.equal(first.type, "pageBatch");
    const lz =
      first.type === "pageBatch"
        ? first.entries.findIndex((e) => e.enc === PAGE_ENCODING.lz4 || e.enc === PAGE_ENCODING.xorLz4)
        : -1;
    assert.ok(lz >= 0);
    if (first.type === "pageBatch") {
      const e = first.entries[lz] as { data: Uint8Array };
      bad.fill(
        0xff,
        e.data.byteOffset - frame.frame.byteOffset,
        e.data.byteOffset - frame.frame.byteOffset + e.data.length,
      );
    }
    const res2 = await pool.decode({
      kind: "pageBatch",
      frame: bad,
      geometry: { pages: 64, diskBlocks: 0 },
      dstKeys: new Int32Array(64).fill(pool.share(dstMem)),
      dstOffsets,
      baseKeys: new Int32Array(64).fill(pool.share(baseMem)),
      baseOffsets: new Float64Array(64).map((_, i) => i * PAGE_SIZE),
    }).promise;
    assert.equal(res2.ok, false);
    if (!res2.ok) assert.equal(res2.entry, lz);
    assert.equal(pool.broken, undefined);
  });

  it("a job that fails reports its error and releases its cache slots; the pool carries on", async () => {
    const m = new GuestMemory(PAGES * PAGE_SIZE);
    const cache = new SentPageCache(PAGES, 16);
    const enc = new BatchEncoder(pool, { compress: true, geometry: { pages: 4, diskBlocks: 0 }, cache });
    m.fill(0, 8 * PAGE_SIZE, 7);
    // pfns 0..7 against a geometry of 4 pages: the worker's encoder refuses pfn 4.
    const t = enc.memory(1, m, 0, 8);
    await assert.rejects(t.promise, /out-of-range|pfn 4/);
    assert.ok(t.done && t.error);
    assert.equal(cache.size, 0, "no version kept for a frame that was not built");
    // Pages never written go as ZERO without being read: bytes put behind the accessors' back
    // into pristine page 10 are not seen (no write through the accessors reached it).
    m.buf.fill(9, 10 * PAGE_SIZE, 11 * PAGE_SIZE);
    const ok = await new BatchEncoder(pool, { compress: true, cache }).memory(1, m, 0, 16).promise;
    assert.equal(ok.lz4Pages, 8);
    assert.equal(ok.zeroPages, 8);
    assert.equal(cache.size, 8);
    assert.equal(pool.broken, undefined);
  });
});

describe("page pool lifecycle", () => {
  it("close() fails jobs still in flight and refuses new ones", async () => {
    const p = new PagePool({ threads: 1 });
    const m = new GuestMemory(512 * PAGE_SIZE);
    fillMemory(m, 9);
    const enc = new BatchEncoder(p, { compress: true });
    const tickets = Array.from({ length: 8 }, () => enc.memory(1, m, 0, 512));
    await p.close();
    for (const t of tickets) assert.ok(t.done);
    assert.ok(tickets.some((t) => t.error));
    await assert.rejects(enc.memory(1, m, 0, 1).promise, /closed/);
  });

  it("the single-thread path runs the same job code", () => {
    const m = new GuestMemory(64 * PAGE_SIZE);
    fillMemory(m, 10);
    const table = new Map([[1, new Uint8Array(m.shared)]]);
    const r = runEncode(
      {
        kind: "pageBatch",
        epoch: 2,
        compress: true,
        source: { kind: "memory", memory: 1, first: 0, count: 64 },
      },
      { get: (k) => table.get(k) as Uint8Array },
      new EncodeScratch(),
    );
    const want = encodeBatchFrame(
      "pageBatch",
      2,
      64,
      (i) => i,
      (i) => m.page(i),
      { compress: true },
    );
    assert.deepEqual(Buffer.from(r.frame), want.frame);
    assert.equal(
      r.zero.reduce((a, b) => a + b, 0),
      want.zeroPages,
    );
  });
});
