/**
 * A seeded COLO simulation in virtual time: two replicas of one guest (two
 * Domains booted with the same seed), each paced by its own host's loop, a
 * virtual LAN with a client TCP/IP stack, and between them the COLO data
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
 * and runs the guest ticks its wall clock says are due, the mirror link adds
 * latency, the secondary resumes after each checkpoint a little later than
 * the primary, and the secondary's guest draws its own random numbers.
 *
 * `killPrimary()` fails over: the secondary takes the LAN (gratuitous ARP),
 * its rewriter turns permanent, and its guest carries on from its own state.
 */
import { type CheckpointReason, Comparator, type CompareConfig } from "../../src/colo/compare.js";
import { SeqRewriter } from "../../src/colo/rewriter.js";
import type { DivergenceSwitch } from "../../src/domain/divergence.js";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { PlainMemory } from "../../src/domain/memory.js";
import { bootGuest } from "../../src/guest/guest.js";
import { Kernel } from "../../src/guest/kernel.js";
import { formatStandaloneHeap } from "../../src/guest/mm.js";
import { Nic } from "../../src/guest/nic.js";
import { parseWorkload } from "../../src/guest/workload.js";
import { NetStack } from "../../src/net/stack.js";
import { encodeArp, encodeEth } from "../../src/net/wire.js";
import { mulberry32, mulberry32u32 } from "../../src/prng.js";
import { CLIENT, GUEST, SimLan } from "../replication/netsim.js";

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
class Replica {
  readonly domain: Domain;
  readonly nic: Nic;
  alive = true;
  nextTurn = 0;
  private wallBase = 0;
  private tickBase = 0;
  turns = 0;

  constructor(
    readonly name: string,
    opts: ColoSimOptions,
    private readonly rand: () => number,
  ) {
    this.domain = new Domain(geometryOfMiB(opts.domainMiB ?? 8, 4));
    bootGuest(this.domain, {
      seed: opts.seed,
      workload: parseWorkload(opts.workload ?? "idle"),
      net: GUEST,
    });
    this.nic = new Nic(this.domain);
  }

  get kernel(): Kernel {
    return new Kernel(this.domain);
  }

  /** The guest's clock starts following this host's clock from `now` (boot, or resuming after a checkpoint). */
  rebase(now: number): void {
    this.wallBase = now;
    this.tickBase = this.domain.vcpu.ticks;
  }

  /** One loop turn at `now`: the ticks the host clock says are due (at most 20, as the daemon does). */
  turn(now: number): number {
    this.turns++;
    // The next turn: usually within a millisecond; now and then the host is busy for a few.
    this.nextTurn = now + 0.3 + this.rand() * 0.9 + (this.rand() < 0.01 ? 2 + this.rand() * 6 : 0);
    const due = Math.floor(now - this.wallBase) - (this.domain.vcpu.ticks - this.tickBase);
    const n = Math.min(Math.max(due, 0), 20);
    if (n > 0) this.kernel.run(n);
    return n;
  }
}

interface InFlight {
  at: number;
  epoch: number;
  frame: Buffer;
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
  readonly lan: SimLan;
  readonly client: NetStack;
  readonly primary: Replica;
  readonly secondary: Replica;
  readonly comparator: Comparator;
  readonly rewriter: SeqRewriter;
  readonly checkpoints: CheckpointRecord[] = [];
  /** Primary and secondary ISNs of every connection the guests accepted, by client port. */
  readonly isns = new Map<number, { primary?: number; secondary?: number }>();
  now = 0;
  epoch = 1;
  failedOver = false;
  released = 0;
  private readonly rand: () => number;
  private readonly entropy: () => number;
  private readonly toLanPrimary: (f: Uint8Array) => void;
  private toLanSecondary: ((f: Uint8Array) => void) | undefined;
  private mirror: InFlight[] = [];
  private secOut: InFlight[] = [];
  private wanted: CheckpointReason | undefined;

  constructor(readonly opts: ColoSimOptions) {
    this.rand = mulberry32(opts.seed ^ 0x5eed);
    this.entropy = mulberry32u32(opts.seed ^ 0xe17);
    this.primary = new Replica("primary", opts, mulberry32(opts.seed ^ 0x1111));
    this.secondary = new Replica("secondary", opts, mulberry32(opts.seed ^ 0x2222));
    this.primary.domain.divergence = opts.primaryDivergence;
    this.secondary.domain.divergence = opts.secondaryDivergence;
    if (opts.reseed ?? true) this.secondary.domain.vcpu.reseed(this.entropyBytes());
    this.lan = new SimLan(mulberry32(opts.seed ^ 0x1234567));
    this.toLanPrimary = this.lan.attach("primary", (f) => this.fromLanToPrimary(f));
    this.comparator = new Comparator(
      opts.compare ?? {},
      {
        release: (f) => {
          this.released++;
          this.toLanPrimary(f);
        },
        checkpoint: (reason) => {
          this.wanted = reason;
        },
      },
      0,
    );
    this.rewriter = new SeqRewriter({
      toGuest: (f) => this.secondary.nic.deliver(f),
      toWire: (f) => {
        if (this.failedOver) this.toLanSecondary?.(f);
        else this.secOut.push({ at: this.linkDelay(this.secOut), epoch: this.epoch, frame: f });
      },
    });
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
    this.primary.rebase(0);
    this.secondary.rebase(0);
  }

  private entropyBytes(): Buffer {
    const b = Buffer.alloc(16);
    for (let i = 0; i < 16; i += 4) b.writeUInt32LE(this.entropy(), i);
    return b;
  }

  private linkDelay(q: InFlight[]): number {
    const [lo, hi] = this.opts.linkMs ?? [0.05, 0.4];
    // In order, like the TCP connection between the hosts.
    return Math.max(this.now + lo + this.rand() * (hi - lo), q[q.length - 1]?.at ?? 0);
  }

  /** A frame from the LAN for the guest: into the primary's NIC, and mirrored to the secondary. */
  private fromLanToPrimary(f: Buffer): void {
    if (!this.primary.alive) return;
    this.primary.nic.deliver(f);
    this.mirror.push({ at: this.linkDelay(this.mirror), epoch: this.epoch, frame: Buffer.from(f) });
  }

  private toSecondary(f: Buffer): void {
    if (this.opts.rewrite ?? true) this.rewriter.inbound(f);
    else this.secondary.nic.deliver(f);
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
      else if (this.failedOver) this.toLanSecondary?.(f);
      else this.secOut.push({ at: this.linkDelay(this.secOut), epoch: this.epoch, frame: f });
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

  /** Advances virtual time by `ms` in steps of a quarter millisecond. */
  run(ms: number, each?: (now: number) => void): void {
    const end = this.now + ms;
    while (this.now < end - 1e-9) {
      this.step();
      each?.(this.now);
    }
  }

  step(): void {
    const t = this.now + 0.25;
    this.lan.advance(t);
    this.now = t;
    while (this.mirror.length > 0 && this.mirror[0]!.at <= t) {
      const m = this.mirror.shift()!;
      // Why: input mirrored before a checkpoint is already in the state the secondary received.
      if (m.epoch === this.epoch && this.secondary.alive) this.toSecondary(m.frame);
    }
    while (this.secOut.length > 0 && this.secOut[0]!.at <= t) {
      const s = this.secOut.shift()!;
      // Why: output of a secondary state that a checkpoint replaced compares with nothing.
      if (s.epoch === this.epoch && this.primary.alive && !this.failedOver)
        this.comparator.secondary(s.frame, t);
    }
    for (const r of [this.primary, this.secondary]) {
      if (!r.alive || r.nextTurn > t) continue;
      r.turn(t);
      this.pump(r);
    }
    if (this.primary.alive && this.secondary.alive) {
      this.comparator.poll(t);
      if (this.wanted !== undefined) this.checkpoint(this.wanted);
    }
    this.client.poll();
  }

  /** Takes a checkpoint now (atomically: the sim has no link to stream it over). */
  checkpoint(reason: CheckpointReason | "manual", oneSided = false): CheckpointRecord {
    this.wanted = undefined;
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
    const blocks = new Set<number>([...p.collectDiskWrites(), ...(oneSided ? [] : sBlocks)]);
    const bl = Uint32Array.from(blocks);
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
    if (this.opts.reseed ?? true) s.vcpu.reseed(this.entropyBytes());
    const held = this.comparator.reset(this.now);
    for (const f of held) this.toLanPrimary(f);
    if (!this.rewriter.failedOver) this.rewriter.reset();
    this.epoch++;
    // The secondary resumes once it has applied the checkpoint, a little after the primary.
    const resume = this.now + 0.5 + this.rand() * 3;
    this.secondary.nextTurn = resume;
    this.secondary.rebase(resume);
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
    this.mirror = [];
    this.secOut = [];
    this.failedOver = true;
    this.rewriter.failover();
    this.toLanSecondary = this.lan.attach("secondary", (f) => this.toSecondary(f));
    // A gratuitous ARP so the switch learns the guest's MAC on the secondary's port.
    const f = Buffer.alloc(42);
    encodeEth({ dst: Buffer.alloc(6, 0xff), src: GUEST.mac, type: 0x0806 }, f, 0);
    encodeArp({ op: 1, sha: GUEST.mac, spa: GUEST.ip, tha: Buffer.alloc(6), tpa: GUEST.ip }, f, 14);
    this.toLanSecondary(f);
  }

  /** The secondary's host dies: the primary goes on alone, releasing its output unchecked. */
  killSecondary(): void {
    this.secondary.alive = false;
    this.mirror = [];
    this.secOut = [];
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
