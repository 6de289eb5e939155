/**
 * The host side of the guest's NIC, with output commit (sans-IO: frames leave
 * through the injected `sendFrame`, each with the epoch that produced it).
 *
 *  - Input: frames from the LAN go into the guest's rx ring at once (Remus does
 *    not delay input), only on the active side.
 *  - Output: `pump` takes the frames the guest queued in its tx ring. While the
 *    primary is protected they are held in the netbuf, tagged with the open
 *    epoch, until that epoch is acknowledged; otherwise they leave at once.
 *    When the netbuf is full, `pump` leaves frames in the ring (backpressure).
 *  - Activation: a backup that takes over announces the guest's IP and MAC with
 *    a gratuitous ARP so the LAN's switches learn its new port; the node
 *    announces it again a few times, and whenever it refuses a stale primary
 *    (`announce`), in case a stale node's frames moved the guest's MAC back.
 *  - Deactivation (a node that stops being the active side): nothing more goes
 *    in or out, and the held output is discarded, never sent.
 *  - Suspension (a node that was itself stalled, until it has read what
 *    arrived meanwhile): nothing leaves, not even acknowledged output; what
 *    is due leaves on `resume`, unless the node was fenced meanwhile.
 *  - The gate (with a lease: the node holds it and its deadline, less the
 *    margin, has not passed): read at every send, announcements included;
 *    while closed, everything is held as while suspended, and what became
 *    due leaves on `flush` once it opens again.
 */
import type { Domain } from "../domain/domain.js";
import { Nic } from "../guest/nic.js";
import { encodeArp, encodeEth } from "../net/wire.js";
import { DEFAULT_NETBUF_LIMITS, Netbuf, type NetbufLimits } from "./netbuf.js";

export interface NetDeviceOptions {
  readonly domain: Domain;
  /** A frame for the LAN, with the epoch whose output it is (the open epoch for the gratuitous ARP). */
  readonly sendFrame: (frame: Buffer, epoch: number) => void;
  /** false with --no-netbuf --unsafe: output never waits for commits. */
  readonly outputCommit: boolean;
  readonly limits?: NetbufLimits;
  readonly observeDelay?: (seconds: number) => void;
  /** Whether output may leave now (the lease); default: always. */
  readonly gate?: () => boolean;
}

export class NetDevice {
  readonly netbuf: Netbuf;
  /** Only the active side (the primary) exchanges frames with the LAN. */
  active = false;
  /** Frames received while passive (the backup), and so ignored. */
  ignored = 0;
  sent = 0;
  private readonly nic: Nic;
  /** Nothing leaves while suspended. */
  private suspended = false;
  /** The highest epoch acknowledged (its output may leave once not suspended). */
  private acked = 0;
  private readonly gate: () => boolean;

  constructor(private readonly opts: NetDeviceOptions) {
    this.nic = new Nic(opts.domain);
    this.gate = opts.gate ?? (() => true);
    this.netbuf = new Netbuf(
      opts.limits ?? DEFAULT_NETBUF_LIMITS,
      (f, epoch) => {
        this.sent++;
        opts.sendFrame(f, epoch);
      },
      opts.observeDelay,
    );
  }

  get outputCommit(): boolean {
    return this.opts.outputCommit;
  }

  /** A frame from the LAN. */
  input(frame: Buffer): void {
    if (!this.active || !this.nic.configured) {
      this.ignored++;
      return;
    }
    this.nic.deliver(frame);
  }

  /**
   * Moves the guest's transmitted frames out of its tx ring: into the netbuf
   * tagged `epoch` when `mustWait` (protected), else straight out.
   */
  pump(epoch: number, mustWait: boolean, now: number): void {
    if (!this.active || !this.nic.configured) return;
    const hold = !this.open || (mustWait && this.opts.outputCommit);
    if (!hold && this.netbuf.packets > 0) this.netbuf.releaseAll(now);
    for (;;) {
      if (hold && !this.netbuf.hasRoom(1514)) return; // backpressure: the ring keeps the rest
      const f = this.nic.takeTx();
      if (!f) return;
      if (hold) this.netbuf.hold(f, epoch, now);
      else {
        this.sent++;
        this.opts.sendFrame(f, epoch);
      }
    }
  }

  /** COLO: the guest's next transmitted frame, for the comparator (nothing while inactive). */
  takeTx(): Buffer | undefined {
    if (!this.active || !this.nic.configured) return undefined;
    return this.nic.takeTx();
  }

  /**
   * COLO: a frame that may leave now (the secondary produced it too), tagged
   * `epoch` (the last committed one). While suspended it waits in the netbuf
   * like acknowledged output; once deactivated it is dropped.
   */
  sendNow(frame: Buffer, epoch: number, now: number): void {
    if (!this.active) return;
    if (!this.open) this.netbuf.hold(frame, epoch, now);
    else {
      this.sent++;
      this.opts.sendFrame(frame, epoch);
    }
  }

  /** COLO: a frame that leaves once `epoch` is acknowledged (output the comparator still held at a checkpoint). */
  hold(frame: Buffer, epoch: number, now: number): void {
    if (this.active) this.netbuf.hold(frame, epoch, now);
  }

  /** Epoch `epoch` is acknowledged: its output may leave. */
  committed(epoch: number, now: number): void {
    this.acked = Math.max(this.acked, epoch);
    if (this.open) this.netbuf.release(epoch, now);
  }

  /** Nothing leaves until `resume` (the node was stalled and has not read its links yet). */
  suspend(): void {
    this.suspended = true;
  }

  /** Output that became due while suspended leaves now (if the device is still active). */
  resume(now: number): void {
    if (!this.suspended) return;
    this.suspended = false;
    if (this.active && this.open) this.netbuf.release(this.acked, now);
  }

  /** What was acknowledged while the gate was closed leaves now, if it is open. */
  flush(now: number): void {
    if (this.active && this.netbuf.packets > 0 && this.open) this.netbuf.release(this.acked, now);
  }

  /** Output may leave now: not suspended, and the gate (the lease) is open. */
  private get open(): boolean {
    return !this.suspended && this.gate();
  }

  get isSuspended(): boolean {
    return this.suspended;
  }

  /** Nothing to wait for any more (the backup is gone): release everything held. */
  releaseAll(now: number): void {
    if (this.active && this.open) this.netbuf.releaseAll(now);
  }

  /**
   * Starts exchanging frames and announces the guest (gratuitous ARP, tagged
   * `epoch`, the open one) so the LAN learns where it is.
   */
  activate(epoch: number): void {
    this.active = true;
    this.acked = epoch - 1;
    this.announce(epoch);
  }

  /**
   * Announces the guest's IP and MAC (a gratuitous ARP, tagged `epoch`) so the
   * LAN's switches learn its port. Only while active and not suspended.
   */
  announce(epoch: number): void {
    if (!this.active || !this.open || !this.nic.configured) return;
    const mac = this.nic.mac;
    const ip = this.nic.ip;
    const f = Buffer.alloc(42);
    encodeEth({ dst: Buffer.alloc(6, 0xff), src: mac, type: 0x0806 }, f, 0);
    // A gratuitous ARP request: sender and target protocol address are both ours.
    encodeArp({ op: 1, sha: mac, spa: ip, tha: Buffer.alloc(6), tpa: ip }, f, 14);
    this.sent++;
    this.opts.sendFrame(f, epoch);
  }

  /**
   * Stops exchanging frames. Why discard: what is still held belongs to epochs
   * no backup acknowledged, and this node is no longer the one whose output counts.
   */
  deactivate(): number {
    this.active = false;
    return this.netbuf.discardAll();
  }
}
