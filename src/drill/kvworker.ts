/**
 * The drill's checking client, in a worker thread so that the drill's own
 * work (HTTP polling, reports) never delays a request: remusd client's kvd
 * load (src/client/kvclient.ts) with every reply's latency streamed to the
 * drill. Messages in (`ClientCommand`): mark, audit, finish. Messages out
 * (`ClientMessage`): samples every 100 ms, and the answers.
 */
import { parentPort, workerData } from "node:worker_threads";
import { KvClient, type KvClientOptions } from "../client/kvclient.js";
import type { KvLoadSummary } from "../client/kvload.js";

/** What the drill asks of its client. */
export type ClientCommand =
  | { readonly cmd: "mark"; readonly id: number }
  | { readonly cmd: "audit"; readonly id: number }
  | { readonly cmd: "finish" };

/** What the client tells the drill. Times are wall-clock ms (Unix epoch, fractional). */
export type ClientMessage =
  | { readonly type: "ready" }
  /** Pairs (sent at, latency ms) of the replies since the last message. */
  | { readonly type: "samples"; readonly data: Float64Array }
  | { readonly type: "mark"; readonly id: number; readonly at: number; readonly summary: KvLoadSummary }
  | { readonly type: "audited"; readonly id: number; readonly at: number; readonly summary: KvLoadSummary }
  | { readonly type: "done"; readonly finished: boolean; readonly summary: KvLoadSummary };

const port = parentPort;
if (!port) throw new Error("kvworker runs as a worker thread");

const opts = workerData as KvClientOptions & { readonly drainMs: number };
let batch: number[] = [];
// The read-backs of an audit are the drill's checks, not the load: they stay out of the timeline.
const client: KvClient = await KvClient.open({
  ...opts,
  onReply: (sent, now) => {
    if (client.kv.currentPhase !== "verify") batch.push(sent, now - sent);
  },
});
const kv = client.kv;
const wall = (t: number) => client.wallAtZero + t;
const post = (m: ClientMessage) => port.postMessage(m);
const flush = () => {
  if (batch.length === 0) return;
  const data = Float64Array.from(batch, (v, i) => (i % 2 === 0 ? wall(v) : v));
  batch = [];
  post({ type: "samples", data });
};

const audits: { id: number; after: number }[] = [];
let finishAt: number | undefined;
port.on("message", (m: ClientCommand) => {
  const now = client.clock();
  if (m.cmd === "mark") {
    flush();
    post({ type: "mark", id: m.id, at: wall(now), summary: structuredClone(kv.summary) });
  } else if (m.cmd === "audit") {
    // The drill asks for one audit at a time and waits for its answer.
    audits.push({ id: m.id, after: kv.audits });
    kv.audit();
  } else {
    finishAt = now;
    kv.finish();
  }
});
post({ type: "ready" });

let lastFlush = 0;
await client.run(
  (now) => kv.done || (finishAt !== undefined && now > finishAt + opts.drainMs),
  (now) => {
    if (now - lastFlush >= 100) {
      flush();
      lastFlush = now;
    }
    const a = audits[0];
    if (a && kv.audits > a.after) {
      audits.shift();
      flush();
      post({ type: "audited", id: a.id, at: wall(now), summary: structuredClone(kv.summary) });
    }
  },
);
flush();
await client.close();
post({ type: "done", finished: kv.done, summary: structuredClone(kv.summary) });
port.close();
