/**
 * A long-lived Redis client that uses the kernel's TCP (node:net), run inside
 * a network namespace by the TAP tests (`ip netns exec NS node kv-client.js
 * HOST PORT PREFIX`). One connection, one request at a time, as an
 * application would: SET PREFIX:i v-i, then INCR PREFIX:counter, then GET of
 * an earlier key, over and over. Every reply is checked (OK, the counter
 * exactly one more than before, the value written). It prints a progress line
 * `{"acked":N}` every 10 acknowledged SETs, and on SIGTERM it finishes the
 * request in flight and prints a summary line, then exits.
 * A reset, a close or a wrong reply is counted and ends the run.
 */
import { connect } from "node:net";
import { encodeCommand, RespParser, type RespValue } from "../../src/client/resp.js";

const [host = "10.0.0.10", portText = "6379", prefix = "k"] = process.argv.slice(2);
const summary = {
  acked: 0,
  counter: 0,
  reads: 0,
  wrong: [] as string[],
  resets: 0,
  closed: false,
  maxLatencyMs: 0,
};
let stopping = false;

const sock = connect({ host, port: Number(portText) });
sock.setNoDelay(true);
const parser = new RespParser();
let pending: ((v: RespValue) => void) | undefined;

function finish(): void {
  process.stdout.write(`${JSON.stringify({ summary })}\n`);
  sock.destroy();
  process.exit(0);
}

sock.on("data", (d) => {
  parser.push(d);
  for (let v = parser.next(); v; v = parser.next()) {
    const p = pending;
    pending = undefined;
    p?.(v);
  }
});
sock.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "ECONNRESET") summary.resets++;
  summary.wrong.push(`socket error ${e.code ?? e.message}`);
  finish();
});
sock.on("close", () => {
  summary.closed = true;
  finish();
});

function ask(args: string[]): Promise<RespValue> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    pending = (v) => {
      summary.maxLatencyMs = Math.max(summary.maxLatencyMs, performance.now() - t0);
      resolve(v);
    };
    sock.write(encodeCommand(args));
  });
}

function text(v: RespValue): string {
  return v.t === "bulk" ? (v.v?.toString() ?? "(nil)") : `${v.t}:${String(v.v)}`;
}

async function loop(): Promise<void> {
  for (let i = 0; !stopping; i++) {
    const set = await ask(["SET", `${prefix}:${i}`, `v-${i}`]);
    if (set.t !== "simple" || set.v !== "OK") summary.wrong.push(`SET ${i}: ${text(set)}`);
    else summary.acked = i + 1;
    const inc = await ask(["INCR", `${prefix}:counter`]);
    if (inc.t !== "int" || inc.v !== summary.counter + 1)
      summary.wrong.push(`INCR after ${summary.counter}: ${text(inc)}`);
    else summary.counter = inc.v;
    const j = Math.floor(i / 2);
    const get = await ask(["GET", `${prefix}:${j}`]);
    summary.reads++;
    if (get.t !== "bulk" || get.v?.toString() !== `v-${j}`) summary.wrong.push(`GET ${j}: ${text(get)}`);
    if (summary.wrong.length > 0) break;
    if (summary.acked % 10 === 0) process.stdout.write(`${JSON.stringify({ acked: summary.acked })}\n`);
  }
  finish();
}

process.on("SIGTERM", () => {
  stopping = true;
});
sock.once("connect", () => void loop());
