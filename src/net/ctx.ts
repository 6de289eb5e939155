/**
 * The per-call context shared by the stack's modules: the environment, the
 * root address, and a read-only copy of the configuration (which never
 * changes after `NetStack.format`, so caching it in the handle cannot diverge
 * from memory). Nothing mutable lives here between calls except `now`, which
 * every public entry point sets afresh from the clock.
 */
import type { Mem } from "../domain/memory.js";
import { RemusError } from "../errors.js";
import { LAYOUT_VERSION, R, ROOT_MAGIC } from "./layout.js";

/**
 * The allocator the stack takes its memory from: on a guest the kernel's heap
 * (src/guest/mm.ts), elsewhere a heap over plain memory. Its state must live
 * in `NetEnv.mem` too, or a checkpoint of the memory would not carry it.
 */
export interface NetHeap {
  /** Zeroed memory of at least `size` bytes, or 0 when there is none. */
  tryAlloc(size: number): number;
  /** As `tryAlloc`, but running out is an error. */
  alloc(size: number): number;
  /** Frees what `alloc(size)` or `tryAlloc(size)` returned; `size` must be the size asked for. */
  free(addr: number, size: number): void;
}

/** What the stack needs from its host. */
export interface NetEnv {
  /** Memory holding every byte of the stack's state; writes are dirty-logged on a guest. */
  mem: Mem;
  /** Allocator over `mem`. */
  heap: NetHeap;
  /**
   * Monotonic milliseconds. On a guest this is the vCPU clock. Fractions are
   * floored: the stack's timer granularity is 1 ms.
   */
  now(): number;
  /** A uniformly random u32 (the vCPU RNG on a guest): initial sequence numbers and ephemeral ports. */
  random32(): number;
  /**
   * Hands one complete Ethernet frame (no FCS, not padded) to the NIC. Returns
   * false when the transmit ring is full; the stack then keeps what it wanted
   * to send and retries on a later `poll()`. The frame buffer is the NIC's to
   * keep. Must not call back into the stack.
   */
  transmit(frame: Uint8Array): boolean;
}

export class Ctx {
  readonly mem: Mem;
  readonly heap: NetHeap;
  /** The time of the current public call, ms (set at every entry point). */
  now = 0;
  readonly mac: Uint8Array;
  readonly ip: number;
  readonly netmask: number;
  readonly gateway: number;
  readonly mss: number;
  readonly rcvBuf: number;
  readonly sndBuf: number;
  readonly minRto: number;
  readonly maxRto: number;
  readonly initRto: number;
  readonly timeWait: number;
  readonly ackDelay: number;
  readonly arpTimeout: number;
  readonly maxSockets: number;
  readonly arpEntries: number;
  readonly maxRetries: number;
  readonly synRetries: number;
  readonly rcvShift: number;
  readonly sockTable: number;
  readonly hashTable: number;
  readonly hashMask: number;
  readonly arpTable: number;

  constructor(
    readonly env: NetEnv,
    readonly root: number,
  ) {
    const m = env.mem;
    this.mem = m;
    this.heap = env.heap;
    if (
      !Number.isInteger(root) ||
      root <= 0 ||
      root + R.STATS > m.size ||
      m.u32(root + R.MAGIC) !== ROOT_MAGIC
    ) {
      throw new RemusError("REMUSD_ERR_CORRUPT", `no network stack at ${root}`);
    }
    if (m.u32(root + R.VERSION) !== LAYOUT_VERSION) {
      throw new RemusError(
        "REMUSD_ERR_CORRUPT",
        `network stack layout ${m.u32(root + R.VERSION)} not supported`,
      );
    }
    this.mac = m.read(root + R.MAC, 6);
    this.ip = m.u32(root + R.IP);
    this.netmask = m.u32(root + R.NETMASK);
    this.gateway = m.u32(root + R.GATEWAY);
    this.mss = m.u16(root + R.MSS);
    this.rcvBuf = m.u32(root + R.RCV_BUF);
    this.sndBuf = m.u32(root + R.SND_BUF);
    this.minRto = m.u32(root + R.MIN_RTO);
    this.maxRto = m.u32(root + R.MAX_RTO);
    this.initRto = m.u32(root + R.INIT_RTO);
    this.timeWait = m.u32(root + R.TIME_WAIT);
    this.ackDelay = m.u32(root + R.ACK_DELAY);
    this.arpTimeout = m.u32(root + R.ARP_TIMEOUT);
    this.maxSockets = m.u16(root + R.MAX_SOCKETS);
    this.arpEntries = m.u16(root + R.ARP_ENTRIES);
    this.maxRetries = m.u8(root + R.MAX_RETRIES);
    this.synRetries = m.u8(root + R.SYN_RETRIES);
    this.rcvShift = m.u8(root + R.RCV_SHIFT);
    this.sockTable = m.u32(root + R.SOCK_TABLE);
    this.hashTable = m.u32(root + R.HASH_TABLE);
    this.hashMask = m.u32(root + R.HASH_MASK);
    this.arpTable = m.u32(root + R.ARP_TABLE);
  }

  /** Reads the clock into `now`; called at every public entry point. */
  tick(): number {
    // A clock that is not a finite non-negative number reads as 0 rather than corrupting deadlines.
    this.now = Math.max(0, Math.floor(this.env.now()) || 0);
    return this.now;
  }

  /** Adds `n` to counter `s` (an index from `S`). */
  bump(s: number, n = 1): void {
    const a = this.root + R.STATS + s * 8;
    this.mem.setU64(a, this.mem.u64(a) + n);
  }

  stat(s: number): number {
    return this.mem.u64(this.root + R.STATS + s * 8);
  }
}
