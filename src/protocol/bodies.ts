/**
 * Body codecs, one per record type, each a `preencode / encode / decode`
 * triple over a `WireState` (proto/SPEC.md §6 gives the byte tables).
 * Encoders validate as strictly as decoders, so anything that encodes decodes.
 */

import { decodeBatch, encodeBatch, preencodeBatch } from "./batch.js";
import { coloCheckpoint, coloDirty, coloInput, coloOutput, coloStart } from "./colo.js";
import {
  CHECKPOINT_FLAG,
  CHECKPOINT_FLAGS_DEFINED,
  DIGEST_SIZE,
  HELLO_FLAG,
  HELLO_FLAGS_DEFINED,
  LIMITS,
  MAC_SIZE,
  NODE_ID_SIZE,
  NONCE_SIZE,
  PEER_STATE,
  type PeerStateCode,
  ROLE,
  type RoleCode,
  SYNC_FLAG,
  SYNC_FLAGS_DEFINED,
} from "./constants.js";
import { domainConfig } from "./domainconfig.js";
import { ProtocolError } from "./errors.js";
import type {
  Auth,
  CheckpointEnd,
  Device,
  Geometry,
  Goodbye,
  Heartbeat,
  HeartbeatReply,
  Hello,
  Nack,
  ReplicationRecord,
  SwitchoverRequest,
  SyncBegin,
  Vcpu,
} from "./records.js";
import { rewind } from "./rewind.js";
import {
  ackCodec,
  expectEnd,
  preencodeString,
  readBytes,
  readString,
  readU8,
  readU16,
  readU32,
  readU64,
  readU64Big,
  type WireState,
  writeFixed,
  writeString,
  writeU8,
  writeU16,
  writeU32,
  writeU64,
  writeU64Big,
} from "./wire.js";

/** What a body decoder may need beyond the bytes. */
export interface BodyContext {
  geometry: Geometry | undefined;
  verifyPages: boolean;
}

export interface BodyCodec<R extends ReplicationRecord> {
  preencode(s: WireState, r: R): void;
  encode(s: WireState, r: R): void;
  decode(s: WireState, ctx: BodyContext): R;
}

/** Fixed part of a HELLO body, before the software string. */
export const HELLO_FIXED_SIZE = 89;

const hello: BodyCodec<Hello> = {
  preencode(s, r) {
    s.end += HELLO_FIXED_SIZE + preencodeString(r.software, LIMITS.maxSoftware, "software");
  },
  encode(s, r) {
    if (r.role !== ROLE.primary && r.role !== ROLE.backup)
      throw new ProtocolError("bad-value", `role ${r.role}`);
    if (r.vcpuSize > LIMITS.maxVcpuState) throw new ProtocolError("too-large", `vcpuSize ${r.vcpuSize}`);
    if (r.deviceSize > LIMITS.maxDeviceState)
      throw new ProtocolError("too-large", `deviceSize ${r.deviceSize}`);
    checkHelloFlags(r.flags);
    writeU8(s, r.role, "role");
    writeU8(s, r.flags, "flags");
    writeU16(s, 0, "reserved");
    writeU64(s, r.generation, "generation");
    writeU32(s, r.pageSize, "pageSize");
    writeU32(s, r.pages, "pages");
    writeU32(s, r.diskBlockSize, "diskBlockSize");
    writeU32(s, r.diskBlocks, "diskBlocks");
    writeU16(s, r.vcpuSize, "vcpuSize");
    writeU16(s, r.deviceSize, "deviceSize");
    writeU64(s, r.committedEpoch, "committedEpoch");
    writeFixed(s, r.nonce, NONCE_SIZE, "nonce");
    writeFixed(s, r.nodeId, NODE_ID_SIZE, "nodeId");
    writeString(s, r.software, 1, "software");
  },
  decode(s) {
    const role = readU8(s, "role");
    if (role !== ROLE.primary && role !== ROLE.backup) throw new ProtocolError("bad-value", `role ${role}`);
    const flags = readU8(s, "flags");
    checkHelloFlags(flags);
    const reserved = readU16(s, "reserved");
    if (reserved !== 0) throw new ProtocolError("bad-value", `HELLO reserved ${reserved}`);
    const generation = readU64(s, "generation");
    const pageSize = readU32(s, "pageSize");
    const pages = readU32(s, "pages");
    const diskBlockSize = readU32(s, "diskBlockSize");
    const diskBlocks = readU32(s, "diskBlocks");
    const vcpuSize = readU16(s, "vcpuSize");
    if (vcpuSize > LIMITS.maxVcpuState) throw new ProtocolError("too-large", `vcpuSize ${vcpuSize}`);
    const deviceSize = readU16(s, "deviceSize");
    if (deviceSize > LIMITS.maxDeviceState) throw new ProtocolError("too-large", `deviceSize ${deviceSize}`);
    const committedEpoch = readU64(s, "committedEpoch");
    const nonce = readBytes(s, NONCE_SIZE, "nonce");
    const nodeId = readBytes(s, NODE_ID_SIZE, "nodeId");
    const software = readString(s, 1, LIMITS.maxSoftware, "software");
    return {
      type: "hello",
      role: role as RoleCode,
      flags,
      generation,
      pageSize,
      pages,
      diskBlockSize,
      diskBlocks,
      vcpuSize,
      deviceSize,
      committedEpoch,
      nonce,
      nodeId,
      software,
    };
  },
};

const auth: BodyCodec<Auth> = {
  preencode(s) {
    s.end += MAC_SIZE;
  },
  encode(s, r) {
    writeFixed(s, r.mac, MAC_SIZE, "mac");
  },
  decode(s) {
    return { type: "auth", mac: readBytes(s, MAC_SIZE, "mac") };
  },
};

const syncBegin: BodyCodec<SyncBegin> = {
  preencode(s) {
    s.end += 28;
  },
  encode(s, r) {
    checkSyncFlags(r.flags);
    writeU64(s, r.generation, "generation");
    writeU64(s, r.epoch, "epoch");
    writeU32(s, r.pages, "pages");
    writeU32(s, r.diskBlocks, "diskBlocks");
    writeU32(s, r.flags, "flags");
  },
  decode(s, ctx) {
    const generation = readU64(s, "generation");
    const epoch = readU64(s, "epoch");
    const pages = readU32(s, "pages");
    const diskBlocks = readU32(s, "diskBlocks");
    const flags = readU32(s, "flags");
    checkSyncFlags(flags);
    const g = ctx.geometry;
    // Why: a sync for another domain size would overrun or under-fill the backup's memory.
    if (g !== undefined && (pages !== g.pages || diskBlocks !== g.diskBlocks)) {
      throw new ProtocolError(
        "bad-geometry",
        `SYNC_BEGIN ${pages} pages/${diskBlocks} blocks, HELLO said ${g.pages}/${g.diskBlocks}`,
      );
    }
    return { type: "syncBegin", generation, epoch, pages, diskBlocks, flags };
  },
};

function stateCodec<T extends "vcpu" | "device">(type: T): BodyCodec<Extract<Vcpu | Device, { type: T }>> {
  const max = type === "vcpu" ? LIMITS.maxVcpuState : LIMITS.maxDeviceState;
  return {
    preencode(s, r) {
      if (r.state.length > max)
        throw new ProtocolError("too-large", `${type} state of ${r.state.length} bytes`);
      s.end += 10 + r.state.length;
    },
    encode(s, r) {
      writeU64(s, r.epoch, "epoch");
      writeU16(s, r.state.length, "len");
      s.buf.set(r.state, s.start);
      s.start += r.state.length;
    },
    decode(s, ctx) {
      const epoch = readU64(s, "epoch");
      const len = readU16(s, "len");
      if (len > max) throw new ProtocolError("too-large", `${type} state of ${len} bytes, limit ${max}`);
      const g = ctx.geometry;
      if (type === "vcpu" && g?.vcpuSize !== undefined && len !== g.vcpuSize) {
        throw new ProtocolError("bad-geometry", `VCPU state of ${len} bytes, HELLO said ${g.vcpuSize}`);
      }
      if (type === "device" && g?.deviceSize !== undefined && len > g.deviceSize) {
        throw new ProtocolError(
          "bad-geometry",
          `DEVICE state of ${len} bytes, HELLO said at most ${g.deviceSize}`,
        );
      }
      const state = readBytes(s, len, "state");
      return { type, epoch, state } as unknown as Extract<Vcpu | Device, { type: T }>;
    },
  };
}

/** Body size of CHECKPOINT_END. */
export const CHECKPOINT_END_SIZE = 76;

const checkpointEnd: BodyCodec<CheckpointEnd> = {
  preencode(s) {
    s.end += CHECKPOINT_END_SIZE;
  },
  encode(s, r) {
    checkEndFlags(r.flags, r.digest);
    writeU64(s, r.epoch, "epoch");
    writeU64(s, r.generation, "generation");
    writeU32(s, r.flags, "flags");
    writeU32(s, r.pageCount, "pageCount");
    writeU32(s, r.diskWriteCount, "diskWriteCount");
    writeU32(s, r.recordCount, "recordCount");
    writeU32(s, r.streamCrc, "streamCrc");
    writeU64Big(s, r.guestTimeNs, "guestTimeNs");
    writeFixed(s, r.digest, DIGEST_SIZE, "digest");
  },
  decode(s) {
    const epoch = readU64(s, "epoch");
    const generation = readU64(s, "generation");
    const flags = readU32(s, "flags");
    const pageCount = readU32(s, "pageCount");
    const diskWriteCount = readU32(s, "diskWriteCount");
    const recordCount = readU32(s, "recordCount");
    const streamCrc = readU32(s, "streamCrc");
    const guestTimeNs = readU64Big(s, "guestTimeNs");
    const digest = readBytes(s, DIGEST_SIZE, "digest");
    checkEndFlags(flags, digest);
    return {
      type: "checkpointEnd",
      epoch,
      generation,
      flags,
      pageCount,
      diskWriteCount,
      recordCount,
      streamCrc,
      guestTimeNs,
      digest,
    };
  },
};

/** Undefined flag bits must be zero, so that a later version can give them a meaning safely. */
function checkFlags(flags: number, defined: number, what: string): void {
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffff_ffff || (flags & ~defined) !== 0) {
    throw new ProtocolError("bad-value", `${what} flags 0x${flags.toString(16)}`);
  }
}

/** SYNC_BEGIN: defined bits only, and a sync is incremental or a rewind, not both. */
function checkSyncFlags(flags: number): void {
  checkFlags(flags, SYNC_FLAGS_DEFINED, "SYNC_BEGIN");
  if ((flags & SYNC_FLAG.incremental) !== 0 && (flags & SYNC_FLAG.rewind) !== 0)
    throw new ProtocolError("bad-value", "SYNC_BEGIN both INCREMENTAL and REWIND");
}

/** HELLO: defined bits only; an image is valid or offered for a rewind, not both. */
function checkHelloFlags(flags: number): void {
  checkFlags(flags, HELLO_FLAGS_DEFINED, "HELLO");
  if ((flags & HELLO_FLAG.imageValid) !== 0 && (flags & HELLO_FLAG.rewind) !== 0)
    throw new ProtocolError("bad-value", "HELLO both IMAGE_VALID and REWIND");
}

function checkEndFlags(flags: number, digest: Uint8Array): void {
  checkFlags(flags, CHECKPOINT_FLAGS_DEFINED, "CHECKPOINT_END");
  if ((flags & CHECKPOINT_FLAG.hasDigest) === 0 && digest.some((b) => b !== 0)) {
    throw new ProtocolError("bad-value", "digest without HAS_DIGEST");
  }
}

const ack = ackCodec;

const nack: BodyCodec<Nack> = {
  preencode(s, r) {
    s.end += 12 + preencodeString(r.message, LIMITS.maxMessage, "message");
  },
  encode(s, r) {
    writeU64(s, r.epoch, "epoch");
    writeU16(s, r.reason, "reason");
    writeString(s, r.message, 2, "message");
  },
  decode(s) {
    const epoch = readU64(s, "epoch");
    const reason = readU16(s, "reason");
    const message = readString(s, 2, LIMITS.maxMessage, "message");
    return { type: "nack", epoch, reason, message };
  },
};

const PEER_STATES: ReadonlySet<number> = new Set(Object.values(PEER_STATE));

const heartbeat: BodyCodec<Heartbeat> = {
  preencode(s) {
    s.end += 29;
  },
  encode(s, r) {
    if (!PEER_STATES.has(r.state)) throw new ProtocolError("bad-value", `state ${r.state}`);
    writeU32(s, r.pingId, "pingId");
    writeU64(s, r.sentAtUs, "sentAtUs");
    writeU8(s, r.state, "state");
    writeU64(s, r.committedEpoch, "committedEpoch");
    writeU64(s, r.generation, "generation");
  },
  decode(s) {
    const pingId = readU32(s, "pingId");
    const sentAtUs = readU64(s, "sentAtUs");
    const state = readU8(s, "state");
    if (!PEER_STATES.has(state)) throw new ProtocolError("bad-value", `state ${state}`);
    const committedEpoch = readU64(s, "committedEpoch");
    const generation = readU64(s, "generation");
    return { type: "heartbeat", pingId, sentAtUs, state: state as PeerStateCode, committedEpoch, generation };
  },
};

const heartbeatReply: BodyCodec<HeartbeatReply> = {
  preencode(s) {
    s.end += 12;
  },
  encode(s, r) {
    writeU32(s, r.pingId, "pingId");
    writeU64(s, r.sentAtUs, "sentAtUs");
  },
  decode(s) {
    const pingId = readU32(s, "pingId");
    const sentAtUs = readU64(s, "sentAtUs");
    return { type: "heartbeatReply", pingId, sentAtUs };
  },
};

const goodbye: BodyCodec<Goodbye> = {
  preencode(s, r) {
    s.end += 20 + preencodeString(r.message, LIMITS.maxMessage, "message");
  },
  encode(s, r) {
    writeU16(s, r.reason, "reason");
    writeU64(s, r.generation, "generation");
    writeU64(s, r.epoch, "epoch");
    writeString(s, r.message, 2, "message");
  },
  decode(s) {
    const reason = readU16(s, "reason");
    const generation = readU64(s, "generation");
    const epoch = readU64(s, "epoch");
    const message = readString(s, 2, LIMITS.maxMessage, "message");
    return { type: "goodbye", reason, generation, epoch, message };
  },
};

const switchoverRequest: BodyCodec<SwitchoverRequest> = {
  preencode(s) {
    s.end += 8;
  },
  encode(s, r) {
    writeU64(s, r.generation, "generation");
  },
  decode(s) {
    return { type: "switchoverRequest", generation: readU64(s, "generation") };
  },
};

const pageBatch: BodyCodec<Extract<ReplicationRecord, { type: "pageBatch" }>> = {
  preencode: preencodeBatch,
  encode: encodeBatch,
  decode: (s, ctx) =>
    decodeBatch(s, "pageBatch", ctx.geometry, ctx.verifyPages) as Extract<
      ReplicationRecord,
      { type: "pageBatch" }
    >,
};

const diskWrites: BodyCodec<Extract<ReplicationRecord, { type: "diskWrites" }>> = {
  preencode: preencodeBatch,
  encode: encodeBatch,
  decode: (s, ctx) =>
    decodeBatch(s, "diskWrites", ctx.geometry, ctx.verifyPages) as Extract<
      ReplicationRecord,
      { type: "diskWrites" }
    >,
};

/** The body codec of every record type. */
export const BODY_CODECS: {
  [T in ReplicationRecord["type"]]: BodyCodec<Extract<ReplicationRecord, { type: T }>>;
} = {
  hello,
  auth,
  syncBegin,
  pageBatch,
  diskWrites,
  vcpu: stateCodec("vcpu"),
  device: stateCodec("device"),
  checkpointEnd,
  domainConfig,
  ack,
  nack,
  rewind,
  heartbeat,
  heartbeatReply,
  goodbye,
  switchoverRequest,
  coloStart,
  coloInput,
  coloOutput,
  coloCheckpoint,
  coloDirty,
};

/** Decodes a whole body of the given type; the body must be consumed exactly. */
export function decodeBody(
  type: ReplicationRecord["type"],
  s: WireState,
  ctx: BodyContext,
): ReplicationRecord {
  const r = BODY_CODECS[type].decode(s, ctx);
  expectEnd(s, type);
  return r;
}
