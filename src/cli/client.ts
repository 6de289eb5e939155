/**
 * `remusd client`: attaches its own TCP/IP stack (the same code the guest runs,
 * over ordinary memory) to the vswitch and runs the kvd load and checks.
 */
import { KvClient } from "../client/kvclient.js";
import { parseHostPort, parseIpOption, parseMacOption } from "../net/addr.js";
import type { OptValues } from "./options.js";

/** Reply latencies kept for the summary's percentiles, at most. */
const MAX_LATENCY_SAMPLES = 1_000_000;

/** Percentiles (ms, to the microsecond) of reply latencies. */
function latencySummary(xs: number[]): {
  samples: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
} {
  xs.sort((a, b) => a - b);
  const at = (p: number) =>
    xs.length === 0
      ? 0
      : Math.round((xs[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)] ?? 0) * 1000) / 1000;
  return { samples: xs.length, p50: at(50), p90: at(90), p99: at(99), max: at(100) };
}

export async function runClient(v: OptValues): Promise<void> {
  const latencies: number[] = [];
  const client = await KvClient.open({
    onReply: (sentAt, now) => {
      if (latencies.length < MAX_LATENCY_SAMPLES) latencies.push(now - sentAt);
    },
    switchAddr: parseHostPort(v.switch as string, "--switch"),
    mac: parseMacOption(v.mac as string, "--mac"),
    ip: parseIpOption(v.ip as string, "--ip"),
    load: {
      connections: v.connections as number,
      seed: v.seed as number,
      targetIp: parseIpOption(v.target as string, "--target"),
      port: v.port as number,
      keysPerConnection: v.keys as number,
      pipeline: v.pipeline as number,
      thinkMs: (v["think-ms"] as number | undefined) ?? 0,
      sharedCounter: v["shared-counter"] === true,
    },
  });
  const kv = client.kv;
  const durationMs = (v.duration as number) * 1000;
  const drainMs = (v["drain-timeout"] as number) * 1000;
  const progress = v.progress === true;
  let lastReport = 0;
  let lastReplies = 0;
  await client.run(
    (now) => kv.done || now > durationMs + drainMs,
    (now) => {
      if (now >= durationMs) kv.finish();
      if (progress && now - lastReport >= 1000) {
        const s = kv.summary;
        process.stderr.write(
          `${JSON.stringify({ msg: "client progress", t: now / 1000, phase: kv.currentPhase, requests: s.requests, replies: s.replies, rps: ((s.replies - lastReplies) * 1000) / Math.max(1, now - lastReport), resets: s.resets, longestStallMs: Math.round(s.longestStallMs) })}\n`,
        );
        lastReport = now;
        lastReplies = s.replies;
      }
    },
  );
  await client.close();
  const s = kv.summary;
  const finished = kv.done;
  if (!finished) s.errors.push(`the final read-back did not finish within ${drainMs / 1000} s`);
  const ok = finished && s.ok;
  const durationS = client.clock() / 1000;
  process.stdout.write(
    `${JSON.stringify({ ...s, longestStallMs: Math.round(s.longestStallMs), ok, durationS, requestsPerSec: Math.round((s.replies / Math.max(0.001, durationS)) * 10) / 10, latencyMs: latencySummary(latencies) })}\n`,
  );
  process.exitCode = ok ? 0 : 1;
}
