/**
 * The guest's virtual NIC: a receive ring and a transmit ring in guest memory,
 * their indices in the device block (src/domain/device.ts). Both rings are
 * checkpointed with the domain, so a frame in a ring at a checkpoint is part of
 * the state the backup resumes.
 *
 * Ring slot layout (`slotSize` bytes): u16 frame length, then the frame. The
 * head and tail registers are free-running u32 counters; slot = counter mod slots.
 *
 * Two sides use it:
 *  - the device model (host side, the daemon): `deliver` puts a received frame
 *    in the rx ring (dropping it when the ring is full, as a NIC does: TCP
 *    recovers), `takeTx` pulls the next frame the guest transmitted;
 *  - the guest driver: `receive` takes the next rx frame, `transmit` queues a
 *    frame and returns false when the tx ring is full (backpressure: the guest's
 *    TCP keeps the data and retries).
 */

import type { DeviceState } from "../domain/device.js";
import type { Domain } from "../domain/domain.js";
import type { GuestMemory } from "../domain/memory.js";
import { RemusError } from "../errors.js";
import type { PageAllocator } from "./mm.js";

export const NIC_SLOT_SIZE = 2048;
/** Largest Ethernet frame carried (no FCS): 1514 bytes with a 1500-byte MTU. */
export const MAX_FRAME = 1514;
export const MIN_FRAME = 14;
export const DEFAULT_RX_SLOTS = 256;
export const DEFAULT_TX_SLOTS = 256;
const NIC_CONFIGURED = 1;

export interface NicConfig {
  readonly mac: Uint8Array;
  readonly ip: number;
  readonly netmask?: number;
  readonly rxSlots?: number;
  readonly txSlots?: number;
}

/** A stateless handle on the NIC of a domain. */
export class Nic {
  private readonly dev: DeviceState;
  private readonly mem: GuestMemory;

  constructor(domain: Domain) {
    this.dev = domain.device;
    this.mem = domain.memory;
  }

  get configured(): boolean {
    return (this.dev.get("flags") & NIC_CONFIGURED) !== 0;
  }

  /** Allocates the rings in guest memory and fills the registers (at guest boot). */
  static configure(domain: Domain, pages: PageAllocator, cfg: NicConfig): Nic {
    const dev = domain.device;
    const rxSlots = cfg.rxSlots ?? DEFAULT_RX_SLOTS;
    const txSlots = cfg.txSlots ?? DEFAULT_TX_SLOTS;
    const rx = pages.alloc(Math.ceil((rxSlots * NIC_SLOT_SIZE) / 4096));
    const tx = pages.alloc(Math.ceil((txSlots * NIC_SLOT_SIZE) / 4096));
    dev.mac = cfg.mac;
    dev.set("ip", cfg.ip);
    dev.set("netmask", cfg.netmask ?? 0xffffff00);
    dev.set("rxRingAddr", rx);
    dev.set("rxRingSlots", rxSlots);
    dev.set("rxHead", 0);
    dev.set("rxTail", 0);
    dev.set("txRingAddr", tx);
    dev.set("txRingSlots", txSlots);
    dev.set("txHead", 0);
    dev.set("txTail", 0);
    dev.set("slotSize", NIC_SLOT_SIZE);
    dev.set("flags", NIC_CONFIGURED);
    return new Nic(domain);
  }

  get mac(): Buffer {
    return this.dev.mac;
  }
  get ip(): number {
    return this.dev.get("ip");
  }

  private slotAddr(ring: "rx" | "tx", counter: number): number {
    const base = this.dev.get(ring === "rx" ? "rxRingAddr" : "txRingAddr");
    const slots = this.dev.get(ring === "rx" ? "rxRingSlots" : "txRingSlots");
    return base + (counter % slots) * NIC_SLOT_SIZE;
  }

  /** Frames waiting in the rx ring for the guest. */
  get rxPending(): number {
    return (this.dev.get("rxHead") - this.dev.get("rxTail")) >>> 0;
  }
  /** Frames the guest queued that the device has not taken. */
  get txPending(): number {
    return (this.dev.get("txHead") - this.dev.get("txTail")) >>> 0;
  }

  // ---- device side ----

  /** Puts a received frame in the rx ring. Returns false (and counts a drop) when it is full or malformed. */
  deliver(frame: Uint8Array): boolean {
    if (!this.configured || frame.length < MIN_FRAME || frame.length > MAX_FRAME) {
      this.dev.bump("rxDropped");
      return false;
    }
    if (this.rxPending >= this.dev.get("rxRingSlots")) {
      this.dev.bump("rxDropped");
      return false;
    }
    const head = this.dev.get("rxHead");
    const a = this.slotAddr("rx", head);
    this.mem.setU16(a, frame.length);
    this.mem.write(a + 2, frame);
    this.dev.set("rxHead", head + 1);
    return true;
  }

  /** Takes the next frame the guest transmitted (a copy), or undefined. */
  takeTx(): Buffer | undefined {
    if (!this.configured || this.txPending === 0) return undefined;
    const tail = this.dev.get("txTail");
    const a = this.slotAddr("tx", tail);
    const len = this.mem.u16(a);
    const frame = this.mem.read(a + 2, Math.min(len, MAX_FRAME));
    this.dev.set("txTail", tail + 1);
    return frame;
  }

  // ---- guest driver side ----

  /** The next received frame (a copy), or undefined. */
  receive(): Buffer | undefined {
    if (this.rxPending === 0) return undefined;
    const tail = this.dev.get("rxTail");
    const a = this.slotAddr("rx", tail);
    const len = this.mem.u16(a);
    const frame = this.mem.read(a + 2, Math.min(len, MAX_FRAME));
    this.dev.set("rxTail", tail + 1);
    this.dev.bump("rxFrames");
    return frame;
  }

  /** Queues a frame for transmission; false when the tx ring is full (the caller retries later). */
  transmit(frame: Uint8Array): boolean {
    if (frame.length < MIN_FRAME || frame.length > MAX_FRAME) {
      throw new RemusError(
        "REMUSD_ERR_TOO_LARGE",
        `frame of ${frame.length} bytes outside [${MIN_FRAME}, ${MAX_FRAME}]`,
      );
    }
    if (this.txPending >= this.dev.get("txRingSlots")) {
      this.dev.bump("txStalls");
      return false;
    }
    const head = this.dev.get("txHead");
    const a = this.slotAddr("tx", head);
    this.mem.setU16(a, frame.length);
    this.mem.write(a + 2, frame);
    this.dev.set("txHead", head + 1);
    this.dev.bump("txFrames");
    return true;
  }

  counters(): { rxFrames: number; txFrames: number; rxDropped: number; txStalls: number } {
    return {
      rxFrames: this.dev.counter("rxFrames"),
      txFrames: this.dev.counter("txFrames"),
      rxDropped: this.dev.counter("rxDropped"),
      txStalls: this.dev.counter("txStalls"),
    };
  }
}
