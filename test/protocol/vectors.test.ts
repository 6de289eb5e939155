import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  decodeFrame,
  decodePageInto,
  encodeFrame,
  type Geometry,
  isProtocolError,
  PAGE_SIZE,
  PROTOCOL_ERROR_REASONS,
  RECORD_TYPE,
} from "../../src/protocol/index.js";
import { allVectors, DELTA_BASE, DELTA_PAGE, VECTORS_DIR } from "./build-vectors.js";
import { type Json, recordFromJson, recordToJson } from "./helpers.js";

interface IndexEntry {
  name: string;
  file: string;
  type: string;
  valid: boolean;
  context: { session: number; seq: number; geometry?: Geometry };
  record?: Json;
  error?: string;
}

const index = JSON.parse(readFileSync(join(VECTORS_DIR, "index.json"), "utf8")) as { vectors: IndexEntry[] };
const bytesOf = (v: IndexEntry) =>
  Buffer.from(readFileSync(join(VECTORS_DIR, v.file), "utf8").replace(/\s+/g, ""), "hex");

describe("golden vectors (proto/vectors)", () => {
  it("cover every record type and a set of invalid inputs", () => {
    const validTypes = new Set(index.vectors.filter((v) => v.valid).map((v) => v.type));
    for (const t of Object.keys(RECORD_TYPE)) assert.ok(validTypes.has(t), `no valid vector for ${t}`);
    assert.ok(index.vectors.filter((v) => !v.valid).length >= 20);
    for (const name of [
      "page-batch-zero",
      "page-batch-raw",
      "page-batch-lz4",
      "page-batch-mixed",
      "page-batch-xor-lz4",
    ]) {
      assert.ok(
        index.vectors.some((v) => v.name === name),
        name,
      );
    }
  });

  it("match the hand-built frames of build-vectors.ts (files and builder have not drifted)", () => {
    const built = allVectors();
    assert.equal(built.length, index.vectors.length);
    for (const b of built) {
      const v = index.vectors.find((x) => x.name === b.name);
      assert.ok(v, b.name);
      assert.deepEqual(bytesOf(v), b.bytes, b.name);
    }
  });

  for (const v of index.vectors) {
    const opts = { session: v.context.session, seq: v.context.seq, geometry: v.context.geometry };
    if (v.valid) {
      it(`${v.name}: decodes to its JSON and re-encodes byte for byte`, () => {
        const bytes = bytesOf(v);
        const record = decodeFrame(bytes, opts);
        assert.equal(record.type, v.type);
        assert.deepEqual(recordToJson(record), v.record);
        assert.deepEqual(encodeFrame(recordFromJson(v.record as Json), opts), bytes);
        if (record.type === "pageBatch" || record.type === "diskWrites") {
          const dst = Buffer.alloc(PAGE_SIZE);
          for (const e of record.entries) {
            dst.fill(0x55);
            if (e.enc === 3) {
              // XOR_LZ4 needs the page's base; without one it is refused, with it the page comes back.
              assert.throws(
                () => decodePageInto(e, dst, 0),
                (x: unknown) => isProtocolError(x),
              );
              decodePageInto(e, dst, 0, DELTA_BASE);
              assert.deepEqual(dst, DELTA_PAGE);
              // In place: the base is the destination itself (a full sync decodes into the image).
              const inPlace = Buffer.from(DELTA_BASE);
              decodePageInto(e, inPlace, 0, inPlace);
              assert.deepEqual(inPlace, DELTA_PAGE);
              continue;
            }
            decodePageInto(e, dst, 0);
            if (e.enc === 2) assert.ok(dst.toString("latin1").startsWith("remusd checkpoint remusd"));
            if (e.enc === 0) assert.ok(dst.every((x) => x === 0));
          }
        }
      });
    } else {
      it(`${v.name}: rejected with ${v.error}`, () => {
        assert.ok(
          (PROTOCOL_ERROR_REASONS as readonly string[]).includes(v.error ?? ""),
          `undocumented ${v.error}`,
        );
        assert.throws(
          () => decodeFrame(bytesOf(v), opts),
          (e: unknown) => isProtocolError(e) && e.reason === v.error && e.code === "REMUSD_ERR_PROTOCOL",
        );
      });
    }
  }
});
