/**
 * A seeded, in-process simulation of a primary and a backup over a faulty link
 * (FoundationDB style): virtual time, a link that delays, cuts and corrupts,
 * and a way to kill the primary at any step. No sockets, no real timers.
 */
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { bootGuest } from "../../src/guest/guest.js";
import { Kernel } from "../../src/guest/kernel.js";
import { parseWorkload } from "../../src/guest/workload.js";
import { mulberry32 as rng } from "../../src/prng.js";
import { BackupMachine, NullStore } from "../../src/replication/backup.js";
import type { Port } from "../../src/replication/conn.js";
import type { ReplicationEvent } from "../../src/replication/events.js";
import { type PrimaryHooks, PrimaryMachine } from "../../src/replication/primary.js";

/** The simulation's own seeded choices. */
export { rng };

interface InFlightFrame {
  at: number;
  seq: number;
  to: SimPort;
  data: Buffer;
}

/** One end of a simulated connection. */
export class SimPort implements Port {
  peer!: SimPort;
  open = true;
  bytesQueued = 0;
  onFrame: (data: Buffer) => void = () => {};
  onClose: (reason: string) => void = () => {};
  constructor(
    private readonly net: SimNet,
    readonly remote: string,
    readonly side: "a" | "b",
  ) {}
  get buffered(): number {
    return this.bytesQueued;
  }
  send(frame: Buffer): void {
    if (!this.open) return;
    this.net.transmit(this, Buffer.from(frame));
  }
  close(reason: string): void {
    if (!this.open) return;
    this.net.closePair(this, reason);
  }
}

/** Delivers frames between ports in order, with seeded latency, and injects faults. */
export class SimNet {
  now = 0;
  private q: InFlightFrame[] = [];
  private seq = 0;
  /** Called for every frame before delivery; return false to drop it (the link then breaks). */
  tap: ((from: SimPort, data: Buffer) => Buffer | false) | undefined;
  private lastAt = new Map<SimPort, number>();

  constructor(
    readonly random: () => number,
    readonly latencyMs = 0.3,
  ) {}

  pair(nameA: string, nameB: string): [SimPort, SimPort] {
    const a = new SimPort(this, nameB, "a");
    const b = new SimPort(this, nameA, "b");
    a.peer = b;
    b.peer = a;
    return [a, b];
  }

  transmit(from: SimPort, data: Buffer): void {
    const to = from.peer;
    // In-order delivery per direction (a TCP stream): never earlier than the previous frame.
    const at = Math.max(this.now + this.latencyMs * (0.5 + this.random()), this.lastAt.get(from) ?? 0);
    this.lastAt.set(from, at);
    from.bytesQueued += data.length;
    this.q.push({ at, seq: this.seq++, to, data });
  }

  closePair(from: SimPort, reason: string): void {
    // Frames already sent are still delivered (a TCP FIN follows the data), then the close.
    const at = Math.max(this.now + this.latencyMs, this.lastAt.get(from) ?? 0) + 0.001;
    from.open = false;
    this.q.push({ at, seq: this.seq++, to: from.peer, data: Buffer.from(`\0close:${reason}`) });
  }

  /** Breaks the connection at once: both sides see it closed, frames in flight are lost. */
  cut(p: SimPort, reason: string): void {
    this.q = this.q.filter((f) => f.to !== p && f.to !== p.peer);
    for (const s of [p, p.peer]) {
      if (s.open) {
        s.open = false;
        s.onClose(reason);
      }
    }
  }

  /** Delivers everything due by `t`. */
  advance(t: number): void {
    for (;;) {
      let best = -1;
      for (let i = 0; i < this.q.length; i++) {
        const f = this.q[i] as InFlightFrame;
        if (
          f.at <= t &&
          (best < 0 ||
            f.at < (this.q[best] as InFlightFrame).at ||
            (f.at === (this.q[best] as InFlightFrame).at && f.seq < (this.q[best] as InFlightFrame).seq))
        )
          best = i;
      }
      if (best < 0) break;
      const f = this.q.splice(best, 1)[0] as InFlightFrame;
      this.now = Math.max(this.now, f.at);
      const from = f.to.peer;
      from.bytesQueued = Math.max(0, from.bytesQueued - f.data.length);
      if (f.data[0] === 0 && f.data.toString("latin1", 1, 7) === "close:") {
        if (f.to.open) {
          f.to.open = false;
          f.to.onClose(f.data.toString("utf8", 7));
        }
        continue;
      }
      if (!f.to.open) continue;
      let data: Buffer | false = f.data;
      if (this.tap) data = this.tap(from, f.data);
      if (data === false) {
        this.cut(f.to, "dropped");
        continue;
      }
      f.to.onFrame(data);
    }
    this.now = t;
  }

  get idle(): boolean {
    return this.q.length === 0;
  }
}

export interface PairOptions {
  seed: number;
  domainMiB?: number;
  diskMiB?: number;
  workload?: string;
  intervalMs?: number;
  batchPages?: number;
  verify?: boolean;
  heartbeatMs?: number;
  misses?: number;
  key?: Buffer;
  /** Give the guest a NIC, a TCP/IP stack and its network services. */
  net?: { mac: Uint8Array; ip: number };
}

/** A primary and a backup on a SimNet, with every event recorded. */
export class SimPair {
  readonly net: SimNet;
  readonly random: () => number;
  readonly primaryDomain: Domain;
  readonly backupDomain: Domain;
  readonly primary: PrimaryMachine;
  backup: BackupMachine;
  readonly primaryEvents: ReplicationEvent[] = [];
  readonly backupEvents: ReplicationEvent[] = [];
  /** Digest of the primary at each checkpoint's pause (needs verify). */
  readonly primaryDigests = new Map<number, string>();
  /** Highest epoch whose output the primary released (onCommitted). */
  releasedEpoch = 0;
  primaryAlive = true;
  private link: [SimPort, SimPort] | undefined;
  private reconnectAt = 0;
  autoReconnect = true;
  readonly store = new NullStore();
  /** Runs after the primary's guest tick, before its poll (the NIC's host side pumps output here). */
  afterGuest: (() => void) | undefined;
  /** More primary hooks (the network's output commit), called after the built-in ones. */
  extraHooks: PrimaryHooks = {};

  constructor(readonly opts: PairOptions) {
    this.random = rng(opts.seed);
    this.net = new SimNet(rng(opts.seed ^ 0x9e3779b9));
    const geo = geometryOfMiB(opts.domainMiB ?? 2, opts.diskMiB ?? 1);
    this.primaryDomain = new Domain(geo);
    this.backupDomain = new Domain(geo);
    const kernel = bootGuest(this.primaryDomain, {
      seed: opts.seed,
      workload: parseWorkload(opts.workload ?? "dirty:rate=30000,hot=0.2,pattern=zipf+disk:rate=256"),
      ...(opts.net ? { net: opts.net } : {}),
    });
    const key = opts.key ?? Buffer.from("simulation-key");
    const hb = { intervalMs: opts.heartbeatMs ?? 20, misses: opts.misses ?? 5 };
    this.primary = new PrimaryMachine({
      domain: this.primaryDomain,
      kernel,
      key,
      nodeId: Buffer.alloc(16, 1),
      software: "sim",
      generation: 1,
      config: {
        intervalMs: opts.intervalMs ?? 5,
        maxInFlight: 1,
        compress: true,
        verify: opts.verify ?? true,
        heartbeat: hb,
        batchPages: opts.batchPages ?? 64,
        highWaterBytes: 1 << 20,
      },
      emit: (e) => {
        this.primaryEvents.push(e);
        if (e.type === "checkpoint.sent" && e.digest) this.primaryDigests.set(e.epoch, e.digest);
      },
      hooks: {
        beforeCapture: (epoch) => this.extraHooks.beforeCapture?.(epoch),
        onCommitted: (epoch) => {
          this.releasedEpoch = Math.max(this.releasedEpoch, epoch);
          this.extraHooks.onCommitted?.(epoch);
        },
        onState: (state, reason) => this.extraHooks.onState?.(state, reason),
      },
      hrClock: () => 0,
    });
    this.backup = new BackupMachine({
      domain: this.backupDomain,
      key,
      nodeId: Buffer.alloc(16, 2),
      software: "sim",
      generation: 0,
      config: { heartbeat: hb, verify: true },
      emit: (e) => this.backupEvents.push(e),
      store: this.store,
      hrClock: () => 0,
    });
  }

  get now(): number {
    return this.net.now;
  }

  /** Connects the primary to the backup. */
  connect(): void {
    const [pp, bp] = this.net.pair("primary", "backup");
    this.link = [pp, bp];
    pp.onFrame = (d) => {
      if (this.primaryAlive) this.primary.frame(pp, d, this.net.now);
    };
    pp.onClose = (r) => {
      if (this.primaryAlive) this.primary.detach(pp, this.net.now, r);
    };
    bp.onFrame = (d) => this.backup.frame(bp, d, this.net.now);
    bp.onClose = (r) => this.backup.detach(bp, this.net.now, r);
    this.primary.attach(pp, this.net.now);
    this.backup.attach(bp, this.net.now);
  }

  get primaryPort(): SimPort | undefined {
    return this.link?.[0];
  }

  /** One millisecond of virtual time. */
  step(): void {
    const t = this.net.now + 1;
    this.net.advance(t - 0.5);
    if (this.primaryAlive) {
      this.primary.runGuest(1);
      this.afterGuest?.();
      this.primary.poll(this.net.now);
      if (
        this.autoReconnect &&
        this.primary.wantsPeer &&
        this.net.now >= this.reconnectAt &&
        this.backup.state !== "activated"
      ) {
        this.reconnectAt = this.net.now + 10;
        this.connect();
      }
    }
    this.backup.poll(this.net.now);
    this.net.advance(t);
  }

  run(ms: number, until?: () => boolean): void {
    for (let i = 0; i < ms; i++) {
      this.step();
      if (until?.()) return;
    }
  }

  /** The primary dies: it stops at once; `cut` also breaks the link (else it just goes silent). */
  killPrimary(cut: boolean): void {
    this.primaryAlive = false;
    const p = this.link?.[0];
    if (cut && p) this.net.cut(p, "primary killed");
  }

  lastAckedByPrimary(): number {
    let e = 0;
    for (const ev of this.primaryEvents) if (ev.type === "checkpoint.committed") e = Math.max(e, ev.epoch);
    return e;
  }

  makeActivatedKernel(): Kernel {
    return new Kernel(this.backupDomain);
  }
}
