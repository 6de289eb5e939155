import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CHECKPOINT_FLAG,
  FrameCodec,
  geometryOf,
  HELLO_FLAG,
  type Hello,
  isProtocolError,
  PAGE_SIZE,
  type ReplicationRecord,
  ROLE,
  StreamOrder,
  SYNC_FLAG,
  sessionTag,
  type Verdict,
} from "../../src/protocol/index.js";

const GEN = 7;

function hello(role: 1 | 2, flags = 0, generation = GEN): Hello {
  return {
    type: "hello",
    role,
    flags,
    generation,
    pageSize: 4096,
    pages: 64,
    diskBlockSize: 4096,
    diskBlocks: 16,
    vcpuSize: 8,
    deviceSize: 32,
    committedEpoch: 0,
    nonce: Buffer.alloc(32, role),
    nodeId: Buffer.alloc(16, role),
    software: "t",
  };
}

interface Side {
  codec: FrameCodec;
  order: StreamOrder;
}

/** Two sides connected back to back, handshake done. Frames go through codec and order on both ends. */
function connect(opts: { backupFlags?: number } = {}) {
  const p: Side = { codec: new FrameCodec(), order: new StreamOrder("primary") };
  const b: Side = { codec: new FrameCodec(), order: new StreamOrder("backup") };
  const hp = hello(ROLE.primary);
  const hb = hello(ROLE.backup, opts.backupFlags ?? 0);
  const deliver = (from: Side, to: Side, frame: Buffer, noteSent = true): Verdict => {
    if (noteSent) from.order.sent(frame);
    const r = to.codec.decode(frame);
    return to.order.received(r, frame);
  };
  const send = (from: Side, r: ReplicationRecord): Verdict =>
    deliver(from, from === p ? b : p, from.codec.encode(r));
  /** Sends without the sender's own order check, as a buggy or hostile peer would. */
  const sendUnchecked = (from: Side, r: ReplicationRecord): Verdict =>
    deliver(from, from === p ? b : p, from.codec.encode(r), false);
  send(p, hp);
  send(b, hb);
  const tag = sessionTag(Buffer.alloc(0), hp.nonce, hb.nonce);
  for (const s of [p, b]) {
    s.codec.setSessionTag(tag);
    s.codec.setGeometry(geometryOf(hp));
  }
  send(p, { type: "auth", mac: Buffer.alloc(32) });
  send(b, { type: "auth", mac: Buffer.alloc(32) });
  const page = Buffer.alloc(PAGE_SIZE, 3);
  const pages = (epoch: number, pfns: number[]) => {
    const out = p.codec.encodePageBatch(
      epoch,
      pfns.length,
      (i) => pfns[i]!,
      () => page,
      { compress: true },
    );
    return deliver(p, b, out.frame);
  };
  const writes = (epoch: number, blocks: number[]) => {
    const out = p.codec.encodeDiskWrites(
      epoch,
      blocks.length,
      (i) => blocks[i]!,
      () => page,
      { compress: false },
    );
    return deliver(p, b, out.frame);
  };
  const state = (epoch: number) => {
    send(p, { type: "vcpu", epoch, state: Buffer.alloc(8) });
    return send(p, { type: "device", epoch, state: Buffer.alloc(3) });
  };
  const end = (epoch: number, flags = 0, over: Partial<ReplicationRecord> = {}) => {
    const s = p.order.summary();
    const r = {
      type: "checkpointEnd" as const,
      epoch,
      generation: GEN,
      flags,
      ...s,
      guestTimeNs: 5n,
      digest: Buffer.alloc(32),
      ...over,
    } as ReplicationRecord;
    return Object.keys(over).length > 0 ? sendUnchecked(p, r) : send(p, r);
  };
  const sync = (epoch: number, flags = 0) =>
    send(p, { type: "syncBegin", generation: GEN, epoch, pages: 64, diskBlocks: 16, flags });
  return { p, b, send, sendUnchecked, pages, writes, state, end, sync };
}

const reasonOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (isProtocolError(e)) return e.reason;
    throw e;
  }
  return "no error";
};

describe("record order (StreamOrder, CheckpointStream)", () => {
  it("accepts a whole session: sync, checkpoints, early disk writes, switchover, final, goodbye", () => {
    const c = connect();
    assert.equal(c.sync(10), "accept");
    assert.equal(c.pages(10, [0, 1, 2]), "accept");
    assert.equal(c.pages(10, [1, 63]), "accept"); // a page may be sent again in a later batch
    assert.equal(c.writes(10, [3, 3]), "accept");
    c.state(10);
    assert.equal(c.writes(11, [4]), "accept"); // epoch 11 runs while checkpoint 10 streams
    assert.deepEqual(c.p.order.summary().pageCount, 5);
    assert.equal(c.end(10, CHECKPOINT_FLAG.sync), "accept");
    assert.equal(c.send(c.b, { type: "ack", epoch: 10, generation: GEN }), "accept");
    // The early write counts towards checkpoint 11.
    assert.equal(c.p.order.summary().recordCount, 1);
    assert.equal(c.p.order.summary().diskWriteCount, 1);
    c.pages(11, [5]);
    c.state(11);
    assert.equal(c.end(11), "accept");
    assert.equal(
      c.send(c.b, {
        type: "heartbeat",
        pingId: 1,
        sentAtUs: 1,
        state: 5,
        committedEpoch: 10,
        generation: GEN,
      }),
      "accept",
    );
    assert.equal(c.send(c.b, { type: "switchoverRequest", generation: GEN }), "accept");
    c.state(12);
    assert.equal(c.end(12, CHECKPOINT_FLAG.final), "accept");
    assert.equal(c.send(c.b, { type: "ack", epoch: 12, generation: GEN }), "accept"); // cumulative: acks 11 too
    assert.equal(
      c.send(c.p, { type: "goodbye", reason: 9, generation: 1, epoch: 0, message: "switchover" }),
      "accept",
    );
    assert.equal(
      reasonOf(() => c.send(c.p, { type: "heartbeatReply", pingId: 1, sentAtUs: 1 })),
      "bad-order",
    );
  });

  it("the backup rejects checkpoint records out of order", () => {
    assert.equal(
      reasonOf(() => connect().pages(1, [0])),
      "bad-order",
    ); // before SYNC_BEGIN
    const c = connect();
    c.sync(5);
    c.state(5);
    assert.equal(
      reasonOf(() => c.sendUnchecked(c.p, { type: "vcpu", epoch: 5, state: Buffer.alloc(8) })),
      "bad-order",
    );
    const d = connect();
    d.sync(5);
    d.send(d.p, { type: "vcpu", epoch: 5, state: Buffer.alloc(8) });
    const page = Buffer.alloc(PAGE_SIZE);
    const late = d.p.codec.encodePageBatch(
      5,
      1,
      () => 1,
      () => page,
      { compress: false },
    );
    assert.equal(
      reasonOf(() => d.b.order.received(d.b.codec.decode(late.frame), late.frame)),
      "bad-order",
    );
    const e = connect();
    e.sync(5);
    e.writes(6, [1]);
    const far = e.p.codec.encodeDiskWrites(
      7,
      1,
      () => 1,
      () => page,
      { compress: false },
    );
    assert.equal(
      reasonOf(() => e.b.order.received(e.b.codec.decode(far.frame), far.frame)),
      "bad-order",
    );
    const f = connect();
    f.sync(5);
    assert.equal(
      reasonOf(() => f.sendUnchecked(f.p, { type: "device", epoch: 5, state: Buffer.alloc(0) })),
      "bad-order",
    );
  });

  it("the backup rejects a CHECKPOINT_END that does not match the records before it", () => {
    for (const [over, reason] of [
      [{ recordCount: 99 }, "bad-checkpoint"],
      [{ pageCount: 2 }, "bad-checkpoint"],
      [{ diskWriteCount: 1 }, "bad-checkpoint"],
      [{ streamCrc: 12345 }, "bad-checkpoint"],
      [{ flags: 0 }, "bad-checkpoint"], // SYNC flag missing on the sync's end
      [{ generation: GEN + 1 }, "bad-generation"],
      [{ epoch: 6 }, "bad-order"],
    ] as const) {
      const c = connect();
      c.sync(5);
      c.pages(5, [1]);
      c.state(5);
      assert.equal(
        reasonOf(() => c.end(5, CHECKPOINT_FLAG.sync, over)),
        reason,
        JSON.stringify(over),
      );
    }
  });

  it("the stream CRC chains the trailers, so reordering two records of a checkpoint is caught", () => {
    const c = connect();
    c.sync(5);
    c.pages(5, [1]);
    c.pages(5, [2]);
    c.state(5);
    const s = c.p.order.summary();
    // Same records and counts, other order: a different chain.
    const other = connect();
    other.sync(5);
    other.pages(5, [2]);
    other.pages(5, [1]);
    other.state(5);
    const t = other.p.order.summary();
    assert.equal(s.recordCount, t.recordCount);
    assert.notEqual(s.streamCrc, t.streamCrc);
  });

  it("nothing may follow the final checkpoint but heartbeats and goodbye", () => {
    const c = connect();
    c.sync(5);
    c.state(5);
    c.end(5, CHECKPOINT_FLAG.sync | CHECKPOINT_FLAG.final);
    assert.equal(
      reasonOf(() => c.sendUnchecked(c.p, { type: "vcpu", epoch: 6, state: Buffer.alloc(8) })),
      "bad-order",
    );
    assert.equal(
      reasonOf(() => c.sync(9)),
      "bad-order",
    );
  });

  it("SYNC_BEGIN: new epoch numbers only, right generation, incremental only onto a valid image", () => {
    const c = connect();
    c.sync(5);
    c.state(5);
    c.end(5, CHECKPOINT_FLAG.sync);
    assert.equal(c.sync(6), "accept"); // a resync restarts the stream
    c.pages(6, [1]);
    assert.equal(c.sync(7), "accept"); // even in the middle of a checkpoint
    // Each failure below ends its connection, so each gets a fresh one.
    const d = connect();
    d.sync(5);
    assert.equal(
      reasonOf(() => d.sync(5)),
      "bad-order",
    );
    const e = connect();
    e.sync(5);
    assert.equal(
      reasonOf(() =>
        e.sendUnchecked(e.p, {
          type: "syncBegin",
          generation: GEN,
          epoch: 4,
          pages: 64,
          diskBlocks: 16,
          flags: 0,
        }),
      ),
      "bad-order",
    );
    const f = connect();
    assert.equal(
      reasonOf(() =>
        f.sendUnchecked(f.p, {
          type: "syncBegin",
          generation: GEN - 1,
          epoch: 8,
          pages: 64,
          diskBlocks: 16,
          flags: 0,
        }),
      ),
      "bad-generation",
    );
    assert.equal(
      reasonOf(() => connect().sync(5, SYNC_FLAG.incremental)),
      "bad-order",
    );
    assert.equal(connect({ backupFlags: HELLO_FLAG.imageValid }).sync(5, SYNC_FLAG.incremental), "accept");
    // An ACK in this session also vouches for the backup's image.
    const g = connect();
    g.sync(5);
    g.state(5);
    g.end(5, CHECKPOINT_FLAG.sync);
    g.send(g.b, { type: "ack", epoch: 5, generation: GEN });
    assert.equal(g.sync(6, SYNC_FLAG.incremental), "accept");
  });

  it("the primary accepts only in-order, cumulative acks for checkpoints it ended", () => {
    const c = connect();
    assert.equal(
      reasonOf(() => c.send(c.b, { type: "ack", epoch: 5, generation: GEN })),
      "bad-order",
    );
    c.sync(5);
    c.state(5);
    c.end(5, CHECKPOINT_FLAG.sync);
    assert.equal(
      reasonOf(() => c.send(c.b, { type: "switchoverRequest", generation: GEN })),
      "bad-order",
    );
    assert.equal(
      reasonOf(() => c.send(c.b, { type: "ack", epoch: 5, generation: GEN + 1 })),
      "bad-generation",
    );
    c.send(c.b, { type: "ack", epoch: 5, generation: GEN });
    assert.equal(
      reasonOf(() => c.send(c.b, { type: "ack", epoch: 5, generation: GEN })),
      "bad-order",
    );
    assert.equal(
      reasonOf(() => c.send(c.b, { type: "switchoverRequest", generation: GEN - 1 })),
      "bad-generation",
    );
  });

  it("after a NACK the backup discards the old stream and the primary must resync", () => {
    const c = connect();
    c.sync(5);
    c.state(5);
    c.end(5, CHECKPOINT_FLAG.sync);
    c.send(c.b, { type: "ack", epoch: 5, generation: GEN });
    c.pages(6, [1]);
    c.state(6);
    c.end(6);
    assert.equal(c.send(c.b, { type: "nack", epoch: 6, reason: 2, message: "digest" }), "accept");
    // Records already in flight are discarded, not errors.
    assert.equal(c.pages(7, [1]), "discard");
    c.state(7);
    assert.equal(c.end(7), "discard");
    // The primary may not take an ack before it has resynced.
    assert.equal(
      reasonOf(() => c.sendUnchecked(c.b, { type: "ack", epoch: 7, generation: GEN })),
      "bad-order",
    );
    assert.equal(c.sync(8), "accept");
    c.state(8);
    assert.equal(c.end(8, CHECKPOINT_FLAG.sync), "accept");
    assert.equal(c.send(c.b, { type: "ack", epoch: 8, generation: GEN }), "accept");
  });

  it("handshake order: HELLO, then AUTH, once each; records only from the right role", () => {
    const p = new StreamOrder("primary");
    const codec = new FrameCodec();
    const ack = codec.encode({ type: "ack", epoch: 1, generation: 1 });
    assert.equal(
      reasonOf(() => p.received({ type: "ack", epoch: 1, generation: 1 }, ack)),
      "bad-order",
    );
    const b = new StreamOrder("backup");
    assert.equal(
      reasonOf(() => b.received(hello(ROLE.backup), ack)),
      "bad-order",
    ); // peer claims our role
    const c = connect();
    assert.equal(
      reasonOf(() => c.send(c.p, { type: "auth", mac: Buffer.alloc(32) })),
      "bad-order",
    );
    const d = connect();
    assert.equal(
      reasonOf(() => d.send(d.p, { type: "ack", epoch: 1, generation: GEN })),
      "bad-order",
    );
    const e = connect();
    assert.equal(
      reasonOf(() =>
        e.send(e.b, { type: "syncBegin", generation: GEN, epoch: 1, pages: 64, diskBlocks: 16, flags: 0 }),
      ),
      "bad-order",
    );
    // A goodbye is always allowed, even first.
    assert.equal(
      new StreamOrder("backup").received(
        { type: "goodbye", reason: 6, generation: 1, epoch: 0, message: "" },
        ack,
      ),
      "accept",
    );
  });
});
