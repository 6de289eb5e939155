/**
 * The records of the replication stream as TypeScript values: one member of
 * the `ReplicationRecord` union per record type of proto/SPEC.md §6.
 *
 * u64 counters (epochs, generations, microsecond times) are plain numbers; the
 * format forbids values above 2^53 - 1 so they never lose precision. The one
 * full-range u64, `guestTimeNs`, is a bigint. Byte fields are Uint8Array; a
 * decoder returns Buffer views into the frame it decoded (no copies).
 */

import type { ColoReasonCode, PageEncoding, PeerStateCode, RoleCode } from "./constants.js";

export interface Hello {
  type: "hello";
  role: RoleCode;
  /** Bits of HELLO_FLAG. */
  flags: number;
  generation: number;
  pageSize: number;
  pages: number;
  diskBlockSize: number;
  diskBlocks: number;
  vcpuSize: number;
  deviceSize: number;
  committedEpoch: number;
  /** 32 random bytes, fresh for every connection. */
  nonce: Uint8Array;
  /** 16 bytes naming the node; stable across restarts. */
  nodeId: Uint8Array;
  /** The sender's software version, at most 64 UTF-8 bytes. */
  software: string;
}

export interface Auth {
  type: "auth";
  /** HMAC-SHA256, see `computeAuthMac`. */
  mac: Uint8Array;
}

export interface SyncBegin {
  type: "syncBegin";
  generation: number;
  /** The epoch whose CHECKPOINT_END (with the SYNC flag) completes the sync. */
  epoch: number;
  pages: number;
  diskBlocks: number;
  /** Bits of SYNC_FLAG. */
  flags: number;
}

/** One page of a PAGE_BATCH. `data` is empty for a zero page. */
export interface PageEntry {
  pfn: number;
  enc: PageEncoding;
  data: Uint8Array;
}

/** One block write of a DISK_WRITES record. `data` is empty for a zeroed block. */
export interface DiskWrite {
  block: number;
  enc: PageEncoding;
  data: Uint8Array;
}

export interface PageBatch {
  type: "pageBatch";
  epoch: number;
  /** 1..512 entries, pfns strictly increasing. */
  entries: PageEntry[];
}

export interface DiskWrites {
  type: "diskWrites";
  epoch: number;
  /** 1..512 entries in write order; a block may repeat, the later write wins. */
  entries: DiskWrite[];
}

export interface Vcpu {
  type: "vcpu";
  epoch: number;
  state: Uint8Array;
}

export interface Device {
  type: "device";
  epoch: number;
  state: Uint8Array;
}

export interface CheckpointEnd {
  type: "checkpointEnd";
  epoch: number;
  generation: number;
  /** Bits of CHECKPOINT_FLAG. */
  flags: number;
  pageCount: number;
  diskWriteCount: number;
  recordCount: number;
  streamCrc: number;
  guestTimeNs: bigint;
  /** 32 bytes; all zero unless flags has HAS_DIGEST. */
  digest: Uint8Array;
}

/**
 * The domain's configuration, sent by the primary before its first SYNC_BEGIN
 * of a session, so a backup needs no domain settings of its own (SPEC §6.16).
 */
export interface DomainConfig {
  type: "domainConfig";
  /** Must equal the primary's HELLO. */
  pages: number;
  diskBlocks: number;
  /** The checkpoint interval in ms (1..60000). */
  intervalMs: number;
  /** The guest NIC's MAC address, 6 bytes. */
  guestMac: Uint8Array;
  /** The guest's IPv4 address as a u32 (a.b.c.d is a<<24 | b<<16 | c<<8 | d). */
  guestIp: number;
  /** The `--workload` spec the guest was booted with (≤ 1024 UTF-8 bytes). */
  workload: string;
}

export interface Ack {
  type: "ack";
  epoch: number;
  generation: number;
}

export interface Nack {
  type: "nack";
  epoch: number;
  reason: number;
  message: string;
}

/**
 * A former primary, rejoining as backup with its memory image, offers to be
 * rewound (SPEC §6.17): what its image ran under, and what it wrote since.
 */
export interface Rewind {
  type: "rewind";
  /** The generation the image ran under (the former primary's). */
  generation: number;
  /** The last epoch the former primary had acknowledged: the one both sides committed. */
  epoch: number;
  /** The pages it wrote after `epoch` (bit i of byte i/8 = pfn i, LSB first), ceil(pages / 8) bytes. */
  pageBitmap: Uint8Array;
  /** The disk blocks it wrote after `epoch`, ceil(diskBlocks / 8) bytes. */
  blockBitmap: Uint8Array;
}

export interface Heartbeat {
  type: "heartbeat";
  pingId: number;
  sentAtUs: number;
  state: PeerStateCode;
  committedEpoch: number;
  generation: number;
}

export interface HeartbeatReply {
  type: "heartbeatReply";
  pingId: number;
  sentAtUs: number;
}

export interface Goodbye {
  type: "goodbye";
  reason: number;
  /**
   * The sender's generation. With FENCED: the generation that supersedes the
   * receiver (a fencing claim, SPEC §5.5).
   */
  generation: number;
  /**
   * With FENCED: the epoch that generation's lineage reached (an activated
   * primary: the epoch it resumed from; a backup: its committed epoch).
   * Otherwise the sender's committed epoch, for logs.
   */
  epoch: number;
  message: string;
}

export interface SwitchoverRequest {
  type: "switchoverRequest";
  generation: number;
}

/**
 * One connection of a COLO_START edge table: the primary's guest numbers
 * this connection's bytes `delta` above what its clients see (a COLO
 * secondary that took over earlier and still renumbers it at its LAN edge).
 */
export interface ColoEdgeEntry {
  /** The guest's end. */
  localIp: number;
  localPort: number;
  /** The client's end. */
  remoteIp: number;
  remotePort: number;
  /** Non-zero, mod 2^32. */
  delta: number;
}

/** COLO: the session runs in COLO mode from `epoch` on (the epoch after the sync's). */
export interface ColoStart {
  type: "coloStart";
  epoch: number;
  generation: number;
  /** The primary's LAN edge renumbering (SPEC §6.12): the secondary's failover must carry it on. */
  edge: ColoEdgeEntry[];
}

/** COLO: a frame the primary delivered to its guest, mirrored to the secondary (index counts from 0 per epoch). */
export interface ColoInput {
  type: "coloInput";
  epoch: number;
  index: number;
  /** An Ethernet frame of 14..1514 bytes. */
  frame: Uint8Array;
}

/** COLO: a frame the secondary's guest transmitted (already renumbered by its rewriter), for the comparator. */
export interface ColoOutput {
  type: "coloOutput";
  epoch: number;
  index: number;
  frame: Uint8Array;
}

/** COLO: the primary ended `epoch` and asks the secondary for its dirty set. */
export interface ColoCheckpoint {
  type: "coloCheckpoint";
  epoch: number;
  generation: number;
  reason: ColoReasonCode;
  /** COLO_INPUT records of the epoch, all sent before this one. */
  inputs: number;
}

/** COLO: what the secondary's guest dirtied during `epoch` (bit i of byte i/8 = pfn or block i, LSB first). */
export interface ColoDirty {
  type: "coloDirty";
  epoch: number;
  /** ceil(pages / 8) bytes. */
  pageBitmap: Uint8Array;
  /** ceil(diskBlocks / 8) bytes. */
  blockBitmap: Uint8Array;
}

/** Every record of the stream, discriminated by `type`. */
export type ReplicationRecord =
  | Hello
  | Auth
  | SyncBegin
  | PageBatch
  | DiskWrites
  | Vcpu
  | Device
  | CheckpointEnd
  | DomainConfig
  | Ack
  | Nack
  | Rewind
  | Heartbeat
  | HeartbeatReply
  | Goodbye
  | SwitchoverRequest
  | ColoStart
  | ColoInput
  | ColoOutput
  | ColoCheckpoint
  | ColoDirty;

/**
 * Bounds that depend on the domain, learned from HELLO. Needed to decode
 * PAGE_BATCH, DISK_WRITES, VCPU and DEVICE.
 */
export interface Geometry {
  pages: number;
  diskBlocks: number;
  /** Exact size of a VCPU record's state. Unchecked when absent. */
  vcpuSize?: number;
  /** Largest size of a DEVICE record's state. Unchecked when absent. */
  deviceSize?: number;
}
