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
 *    a gratuitous ARP so the LAN's switches learn its new port.
 *  - Deactivation (a node that stops being the active side): nothing more goes
 *    in or out, and the held output is discarded, never sent.
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
}

export class NetDevice {
  readonly netbuf: Netbuf;
  /** Only the active side (the primary) exchanges frames with the LAN. */
  active = false;
  /** Frames received while passive (the backup), and so ignored. */
  ignored = 0;
  sent = 0;
  private readonly nic: Nic;

  constructor(private readonly opts: NetDeviceOptions) {
    this.nic = new Nic(opts.domain);
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
    const hold = mustWait && this.opts.outputCommit;
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

  /** Epoch `epoch` is acknowledged: its output may leave. */
  committed(epoch: number, now: number): void {
    this.netbuf.release(epoch, now);
  }

  /** Nothing to wait for any more (the backup is gone): release everything held. */
  releaseAll(now: number): void {
    this.netbuf.releaseAll(now);
  }

  /**
   * Starts exchanging frames and announces the guest (gratuitous ARP, tagged
   * `epoch`, the open one) so the LAN learns where it is.
   */
  activate(epoch: number): void {
    this.active = true;
    if (!this.nic.configured) return;
    const mac = this.nic.mac;
    const ip = this.nic.ip;
    const f = Buffer.alloc(42);
    encodeEth({ dst: Buffer.alloc(6, 0xff), src: mac, type: 0x0806 }, f, 0);
    // A gratuitous ARP request: sender and target protocol address are both ours.
    encodeArp({ op: 1, sha: mac, spa: ip, tha: Buffer.alloc(6), tpa: ip }, f, 14);
    for (let i = 0; i < 3; i++) {
      this.sent++;
      this.opts.sendFrame(Buffer.from(f), epoch);
    }
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
