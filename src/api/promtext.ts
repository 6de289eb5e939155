/**
 * A small parser of the Prometheus text exposition format (0.0.4), enough for
 * remusctl's `watch` and for tests: samples with labels, `# TYPE` and
 * `# HELP` lines, and quantiles computed from histogram bucket deltas the way
 * Prometheus's `histogram_quantile` does.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A parsed exposition. */
export interface Exposition {
  /** Metric family name to its type (counter, gauge, histogram, summary, untyped). */
  readonly types: ReadonlyMap<string, string>;
  readonly help: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}

/** A malformed line, with its number. */
export class ExpositionError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "ExpositionError";
  }
}

function parseValue(s: string): number {
  // Case-insensitive, as Prometheus (Go's ParseFloat) reads them; prom-client writes "Nan".
  const l = s.toLowerCase();
  if (l === "+inf" || l === "inf") return Number.POSITIVE_INFINITY;
  if (l === "-inf") return Number.NEGATIVE_INFINITY;
  if (l === "nan") return Number.NaN;
  const v = Number(s);
  if (s === "" || Number.isNaN(v)) throw new Error(`bad value '${s}'`);
  return v;
}

/** Parses `{a="x",b="y\"z"}` starting at `text[i] === "{"`; returns the labels and the index after `}`. */
function parseLabels(text: string, i: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let p = i + 1;
  for (;;) {
    while (text[p] === " " || text[p] === ",") p++;
    if (text[p] === "}") return { labels, end: p + 1 };
    const eq = text.indexOf("=", p);
    if (eq < 0) throw new Error("label without '='");
    const name = text.slice(p, eq).trim();
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new Error(`bad label name '${name}'`);
    if (text[eq + 1] !== '"') throw new Error(`label ${name}: value not quoted`);
    let v = "";
    p = eq + 2;
    for (;;) {
      const c = text[p];
      if (c === undefined) throw new Error(`label ${name}: unterminated value`);
      if (c === '"') break;
      if (c === "\\") {
        const n = text[p + 1];
        v += n === "n" ? "\n" : (n ?? "");
        p += 2;
        continue;
      }
      v += c;
      p++;
    }
    labels[name] = v;
    p++;
  }
}

/** Parses an exposition; throws `ExpositionError` on a malformed line. */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = (lines[n] as string).trim();
    if (line === "") continue;
    try {
      if (line.startsWith("#")) {
        const m = /^#\s*(TYPE|HELP)\s+(\S+)\s*(.*)$/.exec(line);
        if (m?.[1] === "TYPE") types.set(m[2] as string, (m[3] as string).trim());
        else if (m?.[1] === "HELP") help.set(m[2] as string, m[3] as string);
        continue;
      }
      const nameEnd = line.search(/[{\s]/);
      if (nameEnd <= 0) throw new Error("no value");
      const name = line.slice(0, nameEnd);
      let labels: Record<string, string> = {};
      let rest = line.slice(nameEnd);
      if (rest.startsWith("{")) {
        const l = parseLabels(line, nameEnd);
        labels = l.labels;
        rest = line.slice(l.end);
      }
      const [value] = rest.trim().split(/\s+/);
      samples.push({ name, labels, value: parseValue(value ?? "") });
    } catch (e) {
      throw new ExpositionError(n + 1, (e as Error).message);
    }
  }
  return { types, help, samples };
}

function matches(s: Sample, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(labels)) if (s.labels[k] !== v) return false;
  return true;
}

/** The sum of the samples named `name` whose labels include `labels` (undefined if none). */
export function sampleValue(
  e: Exposition,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  let sum: number | undefined;
  for (const s of e.samples) if (s.name === name && matches(s, labels)) sum = (sum ?? 0) + s.value;
  return sum;
}

/** One cumulative histogram bucket. */
export interface Bucket {
  readonly le: number;
  /** Cumulative count of observations <= le. */
  readonly count: number;
}

/** The cumulative buckets of histogram `name`, sorted by `le`. */
export function bucketsOf(e: Exposition, name: string): Bucket[] {
  return e.samples
    .filter((s) => s.name === `${name}_bucket` && s.labels.le !== undefined)
    .map((s) => ({ le: parseValue(s.labels.le as string), count: s.value }))
    .sort((a, b) => a.le - b.le);
}

/** Bucket counts observed between two scrapes (`before` may be empty: since the start). */
export function bucketDelta(now: readonly Bucket[], before: readonly Bucket[]): Bucket[] {
  const prev = new Map(before.map((b) => [b.le, b.count]));
  return now.map((b) => ({ le: b.le, count: b.count - (prev.get(b.le) ?? 0) }));
}

/**
 * The q-quantile (0..1) of cumulative `buckets`, interpolated linearly inside
 * the bucket where it falls, as Prometheus's histogram_quantile does; the
 * lower bound of the first bucket is 0. Undefined when there are no
 * observations; the highest finite bound when it falls into +Inf.
 */
export function histogramQuantile(q: number, buckets: readonly Bucket[]): number | undefined {
  const total = buckets.at(-1)?.count ?? 0;
  if (buckets.length === 0 || total <= 0) return undefined;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Number.POSITIVE_INFINITY) return lower;
      const inBucket = b.count - below;
      return inBucket <= 0 ? b.le : lower + (b.le - lower) * ((rank - below) / inBucket);
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}
