/**
 * The handshake's cryptography and checks (proto/SPEC.md §5): the AUTH MAC,
 * the session tag, and the compatibility rules for a peer's HELLO.
 *
 * With `--insecure` the key is the empty buffer: every MAC is then computable
 * by anyone, so AUTH proves nothing; it still catches crossed connections.
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import {
  GOODBYE_REASON,
  HELLO_FLAG,
  MAC_SIZE,
  NONCE_SIZE,
  PAGE_SIZE,
  ROLE,
  type RoleCode,
} from "./constants.js";
import type { Geometry, Hello } from "./records.js";

const AUTH_LABEL = Buffer.from("remusd-auth-v1\0", "latin1");
const SESSION_LABEL = Buffer.from("remusd-session-v1\0", "latin1");

/** The key used with `--insecure`: empty, so it authenticates nothing. */
export const INSECURE_KEY: Buffer = Buffer.alloc(0);

/**
 * The MAC a side sends in AUTH: HMAC-SHA256(key, "remusd-auth-v1\0" ‖ senderRole
 * ‖ sender's HELLO body ‖ receiver's HELLO body). Both bodies carry a fresh
 * nonce, so a MAC from another connection never verifies. The bodies are the
 * exact bytes on the wire (`frameBody` or `encodeHelloBody`); each is
 * self-delimiting, so the concatenation is unambiguous.
 */
export function computeAuthMac(
  key: Uint8Array,
  senderRole: RoleCode,
  senderHelloBody: Uint8Array,
  receiverHelloBody: Uint8Array,
): Buffer {
  return createHmac("sha256", key)
    .update(AUTH_LABEL)
    .update(Uint8Array.of(senderRole))
    .update(senderHelloBody)
    .update(receiverHelloBody)
    .digest();
}

/** Checks a peer's AUTH MAC in constant time. `peerRole` and `peerHelloBody` are the sender's. */
export function verifyAuthMac(
  key: Uint8Array,
  peerRole: RoleCode,
  peerHelloBody: Uint8Array,
  ownHelloBody: Uint8Array,
  mac: Uint8Array,
): boolean {
  if (mac.length !== MAC_SIZE) return false;
  return timingSafeEqual(computeAuthMac(key, peerRole, peerHelloBody, ownHelloBody), mac);
}

/**
 * The session tag both sides put in every frame after their AUTH: the first
 * four bytes, as a u32 LE, of HMAC-SHA256(key, "remusd-session-v1\0" ‖
 * primaryNonce ‖ backupNonce). Never 0, which marks the handshake: 0 maps to 1.
 */
export function sessionTag(key: Uint8Array, primaryNonce: Uint8Array, backupNonce: Uint8Array): number {
  if (primaryNonce.length !== NONCE_SIZE || backupNonce.length !== NONCE_SIZE) {
    throw new RangeError("sessionTag: nonces must be 32 bytes");
  }
  const tag = createHmac("sha256", key)
    .update(SESSION_LABEL)
    .update(primaryNonce)
    .update(backupNonce)
    .digest()
    .readUInt32LE(0);
  return tag === 0 ? 1 : tag;
}

/** The decode bounds a HELLO announces. */
export function geometryOf(hello: Hello): Geometry {
  return {
    pages: hello.pages,
    diskBlocks: hello.diskBlocks,
    vcpuSize: hello.vcpuSize,
    deviceSize: hello.deviceSize,
  };
}

/** Why a handshake must end: the GOODBYE to send. */
export interface HelloRejection {
  reason: (typeof GOODBYE_REASON)[keyof typeof GOODBYE_REASON];
  message: string;
}

/**
 * Applies SPEC §5.3 to a peer's HELLO before AUTH: roles that can pair
 * (a primary and a backup, or two primaries, whose generations are compared
 * only once both are authenticated, §5.5) and identical geometry. Nothing
 * else is judged here: a HELLO is not authenticated yet, so what it says
 * about generations must wait for AUTH. Returns the GOODBYE to send, or null
 * when the handshake may go on.
 */
const GEOMETRY_FIELDS = ["pages", "diskBlocks", "vcpuSize", "deviceSize"] as const;

export function checkPeerHello(own: Hello, peer: Hello): HelloRejection | null {
  if (own.role === ROLE.backup && peer.role === ROLE.backup) {
    return { reason: GOODBYE_REASON.protocolError, message: "both sides are backup" };
  }
  for (const h of [own, peer]) {
    if (h.pageSize !== PAGE_SIZE || h.diskBlockSize !== PAGE_SIZE) {
      return {
        reason: GOODBYE_REASON.geometryMismatch,
        message: `page/block size ${h.pageSize}/${h.diskBlockSize}`,
      };
    }
    if (h.pages === 0) return { reason: GOODBYE_REASON.geometryMismatch, message: "a domain of zero pages" };
  }
  // Why: a backup that adopts the domain judges pages and blocks against DOMAIN_CONFIG after AUTH,
  // where a conflict is an authenticated member's word (§5.3); a stranger's HELLO decides nothing.
  const backup = own.role === ROLE.backup ? own : peer;
  const adopts = (backup.flags & HELLO_FLAG.adopt) !== 0;
  const compared = adopts ? (["vcpuSize", "deviceSize"] as const) : GEOMETRY_FIELDS;
  for (const k of compared) {
    if (own[k] !== peer[k]) {
      return { reason: GOODBYE_REASON.geometryMismatch, message: `${k}: ours ${own[k]}, peer's ${peer[k]}` };
    }
  }
  return null;
}

/**
 * The nonces in the order the session tag takes them (§5.4): the primary's
 * first; between two primaries (who meet only to settle which one is stale),
 * the smaller first, so that both compute the same tag.
 */
export function sessionNonces(own: Hello, peer: Hello): [Uint8Array, Uint8Array] {
  if (own.role !== peer.role)
    return own.role === ROLE.primary ? [own.nonce, peer.nonce] : [peer.nonce, own.nonce];
  return Buffer.compare(own.nonce, peer.nonce) <= 0 ? [own.nonce, peer.nonce] : [peer.nonce, own.nonce];
}
