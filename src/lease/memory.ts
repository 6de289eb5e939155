/**
 * A linearizable in-memory lease service for simulations: one store (the
 * "etcd") on a virtual clock, and one client per node implementing
 * LeaseService. Its faults are an API: the whole service `unavailable`,
 * `slow` answers, and a node `cut` from it (its requests and answers vanish;
 * the node's own timeouts notice).
 *
 * Linearizability: a request reaches the store `latency` after it was sent
 * and takes effect atomically at that instant; its answer leaves then and
 * arrives `latency` later. A lease expires `ttl` after the instant its grant
 * or last keep-alive took effect: then its key is deleted (as etcd does) and
 * the watchers hear of it. So, as with etcd, no lease expires before `ttl`
 * after the node sent the request that refreshed it.
 */
import { type Candidate, decodeRecord, encodeRecord, type LeaderRecord } from "./record.js";
import {
  type Answer,
  type CampaignResult,
  type Cancel,
  fail,
  type Grant,
  type KeepAlive,
  type LeaseService,
  ok,
  type Reply,
} from "./service.js";

/** The store's clock: virtual ms and timers on it (a simulated world adapts to this). */
export interface Scheduler {
  now(): number;
  after(ms: number, fn: () => void): Cancel;
}

export interface MemoryLeaseOptions {
  /** One-way delay of a request or an answer, in ms (a seeded draw per message, or a constant). */
  readonly latencyMs?: number | (() => number);
  /** The store raises shorter TTLs to this (etcd's minimum TTL). */
  readonly minTtlMs?: number;
}

interface StoredLease {
  readonly ttlMs: number;
  expiresAt: number;
  timer: Cancel;
}

/** What happened at the store, in order: the simulation's checkers read it. */
export type StoreEntry =
  | {
      readonly t: number;
      readonly kind: "acquired" | "advanced";
      readonly record: LeaderRecord;
      readonly leaseId: string;
    }
  | {
      readonly t: number;
      readonly kind: "expired" | "revoked";
      readonly leaseId: string;
      readonly record?: LeaderRecord;
    };

export class MemoryLeaseStore {
  /** The history of the leader key. */
  readonly history: StoreEntry[] = [];
  private readonly leases = new Map<string, StoredLease>();
  private leader: { value: Buffer; leaseId: string } | undefined;
  private generation = 0;
  /** The lease under which the counter was last set. */
  private generationBy: string | undefined;
  private nextId = 1;
  private readonly watchers = new Set<{ node: string; fn: (h: LeaderRecord | undefined) => void }>();
  private unavailable = false;
  private extraMs = 0;
  private readonly slowNodes = new Map<string, number>();
  private readonly cutNodes = new Set<string>();
  private readonly latency: () => number;
  private readonly minTtlMs: number;

  constructor(
    private readonly sched: Scheduler,
    o: MemoryLeaseOptions = {},
  ) {
    const l = o.latencyMs ?? 0.5;
    this.latency = typeof l === "number" ? () => l : l;
    this.minTtlMs = o.minTtlMs ?? 0;
  }

  /** The client a node uses. */
  client(node: string): LeaseService {
    return new MemoryLeaseClient(this, node);
  }

  // ---- faults ----

  /** Every request is answered with `unavailable` (no quorum) until turned off. */
  setUnavailable(on: boolean): void {
    this.unavailable = on;
  }

  /**
   * Slow answers: adds `ms` to the answer leg of every request (of `node`'s
   * requests only, when named), and to watch notifications; 0: back to normal.
   */
  setSlow(ms: number, node?: string): void {
    const v = Math.max(0, ms);
    if (node === undefined) this.extraMs = v;
    else if (v === 0) this.slowNodes.delete(node);
    else this.slowNodes.set(node, v);
  }

  /** `node`'s requests and answers are lost until `heal`. */
  cut(node: string): void {
    this.cutNodes.add(node);
  }

  heal(node: string): void {
    this.cutNodes.delete(node);
  }

  isCut(node: string): boolean {
    return this.cutNodes.has(node);
  }

  // ---- inspection ----

  /** The holder now, as the store sees it. */
  get holder(): LeaderRecord | undefined {
    return this.leader ? decodeRecord(this.leader.value) : undefined;
  }

  get currentGeneration(): number {
    return this.generation;
  }

  /** When lease `id` expires (store time), if it exists. */
  expiryOf(id: string): number | undefined {
    return this.leases.get(id)?.expiresAt;
  }

  // ---- the message path ----

  /**
   * Carries a request from `node` to the store and its answer back: each leg
   * takes `latency`, the answer leg also what `setSlow` added; a cut node
   * loses either leg; an unavailable store answers without applying.
   */
  deliver<T>(node: string, apply: () => Answer<T>, reply: Reply<T>): void {
    if (this.cutNodes.has(node)) return;
    this.sched.after(this.latencyOf(), () => {
      if (this.cutNodes.has(node)) return;
      const answer = this.unavailable ? fail<T>("unavailable", "lease service unavailable") : apply();
      this.sched.after(this.answerDelay(node), () => {
        if (!this.cutNodes.has(node)) reply(answer);
      });
    });
  }

  watch(node: string, fn: (h: LeaderRecord | undefined) => void): Cancel {
    const w = { node, fn };
    this.watchers.add(w);
    return { cancel: () => this.watchers.delete(w) };
  }

  // ---- operations, applied atomically at the store's now ----

  grant(ttlMs: number): Answer<Grant> {
    const ttl = Math.max(Math.ceil(ttlMs), this.minTtlMs);
    if (!(ttl > 0)) return fail("unavailable", "TTL must be positive");
    const id = String(this.nextId++);
    const l: StoredLease = { ttlMs: ttl, expiresAt: 0, timer: { cancel: () => {} } };
    this.leases.set(id, l);
    this.refresh(id, l);
    return ok({ leaseId: id, ttlMs: ttl });
  }

  keepAlive(id: string): Answer<KeepAlive> {
    const l = this.leases.get(id);
    if (!l) return ok({ ttlMs: 0 });
    this.refresh(id, l);
    return ok({ ttlMs: l.ttlMs });
  }

  revoke(id: string): Answer<void> {
    if (this.leases.has(id)) this.drop(id, "revoked");
    return ok(undefined);
  }

  campaign(id: string, c: Candidate, since: string, from?: number): Answer<CampaignResult> {
    if (!this.leases.has(id)) return fail("lease-not-found", `lease ${id} not found`);
    if (this.leader) return ok({ won: false, holder: decodeRecord(this.leader.value) });
    if (from !== undefined && from !== this.generation)
      return ok({
        won: false,
        holder: undefined,
        stale: this.generation,
        ...(this.generationBy === undefined ? {} : { staleBy: this.generationBy }),
      });
    this.generation++;
    this.generationBy = id;
    const record: LeaderRecord = { ...c, generation: this.generation, since };
    this.leader = { value: encodeRecord(record), leaseId: id };
    this.history.push({ t: this.sched.now(), kind: "acquired", record, leaseId: id });
    this.notify(record);
    return ok({ won: true, record });
  }

  advance(id: string, from: number): Answer<LeaderRecord | undefined> {
    const l = this.leader;
    if (!l || l.leaseId !== id || !this.leases.has(id) || this.generation !== from) return ok(undefined);
    this.generation++;
    this.generationBy = id;
    const record: LeaderRecord = { ...decodeRecord(l.value), generation: this.generation };
    this.leader = { value: encodeRecord(record), leaseId: id };
    this.history.push({ t: this.sched.now(), kind: "advanced", record, leaseId: id });
    this.notify(record);
    return ok(record);
  }

  read(): Answer<LeaderRecord | undefined> {
    return ok(this.holder);
  }

  private refresh(id: string, l: StoredLease): void {
    l.timer.cancel();
    l.expiresAt = this.sched.now() + l.ttlMs;
    l.timer = this.sched.after(l.ttlMs, () => {
      if (this.leases.get(id) === l && this.sched.now() >= l.expiresAt) this.drop(id, "expired");
    });
  }

  private drop(id: string, kind: "expired" | "revoked"): void {
    const l = this.leases.get(id);
    l?.timer.cancel();
    this.leases.delete(id);
    if (this.leader?.leaseId === id) {
      const record = decodeRecord(this.leader.value);
      this.leader = undefined;
      this.history.push({ t: this.sched.now(), kind, leaseId: id, record });
      this.notify(undefined);
    }
  }

  private notify(h: LeaderRecord | undefined): void {
    for (const w of this.watchers) {
      if (this.cutNodes.has(w.node)) continue;
      this.sched.after(this.answerDelay(w.node), () => {
        if (this.watchers.has(w) && !this.cutNodes.has(w.node)) w.fn(h);
      });
    }
  }

  private latencyOf(): number {
    return Math.max(0, this.latency());
  }

  private answerDelay(node: string): number {
    return this.latencyOf() + this.extraMs + (this.slowNodes.get(node) ?? 0);
  }
}

/** One node's view of the store. */
class MemoryLeaseClient implements LeaseService {
  private closed = false;
  private readonly watches = new Set<Cancel>();

  constructor(
    private readonly store: MemoryLeaseStore,
    private readonly node: string,
  ) {}

  private run<T>(apply: () => Answer<T>, reply: Reply<T>): void {
    if (this.closed) {
      reply(fail("closed", "lease client closed"));
      return;
    }
    this.store.deliver(this.node, apply, (a) => {
      if (!this.closed) reply(a);
    });
  }

  grant(ttlMs: number, reply: Reply<Grant>): void {
    this.run(() => this.store.grant(ttlMs), reply);
  }

  keepAlive(leaseId: string, reply: Reply<KeepAlive>): void {
    this.run(() => this.store.keepAlive(leaseId), reply);
  }

  revoke(leaseId: string, reply: Reply<void>): void {
    this.run(() => this.store.revoke(leaseId), reply);
  }

  campaign(
    leaseId: string,
    candidate: Candidate,
    since: string,
    reply: Reply<CampaignResult>,
    from?: number,
  ): void {
    this.run(() => this.store.campaign(leaseId, candidate, since, from), reply);
  }

  advance(leaseId: string, from: number, reply: Reply<LeaderRecord | undefined>): void {
    this.run(() => this.store.advance(leaseId, from), reply);
  }

  holder(reply: Reply<LeaderRecord | undefined>): void {
    this.run(() => this.store.read(), reply);
  }

  watchHolder(onChange: (holder: LeaderRecord | undefined) => void): Cancel {
    const w = this.store.watch(this.node, (h) => {
      if (!this.closed) onChange(h);
    });
    this.watches.add(w);
    return {
      cancel: () => {
        w.cancel();
        this.watches.delete(w);
      },
    };
  }

  close(): void {
    this.closed = true;
    for (const w of this.watches) w.cancel();
    this.watches.clear();
  }
}
