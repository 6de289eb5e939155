/**
 * The replication link over WebSockets (the `ws` package): one record per
 * binary message, no permessage-deflate (pages are LZ4-compressed already and
 * deflate runs at a few tens of MB/s), `maxPayload` set to the protocol's
 * largest frame so an oversized message is refused by ws before it is
 * buffered. This file only adapts sockets to the `Port` interface; everything
 * about the protocol is in src/replication.
 */
import type { IncomingMessage } from "node:http";
import { WebSocket, WebSocketServer } from "ws";
import { LIMITS } from "../protocol/constants.js";
import type { Port } from "../replication/conn.js";

export interface LinkHandler {
  opened(port: Port): void;
  frame(port: Port, data: Buffer): void;
  closed(port: Port, reason: string): void;
}

/** How long a closed connection waits for the peer's side of the close handshake before a reset. */
const CLOSE_HANDSHAKE_MS = 30_000;

/** WebSocket close reasons are limited to 123 bytes. */
function shortReason(r: string): string {
  const b = Buffer.from(r, "utf8");
  return b.length <= 120 ? r : `${b.subarray(0, 117).toString("utf8")}...`;
}

class WsPort implements Port {
  private closedReason: string | undefined;
  constructor(
    readonly ws: WebSocket,
    readonly remote: string,
  ) {}
  send(frame: Buffer): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(frame, { binary: true });
  }
  close(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(4000, shortReason(reason));
      // A peer that never answers the close handshake must not keep the socket forever; but a
      // frozen peer (SIGSTOP, a paused VM) must still find our last frame (a FENCED claim) when it
      // wakes: a reset would make its kernel drop what it had not read yet.
      setTimeout(() => this.ws.terminate(), CLOSE_HANDSHAKE_MS).unref();
    }
  }
  get buffered(): number {
    return this.ws.bufferedAmount;
  }
}

/**
 * Tears a connection down at once, without a close handshake: what the other
 * side sees after a cut cable or a firewall reset (fault injection).
 */
export function cutPort(port: Port): void {
  if (port instanceof WsPort) port.ws.terminate();
  else port.close("cut");
}

function wire(ws: WebSocket, remote: string, h: LinkHandler): WsPort {
  const port = new WsPort(ws, remote);
  let done = false;
  const finish = (reason: string) => {
    if (done) return;
    done = true;
    h.closed(port, reason);
  };
  ws.on("message", (data, isBinary) => {
    if (done) return;
    if (!isBinary) {
      port.close("text messages are not part of the replication protocol");
      finish("peer sent a text message");
      return;
    }
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    h.frame(port, buf);
  });
  ws.on("close", (code, reason) =>
    finish(`connection closed (${code}${reason.length ? `: ${reason.toString()}` : ""})`),
  );
  ws.on("error", (err) => finish(`connection error: ${err.message}`));
  return port;
}

export interface ListenOptions {
  readonly host: string;
  readonly port: number;
}

/** Listens for replication connections. Resolves once bound; `address()` tells the real port. */
export async function listenReplication(
  opts: ListenOptions,
  h: LinkHandler,
): Promise<{ server: WebSocketServer; port: number; close(): Promise<void> }> {
  const server = new WebSocketServer({
    host: opts.host,
    port: opts.port,
    maxPayload: LIMITS.maxFrame,
    perMessageDeflate: false,
    clientTracking: true,
  });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  server.on("connection", (ws: WebSocket, req: IncomingMessage) => {
    const remote = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
    const port = wire(ws, remote, h);
    h.opened(port);
  });
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? addr.port : opts.port;
  return {
    server,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of server.clients) c.terminate();
        server.close(() => resolve());
      }),
  };
}

/**
 * Keeps one outgoing replication connection to `url`, reconnecting with
 * exponential backoff (100 ms doubling to 5 s, with jitter) while `wanted()`.
 */
export class Dialer {
  private ws: WebSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private delay = 100;
  private stopped = false;
  attempts = 0;

  constructor(
    readonly url: string,
    private readonly h: LinkHandler,
    private readonly wanted: () => boolean,
    /** Uniform [0, 1) for the backoff's jitter. */
    private readonly random: () => number = Math.random,
  ) {}

  /** Connects now if wanted and idle. */
  kick(): void {
    if (this.stopped || this.ws || this.timer || !this.wanted()) return;
    this.attempts++;
    const ws = new WebSocket(this.url, {
      maxPayload: LIMITS.maxFrame,
      perMessageDeflate: false,
      // A zero mask: ws then sends frames as they are instead of copying every byte to mask it.
      // Masking protects web proxies' caches from script-made traffic; this link is daemon to
      // daemon, authenticated and checksummed, and masking was a tenth of the primary's thread.
      generateMask: (mask: Buffer) => {
        mask.fill(0);
      },
      handshakeTimeout: 5000,
    });
    this.ws = ws;
    const port = wire(ws, this.url, {
      opened: () => {},
      frame: (p, d) => this.h.frame(p, d),
      closed: (p, reason) => {
        if (this.ws === ws) this.ws = undefined;
        if (opened) this.h.closed(p, reason);
        this.schedule();
      },
    });
    let opened = false;
    ws.on("open", () => {
      opened = true;
      this.delay = 100;
      this.h.opened(port);
    });
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    const wait = this.delay * (0.75 + this.random() * 0.5);
    this.delay = Math.min(5000, this.delay * 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, wait);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.terminate();
  }
}
