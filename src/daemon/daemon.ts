/**
 * A remusd daemon: the I/O shell around one replication state machine.
 *
 * It owns the real clock (a 1 ms loop that runs the guest in step with wall
 * time and polls the machine), the WebSocket transport, the durable store, the
 * event log, the metrics and the control API. A backup that activates turns
 * into a primary in place: the same process, the same domain bytes, a new
 * PrimaryMachine over them.
 */
import { join } from "node:path";
import type { Logger } from "pino";
import { Domain } from "../domain/domain.js";
import { RemusError } from "../errors.js";
import { bootGuest } from "../guest/guest.js";
import { Kernel, type ProcessInfo } from "../guest/kernel.js";
import { type CounterCheck, verifyCounter } from "../guest/programs/basic.js";
import { Metrics, type NetbufStats } from "../metrics.js";
import { type Activation, BackupMachine } from "../replication/backup.js";
import type { Port } from "../replication/conn.js";
import type { ReplicationEvent } from "../replication/events.js";
import type { HeartbeatConfig } from "../replication/heartbeat.js";
import { DEFAULT_PRIMARY_CONFIG, PrimaryMachine } from "../replication/primary.js";
import { LevelStore } from "../store/level.js";
import { NodeStateFile } from "../store/state.js";
import { Dialer, type LinkHandler, listenReplication } from "../transport/ws.js";
import { VERSION } from "../version.js";
import { EventLog } from "./eventlog.js";
import { createLogger } from "./logging.js";
import { NetSide } from "./netside.js";
import type { DaemonSettings } from "./settings.js";

type Machine = PrimaryMachine | BackupMachine;

/** The settings an operator may change at run time (PATCH /v1/config). */
export interface RuntimeConfig {
  intervalMs: number;
  compress: boolean;
  heartbeat: HeartbeatConfig;
}

/** The last role change, for /v1/status. */
export interface RoleChange {
  readonly from: "primary" | "backup" | null;
  readonly to: "primary" | "backup";
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

/** Events written to the event log (the rest only feed metrics). */
const LOGGED = new Set<ReplicationEvent["type"]>([
  "peer.connected",
  "peer.lost",
  "peer.refused",
  "state.changed",
  "sync.started",
  "sync.completed",
  "checkpoint.sent",
  "checkpoint.committed",
  "checkpoint.failed",
  "checkpoint.applied",
  "checkpoint.discarded",
  "failover.activated",
  "failover.impossible",
  "fenced",
]);

/** Max guest ticks run per loop turn, and the lag after which the guest stops catching up. */
const MAX_TICKS_PER_TURN = 20;
const MAX_LAG_TICKS = 250;

export class Daemon {
  readonly settings: DaemonSettings;
  /** Bound to the current role and generation; rebound when either changes. */
  log: Logger;
  readonly events: EventLog;
  readonly metrics: Metrics;
  readonly node: NodeStateFile;
  readonly domain: Domain;
  primary: PrimaryMachine | undefined;
  backup: BackupMachine | undefined;
  store: LevelStore | undefined;
  private dialer: Dialer | undefined;
  /** The backup a primary dials (--peer, or set at run time through PATCH /v1/config). */
  peerUrl: string | undefined;
  private listener: { port: number; close(): Promise<void> } | undefined;
  private readonly owner = new Map<Port, Machine>();
  private timer: NodeJS.Timeout | undefined;
  private wallBase = 0;
  private tickBase = 0;
  private stopping = false;
  replicationPort: number | undefined;
  /** The guest NIC's host side: the netbuf and the vswitch attachment. */
  readonly net: NetSide;
  private readonly rootLog: Logger;
  /** Writes out buffered log lines (call before the process exits). */
  readonly flushLog: () => void;
  lastRoleChange: RoleChange;
  lastCheckpoint: LastCheckpoint | undefined;
  /** The last domain digest computed at a checkpoint (--verify). */
  lastDigest: { readonly epoch: number; readonly digest: string } | undefined;
  /** Interval, compression and heartbeat as set now (flags, then PATCH /v1/config); a new primary starts with them. */
  readonly runtime: RuntimeConfig;

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
    this.runtime = {
      intervalMs: settings.intervalMs,
      compress: settings.compress,
      heartbeat: settings.heartbeat,
    };
    this.events = new EventLog(settings.eventLog);
    this.metrics = new Metrics(VERSION);
    this.metrics.netbufSource = () => this.netbufStats();
    this.node = new NodeStateFile(settings.dataDir);
    this.domain = new Domain(settings.geometry);
    this.net = new NetSide(this.domain, this.metrics, settings.netbuf);
  }

  get role(): "primary" | "backup" {
    return this.primary ? "primary" : "backup";
  }

  get machine(): Machine {
    return (this.primary ?? this.backup) as Machine;
  }

  /** The epoch the event log reports for events that carry none. */
  private currentEpoch(): number {
    return this.primary ? this.primary.committed : (this.backup?.committed ?? 0);
  }

  private logGeneration: number | undefined;

  /** Binds `log` to the current role and generation. */
  private rebindLog(): void {
    this.logGeneration = this.machine.generation;
    this.log = this.rootLog.child({ role: this.role, generation: this.logGeneration });
  }

  /** Remembers what /v1/status reports about the last checkpoint and digest. */
  private remember(e: ReplicationEvent): void {
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

  private emit = (e: ReplicationEvent): void => {
    this.metrics.onEvent(e);
    this.remember(e);
    // A backup adopts its primary's generation at sync; a fenced primary learns a newer one.
    const m = this.primary ?? this.backup;
    if (m && this.logGeneration !== undefined && m.generation !== this.logGeneration) this.rebindLog();
    if (!LOGGED.has(e.type)) return;
    const { type, ...fields } = e;
    const epoch = "epoch" in e ? (e.epoch as number) : this.currentEpoch();
    this.events.write(type, this.role, epoch, fields);
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

  private link: LinkHandler = {
    opened: (port) => {
      const m = this.machine;
      this.owner.set(port, m);
      m.attach(port, performance.now());
    },
    frame: (port, data) => {
      const m = this.owner.get(port);
      if (!m) return;
      m.frame(port, data, performance.now());
      this.afterInput();
    },
    closed: (port, reason) => {
      const m = this.owner.get(port);
      this.owner.delete(port);
      m?.detach(port, performance.now(), reason);
      this.afterInput();
    },
  };

  async start(): Promise<void> {
    const s = this.settings;
    if (s.role === "primary") {
      const kernel = bootGuest(this.domain, {
        seed: s.seed,
        workload: s.workload,
        net: { mac: s.guestMac, ip: s.guestIp },
      });
      this.startPrimary(kernel, this.node.state.generation || 1, 1);
      this.net.dev.activate();
      this.node.setGeneration(this.primary?.generation ?? 1);
    } else {
      this.store = new LevelStore(join(s.dataDir, "store"));
      const stored = await this.store.open();
      if (stored.valid) {
        this.log.info(
          { committed: stored.committed },
          "the store holds an image from before this start; it is stale (memory is lost) and will be replaced by a full resync",
        );
      }
      const generation = Math.max(this.node.state.generation, stored.generation);
      this.backup = new BackupMachine({
        domain: this.domain,
        key: s.key,
        nodeId: this.node.nodeId,
        software: `remusd/${VERSION}`,
        generation,
        config: { heartbeat: this.runtime.heartbeat, verify: s.verify },
        emit: this.emit,
        store: this.store,
      });
      this.metrics.setRole("backup");
      this.metrics.setState("waiting");
    }
    if (s.switchAddr) await this.net.attach(s.switchAddr);
    if (s.listen) {
      this.listener = await listenReplication(s.listen, this.link);
      this.replicationPort = this.listener.port;
    }
    if (s.role === "primary" && s.peer) this.setPeer(s.peer);
    this.rebindLog();
    this.events.write("role.changed", this.role, this.currentEpoch(), {
      from: null,
      to: this.role,
      reason: "started",
    });
    this.wallBase = performance.now();
    this.tickBase = this.domain.vcpu.ticks;
    this.loop();
  }

  private startPrimary(kernel: Kernel, generation: number, startEpoch: number): void {
    const s = this.settings;
    this.primary = new PrimaryMachine({
      domain: this.domain,
      kernel,
      key: s.key,
      nodeId: this.node.nodeId,
      software: `remusd/${VERSION}`,
      generation,
      startEpoch,
      config: {
        ...DEFAULT_PRIMARY_CONFIG,
        intervalMs: this.runtime.intervalMs,
        maxInFlight: s.maxInFlight,
        compress: this.runtime.compress,
        verify: s.verify,
        heartbeat: this.runtime.heartbeat,
      },
      emit: this.emit,
      hooks: {
        // Output commit: the frames of epoch N go into the netbuf at its pause and leave when N is acked.
        beforeCapture: (epoch) =>
          this.net.pump(epoch, this.primary?.outputMustWait ?? false, performance.now()),
        onCommitted: (epoch) => this.net.committed(epoch, performance.now()),
        onState: (state) => {
          if (state !== "protected") this.net.releaseAll(performance.now());
          this.metrics.setState(state);
          if (state === "fenced") this.node.setGeneration(this.primary?.generation ?? 0);
        },
      },
    });
    this.metrics.setRole("primary");
    this.metrics.setState(this.primary.state);
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
    if (url !== null) this.dialer = new Dialer(url, this.link, () => this.primary?.wantsPeer ?? false);
  }

  /** The backup activated: become the primary of the same domain. */
  private becomePrimary(a: Activation): void {
    this.backup = undefined;
    this.node.setGeneration(a.generation);
    const kernel = new Kernel(this.domain);
    this.startPrimary(kernel, a.generation, a.epoch + 1);
    // Only the active side talks on the LAN; announce the guest's new port with a gratuitous ARP.
    this.net.dev.activate();
    this.lastRoleChange = {
      from: "backup",
      to: "primary",
      reason: `failover (${a.reason}) from epoch ${a.epoch}`,
      at: new Date().toISOString(),
    };
    this.rebindLog();
    this.events.write("role.changed", "primary", a.epoch, {
      from: "backup",
      to: "primary",
      reason: a.reason,
      generation: a.generation,
    });
    this.log.info(
      { epoch: a.epoch, generation: a.generation, reason: a.reason },
      "role changed: backup -> primary",
    );
    // The guest resumes now, from its own clock.
    this.wallBase = performance.now();
    this.tickBase = this.domain.vcpu.ticks;
  }

  private afterInput(): void {
    const a = this.backup?.activated;
    if (a) this.becomePrimary(a);
  }

  private loop = (): void => {
    if (this.stopping) return;
    const now = performance.now();
    try {
      const p = this.primary;
      if (p) {
        if (p.isRunning) {
          const due = Math.floor(now - this.wallBase) - (this.domain.vcpu.ticks - this.tickBase);
          if (due > MAX_LAG_TICKS) {
            // The guest cannot keep up: let guest time fall behind instead of bursting.
            this.wallBase += due - MAX_TICKS_PER_TURN;
          }
          if (due > 0) p.runGuest(Math.min(due, MAX_TICKS_PER_TURN));
          this.net.pump(p.epoch, p.outputMustWait, now);
        }
        p.poll(now);
        if (p.wantsPeer) this.dialer?.kick();
      } else if (this.backup) {
        this.backup.poll(now);
        this.afterInput();
      }
    } catch (e) {
      this.log.fatal({ err: e }, "internal error in the daemon loop");
      throw e;
    }
    this.timer = setTimeout(this.loop, 1);
  };

  // ---- what the control API asks ----

  /**
   * The output buffer's depth. Zeros until the guest network is attached; the
   * network integration provides the real numbers.
   */
  netbufStats(): NetbufStats {
    const s = this.net.stats(performance.now());
    return { packets: s.packets, bytes: s.bytes, oldestAgeMs: s.oldestAgeMs };
  }

  ready(): boolean {
    if (this.primary) return this.primary.isRunning;
    return this.backup?.state === "standby";
  }

  digest(): { epoch: number; digest: string; live: boolean } {
    if (this.primary) return { epoch: this.primary.epoch, digest: this.domain.digest(), live: true };
    const b = this.backup as BackupMachine;
    if (!b.imageValid) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "the backup has no complete image yet");
    return { epoch: b.committed, digest: this.domain.digest(), live: false };
  }

  processes(): ProcessInfo[] {
    if (this.backup && !this.backup.imageValid) {
      throw new RemusError("REMUSD_ERR_WRONG_ROLE", "the backup has no complete image yet");
    }
    if (!Kernel.isBooted(this.domain)) return [];
    return new Kernel(this.domain).listProcesses();
  }

  /** The counter continuity check (counter.log holds exactly 1..counter) on the current image. */
  counterCheck(): CounterCheck {
    if (this.backup && !this.backup.imageValid) {
      throw new RemusError("REMUSD_ERR_WRONG_ROLE", "the backup has no complete image yet");
    }
    if (!Kernel.isBooted(this.domain)) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "no guest is booted");
    return verifyCounter(new Kernel(this.domain));
  }

  /** POST /v1/failover on a backup. */
  failover(planned: boolean): { activated: boolean; epoch?: number; digest?: string; pending?: boolean } {
    const b = this.backup;
    if (!b) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "this daemon is already the primary");
    if (planned) {
      b.requestSwitchover();
      return { activated: false, pending: true };
    }
    const a = b.activate("manual", performance.now());
    this.becomePrimary(a);
    return { activated: true, epoch: a.epoch, digest: a.digest };
  }

  /** POST /v1/checkpoint on a primary. */
  checkpoint(): { epoch: number } {
    const p = this.primary;
    if (!p) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "checkpoints are taken by the primary");
    p.requestCheckpoint();
    return { epoch: p.epoch };
  }

  /** Graceful stop: a final checkpoint when protected, a planned GOODBYE, then close everything. */
  async stop(timeoutMs = 5000): Promise<void> {
    const p = this.primary;
    if (p && p.state !== "stopped" && p.state !== "fenced") {
      p.requestStop("shutdown", performance.now());
      const deadline = performance.now() + timeoutMs;
      while ((p.state as string) !== "stopped" && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    this.backup?.stop();
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.dialer?.stop();
    this.net.close();
    // Let the GOODBYE frames leave before the sockets close.
    await new Promise((r) => setTimeout(r, 50));
    await this.listener?.close();
    await this.store?.close();
    this.events.write("daemon.stopped", this.role, this.currentEpoch(), {});
    this.events.close();
  }
}
