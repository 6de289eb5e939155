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
function connect(opts: { backupFlags?: number; colo?: boolean } = {}) {
  const p: Side = {
    codec: new FrameCodec(),
    order: new StreamOrder("primary", { colo: opts.colo ?? false }),
  };
  const b: Side = { codec: new FrameCodec(), order: new StreamOrder("backup", { colo: opts.colo ?? false }) };
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

describe("DOMAIN_CONFIG order (§6.16, §7.1)", () => {
  const config = {
    type: "domainConfig" as const,
    pages: 64,
    diskBlocks: 16,
    intervalMs: 25,
    guestMac: Buffer.from("020000000010", "hex"),
    guestIp: 0x0a00000a,
    workload: "web",
  };

  it("once, before the first SYNC_BEGIN; a backup that adopts needs it before any sync", () => {
    const c = connect({ backupFlags: HELLO_FLAG.adopt });
    // The primary's own order check refuses a sync without it, and so does the backup's.
    assert.equal(
      reasonOf(() => c.sync(10)),
      "bad-order",
    );
    const d = connect({ backupFlags: HELLO_FLAG.adopt });
    assert.equal(
      reasonOf(() => d.sendUnchecked(d.p, { ...config })),
      "no error",
    );
    const e = connect({ backupFlags: HELLO_FLAG.adopt });
    assert.equal(
      reasonOf(() =>
        e.sendUnchecked(e.p, {
          type: "syncBegin",
          generation: GEN,
          epoch: 10,
          pages: 64,
          diskBlocks: 16,
          flags: 0,
        }),
      ),
      "bad-order",
    );
    const f = connect({ backupFlags: HELLO_FLAG.adopt });
    assert.equal(f.send(f.p, config), "accept");
    assert.equal(
      reasonOf(() => f.sendUnchecked(f.p, config)),
      "bad-order",
    ); // a second one
    assert.equal(f.sync(10), "accept");
  });

  it("never after a SYNC_BEGIN; a backup that does not adopt may go without it; never from a backup", () => {
    const c = connect();
    assert.equal(c.sync(10), "accept");
    assert.equal(
      reasonOf(() => c.sendUnchecked(c.p, config)),
      "bad-order",
    );
    const d = connect();
    assert.equal(
      reasonOf(() => d.sendUnchecked(d.b, config)),
      "bad-order",
    );
  });
});

describe("REWIND order (§6.17, §7.3)", () => {
  const offer = (epoch = 0) => ({
    type: "rewind" as const,
    generation: GEN - 1,
    epoch,
    pageBitmap: Buffer.alloc(8),
    blockBitmap: Buffer.alloc(2),
  });

  it("a backup that offered a rewind sends REWIND first; the primary syncs it only after, and a rewind sync only to it", () => {
    const c = connect({ backupFlags: HELLO_FLAG.rewind });
    // No sync of any kind before the REWIND arrived.
    assert.equal(
      reasonOf(() => c.sync(10)),
      "bad-order",
    );
    const d = connect({ backupFlags: HELLO_FLAG.rewind });
    assert.equal(d.send(d.b, offer()), "accept");
    assert.equal(
      reasonOf(() => d.sendUnchecked(d.b, offer())),
      "bad-order",
    ); // once
    assert.equal(d.sync(10, SYNC_FLAG.rewind), "accept");
    assert.equal(d.pages(10, [1, 2]), "accept");
    d.state(10);
    assert.equal(d.end(10, CHECKPOINT_FLAG.sync), "accept");
    assert.equal(d.send(d.b, { type: "ack", epoch: 10, generation: GEN }), "accept");
    // A full sync answers a REWIND too (a primary that refuses the rewind).
    const e = connect({ backupFlags: HELLO_FLAG.rewind });
    assert.equal(e.send(e.b, offer()), "accept");
    assert.equal(e.sync(10), "accept");
  });

  it("REWIND from a backup that offered none, or after a sync began, and a rewind sync to such a backup, are out of order", () => {
    const c = connect();
    assert.equal(
      reasonOf(() => c.sendUnchecked(c.b, offer())),
      "bad-order",
    );
    const d = connect();
    assert.equal(
      reasonOf(() => d.sync(10, SYNC_FLAG.rewind)),
      "bad-order",
    );
    const e = connect({ backupFlags: HELLO_FLAG.rewind });
    assert.equal(e.send(e.b, offer()), "accept");
    assert.equal(e.sync(10), "accept");
    assert.equal(
      reasonOf(() => e.sendUnchecked(e.b, offer())),
      "bad-order",
    );
  });
});

describe("COLO record order (§7.6)", () => {
  const FRAME = Buffer.alloc(60, 0xab);
  const ack = (c: ReturnType<typeof connect>, epoch: number) =>
    c.send(c.b, { type: "ack", epoch, generation: GEN });
  const input = (c: ReturnType<typeof connect>, epoch: number, index: number, checked = true) =>
    (checked ? c.send : c.sendUnchecked)(c.p, { type: "coloInput", epoch, index, frame: FRAME });
  const output = (c: ReturnType<typeof connect>, epoch: number, index: number, checked = true) =>
    (checked ? c.send : c.sendUnchecked)(c.b, { type: "coloOutput", epoch, index, frame: FRAME });
  const request = (c: ReturnType<typeof connect>, epoch: number, inputs: number, checked = true) =>
    (checked ? c.send : c.sendUnchecked)(c.p, {
      type: "coloCheckpoint",
      epoch,
      generation: GEN,
      reason: 1,
      inputs,
    });
  const dirty = (c: ReturnType<typeof connect>, epoch: number, checked = true) =>
    (checked ? c.send : c.sendUnchecked)(c.b, {
      type: "coloDirty",
      epoch,
      pageBitmap: Buffer.alloc(8),
      blockBitmap: Buffer.alloc(2),
    });
  const start = (c: ReturnType<typeof connect>, epoch: number, generation = GEN, checked = true) =>
    (checked ? c.send : c.sendUnchecked)(c.p, { type: "coloStart", epoch, generation, edge: [] });
  /** A COLO pair synced with epoch 10, COLO from 11. */
  const synced = () => {
    const c = connect({ colo: true });
    c.sync(10);
    c.pages(10, [0, 1]);
    c.state(10);
    c.end(10, CHECKPOINT_FLAG.sync);
    return c;
  };

  it("accepts a whole COLO session: start, mirrored input, secondary output, checkpoint with the dirty set", () => {
    const c = synced();
    assert.equal(c.writes(11, [2]), "accept"); // disk writes of the running epoch stream as in Remus
    assert.equal(start(c, 11), "accept");
    assert.equal(ack(c, 10), "accept");
    assert.equal(input(c, 11, 0), "accept");
    assert.equal(output(c, 11, 0), "accept");
    assert.equal(input(c, 11, 1), "accept");
    assert.equal(output(c, 11, 1), "accept");
    assert.equal(request(c, 11, 2), "accept");
    assert.equal(input(c, 12, 0), "accept"); // epoch 12 runs while checkpoint 11 streams
    assert.equal(output(c, 11, 2), "accept"); // the secondary's last words of epoch 11 may still arrive
    assert.equal(dirty(c, 11), "accept");
    assert.equal(c.pages(11, [3]), "accept");
    c.state(11);
    assert.equal(c.end(11), "accept");
    assert.equal(ack(c, 11), "accept");
    assert.equal(output(c, 12, 0), "accept");
    assert.equal(request(c, 12, 1), "accept");
    assert.equal(dirty(c, 12), "accept");
    c.state(12);
    assert.equal(c.end(12), "accept");
    assert.ok(c.p.order.colo?.active && c.b.order.colo?.active);
    assert.equal(c.p.order.colo?.epoch, 13);
    // A resync turns the secondary back into a backup until the next COLO_START.
    c.sync(20);
    assert.equal(
      reasonOf(() => input(c, 13, 0, false)),
      "bad-order",
    );
  });

  it("a session not in COLO mode refuses every COLO record, on both sides", () => {
    const remus = () => {
      const c = connect();
      c.sync(10);
      c.state(10);
      c.end(10, CHECKPOINT_FLAG.sync);
      return c;
    };
    assert.equal(
      reasonOf(() => start(remus(), 11)),
      "bad-order",
    ); // the primary's own check
    assert.equal(
      reasonOf(() => start(remus(), 11, GEN, false)),
      "bad-order",
    ); // the backup's
    const d = connect();
    assert.equal(
      reasonOf(() => output(d, 1, 0, false)),
      "bad-order",
    );
    assert.equal(
      reasonOf(() => dirty(connect(), 1, false)),
      "bad-order",
    );
  });

  it("COLO_START only right after a completed sync, for the next epoch, in the session's generation", () => {
    assert.equal(
      reasonOf(() => start(synced(), 12, GEN, false)),
      "bad-order",
    );
    assert.equal(
      reasonOf(() => start(synced(), 11, GEN + 1, false)),
      "bad-generation",
    );
    const late = synced();
    late.pages(11, [1]);
    assert.equal(
      reasonOf(() => start(late, 11, GEN, false)),
      "bad-order",
    );
    const twice = synced();
    start(twice, 11);
    assert.equal(
      reasonOf(() => start(twice, 11, GEN, false)),
      "bad-order",
    );
    const c = connect({ colo: true });
    c.sync(10);
    c.state(10);
    c.end(10, CHECKPOINT_FLAG.sync);
    c.state(11);
    c.end(11);
    assert.equal(
      reasonOf(() => start(c, 12, GEN, false)),
      "bad-order",
    ); // not after a sync's end
  });

  it("mirrored input is numbered from 0 in each epoch, and COLO_CHECKPOINT must count it", () => {
    const c = synced();
    assert.equal(
      reasonOf(() => input(c, 11, 0, false)),
      "bad-order",
    ); // before COLO_START
    start(c, 11);
    input(c, 11, 0);
    assert.equal(
      reasonOf(() => input(c, 11, 2, false)),
      "bad-order",
    );
    const d = synced();
    start(d, 11);
    assert.equal(
      reasonOf(() => input(d, 12, 0, false)),
      "bad-order",
    );
    const e = synced();
    start(e, 11);
    input(e, 11, 0);
    assert.equal(
      reasonOf(() => request(e, 11, 2, false)),
      "bad-checkpoint",
    );
    const f = synced();
    start(f, 11);
    assert.equal(
      reasonOf(() =>
        f.sendUnchecked(f.p, {
          type: "coloCheckpoint",
          epoch: 11,
          generation: GEN + 1,
          reason: 2,
          inputs: 0,
        }),
      ),
      "bad-generation",
    );
  });

  it("a COLO checkpoint's pages wait for COLO_CHECKPOINT and the secondary's COLO_DIRTY", () => {
    const at = (stage: 0 | 1 | 2) => {
      const c = synced();
      start(c, 11);
      if (stage >= 1) request(c, 11, 0);
      if (stage >= 2) dirty(c, 11);
      return c;
    };
    assert.equal(
      reasonOf(() => at(0).pages(11, [1])),
      "bad-order",
    );
    assert.equal(
      reasonOf(() => at(1).pages(11, [1])),
      "bad-order",
    ); // the primary has no dirty set yet
    assert.equal(at(2).pages(11, [1]), "accept");
    // The backup checks it too: a primary that streams the pages before the dirty set arrived.
    const c = at(1);
    const page = Buffer.alloc(PAGE_SIZE);
    const early = c.p.codec.encodePageBatch(
      11,
      1,
      () => 1,
      () => page,
      { compress: false },
    );
    assert.equal(
      reasonOf(() => c.b.order.received(c.b.codec.decode(early.frame), early.frame)),
      "bad-order",
    );
    assert.equal(
      reasonOf(() => dirty(at(2), 11, false)),
      "bad-order",
    ); // once
    assert.equal(
      reasonOf(() => dirty(at(1), 12, false)),
      "bad-order",
    ); // not asked for
  });

  it("secondary output runs forward: its epoch never ahead of the primary's, indexes consecutive", () => {
    const c = synced();
    assert.equal(
      reasonOf(() => output(c, 11, 0, false)),
      "bad-order",
    ); // before COLO_START
    start(c, 11);
    output(c, 11, 0);
    assert.equal(
      reasonOf(() => output(c, 11, 2, false)),
      "bad-order",
    );
    const d = synced();
    start(d, 11);
    assert.equal(
      reasonOf(() => output(d, 12, 0, false)),
      "bad-order",
    );
    const e = synced();
    start(e, 11);
    request(e, 11, 0);
    output(e, 12, 0);
    assert.equal(
      reasonOf(() => output(e, 11, 0, false)),
      "bad-order",
    ); // back to an old epoch
  });
});
