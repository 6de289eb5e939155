/** Frame builders for the COLO tests: TCP segments of a guest connection, UDP, ICMP and ARP. */
import {
  ETHERTYPE,
  encodeEth,
  encodeIcmpEcho,
  encodeIpv4,
  IP_FLAG,
  IP_PROTO,
  TCP_FLAG,
} from "../../src/net/wire.js";
import { arpFrame, tcpFrame } from "../net/frames.js";

export const GUEST_MAC = Buffer.from([2, 0, 0, 0, 0, 0x10]);
export const CLIENT_MAC = Buffer.from([2, 0, 0, 0, 1, 0]);
export const GUEST_IP = 0x0a00000a;
export const CLIENT_IP = 0x0a000064;
export const GUEST_PORT = 6379;
export const CLIENT_PORT = 40000;

export { TCP_FLAG };

/** A segment the guest sends to the client. */
export function out(
  seq: number,
  payload: Uint8Array,
  flags: number = TCP_FLAG.ACK,
  ack = 1000,
  o: { ipId?: number; window?: number; port?: number } = {},
): Buffer {
  return tcpFrame({
    dstMac: CLIENT_MAC,
    srcMac: GUEST_MAC,
    src: GUEST_IP,
    dst: CLIENT_IP,
    sport: GUEST_PORT,
    dport: o.port ?? CLIENT_PORT,
    seq: seq >>> 0,
    ack: ack >>> 0,
    flags,
    payload,
    ...(o.ipId !== undefined ? { ipId: o.ipId } : {}),
    ...(o.window !== undefined ? { window: o.window } : {}),
  });
}

/** A segment the client sends to the guest. */
export function inb(
  seq: number,
  ack: number,
  flags: number,
  payload: Uint8Array = new Uint8Array(0),
  o: { port?: number } = {},
): Buffer {
  return tcpFrame({
    dstMac: GUEST_MAC,
    srcMac: CLIENT_MAC,
    src: CLIENT_IP,
    dst: GUEST_IP,
    sport: o.port ?? CLIENT_PORT,
    dport: GUEST_PORT,
    seq: seq >>> 0,
    ack: ack >>> 0,
    flags,
    payload,
  });
}

function ipFrame(protocol: number, l4: Buffer, o: { ttl?: number; id?: number } = {}): Buffer {
  const f = Buffer.alloc(34 + l4.length);
  encodeEth({ dst: CLIENT_MAC, src: GUEST_MAC, type: ETHERTYPE.IPV4 }, f, 0);
  l4.copy(f, 34);
  encodeIpv4(
    {
      tos: 0,
      totalLength: 20 + l4.length,
      id: o.id ?? 7,
      fragment: IP_FLAG.DF,
      ttl: o.ttl ?? 64,
      protocol,
      checksum: 0,
      src: GUEST_IP,
      dst: CLIENT_IP,
      headerLength: 20,
    },
    f,
    14,
  );
  return f;
}

/** A UDP datagram from the guest (checksum 0: none). */
export function udp(payload: Uint8Array, o: { ttl?: number; id?: number; sport?: number } = {}): Buffer {
  const l4 = Buffer.alloc(8 + payload.length);
  l4.writeUInt16BE(o.sport ?? 53, 0);
  l4.writeUInt16BE(5353, 2);
  l4.writeUInt16BE(l4.length, 4);
  l4.set(payload, 8);
  return ipFrame(17, l4, o);
}

/** An ICMP echo reply from the guest. */
export function icmpEcho(
  id: number,
  seq: number,
  data: Uint8Array,
  o: { ttl?: number; ipId?: number } = {},
): Buffer {
  const l4 = Buffer.alloc(8 + data.length);
  l4.set(data, 8);
  encodeIcmpEcho({ type: 0, code: 0, checksum: 0, id, seq }, l4, 0, l4.length);
  return ipFrame(IP_PROTO.ICMP, l4, { ...(o.ttl !== undefined ? { ttl: o.ttl } : {}), id: o.ipId ?? 9 });
}

/** An ARP reply from the guest. */
export function arpReply(tha: Uint8Array = CLIENT_MAC): Buffer {
  return arpFrame(2, GUEST_MAC, CLIENT_MAC, GUEST_MAC, GUEST_IP, tha, CLIENT_IP);
}
