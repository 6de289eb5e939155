/**
 * The checking client's I/O shell: its own TCP/IP stack (the same code the
 * guest runs, over ordinary memory) attached to the vswitch over UDP, and the
 * kvd load on it, stepped every millisecond. `remusd client` runs one to the
 * end; `remusd drill` runs one in a worker thread for as long as the drill.
 */
import { PlainMemory } from "../domain/memory.js";
import { formatStandaloneHeap } from "../guest/mm.js";
import type { HostPort } from "../net/addr.js";
import { NetStack } from "../net/stack.js";
import { mulberry32u32 } from "../prng.js";
import { UdpLink } from "../vswitch/udp.js";
import { KvLoad, type KvLoadOptions } from "./kvload.js";

export interface KvClientOptions {
  readonly switchAddr: HostPort;
  readonly mac: Uint8Array;
  readonly ip: number;
  /** Everything of the load but what depends on the clock. */
  readonly load: Omit<KvLoadOptions, "onReply">;
  /** Called with every reply: when its request was sent and when it arrived, in ms of `clock`. */
  readonly onReply?: (sentAt: number, now: number) => void;
}

/** A running checking client: `poll` it (or `run` it), then `close` it. */
export class KvClient {
  /** ms since the client started (fractional, sub-millisecond): the time base of the load and of `onReply`. */
  readonly clock: () => number;
  /** Wall-clock ms (Unix epoch) at `clock() === 0`. */
  readonly wallAtZero: number;

  private constructor(
    readonly stack: NetStack,
    readonly kv: KvLoad,
    private readonly link: UdpLink,
    t0: number,
  ) {
    this.clock = () => performance.now() - t0;
    this.wallAtZero = performance.timeOrigin + t0;
  }

  private soon: NodeJS.Immediate | undefined;
  private closed = false;

  /**
   * A frame arrived: the client reads it and answers right after this turn's
   * I/O instead of on its next 1 ms step, so the latencies it measures are
   * the server's, not its own polling's. Coalesced.
   */
  private pollSoon(): void {
    if (this.soon || this.closed) return;
    this.soon = setImmediate(() => {
      this.soon = undefined;
      if (!this.closed) this.poll();
    });
  }

  static async open(o: KvClientOptions): Promise<KvClient> {
    const link = await UdpLink.open(o.switchAddr);
    const mem = new PlainMemory(32 * 1024 * 1024);
    const heap = formatStandaloneHeap(mem);
    const t0 = performance.now();
    const env = {
      mem,
      heap,
      now: () => Math.floor(performance.now() - t0),
      random32: mulberry32u32(o.load.seed ^ 0x5bd1e995),
      transmit: (frame: Uint8Array) => {
        link.send(frame);
        return true;
      },
    };
    const stack = new NetStack(
      env,
      NetStack.format(env, { mac: o.mac, ip: o.ip, minRtoMs: 200, timeWaitMs: 1000 }),
    );
    const kv = new KvLoad(stack, { ...o.load, ...(o.onReply ? { onReply: o.onReply } : {}) }, 0);
    const client = new KvClient(stack, kv, link, t0);
    link.onFrame = (f) => {
      stack.input(f);
      client.pollSoon();
    };
    return client;
  }

  /** One step: the stack's timers and input, then the load. */
  poll(): number {
    const now = this.clock();
    this.stack.poll();
    this.kv.poll(now);
    return now;
  }

  /**
   * Steps every millisecond until `stop(now)` says so, calling `each(now)`
   * after every step; resolves with the time it stopped.
   */
  run(stop: (now: number) => boolean, each?: (now: number) => void): Promise<number> {
    return new Promise((resolve) => {
      const tick = () => {
        const now = this.poll();
        each?.(now);
        if (stop(now)) {
          resolve(now);
          return;
        }
        setTimeout(tick, 1);
      };
      tick();
    });
  }

  /** Lets the FINs go out for `ms`, then closes the UDP link. */
  async close(ms = 50): Promise<void> {
    const end = this.clock() + ms;
    while (this.clock() < end) {
      this.stack.poll();
      await new Promise((r) => setTimeout(r, 5));
    }
    this.closed = true;
    if (this.soon) clearImmediate(this.soon);
    this.link.close();
  }
}
