/**
 * kvd's constants: limits, and the offset tables of its structures in guest
 * memory. The layout and its invariants are described at the top of
 * src/guest/programs/kvd.ts.
 */

/** Program id of kvd (part of the guest ABI; never reuse it). */
export const KVD_PROGRAM_ID = 6;
/** Default TCP port (the process's args[0] overrides it). */
export const KVD_PORT = 6379;
/** The append-only file on the guest's disk. */
export const KVD_AOF_FILE = "kvd.aof";

/** Connections served at once; one more is answered `-ERR max number of clients reached` and closed. */
export const KVD_MAX_CLIENTS = 64;
/** Largest bulk string a request may carry (keys and values); beyond it: protocol error, like Redis's proto-max-bulk-len. */
export const KVD_MAX_BULK = 512 * 1024;
/** Longest inline request line, and longest `*N` / `$N` header line (Redis's PROTO_INLINE_MAX_SIZE). */
export const KVD_MAX_INLINE = 64 * 1024;
/** Largest multibulk count accepted (Redis: INT_MAX); in practice the query limit binds first. */
export const KVD_MAX_MULTIBULK = 2_147_483_647;
/** Largest single request held in a connection's input buffer; beyond it the connection is closed (client-query-buffer-limit). */
export const KVD_MAX_QUERY = 2 * 1024 * 1024;

/** Reading stops while a connection has this much reply output pending (backpressure). */
export const OUT_SOFT_LIMIT = 64 * 1024;
/** Free output space guaranteed before a command runs: enough for any small reply or error. */
export const OUT_RESERVE = 512;
/** Smallest input/output buffer (one page: larger heap requests take whole pages). */
export const BUF_MIN = 4096;
/** Reading stops while this many unparsed bytes are buffered and they hold a complete command. */
export const IN_HIGH_WATER = 64 * 1024;
/** Bytes read from one connection per tick. */
export const READ_PER_TICK = 32 * 1024;
/** Commands executed for one connection per tick. */
export const COMMANDS_PER_TICK = 64;
/** Connections accepted per tick. */
export const ACCEPTS_PER_TICK = 16;
/** Old-table buckets migrated per tick while rehashing. */
export const REHASH_BUCKETS_PER_TICK = 512;
/** Buckets scanned per tick by the active expiry cycle, and most keys it deletes in one tick. */
export const EXPIRE_BUCKETS_PER_TICK = 32;
export const EXPIRE_KEYS_PER_TICK = 32;
/** Smallest (and initial) number of hash buckets. */
export const TABLE_MIN_BUCKETS = 64;
/** Largest number of hash buckets (16 MiB of bucket array). */
export const TABLE_MAX_BUCKETS = 1 << 22;

export const KVD_MAGIC = 0x3144564b; // "KVD1"

/** kvd's process state block (u32 unless noted). */
export const KS = {
  magic: 0x00,
  listener: 0x04,
  aofFd: 0x08,
  port: 0x0c,
  hashSeed: 0x10,
  table: 0x14,
  tableSize: 0x18,
  oldTable: 0x1c,
  oldSize: 0x20,
  rehashCursor: 0x24,
  keys: 0x28,
  volatileKeys: 0x2c,
  expireCursor: 0x30,
  connCount: 0x34,
  connCursor: 0x38,
  flags: 0x3c,
  commands: 0x40, // u64
  aofBytes: 0x48, // u64: size of the AOF after the last append
  accepted: 0x50, // u64
  rejected: 0x58, // u64
  aofErrors: 0x60,
  oomErrors: 0x64,
  startMs: 0x68, // u64: guest time kvd started (INFO uptime)
  expiredKeys: 0x70, // u64: keys reclaimed because they expired
  hits: 0x78, // u64: reads that found their key (INFO keyspace_hits)
  misses: 0x80, // u64: reads that did not
  runId: 0x88, // 20 random bytes drawn at start (INFO run_id, 40 hex digits)
  nextClientId: 0xa0, // u64: the id the next accepted connection gets (CLIENT ID; never reset)
  conns: 0xc0, // u32[KVD_MAX_CLIENTS]: connection block address, 0 = free
} as const;
export const RUN_ID_BYTES = 20;
export const KS_SIZE = KS.conns + KVD_MAX_CLIENTS * 4;

/** A connection block (heap, 128 bytes). */
export const CN = {
  sock: 0x00,
  flags: 0x04,
  inBuf: 0x08,
  inCap: 0x0c,
  inLen: 0x10,
  /** Parse progress of the request at offset 0 of the input buffer (see proto.ts). */
  pArgc: 0x14,
  pDone: 0x18,
  pOff: 0x1c,
  outBuf: 0x20,
  outCap: 0x24,
  outHead: 0x28,
  outLen: 0x2c,
  commands: 0x30, // u64
  /** CLIENT SETNAME: the name's bytes (heap) and length; 0/0 = no name. */
  name: 0x38,
  nameLen: 0x3c,
  id: 0x40, // u64: CLIENT ID (the accept count when it was accepted: unique, increasing)
  createdMs: 0x48, // u64: guest time of the accept
  lastMs: 0x50, // u64: guest time of its last command
  /** Its last command: 1 + index in the list of full command names (0 = none yet). */
  lastCmd: 0x58,
} as const;
export const CN_SIZE = 128;
/** kvd flags (KS.flags). */
export const KF = {
  /** The last append to the AOF failed (INFO aof_last_write_status:err). */
  AOF_WRITE_ERR: 1,
} as const;

/** Connection flags. */
export const CF = {
  /** Close once the pending output is written (QUIT, protocol error); read nothing more. */
  CLOSE_AFTER_REPLY: 1,
  /** The buffered input holds no complete request: reading is needed to make progress. */
  NEED_MORE: 2,
} as const;

/** A hash entry (heap): header, then key bytes, then value bytes. */
export const EN = {
  next: 0x00,
  hash: 0x04,
  keyLen: 0x08,
  valLen: 0x0c,
  /** Absolute expiry in guest milliseconds, a signed 63-bit value split in two u32; 0 = none. */
  expLo: 0x10,
  expHi: 0x14,
  data: 0x18,
} as const;
export const EN_HEADER = EN.data;
