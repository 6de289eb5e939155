/**
 * The replication wire format (proto/SPEC.md): pure encoders and decoders,
 * the handshake's MAC and session tag, and the record-order rules.
 * Nothing here does I/O or reads a clock.
 */

export {
  checkPeerHello,
  computeAuthMac,
  geometryOf,
  type HelloRejection,
  INSECURE_KEY,
  sessionNonces,
  sessionTag,
  verifyAuthMac,
} from "./auth.js";
export {
  type BatchFrame,
  type BatchOptions,
  crc32Combine,
  decodePageInto,
  encodeBatchFrame,
  isZeroPage,
  type PageBases,
  sealFrame,
  ZERO_PAGE,
} from "./batch.js";
export {
  bitmapBytes,
  ColoOrder,
  fromBitmap,
  type StreamPosition,
  toBitmap,
} from "./colo.js";
export * from "./constants.js";
export { SentPageCache, type SentPageCacheStats, xorPage } from "./delta.js";
export {
  isProtocolError,
  PROTOCOL_ERROR_REASONS,
  ProtocolError,
  type ProtocolErrorReason,
} from "./errors.js";
export {
  type DecodeOptions,
  decodeFrame,
  encodeBody,
  encodeFrame,
  FrameCodec,
  type FrameFields,
  type FrameHeader,
  frameBody,
  frameCrc,
  readFrameHeader,
} from "./frame.js";
export type * from "./records.js";
export { CheckpointStream, type CheckpointSummary, StreamOrder, type Verdict } from "./stream.js";
