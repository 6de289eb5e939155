/**
 * The history of a simulation run, and the checkers that run over all of it
 * when the run ends (Jepsen style: not assertions sprinkled in the middle).
 *
 * The history holds, with the virtual time, every event each node emitted
 * and every frame a node released to the LAN (with the epoch that produced
 * it, the node's generation, and whether output commit applied then).
 *
 * Invariants checked (DESIGN.md, "Fencing and roles"):
 *  - single releaser: at no instant do two nodes release output for the
 *    domain (the release intervals of each node and generation are disjoint);
 *  - output commit: a primary that holds output (protected, or a backup
 *    may still activate) releases nothing of an epoch not acknowledged;
 *  - superseded: no node releases anything once a newer generation has
 *    activated (a node that may have been superseded sends nothing: it reads
 *    the claim before it acts, and discards what it held);
 *  - nothing lost on failover: every epoch acknowledged to, and every frame
 *    released by, an older generation before an activation belongs to an
 *    epoch the activation resumed;
 *  - digests: the state an activation resumed, and every checkpoint a backup
 *    applied, is exactly the state a primary checkpointed for that epoch
 *    (with verify).
 */
import type { LeaseEvent } from "../../src/lease/core.js";
import type { StoreEntry } from "../../src/lease/memory.js";
import type { NodeEvent } from "../../src/node/node.js";

export type Entry =
  | {
      readonly t: number;
      readonly node: string;
      readonly kind: "event";
      /** The node's generation when it emitted the event. */
      readonly generation: number;
      readonly e: NodeEvent;
    }
  | {
      readonly t: number;
      readonly node: string;
      readonly kind: "release";
      readonly epoch: number;
      readonly generation: number;
      /** Output commit applied (the primary was protected). */
      readonly mustWait: boolean;
      /** The primary's committed epoch at the release. */
      readonly committed: number;
    }
  | { readonly t: number; readonly node: string; readonly kind: "lease"; readonly e: LeaseEvent };

type EventOf<T extends NodeEvent["type"]> = Extract<NodeEvent, { type: T }>;

export class History {
  readonly entries: Entry[] = [];

  event(t: number, node: string, generation: number, e: NodeEvent): void {
    this.entries.push({ t, node, kind: "event", generation, e });
  }

  lease(t: number, node: string, e: LeaseEvent): void {
    this.entries.push({ t, node, kind: "lease", e });
  }

  release(
    t: number,
    node: string,
    epoch: number,
    generation: number,
    mustWait: boolean,
    committed: number,
  ): void {
    this.entries.push({ t, node, kind: "release", epoch, generation, mustWait, committed });
  }

  /** The events of `type` (of `node`, when given), in order, with their time and node. */
  events<T extends NodeEvent["type"]>(type: T, node?: string): { t: number; node: string; e: EventOf<T> }[] {
    const out: { t: number; node: string; e: EventOf<T> }[] = [];
    for (const x of this.entries) {
      if (x.kind === "event" && x.e.type === type && (node === undefined || x.node === node)) {
        out.push({ t: x.t, node: x.node, e: x.e as EventOf<T> });
      }
    }
    return out;
  }

  releases(node?: string): Extract<Entry, { kind: "release" }>[] {
    const out: Extract<Entry, { kind: "release" }>[] = [];
    for (const x of this.entries)
      if (x.kind === "release" && (node === undefined || x.node === node)) out.push(x);
    return out;
  }

  /** Every activation: when, by whom, from which epoch, as which generation. */
  activations(): {
    t: number;
    node: string;
    epoch: number;
    generation: number;
    digest: string;
    reason: string;
  }[] {
    return this.events("failover.activated").map(({ t, node, e }) => ({
      t,
      node,
      epoch: e.epoch,
      generation: e.generation,
      digest: e.digest,
      reason: e.reason,
    }));
  }
}

/** A broken invariant: what and where, for the test's failure message. */
export interface Violation {
  readonly invariant:
    | "single-releaser"
    | "output-commit"
    | "superseded"
    | "lost-on-failover"
    | "digest"
    | "under-lease";
  readonly detail: string;
}

/**
 * Runs every checker; returns what broke (empty: the run was correct).
 * `coloRanAhead`: see `digests`.
 */
export function check(h: History, coloRanAhead?: ReadonlySet<string>): Violation[] {
  return [
    ...singleReleaser(h),
    ...outputCommit(h),
    ...superseded(h),
    ...lostOnFailover(h),
    ...digests(h, coloRanAhead),
  ];
}

/** The release intervals of each (node, generation) are disjoint. */
export function singleReleaser(h: History): Violation[] {
  const spans = new Map<string, { first: number; last: number; count: number }>();
  for (const r of h.releases()) {
    const k = `${r.node} (generation ${r.generation})`;
    const s = spans.get(k);
    if (s) {
      s.last = r.t;
      s.count++;
    } else spans.set(k, { first: r.t, last: r.t, count: 1 });
  }
  const list = [...spans].sort((a, b) => a[1].first - b[1].first);
  const out: Violation[] = [];
  for (let i = 1; i < list.length; i++) {
    const [k, s] = list[i] as [string, { first: number; last: number; count: number }];
    for (let j = 0; j < i; j++) {
      const [k0, s0] = list[j] as [string, { first: number; last: number; count: number }];
      if (s0.last >= s.first) {
        out.push({
          invariant: "single-releaser",
          detail: `${k0} released output until ${s0.last.toFixed(3)} ms, after ${k} began at ${s.first.toFixed(3)} ms`,
        });
      }
    }
  }
  return out;
}

/** While output commit applies, nothing of an unacknowledged epoch is released. */
export function outputCommit(h: History): Violation[] {
  const out: Violation[] = [];
  for (const r of h.releases()) {
    if (r.mustWait && r.epoch > r.committed) {
      out.push({
        invariant: "output-commit",
        detail: `${r.node} released a frame of epoch ${r.epoch} at ${r.t.toFixed(3)} ms with only ${r.committed} committed`,
      });
    }
  }
  return out;
}

/** Nothing leaves a node after a newer generation than its own activated (anywhere, at or before that instant). */
export function superseded(h: History): Violation[] {
  const acts = h.activations();
  const out: Violation[] = [];
  for (const r of h.releases()) {
    const a = acts.find((x) => x.generation > r.generation && x.t <= r.t);
    if (a) {
      out.push({
        invariant: "superseded",
        detail: `${r.node} (generation ${r.generation}) released a frame of epoch ${r.epoch} at ${r.t.toFixed(3)} ms, after ${a.node} activated generation ${a.generation} at ${a.t.toFixed(3)} ms`,
      });
    }
  }
  return out;
}

/** Before an activation, older generations acknowledged and released nothing beyond the epoch it resumed. */
export function lostOnFailover(h: History): Violation[] {
  const out: Violation[] = [];
  for (const a of h.activations()) {
    for (const x of h.entries) {
      if (x.t >= a.t) break;
      if (x.kind === "release" && x.generation < a.generation && x.epoch > a.epoch) {
        out.push({
          invariant: "lost-on-failover",
          detail: `${x.node} released epoch ${x.epoch} output before ${a.node} resumed epoch ${a.epoch}`,
        });
      } else if (
        x.kind === "event" &&
        x.e.type === "checkpoint.committed" &&
        x.generation < a.generation &&
        x.e.epoch > a.epoch
      ) {
        out.push({
          invariant: "lost-on-failover",
          detail: `${x.node} had epoch ${x.e.epoch} acknowledged, but ${a.node} resumed epoch ${a.epoch}`,
        });
      }
    }
  }
  return out;
}

/**
 * Every activation resumed, and every applied checkpoint holds, a state some
 * primary checkpointed with exactly that digest. Except the activations in
 * `coloRanAhead` (`node@generation`): COLO secondaries that take over from
 * their own guest's running state, by design (no rollback).
 */
export function digests(h: History, coloRanAhead?: ReadonlySet<string>): Violation[] {
  const sent = new Map<number, Set<string>>();
  for (const { e } of h.events("checkpoint.sent")) {
    if (!e.digest) continue;
    let s = sent.get(e.epoch);
    if (!s) sent.set(e.epoch, (s = new Set()));
    s.add(e.digest);
  }
  const out: Violation[] = [];
  for (const a of h.activations()) {
    if (coloRanAhead?.has(`${a.node}@${a.generation}`)) continue;
    if (!sent.get(a.epoch)?.has(a.digest)) {
      out.push({
        invariant: "digest",
        detail: `${a.node} resumed epoch ${a.epoch} with digest ${a.digest.slice(0, 16)}, which no primary checkpointed`,
      });
    }
  }
  for (const { node, e } of h.events("checkpoint.applied")) {
    if (e.digest !== undefined && !sent.get(e.epoch)?.has(e.digest)) {
      out.push({
        invariant: "digest",
        detail: `${node} applied epoch ${e.epoch} with digest ${e.digest.slice(0, 16)}, which no primary checkpointed`,
      });
    }
  }
  return out;
}

/**
 * With a lease service: every frame a node released left while the service
 * had that node as the holder (between its acquisition and the expiry or
 * revocation of that lease), by the service's own clock.
 */
export function underLease(h: History, store: readonly StoreEntry[]): Violation[] {
  const spans: { node: string; from: number; to: number; leaseId: string }[] = [];
  for (const e of store) {
    if (e.kind === "acquired") {
      spans.push({ node: e.record.nodeId, from: e.t, to: Number.POSITIVE_INFINITY, leaseId: e.leaseId });
    } else if (e.kind === "expired" || e.kind === "revoked") {
      const s = spans.find((x) => x.leaseId === e.leaseId && x.to === Number.POSITIVE_INFINITY);
      if (s) s.to = e.t;
    }
  }
  const out: Violation[] = [];
  for (const r of h.releases()) {
    if (!spans.some((s) => s.node === r.node && s.from <= r.t && r.t < s.to)) {
      out.push({
        invariant: "under-lease",
        detail: `${r.node} released a frame of epoch ${r.epoch} at ${r.t.toFixed(3)} ms without holding the lease`,
      });
      if (out.length >= 5) break;
    }
  }
  return out;
}
