/**
 * A remusd daemon: the I/O shell around one `Node` (src/node/node.ts).
 *
 * It owns the real clock (a 1 ms loop that steps the node; the node runs the
 * guest in step with wall time), the WebSocket transport, the vswitch link,
 * the durable store, the node's state file, the event log, the metrics and
 * what the control API reads. Every replication decision, and every role
 * change, is the node's.
 *
 * With a lease (`--lease etcd://...`) it also drives the node's `Lease`
 * (src/lease/lease.ts: its timers and the etcd client) and reports it;
 * `remusd node` decides the starting role by the lease record (nobody holds
 * it: start as a primary that boots only a new lineage; someone else does:
 * start as backup) and, while a backup, dials the holder's address from the
 * record. SIGTERM releases the lease after the planned stop.
 */
import { join } from "node:path";
import type { Logger } from "pino";
import { EVENTS, type FaultKind } from "../contract.js";
import { CopyCapturer, CowCapturer } from "../domain/capture.js";
import { Domain } from "../domain/domain.js";
import { RemusError, usageError } from "../errors.js";
import type { ProcessInfo } from "../guest/kernel.js";
import type { CounterCheck } from "../guest/programs/basic.js";
import type { LeaseEvent } from "../lease/core.js";
import { leaseServiceFor } from "../lease/index.js";
import { Lease } from "../lease/lease.js";
import type { LeaderRecord } from "../lease/record.js";
import { Metrics, type NetbufStats } from "../metrics.js";
import { noColoCounts } from "../node/colo.js";
import { Node, type NodeEvent, type NodeRole } from "../node/node.js";
import { PagePool } from "../pipeline/pool.js";
import { systemEntropy } from "../prng.js";
import type { BackupMachine } from "../replication/backup.js";
import type { Port } from "../replication/conn.js";
import type { HeartbeatConfig } from "../replication/heartbeat.js";
import type { PrimaryMachine } from "../replication/primary.js";
import { LevelStore } from "../store/level.js";
import { NodeStateFile } from "../store/state.js";
import { cutPort, Dialer, type LinkHandler, listenReplication } from "../transport/ws.js";
import { VERSION } from "../version.js";
import { EventLog } from "./eventlog.js";
import { createLogger } from "./logging.js";
import { NetSide } from "./netside.js";
import { holderLabelFor, inClusterTarget, PodLabeller } from "./podlabel.js";
import type { DaemonSettings } from "./settings.js";

/** The settings an operator may change at run time (PATCH /v1/config). */
export interface RuntimeConfig {
  intervalMs: number;
  compress: boolean;
  heartbeat: HeartbeatConfig;
}

/** The last role change, for /v1/status. */
export interface RoleChange {
  readonly from: NodeRole | null;
  readonly to: NodeRole;
  readonly reason: string;
  readonly at: string;
}

/** The last checkpoint committed (primary, on ack) or applied (backup), for /v1/status. */
export interface LastCheckpoint {
  readonly epoch: number;
  readonly at: string;
  readonly dirtyPages: number;
  readonly diskWrites: number | null;
  readonly pauseMs: number | null;
  readonly durationMs: number | null;
  readonly wireBytes: number | null;
  readonly applyMs: number | null;
}

/** Node events written to the event log (the rest only feed metrics). */
const LOGGED: ReadonlySet<string> = new Set<string>(EVENTS);

export class Daemon {
  readonly settings: DaemonSettings;
  /** Bound to the current role and generation; rebound when either changes. */
  log: Logger;
  readonly events: EventLog;
  readonly metrics: Metrics;
  /** The node id and the highest generation, persisted in the data directory. */
  readonly stateFile: NodeStateFile;
  readonly domain: Domain;
  store: LevelStore | undefined;
  private nodeRef: Node | undefined;
  private dialer: Dialer | undefined;
  /** The backup a primary dials (--peer, or set at run time through PATCH /v1/config). */
  peerUrl: string | undefined;
  private listener: { port: number; close(): Promise<void> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** A step queued for right after this turn's I/O (work left on the receive path, a page job done). */
  private soon: NodeJS.Immediate | undefined;
  /** Threads that encode and decode page batches for either role. */
  private pool: PagePool | undefined;
  private stopping = false;
  replicationPort: number | undefined;
  /** The guest NIC's attachment to the vswitch. */
  readonly net = new NetSide();
  private readonly rootLog: Logger;
  /** Writes out buffered log lines (call before the process exits). */
  readonly flushLog: () => void;
  lastRoleChange: RoleChange;
  lastCheckpoint: LastCheckpoint | undefined;
  /** The last domain digest computed at a checkpoint (--verify). */
  lastDigest: { readonly epoch: number; readonly digest: string } | undefined;
  private logGeneration: number | undefined;
  /** Open replication connections (a link cut tears them all down). */
  private readonly ports = new Set<Port>();
  /** Until when (performance.now ms) a link cut holds off every replication connection. */
  private linkCutUntil = 0;
  /** Set at a promotion: the first guest frame released afterwards is logged as `output.resumed`. */
  private resumedAt: number | undefined;
  /** Replication bytes since the last `sync.started`, logged with `sync.completed`. */
  private syncBytes = { raw: 0, wire: 0 };
  /**
   * Called when the daemon cannot go on by its own settings (a backup whose
   * primary's domain contradicts them): nothing was changed; the process
   * stops and exits with the error's code.
   */
  onFatal: ((e: RemusError) => void) | undefined;
  /** The domain's lease (`--lease etcd://...`), or undefined (generation-only fencing). */
  lease: Lease | undefined;
  /** `--holder-label`: this pod's label, true while this node holds the lease. */
  private podLabel: PodLabeller | undefined;
  /** `remusd node` as backup: dials the lease holder's replication address. */
  private follower: Dialer | undefined;

  constructor(settings: DaemonSettings, logger?: Logger) {
    this.settings = settings;
    if (logger) {
      this.rootLog = logger;
      this.flushLog = () => {};
    } else {
      const l = createLogger({ level: settings.logLevel });
      this.rootLog = l.logger;
      this.flushLog = l.flush;
    }
    this.log = this.rootLog.child({ role: settings.role });
    this.lastRoleChange = { from: null, to: settings.role, reason: "started", at: new Date().toISOString() };
    this.events = new EventLog(settings.eventLog);
    this.metrics = new Metrics(VERSION);
    this.metrics.netbufSource = () => this.netbufStats();
    this.metrics.coloSource = () => this.nodeRef?.coloCounts() ?? noColoCounts();
    this.stateFile = new NodeStateFile(settings.dataDir);
    this.domain = new Domain(settings.geometry);
    this.domain.divergence = settings.divergence;
  }

  /** The replica this daemon runs (from `start`). */
  get node(): Node {
    if (!this.nodeRef) throw new RemusError("REMUSD_ERR_INTERNAL", "the daemon is not started");
    return this.nodeRef;
  }

  get role(): NodeRole {
    return this.nodeRef?.roleName ?? this.settings.role;
  }

  get primary(): PrimaryMachine | undefined {
    return this.nodeRef?.primary;
  }

  get backup(): BackupMachine | undefined {
    return this.nodeRef?.backup;
  }

  /** Interval, compression and heartbeat as set now (flags, then PATCH /v1/config); a new primary starts with them. */
  get runtime(): RuntimeConfig {
    return this.node.config;
  }

  /** Binds `log` to the current role and generation. */
  private rebindLog(): void {
    this.logGeneration = this.node.generation;
    this.log = this.rootLog.child({ role: this.role, generation: this.logGeneration });
  }

  /** Remembers what /v1/status reports about the last checkpoint and digest. */
  private remember(e: NodeEvent): void {
    const at = new Date().toISOString();
    if (e.type === "checkpoint.committed") {
      this.lastCheckpoint = {
        epoch: e.epoch,
        at,
        dirtyPages: e.dirtyPages,
        diskWrites: null,
        pauseMs: e.pauseMs,
        durationMs: e.durationMs,
        wireBytes: e.wireBytes,
        applyMs: null,
      };
    } else if (e.type === "checkpoint.applied") {
      this.lastCheckpoint = {
        epoch: e.epoch,
        at,
        dirtyPages: e.pages,
        diskWrites: e.diskWrites,
        pauseMs: null,
        durationMs: null,
        wireBytes: null,
        applyMs: e.applyMs,
      };
    }
    if ((e.type === "checkpoint.sent" || e.type === "checkpoint.applied") && e.digest !== undefined) {
      this.lastDigest = { epoch: e.epoch, digest: e.digest };
    } else if (e.type === "failover.activated") {
      this.lastDigest = { epoch: e.epoch, digest: e.digest };
    }
  }

  private emit = (e: NodeEvent): void => {
    const node = this.nodeRef;
    if (!node) return;
    if (e.type === "role.changed") {
      this.roleChanged(e);
      return;
    }
    if (e.type === "loop.stall") {
      this.metrics.loopStall.observe(e.ms / 1000);
      if (e.ms >= this.node.config.heartbeat.intervalMs) this.log.warn({ ms: e.ms }, "loop stall");
      return;
    }
    this.metrics.onEvent(e);
    this.remember(e);
    if (e.type === "sync.started") this.syncBytes = { raw: 0, wire: 0 };
    else if (e.type === "replication.bytes") {
      this.syncBytes.raw += e.raw;
      this.syncBytes.wire += e.wire;
    }
    // A backup adopts its primary's generation at sync; a fenced primary learns a newer one.
    if (this.logGeneration !== undefined && node.generation !== this.logGeneration) this.rebindLog();
    if (!LOGGED.has(e.type)) return;
    const { type, ...fields } = e;
    const epoch = "epoch" in e ? e.epoch : node.committed;
    // A primary's sync carries what it cost on the wire (a backup receives, and counts nothing).
    const extra =
      type === "sync.completed" && this.role === "primary"
        ? { rawBytes: this.syncBytes.raw, wireBytes: this.syncBytes.wire }
        : {};
    this.events.write(type, this.role, epoch, { ...fields, ...extra });
    if (e.type === "config.conflict") {
      this.log.error(fields, type);
      this.onFatal?.(usageError(`the primary's domain conflicts with this backup's settings: ${e.message}`));
      return;
    }
    switch (type) {
      case "checkpoint.sent":
      case "checkpoint.committed":
      case "checkpoint.applied":
        this.log.debug(fields, type);
        return;
      case "peer.refused":
      case "failover.impossible":
      case "fenced":
      case "checkpoint.failed":
        this.log.warn(fields, type);
        return;
      default:
        this.log.info(fields, type);
    }
  };

  private roleChanged(e: Extract<NodeEvent, { type: "role.changed" }>): void {
    const node = this.node;
    this.metrics.setRole(e.to);
    this.metrics.setState(node.state);
    this.lastRoleChange = {
      from: e.from,
      to: e.to,
      reason: e.to === "primary" ? `failover (${e.reason}) from epoch ${e.epoch}` : e.reason,
      at: new Date().toISOString(),
    };
    this.rebindLog();
    this.resumedAt = e.to === "primary" ? performance.now() : undefined;
    const { type, epoch, ...fields } = e;
    this.events.write(type, e.to, epoch, fields);
    this.log.info(
      { epoch, generation: e.generation, reason: e.reason },
      `role changed: ${e.from} -> ${e.to}`,
    );
  }

  private link: LinkHandler = {
    opened: (port) => {
      if (this.linkCut || !this.nodeRef) {
        cutPort(port);
        return;
      }
      this.ports.add(port);
      this.node.attach(port, performance.now());
    },
    frame: (port, data) => {
      if (!this.ports.has(port)) return;
      this.node.frame(port, data, performance.now());
      if (this.node.busy) this.stepSoon();
    },
    closed: (port, reason) => {
      if (this.ports.delete(port)) this.node.detach(port, performance.now(), reason);
    },
  };

  /**
   * Flushes the node right after this turn's I/O (no guest ticks, no
   * timers): the receive path left work for later turns (it never holds the
   * loop long), input reached a running guest (its receive interrupt), or a
   * page worker finished a job whose frame can go now.
   * Coalesced: at most one queued.
   */
  private stepSoon = (): void => {
    if (this.soon || this.stopping) return;
    this.soon = setImmediate(() => {
      this.soon = undefined;
      if (this.stopping || !this.nodeRef) return;
      this.nodeRef.flush(performance.now());
      if (this.nodeRef.busy) this.stepSoon();
    });
  };

  /** Whether a link cut holds off replication connections now. */
  private get linkCut(): boolean {
    return performance.now() < this.linkCutUntil;
  }

  /**
   * Fault injection (POST /v1/faults/link-cut): tears down every replication
   * connection at once, without a close handshake, and neither dials nor
   * accepts one for `ms`.
   */
  cutReplication(ms: number): void {
    this.linkCutUntil = performance.now() + ms;
    for (const port of [...this.ports]) {
      this.ports.delete(port);
      cutPort(port);
      this.node.detach(port, performance.now(), "the replication link was cut (fault injection)");
    }
  }

  /**
   * Records an injected fault (POST /v1/faults/*) in the event log and the
   * log, flushed, before it takes effect: a crash leaves no chance later.
   */
  recordFault(fault: FaultKind, ms: number | null): void {
    this.events.write("fault.injected", this.role, this.nodeRef?.committed ?? 0, { fault, ms });
    this.log.warn({ fault, ms }, "fault injected through the API (--allow-fault-injection)");
    this.flushLog();
  }

  /** A guest frame for the LAN; the first one after a promotion is `output.resumed`. */
  private sendLan(frame: Buffer, epoch: number): void {
    this.net.send(frame);
    if (this.resumedAt === undefined) return;
    const afterMs = Math.round((performance.now() - this.resumedAt) * 1000) / 1000;
    this.resumedAt = undefined;
    this.events.write("output.resumed", this.role, epoch, { afterMs });
  }

  /** A `lease.*` event: the event log, the metrics, the log; and a step, so the node acts on it now. */
  private leaseEvent = (e: LeaseEvent): void => {
    // Routing first: a node without the lease stops attracting clients before anything else happens.
    this.podLabel?.set(holderLabelFor(e));
    this.metrics.leaseHeld?.set(e.event === "lease.acquired" ? 1 : 0);
    if (e.event === "lease.lost") this.metrics.leaseLost?.inc();
    // Until when output could leave under the lease that ended, on the wall clock (for checkers).
    const until = (): string =>
      new Date(Date.now() - (performance.now() - (this.lease?.core.releasableUntil ?? 0))).toISOString();
    const fields =
      e.event === "lease.acquired"
        ? { generation: e.generation, ttlMs: e.ttlMs }
        : e.event === "lease.lost"
          ? { generation: e.generation, reason: e.reason, releasableUntil: until() }
          : { generation: e.generation, releasableUntil: until() };
    this.events.write(e.event, this.role, this.nodeRef?.committed ?? 0, fields);
    if (e.event === "lease.lost") this.log.warn(fields, e.event);
    else this.log.info(fields, e.event);
    this.stepSoon();
  };

  /** `remusd node`: the starting role, by the lease record (retried until the service answers). */
  private async roleByLease(lease: Lease): Promise<"primary" | "backup"> {
    for (let warned = false; ; ) {
      const a = await new Promise<Parameters<Parameters<Lease["readHolder"]>[0]>[0]>((r) =>
        lease.readHolder(r),
      );
      if (a.ok)
        return a.value === undefined || a.value.nodeId === this.settings.nodeName ? "primary" : "backup";
      if (!warned)
        this.log.warn({ err: a.error.message }, "waiting for the lease service to decide this node's role");
      warned = true;
      await new Promise((r) => setTimeout(r, this.settings.leaseTiming.retryMs));
    }
  }

  /** `remusd node` as backup: follow the holder the lease record names (dial its replication address). */
  private followHolder = (h: LeaderRecord | undefined): void => {
    if (!h || h.nodeId === this.settings.nodeName || h.address === this.follower?.url) return;
    this.follower?.stop();
    const url = h.address;
    this.log.info({ holder: h.nodeId, address: url, generation: h.generation }, "following the lease holder");
    this.follower = new Dialer(
      url,
      this.link,
      () =>
        !this.stopping && this.nodeRef?.roleName === "backup" && !this.linkCut && this.follower?.url === url,
    );
  };

  async start(): Promise<void> {
    const s = this.settings;
    if (s.holderLabel !== undefined) {
      // Outside a pod this throws a usage error before anything is bound.
      this.podLabel = new PodLabeller({ key: s.holderLabel, target: inClusterTarget(), log: this.log });
      // A restarted container keeps its pod: clear a `true` left from before until the lease says otherwise.
      this.podLabel.set(false);
    }
    let generation = this.stateFile.state.generation;
    if (s.listen) {
      // Before the lease: the record advertises the port actually bound.
      this.listener = await listenReplication(s.listen, this.link);
      this.replicationPort = this.listener.port;
    }
    const service = leaseServiceFor(s.lease, s.leaseTiming);
    if (service) {
      const listenUrl = s.listen ? `ws://${s.listen.host}:${this.replicationPort}` : undefined;
      this.lease = new Lease({
        service,
        timing: s.leaseTiming,
        candidate: {
          nodeId: s.nodeName,
          address: s.advertise ?? listenUrl ?? "ws://unknown:0",
          control: s.advertiseControl ?? `${s.control.host}:${s.control.port}`,
        },
        onEvent: this.leaseEvent,
      });
      this.metrics.enableLease();
      this.metrics.leaseHeld?.set(0);
    } else {
      this.log.warn(
        "no lease (--lease none): fencing is by generation only; a network partition with both nodes up can run two primaries until they meet again",
      );
    }
    const role = s.node && this.lease ? await this.roleByLease(this.lease) : s.role;
    if (role !== s.role) this.log = this.rootLog.child({ role });
    // A node with a lease may become a backup later (fenced, demoted): it needs its store from the start.
    if (role === "backup" || this.lease) {
      this.store = new LevelStore(join(s.dataDir, "store"));
      const stored = await this.store.open();
      if (stored.valid) {
        this.log.info(
          { committed: stored.committed },
          "the store holds an image from before this start; it is stale (memory is lost) and will be replaced by a full resync",
        );
      }
      generation = Math.max(generation, stored.generation);
    }
    if (s.workers > 0) this.pool = new PagePool({ threads: s.workers, onSettle: this.stepSoon });
    this.nodeRef = new Node({
      domain: this.domain,
      key: s.key,
      nodeId: this.stateFile.nodeId,
      software: `remusd/${VERSION}`,
      entropy: systemEntropy,
      config: {
        intervalMs: s.intervalMs,
        compress: s.compress,
        heartbeat: s.heartbeat,
        maxInFlight: s.maxInFlight,
        maxInFlightBytes: s.maxInFlightBytes,
        verify: s.verify,
        outputCommit: s.netbuf,
        mode: s.mode,
      },
      capturer: (d) => (s.capture === "copy" ? new CopyCapturer(d.memory) : new CowCapturer(d.memory)),
      ...(this.pool ? { workers: this.pool } : {}),
      ...(this.store ? { store: this.store } : {}),
      io: {
        sendLan: (f, epoch) => this.sendLan(f, epoch),
        emit: this.emit,
        saveGeneration: (g) => this.stateFile.setGeneration(g),
      },
      start:
        role === "primary"
          ? {
              role: "primary",
              boot: { seed: s.seed, workload: s.workload, net: { mac: s.guestMac, ip: s.guestIp } },
            }
          : { role: "backup", pinned: s.pinned },
      generation,
      observeReleaseDelay: (sec) => this.metrics.releaseDelay.observe(sec),
      observeColoReleaseDelay: (sec) => this.metrics.coloReleaseDelay.observe(sec),
      ...(this.lease ? { lease: this.lease } : {}),
      ...(s.node ? { leaseBoot: "new-lineage" as const } : {}),
    });
    this.metrics.setRole(this.node.roleName);
    this.metrics.setState(this.node.state);
    if (s.switchAddr)
      await this.net.attach(s.switchAddr, (f) => {
        const n = this.nodeRef;
        if (!n) return;
        n.lanInput(f);
        // The guest takes the input at a receive interrupt right after this turn's I/O.
        if (n.busy) this.stepSoon();
      });
    if (s.role === "primary" && s.peer) this.setPeer(s.peer);
    if (s.node) this.lease?.follow(this.followHolder);
    this.rebindLog();
    this.events.write("role.changed", this.role, this.node.committed, {
      from: null,
      to: this.role,
      reason: "started",
    });
    this.loop();
  }

  /**
   * Sets (or clears, with null) the backup this daemon dials while it is the
   * primary. On a backup it is kept for after an activation: this is how an
   * activated primary is re-protected by a new backup.
   */
  setPeer(url: string | null): void {
    if (url !== null) {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        throw new RemusError("REMUSD_ERR_BAD_REQUEST", `peer must be a ws://HOST:PORT URL, got '${url}'`);
      }
      if (u.protocol !== "ws:" && u.protocol !== "wss:") {
        throw new RemusError("REMUSD_ERR_BAD_REQUEST", `peer must be a ws:// or wss:// URL, got '${url}'`);
      }
    }
    this.dialer?.stop();
    this.dialer = undefined;
    this.peerUrl = url ?? undefined;
    if (url !== null)
      this.dialer = new Dialer(url, this.link, () => (this.nodeRef?.wantsPeer ?? false) && !this.linkCut);
  }

  private loop = (): void => {
    if (this.stopping) return;
    try {
      const node = this.node;
      node.step(performance.now());
      if (node.busy) this.stepSoon();
      if (node.wantsPeer) this.dialer?.kick();
      else if (node.roleName === "backup") this.follower?.kick();
    } catch (e) {
      this.log.fatal({ err: e }, "internal error in the daemon loop");
      throw e;
    }
    this.timer = setTimeout(this.loop, 1);
  };

  // ---- what the control API asks ----

  /** The output buffer's depth (zeros before the node exists). */
  netbufStats(): NetbufStats {
    const nb = this.nodeRef?.dev.netbuf;
    if (!nb) return { packets: 0, bytes: 0, oldestAgeMs: 0 };
    return {
      packets: nb.packets,
      bytes: nb.byteCount,
      oldestAgeMs: Math.round(nb.oldestAgeMs(performance.now()) * 1000) / 1000,
    };
  }

  ready(): boolean {
    return this.nodeRef?.ready ?? false;
  }

  digest(): { epoch: number; digest: string; live: boolean } {
    return this.node.digest();
  }

  processes(): ProcessInfo[] {
    return this.node.processes();
  }

  /** The counter continuity check (counter.log holds exactly 1..counter) on the current image. */
  counterCheck(): CounterCheck {
    return this.node.counterCheck();
  }

  /** POST /v1/failover on a backup. */
  failover(planned: boolean): { activated: boolean; epoch?: number; digest?: string; pending?: boolean } {
    return this.node.failover(planned, performance.now());
  }

  /** POST /v1/checkpoint on a primary. */
  checkpoint(): { epoch: number } {
    return this.node.checkpoint();
  }

  /** Graceful stop: a final checkpoint when protected, a planned GOODBYE, then close everything. */
  async stop(timeoutMs = 5000): Promise<void> {
    const node = this.nodeRef;
    if (node && !node.stopped) {
      node.stop(performance.now());
      const deadline = performance.now() + timeoutMs;
      while (!node.stopped && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.soon) clearImmediate(this.soon);
    const lease = this.lease;
    if (lease) {
      // The domain stopped: revoke the lease so the other node takes over without waiting for its TTL.
      await new Promise<void>((r) => lease.release(r));
      lease.close();
    }
    if (this.podLabel) {
      this.podLabel.set(false);
      await this.podLabel.settled(2000);
      this.podLabel.stop();
    }
    await this.pool?.close();
    this.dialer?.stop();
    this.follower?.stop();
    this.net.close();
    // Let the GOODBYE frames leave before the sockets close.
    await new Promise((r) => setTimeout(r, 50));
    await this.listener?.close();
    await this.store?.close();
    this.events.write("daemon.stopped", this.role, node?.committed ?? 0, {});
    this.events.close();
  }
}
