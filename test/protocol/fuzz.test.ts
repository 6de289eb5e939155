/**
 * Seeded fuzzing of every decoder: at least 100,000 random and mutated inputs
 * per record type, plus the frame layer and the page decoder on their own.
 * Every input must end in a valid record or a ProtocolError with a documented
 * reason: never another exception, never a hang, never an allocation beyond
 * what the input's length pays for.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { crc32 } from "node:zlib";
import fc from "fast-check";
import { mulberry32 } from "../../src/prng.js";
import {
  decodeFrame,
  decodePageInto,
  encodeFrame,
  FRAME_OVERHEAD,
  HEADER_SIZE,
  isProtocolError,
  LIMITS,
  PAGE_SIZE,
  PROTOCOL_ERROR_REASONS,
  RECORD_TYPE,
  type ReplicationRecord,
} from "../../src/protocol/index.js";
import { arbRecords, lz4Block, TEST_GEOMETRY } from "./helpers.js";

const RUNS_PER_DECODER = 100_000;
const REASONS: ReadonlySet<string> = new Set(PROTOCOL_ERROR_REASONS);

const INTERESTING = [
  0, 1, 2, 7, 8, 12, 255, 256, 511, 512, 513, 1024, 1025, 4095, 4096, 4097, 0xffff, 0x7fffffff, 0xffffffff,
];

/** Returns a mutated copy of `body`. */
function mutate(body: Buffer, rand: () => number, donors: Buffer[]): Buffer {
  const int = (n: number) => Math.floor(rand() * n);
  let b = Buffer.from(body);
  const rounds = 1 + int(3);
  for (let r = 0; r < rounds; r++) {
    const op = int(10);
    if (op <= 2 && b.length > 0) {
      b[int(b.length)]! ^= 1 << int(8);
    } else if (op === 3 && b.length > 0) {
      b[int(b.length)] = [0, 0xff, 0x80, 0x7f, 1, 2, 3][int(7)]!;
    } else if (op === 4 && b.length >= 4) {
      const at = int(b.length - 3);
      const v = rand() < 0.5 ? INTERESTING[int(INTERESTING.length)]! : b.length + int(5) - 2;
      if (rand() < 0.5) b.writeUInt32LE(v >>> 0, at);
      else b.writeUInt16LE(v & 0xffff, at);
    } else if (op === 5) {
      b = b.subarray(0, int(b.length + 1));
    } else if (op === 6) {
      const extra = Buffer.alloc(1 + int(16));
      for (let i = 0; i < extra.length; i++) extra[i] = int(256);
      const at = int(b.length + 1);
      b = Buffer.concat([b.subarray(0, at), extra, b.subarray(at)]);
    } else if (op === 7 && b.length > 0) {
      const at = int(b.length);
      b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(8))]);
    } else if (op === 8) {
      const donor = donors[int(donors.length)]!;
      const at = int(b.length + 1);
      b = Buffer.concat([b.subarray(0, at), donor.subarray(int(donor.length + 1))]);
    } else {
      b = Buffer.alloc(int(120));
      for (let i = 0; i < b.length; i++) b[i] = int(256);
    }
  }
  return b;
}

function seal(type: number, session: number, seq: number, body: Buffer): Buffer {
  const f = Buffer.alloc(body.length + FRAME_OVERHEAD);
  f.writeUInt16LE(0x5244, 0);
  f[2] = 1;
  f[3] = type;
  f.writeUInt32LE(session, 4);
  f.writeUInt32LE(seq, 8);
  f.writeUInt32LE(body.length, 12);
  body.copy(f, HEADER_SIZE);
  f.writeUInt32LE(crc32(f.subarray(0, f.length - 4)), f.length - 4);
  return f;
}

interface Tally {
  ok: number;
  errors: Map<string, number>;
}

/** Decodes one input and checks every promise the decoder makes. */
function check(frame: Buffer, session: number, seq: number, tally: Tally): void {
  let r: ReplicationRecord;
  try {
    r = decodeFrame(frame, { session, seq, geometry: TEST_GEOMETRY });
  } catch (e) {
    if (!isProtocolError(e) || !REASONS.has(e.reason)) {
      assert.fail(`non-protocol error ${String(e)} for ${frame.toString("hex").slice(0, 200)}`);
    }
    tally.errors.set(e.reason, (tally.errors.get(e.reason) ?? 0) + 1);
    return;
  }
  tally.ok++;
  // Every accepted frame has exactly one encoding: re-encoding reproduces it.
  assert.deepEqual(encodeFrame(r, { session, seq }), frame);
  // Bounds derived from the input length: nothing decoded outgrows what was sent.
  if (r.type === "pageBatch" || r.type === "diskWrites") {
    assert.ok(r.entries.length >= 1 && r.entries.length * 8 <= frame.length);
    assert.ok(r.entries.length <= LIMITS.maxBatchEntries);
    let data = 0;
    const page = Buffer.alloc(PAGE_SIZE);
    for (const e of r.entries) {
      data += e.data.length;
      // Views into the frame, not copies.
      if (e.data.length > 0) assert.equal(e.data.buffer, frame.buffer);
      decodePageInto(e, page, 0, page); // a receiver always has a base: its current page
    }
    assert.ok(data <= frame.length);
    // Logical expansion is bounded too: 4096 bytes per 8-byte entry at most.
    assert.ok(r.entries.length * PAGE_SIZE <= frame.length * 512);
  } else if (r.type === "vcpu" || r.type === "device") {
    assert.ok(r.state.length <= frame.length);
    if (r.state.length > 0) assert.equal(r.state.buffer, frame.buffer);
  } else if (r.type === "nack" || r.type === "goodbye") {
    assert.ok(Buffer.byteLength(r.message) <= LIMITS.maxMessage);
  }
}

function pool(type: keyof typeof arbRecords, seed: number): Buffer[] {
  const arb = arbRecords[type] as fc.Arbitrary<ReplicationRecord>;
  return fc
    .sample(arb, { seed, numRuns: 40 })
    .filter((r) => !("entries" in r) || r.entries.length <= 4)
    .map((r) => {
      const f = encodeFrame(r, { session: 0, seq: 0 });
      return f.subarray(HEADER_SIZE, f.length - 4);
    });
}

describe(`fuzz: ${RUNS_PER_DECODER} seeded inputs per decoder`, () => {
  const allBodies = (Object.keys(arbRecords) as (keyof typeof arbRecords)[]).flatMap((t, i) =>
    pool(t, 1000 + i),
  );

  for (const [i, type] of (Object.keys(arbRecords) as (keyof typeof arbRecords)[]).entries()) {
    it(`${type}: mutated bodies in valid frames end in a record or a typed error`, () => {
      const rand = mulberry32(0xc0ffee + i);
      const bodies = pool(type, 2000 + i);
      assert.ok(bodies.length > 0);
      const tally: Tally = { ok: 0, errors: new Map() };
      for (let n = 0; n < RUNS_PER_DECODER; n++) {
        const base = bodies[Math.floor(rand() * bodies.length)]!;
        const body = rand() < 0.05 ? base : mutate(base, rand, allBodies);
        const session = type === "hello" || type === "auth" ? 0 : 0x1234;
        check(seal(RECORD_TYPE[type], session, n, body), session, n, tally);
      }
      // The fuzzer reaches both outcomes, so it exercises the body decoder rather than one early check.
      if (process.env.FUZZ_VERBOSE) console.log(type, tally.ok, [...tally.errors]);
      assert.ok(tally.ok > 0, `${type}: no input decoded`);
      assert.ok(tally.errors.size >= 2, `${type}: errors ${[...tally.errors.keys()]}`);
    });
  }

  it("frame layer: random bytes and mutated whole frames (headers included, CRC not fixed)", () => {
    const rand = mulberry32(0xfeed);
    const frames = allBodies.map((b, i) => seal(RECORD_TYPE.ack + (i % 2), 7, 3, b));
    const tally: Tally = { ok: 0, errors: new Map() };
    for (let n = 0; n < RUNS_PER_DECODER; n++) {
      let f: Buffer;
      if (rand() < 0.2) {
        f = Buffer.alloc(Math.floor(rand() * 64));
        for (let i = 0; i < f.length; i++) f[i] = Math.floor(rand() * 256);
        if (f.length >= 2 && rand() < 0.5) f.writeUInt16LE(0x5244, 0);
      } else {
        const base = frames[Math.floor(rand() * frames.length)]!;
        f = mutate(base, rand, frames);
        // Half the time re-seal the CRC so the checks after it are reached.
        if (f.length >= FRAME_OVERHEAD && rand() < 0.5) {
          f.writeUInt32LE(crc32(f.subarray(0, f.length - 4)), f.length - 4);
        }
      }
      check(f, 7, 3, tally);
    }
    for (const reason of ["truncated", "bad-magic", "bad-crc", "too-large", "unknown-type"]) {
      assert.ok(tally.errors.has(reason), `never hit ${reason}: ${[...tally.errors.keys()]}`);
    }
  });

  it("decodePageInto: random and mutated lz4 blocks give a page or bad-encoding", () => {
    const rand = mulberry32(0xbeef);
    const pages: Buffer[] = [];
    for (let k = 0; k < 16; k++) {
      const p = Buffer.alloc(PAGE_SIZE);
      for (let i = 0; i < PAGE_SIZE; i++) p[i] = (i % (k + 2)) * 13 + (i >> (k % 12));
      pages.push(p);
    }
    const blocks = pages.map((p) => lz4Block(p)).filter((b): b is Buffer => b !== undefined);
    assert.ok(blocks.length >= 8);
    const dst = Buffer.alloc(PAGE_SIZE * 2);
    let ok = 0;
    let bad = 0;
    for (let n = 0; n < RUNS_PER_DECODER; n++) {
      const base = blocks[Math.floor(rand() * blocks.length)]!;
      let data = rand() < 0.05 ? base : mutate(base, rand, blocks);
      if (data.length > LIMITS.maxLz4Block) data = data.subarray(0, LIMITS.maxLz4Block);
      dst.fill(0xee, PAGE_SIZE);
      try {
        decodePageInto({ enc: 2, data }, dst, 0);
        ok++;
      } catch (e) {
        assert.ok(isProtocolError(e, "bad-encoding"), String(e));
        bad++;
      }
      // Never writes outside its 4096 bytes.
      assert.equal(dst[PAGE_SIZE], 0xee);
      assert.equal(dst[2 * PAGE_SIZE - 1], 0xee);
    }
    assert.ok(ok > 0 && bad > 0);
  });
});
