import assert from "node:assert/strict";
import { test } from "node:test";
import {
  bucketDelta,
  bucketsOf,
  ExpositionError,
  histogramQuantile,
  parseExposition,
  sampleValue,
} from "../../src/api/promtext.js";
import { Metrics } from "../../src/metrics.js";

const TEXT = `# HELP x_total Things.
# TYPE x_total counter
x_total{kind="a"} 3
x_total{kind="b",note="q\\"uote\\\\ and\\nnewline"} 4 1700000000000
# TYPE h histogram
h_bucket{le="0.001"} 1
h_bucket{le="0.01"} 3
h_bucket{le="+Inf"} 4
h_sum 0.5
h_count 4
g NaN
`;

test("parses samples, labels with escapes, timestamps, TYPE and HELP", () => {
  const e = parseExposition(TEXT);
  assert.equal(e.types.get("x_total"), "counter");
  assert.equal(e.types.get("h"), "histogram");
  assert.equal(e.help.get("x_total"), "Things.");
  assert.equal(sampleValue(e, "x_total"), 7);
  assert.equal(sampleValue(e, "x_total", { kind: "a" }), 3);
  const b = e.samples.find((s) => s.labels.kind === "b");
  assert.equal(b?.labels.note, 'q"uote\\ and\nnewline');
  assert.ok(Number.isNaN(sampleValue(e, "g") as number));
  assert.equal(sampleValue(e, "missing"), undefined);
  assert.deepEqual(
    bucketsOf(e, "h").map((x) => x.le),
    [0.001, 0.01, Number.POSITIVE_INFINITY],
  );
});

test("malformed lines are errors with their line number", () => {
  assert.throws(
    () => parseExposition("ok 1\nbad{le=1} 2\n"),
    (e: unknown) => e instanceof ExpositionError && /line 2/.test(e.message),
  );
  assert.throws(() => parseExposition("novalue\n"), ExpositionError);
  assert.throws(() => parseExposition('x{a="1"} abc\n'), ExpositionError);
});

test("histogram quantiles interpolate inside the bucket, like histogram_quantile", () => {
  const buckets = [
    { le: 1, count: 10 },
    { le: 2, count: 20 },
    { le: Number.POSITIVE_INFINITY, count: 20 },
  ];
  assert.equal(histogramQuantile(0.5, buckets), 1);
  assert.equal(histogramQuantile(0.75, buckets), 1.5);
  assert.equal(histogramQuantile(0.25, buckets), 0.5);
  assert.equal(histogramQuantile(0.5, [{ le: Number.POSITIVE_INFINITY, count: 0 }]), undefined);
  // Everything above the highest bound: the highest finite bound.
  assert.equal(
    histogramQuantile(0.9, [
      { le: 1, count: 0 },
      { le: Number.POSITIVE_INFINITY, count: 5 },
    ]),
    1,
  );
  const d = bucketDelta(buckets, [
    { le: 1, count: 10 },
    { le: 2, count: 10 },
    { le: Number.POSITIVE_INFINITY, count: 10 },
  ]);
  assert.deepEqual(
    d.map((x) => x.count),
    [0, 10, 10],
  );
  assert.equal(histogramQuantile(0.5, d), 1.5);
});

test("round trip: the daemon's own exposition parses, every remusd_ sample finite", async () => {
  const m = new Metrics("9.9.9");
  m.onEvent({
    type: "checkpoint.committed",
    epoch: 1,
    dirtyPages: 5,
    pauseMs: 0.2,
    durationMs: 3,
    wireBytes: 100,
    rawBytes: 300,
  });
  const e = parseExposition(await m.exposition());
  assert.ok(e.samples.length > 50);
  for (const s of e.samples.filter((x) => x.name.startsWith("remusd_")))
    assert.ok(Number.isFinite(s.value), s.name);
  // One pause of 0.2 ms, in the bucket (0.1 ms, 0.25 ms]: the median is that bucket's middle.
  const q = histogramQuantile(0.5, bucketsOf(e, "remusd_checkpoint_pause_seconds"));
  assert.ok(q !== undefined && Math.abs(q - 0.000175) < 1e-12, String(q));
});
