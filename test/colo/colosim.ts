/**
 * A seeded COLO simulation on the simulated world (test/sim: one event queue
 * in virtual time, the real learning switch as the LAN, a client with its own
 * TCP/IP stack): two replicas of one guest (two Domains booted with the same
 * seed), each paced by its own host's loop, and between them the COLO data
 * path built from the real parts:
 *
 *   client ─LAN─► primary host ─► primary NIC rx            (the primary's guest)
 *                      └─ mirror link (latency) ─► rewriter.inbound ─► secondary NIC rx
 *   primary NIC tx ─► comparator.primary ─(match)─► LAN ─► client
 *   secondary NIC tx ─► rewriter.outbound ─ link (latency) ─► comparator.secondary
 *
 * A checkpoint (on the comparator's request) is taken at once and atomically:
 * the pages and disk blocks dirtied on *either* side since the last one are
 * copied from the primary to the secondary with the vCPU and device blocks,
 * the digests are compared, the secondary reseeds its guest RNG from its own
 * entropy, the comparator hands back the primary's held frames (released:
 * the checkpoint is committed), and the rewriter resets. Frames in flight on
 * the links that belong to the previous epoch are dropped on arrival (the
 * mirror's were input already in the checkpointed state; the secondary's
 * were output of a state that no longer exists).
 *
 * Divergence comes from what differs between two hosts, not from the model:
 * each host's loop turns at its own seeded moments (with occasional stalls)
 * and runs the guest ticks its own clock says are due (the daemon's pacer),
 * the mirror link adds latency, the secondary resumes after each checkpoint a
 * little later than the primary, and the secondary's guest draws its own
 * random numbers.
 *
 * `killPrimary()` fails over: the secondary takes the LAN (gratuitous ARP),
 * its rewriter turns permanent, and its guest carries on from its own state.
 * `killSecondary()` leaves the primary unprotected.
 */
import { type CheckpointReason, Comparator, type CompareConfig } from "../../src/colo/compare.js";
import { SeqRewriter } from "../../src/colo/rewriter.js";
import type { DivergenceSwitch } from "../../src/domain/divergence.js";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { bootGuest } from "../../src/guest/guest.js";
import { Kernel } from "../../src/guest/kernel.js";
import { Nic } from "../../src/guest/nic.js";
import { parseWorkload } from "../../src/guest/workload.js";
import { encodeArp, encodeEth } from "../../src/net/wire.js";
import { GuestPacer } from "../../src/node/pacing.js";
import type { Prng } from "../../src/prng.js";
import { CLIENT, Cluster, GUEST, type SimClient } from "../sim/cluster.js";
import type { Endpoint } from "../sim/repl.js";
import { World } from "../sim/world.js";

export { CLIENT, GUEST };

export interface ColoSimOptions {
  seed: number;
  /** Guest workload besides kvd and echo (a preset or spec), default idle. */
  workload?: string;
  domainMiB?: number;
  compare?: Partial<CompareConfig>;
  /** Reseed the secondary's guest RNG after every checkpoint (default true). */
  reseed?: boolean;
  /** Put the sequence rewriter on the secondary's path (default true). */
  rewrite?: boolean;
  /** One-way latency of the links between the hosts, ms: [min, max). */
  linkMs?: [number, number];
  primaryDivergence?: DivergenceSwitch;
  secondaryDivergence?: DivergenceSwitch;
}

/** One replica: its domain, and its host's loop that paces the guest by the host's own clock. */
class Replica implements Endpoint {
  readonly domain: Domain;
  readonly nic: Nic;
  readonly pacer = new GuestPacer();
  readonly reachable = true;
  alive = true;
  /** No loop turn before this (the host is busy applying a checkpoint). */
  busyUntil = 0;

  constructor(
    readonly name: string,
    opts: ColoSimOptions,
    private readonly world: World,
    private readonly rng: Prng,
    private readonly afterTurn: () => void,
  ) {
    this.domain = new Domain(geometryOfMiB(opts.domainMiB ?? 8, 4));
    bootGuest(this.domain, {
      seed: opts.seed,
      workload: parseWorkload(opts.workload ?? "idle"),
      net: GUEST,
    });
    this.nic = new Nic(this.domain);
    this.pacer.reset(0, this.domain.vcpu.ticks);
    world.at(rng.float(), () => this.turn());
  }

  input(fn: () => void): void {
    if (this.alive) fn();
  }

  /** One loop turn: the ticks this host's clock says are due; the next turn is this host's own business. */
  private turn(): void {
    if (!this.alive) return;
    const now = this.world.now;
    if (now >= this.busyUntil) {
      const n = this.pacer.due(now, this.domain.vcpu.ticks);
      if (n > 0) new Kernel(this.domain).run(n);
      this.afterTurn();
    }
    // Usually within a millisecond; now and then the host is busy for a few.
    const r = this.rng;
    const next = Math.max(
      now + 0.3 + r.float() * 0.9 + (r.float() < 0.01 ? 2 + r.float() * 6 : 0),
      this.busyUntil,
    );
    this.world.at(next, () => this.turn());
  }
}

interface InFlight {
  epoch: number;
  frame: Buffer;
}

/** An in-order link between the hosts with a seeded latency per frame. */
class HostLink {
  private last = 0;
  private queue: InFlight[] = [];

  constructor(
    private readonly world: World,
    private readonly rng: Prng,
    private readonly ms: [number, number],
    private readonly deliver: (f: InFlight) => void,
  ) {}

  send(f: InFlight): void {
    const at = Math.max(
      this.world.now + this.ms[0] + this.rng.float() * (this.ms[1] - this.ms[0]),
      this.last,
    );
    this.last = at;
    this.queue.push(f);
    this.world.at(at, () => {
      const x = this.queue.shift();
      if (x) this.deliver(x);
    });
  }

  /** Drops everything in flight (the sender died). */
  clear(): void {
    this.queue = [];
  }
}

export interface CheckpointRecord {
  at: number;
  reason: CheckpointReason | "manual";
  pages: number;
  /** Pages only the secondary had dirtied (the two-sided part of the dirty set). */
  secondaryOnly: number;
  digestsEqual: boolean;
  released: number;
}

export class ColoSim {
  readonly world: World;
  readonly cluster: Cluster;
  readonly client: SimClient;
  readonly primary: Replica;
  readonly secondary: Replica;
  readonly comparator: Comparator;
  readonly rewriter: SeqRewriter;
  readonly checkpoints: CheckpointRecord[] = [];
  /** Primary and secondary ISNs of every connection the guests accepted, by client port. */
  readonly isns = new Map<number, { primary?: number; secondary?: number }>();
  epoch = 1;
  failedOver = false;
  released = 0;
  private readonly entropy: Prng;
  private readonly toLanPrimary: (f: Uint8Array) => void;
  private toLanSecondary: ((f: Uint8Array) => void) | undefined;
  private readonly mirror: HostLink;
  private readonly secOut: HostLink;
  private wanted = false;

  constructor(readonly opts: ColoSimOptions) {
    const w = new World(opts.seed);
    this.world = w;
    this.cluster = new Cluster(w);
    this.entropy = w.stream("secondary-entropy");
    this.primary = new Replica("primary", opts, w, w.stream("host:primary"), () => this.pump(this.primary));
    this.secondary = new Replica("secondary", opts, w, w.stream("host:secondary"), () =>
      this.pump(this.secondary),
    );
    this.primary.domain.divergence = opts.primaryDivergence;
    this.secondary.domain.divergence = opts.secondaryDivergence;
    if (opts.reseed ?? true) this.secondary.domain.vcpu.reseed(this.entropy.bytes(16));
    this.toLanPrimary = this.cluster.lan.attach(this.primary, (f) => this.fromLanToPrimary(f));
    const linkMs = opts.linkMs ?? [0.05, 0.4];
    this.mirror = new HostLink(w, w.stream("link:mirror"), linkMs, (m) => {
      // Why: input mirrored before a checkpoint is already in the state the secondary received.
      if (m.epoch === this.epoch && this.secondary.alive) this.toSecondary(m.frame);
    });
    this.secOut = new HostLink(w, w.stream("link:output"), linkMs, (s) => {
      // Why: output of a secondary state that a checkpoint replaced compares with nothing.
      if (s.epoch === this.epoch && this.primary.alive && this.secondary.alive) {
        this.comparator.secondary(s.frame, w.now);
      }
    });
    this.comparator = new Comparator(
      opts.compare ?? {},
      {
        release: (f) => {
          this.released++;
          this.toLanPrimary(f);
        },
        checkpoint: (reason) => {
          // Taken as its own event: the comparator is in the middle of a call.
          if (!this.wanted) w.at(w.now, () => this.checkpoint(reason));
          this.wanted = true;
        },
      },
      0,
    );
    this.rewriter = new SeqRewriter({
      toGuest: (f) => this.secondary.nic.deliver(f),
      toWire: (f) => this.fromSecondaryGuest(f),
    });
    this.client = this.cluster.addClient("client", CLIENT);
    w.every(1, () => {
      if (this.primary.alive && this.secondary.alive) this.comparator.poll(w.now);
    });
  }

  get now(): number {
    return this.world.now;
  }

  /** A frame from the LAN for the guest: into the primary's NIC, and mirrored to the secondary. */
  private fromLanToPrimary(f: Buffer): void {
    this.primary.nic.deliver(f);
    if (this.secondary.alive) this.mirror.send({ epoch: this.epoch, frame: Buffer.from(f) });
  }

  private toSecondary(f: Buffer): void {
    if (this.opts.rewrite ?? true) this.rewriter.inbound(f);
    else this.secondary.nic.deliver(f);
  }

  private fromSecondaryGuest(f: Buffer): void {
    if (this.failedOver) this.toLanSecondary?.(f);
    else this.secOut.send({ epoch: this.epoch, frame: f });
  }

  /** Drains a guest's transmit ring: the primary's into the comparator, the secondary's through the rewriter. */
  private pump(r: Replica): void {
    for (let f = r.nic.takeTx(); f; f = r.nic.takeTx()) {
      this.noteIsn(r, f);
      if (r === this.primary) {
        // Unprotected (the secondary died): output leaves at once; otherwise it is compared.
        if (this.secondary.alive) this.comparator.primary(f, this.now);
        else this.toLanPrimary(f);
      } else if (this.opts.rewrite ?? true) this.rewriter.outbound(f);
      else this.fromSecondaryGuest(f);
    }
  }

  private noteIsn(r: Replica, f: Buffer): void {
    // Ethernet + IPv4 (20) + TCP: flags at 47, SYN|ACK = 0x12.
    if (f.length < 54 || f.readUInt16BE(12) !== 0x0800 || f[23] !== 6 || (f[47]! & 0x12) !== 0x12) return;
    const port = f.readUInt16BE(36);
    const e = this.isns.get(port) ?? {};
    if (r === this.primary) e.primary ??= f.readUInt32BE(38);
    else e.secondary ??= f.readUInt32BE(38);
    this.isns.set(port, e);
  }

  /** Runs the world until `until()` or for at most `maxMs`. */
  run(maxMs: number, until: () => boolean = () => false): boolean {
    return this.world.run(until, maxMs);
  }

  /** Takes a checkpoint now (atomically: the sim has no link to stream it over). */
  checkpoint(reason: CheckpointReason | "manual", oneSided = false): CheckpointRecord {
    this.wanted = false;
    const p = this.primary.domain;
    const s = this.secondary.domain;
    const pd = p.collectDirty();
    const sd = s.collectDirty();
    const union = new Set<number>(pd);
    let secondaryOnly = 0;
    for (const pfn of sd) {
      if (union.has(pfn)) continue;
      secondaryOnly++;
      // `oneSided` is the negative control: what a Remus-style checkpoint would send.
      if (!oneSided) union.add(pfn);
    }
    const pfns = Uint32Array.from([...union].sort((a, b) => a - b));
    const data = Buffer.alloc(pfns.length * 4096);
    pfns.forEach((pfn, i) => {
      p.memory.page(pfn).copy(data, i * 4096);
    });
    s.applyPages(pfns, data);
    const sBlocks = s.collectDiskWrites();
    const bl = Uint32Array.from(new Set<number>([...p.collectDiskWrites(), ...(oneSided ? [] : sBlocks)]));
    const bdata = Buffer.alloc(bl.length * 4096);
    bl.forEach((b, i) => {
      p.disk.view(b).copy(bdata, i * 4096);
    });
    s.applyDiskBlocks(bl, bdata);
    s.loadVcpu(p.vcpu.regs);
    s.loadDevice(p.device.regs);
    s.resetLogs();
    // Why: the two-sided dirty set must leave the secondary exactly equal to the primary.
    const digestsEqual = s.digest() === p.digest();
    if (this.opts.reseed ?? true) s.vcpu.reseed(this.entropy.bytes(16));
    const held = this.comparator.reset(this.now);
    for (const f of held) this.toLanPrimary(f);
    if (!this.rewriter.failedOver) this.rewriter.reset();
    this.epoch++;
    // The secondary resumes once it has the checkpoint applied, a little after the primary: a round
    // trip and about 5 us a page (capture, wire, apply); its guest clock follows its own host's from then on.
    const resume = this.now + 0.5 + this.world.rng.float() + pfns.length * 0.005;
    this.secondary.busyUntil = resume;
    this.secondary.pacer.reset(resume, s.vcpu.ticks);
    const rec: CheckpointRecord = {
      at: this.now,
      reason,
      pages: pfns.length,
      secondaryOnly,
      digestsEqual,
      released: held.length,
    };
    this.checkpoints.push(rec);
    return rec;
  }

  /** The primary's host dies: what it had not yet mirrored is lost; the secondary takes over. */
  killPrimary(): void {
    this.primary.alive = false;
    this.mirror.clear();
    this.secOut.clear();
    this.failedOver = true;
    this.rewriter.failover();
    this.toLanSecondary = this.cluster.lan.attach(this.secondary, (f) => this.toSecondary(f));
    // A gratuitous ARP so the switch learns the guest's MAC on the secondary's port.
    const f = Buffer.alloc(42);
    encodeEth({ dst: Buffer.alloc(6, 0xff), src: GUEST.mac, type: 0x0806 }, f, 0);
    encodeArp({ op: 1, sha: GUEST.mac, spa: GUEST.ip, tha: Buffer.alloc(6), tpa: GUEST.ip }, f, 14);
    this.toLanSecondary(f);
  }

  /** The secondary's host dies: the primary goes on alone, releasing its output unchecked. */
  killSecondary(): void {
    this.secondary.alive = false;
    this.mirror.clear();
    this.secOut.clear();
    // Nobody to compare with: the primary is unprotected and releases what it held.
    for (const f of this.comparator.reset(this.now)) this.toLanPrimary(f);
  }

  /** Checkpoints by reason. */
  reasons(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.checkpoints) out[c.reason] = (out[c.reason] ?? 0) + 1;
    return out;
  }
}
