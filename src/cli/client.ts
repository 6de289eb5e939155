/**
 * `remusd client`: attaches its own TCP/IP stack (the same code the guest runs,
 * over ordinary memory) to the vswitch and runs the kvd load and checks.
 */
import { KvLoad } from "../client/kvload.js";
import { PlainMemory } from "../domain/memory.js";
import { formatStandaloneHeap } from "../guest/mm.js";
import { parseHostPort, parseIpOption, parseMacOption } from "../net/addr.js";
import { NetStack } from "../net/stack.js";
import { mulberry32u32 } from "../prng.js";
import { UdpLink } from "../vswitch/udp.js";
import type { OptValues } from "./options.js";

export async function runClient(v: OptValues): Promise<void> {
  const mac = parseMacOption(v.mac as string, "--mac");
  const ip = parseIpOption(v.ip as string, "--ip");
  const target = parseIpOption(v.target as string, "--target");
  const link = await UdpLink.open(parseHostPort(v.switch as string, "--switch"));
  const mem = new PlainMemory(32 * 1024 * 1024);
  const heap = formatStandaloneHeap(mem);
  const t0 = performance.now();
  const clock = () => Math.floor(performance.now() - t0);
  const env = {
    mem,
    heap,
    now: clock,
    random32: mulberry32u32((v.seed as number) ^ 0x5bd1e995),
    transmit: (frame: Uint8Array) => {
      link.send(frame);
      return true;
    },
  };
  const stack = new NetStack(env, NetStack.format(env, { mac, ip, minRtoMs: 200, timeWaitMs: 1000 }));
  link.onFrame = (f) => stack.input(f);
  const kv = new KvLoad(
    stack,
    {
      connections: v.connections as number,
      seed: v.seed as number,
      targetIp: target,
      port: v.port as number,
      keysPerConnection: v.keys as number,
      pipeline: v.pipeline as number,
    },
    clock(),
  );
  const durationMs = (v.duration as number) * 1000;
  const drainMs = (v["drain-timeout"] as number) * 1000;
  const progress = v.progress === true;
  let lastReport = 0;
  let lastReplies = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = clock();
      stack.poll();
      kv.poll(now);
      if (now >= durationMs) kv.finish();
      if (progress && now - lastReport >= 1000) {
        const s = kv.summary;
        process.stderr.write(
          `${JSON.stringify({ msg: "client progress", t: now / 1000, phase: kv.currentPhase, requests: s.requests, replies: s.replies, rps: ((s.replies - lastReplies) * 1000) / Math.max(1, now - lastReport), resets: s.resets, longestStallMs: Math.round(s.longestStallMs) })}\n`,
        );
        lastReport = now;
        lastReplies = s.replies;
      }
      if (kv.done || now > durationMs + drainMs) {
        resolve();
        return;
      }
      setTimeout(tick, 1);
    };
    tick();
  });
  // Let the FINs go out.
  const end = clock() + 50;
  while (clock() < end) {
    stack.poll();
    await new Promise((r) => setTimeout(r, 5));
  }
  link.close();
  const s = kv.summary;
  const finished = kv.done;
  if (!finished) s.errors.push(`the final read-back did not finish within ${drainMs / 1000} s`);
  const ok = finished && s.ok;
  const durationS = clock() / 1000;
  process.stdout.write(
    `${JSON.stringify({ ...s, ok, durationS, requestsPerSec: Math.round((s.replies / Math.max(0.001, durationS)) * 10) / 10 })}\n`,
  );
  process.exitCode = ok ? 0 : 1;
}
