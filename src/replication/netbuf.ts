/**
 * Output commit (Remus's network buffering): every frame the guest transmits
 * during epoch N is held here, tagged N, and released in order only when epoch
 * N is acknowledged by the backup. Input is never delayed.
 *
 * Why: a client must never see output that the backup cannot reproduce. If
 * the primary dies before N commits, the backup resumes from an epoch before N,
 * and the frames of N die with the primary, unseen.
 *
 * Bounded: at most `maxPackets` frames and `maxBytes` bytes. When full, the
 * daemon stops taking frames from the guest's transmit ring; the ring fills and
 * the guest's transmit call returns false, so the guest's TCP keeps the data
 * and retries (backpressure). Nothing is dropped silently.
 */

export interface NetbufLimits {
  readonly maxPackets: number;
  readonly maxBytes: number;
}

export const DEFAULT_NETBUF_LIMITS: NetbufLimits = { maxPackets: 4096, maxBytes: 8 * 1024 * 1024 };

interface Held {
  readonly frame: Buffer;
  readonly epoch: number;
  readonly heldAt: number;
}

export class Netbuf {
  private q: Held[] = [];
  private head = 0;
  private bytes = 0;
  /** Frames released in total, and the largest epoch released. */
  released = 0;
  releasedEpoch = 0;

  constructor(
    readonly limits: NetbufLimits = DEFAULT_NETBUF_LIMITS,
    /** Where released frames go, with the epoch that produced them. */
    private readonly send: (frame: Buffer, epoch: number) => void,
    private readonly observeDelay: (seconds: number) => void = () => {},
  ) {}

  get packets(): number {
    return this.q.length - this.head;
  }
  get byteCount(): number {
    return this.bytes;
  }

  /** Whether one more frame of `len` bytes fits. */
  hasRoom(len: number): boolean {
    return this.packets < this.limits.maxPackets && this.bytes + len <= this.limits.maxBytes;
  }

  /** Holds a frame produced in `epoch`. The caller checks `hasRoom` first. */
  hold(frame: Buffer, epoch: number, now: number): void {
    this.q.push({ frame, epoch, heldAt: now });
    this.bytes += frame.length;
  }

  /** Releases, in order, every held frame of an epoch <= `epoch`. */
  release(epoch: number, now: number): number {
    let n = 0;
    while (this.head < this.q.length) {
      const h = this.q[this.head] as Held;
      if (h.epoch > epoch) break;
      this.head++;
      this.bytes -= h.frame.length;
      this.observeDelay((now - h.heldAt) / 1000);
      this.send(h.frame, h.epoch);
      this.releasedEpoch = Math.max(this.releasedEpoch, h.epoch);
      n++;
    }
    this.released += n;
    this.compact();
    return n;
  }

  /** Releases everything (the primary became unprotected: there is nobody to wait for). */
  releaseAll(now: number): number {
    return this.release(Number.MAX_SAFE_INTEGER, now);
  }

  /**
   * Drops everything held without sending it (the node stopped being the
   * active side: its unacknowledged output must never leave). Returns the count.
   */
  discardAll(): number {
    const n = this.packets;
    this.q = [];
    this.head = 0;
    this.bytes = 0;
    return n;
  }

  /** Age in ms of the oldest held frame (0 when empty). */
  oldestAgeMs(now: number): number {
    const h = this.q[this.head];
    return h ? now - h.heldAt : 0;
  }

  /** The epochs of the held frames, oldest first (for tests). */
  heldEpochs(): number[] {
    return this.q.slice(this.head).map((h) => h.epoch);
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.q.length) {
      this.q = this.q.slice(this.head);
      this.head = 0;
    }
  }
}
