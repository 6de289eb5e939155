import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { bitmapBytes, fromBitmap, toBitmap } from "../../src/protocol/index.js";

describe("COLO dirty-set bitmaps", () => {
  it("round-trip any set of indexes below the count", () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 5000 })
          .chain((count) =>
            fc.tuple(fc.constant(count), fc.array(fc.nat({ max: count - 1 }), { maxLength: 300 })),
          ),
        ([count, idx]) => {
          const b = toBitmap(idx, count);
          assert.equal(b.length, bitmapBytes(count));
          assert.deepEqual(
            [...fromBitmap(b)],
            [...new Set(idx)].sort((x, y) => x - y),
          );
        },
      ),
      { numRuns: 300, seed: 41 },
    );
  });

  it("lay bits out least significant first and refuse indexes out of range", () => {
    assert.deepEqual(toBitmap([0, 9], 16), Buffer.from([0x01, 0x02]));
    assert.throws(() => toBitmap([16], 16), RangeError);
    assert.throws(() => toBitmap([-1], 16), RangeError);
  });
});
