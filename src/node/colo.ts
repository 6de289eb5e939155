/**
 * The COLO parts of a node (sans-IO, driven by src/node/node.ts): the
 * primary's comparator side and the secondary's own guest. The replication
 * machines carry the records (SPEC §7.6); this is what the node does with
 * the guest's frames around them.
 *
 * Data flow in COLO mode:
 *
 *   primary:   LAN ─► [edge rewriter] ─► ColoPrimary.input ─► COLO_INPUT (mirror) and the guest's NIC
 *              guest NIC tx ─► ColoPrimary.pump ─► Comparator.primary ─(match)─► LAN
 *              COLO_OUTPUT ─► Comparator.secondary
 *              checkpoint e: frames the comparator still holds wait in the netbuf for ACK(e)
 *   secondary: COLO_INPUT ─► ColoSecondary.input ─► SeqRewriter.inbound ─► its own guest's NIC
 *              its guest's NIC tx ─► SeqRewriter.outbound ─► COLO_OUTPUT (never the LAN)
 *
 * Failover: a secondary that takes over keeps its guest's state as it is (no
 * rollback) and its rewriter for good, as the node's LAN edge (`edge`):
 * inbound ACK numbers and outbound sequence numbers stay translated for the
 * connections the clients opened with the old primary.
 *
 * Invariants:
 *  - The primary's guest output reaches the LAN only once the secondary
 *    produced the same (Comparator), or once a checkpoint that holds it is
 *    acknowledged, or once no secondary can take over (the machine's output
 *    mode, as in Remus).
 *  - While the primary is paused for a checkpoint (its COLO_DIRTY not yet
 *    back), LAN input waits here: input delivered then would be in the
 *    checkpointed state and mirrored again in the next epoch.
 *  - The secondary's guest runs only between COLO_START (or the apply of a
 *    checkpoint) and the next COLO_CHECKPOINT; it never talks to the LAN.
 */
import {
  CHECKPOINT_REASONS,
  type CheckpointReason,
  Comparator,
  type CompareConfig,
} from "../colo/compare.js";
import { SeqRewriter } from "../colo/rewriter.js";
import type { Domain } from "../domain/domain.js";
import { Kernel } from "../guest/kernel.js";
import { Nic } from "../guest/nic.js";
import type { Entropy } from "../prng.js";
import { COLO_REASON, type ColoReasonCode } from "../protocol/constants.js";
import type { NetDevice } from "../replication/netdev.js";
import type { PrimaryMachine } from "../replication/primary.js";
import { GuestPacer } from "./pacing.js";

/** Replication mode of a node: Remus (checkpoints on a timer, output commit) or COLO. */
export type ReplicationMode = "remus" | "colo";

/** The wire code of each comparator reason (SPEC §6.14). */
export const COLO_REASON_CODE: Record<CheckpointReason, ColoReasonCode> = {
  mismatch: COLO_REASON.mismatch,
  timeout: COLO_REASON.timeout,
  periodic: COLO_REASON.periodic,
  queue_full: COLO_REASON.queueFull,
};

/** The name of each wire reason code (metrics, status). */
export function coloReasonName(code: ColoReasonCode): CheckpointReason | "requested" {
  return CHECKPOINT_REASONS.find((r) => COLO_REASON_CODE[r] === code) ?? "requested";
}

/** Why a COLO checkpoint was taken: the comparator's reasons, or an operator's (or a stop's) request. */
export type ColoCheckpointName = CheckpointReason | "requested";
export const COLO_CHECKPOINT_NAMES: readonly ColoCheckpointName[] = [...CHECKPOINT_REASONS, "requested"];

/** What a node's COLO primaries did, in all (metrics and status). */
export interface ColoCounts {
  /** The primary's frames by outcome (see Comparator: released on a match, found different, held past the timeout). */
  readonly compared: { match: number; mismatch: number; timeout: number };
  /** Checkpoints begun, by reason. */
  readonly checkpoints: Record<ColoCheckpointName, number>;
}

/** Zero counts. */
export function noColoCounts(): ColoCounts {
  return {
    compared: { match: 0, mismatch: 0, timeout: 0 },
    checkpoints: { mismatch: 0, timeout: 0, periodic: 0, queue_full: 0, requested: 0 },
  };
}

/** Adds what the COLO primary `c` (and its machine `m`) did to `into`. */
export function addColoCounts(
  into: ColoCounts,
  c: ColoPrimary | undefined,
  m: PrimaryMachine | undefined,
): void {
  if (c) {
    const s = c.comparator.stats.compared;
    into.compared.match += s.match;
    into.compared.mismatch += s.mismatch;
    into.compared.timeout += s.timeout;
  }
  for (const [code, n] of m?.coloCheckpoints ?? []) into.checkpoints[coloReasonName(code)] += n;
}

/** Bytes of the secondary's own entropy its guest RNG is reseeded with after each checkpoint. */
const RESEED_BYTES = 16;
/** LAN frames held while the primary is paused for a checkpoint, at most (beyond: dropped, TCP resends). */
const MAX_HELD_INPUT = 4096;

/** The primary's side: the comparator between its guest and the secondary's, and input held across a pause. */
export class ColoPrimary {
  readonly comparator: Comparator;
  private held: Buffer[] = [];
  /** The node's clock as of the last call (releases from inside the comparator use it). */
  private now: number;
  droppedInput = 0;

  constructor(
    config: Partial<CompareConfig>,
    private readonly machine: PrimaryMachine,
    private readonly dev: NetDevice,
    now: number,
    observeReleaseDelay?: (seconds: number) => void,
  ) {
    this.comparator = new Comparator(
      config,
      {
        // Matched output leaves at once: the secondary can continue from what the client saw.
        release: (f) => this.dev.sendNow(f, this.machine.committed, this.now),
        checkpoint: (reason) => this.machine.requestColoCheckpoint(COLO_REASON_CODE[reason]),
        ...(observeReleaseDelay
          ? { observeReleaseDelay: (ms: number) => observeReleaseDelay(ms / 1000) }
          : {}),
      },
      now,
    );
    this.now = now;
  }

  /** A LAN frame for the guest: mirrored, then delivered (held while the domain is paused). */
  input(frame: Buffer): void {
    if (this.machine.coloPaused || this.held.length > 0) {
      if (this.held.length < MAX_HELD_INPUT) this.held.push(frame);
      else this.droppedInput++;
      return;
    }
    this.deliver(frame);
  }

  private deliver(frame: Buffer): void {
    // SPEC §6.13: the mirror goes out no later than the frame reaches the guest.
    this.machine.mirror(frame);
    this.dev.input(frame);
  }

  /** Whether the guest may run now (not paused for a checkpoint); delivers the input held meanwhile. */
  resume(now: number): boolean {
    this.now = now;
    if (this.machine.coloPaused) return false;
    if (this.held.length > 0) {
      const held = this.held;
      this.held = [];
      for (const f of held) this.deliver(f);
    }
    return true;
  }

  /** Moves the guest's transmitted frames into the comparator, and checks its timers. */
  pump(now: number): void {
    this.now = now;
    for (let f = this.dev.takeTx(); f; f = this.dev.takeTx()) this.comparator.primary(f, now);
    this.comparator.poll(now);
  }

  /** A frame of the secondary's output in `epoch` (output of an epoch already ended compares with nothing). */
  output(epoch: number, frame: Buffer, now: number): void {
    this.now = now;
    if (epoch === this.machine.epoch) this.comparator.secondary(frame, now);
  }

  /**
   * Checkpoint `epoch` is being captured (or the session ended): the frames
   * still held leave with that epoch's acknowledgement (or as the machine's
   * output mode decides, when there is no secondary any more).
   */
  settle(epoch: number, now: number): void {
    this.now = now;
    for (let f = this.dev.takeTx(); f; f = this.dev.takeTx()) this.comparator.primary(f, now);
    for (const f of this.comparator.reset(now)) this.dev.hold(f, epoch, now);
  }

  /** Input held across a pause that never ended as a checkpoint (the session ended): delivered now. */
  flushInput(now: number): void {
    this.resume(now);
  }
}

/** The secondary's own copy of the guest: run on the mirrored input, its output sent back through the rewriter. */
export class ColoSecondary {
  readonly rewriter: SeqRewriter;
  /** The guest's NIC (taken anew at each start: a backup may reshape its domain before its first sync). */
  private nic: Nic;
  private readonly pacer = new GuestPacer();
  private kernel: Kernel | undefined;
  private pending: Buffer[] = [];
  running = false;
  /** A COLO session ever started here (the domain ran ahead of its committed image). */
  started = false;
  /** Where the rewriter's inbound frames go: the guest's NIC; after failover, the node's input path. */
  deliver: (frame: Buffer) => void;

  constructor(
    private readonly domain: Domain,
    private readonly entropy: Entropy,
    /** COLO_OUTPUT (the backup machine sends it while a session is on). */
    send: (frame: Buffer) => void,
  ) {
    this.nic = new Nic(domain);
    this.deliver = (f) => {
      this.nic.deliver(f);
    };
    this.rewriter = new SeqRewriter({
      toGuest: (f) => this.deliver(f),
      // After failover the node's LAN path sends the frame (renumbered in place).
      toWire: (f) => {
        if (!this.rewriter.failedOver) send(f);
      },
    });
  }

  /**
   * COLO_START, or the apply of a checkpoint: the guest holds the primary's
   * state, so every sequence offset is 0 again; it runs from it in a new
   * epoch (unless `run` is false: a FINAL checkpoint, after which it runs
   * only if this node takes over).
   */
  start(now: number, run = true): void {
    // Why reseed: the two replicas must diverge only where real machines do (their own entropy).
    this.domain.vcpu.reseed(this.entropy.bytes(RESEED_BYTES));
    this.nic = new Nic(this.domain);
    this.rewriter.reset();
    this.kernel = new Kernel(this.domain);
    this.pacer.reset(now, this.domain.vcpu.ticks);
    this.started = true;
    if (!run) return;
    this.running = true;
    const pending = this.pending;
    this.pending = [];
    for (const f of pending) this.rewriter.inbound(f);
  }

  /** Input reached the guest since it last ran (the node lets it take a receive interrupt soon). */
  rxPending = false;

  /** A mirrored frame for the guest. */
  input(frame: Buffer): void {
    if (this.running) {
      this.rewriter.inbound(frame);
      this.rxPending = true;
    } else if (this.pending.length < MAX_HELD_INPUT) this.pending.push(frame);
  }

  /**
   * A receive interrupt between steps (Kernel.interrupt): the guest takes the
   * mirrored input now and what it answered goes back to the comparator at
   * once, instead of on this host's next tick.
   */
  interrupt(): void {
    this.rxPending = false;
    if (!this.running || !this.kernel) return;
    this.kernel.interrupt();
    this.drain();
  }

  /** Runs the ticks the host's clock says are due, then sends what the guest transmitted. */
  step(now: number): void {
    this.rxPending = false;
    if (!this.running || !this.kernel) return;
    const n = this.pacer.due(now, this.domain.vcpu.ticks);
    for (let i = 0; i < n; i++) this.kernel.tick();
    this.drain();
  }

  private drain(): void {
    for (let f = this.nic.takeTx(); f; f = this.nic.takeTx()) this.rewriter.outbound(f);
  }

  /** COLO_CHECKPOINT: its output so far goes out, the guest pauses, and what it wrote is handed over. */
  pause(): { pages: Uint32Array; blocks: Uint32Array } {
    this.drain();
    this.running = false;
    return { pages: this.domain.collectDirty(), blocks: this.domain.collectDiskWrites() };
  }

  /** The session ended: the guest stops (its input waiting for it is dropped: TCP resends). */
  stop(): void {
    this.running = false;
    this.pending = [];
  }

  /** The secondary takes over: the rewriter stays for good, as the node's LAN edge. */
  failover(): SeqRewriter {
    this.running = false;
    this.pending = [];
    this.rewriter.failover();
    return this.rewriter;
  }
}
