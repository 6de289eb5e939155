/**
 * The value of the leader key: who holds the lease, under which generation,
 * and where a follower finds it. JSON, at most `MAX_RECORD_BYTES`, every field
 * checked before it is trusted: the key lives in a store other programs can
 * write to.
 */

/** The lease holder as the leader key names it. */
export interface LeaderRecord {
  /** The holder's node id (stable across its restarts). */
  readonly nodeId: string;
  /** The generation this holder acquired: unique and increasing across the cluster. */
  readonly generation: number;
  /** The holder's replication address (ws://HOST:PORT): a follower dials it. */
  readonly address: string;
  /** The holder's control API (HOST:PORT). */
  readonly control: string;
  /** When it acquired the lease (ISO 8601, the holder's wall clock: for people, never for timing). */
  readonly since: string;
}

/** What a node that campaigns says about itself; the service adds the generation. */
export type Candidate = Omit<LeaderRecord, "generation" | "since">;

export const MAX_RECORD_BYTES = 4096;
const MAX_FIELD = 512;

export class RecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecordError";
  }
}

export function encodeRecord(r: LeaderRecord): Buffer {
  const b = Buffer.from(
    JSON.stringify({
      nodeId: r.nodeId,
      generation: r.generation,
      address: r.address,
      control: r.control,
      since: r.since,
    }),
  );
  if (b.length > MAX_RECORD_BYTES) throw new RecordError(`leader record of ${b.length} bytes is too large`);
  return b;
}

function field(o: Record<string, unknown>, name: string): string {
  const v = o[name];
  if (typeof v !== "string" || v.length === 0 || v.length > MAX_FIELD)
    throw new RecordError(
      `leader record: '${name}' must be a non-empty string of at most ${MAX_FIELD} characters`,
    );
  return v;
}

/** Decodes a leader key's value; throws RecordError on anything but a well-formed record. */
export function decodeRecord(b: Buffer | Uint8Array | string): LeaderRecord {
  const len = typeof b === "string" ? Buffer.byteLength(b) : b.length;
  if (len > MAX_RECORD_BYTES) throw new RecordError(`leader record of ${len} bytes is too large`);
  let v: unknown;
  try {
    v = JSON.parse(typeof b === "string" ? b : Buffer.from(b).toString("utf8"));
  } catch {
    throw new RecordError("leader record is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new RecordError("leader record is not an object");
  const o = v as Record<string, unknown>;
  const generation = o.generation;
  if (typeof generation !== "number" || !Number.isSafeInteger(generation) || generation < 1)
    throw new RecordError("leader record: 'generation' must be a positive integer");
  return {
    nodeId: field(o, "nodeId"),
    generation,
    address: field(o, "address"),
    control: field(o, "control"),
    since: field(o, "since"),
  };
}

/**
 * The generation counter: its value and, when known, the lease under which
 * it was last set (`N` or `N LEASEID` as text; absent means 0). Why the
 * lease: a swap that won at etcd but whose answer was lost or came too late
 * moved the counter with nothing run under it; the candidate that abandoned
 * that lease recognises its own bump and does not take it for another
 * lineage (service.ts `CampaignResult.staleBy`).
 */
export function decodeCounter(b: Buffer | Uint8Array | undefined): { generation: number; by?: string } {
  if (b === undefined) return { generation: 0 };
  const s = Buffer.from(b).toString("latin1");
  const m = /^(\d{1,15})(?: ([0-9A-Za-z]{1,40}))?$/.exec(s);
  if (!m) throw new RecordError(`generation counter '${s.slice(0, 32)}' is not a number`);
  return m[2] === undefined ? { generation: Number(m[1]) } : { generation: Number(m[1]), by: m[2] };
}

/** The generation counter's value; absent means 0. */
export function decodeGeneration(b: Buffer | Uint8Array | undefined): number {
  return decodeCounter(b).generation;
}

/** The counter's text: `generation`, set under lease `by`. */
export function encodeCounter(generation: number, by: string): Buffer {
  return Buffer.from(`${generation} ${by}`);
}
