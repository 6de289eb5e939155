/**
 * Host-side addresses given in configuration: `HOST:PORT` of the daemons'
 * sockets and the vswitch, and the MAC and IPv4 addresses of a guest NIC or a
 * client. Malformed input is a `REMUSD_ERR_BAD_USAGE` error that names the
 * option it came from (`what`). The byte-level MAC/IPv4 parsers are those of
 * `wire.ts`.
 */
import { RemusError } from "../errors.js";
import { parseIpv4, parseMac } from "./wire.js";

/** A socket address: a host name or address and a port. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const usage = (message: string, cause?: unknown): RemusError =>
  new RemusError("REMUSD_ERR_BAD_USAGE", message, cause === undefined ? undefined : { cause });

/** `HOST:PORT` (`[v6]:PORT`, or `:PORT` for every interface) as a `HostPort`. */
export function parseHostPort(v: string, what = "address"): HostPort {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(v.trim());
  if (!m) throw usage(`${what} must be HOST:PORT, got '${v}'`);
  const port = Number(m[2]);
  if (port > 65535) throw usage(`${what}: port ${port} is above 65535`);
  const host = (m[1] as string).replace(/^\[|\]$/g, "") || "0.0.0.0";
  return { host, port };
}

/** A MAC address option (aa:bb:cc:dd:ee:ff) as 6 bytes. */
export function parseMacOption(s: string, what: string): Uint8Array {
  try {
    return parseMac(s);
  } catch (e) {
    throw usage(`${what}: bad MAC address '${s}' (want aa:bb:cc:dd:ee:ff)`, e);
  }
}

/** An IPv4 address option as a u32. */
export function parseIpOption(s: string, what: string): number {
  try {
    return parseIpv4(s);
  } catch (e) {
    throw usage(`${what}: bad IPv4 address '${s}'`, e);
  }
}
