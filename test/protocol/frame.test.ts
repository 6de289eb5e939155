import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { crc32 } from "node:zlib";
import { RemusError } from "../../src/errors.js";
import {
  checkPeerHello,
  computeAuthMac,
  decodeFrame,
  decodePageInto,
  encodeBody,
  encodeFrame,
  FRAME_OVERHEAD,
  FrameCodec,
  frameBody,
  frameCrc,
  GOODBYE_REASON,
  geometryOf,
  type Hello,
  INSECURE_KEY,
  isProtocolError,
  LIMITS,
  MAX_BATCH_ENTRIES,
  PAGE_SIZE,
  ProtocolError,
  ROLE,
  readFrameHeader,
  sessionNonces,
  sessionTag,
  verifyAuthMac,
} from "../../src/protocol/index.js";
import { TEST_GEOMETRY } from "./helpers.js";

const reasonOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (isProtocolError(e)) return e.reason;
    throw e;
  }
  return "no error";
};

function hello(role: 1 | 2, over: Partial<Hello> = {}): Hello {
  return {
    type: "hello",
    role,
    flags: 0,
    generation: 5,
    pageSize: 4096,
    pages: 1024,
    diskBlockSize: 4096,
    diskBlocks: 128,
    vcpuSize: 64,
    deviceSize: 256,
    committedEpoch: 0,
    nonce: Buffer.alloc(32, role),
    nodeId: Buffer.alloc(16, role + 10),
    software: "remusd test",
    ...over,
  };
}

describe("frames", () => {
  it("lays out the header and trailer as the spec says", () => {
    const f = encodeFrame(
      { type: "ack", epoch: 0x0102030405, generation: 6 },
      { session: 0xa1b2c3d4, seq: 9 },
    );
    assert.equal(f.length, FRAME_OVERHEAD + 16);
    assert.deepEqual([...f.subarray(0, 4)], [0x44, 0x52, 1, 0x20]);
    assert.deepEqual(readFrameHeader(f), {
      magic: 0x5244,
      version: 1,
      type: 0x20,
      session: 0xa1b2c3d4,
      seq: 9,
      bodyLen: 16,
    });
    assert.deepEqual([...frameBody(f).subarray(0, 8)], [5, 4, 3, 2, 1, 0, 0, 0]);
    assert.equal(frameCrc(f), crc32(f.subarray(0, f.length - 4)));
  });

  it("ProtocolError is a RemusError with code REMUSD_ERR_PROTOCOL and a stable reason", () => {
    const e = new ProtocolError("bad-crc", "x");
    assert.ok(e instanceof RemusError);
    assert.equal(e.code, "REMUSD_ERR_PROTOCOL");
    assert.equal(e.reason, "bad-crc");
  });

  it("checks session and seq unless the caller passes null", () => {
    const f = encodeFrame({ type: "switchoverRequest", generation: 1 }, { session: 5, seq: 6 });
    assert.equal(
      reasonOf(() => decodeFrame(f, { session: 4, seq: 6 })),
      "bad-session",
    );
    assert.equal(
      reasonOf(() => decodeFrame(f, { session: 5, seq: 7 })),
      "bad-seq",
    );
    assert.equal(decodeFrame(f, { session: null, seq: null }).type, "switchoverRequest");
  });

  it("a corrupted header is reported as bad-crc, not as what the corruption looks like", () => {
    const f = encodeFrame({ type: "ack", epoch: 1, generation: 1 }, { session: 5, seq: 6 });
    for (const at of [2, 3, 4, 8]) {
      const g = Buffer.from(f);
      g[at]! ^= 0x40;
      assert.equal(
        reasonOf(() => decodeFrame(g, { session: 5, seq: 6 })),
        "bad-crc",
        `byte ${at}`,
      );
    }
  });

  it("rejects each bad body length at the frame layer before reading the body", () => {
    const f = encodeFrame({ type: "ack", epoch: 1, generation: 1 }, { session: 0, seq: 0 });
    const g = Buffer.from(f);
    g.writeUInt32LE(LIMITS.maxBody + 1, 12);
    assert.equal(
      reasonOf(() => decodeFrame(g, { session: 0, seq: 0 })),
      "too-large",
    );
    assert.equal(
      reasonOf(() => decodeFrame(f.subarray(0, 19), { session: 0, seq: 0 })),
      "truncated",
    );
  });

  it("refuses to encode what it would refuse to decode", () => {
    const ep = { session: 0, seq: 0 };
    assert.equal(
      reasonOf(() => encodeFrame({ type: "ack", epoch: 2 ** 53, generation: 0 }, ep)),
      "bad-value",
    );
    assert.equal(
      reasonOf(() => encodeFrame({ type: "ack", epoch: -1, generation: 0 }, ep)),
      "bad-value",
    );
    assert.equal(
      reasonOf(() =>
        encodeFrame({ type: "goodbye", reason: 1, generation: 1, epoch: 0, message: "é".repeat(513) }, ep),
      ),
      "too-large",
    );
    assert.equal(
      reasonOf(() => encodeFrame({ ...hello(1), software: "x".repeat(65) }, ep)),
      "too-large",
    );
    assert.equal(
      reasonOf(() => encodeFrame({ type: "pageBatch", epoch: 1, entries: [] }, ep)),
      "bad-value",
    );
    const z = { enc: 0 as const, data: Buffer.alloc(0) };
    assert.equal(
      reasonOf(() =>
        encodeFrame(
          {
            type: "pageBatch",
            epoch: 1,
            entries: [
              { pfn: 2, ...z },
              { pfn: 1, ...z },
            ],
          },
          ep,
        ),
      ),
      "bad-order",
    );
    assert.equal(
      reasonOf(() =>
        encodeFrame(
          { type: "pageBatch", epoch: 1, entries: [{ pfn: 2, enc: 1, data: Buffer.alloc(5) }] },
          ep,
        ),
      ),
      "bad-encoding",
    );
    assert.equal(
      reasonOf(() =>
        encodeFrame(
          {
            type: "checkpointEnd",
            epoch: 1,
            generation: 1,
            flags: 0,
            pageCount: 0,
            diskWriteCount: 0,
            recordCount: 0,
            streamCrc: 0,
            guestTimeNs: 0n,
            digest: Buffer.alloc(32, 1),
          },
          ep,
        ),
      ),
      "bad-value",
    );
    // Disk writes may repeat a block; pages may not.
    const w = encodeFrame(
      {
        type: "diskWrites",
        epoch: 1,
        entries: [
          { block: 3, ...z },
          { block: 3, ...z },
        ],
      },
      ep,
    );
    assert.equal(decodeFrame(w, { ...ep, geometry: TEST_GEOMETRY }).type, "diskWrites");
  });

  it("a full batch of 512 raw pages fits the body limit, with no slack for a 513th", () => {
    const memory = Buffer.alloc(PAGE_SIZE * MAX_BATCH_ENTRIES);
    for (let i = 0; i < memory.length; i++) memory[i] = (i * 2654435761) >>> 27;
    const codec = new FrameCodec();
    codec.setGeometry({ pages: 1 << 20, diskBlocks: 0 });
    const out = codec.encodePageBatch(
      1,
      MAX_BATCH_ENTRIES,
      (i) => i,
      (i) => memory.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE),
      { compress: false },
    );
    assert.equal(out.rawPages, MAX_BATCH_ENTRIES);
    assert.ok(out.frame.length - FRAME_OVERHEAD <= LIMITS.maxBody);
    assert.ok(out.frame.length - FRAME_OVERHEAD + 8 + PAGE_SIZE > LIMITS.maxBody);
    assert.equal(out.frame.length, LIMITS.maxFrame - (LIMITS.maxBody - (12 + 512 * (8 + 4096))));
  });

  it("encodePageBatch rejects what the receiver would reject", () => {
    const page = Buffer.alloc(PAGE_SIZE, 1);
    const codec = new FrameCodec();
    codec.setGeometry({ pages: 10, diskBlocks: 10 });
    assert.equal(
      reasonOf(() =>
        codec.encodePageBatch(
          1,
          1,
          () => 10,
          () => page,
          { compress: true },
        ),
      ),
      "out-of-range",
    );
    assert.equal(
      reasonOf(() =>
        codec.encodePageBatch(
          1,
          2,
          () => 3,
          () => page,
          { compress: true },
        ),
      ),
      "bad-order",
    );
    assert.equal(
      reasonOf(() =>
        codec.encodePageBatch(
          1,
          513,
          (i) => i,
          () => page,
          { compress: true },
        ),
      ),
      "too-large",
    );
    assert.equal(
      reasonOf(() =>
        codec.encodePageBatch(
          1,
          1,
          () => 1,
          () => page.subarray(1),
          { compress: true },
        ),
      ),
      "bad-value",
    );
    // Failed encodes do not consume a sequence number.
    assert.equal(codec.nextSendSeq, 0);
    // Disk writes may name a block twice.
    assert.equal(
      codec.encodeDiskWrites(
        1,
        2,
        () => 3,
        () => page,
        { compress: true },
      ).lz4Pages,
      2,
    );
    assert.equal(codec.nextSendSeq, 1);
  });

  it("decodePageInto refuses a destination without room for a page", () => {
    assert.throws(
      () => decodePageInto({ enc: 0, data: Buffer.alloc(0) }, Buffer.alloc(PAGE_SIZE + 10), 11),
      RangeError,
    );
  });
});

describe("FrameCodec: a handshake and a few records, end to end", () => {
  it("switches from session 0 to the tag at each side's AUTH and numbers frames per direction", () => {
    const key = Buffer.from("a shared secret");
    const p = new FrameCodec();
    const b = new FrameCodec();
    const hp = hello(ROLE.primary);
    const hb = hello(ROLE.backup, { generation: 4 });
    const fp = p.encode(hp);
    const fb = b.encode(hb);
    const gotHb = p.decode(fb);
    const gotHp = b.decode(fp);
    assert.equal(gotHb.type, "hello");
    assert.equal(gotHp.type, "hello");
    if (gotHb.type !== "hello" || gotHp.type !== "hello") return;
    assert.equal(checkPeerHello(hp, gotHb), null);
    assert.equal(checkPeerHello(hb, gotHp), null);
    const tag = sessionTag(key, hp.nonce, hb.nonce);
    p.setSessionTag(tag);
    b.setSessionTag(tag);
    p.setGeometry(geometryOf(hp));
    b.setGeometry(geometryOf(gotHp));
    // Each side MACs the exact HELLO bytes that crossed the wire.
    const macP = computeAuthMac(key, ROLE.primary, frameBody(fp), frameBody(fb));
    const authP = p.encode({ type: "auth", mac: macP });
    assert.equal(readFrameHeader(authP).session, 0);
    assert.equal(p.sendSession, tag);
    const gotAuth = b.decode(authP);
    assert.equal(b.recvSession, tag);
    if (gotAuth.type !== "auth") return assert.fail();
    assert.ok(verifyAuthMac(key, ROLE.primary, frameBody(fp), encodeBody(hb), gotAuth.mac));
    assert.ok(
      !verifyAuthMac(Buffer.from("another key"), ROLE.primary, frameBody(fp), encodeBody(hb), gotAuth.mac),
    );
    // A MAC is bound to the sender's role.
    assert.ok(!verifyAuthMac(key, ROLE.backup, frameBody(fp), encodeBody(hb), gotAuth.mac));
    const sync = p.encode({
      type: "syncBegin",
      generation: 5,
      epoch: 1,
      pages: 1024,
      diskBlocks: 128,
      flags: 0,
    });
    assert.deepEqual(readFrameHeader(sync).session, tag);
    assert.equal(readFrameHeader(sync).seq, 2);
    assert.equal(b.decode(sync).type, "syncBegin");
    // A replayed frame fails on its sequence number.
    assert.equal(
      reasonOf(() => b.decode(sync)),
      "bad-seq",
    );
    // A failed decode does not advance the expected sequence number.
    assert.equal(b.nextRecvSeq, 3);
  });

  it("a frame from another session is rejected even with a valid CRC and the right seq", () => {
    const key = INSECURE_KEY;
    const tagA = sessionTag(key, Buffer.alloc(32, 1), Buffer.alloc(32, 2));
    const tagB = sessionTag(key, Buffer.alloc(32, 1), Buffer.alloc(32, 3));
    assert.notEqual(tagA, tagB);
    const f = encodeFrame({ type: "heartbeatReply", pingId: 1, sentAtUs: 2 }, { session: tagA, seq: 5 });
    assert.equal(
      reasonOf(() => decodeFrame(f, { session: tagB, seq: 5 })),
      "bad-session",
    );
  });

  it("batches are refused until the geometry is known", () => {
    const c = new FrameCodec();
    const f = encodeFrame(
      { type: "pageBatch", epoch: 1, entries: [{ pfn: 0, enc: 0, data: Buffer.alloc(0) }] },
      { session: 0, seq: 0 },
    );
    assert.equal(
      reasonOf(() => c.decode(f)),
      "bad-order",
    );
  });

  it("AUTH cannot be sent or accepted before the session tag is set", () => {
    const c = new FrameCodec();
    assert.equal(
      reasonOf(() => c.encode({ type: "auth", mac: Buffer.alloc(32) })),
      "bad-order",
    );
    const f = encodeFrame({ type: "auth", mac: Buffer.alloc(32) }, { session: 0, seq: 0 });
    assert.equal(
      reasonOf(() => c.decode(f)),
      "bad-order",
    );
  });
});

describe("handshake checks", () => {
  it("sessionTag is deterministic, depends on key and both nonces, and is never 0", () => {
    const n1 = Buffer.alloc(32, 1);
    const n2 = Buffer.alloc(32, 2);
    assert.equal(sessionTag(Buffer.from("k"), n1, n2), sessionTag(Buffer.from("k"), n1, n2));
    assert.notEqual(sessionTag(Buffer.from("k"), n1, n2), sessionTag(Buffer.from("j"), n1, n2));
    assert.notEqual(sessionTag(Buffer.from("k"), n1, n2), sessionTag(Buffer.from("k"), n2, n1));
    for (let i = 0; i < 2000; i++) {
      const n = Buffer.alloc(32);
      n.writeUInt32LE(i);
      assert.notEqual(sessionTag(INSECURE_KEY, n, n2), 0);
    }
  });

  it("checkPeerHello: roles and geometry; generations wait for AUTH", () => {
    assert.equal(checkPeerHello(hello(2), hello(2))?.reason, GOODBYE_REASON.protocolError);
    // Two primaries authenticate first: only then is it settled which one is stale (§5.5).
    assert.equal(checkPeerHello(hello(1), hello(1, { generation: 9 })), null);
    assert.equal(
      checkPeerHello(hello(1), hello(2, { pages: 2048 }))?.reason,
      GOODBYE_REASON.geometryMismatch,
    );
    assert.equal(
      checkPeerHello(hello(1, { pageSize: 8192 }), hello(2, { pageSize: 8192 }))?.reason,
      GOODBYE_REASON.geometryMismatch,
    );
    assert.equal(
      checkPeerHello(hello(1), hello(2, { vcpuSize: 32 }))?.reason,
      GOODBYE_REASON.geometryMismatch,
    );
    // An unauthenticated HELLO's generation changes nothing, however high.
    assert.equal(checkPeerHello(hello(1), hello(2, { generation: 6 })), null);
    assert.equal(checkPeerHello(hello(2, { generation: 6 }), hello(1)), null);
  });

  it("sessionNonces: the primary's first; between two primaries the smaller first, the same on both sides", () => {
    const p = hello(1, { nonce: Buffer.alloc(32, 7) });
    const b = hello(2, { nonce: Buffer.alloc(32, 3) });
    assert.deepEqual(sessionNonces(p, b), [p.nonce, b.nonce]);
    assert.deepEqual(sessionNonces(b, p), [p.nonce, b.nonce]);
    const q = hello(1, { nonce: Buffer.alloc(32, 2) });
    assert.deepEqual(sessionNonces(p, q), [q.nonce, p.nonce]);
    assert.deepEqual(sessionNonces(q, p), [q.nonce, p.nonce]);
  });

  it("computeAuthMac binds both HELLO bodies", () => {
    const key = Buffer.from("k");
    const a = encodeBody(hello(1));
    const b = encodeBody(hello(2));
    const b2 = encodeBody(hello(2, { nonce: Buffer.alloc(32, 9) }));
    const mac = computeAuthMac(key, 1, a, b);
    assert.equal(mac.length, 32);
    assert.ok(verifyAuthMac(key, 1, a, b, mac));
    assert.ok(!verifyAuthMac(key, 1, a, b2, mac));
    assert.ok(!verifyAuthMac(key, 1, b, a, mac));
    assert.ok(!verifyAuthMac(key, 1, a, b, mac.subarray(1)));
  });
});
