/**
 * Constants of the replication wire format, protocol version 1.
 * Every number here is normative: proto/SPEC.md is the prose form of this file.
 */

/** First two bytes of every frame, little-endian: the bytes 0x44 0x52 ("DR"). */
export const MAGIC = 0x5244;

/** The only protocol version this code speaks. */
export const PROTOCOL_VERSION = 1;

export const HEADER_SIZE = 16;
export const TRAILER_SIZE = 4;
/** Header plus trailer: the smallest possible frame (an empty body). */
export const FRAME_OVERHEAD = HEADER_SIZE + TRAILER_SIZE;

/** Size of a guest memory page and of a virtual disk block. Fixed in version 1. */
export const PAGE_SIZE = 4096;

/** Record type codes (header byte 3). */
export const RECORD_TYPE = {
  hello: 0x01,
  auth: 0x02,
  syncBegin: 0x10,
  pageBatch: 0x11,
  diskWrites: 0x12,
  vcpu: 0x13,
  device: 0x14,
  checkpointEnd: 0x15,
  domainConfig: 0x16,
  ack: 0x20,
  nack: 0x21,
  rewind: 0x22,
  heartbeat: 0x30,
  heartbeatReply: 0x31,
  goodbye: 0x40,
  switchoverRequest: 0x50,
  coloStart: 0x60,
  coloInput: 0x61,
  coloOutput: 0x62,
  coloCheckpoint: 0x63,
  coloDirty: 0x64,
} as const;

export type RecordType = keyof typeof RECORD_TYPE;

/** Reverse map: type code to record type name. */
export const RECORD_TYPE_NAME: ReadonlyMap<number, RecordType> = new Map(
  (Object.entries(RECORD_TYPE) as [RecordType, number][]).map(([name, code]) => [code, name]),
);

/** Largest number of entries in one PAGE_BATCH or DISK_WRITES record. */
export const MAX_BATCH_ENTRIES = 512;
/** Bytes of a batch body before its entries: epoch u64 + count u32. */
export const BATCH_PREFIX_SIZE = 12;
/** Bytes of one batch entry: index u32, enc u8, reserved u8, len u16. */
export const BATCH_ENTRY_SIZE = 8;

/**
 * Every limit of the format. A receiver checks each length or count against
 * its limit before it trusts the value or allocates anything for it.
 */
export const LIMITS = {
  /** The largest legal body: a full batch of raw pages, rounded up to 2 MiB + 8 KiB. */
  maxBody: 2 * 1024 * 1024 + 8 * 1024,
  /** The largest legal frame, i.e. the `maxPayload` the WebSocket layer must enforce. */
  maxFrame: 2 * 1024 * 1024 + 8 * 1024 + FRAME_OVERHEAD,
  maxBatchEntries: MAX_BATCH_ENTRIES,
  /** UTF-8 bytes of a NACK or GOODBYE message. */
  maxMessage: 1024,
  /** UTF-8 bytes of the software version string in HELLO. */
  maxSoftware: 64,
  maxVcpuState: 4096,
  maxDeviceState: 4096,
  /** An lz4 block must be strictly shorter than the page it encodes. */
  maxLz4Block: PAGE_SIZE - 1,
  /** u64 counters (epoch, generation, times in µs) must fit a JavaScript number. */
  maxU64Number: Number.MAX_SAFE_INTEGER,
} as const;

/** Bytes of the HELLO nonce and node id. */
export const NONCE_SIZE = 32;
export const NODE_ID_SIZE = 16;
export const MAC_SIZE = 32;
export const DIGEST_SIZE = 32;

/** Page (and disk block) encodings in batch entries. */
export const PAGE_ENCODING = {
  /** All 4096 bytes are zero; no data follows. */
  zero: 0,
  /** 4096 bytes of data. */
  raw: 1,
  /** One lz4 block (no frame header) of 1..4095 bytes that decodes to exactly 4096 bytes. */
  lz4: 2,
  /**
   * One lz4 block of 1..4095 bytes that decodes to exactly 4096 bytes D; the page
   * is D XOR its base, the version of the page last sent in this sync
   * (SPEC §6.4.1). PAGE_BATCH only, and only to a receiver that set HELLO DELTA.
   */
  xorLz4: 3,
} as const;
export type PageEncoding = (typeof PAGE_ENCODING)[keyof typeof PAGE_ENCODING];

/** HELLO role codes. */
export const ROLE = { primary: 1, backup: 2 } as const;
export type RoleCode = (typeof ROLE)[keyof typeof ROLE];

/** HELLO flag bits. Undefined bits must be zero. */
export const HELLO_FLAG = {
  /**
   * Sent by a backup: it holds a complete, intact committed image of
   * `committedEpoch`, so a primary of the same generation may resync it
   * incrementally.
   */
  imageValid: 1 << 0,
  /** Sent by a backup: it decodes XOR_LZ4 page entries, so the primary may send them. */
  delta: 1 << 1,
  /**
   * Sent by a backup: it takes the domain's geometry and configuration from the
   * primary's DOMAIN_CONFIG and judges them there, after AUTH, rather than
   * comparing `pages` and `diskBlocks` in HELLO (SPEC §5.3, §6.16).
   */
  adopt: 1 << 2,
  /**
   * Sent by a backup: it holds the memory image of a former primary (which
   * ran past the last epoch it had acknowledged) and offers to be rewound:
   * REWIND follows its AUTH (SPEC §6.17). Not with IMAGE_VALID.
   */
  rewind: 1 << 3,
} as const;
export const HELLO_FLAGS_DEFINED =
  HELLO_FLAG.imageValid | HELLO_FLAG.delta | HELLO_FLAG.adopt | HELLO_FLAG.rewind;

/** SYNC_BEGIN flag bits. Undefined bits must be zero. */
export const SYNC_FLAG = {
  /**
   * The sync carries only what changed since the backup's committed image
   * (announced with HELLO IMAGE_VALID); the backup applies it on top of that
   * image. Without it the sync carries every page and block.
   */
  incremental: 1 << 0,
  /**
   * The sync rewinds a former primary's image (REWIND, SPEC §6.17): it carries
   * the pages and blocks that backup dirtied after the common epoch plus those
   * this primary's lineage changed since; applied staged on top of that image.
   * Not with INCREMENTAL.
   */
  rewind: 1 << 1,
} as const;
export const SYNC_FLAGS_DEFINED = SYNC_FLAG.incremental | SYNC_FLAG.rewind;

/** CHECKPOINT_END flag bits. Undefined bits must be zero. */
export const CHECKPOINT_FLAG = {
  /** This checkpoint completes the full sync started by SYNC_BEGIN. */
  sync: 1 << 0,
  /** The primary stopped its domain after this checkpoint: it is the last one of the session. */
  final: 1 << 1,
  /** The digest field carries the domain digest; otherwise it is all zero. */
  hasDigest: 1 << 2,
} as const;
export const CHECKPOINT_FLAGS_DEFINED =
  CHECKPOINT_FLAG.sync | CHECKPOINT_FLAG.final | CHECKPOINT_FLAG.hasDigest;

/** Daemon state carried in HEARTBEAT (the `state` values of GET /v1/status). */
export const PEER_STATE = {
  syncing: 1,
  protected: 2,
  unprotected: 3,
  waiting: 4,
  standby: 5,
} as const;
export type PeerStateCode = (typeof PEER_STATE)[keyof typeof PEER_STATE];

/** GOODBYE reason codes. Receivers accept unknown codes (a goodbye is a goodbye). */
export const GOODBYE_REASON = {
  shutdown: 1,
  protocolError: 2,
  authFailed: 3,
  geometryMismatch: 4,
  fenced: 5,
  version: 6,
  busy: 7,
  resync: 8,
  switchover: 9,
  /**
   * Sent by a primary that dropped its backup (heartbeat timeout) and goes on
   * without it: the backup's image is stale, it must not activate from it and
   * rejoins by resync (SPEC §6.10).
   */
  continuing: 10,
  /**
   * Sent by a backup: the primary's DOMAIN_CONFIG conflicts with a setting the
   * backup was given (or with the image it holds); it changes nothing and stops.
   */
  configMismatch: 11,
} as const;

/** NACK reason codes. Receivers accept unknown codes. */
export const NACK_REASON = {
  /** The backup could not stage or apply the checkpoint (storage, memory). */
  applyFailed: 1,
  /** With --verify: the backup's digest after applying differs from the primary's. */
  digestMismatch: 2,
  /** Any other reason; see the message. */
  other: 3,
} as const;

/** Why a COLO primary ends an epoch (COLO_CHECKPOINT `reason`). Other values are `bad-value`. */
export const COLO_REASON = {
  /** The two replicas' output differed. */
  mismatch: 1,
  /** Output waited longer than the comparator's timeout for its twin. */
  timeout: 2,
  /** The periodic checkpoint. */
  periodic: 3,
  /** A comparator queue was full. */
  queueFull: 4,
  /** Asked for by an operator or by the node itself (POST /v1/checkpoint, a resync). */
  requested: 5,
} as const;
export type ColoReasonCode = (typeof COLO_REASON)[keyof typeof COLO_REASON];

/** Ethernet frames carried by COLO_INPUT and COLO_OUTPUT: header to a 1500-byte MTU, no FCS. */
export const COLO_MIN_FRAME = 14;
export const COLO_MAX_FRAME = 1514;
/** Longest workload spec in DOMAIN_CONFIG, in UTF-8 bytes (the `--workload` limit). */
export const MAX_WORKLOAD_SPEC = 1024;
/** Checkpoint interval bounds in DOMAIN_CONFIG (the `--interval-ms` bounds). */
export const DOMAIN_CONFIG_INTERVAL = { min: 1, max: 60_000 } as const;

/**
 * Connections in COLO_START's edge table, at most (the sequence rewriter's
 * table size: src/colo/rewriter.ts).
 */
export const COLO_MAX_EDGE = 4096;

/** A COLO_DIRTY bitmap covers at most 2^20 pages or blocks (4096 MiB): 131,072 bytes. */
export const COLO_MAX_BITMAP = 131_072;
