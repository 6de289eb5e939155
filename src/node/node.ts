/**
 * A node: the sans-IO composition of one replica. It owns the domain, the
 * guest kernel while the domain runs here, the replication machine of its
 * current role, and the guest NIC's host side with output commit. It has no
 * sockets, timers or files: the daemon (real I/O) and every simulation drive
 * the same object.
 *
 * Data flow:
 *
 *   replication ports ──attach / frame / detach──► the machine of the current role
 *   LAN frames ──lanInput──► NetDevice ──► the guest's rx ring (active side only)
 *   step(now): primary: run the guest paced by `now`, move its tx ring into
 *                       the netbuf, poll the machine (epochs, heartbeats, sending)
 *              backup:  poll the machine (heartbeats, activation on loss)
 *   out: frames to replication ports (Port.send), LAN frames (io.sendLan),
 *        events (io.emit), the generation to persist (io.saveGeneration)
 *
 * Roles, and the steps between them (each checks its precondition where it
 * happens, as in Patroni's ha.py; add a role by adding its machine to
 * `Role`, its branch to `step` and a transition with its precondition):
 *
 *   backup  ──promote (its machine activated: primary lost, manual or planned)──► primary
 *   primary ──demote (its domain no longer runs: fenced or stopped)──► backup
 *
 * Invariants:
 *  - Output commit: while the primary holds output (`PrimaryMachine.output`:
 *    protected, or a backup that may still activate), the guest's frames of
 *    epoch N leave only once N is acknowledged (`onCommitted`). A fenced or
 *    stopped primary discards what it held and detaches its NIC: a node that
 *    may have been superseded sends nothing on the LAN.
 *  - Only the node whose domain runs exchanges frames with the LAN: a
 *    promotion activates the NIC and announces the guest (gratuitous ARP at
 *    0, 50, 250 and 1000 ms, and again whenever it refuses a stale primary,
 *    whose frames may have moved the guest's MAC back to its port); a
 *    demotion deactivates it and discards what it still held.
 *  - An honest failure detector: the node measures its own stalls (the gap
 *    between loop turns, `step`; any input's time too). A gap longer than a
 *    tenth of the heartbeat interval is a stall: its time beyond that tenth
 *    does not count as the peer's silence, and until the node has read what
 *    arrived while it was stalled (the next turn: the daemon's loop reads its
 *    sockets between two turns) it acts on no timeout and releases nothing to
 *    the LAN. Why: after SIGCONT, Node.js runs the timers before it reads
 *    the sockets, so a stalled primary would see its backup's heartbeat
 *    expired before it read the FENCED goodbye waiting for it.
 *  - An activated domain continues its own history: a new kernel over the
 *    same bytes, epochs from the resumed epoch + 1, a new generation.
 *
 * With a lease (`NodeOptions.lease`, DESIGN.md "Fencing and roles"; the
 * shell drives the lease's I/O, the node only reads it and asks):
 *
 *   primary: output gate ─ every frame and announcement leaves only while
 *            lease.mayRelease(now) (now < deadline − margin, the deadline
 *            measured from when the renewal was sent); a lease that lapses
 *            stops the domain (state `fenced`) and the node rejoins as a
 *            backup (`demote`). A starting primary runs nothing until it
 *            holds the lease, and takes the lease's generation.
 *   primary, link lost: where the rules without a lease would release (the
 *            backup is gone), the primary first moves the lineage on in the
 *            lease service (`advance`: generation + 1, only while it holds the
 *            lease), then releases; the same once a backup that may activate
 *            stayed away for the heartbeat timeout.
 *   backup:  a lost primary is a suspicion (`BackupMachine.suspected`): the
 *            node campaigns for the lease from its image's generation and
 *            activates only once it holds it, under the lease's generation;
 *            a campaign that finds the lineage moved on makes the image stale.
 *
 * Why this is safe: the lease service orders everything. Output leaves only
 * under a lease no one else can hold before its deadline; a backup can win
 * the lease only from the lineage its image belongs to, and a primary
 * releases what that image lacks only after it moved the lineage on while
 * holding the lease. So no two nodes release at once, and an activation never
 * resumes an image older than output some node released. This node does not
 * resume the domain before it holds the lease (no speculative activation).
 */

import type { CompareConfig } from "../colo/compare.js";
import type { SeqRewriter } from "../colo/rewriter.js";
import { type Capturer, CowCapturer } from "../domain/capture.js";
import type { DomainConfig, PinnedConfig } from "../domain/config.js";
import type { Domain } from "../domain/domain.js";
import { RemusError } from "../errors.js";
import { bootGuest, type GuestOptions } from "../guest/guest.js";
import { Kernel, type ProcessInfo } from "../guest/kernel.js";
import { type CounterCheck, verifyCounter } from "../guest/programs/basic.js";
import type { LeaseState } from "../lease/core.js";
import type { LeaderRecord } from "../lease/record.js";
import type { PageWorkers } from "../pipeline/pool.js";
import type { Entropy } from "../prng.js";
import { type Activation, BackupMachine, type BackupStore } from "../replication/backup.js";
import type { Port } from "../replication/conn.js";
import type { BackupStateName, PrimaryStateName, ReplicationEvent } from "../replication/events.js";
import type { HeartbeatConfig } from "../replication/heartbeat.js";
import { DEFAULT_NETBUF_LIMITS, type NetbufLimits } from "../replication/netbuf.js";
import { NetDevice } from "../replication/netdev.js";
import { DEFAULT_PRIMARY_CONFIG, type DomainSettings, PrimaryMachine } from "../replication/primary.js";
import { type Lineage, type RewindBase, rewindBaseOf } from "../replication/rewind.js";
import {
  addColoCounts,
  type ColoCounts,
  ColoPrimary,
  ColoSecondary,
  noColoCounts,
  type ReplicationMode,
} from "./colo.js";
import { GuestPacer } from "./pacing.js";

export type NodeRole = "primary" | "backup";

/** The machine of each role (the COLO secondary adds its own here). */
type Role =
  | { readonly name: "primary"; readonly m: PrimaryMachine }
  | { readonly name: "backup"; readonly m: BackupMachine };

/** What a node reports: its machine's events, its own stalls and its role changes. */
export type NodeEvent =
  | ReplicationEvent
  /** The node's loop was stalled for `ms` (a gap between turns longer than a tenth of the heartbeat interval). */
  | { type: "loop.stall"; ms: number }
  | {
      type: "role.changed";
      from: NodeRole;
      to: NodeRole;
      /** Why (`peer_lost`, `heartbeat_timeout`, `manual`, `planned`; `fenced`, `stopped`). */
      reason: string;
      /** The epoch the domain resumed from (promotion) or had committed (demotion). */
      epoch: number;
      generation: number;
    };

/** Settings of the replication a node runs; a new machine (after a role change) starts with them. */
export interface NodeConfig {
  /** Checkpoint interval in ms. */
  intervalMs: number;
  /** LZ4 on the wire. */
  compress: boolean;
  heartbeat: HeartbeatConfig;
  /** Checkpoints captured and not yet acknowledged, at most. */
  readonly maxInFlight: number;
  /** Digest at every checkpoint (both sides). */
  readonly verify: boolean;
  /** Hold guest output until its epoch commits (false only with --no-netbuf --unsafe). */
  readonly outputCommit: boolean;
  readonly netbufLimits?: NetbufLimits;
  /** Pages per batch record (default 512). */
  readonly batchPages?: number;
  /** Stop streaming while the link has this many bytes queued (default 8 MiB). */
  readonly highWaterBytes?: number;
  /** Bytes of checkpoints captured and not acknowledged, at most (adaptive epochs; default 256 MiB). */
  readonly maxInFlightBytes?: number;
  /** Work per turn on either side's replication path: ms of the high-resolution clock, and pages. */
  readonly turnMs?: number;
  readonly turnUnits?: number;
  /** Batches of at most this many pages are encoded and decoded on the node's thread (default 128). */
  readonly inlinePages?: number;
  /** Remus (default) or COLO (src/node/colo.ts): fixed for the node's life, both roles. */
  readonly mode?: ReplicationMode;
  /** COLO: the comparator's limits (timeout, period, queue). */
  readonly compare?: Partial<CompareConfig>;
}

/**
 * What a node needs of its lease (src/lease/lease.ts `Lease` is one): it
 * reads the guard and asks for campaigns, lineage moves and releases; the
 * answers come back through the lease's own state, read at every step.
 */
export interface NodeLease {
  /** This node's name in the lease record. */
  readonly name: string;
  /** The holder as last seen (our own record while held). */
  readonly holder: LeaderRecord | undefined;
  /** Whether output may leave at `now` (held, and now < deadline − margin). */
  mayRelease(now: number): boolean;
  readonly state: LeaseState;
  /** The generation held or last held. */
  readonly generation: number | undefined;
  /** The deadline on the node's clock while held. */
  readonly deadline: number | undefined;
  readonly isCampaigning: boolean;
  /** Keep trying to take the lease, only from lineage `from` (else `onStale(current)`). */
  campaign(from?: number, onStale?: (current: number) => void): void;
  stopCampaign(): void;
  /** Move the lineage on from `from` while held; `done(record)` or `done(undefined)` when refused. */
  advance(from: number, done: (record: LeaderRecord | undefined) => void): void;
  /** Output stops now; the service is told (best effort). */
  release(done?: () => void): void;
}

/** The node's outputs other than replication frames (those go to the `Port`s it was handed). */
export interface NodeIo {
  /** A frame for the LAN, with the epoch whose output it is. */
  sendLan(frame: Buffer, epoch: number): void;
  emit(e: NodeEvent): void;
  /** The highest generation this node took or was fenced at: persist it (fencing relies on it across restarts). */
  saveGeneration(generation: number): void;
}

export interface NodeOptions {
  readonly domain: Domain;
  readonly key: Uint8Array;
  readonly nodeId: Uint8Array;
  /** Announced in HELLO. */
  readonly software: string;
  /** Nonces and anything else random (seeded in simulations). */
  readonly entropy: Entropy;
  readonly config: NodeConfig;
  /** Durable storage for the backup role (a node without one cannot be a backup). */
  readonly store?: BackupStore;
  readonly io: NodeIo;
  /**
   * How the node starts: a primary boots a fresh guest; a backup waits for a
   * primary and takes the domain's configuration from its stream (DOMAIN_CONFIG),
   * except that what it was given explicitly (`pinned`) must agree.
   */
  readonly start:
    | { readonly role: "primary"; readonly boot: GuestOptions }
    | { readonly role: "backup"; readonly pinned?: PinnedConfig };
  /** The highest generation persisted by this node (0 if none). */
  readonly generation: number;
  /** Monotonic ms for pause and apply measurements (default performance.now; a simulation passes its clock). */
  readonly hrClock?: () => number;
  /** The primary's page capturer, made once per node (default: copy-on-write). */
  readonly capturer?: (domain: Domain) => Capturer;
  /** Where both roles encode and decode page batches (default: the machines' own thread). */
  readonly workers?: PageWorkers;
  /** Observes each released frame's wait in the netbuf, in seconds. */
  readonly observeReleaseDelay?: (seconds: number) => void;
  /** COLO: observes each frame the comparator released on a match: how long it waited for its twin, in seconds. */
  readonly observeColoReleaseDelay?: (seconds: number) => void;
  /** The domain's lease (absent: generation-only fencing, as without `--lease`). Read on `hrClock`. */
  readonly lease?: NodeLease;
  /**
   * `remusd node`: a starting primary boots only a new lineage (the lease
   * prefix never had a holder); when someone else holds the lease, or the
   * lineage exists, it gives way and starts following as a backup.
   */
  readonly leaseBoot?: "new-lineage";
}

export class Node {
  readonly domain: Domain;
  /** The guest NIC's host side, with the netbuf. */
  readonly dev: NetDevice;
  /** The settings the next machine starts with (PATCH /v1/config changes them through `reconfigure`). */
  readonly config: NodeConfig;
  private role: Role;
  /** The guest's kernel while the domain runs on this node. */
  private kernelRef: Kernel | undefined;
  private readonly pacer = new GuestPacer();
  /** Which machine each open port belongs to (a port outlives a role change on the old machine). */
  private readonly owner = new Map<Port, PrimaryMachine | BackupMachine>();
  /** The node's clock as of its last input or step. */
  private now = 0;
  /** When the last loop turn (a step, or the input that revealed a stall) began. */
  private lastTurnAt: number | undefined;
  /** A stall was seen and the node has not read its links since: no timeouts, no LAN output. */
  private settling = false;
  /** LAN input reached the primary's guest since it last ran (a receive interrupt is due: `flush`). */
  private rxPending = false;
  /** When the guest is to be announced on the LAN again (ms, ascending). */
  private announceAt: number[] = [];
  /** One capturer for every primary this node becomes (one write barrier per memory). */
  private capturerRef: Capturer | undefined;
  /** Primaries demoted while page workers still read their captures. */
  private retired: PrimaryMachine[] = [];
  /** COLO: the primary's comparator side, while this node is a COLO primary. */
  private coloP: ColoPrimary | undefined;
  /** COLO: the secondary's own guest, while this node is a COLO backup. */
  private coloS: ColoSecondary | undefined;
  /** COLO: the rewriter of a secondary that took over, kept for good between the LAN and the guest. */
  private edge: SeqRewriter | undefined;
  /**
   * What DOMAIN_CONFIG carries besides geometry and interval: from the boot
   * (a primary), or adopted from the primary's stream (a backup).
   */
  private settingsRef: DomainSettings | undefined;
  /** COLO: what the primaries this node was before the current one did. */
  private readonly coloDone: ColoCounts = noColoCounts();
  /** The node's clock at its first input (rates in status). */
  private startedAt: number | undefined;
  /** With a lease: a starting primary that does not hold it yet runs nothing. */
  private leaseWaiting = false;
  /** With a lease: a lineage move in flight, and when the next may be asked. */
  private advancing = false;
  private advanceAfter = 0;
  /** With a lease: since when output is held for a backup that is not connected. */
  private holdSince: number | undefined;
  /** A planned stop was asked (`stop`): a stopped primary stays stopped. */
  private stopRequested = false;
  private readonly clock: () => number;

  constructor(private readonly opts: NodeOptions) {
    this.domain = opts.domain;
    this.config = { ...opts.config };
    this.clock = opts.hrClock ?? (() => performance.now());
    const lease = opts.lease;
    this.dev = new NetDevice({
      domain: opts.domain,
      outputCommit: opts.config.outputCommit,
      limits: opts.config.netbufLimits ?? DEFAULT_NETBUF_LIMITS,
      sendFrame: (f, epoch) => {
        // After a COLO failover every frame to the LAN is renumbered (in place) for the clients.
        this.edge?.outbound(f);
        opts.io.sendLan(f, epoch);
      },
      ...(opts.observeReleaseDelay ? { observeDelay: opts.observeReleaseDelay } : {}),
      // Why read the clock here, not the turn's `now`: the guard is judged at the send itself.
      ...(lease ? { gate: () => lease.mayRelease(this.clock()) } : {}),
    });
    if (opts.start.role === "primary") {
      const boot = opts.start.boot;
      this.kernelRef = bootGuest(this.domain, boot);
      // A fresh domain: its own VM Generation ID (it then travels with every checkpoint, unchanged).
      this.domain.newGenerationId(opts.entropy);
      this.settingsRef = {
        guestMac: boot.net?.mac ?? this.domain.device.mac,
        guestIp: boot.net?.ip ?? this.domain.device.get("ip"),
        workload: boot.workload.text,
      };
      const generation = opts.generation || 1;
      this.role = { name: "primary", m: this.newPrimary(generation, 1) };
      this.dev.activate(1);
      this.announceSoon(0);
      // With a lease the generation is the lease's, saved once it is held.
      if (lease) this.leaseWaiting = true;
      else opts.io.saveGeneration(generation);
    } else {
      this.role = { name: "backup", m: this.newBackup(opts.generation) };
    }
  }

  // ---- what the node is ----

  get roleName(): NodeRole {
    return this.role.name;
  }

  /** The primary machine, when this node is the primary. */
  get primary(): PrimaryMachine | undefined {
    return this.role.name === "primary" ? this.role.m : undefined;
  }

  /** The backup machine, when this node is a backup. */
  get backup(): BackupMachine | undefined {
    return this.role.name === "backup" ? this.role.m : undefined;
  }

  get state(): PrimaryStateName | BackupStateName {
    return this.role.m.state;
  }

  get generation(): number {
    return this.role.m.generation;
  }

  /** The last committed (primary) or applied (backup) epoch. */
  get committed(): number {
    return this.role.m.committed;
  }

  /** The guest's kernel while the domain runs here. */
  get kernel(): Kernel | undefined {
    return this.kernelRef;
  }

  /** The replication mode (fixed for the node's life). */
  get mode(): ReplicationMode {
    return this.config.mode ?? "remus";
  }

  /** COLO: the comparator side while this node is a COLO primary. */
  get coloPrimary(): ColoPrimary | undefined {
    return this.coloP;
  }

  /** COLO: the secondary's own guest while this node is a COLO backup. */
  get coloSecondary(): ColoSecondary | undefined {
    return this.coloS;
  }

  /** COLO: the rewriter kept at the LAN edge after this node took over as a secondary. */
  get coloEdge(): SeqRewriter | undefined {
    return this.edge;
  }

  /**
   * The domain's configuration as this node knows it: its own (a primary), or
   * the one its primary sent (a backup; undefined until the first DOMAIN_CONFIG).
   */
  get domainConfig(): DomainConfig | undefined {
    const s = this.settingsRef;
    if (!s) return undefined;
    return {
      pages: this.domain.pages,
      diskBlocks: this.domain.disk.blocks,
      intervalMs: this.config.intervalMs,
      ...s,
    };
  }

  /** Why this backup refused its primary's domain (a DOMAIN_CONFIG that conflicts with its settings), if it did. */
  get configError(): string | undefined {
    return this.backup?.configError;
  }

  /** COLO: what this node's primaries compared and checkpoints they took, since the node started. */
  coloCounts(): ColoCounts {
    const d = this.coloDone;
    const c: ColoCounts = { compared: { ...d.compared }, checkpoints: { ...d.checkpoints } };
    addColoCounts(c, this.coloP, this.primary);
    return c;
  }

  /**
   * COLO: checkpoints forced by divergence (a mismatch, a timeout, a full
   * queue) per second since the node started, and the fraction of the
   * primary's compared frames that differed.
   */
  coloDivergence(): { checkpointsPerSecond: number; mismatchRatio: number } {
    const c = this.coloCounts();
    const forced = c.checkpoints.mismatch + c.checkpoints.timeout + c.checkpoints.queue_full;
    const seconds = Math.max(0.001, (this.now - (this.startedAt ?? this.now)) / 1000);
    const compared = c.compared.match + c.compared.mismatch;
    return {
      checkpointsPerSecond: this.startedAt === undefined ? 0 : forced / seconds,
      mismatchRatio: compared === 0 ? 0 : c.compared.mismatch / compared,
    };
  }

  /** Whether the shell should (re)connect to the backup it knows (a primary without one). */
  get wantsPeer(): boolean {
    return !this.leaseWaiting && (this.primary?.wantsPeer ?? false);
  }

  /** The lease this node runs under (undefined: generation-only fencing). */
  get lease(): NodeLease | undefined {
    return this.opts.lease;
  }

  /** A starting primary that does not hold the lease yet (it runs nothing meanwhile). */
  get awaitingLease(): boolean {
    return this.leaseWaiting;
  }

  /** Ready for its role: a primary whose domain runs, a backup in standby. */
  get ready(): boolean {
    const p = this.primary;
    return p ? p.isRunning && !this.leaseWaiting : this.backup?.state === "standby";
  }

  // ---- inputs ----

  /** Runs what is due at `now` (one loop turn): the guest (primary), then the machine's timers and streaming. */
  step(now: number): void {
    this.now = now;
    this.startedAt ??= now;
    // This turn's ticks take whatever input is waiting.
    this.rxPending = false;
    if (!this.noteTurn(now, true) && this.settling) {
      // This turn began after the stall was seen, so the links were read meanwhile.
      this.settling = false;
    }
    // A primary in doubt after its own long stall releases nothing until its backup acks a later epoch.
    if (!this.settling && this.dev.isSuspended && !this.primary?.doubting) this.dev.resume(now);
    const judge = !this.settling;
    if (this.retired.length > 0) this.retired = this.retired.filter((p) => !p.retire());
    if (this.opts.lease && judge) this.leaseTurn(now, this.opts.lease);
    if (this.leaseWaiting) return;
    const r = this.role;
    if (r.name === "primary") {
      const p = r.m;
      const k = this.kernelRef;
      if (p.isRunning && k) {
        this.runGuest(p, now, () => {
          const n = this.pacer.due(now, this.domain.vcpu.ticks);
          for (let i = 0; i < n; i++) k.tick();
        });
      }
      p.poll(now, judge);
      if (this.opts.lease) this.dev.flush(now);
      this.announceDue(now);
    } else {
      r.m.poll(now, judge);
      this.coloS?.step(now);
    }
    this.afterInput();
  }

  /**
   * What the lease asks of this turn (see the header): a starting primary
   * takes it; a primary whose lease lapsed stops and demotes; a primary left
   * holding output for an absent backup moves the lineage on; a stopped or
   * fenced primary rejoins as backup; a backup that suspects its primary
   * campaigns, and activates once the lease is its own.
   */
  private leaseTurn(now: number, l: NodeLease): void {
    const r = this.role;
    if (r.name === "backup") {
      const b = r.m;
      if (b.suspected !== undefined && l.state === "held" && l.mayRelease(now)) {
        // afterInput promotes it, under the generation the lease service handed out.
        b.activate(b.suspected, l.generation ?? 0);
      } else if (b.suspected !== undefined) {
        if (!l.isCampaigning && l.state !== "acquiring")
          l.campaign(b.imageGeneration, (current) => {
            if (this.backup === b && b.suspected !== undefined) b.lineageMoved(current);
          });
      } else {
        if (l.isCampaigning) l.stopCampaign();
        // A campaign won after the primary came back: nobody needs this lease.
        if (l.state === "held" && b.state !== "activated") l.release();
      }
      return;
    }
    const p = r.m;
    if (this.leaseWaiting) {
      if (l.state === "held" && l.mayRelease(now)) {
        this.leaseWaiting = false;
        p.generation = l.generation ?? p.generation;
        this.opts.io.saveGeneration(p.generation);
        this.pacer.reset(now, this.domain.vcpu.ticks);
        this.announceSoon(now);
      } else if (this.opts.leaseBoot && l.holder !== undefined && l.holder.nodeId !== l.name) {
        this.giveWay(now, l, `${l.holder.nodeId} holds the lease`);
      } else if (!l.isCampaigning && l.state !== "acquiring") {
        if (this.opts.leaseBoot) {
          l.campaign(0, (current) => {
            if (this.leaseWaiting && this.primary === p)
              this.giveWay(this.now, l, `the domain exists (lineage at generation ${current})`);
          });
        } else l.campaign();
      }
      return;
    }
    if (p.isRunning && !l.mayRelease(now)) {
      p.leaseLost(l.state === "held" || l.state === "lost" ? "not renewed before its deadline" : l.state);
    }
    if (!p.isRunning) {
      if (l.state === "held" || l.isCampaigning) l.release();
      if (!this.stopRequested && (p.state === "fenced" || p.state === "stopped")) {
        this.demote(now, p.state === "fenced" ? "fenced" : "stopped");
      }
      return;
    }
    const hb = this.config.heartbeat;
    if (p.output === "hold" && !p.connected) this.holdSince ??= now;
    else this.holdSince = undefined;
    const longHold = this.holdSince !== undefined && now - this.holdSince >= hb.intervalMs * hb.misses;
    if ((p.continueWanted || longHold) && !this.advancing && now >= this.advanceAfter) {
      this.advancing = true;
      l.advance(p.generation, (rec) => {
        this.advancing = false;
        this.advanceAfter = this.now + hb.intervalMs;
        if (rec && this.primary === p && p.isRunning) {
          p.continueAlone(rec.generation);
          this.opts.io.saveGeneration(p.generation);
        }
      });
    }
  }

  /**
   * A starting primary that must not boot (`leaseBoot`: the domain exists
   * elsewhere) stops its fresh guest, which never ran, and becomes a backup.
   * This, like `demote`, is the way into the backup role; what the backup
   * then takes from the primary (a full sync today) is the backup machine's.
   */
  private giveWay(now: number, l: NodeLease, why: string): void {
    const p = this.primary;
    if (!p || !this.leaseWaiting) return;
    l.stopCampaign();
    this.leaseWaiting = false;
    p.requestStop("shutdown", now);
    this.demote(now, `following: ${why}`);
  }

  /**
   * Notes that the node runs at `now` (a loop turn when `turn`); true when
   * the gap since the last turn shows that the node itself was stalled.
   */
  private noteTurn(now: number, turn: boolean): boolean {
    const last = this.lastTurnAt;
    if (turn || last === undefined) this.lastTurnAt = now;
    if (last === undefined) return false;
    const gap = now - last;
    const threshold = this.config.heartbeat.intervalMs / 10;
    if (gap <= threshold) return false;
    this.lastTurnAt = now;
    this.settling = true;
    this.dev.suspend();
    // Why: a frozen node hears nothing, whoever is alive; only the part of a gap beyond a normal
    // turn's allowance is credited, so a loop that is merely slow still detects a dead peer.
    this.role.m.stalled(gap - threshold, now, gap);
    this.opts.io.emit({ type: "loop.stall", ms: gap });
    return true;
  }

  /** Announces the guest at `now`, and again 50, 250 and 1000 ms later. */
  private announceSoon(now: number): void {
    this.announceAt = [now, now + 50, now + 250, now + 1000];
    this.announceDue(now);
  }

  /**
   * Sends the announcements that are due, when this node may speak for the
   * domain: after any stall is settled, and only while protected or while no
   * backup can activate. A primary holding output for a backup that may
   * activate (the link broke) waits: it may have been superseded, and its
   * announcement would move the guest's MAC back to a stale port.
   */
  private announceDue(now: number): void {
    const p = this.primary;
    if (!p?.isRunning || this.dev.isSuspended) return;
    if (p.state !== "protected" && p.output !== "release") return;
    while (this.announceAt.length > 0 && (this.announceAt[0] as number) <= now) {
      this.announceAt.shift();
      // An announcement reveals no guest state: it is tagged with the last committed epoch.
      this.dev.announce(p.committed);
    }
  }

  /** A replication connection opened (dialled or accepted): the current role's machine takes it. */
  attach(port: Port, now: number): void {
    this.now = now;
    this.noteTurn(now, false);
    const m = this.role.m;
    this.owner.set(port, m);
    m.attach(port, now);
  }

  /** A frame arrived on `port`. */
  frame(port: Port, data: Uint8Array, now: number): void {
    this.now = now;
    this.noteTurn(now, false);
    const m = this.owner.get(port);
    if (!m) return;
    m.frame(port, data, now);
    this.afterInput();
  }

  /** The connection on `port` closed. */
  detach(port: Port, now: number, reason: string): void {
    this.now = now;
    this.noteTurn(now, false);
    const m = this.owner.get(port);
    this.owner.delete(port);
    m?.detach(port, now, reason);
    this.afterInput();
  }

  /** A frame from the LAN for the guest's NIC (ignored unless the domain runs here). */
  lanInput(frame: Buffer): void {
    if (this.edge && this.dev.active) this.edge.inbound(frame);
    else this.guestInput(frame);
  }

  /** Input for the guest: through the COLO primary (mirrored) while a session runs, else straight in. */
  private guestInput(frame: Buffer): void {
    const p = this.primary;
    if (p) this.rxPending = true;
    if (p?.coloRunning && this.coloP) this.coloP.input(frame);
    else this.dev.input(frame);
  }

  // ---- commands ----

  /**
   * POST /v1/failover on a backup: ask the primary for a planned switchover,
   * or activate now. With a live primary connected (heard from within two
   * heartbeat intervals), an unplanned failover is a
   * planned switchover too (final checkpoint, the primary releases its output
   * and stops, then this backup activates): activating beside a live primary
   * would roll back what it released since this backup's last epoch.
   */
  failover(
    planned: boolean,
    now: number,
  ): { activated: boolean; epoch?: number; digest?: string; pending?: boolean } {
    this.now = now;
    const b = this.backup;
    if (!b) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "this daemon is already the primary");
    if (planned || b.primaryLive(now)) {
      b.requestSwitchover();
      return { activated: false, pending: true };
    }
    if (this.opts.lease) {
      // With a lease the activation waits for it (the next turns).
      b.suspect("manual");
      return { activated: false, pending: true };
    }
    const a = b.activate("manual");
    this.promote(a);
    return { activated: true, epoch: a.epoch, digest: a.digest };
  }

  /** POST /v1/checkpoint on a primary: end the open epoch now. */
  checkpoint(): { epoch: number } {
    const p = this.primary;
    if (!p) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "checkpoints are taken by the primary");
    p.requestCheckpoint();
    return { epoch: p.epoch };
  }

  /**
   * Interval and compression for this and every later primary machine (a
   * primary applies them when its open epoch ends); heartbeat settings at once,
   * to the live link too.
   */
  reconfigure(change: { intervalMs?: number; compress?: boolean; heartbeat?: HeartbeatConfig }): void {
    const c = this.config;
    const epochChange: { intervalMs?: number; compress?: boolean } = {};
    if (change.intervalMs !== undefined) epochChange.intervalMs = c.intervalMs = change.intervalMs;
    if (change.compress !== undefined) epochChange.compress = c.compress = change.compress;
    if (change.heartbeat) {
      c.heartbeat = change.heartbeat;
      this.role.m.setHeartbeat(change.heartbeat);
    }
    if (Object.keys(epochChange).length > 0) this.primary?.reconfigure(epochChange);
  }

  /** A planned stop: a primary takes a final checkpoint and says GOODBYE; a backup says GOODBYE. */
  stop(now: number): void {
    this.now = now;
    this.stopRequested = true;
    this.opts.lease?.stopCampaign();
    const r = this.role;
    if (r.name === "primary") r.m.requestStop("shutdown", now);
    else r.m.stop();
  }

  /** Whether the node's machine has stopped (after `stop`; a fenced primary too). */
  get stopped(): boolean {
    const s = this.role.m.state;
    return s === "stopped" || s === "fenced";
  }

  /**
   * Primary to backup. Precondition: the domain no longer runs here (the
   * primary was fenced by a newer generation, or stopped after a switchover).
   * The node keeps its memory: the new backup holds no valid image, but it
   * offers that memory to be rewound (src/replication/rewind.ts): its last
   * acknowledged epoch and the pages and blocks it wrote after it. A primary
   * whose own history contains that epoch sends only what differs; any other
   * syncs it in full.
   */
  demote(now: number, reason: "fenced" | "stopped" | `following: ${string}`): void {
    this.now = now;
    const p = this.primary;
    if (!p) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "only a primary can be demoted");
    if (p.isRunning) {
      throw new RemusError("REMUSD_ERR_WRONG_ROLE", `cannot demote a primary whose domain runs (${p.state})`);
    }
    this.kernelRef = undefined;
    this.dev.deactivate();
    addColoCounts(this.coloDone, this.coloP, p);
    this.coloP = undefined;
    this.edge = undefined;
    this.holdSince = undefined;
    this.opts.lease?.release();
    if (!p.retire()) this.retired.push(p);
    // Read before the backup's applies touch the logs; nothing the guest writes after this.
    const base = rewindBaseOf(this.domain, p.generation, p.committed);
    this.domain.untrackDirtySince();
    const b = this.newBackup(p.generation, base);
    this.role = { name: "backup", m: b };
    this.opts.io.emit({
      type: "role.changed",
      from: "primary",
      to: "backup",
      reason,
      epoch: p.committed,
      generation: b.generation,
    });
  }

  // ---- queries for the control API ----

  /**
   * Between steps, as soon as a page worker finished a job or the receive
   * path has work left: sends what is ready (primary) or works off another
   * turn's worth of records (backup). No guest ticks, no timers.
   */
  flush(now: number): void {
    this.now = now;
    // A flush after a stall sees it as any input does: nothing runs or leaves until it is settled.
    this.noteTurn(now, false);
    this.interrupt(now);
    const r = this.role;
    if (r.name === "primary") r.m.flush();
    else r.m.flush(now);
    this.afterInput();
  }

  /**
   * Whether the host should flush again soon: a backup still has records or
   * an apply to work off, or input reached a running guest (either
   * replica's) since its last run.
   */
  get busy(): boolean {
    return (this.backup?.busy ?? false) || this.rxWaiting;
  }

  /** Input reached a running guest (either replica's) since it last ran: a receive interrupt is due. */
  get rxWaiting(): boolean {
    return this.rxPending || (this.coloS?.rxPending ?? false);
  }

  /**
   * A receive interrupt (Kernel.interrupt) for input that arrived between
   * steps, under the same conditions as a step's ticks: the primary's guest
   * runs only while its domain runs here, not paused for a COLO checkpoint,
   * not waiting for the lease, and not while a stall of this node is being
   * settled; its output goes where a step's would (the comparator, or the
   * netbuf under output commit). The COLO secondary's guest runs only while
   * its session runs. Guest time does not move: the next step's ticks are
   * as due as before.
   */
  private interrupt(now: number): void {
    const rx = this.rxPending;
    this.rxPending = false;
    if (this.leaseWaiting || this.settling) return;
    const r = this.role;
    if (r.name === "backup") {
      if (this.coloS?.rxPending) this.coloS.interrupt();
      return;
    }
    const p = r.m;
    const k = this.kernelRef;
    if (!rx || !p.isRunning || !k) return;
    this.runGuest(p, now, () => k.interrupt());
    if (this.opts.lease) this.dev.flush(now);
  }

  /**
   * Runs the primary's guest (`run`: a step's ticks or an interrupt) unless
   * a COLO checkpoint pauses it (between COLO_CHECKPOINT and its capture),
   * then moves what it transmitted where it goes: the comparator in COLO,
   * the netbuf under output commit.
   */
  private runGuest(p: PrimaryMachine, now: number, run: () => void): void {
    const colo = p.coloRunning ? this.coloP : undefined;
    if (!colo || colo.resume(now)) run();
    if (colo) colo.pump(now);
    else this.dev.pump(p.epoch, p.outputMustWait, now);
  }

  /** The domain's digest now (a backup: at its last applied epoch). */
  digest(): { epoch: number; digest: string; live: boolean } {
    const p = this.primary;
    if (p) return { epoch: p.epoch, digest: this.domain.digest(), live: true };
    const b = this.backup as BackupMachine;
    b.settleImage();
    if (!b.imageValid) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "the backup has no complete image yet");
    return { epoch: b.committed, digest: this.domain.digest(), live: false };
  }

  /** The guest's process table. */
  processes(): ProcessInfo[] {
    this.requireImage();
    if (!Kernel.isBooted(this.domain)) return [];
    return new Kernel(this.domain).listProcesses();
  }

  /** The counter continuity check (counter.log holds exactly 1..counter) on the current image. */
  counterCheck(): CounterCheck {
    this.requireImage();
    if (!Kernel.isBooted(this.domain)) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "no guest is booted");
    return verifyCounter(new Kernel(this.domain));
  }

  private requireImage(): void {
    const b = this.backup;
    // An apply in progress finishes first: the image is read whole or not at all.
    b?.settleImage();
    if (b && !b.imageValid)
      throw new RemusError("REMUSD_ERR_WRONG_ROLE", "the backup has no complete image yet");
  }

  // ---- transitions ----

  private afterInput(): void {
    const a = this.backup?.activated;
    if (a) this.promote(a);
  }

  /**
   * Backup to primary. Precondition: the backup machine activated (it resumed
   * its last applied epoch under a new generation and told the old primary so).
   */
  private promote(a: Activation): void {
    if (this.role.name !== "backup" || this.role.m.activated !== a) {
      throw new RemusError("REMUSD_ERR_INTERNAL", "promote: the backup has not activated");
    }
    this.opts.io.saveGeneration(a.generation);
    const sec = this.coloS;
    this.coloS = undefined;
    if (sec?.started) {
      // COLO: the guest goes on from its own state (no rollback); its rewriter keeps the clients'
      // sequence numbers valid for every connection opened while it was the secondary.
      this.edge = sec.failover();
      sec.deliver = (f) => this.guestInput(f);
    }
    this.kernelRef = new Kernel(this.domain);
    // From here on every page and block written is remembered (across epochs), so that the primary
    // this node superseded can rejoin by rewind: it continues generation `fromGeneration` from `epoch`.
    this.domain.trackDirtySince();
    const lineage = { generation: a.fromGeneration, epoch: a.epoch };
    this.role = { name: "primary", m: this.newPrimary(a.generation, a.epoch + 1, lineage) };
    // Only the active side talks on the LAN; announce the guest's new port with a gratuitous ARP.
    this.dev.activate(a.epoch + 1);
    this.announceSoon(this.now);
    // The guest resumes now, from its own clock.
    this.pacer.reset(this.now, this.domain.vcpu.ticks);
    this.opts.io.emit({
      type: "role.changed",
      from: "backup",
      to: "primary",
      reason: a.reason,
      epoch: a.epoch,
      generation: a.generation,
    });
  }

  private newPrimary(generation: number, startEpoch: number, lineage?: Lineage): PrimaryMachine {
    const o = this.opts;
    const c = this.config;
    const p: PrimaryMachine = new PrimaryMachine({
      ...this.machineParts(),
      generation,
      startEpoch,
      ...(lineage ? { lineage } : {}),
      config: {
        ...DEFAULT_PRIMARY_CONFIG,
        intervalMs: c.intervalMs,
        compress: c.compress,
        heartbeat: c.heartbeat,
        maxInFlight: c.maxInFlight,
        verify: c.verify,
        leaseGuarded: o.lease !== undefined,
        ...(c.batchPages !== undefined ? { batchPages: c.batchPages } : {}),
        ...(c.highWaterBytes !== undefined ? { highWaterBytes: c.highWaterBytes } : {}),
        ...(c.maxInFlightBytes !== undefined ? { maxInFlightBytes: c.maxInFlightBytes } : {}),
        ...(c.turnMs !== undefined ? { turnMs: c.turnMs } : {}),
        ...(c.turnUnits !== undefined ? { turnUnits: c.turnUnits } : {}),
        ...(c.inlinePages !== undefined ? { inlinePages: c.inlinePages } : {}),
        colo: c.mode === "colo",
      },
      hooks: {
        // Output commit: the frames of epoch N go into the netbuf at its pause and leave when N is acked
        // (COLO: those the comparator still holds).
        beforeCapture: (epoch) => {
          if (p.coloRunning && this.coloP) this.coloP.settle(epoch, this.now);
          else this.dev.pump(epoch, p.outputMustWait, this.now);
        },
        onColoOutput: (epoch, frame) => this.coloP?.output(epoch, frame, this.now),
        onColoEnd: () => {
          // The secondary is gone: what the comparator held waits for the output mode (`onState`).
          this.coloP?.settle(p.epoch, this.now);
          this.coloP?.flushInput(this.now);
        },
        onCommitted: (epoch) => this.dev.committed(epoch, this.now),
        onState: (state) => {
          // The one place that applies what becomes of held output (PrimaryMachine.output decides):
          // discarded, and the NIC detached, once fenced or stopped (another node may run the
          // domain now); released once no backup can activate; otherwise held for an ACK.
          const out = p.output;
          if (out === "discard") this.dev.deactivate();
          else if (out === "release") this.dev.releaseAll(this.now);
          if (state === "fenced") o.io.saveGeneration(Math.max(p.generation, p.supersededBy ?? 0));
        },
        onStaleRefused: () => this.announceSoon(this.now),
        // COLO: a secondary's failover must keep renumbering what this node's edge renumbers.
        coloEdge: () => this.edge?.carried() ?? [],
      },
      domainSettings: () =>
        this.settingsRef ?? {
          guestMac: this.domain.device.mac,
          guestIp: this.domain.device.get("ip"),
          workload: "idle",
        },
      capturer: (this.capturerRef ??= (o.capturer ?? ((d: Domain) => new CowCapturer(d.memory)))(
        this.domain,
      )),
      ...(o.workers ? { workers: o.workers } : {}),
    });
    this.coloP =
      c.mode === "colo"
        ? new ColoPrimary(c.compare ?? {}, p, this.dev, this.now, o.observeColoReleaseDelay)
        : undefined;
    return p;
  }

  private newBackup(generation: number, rewind?: RewindBase): BackupMachine {
    const o = this.opts;
    if (!o.store)
      throw new RemusError("REMUSD_ERR_WRONG_ROLE", "this node has no store: it cannot be a backup");
    const colo = this.config.mode === "colo";
    // The secondary's guest sends its output through the machine built just below.
    let machine: BackupMachine | undefined;
    const sec = colo
      ? new ColoSecondary(this.domain, o.entropy, (f) => machine?.sendColoOutput(f))
      : undefined;
    this.coloS = sec;
    machine = new BackupMachine({
      ...this.machineParts(),
      generation,
      ...(sec
        ? {
            colo: {
              start: (_epoch, edge) => {
                // The primary's edge renumbering, for a failover of this secondary to carry on.
                sec.rewriter.carry(edge);
                sec.start(this.now);
              },
              input: (f) => sec.input(f),
              pause: () => sec.pause(),
              resume: (_epoch, run) => sec.start(this.now, run),
              stop: () => sec.stop(),
            },
          }
        : {}),
      config: {
        colo,
        heartbeat: this.config.heartbeat,
        verify: this.config.verify,
        deferActivation: o.lease !== undefined,
        ...(this.config.turnMs !== undefined ? { turnMs: this.config.turnMs } : {}),
        ...(this.config.turnUnits !== undefined ? { turnUnits: this.config.turnUnits } : {}),
        ...(this.config.inlinePages !== undefined ? { inlinePages: this.config.inlinePages } : {}),
      },
      store: o.store,
      ...(o.start.role === "backup" && o.start.pinned ? { pinned: o.start.pinned } : {}),
      ...(rewind ? { rewind } : {}),
      ...(o.workers ? { workers: o.workers } : {}),
    });
    return machine;
  }

  /** A backup adopted its primary's domain configuration: a later promotion runs the domain with it. */
  private adopted(b: BackupMachine): void {
    const cfg = b.domainConfig;
    if (!cfg) return;
    this.config.intervalMs = cfg.intervalMs;
    this.settingsRef = { guestMac: cfg.guestMac, guestIp: cfg.guestIp, workload: cfg.workload };
  }

  /** What every machine of this node is built with. */
  private machineParts() {
    const o = this.opts;
    return {
      domain: this.domain,
      key: o.key,
      nodeId: o.nodeId,
      software: o.software,
      entropy: o.entropy,
      emit: (e: ReplicationEvent) => {
        const b = this.backup;
        if (e.type === "domain.config" && b) this.adopted(b);
        o.io.emit(e);
      },
      ...(o.hrClock ? { hrClock: o.hrClock } : {}),
    };
  }
}
