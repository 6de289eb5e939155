/**
 * Shared buffers by number, one numbering per process: jobs name the
 * SharedArrayBuffers they read and write by these numbers (jobs.ts), so a job
 * built for the worker threads runs as it is on this thread too (after the
 * threads broke), once its buffers are shared with both. A number is never
 * reused. (No WeakRef here: a WeakRef keeps its target alive until the
 * current job ends, which in a long synchronous simulation is forever.)
 */
const keys = new WeakMap<SharedArrayBuffer, number>();
let nextKey = 1;

/** The number of `buffer` (given on first sight). */
export function bufferKey(buffer: SharedArrayBuffer): number {
  let key = keys.get(buffer);
  if (key === undefined) {
    key = nextKey++;
    keys.set(buffer, key);
  }
  return key;
}
