/**
 * Offset tables of every structure the network stack keeps in a `Mem`. The
 * prose (data flow, invariants) is at the top of `stack.ts`; this module is
 * the byte-level truth. All integers little-endian (the `Mem` accessors);
 * times are u64 milliseconds of the stack's clock (`NetEnv.now()`, floored),
 * 0 meaning "timer off". Addresses are u32 guest addresses, 0 meaning null.
 */

/** "NET1" */
export const ROOT_MAGIC = 0x3154454e;
export const LAYOUT_VERSION = 1;

/** Root block (`NetStack.format` returns its address). */
export const R = {
  MAGIC: 0, // u32
  VERSION: 4, // u32
  MAC: 8, // 6 bytes
  MSS: 14, // u16  our MSS (what we announce and the largest segment we send)
  IP: 16, // u32
  NETMASK: 20, // u32
  GATEWAY: 24, // u32  0 = none (every destination is on-link)
  RCV_BUF: 28, // u32  receive ring bytes per connection
  SND_BUF: 32, // u32  send ring bytes per connection
  MIN_RTO: 36, // u32  ms
  MAX_RTO: 40, // u32  ms
  INIT_RTO: 44, // u32  ms
  TIME_WAIT: 48, // u32  ms (2MSL)
  ACK_DELAY: 52, // u32  ms, 0 = ACK every segment at once
  ARP_TIMEOUT: 56, // u32  ms a resolved ARP entry lives
  MAX_SOCKETS: 60, // u16
  ARP_ENTRIES: 62, // u16
  GEN: 64, // u16  last socket generation handed out (1..65535)
  IP_ID: 66, // u16  next IPv4 identification
  MAX_RETRIES: 68, // u8   RTO expiries in a row before a connection is dropped
  SYN_RETRIES: 69, // u8
  RCV_SHIFT: 70, // u8   window scale we announce
  SOCK_TABLE: 72, // u32  -> u32[maxSockets] TCB addresses
  HASH_TABLE: 76, // u32  -> u32[hashBuckets] chain heads
  HASH_MASK: 80, // u32  hashBuckets - 1 (a power of two)
  ARP_TABLE: 84, // u32  -> ArpEntry[arpEntries]
  CTL_HEAD: 88, // u32  control-frame queue (FrameChunk list)
  CTL_TAIL: 92, // u32
  CTL_COUNT: 96, // u32
  ACCEPT_SEQ: 100, // u32  stamps established children so accept() is FIFO
  LIVE_SOCKETS: 104, // u32
  STATS: 128, // u64[STAT_NAMES.length]
} as const;

/** Counters kept in the root block, in layout order. Never reorder: append only. */
export const STAT_NAMES = [
  "framesIn",
  "framesOut",
  "txBlocked",
  "badFrames",
  "notForUs",
  "unknownEthertype",
  "arpIn",
  "arpRequestsSent",
  "arpRepliesSent",
  "arpAnnounces",
  "arpCacheUpdates",
  "arpQueued",
  "arpQueueDrops",
  "arpResolveFailures",
  "arpConflicts",
  "ipIn",
  "ipOut",
  "ipBadChecksums",
  "ipBadHeaders",
  "ipFragmentsDropped",
  "ipNotForUs",
  "ipUnknownProtocol",
  "icmpIn",
  "icmpEchoReplies",
  "icmpBadChecksums",
  "tcpSegmentsIn",
  "tcpSegmentsOut",
  "tcpBadChecksums",
  "tcpBadHeaders",
  "tcpNoSocket",
  "tcpRetransmits",
  "tcpFastRetransmits",
  "tcpTimeouts",
  "tcpResetsSent",
  "tcpResetsReceived",
  "tcpChallengeAcks",
  "tcpOutOfWindow",
  "tcpOooSegments",
  "tcpOooDropped",
  "tcpPersistProbes",
  "tcpActiveOpens",
  "tcpPassiveOpens",
  "tcpListenDrops",
  "tcpEstablished",
  "tcpConnTimeouts",
  "ctlQueued",
  "ctlDropped",
  "noMemory",
  "tcpListenStrayAcks",
] as const;

export type StatName = (typeof STAT_NAMES)[number];
/** Snapshot of the stack's counters. */
export type NetStats = Record<StatName, number>;

/** Index of each counter (offset `R.STATS + 8 * S[name]`). */
export const S = Object.fromEntries(STAT_NAMES.map((n, i) => [n, i])) as Record<StatName, number>;

/** Bytes the heap must give the root block. */
export const ROOT_SIZE = R.STATS + STAT_NAMES.length * 8;

/**
 * Transmission control block, one per socket (listeners included). Heap chunk
 * of `TCB_SIZE` bytes.
 */
export const T = {
  GEN: 0, // u16  generation, matches the socket id
  STATE: 2, // u8   TcpState
  ERROR: 3, // u8   TcpError
  FLAGS: 4, // u32  TF bits
  SLOT: 8, // u16  index in the socket table
  LPORT: 10, // u16
  RPORT: 12, // u16
  BACKLOG: 14, // u16  listeners: accept-queue limit
  RIP: 16, // u32  remote IPv4 (0 for listeners)
  HASH_NEXT: 20, // u32  next TCB in the hash chain
  PARENT: 24, // u32  socket id of the listener a passive child came from (0 once accepted)
  ACCEPT_SEQ: 28, // u32  order in which a child became established
  ISS: 32, // u32
  IRS: 36, // u32
  SND_UNA: 40, // u32  oldest unacknowledged sequence number
  SND_NXT: 44, // u32  next sequence number to send (rewinds to SND_UNA on RTO)
  SND_MAX: 48, // u32  highest sequence number sent + 1
  SND_WND: 52, // u32  peer's window, bytes (already scaled)
  SND_WL1: 56, // u32  seq of the segment that last updated SND_WND
  SND_WL2: 60, // u32  ack of that segment
  MAX_SND_WND: 64, // u32  largest window the peer ever offered
  RCV_NXT: 68, // u32
  RCV_ADV: 72, // u32  right edge of the window last advertised
  RCV_ACKED: 76, // u32  RCV_NXT as of the last ACK we sent
  SND_MSS: 80, // u16  largest segment we send on this connection
  SND_SHIFT: 82, // u8   peer's window scale
  RCV_SHIFT: 83, // u8   our window scale (0 unless both sides sent the option)
  CWND: 84, // u32
  SSTHRESH: 88, // u32
  RECOVER: 92, // u32  NewReno: SND_MAX when loss recovery began
  DUPACKS: 96, // u8
  RETRIES: 97, // u8   RTO expiries since the last forward progress
  PERSIST_BACKOFF: 98, // u8
  OOO_COUNT: 99, // u8
  SRTT_US: 100, // u32  smoothed RTT, microseconds (0 = no sample yet)
  RTTVAR_US: 104, // u32
  RTO: 108, // u32  current RTO, ms (includes backoff)
  RTT_SEQ: 112, // u32  sequence number being timed (TF.RTT_TIMING)
  FIN_SEQ: 116, // u32  sequence number of a peer FIN that arrived out of order (TF.FIN_OOO)
  RTT_START: 120, // u64
  RTO_AT: 128, // u64
  PERSIST_AT: 136, // u64
  DELACK_AT: 144, // u64
  CLOSE_AT: 152, // u64  TIME_WAIT expiry, or the limit for an orphaned FIN_WAIT_2
  SND_BUF: 160, // u32  send ring address
  SND_SIZE: 164, // u32
  SND_START: 168, // u32  ring offset of the byte at SND_UNA
  SND_LEN: 172, // u32  bytes queued (sent-unacked plus unsent), FIN not included
  RCV_BUF: 176, // u32  receive ring address
  RCV_SIZE: 180, // u32
  RCV_START: 184, // u32  ring offset of the next byte the application reads
  RCV_LEN: 188, // u32  in-order bytes not yet read (they end at RCV_NXT)
  OOO: 192, // OOO_MAX x (u32 start seq, u32 end seq), sorted, disjoint, all above RCV_NXT
} as const;

export const OOO_MAX = 8;
export const TCB_SIZE = T.OOO + OOO_MAX * 8; // 256

/** TCB flag bits (T.FLAGS). */
export const TF = {
  /** The application holds the socket id (cleared by close()). */
  OWNED: 1 << 0,
  /** The application shut down sending: a FIN follows the queued data. */
  FIN_QUEUED: 1 << 1,
  /** Our FIN has been acknowledged. */
  FIN_ACKED: 1 << 2,
  /** The peer's FIN has been received in order (end of stream). */
  FIN_RCVD: 1 << 3,
  /** A peer FIN arrived ahead of missing data; its sequence number is T.FIN_SEQ. */
  FIN_OOO: 1 << 4,
  /** An ACK must go out on the next output. */
  ACK_NOW: 1 << 5,
  /** A transmit was refused (NIC ring full): output retries on poll. */
  TX_BLOCKED: 1 << 6,
  /** RTT_SEQ/RTT_START time a segment (Karn: never a retransmitted one). */
  RTT_TIMING: 1 << 7,
  /** In NewReno fast recovery. */
  IN_RECOVERY: 1 << 8,
  /** Both SYNs carried the window-scale option. */
  WSCALE: 1 << 9,
  /** Created by a listener (passive open). */
  PASSIVE: 1 << 10,
  /** Our SYN was retransmitted (RFC 6298 5.7: no RTT sample from it). */
  SYN_RETX: 1 << 11,
  /** In the hash table. */
  HASHED: 1 << 12,
} as const;

/** Size of a hash bucket entry. */
export const HASH_ENTRY = 4;

/** ARP cache entry. */
export const A = {
  IP: 0, // u32
  MAC: 4, // 6 bytes
  STATE: 10, // u8  ArpState
  TRIES: 11, // u8  requests sent while incomplete
  QLEN: 12, // u8  frames waiting for resolution
  TIME: 16, // u64 resolved: expiry; incomplete: when to send the next request
  QHEAD: 24, // u32 FrameChunk list
  QTAIL: 28, // u32
} as const;
export const ARP_ENTRY_SIZE = 32;

export const ArpState = { FREE: 0, INCOMPLETE: 1, RESOLVED: 2 } as const;

/**
 * A queued Ethernet frame (ARP queue or control queue): heap chunk of
 * `FC.DATA + len` bytes, freed with that same size.
 */
export const FC = {
  NEXT: 0, // u32
  LEN: 4, // u16
  DATA: 8,
} as const;
