/**
 * Fault injection from inside a daemon (POST /v1/faults/*), for rehearsals
 * such as `remusd drill`. Each fault is what it claims to be, not a simulation
 * of it:
 *
 *  - crash: the process sends itself SIGKILL. No exit handler runs, nothing is
 *    flushed or said to the peer: the peer sees the connection die, as after
 *    a power loss or a kernel OOM kill.
 *  - stall: the event loop is blocked for `ms` (Atomics.wait on a private
 *    word, which nothing ever notifies). Nothing runs meanwhile: no guest, no
 *    heartbeat, no socket read; the kernel queues what arrives, and the
 *    daemon finds it all when it wakes up, as after SIGSTOP/SIGCONT or a long
 *    GC pause.
 *  - link-cut: every replication connection is torn down at once (no close
 *    handshake, no GOODBYE), and for `ms` the daemon neither dials nor accepts
 *    one (the daemon does this part: `Daemon.cutReplication`).
 *
 * Only a daemon started with `--allow-fault-injection` accepts them (the API
 * refuses with 403 otherwise); they need the API token like every mutating
 * route. Each is recorded as `fault.injected` in the event log before it
 * takes effect, and takes effect only once the API's reply has been handed
 * to the kernel, so the caller learns that it happened.
 */

/** Blocks the calling thread for `ms` milliseconds: a real stall of the event loop. */
export function blockFor(ms: number): void {
  // Why Atomics.wait: it sleeps in the kernel without spinning a core, and no timer,
  // I/O callback or signal handler of this thread can run until it returns.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Ends this process as a crash does: SIGKILL to itself. */
export function crashNow(): never {
  process.kill(process.pid, "SIGKILL");
  // SIGKILL to oneself is delivered before kill(2) returns; this line is never reached.
  throw new Error("SIGKILL did not end the process");
}
