/**
 * Writes proto/vectors/: the golden frames and index.json. The bytes are
 * laid out here by hand from the tables of proto/SPEC.md, independently of
 * src/protocol, so the vector test cross-checks the codec against the spec.
 *
 * Run after a deliberate format change only:
 *   npx tsc -p . && node dist/test/protocol/build-vectors.js
 */

import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32 } from "node:zlib";
import lz4 from "lz4";

export const VECTORS_DIR = join(dirname(fileURLToPath(import.meta.url)), "../../../proto/vectors");

class W {
  readonly parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.of(v));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  str8(s: string): this {
    const b = Buffer.from(s, "utf8");
    return this.u8(b.length).bytes(b);
  }
  str16(s: string): this {
    const b = Buffer.from(s, "utf8");
    return this.u16(b.length).bytes(b);
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

interface FrameOpts {
  magic?: number;
  version?: number;
  bodyLen?: number;
  crc?: number;
}

function frame(type: number, session: number, seq: number, body: Buffer, o: FrameOpts = {}): Buffer {
  const head = new W()
    .u16(o.magic ?? 0x5244)
    .u8(o.version ?? 1)
    .u8(type)
    .u32(session)
    .u32(seq)
    .u32(o.bodyLen ?? body.length)
    .done();
  const hb = Buffer.concat([head, body]);
  return Buffer.concat([hb, new W().u32(o.crc ?? crc32(hb)).done()]);
}

const seqBytes = (n: number, start: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (start + i * 7) & 0xff));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const SESSION = 0x1f2e3d4c;
const GEOMETRY = { pages: 256, diskBlocks: 64, vcpuSize: 16, deviceSize: 64 };
const NONCE_P = seqBytes(32, 1);
const NONCE_B = seqBytes(32, 2);
const NODE_P = seqBytes(16, 100);
const NODE_B = seqBytes(16, 200);

// Pages used by the batches.
const rawPage = Buffer.alloc(4096);
for (let i = 0; i < 4096; i++) rawPage[i] = (i * 31 + (i >> 8) * 17) & 0xff;
const textPage = Buffer.alloc(4096);
for (let i = 0; i < 4096; i++) textPage[i] = "remusd checkpoint "[i % 18]!.charCodeAt(0);
const lz4Text = (() => {
  const out = Buffer.alloc(4095);
  const n = lz4.encodeBlock(textPage, out, 0, 4095);
  if (n <= 0) throw new Error("text page did not compress");
  return out.subarray(0, n);
})();
// A well-formed lz4 block that decodes to 100 bytes, not 4096.
const lz4Short = (() => {
  const out = Buffer.alloc(200);
  const n = lz4.encodeBlock(textPage.subarray(0, 100), out, 0, 200);
  return out.subarray(0, n);
})();

// XOR_LZ4 (§6.4.1): the base is the text page; the new version rewrites one 32-byte record.
export const DELTA_BASE = textPage;
export const DELTA_PAGE = (() => {
  const p = Buffer.from(textPage);
  p.write("remusd delta: 32 bytes rewritten", 1000, "latin1");
  return p;
})();
const lz4XorDelta = (() => {
  const x = Buffer.alloc(4096);
  for (let i = 0; i < 4096; i++) x[i] = DELTA_PAGE[i]! ^ DELTA_BASE[i]!;
  const out = Buffer.alloc(4095);
  const n = lz4.encodeBlock(x, out, 0, 4095);
  if (n <= 0) throw new Error("delta did not compress");
  return out.subarray(0, n);
})();

interface Entry {
  index: number;
  enc: number;
  data: Buffer;
  reserved?: number;
  len?: number;
}
function batchBody(epoch: number, entries: Entry[], count = entries.length): Buffer {
  const w = new W().u64(epoch).u32(count);
  for (const e of entries)
    w.u32(e.index)
      .u8(e.enc)
      .u8(e.reserved ?? 0)
      .u16(e.len ?? e.data.length);
  for (const e of entries) w.bytes(e.data);
  return w.done();
}

const helloP = {
  type: "hello",
  role: 1,
  flags: 0,
  generation: 3,
  pageSize: 4096,
  pages: 256,
  diskBlockSize: 4096,
  diskBlocks: 64,
  vcpuSize: 16,
  deviceSize: 64,
  committedEpoch: 0,
  nonce: hex(NONCE_P),
  nodeId: hex(NODE_P),
  software: "remusd 0.1.0",
};
function helloBody(h: typeof helloP, nonce: Buffer, node: Buffer, o: { generation?: bigint } = {}): Buffer {
  return new W()
    .u8(h.role)
    .u8(h.flags)
    .u16(0)
    .u64(o.generation ?? h.generation)
    .u32(h.pageSize)
    .u32(h.pages)
    .u32(h.diskBlockSize)
    .u32(h.diskBlocks)
    .u16(h.vcpuSize)
    .u16(h.deviceSize)
    .u64(h.committedEpoch)
    .bytes(nonce)
    .bytes(node)
    .str8(h.software)
    .done();
}
const helloB = {
  ...helloP,
  role: 2,
  flags: 1,
  generation: 3,
  committedEpoch: 41,
  nonce: hex(NONCE_B),
  nodeId: hex(NODE_B),
};
const helloBD = { ...helloB, flags: 3 };
// A backup started with no domain of its own: DELTA and ADOPT, no image, placeholder geometry.
// A former primary rejoining: DELTA, ADOPT and REWIND, its image's last common epoch 41.
const helloBR = { ...helloB, flags: 14 };
const helloBA = { ...helloB, flags: 6, committedEpoch: 0, pages: 16384, diskBlocks: 16384 };
// DOMAIN_CONFIG (§6.16): 256 pages, 64 blocks, 25 ms, 02:00:00:00:00:10, 10.0.0.10, workload "web".
const domainConfigBody = (
  o: { pages?: number; interval?: number; reserved?: number; workload?: string } = {},
) =>
  new W()
    .u32(o.pages ?? 256)
    .u32(64)
    .u32(o.interval ?? 25)
    .bytes(Buffer.from("020000000010", "hex"))
    .u16(o.reserved ?? 0)
    .u32(0x0a00000a)
    .str16(o.workload ?? "web")
    .done();
const digest = seqBytes(32, 9);
// Ethernet frames carried by the COLO records: the client (02:00:00:00:01:00, 10.0.0.100) asks for the
// guest's MAC (10.0.0.10), and the guest (02:00:00:00:00:10) answers.
const ARP_REQUEST = Buffer.from(
  "ffffffffffff020000000100080600010800060400010200000001000a0000640000000000000a00000a",
  "hex",
);
const ARP_REPLY = Buffer.from(
  "020000000100020000000010080600010800060400020200000000100a00000a0200000001000a000064",
  "hex",
);

export interface VectorCase {
  name: string;
  description: string;
  type: string;
  context: { session: number; seq: number; geometry?: typeof GEOMETRY };
  bytes: Buffer;
  record?: unknown;
  error?: string;
}

const ctx = (seq: number) => ({ session: SESSION, seq, geometry: GEOMETRY });

function valid(): VectorCase[] {
  const cases: VectorCase[] = [];
  const add = (
    name: string,
    description: string,
    type: string,
    c: VectorCase["context"],
    bytes: Buffer,
    record: unknown,
  ) => cases.push({ name, description, type, context: c, bytes, record });

  add(
    "hello-primary",
    "HELLO from a primary, first frame of its stream",
    "hello",
    { session: 0, seq: 0 },
    frame(0x01, 0, 0, helloBody(helloP, NONCE_P, NODE_P)),
    helloP,
  );
  add(
    "hello-backup",
    "HELLO from a backup with an intact image of epoch 41 (IMAGE_VALID)",
    "hello",
    { session: 0, seq: 0 },
    frame(0x01, 0, 0, helloBody(helloB, NONCE_B, NODE_B)),
    helloB,
  );
  add(
    "hello-backup-delta",
    "HELLO from a backup with IMAGE_VALID and DELTA (it decodes XOR_LZ4)",
    "hello",
    { session: 0, seq: 0 },
    frame(0x01, 0, 0, helloBody(helloBD, NONCE_B, NODE_B)),
    helloBD,
  );
  add(
    "hello-backup-adopt",
    "HELLO from a backup with no domain of its own yet: DELTA and ADOPT (it takes the geometry from DOMAIN_CONFIG)",
    "hello",
    { session: 0, seq: 0 },
    frame(0x01, 0, 0, helloBody(helloBA, NONCE_B, NODE_B)),
    helloBA,
  );
  add(
    "domain-config",
    "DOMAIN_CONFIG: 256 pages, 64 blocks, 25 ms, guest 02:00:00:00:00:10 at 10.0.0.10, workload web",
    "domainConfig",
    ctx(2),
    frame(0x16, SESSION, 2, domainConfigBody()),
    {
      type: "domainConfig",
      pages: 256,
      diskBlocks: 64,
      intervalMs: 25,
      guestMac: "020000000010",
      guestIp: 0x0a00000a,
      workload: "web",
    },
  );
  const mac = seqBytes(32, 77);
  add("auth", "AUTH, second frame of a stream", "auth", { session: 0, seq: 1 }, frame(0x02, 0, 1, mac), {
    type: "auth",
    mac: hex(mac),
  });
  add(
    "sync-begin",
    "SYNC_BEGIN: the sync completes with epoch 42",
    "syncBegin",
    ctx(2),
    frame(0x10, SESSION, 2, new W().u64(3).u64(42).u32(256).u32(64).u32(0).done()),
    { type: "syncBegin", generation: 3, epoch: 42, pages: 256, diskBlocks: 64, flags: 0 },
  );
  add(
    "sync-begin-incremental",
    "SYNC_BEGIN of an incremental resync completing with epoch 45",
    "syncBegin",
    ctx(2),
    frame(0x10, SESSION, 2, new W().u64(3).u64(45).u32(256).u32(64).u32(1).done()),
    { type: "syncBegin", generation: 3, epoch: 45, pages: 256, diskBlocks: 64, flags: 1 },
  );

  const mixed: Entry[] = [
    { index: 0, enc: 0, data: Buffer.alloc(0) },
    { index: 5, enc: 1, data: rawPage },
    { index: 255, enc: 2, data: lz4Text },
  ];
  const jsonEntries = (es: Entry[], key: string) =>
    es.map((e) => ({ [key]: e.index, enc: e.enc, data: hex(e.data) }));
  add(
    "page-batch-mixed",
    "PAGE_BATCH with a zero, a raw and an lz4 page",
    "pageBatch",
    ctx(3),
    frame(0x11, SESSION, 3, batchBody(42, mixed)),
    { type: "pageBatch", epoch: 42, entries: jsonEntries(mixed, "pfn") },
  );
  const zero: Entry[] = [
    { index: 1, enc: 0, data: Buffer.alloc(0) },
    { index: 2, enc: 0, data: Buffer.alloc(0) },
  ];
  add(
    "page-batch-zero",
    "PAGE_BATCH of zero pages only: no data section",
    "pageBatch",
    ctx(3),
    frame(0x11, SESSION, 3, batchBody(42, zero)),
    { type: "pageBatch", epoch: 42, entries: jsonEntries(zero, "pfn") },
  );
  const raw: Entry[] = [{ index: 7, enc: 1, data: rawPage }];
  add(
    "page-batch-raw",
    "PAGE_BATCH with one raw page",
    "pageBatch",
    ctx(3),
    frame(0x11, SESSION, 3, batchBody(42, raw)),
    { type: "pageBatch", epoch: 42, entries: jsonEntries(raw, "pfn") },
  );
  const lz: Entry[] = [{ index: 9, enc: 2, data: lz4Text }];
  add(
    "page-batch-lz4",
    "PAGE_BATCH with one lz4 page",
    "pageBatch",
    ctx(3),
    frame(0x11, SESSION, 3, batchBody(42, lz)),
    { type: "pageBatch", epoch: 42, entries: jsonEntries(lz, "pfn") },
  );
  const xd: Entry[] = [
    { index: 4, enc: 0, data: Buffer.alloc(0) },
    { index: 9, enc: 3, data: lz4XorDelta },
  ];
  add(
    "page-batch-xor-lz4",
    "PAGE_BATCH with a zero page and page 9 as XOR_LZ4 against its base (32 bytes changed)",
    "pageBatch",
    ctx(3),
    frame(0x11, SESSION, 3, batchBody(43, xd)),
    { type: "pageBatch", epoch: 43, entries: jsonEntries(xd, "pfn") },
  );
  const writes: Entry[] = [
    { index: 10, enc: 1, data: rawPage },
    { index: 3, enc: 2, data: lz4Text },
    { index: 10, enc: 0, data: Buffer.alloc(0) },
  ];
  add(
    "disk-writes",
    "DISK_WRITES: block 10 written twice (the later, zero, wins), block 3 before it",
    "diskWrites",
    ctx(4),
    frame(0x12, SESSION, 4, batchBody(43, writes)),
    { type: "diskWrites", epoch: 43, entries: jsonEntries(writes, "block") },
  );
  const vcpu = seqBytes(16, 50);
  add(
    "vcpu",
    "VCPU state of 16 bytes",
    "vcpu",
    ctx(5),
    frame(0x13, SESSION, 5, new W().u64(42).u16(16).bytes(vcpu).done()),
    { type: "vcpu", epoch: 42, state: hex(vcpu) },
  );
  const dev = seqBytes(5, 60);
  add(
    "device",
    "DEVICE state of 5 bytes",
    "device",
    ctx(6),
    frame(0x14, SESSION, 6, new W().u64(42).u16(5).bytes(dev).done()),
    { type: "device", epoch: 42, state: hex(dev) },
  );
  const end = (flags: number, d: Buffer) =>
    new W()
      .u64(42)
      .u64(3)
      .u32(flags)
      .u32(4)
      .u32(3)
      .u32(5)
      .u32(0xdeadbeef)
      .u64(1_234_567_890_123n)
      .bytes(d)
      .done();
  add(
    "checkpoint-end-sync",
    "CHECKPOINT_END with SYNC and HAS_DIGEST",
    "checkpointEnd",
    ctx(7),
    frame(0x15, SESSION, 7, end(0b101, digest)),
    {
      type: "checkpointEnd",
      epoch: 42,
      generation: 3,
      flags: 5,
      pageCount: 4,
      diskWriteCount: 3,
      recordCount: 5,
      streamCrc: 0xdeadbeef,
      guestTimeNs: "1234567890123",
      digest: hex(digest),
    },
  );
  add(
    "checkpoint-end-final",
    "CHECKPOINT_END with FINAL and no digest",
    "checkpointEnd",
    ctx(7),
    frame(0x15, SESSION, 7, end(0b010, Buffer.alloc(32))),
    {
      type: "checkpointEnd",
      epoch: 42,
      generation: 3,
      flags: 2,
      pageCount: 4,
      diskWriteCount: 3,
      recordCount: 5,
      streamCrc: 0xdeadbeef,
      guestTimeNs: "1234567890123",
      digest: hex(Buffer.alloc(32)),
    },
  );
  add("ack", "ACK of epoch 42", "ack", ctx(2), frame(0x20, SESSION, 2, new W().u64(42).u64(3).done()), {
    type: "ack",
    epoch: 42,
    generation: 3,
  });
  add(
    "nack",
    "NACK of epoch 43: digest mismatch",
    "nack",
    ctx(3),
    frame(0x21, SESSION, 3, new W().u64(43).u16(2).str16("digest differs").done()),
    { type: "nack", epoch: 43, reason: 2, message: "digest differs" },
  );
  add(
    "heartbeat",
    "HEARTBEAT from a protected primary",
    "heartbeat",
    ctx(8),
    frame(0x30, SESSION, 8, new W().u32(17).u64(9_007_199_254_740_991n).u8(2).u64(42).u64(3).done()),
    {
      type: "heartbeat",
      pingId: 17,
      sentAtUs: 9007199254740991,
      state: 2,
      committedEpoch: 42,
      generation: 3,
    },
  );
  add(
    "heartbeat-reply",
    "HEARTBEAT_REPLY echoing ping 17",
    "heartbeatReply",
    ctx(4),
    frame(0x31, SESSION, 4, new W().u32(17).u64(123456).done()),
    { type: "heartbeatReply", pingId: 17, sentAtUs: 123456 },
  );
  add(
    "goodbye",
    "GOODBYE SHUTDOWN with a UTF-8 message",
    "goodbye",
    ctx(9),
    frame(0x40, SESSION, 9, new W().u16(1).u64(3).u64(41).str16("arrêt planifié").done()),
    { type: "goodbye", reason: 1, generation: 3, epoch: 41, message: "arrêt planifié" },
  );
  add(
    "goodbye-handshake",
    "GOODBYE AUTH_FAILED sent during the handshake (session 0)",
    "goodbye",
    { session: 0, seq: 1 },
    frame(0x40, 0, 1, new W().u16(3).u64(1).u64(0).str16("").done()),
    { type: "goodbye", reason: 3, generation: 1, epoch: 0, message: "" },
  );
  add(
    "switchover-request",
    "SWITCHOVER_REQUEST for generation 3",
    "switchoverRequest",
    ctx(5),
    frame(0x50, SESSION, 5, new W().u64(3).done()),
    { type: "switchoverRequest", generation: 3 },
  );
  add(
    "colo-start",
    "COLO_START: the session runs in COLO mode from epoch 43 (the sync completed with 42); the primary's edge renumbers nothing",
    "coloStart",
    ctx(8),
    frame(0x60, SESSION, 8, new W().u64(43).u64(3).u32(0).done()),
    { type: "coloStart", epoch: 43, generation: 3, edge: [] },
  );
  add(
    "colo-start-edge",
    "COLO_START from a primary that took over as a COLO secondary: its edge renumbers the guest's port 6379 to client 10.0.0.100:40000 by 0x10000001",
    "coloStart",
    ctx(8),
    frame(
      0x60,
      SESSION,
      8,
      new W()
        .u64(43)
        .u64(3)
        .u32(1)
        .u32(0x0a00000a)
        .u32(0x0a000064)
        .u16(6379)
        .u16(40000)
        .u32(0x10000001)
        .done(),
    ),
    {
      type: "coloStart",
      epoch: 43,
      generation: 3,
      edge: [
        { localIp: 0x0a00000a, localPort: 6379, remoteIp: 0x0a000064, remotePort: 40000, delta: 0x10000001 },
      ],
    },
  );
  add(
    "colo-input",
    "COLO_INPUT: the third frame of epoch 43 mirrored to the secondary (an ARP request for the guest)",
    "coloInput",
    ctx(9),
    frame(0x61, SESSION, 9, new W().u64(43).u32(2).u16(ARP_REQUEST.length).bytes(ARP_REQUEST).done()),
    { type: "coloInput", epoch: 43, index: 2, frame: hex(ARP_REQUEST) },
  );
  add(
    "colo-output",
    "COLO_OUTPUT: the secondary's first frame of epoch 43 (its ARP reply)",
    "coloOutput",
    ctx(6),
    frame(0x62, SESSION, 6, new W().u64(43).u32(0).u16(ARP_REPLY.length).bytes(ARP_REPLY).done()),
    { type: "coloOutput", epoch: 43, index: 0, frame: hex(ARP_REPLY) },
  );
  add(
    "colo-checkpoint",
    "COLO_CHECKPOINT: epoch 43 ends on a mismatch after 17 mirrored inputs",
    "coloCheckpoint",
    ctx(10),
    frame(0x63, SESSION, 10, new W().u64(43).u64(3).u8(1).u8(0).u16(0).u32(17).done()),
    { type: "coloCheckpoint", epoch: 43, generation: 3, reason: 1, inputs: 17 },
  );
  // 256 pages: pfns 0, 5, 9 and 255 dirty; 64 blocks: 3 and 10.
  const pageBits = Buffer.alloc(32);
  pageBits[0] = 0b0010_0001;
  pageBits[1] = 0b0000_0010;
  pageBits[31] = 0b1000_0000;
  const blockBits = Buffer.alloc(8);
  blockBits[0] = 0b0000_1000;
  blockBits[1] = 0b0000_0100;
  add(
    "colo-dirty",
    "COLO_DIRTY for epoch 43: the secondary dirtied pfns 0, 5, 9, 255 and disk blocks 3, 10",
    "coloDirty",
    ctx(7),
    frame(0x64, SESSION, 7, new W().u64(43).u32(32).bytes(pageBits).u32(8).bytes(blockBits).done()),
    { type: "coloDirty", epoch: 43, pageBitmap: hex(pageBits), blockBitmap: hex(blockBits) },
  );
  add(
    "hello-backup-rewind",
    "HELLO from a former primary offering its image of generation 2 to be rewound from epoch 41 (DELTA, ADOPT, REWIND)",
    "hello",
    { session: 0, seq: 0 },
    frame(0x01, 0, 0, helloBody(helloBR, NONCE_B, NODE_B)),
    helloBR,
  );
  add(
    "rewind",
    "REWIND: the image ran under generation 2, last common epoch 41; it wrote pfns 0, 5, 9, 255 and disk blocks 3, 10 after it",
    "rewind",
    ctx(2),
    frame(0x22, SESSION, 2, new W().u64(2).u64(41).u32(32).bytes(pageBits).u32(8).bytes(blockBits).done()),
    { type: "rewind", generation: 2, epoch: 41, pageBitmap: hex(pageBits), blockBitmap: hex(blockBits) },
  );
  add(
    "sync-begin-rewind",
    "SYNC_BEGIN of a rewind sync completing with epoch 45",
    "syncBegin",
    ctx(3),
    frame(0x10, SESSION, 3, new W().u64(3).u64(45).u32(256).u32(64).u32(2).done()),
    { type: "syncBegin", generation: 3, epoch: 45, pages: 256, diskBlocks: 64, flags: 2 },
  );
  return cases;
}

function invalid(): VectorCase[] {
  const cases: VectorCase[] = [];
  const add = (
    name: string,
    description: string,
    type: string,
    error: string,
    bytes: Buffer,
    c: VectorCase["context"] = ctx(3),
  ) => cases.push({ name, description, type, context: c, bytes, error });
  const ackBody = new W().u64(42).u64(3).done();
  const good = frame(0x20, SESSION, 3, ackBody);

  add("bad-magic", "magic 0x5245", "ack", "bad-magic", frame(0x20, SESSION, 3, ackBody, { magic: 0x5245 }));
  add(
    "bad-version",
    "version 2 (with a valid CRC)",
    "ack",
    "bad-version",
    frame(0x20, SESSION, 3, ackBody, { version: 2 }),
  );
  add(
    "unknown-type",
    "type 0x7f (with a valid CRC)",
    "unknown",
    "unknown-type",
    frame(0x7f, SESSION, 3, ackBody),
  );
  add("bad-session", "session tag off by one", "ack", "bad-session", frame(0x20, SESSION + 1, 3, ackBody));
  add(
    "bad-seq",
    "seq 4 where 3 is expected (a replayed or reordered frame)",
    "ack",
    "bad-seq",
    frame(0x20, SESSION, 4, ackBody),
  );
  add(
    "bad-crc",
    "last trailer byte flipped",
    "ack",
    "bad-crc",
    Buffer.concat([good.subarray(0, good.length - 1), Buffer.of(good[good.length - 1]! ^ 1)]),
  );
  add(
    "too-large",
    "bodyLen 0x7fffffff in the header",
    "ack",
    "too-large",
    frame(0x20, SESSION, 3, ackBody, { bodyLen: 0x7fffffff }),
  );
  add("truncated-frame", "frame cut one byte short", "ack", "truncated", good.subarray(0, good.length - 1));
  add("truncated-header", "only 10 bytes", "ack", "truncated", good.subarray(0, 10));
  add(
    "trailing-bytes-frame",
    "one byte after the trailer",
    "ack",
    "trailing-bytes",
    Buffer.concat([good, Buffer.of(0)]),
  );
  add(
    "truncated-body",
    "ACK body of 15 bytes (valid frame around it)",
    "ack",
    "truncated",
    frame(0x20, SESSION, 3, ackBody.subarray(0, 15)),
  );
  add(
    "trailing-bytes-body",
    "ACK body of 17 bytes (valid frame around it)",
    "ack",
    "trailing-bytes",
    frame(0x20, SESSION, 3, Buffer.concat([ackBody, Buffer.of(0)])),
  );
  const z = (index: number): Entry => ({ index, enc: 0, data: Buffer.alloc(0) });
  add(
    "page-pfn-out-of-range",
    "pfn 256 with 256 pages",
    "pageBatch",
    "out-of-range",
    frame(0x11, SESSION, 3, batchBody(42, [z(256)])),
  );
  add(
    "disk-block-out-of-range",
    "block 64 with 64 blocks",
    "diskWrites",
    "out-of-range",
    frame(0x12, SESSION, 3, batchBody(42, [z(64)])),
  );
  add(
    "page-pfn-not-increasing",
    "pfns 5 then 5",
    "pageBatch",
    "bad-order",
    frame(0x11, SESSION, 3, batchBody(42, [z(5), z(5)])),
  );
  add("page-count-zero", "count 0", "pageBatch", "bad-value", frame(0x11, SESSION, 3, batchBody(42, [])));
  add(
    "page-count-too-large",
    "count 513 (and no entries)",
    "pageBatch",
    "too-large",
    frame(0x11, SESSION, 3, batchBody(42, [], 513)),
  );
  add(
    "page-count-past-body",
    "count 512 with a single entry present",
    "pageBatch",
    "truncated",
    frame(0x11, SESSION, 3, batchBody(42, [z(1)], 512)),
  );
  add(
    "page-unknown-encoding",
    "enc 4",
    "pageBatch",
    "bad-encoding",
    frame(0x11, SESSION, 3, batchBody(42, [{ index: 1, enc: 4, data: Buffer.alloc(0) }])),
  );
  add(
    "page-xor-lz4-empty",
    "XOR_LZ4 entry with len 0",
    "pageBatch",
    "bad-encoding",
    frame(0x11, SESSION, 3, batchBody(42, [{ index: 1, enc: 3, data: Buffer.alloc(0) }])),
  );
  add(
    "page-xor-lz4-short",
    "XOR_LZ4 block that decodes to 100 bytes",
    "pageBatch",
    "bad-encoding",
    frame(0x11, SESSION, 3, batchBody(42, [{ index: 1, enc: 3, data: lz4Short }])),
  );
  add(
    "disk-writes-xor-lz4",
    "XOR_LZ4 in DISK_WRITES (disk blocks have no base)",
    "diskWrites",
    "bad-encoding",
    frame(0x12, SESSION, 3, batchBody(42, [{ index: 1, enc: 3, data: lz4XorDelta }])),
  );
  add(
    "page-raw-wrong-length",
    "raw page with len 100",
    "pageBatch",
    "bad-encoding",
    frame(0x11, SESSION, 3, batchBody(42, [{ index: 1, enc: 1, data: rawPage.subarray(0, 100) }])),
  );
  add(
    "page-zero-with-data",
    "zero page with len 1",
    "pageBatch",
    "bad-encoding",
    frame(0x11, SESSION, 3, batchBody(42, [{ index: 1, enc: 0, data: Buffer.of(0) }])),
  );
  add(
    "page-reserved-nonzero",
    "entry reserved byte 1",
    "pageBatch",
    "bad-value",
    frame(0x11, SESSION, 3, batchBody(42, [{ ...z(1), reserved: 1 }])),
  );
  add(
    "page-data-missing",
    "raw entry whose 4096 bytes are absent",
    "pageBatch",
    "truncated",
    frame(0x11, SESSION, 3, batchBody(42, [{ index: 1, enc: 1, data: Buffer.alloc(0), len: 4096 }])),
  );
  add(
    "page-data-extra",
    "zero entry followed by one stray data byte",
    "pageBatch",
    "trailing-bytes",
    frame(0x11, SESSION, 3, Buffer.concat([batchBody(42, [z(1)]), Buffer.of(7)])),
  );
  add(
    "page-lz4-short",
    "lz4 block that decodes to 100 bytes",
    "pageBatch",
    "bad-encoding",
    frame(0x11, SESSION, 3, batchBody(42, [{ index: 1, enc: 2, data: lz4Short }])),
  );
  add(
    "page-lz4-garbage",
    "lz4 block that is not lz4",
    "pageBatch",
    "bad-encoding",
    frame(
      0x11,
      SESSION,
      3,
      batchBody(42, [{ index: 1, enc: 2, data: Buffer.from([0xff, 0xff, 0xff, 0xff]) }]),
    ),
  );
  add(
    "page-lz4-overlong",
    "lz4 block of a page plus trailing garbage: decodes past 4096",
    "pageBatch",
    "bad-encoding",
    frame(
      0x11,
      SESSION,
      3,
      batchBody(42, [{ index: 1, enc: 2, data: Buffer.concat([lz4Text, Buffer.of(0x10, 0x41)]) }]),
    ),
  );
  add(
    "vcpu-too-large",
    "VCPU len 4097",
    "vcpu",
    "too-large",
    frame(0x13, SESSION, 3, new W().u64(42).u16(4097).bytes(Buffer.alloc(4097)).done()),
  );
  add(
    "vcpu-wrong-size",
    "VCPU of 15 bytes where HELLO said 16",
    "vcpu",
    "bad-geometry",
    frame(0x13, SESSION, 3, new W().u64(42).u16(15).bytes(Buffer.alloc(15)).done()),
  );
  add(
    "sync-begin-wrong-geometry",
    "SYNC_BEGIN for 512 pages where HELLO said 256",
    "syncBegin",
    "bad-geometry",
    frame(0x10, SESSION, 3, new W().u64(3).u64(42).u32(512).u32(64).u32(0).done()),
  );
  add(
    "sync-begin-undefined-flag",
    "SYNC_BEGIN with flag bit 2",
    "syncBegin",
    "bad-value",
    frame(0x10, SESSION, 3, new W().u64(3).u64(42).u32(256).u32(64).u32(4).done()),
  );
  add(
    "sync-begin-incremental-and-rewind",
    "SYNC_BEGIN both INCREMENTAL and REWIND",
    "syncBegin",
    "bad-value",
    frame(0x10, SESSION, 3, new W().u64(3).u64(42).u32(256).u32(64).u32(3).done()),
  );
  add(
    "hello-image-valid-and-rewind",
    "HELLO from a backup with both IMAGE_VALID and REWIND",
    "hello",
    "bad-value",
    frame(0x01, 0, 0, helloBody({ ...helloB, flags: 9 }, NONCE_B, NODE_B)),
    { session: 0, seq: 0 },
  );
  add(
    "rewind-wrong-geometry",
    "REWIND with a page bitmap of 64 bytes for 256 pages",
    "rewind",
    "bad-geometry",
    frame(
      0x22,
      SESSION,
      3,
      new W().u64(2).u64(41).u32(64).bytes(Buffer.alloc(64)).u32(8).bytes(Buffer.alloc(8)).done(),
    ),
  );
  add(
    "hello-undefined-flag",
    "HELLO with flag bit 4",
    "hello",
    "bad-value",
    frame(0x01, 0, 0, helloBody({ ...helloP, flags: 16 }, NONCE_P, NODE_P)),
    { session: 0, seq: 0 },
  );
  add(
    "domain-config-wrong-geometry",
    "DOMAIN_CONFIG for 512 pages where HELLO said 256",
    "domainConfig",
    "bad-geometry",
    frame(0x16, SESSION, 3, domainConfigBody({ pages: 512 })),
  );
  add(
    "domain-config-interval-zero",
    "DOMAIN_CONFIG with a checkpoint interval of 0 ms",
    "domainConfig",
    "bad-value",
    frame(0x16, SESSION, 3, domainConfigBody({ interval: 0 })),
  );
  add(
    "domain-config-reserved",
    "DOMAIN_CONFIG with its reserved field set",
    "domainConfig",
    "bad-value",
    frame(0x16, SESSION, 3, domainConfigBody({ reserved: 1 })),
  );
  add(
    "domain-config-workload-too-long",
    "DOMAIN_CONFIG with a workload spec of 1025 bytes",
    "domainConfig",
    "too-large",
    frame(0x16, SESSION, 3, domainConfigBody({ workload: "x".repeat(1025) })),
  );
  add(
    "nack-message-too-long",
    "NACK message of 1025 bytes",
    "nack",
    "too-large",
    frame(0x21, SESSION, 3, new W().u64(42).u16(1).str16("x".repeat(1025)).done()),
  );
  add(
    "goodbye-bad-utf8",
    "GOODBYE message with an invalid UTF-8 byte",
    "goodbye",
    "bad-encoding",
    frame(0x40, SESSION, 3, new W().u16(1).u64(1).u64(0).u16(2).bytes(Buffer.of(0xc3, 0x28)).done()),
  );
  add(
    "end-undefined-flag",
    "CHECKPOINT_END with flag bit 3",
    "checkpointEnd",
    "bad-value",
    frame(
      0x15,
      SESSION,
      3,
      new W().u64(42).u64(3).u32(8).u32(0).u32(0).u32(0).u32(0).u64(0).bytes(Buffer.alloc(32)).done(),
    ),
  );
  add(
    "end-digest-without-flag",
    "CHECKPOINT_END with a digest but no HAS_DIGEST",
    "checkpointEnd",
    "bad-value",
    frame(
      0x15,
      SESSION,
      3,
      new W().u64(42).u64(3).u32(0).u32(0).u32(0).u32(0).u32(0).u64(0).bytes(digest).done(),
    ),
  );
  add(
    "heartbeat-bad-state",
    "HEARTBEAT state 9",
    "heartbeat",
    "bad-value",
    frame(0x30, SESSION, 3, new W().u32(1).u64(1).u8(9).u64(0).u64(0).done()),
  );
  add(
    "hello-generation-unsafe",
    "HELLO generation 2^53",
    "hello",
    "bad-value",
    frame(0x01, 0, 0, helloBody(helloP, NONCE_P, NODE_P, { generation: 1n << 53n })),
    { session: 0, seq: 0 },
  );
  add(
    "hello-bad-role",
    "HELLO role 3",
    "hello",
    "bad-value",
    frame(0x01, 0, 0, helloBody({ ...helloP, role: 3 }, NONCE_P, NODE_P)),
    { session: 0, seq: 0 },
  );
  add(
    "page-batch-before-handshake",
    "PAGE_BATCH decoded without a geometry",
    "pageBatch",
    "bad-order",
    frame(0x11, 0, 2, batchBody(42, [z(1)])),
    { session: 0, seq: 2 },
  );
  const coloFrame = (type: number, len: number, data: Buffer) =>
    frame(type, SESSION, 3, new W().u64(43).u32(0).u16(len).bytes(data).done());
  add(
    "colo-input-frame-too-long",
    "COLO_INPUT announcing a 1515-byte frame (and carrying none)",
    "coloInput",
    "too-large",
    coloFrame(0x61, 1515, Buffer.alloc(0)),
  );
  add(
    "colo-output-frame-too-short",
    "COLO_OUTPUT with a 13-byte frame (shorter than an Ethernet header)",
    "coloOutput",
    "bad-value",
    coloFrame(0x62, 13, Buffer.alloc(13, 0xee)),
  );
  add(
    "colo-input-frame-truncated",
    "COLO_INPUT announcing 42 bytes and carrying 41",
    "coloInput",
    "truncated",
    coloFrame(0x61, 42, ARP_REQUEST.subarray(0, 41)),
  );
  add(
    "colo-checkpoint-bad-reason",
    "COLO_CHECKPOINT with reason 6",
    "coloCheckpoint",
    "bad-value",
    frame(0x63, SESSION, 3, new W().u64(43).u64(3).u8(6).u8(0).u16(0).u32(17).done()),
  );
  add(
    "colo-start-edge-delta-zero",
    "COLO_START with an edge entry whose delta is 0",
    "coloStart",
    "bad-value",
    frame(
      0x60,
      SESSION,
      3,
      new W().u64(43).u64(3).u32(1).u32(0x0a00000a).u32(0x0a000064).u16(6379).u16(40000).u32(0).done(),
    ),
  );
  add(
    "colo-start-edge-too-large",
    "COLO_START announcing 4,097 edge entries (and carrying none)",
    "coloStart",
    "too-large",
    frame(0x60, SESSION, 3, new W().u64(43).u64(3).u32(4097).done()),
  );
  add(
    "colo-checkpoint-reserved",
    "COLO_CHECKPOINT with a reserved byte set",
    "coloCheckpoint",
    "bad-value",
    frame(0x63, SESSION, 3, new W().u64(43).u64(3).u8(2).u8(1).u16(0).u32(17).done()),
  );
  add(
    "colo-dirty-wrong-geometry",
    "COLO_DIRTY with a 31-byte page bitmap for 256 pages",
    "coloDirty",
    "bad-geometry",
    frame(
      0x64,
      SESSION,
      3,
      new W().u64(43).u32(31).bytes(Buffer.alloc(31)).u32(8).bytes(Buffer.alloc(8)).done(),
    ),
  );
  add(
    "colo-dirty-too-large",
    "COLO_DIRTY announcing a page bitmap of 131,073 bytes (and carrying none)",
    "coloDirty",
    "too-large",
    frame(0x64, SESSION, 3, new W().u64(43).u32(131_073).done()),
  );
  const odd = { pages: 250, diskBlocks: 60, vcpuSize: 16, deviceSize: 64 };
  const tail = Buffer.alloc(32);
  tail[31] = 0b0000_0100; // pfn 250 of 250 pages
  add(
    "colo-dirty-bit-past-end",
    "COLO_DIRTY setting pfn 250 when the domain has 250 pages",
    "coloDirty",
    "bad-value",
    frame(0x64, SESSION, 3, new W().u64(43).u32(32).bytes(tail).u32(8).bytes(Buffer.alloc(8)).done()),
    { session: SESSION, seq: 3, geometry: odd },
  );
  add(
    "colo-dirty-before-handshake",
    "COLO_DIRTY decoded without a geometry",
    "coloDirty",
    "bad-order",
    frame(0x64, 0, 2, new W().u64(43).u32(32).bytes(Buffer.alloc(32)).u32(8).bytes(Buffer.alloc(8)).done()),
    { session: 0, seq: 2 },
  );
  return cases;
}

export function allVectors(): VectorCase[] {
  return [...valid(), ...invalid()];
}

/** Hex, 32 bytes a line. */
export function toHexLines(b: Buffer): string {
  const h = b.toString("hex");
  const lines: string[] = [];
  for (let i = 0; i < h.length; i += 64) lines.push(h.slice(i, i + 64));
  return `${lines.join("\n")}\n`;
}

function main(): void {
  mkdirSync(VECTORS_DIR, { recursive: true });
  for (const f of readdirSync(VECTORS_DIR)) if (f.endsWith(".hex")) rmSync(join(VECTORS_DIR, f));
  const index = allVectors().map((v) => {
    writeFileSync(join(VECTORS_DIR, `${v.name}.hex`), toHexLines(v.bytes));
    return {
      name: v.name,
      file: `${v.name}.hex`,
      description: v.description,
      type: v.type,
      valid: v.error === undefined,
      context: v.context,
      ...(v.error === undefined ? { record: v.record } : { error: v.error }),
    };
  });
  writeFileSync(
    join(VECTORS_DIR, "index.json"),
    `${JSON.stringify({ format: "remusd replication stream, version 1", vectors: index }, null, 2)}\n`,
  );
  console.log(`wrote ${index.length} vectors to ${VECTORS_DIR}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
