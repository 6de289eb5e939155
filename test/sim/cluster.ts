/**
 * Nodes in the simulated world: production's `Node` (src/node/node.ts), each
 * wrapped in a `SimNode` that gives it what a daemon gives it for real: a
 * step every millisecond of virtual time, replication connections (it dials
 * its `peer` while the node wants one), a LAN port, a store whose commits
 * complete after a persistence delay, and its persisted generation. Every
 * input reaches the node through its gate, which is where the node faults act:
 *
 *   kill(links)   the process dies: no more steps, input dropped; its
 *                 connections are reset, closed after their data, or go silent
 *   pause(ms)     SIGSTOP: no steps and no input while the others run; then it
 *                 resumes with its clock jumped, and what queued for it arrives
 *   restart()     a dead node starts again as its command says (a fresh domain;
 *                 the persisted generation and store survive)
 *   jump(ms)      its monotonic clock leaps forward (its lease deadline is
 *                 on that clock: a jump can only shorten the lease)
 *
 * With `lease` in the options the cluster has a lease service (the
 * linearizable MemoryLeaseStore of src/lease/memory.ts, on the world's clock,
 * with its own faults: a node cut from it, slow answers) and every node runs
 * production's `Lease` against it on its own clock, its timers and answers
 * passing the node's gate (a paused node hears nothing, a dead one never).
 *
 * `Cluster` holds the nodes, the replication network, the LAN, the clients
 * and the history the checkers read.
 */
import type { CompareConfig } from "../../src/colo/compare.js";
import type { PinnedConfig } from "../../src/domain/config.js";
import type { DivergenceSwitch } from "../../src/domain/divergence.js";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { PlainMemory } from "../../src/domain/memory.js";
import { formatStandaloneHeap } from "../../src/guest/mm.js";
import { parseWorkload } from "../../src/guest/workload.js";
import { Lease } from "../../src/lease/lease.js";
import { MemoryLeaseStore } from "../../src/lease/memory.js";
import type { Cancel, LeaseService } from "../../src/lease/service.js";
import type { LeaseTiming } from "../../src/lease/spec.js";
import { NetStack } from "../../src/net/stack.js";
import { Node, type NodeEvent, type NodeRole } from "../../src/node/node.js";
import { InlineWorkers } from "../../src/pipeline/inline.js";
import type { PageWorkers } from "../../src/pipeline/pool.js";
import type { Prng } from "../../src/prng.js";
import type { BackupStore } from "../../src/replication/backup.js";
import { Partitions } from "./faults.js";
import { History } from "./history.js";
import { SimLan } from "./lan.js";
import { type Endpoint, ReplNet, type SimPort } from "./repl.js";
import { type Scheduled, World } from "./world.js";

export interface ClusterOptions {
  readonly domainMiB?: number;
  readonly diskMiB?: number;
  /** The primary's workload (default: a zipf dirtier and a disk writer). */
  readonly workload?: string;
  readonly intervalMs?: number;
  readonly batchPages?: number;
  readonly verify?: boolean;
  readonly heartbeatMs?: number;
  readonly misses?: number;
  readonly key?: Buffer;
  /** Give the guest a NIC, a TCP/IP stack and its network services. */
  readonly net?: { mac: Uint8Array; ip: number };
  /**
   * Page workers: jobs run on the node's thread `deferred` (each after a
   * seeded 0-2 ms, so they finish out of order as on threads: the default)
   * or at once when submitted.
   */
  readonly workers?:
    | "deferred"
    | "at-once"
    | ((node: string, defer: (run: () => void) => void) => PageWorkers);
  /** The replication path's budget per step in pages and blocks (default 96: syncs take many steps). */
  readonly turnUnits?: number;
  /** Batches of at most this many pages go inline (default: 0 on even seeds, 24 on odd ones). */
  readonly inlinePages?: number;
  /** Checkpoints in flight at most, and their bytes (adaptive epochs). */
  readonly maxInFlight?: number;
  readonly maxInFlightBytes?: number;
  /**
   * The dialler's first backoff after a connection to the peer ended or was
   * refused; it doubles up to 50 times that and resets once a connection
   * opens (the daemon's Dialer: 100 ms doubling to 5 s, with jitter).
   */
  readonly redialMs?: number;
  /** Replication mode of every node, or of each by name (default remus). */
  readonly mode?: "remus" | "colo" | ((node: string) => "remus" | "colo");
  /** COLO: the comparator's limits. */
  readonly compare?: Partial<CompareConfig>;
  /** Divergence injected into each node's guest (COLO tests), by node name. */
  readonly divergence?: (node: string) => DivergenceSwitch | undefined;
  /** A backup's own domain size before it adopts its primary's (DOMAIN_CONFIG; default: the primary's). */
  readonly backupDomainMiB?: number;
  /** The domain settings a backup is given explicitly (they must agree with its primary's). */
  readonly pinned?: PinnedConfig;
  /** A lease service and its timing (absent: generation-only fencing). */
  readonly lease?: LeaseTiming;
}

/** The lease timing of the simulations: a TTL of two heartbeat timeouts (with the defaults, 200 ms). */
export const SIM_LEASE: LeaseTiming = {
  ttlMs: 200,
  marginMs: 20,
  renewEveryMs: 60,
  retryMs: 20,
  requestTimeoutMs: 60,
};

/** A store whose commits complete after a persistence delay (`slow`), in order. */
export class SimStore implements BackupStore {
  private delayMs = 0;
  private jitterMs = 0;
  private lastDone = Number.NEGATIVE_INFINITY;
  private readonly rng: Prng;
  commits = 0;
  committed = 0;
  generation = 0;
  valid = false;

  constructor(
    private readonly world: World,
    /** Where a completion goes: the gate of the node incarnation that committed. */
    private readonly gate: () => (fn: () => void) => void,
    label: string,
  ) {
    this.rng = world.stream(`store:${label}`);
  }

  /** Each commit takes `ms` plus up to `jitterMs` more (still completing in order). */
  slow(ms: number, jitterMs = 0): this {
    this.delayMs = ms;
    this.jitterMs = jitterMs;
    return this;
  }

  commit(
    epoch: number,
    generation: number,
    _blocks: ArrayLike<number>,
    _dataOf: (block: number) => Uint8Array,
    _full: boolean,
    done: (err?: Error) => void,
  ): void {
    const jitter = this.jitterMs > 0 ? this.rng.float() * this.jitterMs : 0;
    const at = Math.max(this.world.now + this.delayMs + jitter, this.lastDone);
    this.lastDone = at;
    const gate = this.gate();
    this.world.at(at, () => {
      this.commits++;
      this.committed = epoch;
      this.generation = Math.max(this.generation, generation);
      this.valid = true;
      gate(() => done());
    });
  }

  invalidate(): void {
    this.valid = false;
  }

  saveGeneration(generation: number): void {
    this.generation = Math.max(this.generation, generation);
  }
}

export type NodeStatus = "up" | "paused" | "dead";

/** How a killed node's connections end: reset now, closed after their data (FIN), or silent (host gone). */
export type LinkDeath = "reset" | "close" | "silent";

/** When a paused node resumes: what queued for it first (libuv reads ready sockets before its next timers), or its own timers first. */
export type Wake = "input-first" | "timers-first";

export class SimNode implements Endpoint {
  private current: Node | undefined;
  domain!: Domain;
  status: NodeStatus = "up";
  /** The node this one dials while its node wants a peer. */
  peer: SimNode | undefined;
  /** Accepts connections. */
  listening = true;
  readonly store: SimStore;
  /** The generation persisted as the daemon's state file would. */
  persistedGeneration = 0;
  /** Bumped by every restart; input for an older incarnation is dropped. */
  incarnation = 0;
  readonly nodeId: Buffer;
  private inbox: (() => void)[] = [];
  private stepper: Scheduled | undefined;
  private nextDialAt = 0;
  private dialDelay: number;
  private dialled: SimPort | undefined;
  private readonly dialRng: Prng;
  private readonly toLan: (f: Uint8Array) => void;
  /** How far this node's monotonic clock is ahead of the world's (clock jumps). */
  private skew = 0;
  /** The lease of the running incarnation (with a lease service). */
  lease: Lease | undefined;

  constructor(
    readonly cluster: Cluster,
    readonly name: string,
    /** The role this node's command starts it in (at creation and at every restart). */
    public startRole: NodeRole,
  ) {
    const w = cluster.world;
    this.nodeId = w.stream(`id:${name}`).bytes(16);
    this.dialDelay = cluster.opts.redialMs ?? 10;
    this.dialRng = w.stream(`dial:${name}`);
    this.store = new SimStore(w, () => this.gateOf(this.incarnation), name);
    this.toLan = cluster.lan.attach(this, (f) => {
      this.node.lanInput(f);
      this.flushSoon();
    });
    this.boot();
  }

  get world(): World {
    return this.cluster.world;
  }

  /** This node's monotonic clock. */
  get now(): number {
    return this.world.now + this.skew;
  }

  /** The node's clock leaps forward by `ms` (a monotonic clock never goes back). */
  jump(ms: number): void {
    this.skew += Math.max(0, ms);
  }

  /** The running incarnation's node. */
  get node(): Node {
    if (!this.current) throw new Error(`${this.name} has no node`);
    return this.current;
  }

  get reachable(): boolean {
    return this.status !== "dead" && this.listening;
  }

  /**
   * As the daemon's setImmediate: right after this instant's input, a node
   * whose guest has input waiting flushes (its receive interrupt). Coalesced;
   * a paused node flushes when it wakes (its inbox), a dead one never. (A
   * backup's receive-path `busy` is left to its steps here: its work may wait
   * on page jobs scheduled later in virtual time.)
   */
  flushSoon(): void {
    if (this.soonPending || !this.current?.rxWaiting) return;
    this.soonPending = true;
    const inc = this.incarnation;
    this.world.after(0, () => {
      this.soonPending = false;
      this.gateOf(inc)(() => this.node.flush(this.now));
    });
  }
  private soonPending = false;

  /** The gate of the current incarnation. */
  input(fn: () => void): void {
    this.gateOf(this.incarnation)(fn);
  }

  /** A gate that lets input reach incarnation `inc` only: at once when up, queued when paused, dropped when dead. */
  gateOf(inc: number): (fn: () => void) => void {
    return (fn) => {
      if (inc !== this.incarnation || this.status === "dead") return;
      if (this.status === "paused") this.inbox.push(fn);
      else fn();
    };
  }

  private boot(): void {
    const c = this.cluster;
    const o = c.opts;
    const w = this.world;
    const mib = this.startRole === "backup" ? (o.backupDomainMiB ?? o.domainMiB ?? 2) : (o.domainMiB ?? 2);
    this.domain = new Domain(geometryOfMiB(mib, o.diskMiB ?? 1));
    this.domain.divergence = o.divergence?.(this.name);
    const generation =
      this.startRole === "primary"
        ? this.persistedGeneration
        : Math.max(this.persistedGeneration, this.store.generation);
    this.current = undefined;
    const inc = this.incarnation;
    const jobRng = w.stream(`jobs:${this.name}:${inc}`);
    const defer = (run: () => void) => {
      w.after(jobRng.float() * 2, () => this.gateOf(inc)(run));
    };
    const workers =
      typeof o.workers === "function"
        ? o.workers(this.name, defer)
        : new InlineWorkers(o.workers === "at-once" ? {} : { defer });
    this.lease?.abandon();
    this.lease = c.leaseStore && o.lease ? this.newLease(c.leaseStore, o.lease, inc) : undefined;
    this.current = new Node({
      domain: this.domain,
      key: o.key ?? Buffer.from("simulation-key"),
      nodeId: this.nodeId,
      software: "sim",
      entropy: w.stream(`entropy:${this.name}:${this.incarnation}`),
      config: {
        intervalMs: o.intervalMs ?? 5,
        compress: true,
        heartbeat: { intervalMs: o.heartbeatMs ?? 20, misses: o.misses ?? 5 },
        maxInFlight: o.maxInFlight ?? 1,
        ...(o.maxInFlightBytes !== undefined ? { maxInFlightBytes: o.maxInFlightBytes } : {}),
        verify: o.verify ?? true,
        outputCommit: true,
        batchPages: o.batchPages ?? 64,
        highWaterBytes: 1 << 20,
        turnUnits: o.turnUnits ?? 96,
        // Half the seeds send every batch through the (deferred) workers, half keep small ones inline.
        inlinePages: o.inlinePages ?? (w.seed % 2 === 0 ? 0 : 24),
        ...(o.mode ? { mode: typeof o.mode === "function" ? o.mode(this.name) : o.mode } : {}),
        ...(o.compare ? { compare: o.compare } : {}),
      },
      workers,
      store: this.store,
      io: {
        sendLan: (f, epoch) => this.sendLan(f, epoch),
        emit: (e) => this.emit(e),
        saveGeneration: (g) => {
          this.persistedGeneration = Math.max(this.persistedGeneration, g);
        },
      },
      start:
        this.startRole === "primary"
          ? {
              role: "primary",
              boot: {
                seed: w.seed,
                workload: parseWorkload(o.workload ?? "dirty:rate=30000,hot=0.2,pattern=zipf+disk:rate=256"),
                ...(o.net ? { net: o.net } : {}),
              },
            }
          : { role: "backup", ...(o.pinned ? { pinned: o.pinned } : {}) },
      generation,
      hrClock: () => this.now,
      ...(this.lease ? { lease: this.lease } : {}),
    });
    this.status = "up";
    this.startStepping(Math.floor(w.now) + 1);
  }

  /** Production's lease on this node's clock, its timers and the service's answers through the gate of incarnation `inc`. */
  private newLease(store: MemoryLeaseStore, timing: LeaseTiming, inc: number): Lease {
    const gate = this.gateOf(inc);
    const w = this.world;
    const s = store.client(this.name);
    const g =
      <A>(reply: (a: A) => void) =>
      (a: A) =>
        gate(() => reply(a));
    const service: LeaseService = {
      grant: (ttl, r) => s.grant(ttl, g(r)),
      keepAlive: (id, r) => s.keepAlive(id, g(r)),
      revoke: (id, r) => s.revoke(id, g(r)),
      campaign: (id, cand, since, r, from) => s.campaign(id, cand, since, g(r), from),
      advance: (id, from, r) => s.advance(id, from, g(r)),
      holder: (r) => s.holder(g(r)),
      watchHolder: (fn) => s.watchHolder((h) => gate(() => fn(h))),
      close: () => s.close(),
    };
    const lease = new Lease({
      service,
      timing,
      candidate: { nodeId: this.name, address: `sim://${this.name}`, control: `sim://${this.name}/api` },
      clock: {
        now: () => this.now,
        after: (ms, fn): Cancel => {
          let live = true;
          const ev = w.after(Math.max(0, ms), () => gate(() => live && fn()));
          return {
            cancel: () => {
              live = false;
              ev.cancel();
            },
          };
        },
        wallTime: () => new Date(Date.UTC(2026, 0, 1) + this.now).toISOString(),
      },
    });
    lease.on((e) => this.cluster.history.lease(w.now, this.name, e));
    return lease;
  }

  private startStepping(first: number): void {
    this.stepper = this.world.every(1, () => this.step(), first);
  }

  private step(): void {
    const now = this.world.now;
    this.node.step(this.now);
    if (this.dialled && !this.dialled.open) {
      this.dialled = undefined;
      this.backoff();
    }
    const peer = this.peer;
    if (peer && !this.dialled && this.node.wantsPeer && now >= this.nextDialAt) {
      this.dialled = this.cluster.dial(this, peer);
      if (this.dialled) this.dialDelay = this.cluster.opts.redialMs ?? 10;
      else this.backoff();
    }
  }

  /** The next dial waits the backoff, with jitter; the backoff doubles. */
  private backoff(): void {
    const base = this.cluster.opts.redialMs ?? 10;
    this.nextDialAt = this.world.now + this.dialDelay * (0.75 + this.dialRng.float() * 0.5);
    this.dialDelay = Math.min(base * 50, this.dialDelay * 2);
  }

  private sendLan(f: Buffer, epoch: number): void {
    const n = this.current; // unset while the node is being built (its first ARP)
    const p = n?.primary;
    this.cluster.history.release(
      this.world.now,
      this.name,
      epoch,
      n?.generation ?? this.persistedGeneration,
      p?.outputMustWait ?? false,
      p?.committed ?? 0,
    );
    this.toLan(f);
  }

  private emit(e: NodeEvent): void {
    const n = this.current;
    // Metrics-only events stay out of the history: no checker reads them, and they are many.
    if (e.type !== "replication.bytes" && e.type !== "heartbeat.rtt") {
      this.cluster.history.event(this.world.now, this.name, n?.generation ?? 0, e);
    }
    for (const l of this.cluster.listeners) l(this, e);
  }

  /** The process dies. */
  kill(links: LinkDeath = "reset"): void {
    if (this.status === "dead") return;
    this.status = "dead";
    this.stepper?.cancel();
    // The process is gone: its lease is neither renewed nor revoked (it expires at the service).
    this.lease?.abandon();
    this.inbox = [];
    const repl = this.cluster.repl;
    if (links === "reset") repl.cut(this.name, `${this.name} died`);
    else if (links === "close") repl.closeAll(this.name, `${this.name} died`);
  }

  /**
   * The process stops for `ms` (SIGSTOP), then continues (SIGCONT) with its
   * clock jumped; what arrived meanwhile is delivered in order.
   */
  pause(ms: number, wake: Wake = "input-first"): void {
    if (this.status !== "up") return;
    this.status = "paused";
    this.stepper?.cancel();
    const inc = this.incarnation;
    this.world.after(ms, () => {
      if (this.status !== "paused" || this.incarnation !== inc) return;
      this.status = "up";
      if (wake === "timers-first") {
        this.step();
        this.drain();
        this.startStepping(this.world.now + 1);
      } else {
        this.drain();
        this.startStepping(this.world.now);
      }
    });
  }

  /** A dead node starts again, as its command says (or as `role`: the operator changed the command). */
  restart(role: NodeRole = this.startRole): void {
    if (this.status !== "dead") throw new Error(`${this.name} is ${this.status}, not dead`);
    this.startRole = role;
    this.incarnation++;
    this.nextDialAt = 0;
    this.dialled = undefined;
    this.dialDelay = this.cluster.opts.redialMs ?? 10;
    this.boot();
  }

  private drain(): void {
    while (this.inbox.length > 0 && this.status === "up") (this.inbox.shift() as () => void)();
  }
}

/** A client on the LAN: a TCP/IP stack of its own (the code the guest runs), polled every millisecond. */
export class SimClient implements Endpoint {
  readonly stack: NetStack;
  readonly reachable = true;
  private readonly toLan: (f: Uint8Array) => void;

  constructor(
    readonly cluster: Cluster,
    readonly name: string,
    addr: { mac: Uint8Array; ip: number },
  ) {
    const w = cluster.world;
    const mem = new PlainMemory(16 * 1024 * 1024);
    const heap = formatStandaloneHeap(mem);
    const rng = w.stream(`client:${name}`);
    this.toLan = cluster.lan.attach(this, (f) => this.stack.input(f));
    const env = {
      mem,
      heap,
      now: () => Math.floor(w.now),
      random32: () => rng.u32(),
      transmit: (f: Uint8Array) => {
        this.toLan(f);
        return true;
      },
    };
    this.stack = new NetStack(
      env,
      NetStack.format(env, { mac: addr.mac, ip: addr.ip, minRtoMs: 200, timeWaitMs: 1000 }),
    );
    w.every(1, () => this.stack.poll());
  }

  input(fn: () => void): void {
    fn();
  }
}

export class Cluster {
  readonly partitions = new Partitions();
  /** The lease service (with `opts.lease`). */
  readonly leaseStore: MemoryLeaseStore | undefined;
  readonly repl: ReplNet;
  readonly lan: SimLan;
  readonly history = new History();
  readonly nodes = new Map<string, SimNode>();
  /** Called for every event any node emits (after the history has it). */
  readonly listeners: ((node: SimNode, e: NodeEvent) => void)[] = [];

  constructor(
    readonly world: World,
    readonly opts: ClusterOptions = {},
  ) {
    this.repl = new ReplNet(world, this.partitions);
    this.lan = new SimLan(world, this.partitions);
    if (opts.lease) {
      const rng = world.stream("lease-service");
      this.leaseStore = new MemoryLeaseStore(
        { now: () => world.now, after: (ms, fn) => world.after(ms, fn) },
        { latencyMs: () => 0.2 + rng.float() * 0.6 },
      );
    }
  }

  addNode(name: string, role: NodeRole): SimNode {
    const n = new SimNode(this, name, role);
    this.nodes.set(name, n);
    return n;
  }

  addClient(name: string, addr: { mac: Uint8Array; ip: number }): SimClient {
    return new SimClient(this, name, addr);
  }

  node(name: string): SimNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  /** Cuts every path between the groups of nodes (and clients) until `heal`. */
  partition(...groups: readonly (readonly (SimNode | SimClient | string)[])[]): void {
    this.partitions.partition(...groups.map((g) => g.map((x) => (typeof x === "string" ? x : x.name))));
  }

  heal(): void {
    this.partitions.heal();
  }

  /** `from` dials `to`: both nodes get their end of a new connection; returns `from`'s (undefined: refused). */
  dial(from: SimNode, to: SimNode): SimPort | undefined {
    const ends = this.repl.connect(from, to);
    if (!ends) return undefined;
    this.wire(from, ends[0]);
    this.wire(to, ends[1]);
    return ends[0];
  }

  /** Hands `port` to the node's current incarnation, and routes the port's input to it. */
  private wire(sn: SimNode, port: SimPort): void {
    const node = sn.node;
    const inc = sn.incarnation;
    port.onFrame = (d) => {
      if (sn.incarnation !== inc) return;
      node.frame(port, d, sn.now);
      sn.flushSoon();
    };
    port.onClose = (r) => {
      if (sn.incarnation === inc) node.detach(port, sn.now, r);
    };
    sn.gateOf(inc)(() => node.attach(port, sn.now));
  }

  /**
   * A connection from someone who is not a node to `to` (a stranger, a
   * replayed session): returns the stranger's end, whose frames the test handles.
   */
  stranger(name: string, to: SimNode): SimPort {
    const me: Endpoint = { name, reachable: true, input: (fn) => fn() };
    const ends = this.repl.connect(me, to);
    if (!ends) throw new Error(`${to.name} cannot be reached`);
    this.wire(to, ends[1]);
    return ends[0];
  }
}

/** A primary `a` (dialling `b`) and a backup `b`, not yet run. */
export function pairOf(
  seed: number,
  opts: ClusterOptions = {},
): { world: World; cluster: Cluster; a: SimNode; b: SimNode } {
  const world = new World(seed);
  const cluster = new Cluster(world, opts);
  const a = cluster.addNode("a", "primary");
  const b = cluster.addNode("b", "backup");
  a.peer = b;
  // With a lease either node may become the primary that dials the other.
  if (opts.lease) b.peer = a;
  return { world, cluster, a, b };
}

/** `pairOf`, run until `a` is protected (at most `maxMs`). */
export function protectedPair(
  seed: number,
  opts: ClusterOptions = {},
  maxMs = 3000,
): { world: World; cluster: Cluster; a: SimNode; b: SimNode } {
  const p = pairOf(seed, opts);
  p.world.run(() => p.a.node.state === "protected", maxMs);
  return p;
}

/** The guest's and the client's LAN addresses in the network simulations. */
export const GUEST = { mac: Buffer.from([2, 0, 0, 0, 0, 0x10]), ip: 0x0a00000a };
export const CLIENT = { mac: Buffer.from([2, 0, 0, 0, 1, 0]), ip: 0x0a000064 };

/** A protected pair whose guest is on the LAN, with a client beside it (the network simulations). */
export function netPair(
  seed: number,
  opts: ClusterOptions = {},
): { world: World; cluster: Cluster; a: SimNode; b: SimNode; client: SimClient } {
  const p = pairOf(seed, { batchPages: 32, domainMiB: 8, net: GUEST, ...opts });
  const client = p.cluster.addClient("client", CLIENT);
  p.world.run(() => p.a.node.state === "protected", 3000);
  return { ...p, client };
}
