/**
 * A seeded nemesis (Jepsen's, etcd's functional tester): it draws a schedule
 * of named faults with parameters from the world's PRNG, puts it on the event
 * queue, and keeps a log of what it did for the failure message. The run ends
 * with the checkers over the whole history (history.ts), not with assertions
 * in the middle.
 *
 * Targets are roles, resolved when the fault fires ("the primary" is whoever
 * is primary then). A fault that cannot apply then (no such node up, a kill
 * of the primary with no synced backup to take over, or a kill or a pause of
 * the backup while no primary is alive) is logged as skipped.
 *
 * To add a fault: a variant of `Fault`, its draw in `draw`, its effect in
 * `apply` (and its undo, scheduled there).
 */
import type { Prng } from "../../src/prng.js";
import type { Cluster, LinkDeath, SimNode, Wake } from "./cluster.js";

export type Target = "primary" | "backup" | "any";

export type Fault =
  /** The node dies; a backup may be restarted after a while (a restarted primary boots a fresh domain). */
  | {
      readonly kind: "kill";
      readonly target: Target;
      readonly links: LinkDeath;
      readonly restartAfterMs?: number;
    }
  /** SIGSTOP for `ms`, then SIGCONT. */
  | { readonly kind: "pause"; readonly target: Target; readonly ms: number; readonly wake: Wake }
  /** The node is cut off from every other node and client for `forMs`. */
  | { readonly kind: "partition"; readonly target: Target; readonly forMs: number }
  /** The node's replication links, both ways, for `forMs`. */
  | {
      readonly kind: "link";
      readonly target: Target;
      readonly delayMs: number;
      readonly jitterMs: number;
      readonly drop: number;
      readonly duplicate: number;
      /** Frames may overtake each other. */
      readonly reorder: boolean;
      readonly forMs: number;
    }
  /** The LAN port toward the node (or a client) for `forMs`. */
  | {
      readonly kind: "lan";
      readonly target: Target | "client";
      readonly drop: number;
      readonly duplicate: number;
      readonly jitterMs: number;
      readonly forMs: number;
    }
  /** The node's store takes `ms` per commit for `forMs`. */
  | { readonly kind: "slow-store"; readonly target: Target; readonly ms: number; readonly forMs: number }
  /** The nodes cannot reach each other for `forMs` (both alive; clients reach both): a replication link cut. */
  | { readonly kind: "link-cut"; readonly target: Target; readonly forMs: number }
  /** The node cannot reach the lease service for `forMs` (requests and answers lost). */
  | { readonly kind: "lease-cut"; readonly target: Target; readonly forMs: number }
  /** The lease service answers the node `ms` late for `forMs`. */
  | { readonly kind: "lease-slow"; readonly target: Target; readonly ms: number; readonly forMs: number }
  /** The node's monotonic clock leaps `ms` ahead. */
  | { readonly kind: "clock-jump"; readonly target: Target; readonly ms: number };

export type FaultKind = Fault["kind"];

export interface NemesisOptions {
  /** The kinds to draw, with their weights. */
  readonly kinds: Partial<Record<FaultKind, number>>;
  /** Faults in the schedule. */
  readonly count: number;
  /** The window the faults start in, in ms after `arm`. */
  readonly startMs: number;
  readonly endMs: number;
  /** Pauses last 1..maxPauseMs. */
  readonly maxPauseMs: number;
  /** Partitions last 20..maxPartitionMs (default 220). */
  readonly maxPartitionMs?: number;
  /** Link cuts and lease cuts last 20..maxCutMs (default 1500: long ones outlast every timeout and the lease). */
  readonly maxCutMs?: number;
  /** Slow lease answers are up to this late (default 100 ms); clock jumps up to maxJumpMs (default 500). */
  readonly maxLeaseSlowMs?: number;
  readonly maxJumpMs?: number;
  /** A faulty replication link adds up to this much delay (and as much jitter), and drops/duplicates up to these rates. */
  readonly maxLinkDelayMs: number;
  readonly maxLinkDrop: number;
  readonly maxLinkDuplicate: number;
  /** The chance that a faulty replication link also reorders its frames. */
  readonly linkReorder?: number;
  /** The primary is killed at most this many times. */
  readonly maxPrimaryKills: number;
  /** Restart killed backups (after 20-200 ms). */
  readonly restartBackups: boolean;
  /**
   * What becomes of a killed primary after 20-200 ms: nothing, restarted as
   * its command says (it boots a fresh domain), or re-protection as the
   * runbook says (restarted as a backup, and the new primary told to sync it).
   */
  readonly killedPrimary: "stays-dead" | "restart" | "reprotect";
}

export class Nemesis {
  /** The drawn schedule, in time order (times relative to `arm`). */
  readonly schedule: { readonly at: number; readonly fault: Fault }[];
  /** What happened, for the failure message. */
  readonly log: string[] = [];
  private primaryKills = 0;

  constructor(
    private readonly cluster: Cluster,
    private readonly rng: Prng,
    private readonly opts: NemesisOptions,
  ) {
    const kinds = Object.entries(opts.kinds).filter(([, w]) => (w ?? 0) > 0) as [FaultKind, number][];
    const total = kinds.reduce((s, [, w]) => s + w, 0);
    const out: { at: number; fault: Fault }[] = [];
    for (let i = 0; i < opts.count && total > 0; i++) {
      const at = opts.startMs + rng.float() * (opts.endMs - opts.startMs);
      let pick = rng.float() * total;
      let kind = (kinds[0] as [FaultKind, number])[0];
      for (const [k, w] of kinds) {
        if (pick < w) {
          kind = k;
          break;
        }
        pick -= w;
      }
      out.push({ at, fault: this.draw(kind) });
    }
    this.schedule = out.sort((a, b) => a.at - b.at);
  }

  private draw(kind: FaultKind): Fault {
    const r = this.rng;
    const o = this.opts;
    const target: Target = (["primary", "backup", "any"] as const)[r.int(3)] as Target;
    const forMs = 20 + r.int(200);
    switch (kind) {
      case "kill":
        return {
          kind,
          target: r.float() < 0.5 ? "primary" : "backup",
          links: (["reset", "close", "silent"] as const)[r.int(3)] as LinkDeath,
          restartAfterMs: 20 + r.int(180),
        };
      case "pause":
        return {
          kind,
          target,
          ms: 1 + r.int(o.maxPauseMs),
          wake: r.float() < 0.5 ? "input-first" : "timers-first",
        };
      case "partition":
        return { kind, target, forMs: Math.min(forMs, o.maxPartitionMs ?? 220) };
      case "link":
        return {
          kind,
          target,
          delayMs: r.float() * o.maxLinkDelayMs,
          jitterMs: r.float() * o.maxLinkDelayMs,
          drop: r.float() * o.maxLinkDrop,
          duplicate: r.float() * o.maxLinkDuplicate,
          reorder: r.float() < (o.linkReorder ?? 0),
          forMs,
        };
      case "lan":
        return {
          kind,
          target: r.float() < 0.5 ? "client" : target,
          drop: r.float() * 0.05,
          duplicate: r.float() * 0.05,
          jitterMs: r.float() * 5,
          forMs,
        };
      case "slow-store":
        return { kind, target: "backup", ms: 1 + r.int(30), forMs };
      case "link-cut":
      case "lease-cut":
        return { kind, target, forMs: 20 + r.int(o.maxCutMs ?? 1500) };
      case "lease-slow":
        return { kind, target, ms: 1 + r.int(o.maxLeaseSlowMs ?? 100), forMs };
      case "clock-jump":
        return { kind, target, ms: 1 + r.int(o.maxJumpMs ?? 500) };
    }
  }

  /** Puts the schedule on the world's queue, starting now. */
  arm(): void {
    const w = this.cluster.world;
    const t0 = w.now;
    for (const { at, fault } of this.schedule) w.at(t0 + at, () => this.apply(fault));
  }

  private note(fault: Fault, what: string): void {
    this.log.push(`${this.cluster.world.now.toFixed(1)} ms ${fault.kind}: ${what}`);
  }

  /** The nodes that are up, in the role `t` names. */
  private pick(t: Target): SimNode | undefined {
    const up = [...this.cluster.nodes.values()].filter(
      (n) => n.status === "up" && (t === "any" || n.node.roleName === t),
    );
    return up.length === 0 ? undefined : up[this.rng.int(up.length)];
  }

  private apply(f: Fault): void {
    const c = this.cluster;
    const w = c.world;
    if (f.kind === "lan" && f.target === "client") {
      this.lanFaults("client", f);
      return;
    }
    const n = this.pick(f.target as Target);
    if (!n) {
      this.note(f, `skipped: no ${f.target} is up`);
      return;
    }
    const fatal = c.leaseStore ? this.leaseFatal(f, n) : undefined;
    if (fatal) {
      this.note(f, `skipped: ${fatal}`);
      return;
    }
    switch (f.kind) {
      case "kill": {
        const primary = n.node.roleName === "primary";
        if (primary) {
          const standby = [...c.nodes.values()].some(
            (m) => m !== n && m.status === "up" && m.node.state === "standby",
          );
          if (this.primaryKills >= this.opts.maxPrimaryKills || !standby) {
            this.note(
              f,
              `skipped: ${n.name} is the primary and ${standby ? "the kills are spent" : "no backup is synced"}`,
            );
            return;
          }
          this.primaryKills++;
        } else if (!this.primaryAlive(n)) {
          // Both dead: nothing could run the domain any more (no fault tolerance survives that).
          this.note(f, `skipped: ${n.name} is the backup and no primary is alive`);
          return;
        }
        n.kill(f.links);
        const then = primary ? this.opts.killedPrimary : this.opts.restartBackups ? "restart" : "stays-dead";
        this.note(
          f,
          `${n.name} (${primary ? "primary" : "backup"}, links ${f.links}), then ${then} in ${f.restartAfterMs} ms`,
        );
        if (then !== "stays-dead" && f.restartAfterMs !== undefined) {
          w.after(f.restartAfterMs, () => {
            if (n.status !== "dead") return;
            if (then === "reprotect") {
              n.restart("backup");
              for (const m of c.nodes.values())
                if (m !== n && m.status !== "dead" && m.node.roleName === "primary") m.peer = n;
            } else {
              n.restart();
            }
            this.log.push(`${w.now.toFixed(1)} ms ${then}: ${n.name}`);
          });
        }
        return;
      }
      case "pause":
        if (n.node.roleName === "backup" && !this.primaryAlive(n)) {
          // The sole survivor frozen about the heartbeat timeout suspects its image (the primary
          // may have gone on without it) and does not activate: safe, but the domain is lost.
          this.note(f, `skipped: ${n.name} is the backup and no primary is alive`);
          return;
        }
        n.pause(f.ms, f.wake);
        this.note(f, `${n.name} for ${f.ms} ms (${f.wake})`);
        return;
      case "partition":
        c.partition([n.name], [...c.nodes.keys()].filter((k) => k !== n.name).concat("client"));
        this.note(f, `${n.name} cut off for ${f.forMs} ms`);
        w.after(f.forMs, () => c.heal());
        return;
      case "link": {
        const others = [...c.nodes.keys()].filter((k) => k !== n.name);
        for (const o of others) {
          for (const l of [c.repl.link(n.name, o), c.repl.link(o, n.name)]) {
            l.delay(0.15 + f.delayMs, 0.3 + f.jitterMs)
              .drop(f.drop)
              .duplicate(f.duplicate)
              .reorder(f.reorder);
            w.after(f.forMs, () => l.clear());
          }
        }
        this.note(
          f,
          `${n.name}'s links +${f.delayMs.toFixed(1)}~${f.jitterMs.toFixed(1)} ms, drop ${f.drop.toFixed(3)}, dup ${f.duplicate.toFixed(3)}${f.reorder ? ", reordered" : ""} for ${f.forMs} ms`,
        );
        return;
      }
      case "lan":
        this.lanFaults(n.name, f);
        return;
      case "slow-store":
        n.store.slow(f.ms);
        this.note(f, `${n.name}'s store ${f.ms} ms a commit for ${f.forMs} ms`);
        w.after(f.forMs, () => n.store.slow(0));
        return;
      case "link-cut":
        c.partition(
          [n.name],
          [...c.nodes.keys()].filter((k) => k !== n.name),
        );
        this.note(f, `${n.name} cut from the other nodes (clients reach all) for ${f.forMs} ms`);
        w.after(f.forMs, () => c.heal());
        return;
      case "lease-cut":
      case "lease-slow": {
        const store = c.leaseStore;
        if (!store) {
          this.note(f, "skipped: no lease service");
          return;
        }
        if (f.kind === "lease-cut") {
          store.cut(n.name);
          w.after(f.forMs, () => store.heal(n.name));
          this.note(f, `${n.name} cut from the lease service for ${f.forMs} ms`);
        } else {
          store.setSlow(f.ms, n.name);
          w.after(f.forMs, () => store.setSlow(0, n.name));
          this.note(f, `the lease service answers ${n.name} ${f.ms} ms late for ${f.forMs} ms`);
        }
        return;
      }
      case "clock-jump":
        n.jump(f.ms);
        this.note(f, `${n.name}'s clock +${f.ms} ms`);
        return;
    }
  }

  /**
   * Under a lease, a primary that cannot renew for the TTL (frozen, cut from
   * the lease service, its answers too slow, its clock leaping) stops as surely
   * as a killed one: such a fault needs a synced backup that can take the
   * lease, and a fault on the backup needs a primary that holds it. In COLO
   * mode a session that ends costs the secondary its image until a full
   * resync completes (it ran ahead: no rewind), so a fault that ends it while
   * a primary is cut from the lease service leaves nobody who can take over
   * when that lease lapses. Returns why the fault would leave nobody able to
   * run the domain, if it would.
   */
  private leaseFatal(f: Fault, n: SimNode): string | undefined {
    const store = this.cluster.leaseStore;
    const others = [...this.cluster.nodes.values()].filter((m) => m !== n);
    const canRun = (m: SimNode) => m.status === "up" && !store?.isCut(m.name);
    const colo = [...this.cluster.nodes.values()].some((m) => m.node.mode === "colo");
    const endsSession = ["kill", "pause", "partition", "link-cut", "link"].includes(f.kind);
    const cutPrimary = [...this.cluster.nodes.values()].find(
      (m) => m.status === "up" && m.node.primary?.isRunning && store?.isCut(m.name),
    );
    if (colo && endsSession && cutPrimary) {
      return `${cutPrimary.name} is the primary and cut from the lease service: in COLO mode its secondary would lose its image to a full resync`;
    }
    if (n.node.roleName === "primary") {
      if (!["kill", "pause", "lease-cut", "lease-slow", "clock-jump"].includes(f.kind)) return undefined;
      return others.some((m) => canRun(m) && m.node.state === "standby")
        ? undefined
        : `${n.name} is the primary, and no synced backup could take its lease`;
    }
    if (!["kill", "pause"].includes(f.kind)) return undefined;
    const w = this.cluster.world;
    return others.some((m) => canRun(m) && m.node.primary?.isRunning && m.node.lease?.mayRelease(m.now))
      ? undefined
      : `${n.name} is the backup, and no primary holds the lease (w ${w.now.toFixed(0)})`;
  }

  /** Whether a node other than `n` is alive and runs the domain. */
  private primaryAlive(n: SimNode): boolean {
    return [...this.cluster.nodes.values()].some(
      (m) => m !== n && m.status !== "dead" && m.node.primary?.isRunning,
    );
  }

  private lanFaults(name: string, f: Extract<Fault, { kind: "lan" }>): void {
    const l = this.cluster.lan.link(name);
    l.drop(f.drop)
      .duplicate(f.duplicate)
      .delay(0.1, 0.2 + f.jitterMs);
    this.cluster.world.after(f.forMs, () => l.clear());
    this.note(
      f,
      `LAN port of ${name}: drop ${f.drop.toFixed(3)}, dup ${f.duplicate.toFixed(3)}, jitter ${f.jitterMs.toFixed(1)} ms for ${f.forMs} ms`,
    );
  }
}
