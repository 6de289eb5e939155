/**
 * A guest running kvd wired NIC-to-NIC to a client TCP/IP stack, in virtual
 * time (one guest tick = one millisecond). Frames cross within the tick, so a
 * request sent between ticks is executed by the next tick (whose guest time
 * is `k.nowMs` afterwards). The whole world (guest domain, client memory,
 * frames in flight, client RNG) can be cloned to check that a restored
 * domain behaves identically.
 */
import { RespParser } from "../../src/client/resp.js";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { PlainMemory } from "../../src/domain/memory.js";
import { bootGuest } from "../../src/guest/guest.js";
import { Kernel } from "../../src/guest/kernel.js";
import { formatStandaloneHeap, Heap } from "../../src/guest/mm.js";
import { Nic } from "../../src/guest/nic.js";
import { parseWorkload } from "../../src/guest/workload.js";
import { NetStack } from "../../src/net/stack.js";

export const GUEST = { mac: Buffer.from([2, 0, 0, 0, 0, 0x10]), ip: 0x0a00000a };
export const CLIENT = { mac: Buffer.from([2, 0, 0, 0, 1, 0]), ip: 0x0a000064 };
export const PORT = 6379;

export interface WorldOptions {
  seed?: number;
  domainMiB?: number;
  diskMiB?: number;
  clientMiB?: number;
}

interface ClientParts {
  mem: PlainMemory;
  root: number;
  rng: number;
  time: number;
  toGuest: Buffer[];
}

export class KvdWorld {
  readonly domain: Domain;
  k: Kernel;
  readonly nic: Nic;
  readonly cmem: PlainMemory;
  readonly client: NetStack;
  /** Client time, ms (follows the guest clock). */
  time: number;
  private rng: number;
  private toGuest: Buffer[];

  constructor(opts: WorldOptions = {}, from?: { domain: Domain; client: ClientParts }) {
    if (from) {
      this.domain = from.domain;
      this.k = new Kernel(this.domain);
      this.cmem = from.client.mem;
      this.rng = from.client.rng;
      this.time = from.client.time;
      this.toGuest = from.client.toGuest;
    } else {
      this.domain = new Domain(geometryOfMiB(opts.domainMiB ?? 16, opts.diskMiB ?? 8));
      this.k = bootGuest(this.domain, {
        seed: opts.seed ?? 1,
        workload: parseWorkload("idle"),
        net: GUEST,
      });
      this.cmem = new PlainMemory((opts.clientMiB ?? 8) * 1024 * 1024);
      this.rng = (opts.seed ?? 1) * 2654435761;
      this.time = 0;
      this.toGuest = [];
    }
    this.nic = new Nic(this.domain);
    const env = {
      mem: this.cmem,
      // formatStandaloneHeap puts the heap header at 0x80; a clone opens the copied one.
      heap: from ? new Heap(this.cmem, 0x80) : formatStandaloneHeap(this.cmem),
      now: () => this.time,
      random32: () => {
        // xorshift32, state in a plain field so that a clone continues the same sequence
        let x = this.rng >>> 0 || 1;
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        this.rng = x >>> 0;
        return this.rng;
      },
      transmit: (f: Uint8Array) => {
        this.toGuest.push(Buffer.from(f));
        return true;
      },
    };
    this.client = new NetStack(
      env,
      from
        ? from.client.root
        : NetStack.format(env, { mac: CLIENT.mac, ip: CLIENT.ip, minRtoMs: 200, timeWaitMs: 1000 }),
    );
  }

  /** An independent copy of the whole world: the guest domain, the client and the frames in flight. */
  clone(): KvdWorld {
    const d = new Domain(this.domain.geometry);
    d.copyFrom(this.domain);
    return new KvdWorld(
      {},
      {
        domain: d,
        client: {
          mem: new PlainMemory(Buffer.from(this.cmem.buf)),
          root: this.client.root,
          rng: this.rng,
          time: this.time,
          toGuest: this.toGuest.map((f) => Buffer.from(f)),
        },
      },
    );
  }

  /** One millisecond: client frames into the guest, a guest tick, guest frames into the client. */
  tick(): void {
    const frames = this.toGuest;
    this.toGuest = [];
    for (const f of frames) this.nic.deliver(f);
    this.k.tick();
    this.time = this.k.nowMs;
    for (let f = this.nic.takeTx(); f; f = this.nic.takeTx()) this.client.input(f);
    this.client.poll();
  }

  /** Client frames into the guest and a receive interrupt (no tick: guest time stays), guest frames into the client. */
  interrupt(): void {
    const frames = this.toGuest;
    this.toGuest = [];
    for (const f of frames) this.nic.deliver(f);
    this.k.interrupt();
    for (let f = this.nic.takeTx(); f; f = this.nic.takeTx()) this.client.input(f);
  }

  run(ticks: number, until?: () => boolean): boolean {
    for (let i = 0; i < ticks; i++) {
      if (until?.()) return true;
      this.tick();
    }
    return until ? until() : true;
  }

  /** A new client connection to kvd, established. */
  connect(port = PORT): number {
    const s = this.client.connect(GUEST.ip, port);
    if (!this.run(3000, () => this.client.state(s) !== "SYN_SENT")) throw new Error("connect timed out");
    if (this.client.state(s) !== "ESTABLISHED") throw new Error(`connect: ${this.client.state(s)}`);
    return s;
  }

  /** Queues all of `data`, ticking while the send buffer is full. */
  send(s: number, data: Uint8Array): void {
    let off = 0;
    for (let i = 0; off < data.length; i++) {
      const n = this.client.send(s, data.subarray(off));
      if (n < 0) throw new Error("send on a closed connection");
      off += n;
      if (off < data.length) {
        if (i > 100_000) throw new Error("send stalled");
        this.tick();
      }
    }
  }

  /** Everything received on `s` so far. */
  drain(s: number): Buffer {
    const parts: Buffer[] = [];
    for (let d = this.client.recv(s); d; d = this.client.recv(s)) parts.push(d);
    return Buffer.concat(parts);
  }

  /**
   * Sends `data` and ticks until `replies` complete RESP replies arrived (or
   * `maxTicks` passed); returns the raw reply bytes and the guest time of the
   * first tick (when a request sent now is executed).
   */
  request(
    s: number,
    data: Uint8Array | string,
    replies = 1,
    maxTicks = 5000,
  ): { bytes: Buffer; execMs: number } {
    const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    this.send(s, bytes);
    const execMs = this.k.nowMs + 1;
    const parser = new RespParser();
    const got: Buffer[] = [];
    let count = 0;
    for (let t = 0; t < maxTicks && count < replies; t++) {
      this.tick();
      const d = this.drain(s);
      if (d.length > 0) {
        got.push(d);
        parser.push(d);
        while (parser.next()) count++;
      }
    }
    return { bytes: Buffer.concat(got), execMs };
  }

  /** `request` returning the reply bytes as a latin1 string. */
  ask(s: number, data: Uint8Array | string, replies = 1): string {
    return this.request(s, data, replies).bytes.toString("latin1");
  }

  /** Ticks until the server closed `s` (FIN or RST) or `maxTicks`; returns what arrived meanwhile. */
  untilClosed(s: number, maxTicks = 3000): { bytes: Buffer; closed: boolean; state: string } {
    const got: Buffer[] = [];
    for (let t = 0; t < maxTicks; t++) {
      this.tick();
      got.push(this.drain(s));
      const st = this.client.state(s);
      if (st === "CLOSED" || st === "CLOSE_WAIT" || this.client.eof(s)) {
        got.push(this.drain(s));
        return { bytes: Buffer.concat(got), closed: true, state: st };
      }
    }
    return { bytes: Buffer.concat(got), closed: false, state: this.client.state(s) };
  }
}

/** RESP encoding of a command (test side). */
export function cmd(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === "string" ? Buffer.from(a, "latin1") : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}
