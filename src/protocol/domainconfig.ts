/**
 * DOMAIN_CONFIG (proto/SPEC.md §6.16): the domain's geometry and settings,
 * sent by the primary before its first SYNC_BEGIN of a session, so that a
 * backup started with only its own addresses and the key can hold the domain.
 * Pure codec; what a backup does with it is src/replication/backup.ts.
 */
import type { BodyCodec } from "./bodies.js";
import { DOMAIN_CONFIG_INTERVAL, MAX_WORKLOAD_SPEC } from "./constants.js";
import { ProtocolError } from "./errors.js";
import type { DomainConfig } from "./records.js";
import {
  preencodeString,
  readBytes,
  readString,
  readU16,
  readU32,
  type WireState,
  writeFixed,
  writeString,
  writeU16,
  writeU32,
} from "./wire.js";

/** Bytes of a DOMAIN_CONFIG body before the workload string. */
export const DOMAIN_CONFIG_FIXED_SIZE = 26;

function checkInterval(ms: number): void {
  if (!Number.isInteger(ms) || ms < DOMAIN_CONFIG_INTERVAL.min || ms > DOMAIN_CONFIG_INTERVAL.max) {
    throw new ProtocolError("bad-value", `DOMAIN_CONFIG intervalMs ${ms}`);
  }
}

export const domainConfig: BodyCodec<DomainConfig> = {
  preencode(s, r) {
    s.end += DOMAIN_CONFIG_FIXED_SIZE + preencodeString(r.workload, MAX_WORKLOAD_SPEC, "workload");
  },
  encode(s, r) {
    checkInterval(r.intervalMs);
    writeU32(s, r.pages, "pages");
    writeU32(s, r.diskBlocks, "diskBlocks");
    writeU32(s, r.intervalMs, "intervalMs");
    writeFixed(s, r.guestMac, 6, "guestMac");
    writeU16(s, 0, "reserved");
    writeU32(s, r.guestIp, "guestIp");
    writeString(s, r.workload, 2, "workload");
  },
  decode(s: WireState, ctx) {
    const pages = readU32(s, "pages");
    const diskBlocks = readU32(s, "diskBlocks");
    const g = ctx.geometry;
    // Why: the configuration describes the domain the HELLO announced, never another one.
    if (g !== undefined && (pages !== g.pages || diskBlocks !== g.diskBlocks)) {
      throw new ProtocolError(
        "bad-geometry",
        `DOMAIN_CONFIG ${pages} pages/${diskBlocks} blocks, HELLO said ${g.pages}/${g.diskBlocks}`,
      );
    }
    const intervalMs = readU32(s, "intervalMs");
    checkInterval(intervalMs);
    const guestMac = readBytes(s, 6, "guestMac");
    const reserved = readU16(s, "reserved");
    if (reserved !== 0) throw new ProtocolError("bad-value", `DOMAIN_CONFIG reserved ${reserved}`);
    const guestIp = readU32(s, "guestIp");
    const workload = readString(s, 2, MAX_WORKLOAD_SPEC, "workload");
    return { type: "domainConfig", pages, diskBlocks, intervalMs, guestMac, guestIp, workload };
  },
};
