/**
 * A checkpoint pipeline worker thread: keeps the shared buffers it was given
 * and runs encode and decode jobs (jobs.ts) in the order they arrive.
 */
import { parentPort } from "node:worker_threads";
import {
  type DecodeJob,
  type EncodeJob,
  EncodeScratch,
  type HashJob,
  runDecode,
  runEncode,
  runHash,
} from "./jobs.js";
import type { ToWorker } from "./pool.js";

const port = parentPort;
if (!port) throw new Error("pipeline/worker.js must run in a worker thread");
const buffers = new Map<number, Uint8Array>();
const table = {
  get(key: number): Uint8Array {
    const b = buffers.get(key);
    if (!b) throw new Error(`shared buffer ${key} was never shared with this worker`);
    return b;
  },
};
const scratch = new EncodeScratch();

port.on("message", (m: ToWorker) => {
  switch (m.op) {
    case "share":
      buffers.set(m.key, new Uint8Array(m.buffer));
      return;
    case "unshare":
      buffers.delete(m.key);
      return;
    case "encode":
    case "decode":
    case "hash":
      try {
        if (m.op === "encode") {
          const r = runEncode(m.job as EncodeJob, table, scratch);
          // The frame is this thread's own buffer: hand it over without a copy.
          port.postMessage({ id: m.id, result: r }, [r.frame.buffer as ArrayBuffer]);
        } else if (m.op === "hash") {
          const r = runHash(m.job as HashJob, table);
          port.postMessage({ id: m.id, result: r }, [r.hashes.buffer as ArrayBuffer]);
        } else {
          port.postMessage({ id: m.id, result: runDecode(m.job as DecodeJob, table) });
        }
      } catch (e) {
        port.postMessage({ id: m.id, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
      }
      return;
  }
});
