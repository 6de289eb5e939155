/**
 * Test helpers for the protocol: the JSON form of records used by
 * proto/vectors/index.json, and fast-check arbitraries for every record type.
 */

import fc from "fast-check";
import lz4 from "lz4";
import { toBitmap } from "../../src/protocol/colo.js";
import {
  CHECKPOINT_FLAG,
  COLO_REASON,
  type ColoReasonCode,
  type Geometry,
  GOODBYE_REASON,
  PAGE_ENCODING,
  PAGE_SIZE,
  type PageEncoding,
  PEER_STATE,
  type PeerStateCode,
  type ReplicationRecord,
  ROLE,
  type RoleCode,
} from "../../src/protocol/index.js";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const BYTE_FIELDS = new Set([
  "nonce",
  "nodeId",
  "mac",
  "state",
  "digest",
  "data",
  "frame",
  "pageBitmap",
  "blockBitmap",
  "guestMac",
]);

/** The JSON form of a record: byte fields as lowercase hex, `guestTimeNs` as a decimal string. */
export function recordToJson(r: ReplicationRecord): Json {
  return convert(r, (k, v) => {
    if (v instanceof Uint8Array && BYTE_FIELDS.has(k))
      return Buffer.from(v.buffer, v.byteOffset, v.length).toString("hex");
    if (typeof v === "bigint") return v.toString();
    return undefined;
  }) as Json;
}

/** Inverse of `recordToJson`; byte fields come back as Buffers. */
export function recordFromJson(j: Json): ReplicationRecord {
  return convert(j, (k, v) => {
    if (typeof v === "string" && BYTE_FIELDS.has(k)) return Buffer.from(v, "hex");
    if (k === "guestTimeNs" && typeof v === "string") return BigInt(v);
    return undefined;
  }) as ReplicationRecord;
}

function convert(v: unknown, leaf: (k: string, v: unknown) => unknown, key = ""): unknown {
  const mapped = leaf(key, v);
  if (mapped !== undefined) return mapped;
  if (Array.isArray(v)) return v.map((x) => convert(x, leaf, key));
  if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
    const out: { [k: string]: unknown } = {};
    for (const [k, x] of Object.entries(v)) out[k] = convert(x, leaf, k);
    return out;
  }
  return v;
}

/** Turns every byte field into a plain Buffer so deepStrictEqual compares content, not classes. */
export function normalize(r: ReplicationRecord): ReplicationRecord {
  return recordFromJson(recordToJson(r));
}

/** An lz4 block of `page`, or undefined when the page does not compress below 4096 bytes. */
export function lz4Block(page: Uint8Array): Buffer | undefined {
  const out = Buffer.alloc(PAGE_SIZE);
  const n = lz4.encodeBlock(page, out, 0, PAGE_SIZE - 1);
  return n > 0 ? out.subarray(0, n) : undefined;
}

/** Geometry used by the property tests. */
export const TEST_GEOMETRY: Geometry = { pages: 4096, diskBlocks: 1024, vcpuSize: 64, deviceSize: 512 };

const u32 = fc.nat({ max: 0xffff_ffff });
const u16 = fc.nat({ max: 0xffff });
const counter = fc.oneof(fc.nat({ max: 1000 }), fc.maxSafeNat());
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((a) => Buffer.from(a));
const text = (maxBytes: number) =>
  fc.string({ unit: "grapheme", maxLength: maxBytes / 4 }).filter((s) => Buffer.byteLength(s) <= maxBytes);

/** A page that is zero, random (incompressible) or patterned (compressible), with the chosen encoding. */
const pageArb = fc
  .tuple(
    fc.constantFrom("zero", "raw-random", "raw-pattern", "lz4"),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.nat({ max: 255 }),
  )
  .map(([kind, seed, fill]) => {
    const page = Buffer.alloc(PAGE_SIZE);
    if (kind === "zero") return { enc: PAGE_ENCODING.zero as PageEncoding, data: Buffer.alloc(0), page };
    if (kind === "raw-random") {
      // A cheap xorshift from the seed: random enough that lz4 cannot shrink it.
      let x = Buffer.from(seed).readUInt32LE(0) | 1;
      for (let i = 0; i < PAGE_SIZE; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        page[i] = x & 0xff;
      }
      return { enc: PAGE_ENCODING.raw as PageEncoding, data: page, page };
    }
    for (let i = 0; i < PAGE_SIZE; i++) page[i] = seed[i % 16]! ^ (i % 3 === 0 ? fill : 0);
    if (page.every((b) => b === 0)) page[0] = 1;
    if (kind === "raw-pattern") return { enc: PAGE_ENCODING.raw as PageEncoding, data: page, page };
    const block = lz4Block(page);
    return block === undefined
      ? { enc: PAGE_ENCODING.raw as PageEncoding, data: page, page }
      : { enc: PAGE_ENCODING.lz4 as PageEncoding, data: block, page };
  });

/** Fast-check arbitraries, one per record type, producing only valid records for TEST_GEOMETRY. */
export const arbRecords: {
  [T in ReplicationRecord["type"]]: fc.Arbitrary<Extract<ReplicationRecord, { type: T }>>;
} = {
  hello: fc.record({
    type: fc.constant("hello" as const),
    role: fc.constantFrom<RoleCode>(ROLE.primary, ROLE.backup),
    // Any defined flags but IMAGE_VALID with REWIND.
    flags: fc.nat({ max: 15 }).map((f) => ((f & 9) === 9 ? f & ~8 : f)),
    generation: counter,
    pageSize: u32,
    pages: u32,
    diskBlockSize: u32,
    diskBlocks: u32,
    vcpuSize: fc.nat({ max: 4096 }),
    deviceSize: fc.nat({ max: 4096 }),
    committedEpoch: counter,
    nonce: bytes(32),
    nodeId: bytes(16),
    software: text(64),
  }),
  auth: fc.record({ type: fc.constant("auth" as const), mac: bytes(32) }),
  syncBegin: fc.record({
    type: fc.constant("syncBegin" as const),
    generation: counter,
    epoch: counter,
    pages: fc.constant(TEST_GEOMETRY.pages),
    diskBlocks: fc.constant(TEST_GEOMETRY.diskBlocks),
    flags: fc.nat({ max: 2 }),
  }),
  pageBatch: fc
    .record({
      epoch: counter,
      pfns: fc.uniqueArray(fc.nat({ max: TEST_GEOMETRY.pages - 1 }), { minLength: 1, maxLength: 12 }),
      pages: fc.array(pageArb, { minLength: 12, maxLength: 12 }),
    })
    .map(({ epoch, pfns, pages }) => ({
      type: "pageBatch" as const,
      epoch,
      entries: [...pfns]
        .sort((a, b) => a - b)
        .map((pfn, i) => ({ pfn, enc: pages[i]!.enc, data: pages[i]!.data })),
    })),
  diskWrites: fc
    .record({
      epoch: counter,
      blocks: fc.array(fc.nat({ max: TEST_GEOMETRY.diskBlocks - 1 }), { minLength: 1, maxLength: 12 }),
      pages: fc.array(pageArb, { minLength: 12, maxLength: 12 }),
    })
    .map(({ epoch, blocks, pages }) => ({
      type: "diskWrites" as const,
      epoch,
      entries: blocks.map((block, i) => ({ block, enc: pages[i]!.enc, data: pages[i]!.data })),
    })),
  vcpu: fc.record({
    type: fc.constant("vcpu" as const),
    epoch: counter,
    state: bytes(TEST_GEOMETRY.vcpuSize!),
  }),
  device: fc.record({
    type: fc.constant("device" as const),
    epoch: counter,
    state: fc.uint8Array({ maxLength: TEST_GEOMETRY.deviceSize! }).map((a) => Buffer.from(a)),
  }),
  checkpointEnd: fc
    .record({
      epoch: counter,
      generation: counter,
      flags: fc.nat({ max: 7 }),
      pageCount: u32,
      diskWriteCount: u32,
      recordCount: u32,
      streamCrc: u32,
      guestTimeNs: fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }),
      digest: bytes(32),
    })
    .map((r) => ({
      type: "checkpointEnd" as const,
      ...r,
      digest: (r.flags & CHECKPOINT_FLAG.hasDigest) !== 0 ? r.digest : Buffer.alloc(32),
    })),
  domainConfig: fc.record({
    type: fc.constant("domainConfig" as const),
    pages: fc.constant(TEST_GEOMETRY.pages),
    diskBlocks: fc.constant(TEST_GEOMETRY.diskBlocks),
    intervalMs: fc.integer({ min: 1, max: 60_000 }),
    guestMac: bytes(6),
    guestIp: u32,
    workload: text(1024),
  }),
  ack: fc.record({ type: fc.constant("ack" as const), epoch: counter, generation: counter }),
  nack: fc.record({ type: fc.constant("nack" as const), epoch: counter, reason: u16, message: text(1024) }),
  rewind: fc
    .record({
      generation: counter,
      epoch: counter,
      pfns: fc.uniqueArray(fc.nat({ max: TEST_GEOMETRY.pages - 1 }), { maxLength: 64 }),
      blocks: fc.uniqueArray(fc.nat({ max: TEST_GEOMETRY.diskBlocks - 1 }), { maxLength: 64 }),
    })
    .map(({ generation, epoch, pfns, blocks }) => ({
      type: "rewind" as const,
      generation,
      epoch,
      pageBitmap: toBitmap(pfns, TEST_GEOMETRY.pages),
      blockBitmap: toBitmap(blocks, TEST_GEOMETRY.diskBlocks),
    })),
  heartbeat: fc.record({
    type: fc.constant("heartbeat" as const),
    pingId: u32,
    sentAtUs: counter,
    state: fc.constantFrom<PeerStateCode>(...Object.values(PEER_STATE)),
    committedEpoch: counter,
    generation: counter,
  }),
  heartbeatReply: fc.record({ type: fc.constant("heartbeatReply" as const), pingId: u32, sentAtUs: counter }),
  goodbye: fc.record({
    type: fc.constant("goodbye" as const),
    reason: fc.oneof(fc.constantFrom(...Object.values(GOODBYE_REASON)), u16),
    generation: counter,
    epoch: counter,
    message: text(1024),
  }),
  switchoverRequest: fc.record({ type: fc.constant("switchoverRequest" as const), generation: counter }),
  coloStart: fc.record({
    type: fc.constant("coloStart" as const),
    epoch: counter,
    generation: counter,
    edge: fc.array(
      fc.record({
        localIp: u32,
        localPort: u16,
        remoteIp: u32,
        remotePort: u16,
        delta: u32.filter((d) => d !== 0),
      }),
      { maxLength: 8 },
    ),
  }),
  coloInput: fc.record({
    type: fc.constant("coloInput" as const),
    epoch: counter,
    index: u32,
    frame: fc.uint8Array({ minLength: 14, maxLength: 1514 }).map((a) => Buffer.from(a)),
  }),
  coloOutput: fc.record({
    type: fc.constant("coloOutput" as const),
    epoch: counter,
    index: u32,
    frame: fc.uint8Array({ minLength: 14, maxLength: 1514 }).map((a) => Buffer.from(a)),
  }),
  coloCheckpoint: fc.record({
    type: fc.constant("coloCheckpoint" as const),
    epoch: counter,
    generation: counter,
    reason: fc.constantFrom<ColoReasonCode>(...Object.values(COLO_REASON)),
    inputs: u32,
  }),
  coloDirty: fc
    .record({
      epoch: counter,
      pfns: fc.uniqueArray(fc.nat({ max: TEST_GEOMETRY.pages - 1 }), { maxLength: 64 }),
      blocks: fc.uniqueArray(fc.nat({ max: TEST_GEOMETRY.diskBlocks - 1 }), { maxLength: 64 }),
    })
    .map(({ epoch, pfns, blocks }) => ({
      type: "coloDirty" as const,
      epoch,
      pageBitmap: toBitmap(pfns, TEST_GEOMETRY.pages),
      blockBitmap: toBitmap(blocks, TEST_GEOMETRY.diskBlocks),
    })),
};

/** Any valid record. */
export const arbRecord: fc.Arbitrary<ReplicationRecord> = fc.oneof(
  ...(Object.values(arbRecords) as fc.Arbitrary<ReplicationRecord>[]),
);
