/**
 * The network half of the seeded simulation: a virtual LAN (the real learning
 * switch, frames delivered in virtual time), the guest NIC's host side with
 * output commit on both replicas, and a client running the real TCP/IP stack
 * over ordinary memory. Together with SimPair it lets a test kill the primary
 * at any step while clients are mid-stream, and check what the clients saw.
 */
import { PlainMemory } from "../../src/domain/memory.js";
import { Kernel } from "../../src/guest/kernel.js";
import { formatStandaloneHeap } from "../../src/guest/mm.js";
import { NetStack } from "../../src/net/stack.js";
import { mulberry32u32 } from "../../src/prng.js";
import { NetDevice } from "../../src/replication/netdev.js";
import { PrimaryMachine } from "../../src/replication/primary.js";
import { LearningSwitch } from "../../src/vswitch/switch.js";
import { rng, SimPair } from "./sim.js";

interface LanFrame {
  at: number;
  seq: number;
  to: string;
  frame: Buffer;
}

/** A LAN in virtual time: the real learning switch, seeded latency and optional loss. */
export class SimLan {
  readonly sw = new LearningSwitch({ agingMs: 300_000 });
  private q: LanFrame[] = [];
  private seq = 0;
  private readonly endpoints = new Map<string, (f: Buffer) => void>();
  now = 0;
  dropped = 0;

  constructor(
    private readonly random: () => number,
    private readonly loss = 0,
  ) {}

  attach(id: string, onFrame: (f: Buffer) => void): (f: Uint8Array) => void {
    this.endpoints.set(id, onFrame);
    this.sw.addPort(
      {
        id,
        send: (frame) => {
          if (this.loss > 0 && this.random() < this.loss) {
            this.dropped++;
            return;
          }
          this.q.push({ at: this.now + 0.1 + this.random() * 0.2, seq: this.seq++, to: id, frame });
        },
      },
      this.now,
    );
    return (f) => this.sw.input(id, Buffer.from(f), this.now);
  }

  advance(t: number): void {
    for (;;) {
      this.q.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const f = this.q[0];
      if (!f || f.at > t) break;
      this.q.shift();
      this.now = Math.max(this.now, f.at);
      this.endpoints.get(f.to)?.(f.frame);
    }
    this.now = t;
  }
}

export const GUEST = { mac: Buffer.from([2, 0, 0, 0, 0, 0x10]), ip: 0x0a00000a };
export const CLIENT = { mac: Buffer.from([2, 0, 0, 0, 1, 0]), ip: 0x0a000064 };

export interface NetSimOptions {
  seed: number;
  workload?: string;
  loss?: number;
}

/** A protected pair with a guest on a LAN, a client, and failover handling. */
export class NetSim {
  readonly pair: SimPair;
  readonly lan: SimLan;
  readonly pdev: NetDevice;
  readonly bdev: NetDevice;
  readonly client: NetStack;
  activated: PrimaryMachine | undefined;
  activatedAt: number | undefined;
  private readonly toLanPrimary: (f: Uint8Array) => void;
  private readonly toLanBackup: (f: Uint8Array) => void;

  constructor(readonly opts: NetSimOptions) {
    this.pair = new SimPair({
      seed: opts.seed,
      workload: opts.workload ?? "dirty:rate=5000,hot=0.1,pattern=zipf",
      batchPages: 32,
      domainMiB: 8,
      net: GUEST,
    });
    this.lan = new SimLan(rng(opts.seed ^ 0x1234567), opts.loss ?? 0);
    this.toLanPrimary = this.lan.attach("primary", (f) => this.pdev.input(f));
    this.toLanBackup = this.lan.attach("backup", (f) => this.bdev.input(f));
    this.pdev = new NetDevice({
      domain: this.pair.primaryDomain,
      outputCommit: true,
      sendFrame: (f) => {
        if (this.pair.primaryAlive) this.toLanPrimary(f);
      },
    });
    this.bdev = new NetDevice({
      domain: this.pair.backupDomain,
      outputCommit: true,
      sendFrame: (f) => this.toLanBackup(f),
    });
    this.pdev.activate();
    const p = this.pair.primary;
    this.pair.afterGuest = () => this.pdev.pump(p.epoch, p.outputMustWait, this.now);
    this.pair.extraHooks = {
      beforeCapture: (epoch) => this.pdev.pump(epoch, p.outputMustWait, this.now),
      onCommitted: (epoch) => this.pdev.committed(epoch, this.now),
      onState: (state) => {
        if (state !== "protected") this.pdev.releaseAll(this.now);
      },
    };
    const mem = new PlainMemory(16 * 1024 * 1024);
    const heap = formatStandaloneHeap(mem);
    const sendClient = this.lan.attach("client", (f) => this.client.input(f));
    const env = {
      mem,
      heap,
      now: () => Math.floor(this.now),
      random32: mulberry32u32(opts.seed ^ 0xabcdef),
      transmit: (f: Uint8Array) => {
        sendClient(f);
        return true;
      },
    };
    this.client = new NetStack(
      env,
      NetStack.format(env, { mac: CLIENT.mac, ip: CLIENT.ip, minRtoMs: 200, timeWaitMs: 1000 }),
    );
  }

  get now(): number {
    return this.pair.now;
  }

  /** One millisecond: replication, both guests, the LAN and the client stack. */
  step(onClient?: (now: number) => void): void {
    const t = this.pair.now + 1;
    this.lan.advance(t - 0.5);
    this.pair.step();
    const act = this.pair.backup.activated;
    if (act && !this.activated) {
      this.activated = new PrimaryMachine({
        domain: this.pair.backupDomain,
        kernel: new Kernel(this.pair.backupDomain),
        key: Buffer.from("simulation-key"),
        nodeId: Buffer.alloc(16, 2),
        software: "sim",
        generation: act.generation,
        startEpoch: act.epoch + 1,
        config: { ...this.pair.primary.config },
        emit: () => {},
        hrClock: () => 0,
      });
      this.activatedAt = this.now;
      this.bdev.activate();
    }
    const ap = this.activated;
    if (ap) {
      ap.runGuest(1);
      this.bdev.pump(ap.epoch, ap.outputMustWait, this.now);
      ap.poll(this.now);
    }
    this.lan.advance(t);
    this.client.poll();
    onClient?.(this.now);
  }
}
