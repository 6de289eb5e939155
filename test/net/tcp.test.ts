/**
 * TCP behaviour between two stacks on a simulated, seeded LAN: handshakes,
 * transfer under loss/duplication/reordering, flow control, closing, resets,
 * retransmission timing, fast retransmit, reassembly and NIC backpressure.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NetConfig } from "../../src/net/stack.js";
import { parseIpv4, TCP_FLAG } from "../../src/net/wire.js";
import { parseTcp, tcpFrame } from "./frames.js";
import { establish, type Host, Receiver, Sender, TcpWorld } from "./sim.js";

function pair(
  seed: number,
  cfgA: Partial<NetConfig> = {},
  cfgB: Partial<NetConfig> = cfgA,
): [TcpWorld, Host, Host] {
  const w = new TcpWorld(seed);
  const a = w.addHost("a", "10.0.0.1", cfgA);
  const b = w.addHost("b", "10.0.0.2", cfgB);
  return [w, a, b];
}

/** Data segments (payload > 0) a host sent, in order. */
function dataSegments(h: Host): { at: number; seq: number; len: number }[] {
  const out: { at: number; seq: number; len: number }[] = [];
  for (const { at, frame } of h.sent) {
    const p = parseTcp(frame);
    if (p && p.payload.length > 0) out.push({ at, seq: p.tcp.seq, len: p.payload.length });
  }
  return out;
}

function transfer(
  w: TcpWorld,
  from: Host,
  fs: number,
  to: Host,
  ts: number,
  data: Uint8Array,
  maxMs = 600_000,
): Receiver {
  const snd = new Sender(from, fs, data, true);
  const rcv = new Receiver(to, ts);
  w.apps.push(snd.pump, rcv.pump);
  const ok = w.run(() => rcv.eof, maxMs);
  assert.ok(ok, `transfer did not finish: ${rcv.length}/${data.length} bytes by t=${w.now}`);
  assert.equal(rcv.length, data.length);
  assert.ok(rcv.data().equals(data), "received bytes differ");
  return rcv;
}

describe("handshake", () => {
  it("active open from either side; data both ways; options negotiated", () => {
    const [w, a, b] = pair(1);
    const [c1, s1] = establish(w, a, b, 80);
    const [c2, s2] = establish(w, b, a, 8080);
    for (const [h, s] of [
      [a, c1],
      [b, s1],
      [b, c2],
      [a, s2],
    ] as const) {
      assert.equal(h.stack.state(s), "ESTABLISHED");
      assert.equal(h.stack.info(s).sndMss, 1460);
    }
    assert.equal(a.stack.info(c1).remotePort, 80);
    assert.ok(a.stack.info(c1).localPort >= 49152);
    // The window in the SYN-ACK is unscaled (at most 65535); later ones are scaled.
    assert.equal(a.stack.info(c1).sndWnd, 65535);
    assert.equal(b.stack.info(s1).sndWnd, 65536, "window scaling in effect (32768 << 1)");
    assert.equal(a.stack.send(c1, Buffer.from("ping")), 4);
    assert.equal(a.stack.send(s2, Buffer.from("pong")), 4);
    assert.ok(w.run(() => b.stack.recvAvailable(s1) === 4 && b.stack.recvAvailable(c2) === 4));
    assert.equal(b.stack.recv(s1)?.toString(), "ping");
    assert.equal(b.stack.recv(c2)?.toString(), "pong");
    b.stack.send(s1, Buffer.from("ack me"));
    assert.ok(w.run(() => a.stack.recvAvailable(c1) === 6));
    const wnd = a.stack.info(c1).sndWnd;
    assert.ok(wnd > 60000 && wnd % 2 === 0, `scaled window after the handshake (${wnd})`);
    assert.equal(a.stack.stats().tcpActiveOpens, 1);
    assert.equal(a.stack.stats().tcpPassiveOpens, 1);
  });

  it("simultaneous open (RFC 9293 figure 7) reaches ESTABLISHED on both sides", () => {
    const [w, a, b] = pair(2);
    // Resolve ARP first so the two SYNs really cross.
    a.stack.announce();
    b.stack.announce();
    const pa = a.stack.connect(b.ip, 6000, 5000);
    const pb0 = b.stack.connect(a.ip, 5000, 6000);
    w.run(() => a.stack.state(pa) !== "SYN_SENT" && b.stack.state(pb0) !== "SYN_SENT", 10_000);
    assert.ok(
      w.run(() => a.stack.state(pa) === "ESTABLISHED" && b.stack.state(pb0) === "ESTABLISHED", 10_000),
    );
    a.stack.send(pa, Buffer.from("x".repeat(3000)));
    assert.ok(w.run(() => b.stack.recvAvailable(pb0) === 3000));
    assert.equal(a.stack.stats().tcpResetsSent + b.stack.stats().tcpResetsSent, 0);
  });

  it("data sent before the handshake completes is delivered", () => {
    const [w, a, b] = pair(3);
    const l = b.stack.listen(7);
    const c = a.stack.connect(b.ip, 7);
    assert.equal(a.stack.state(c), "SYN_SENT");
    assert.equal(a.stack.send(c, Buffer.from("early bird")), 10);
    let s = 0;
    assert.ok(w.run(() => (s ||= b.stack.accept(l)) !== 0 && b.stack.recvAvailable(s) === 10));
    assert.equal(b.stack.recv(s)?.toString(), "early bird");
  });

  it("a smaller peer MSS limits the segments we send", () => {
    const [w, a, b] = pair(4, {}, { mss: 536 });
    const [c, s] = establish(w, a, b, 80);
    a.recordSent = true;
    const data = w.rng.bytes(20_000);
    transfer(w, a, c, b, s, data);
    const segs = dataSegments(a);
    assert.ok(segs.length >= 20_000 / 536);
    assert.ok(segs.every((x) => x.len <= 536));
    assert.ok(segs.some((x) => x.len === 536));
  });

  it("backlog: SYNs beyond it are dropped, and the clients get in once the queue drains", () => {
    const [w, a, b] = pair(5);
    const l = b.stack.listen(80, 2);
    const cs = [0, 1, 2, 3].map(() => a.stack.connect(b.ip, 80));
    w.runFor(500);
    assert.ok(b.stack.stats().tcpListenDrops >= 2);
    const accepted: number[] = [];
    w.apps.push(() => {
      for (let s = b.stack.accept(l); s !== 0; s = b.stack.accept(l)) accepted.push(s);
    });
    assert.ok(
      w.run(() => accepted.length === 4 && cs.every((c) => a.stack.state(c) === "ESTABLISHED"), 30_000),
    );
  });
});

describe("data transfer", () => {
  for (const seed of [11, 12, 13]) {
    it(`1 MiB over a lossy, duplicating, reordering link arrives exactly (seed ${seed})`, () => {
      const [w, a, b] = pair(seed);
      const [c, s] = establish(w, a, b, 80);
      w.segment.delay(2, 4).drop(0.03).duplicate(0.02);
      transfer(w, a, c, b, s, w.rng.bytes(1 << 20));
      const sa = a.stack.stats();
      const sb = b.stack.stats();
      assert.ok(sa.tcpRetransmits > 0);
      assert.ok(sb.tcpOooSegments > 0);
      assert.ok(w.dropped > 0);
    });
  }

  it("both directions at once, with loss", () => {
    const [w, a, b] = pair(21);
    const [c, s] = establish(w, a, b, 80);
    w.segment.delay(1, 2).drop(0.02).duplicate(0);
    const d1 = w.rng.bytes(300_000);
    const d2 = w.rng.bytes(200_000);
    const s1 = new Sender(a, c, d1, true);
    const r1 = new Receiver(b, s);
    const s2 = new Sender(b, s, d2, true);
    const r2 = new Receiver(a, c);
    w.apps.push(s1.pump, r1.pump, s2.pump, r2.pump);
    assert.ok(w.run(() => r1.eof && r2.eof));
    assert.ok(r1.data().equals(d1));
    assert.ok(r2.data().equals(d2));
  });

  it("40 concurrent connections with loss each deliver their bytes", () => {
    const [w, a, b] = pair(22, { rcvBuf: 16384, sndBuf: 16384 });
    const l = b.stack.listen(80, 64);
    w.segment.delay(1, 3).drop(0.02).duplicate(0.01);
    const sent = new Map<number, Buffer>();
    const rcvs: Receiver[] = [];
    for (let i = 0; i < 40; i++) {
      const c = a.stack.connect(b.ip, 80);
      const d = Buffer.alloc(8000 + i * 100, i + 1);
      d.writeUInt32BE(i, 0);
      w.apps.push(new Sender(a, c, d, true).pump);
      sent.set(i, d);
    }
    w.apps.push(() => {
      for (let s = b.stack.accept(l); s !== 0; s = b.stack.accept(l)) {
        const r = new Receiver(b, s);
        rcvs.push(r);
        w.apps.push(r.pump);
      }
    });
    assert.ok(w.run(() => rcvs.length === 40 && rcvs.every((r) => r.eof), 120_000));
    for (const r of rcvs) {
      const d = r.data();
      assert.ok(d.equals(sent.get(d.readUInt32BE(0)) as Buffer));
    }
  });

  it("out-of-order segments are queued and reassembled", () => {
    const [w, a, b] = pair(23);
    const [c, s] = establish(w, a, b, 80);
    // Heavy jitter: segments overtake each other all the time, nothing is lost.
    w.segment.delay(1, 25).drop(0).duplicate(0);
    transfer(w, a, c, b, s, w.rng.bytes(200_000));
    assert.ok(b.stack.stats().tcpOooSegments > 20);
  });

  it("a hole is filled by one retransmission and the queued segments behind it are delivered at once", () => {
    const [w, a, b] = pair(24, { ackDelayMs: 0 });
    const [c, s] = establish(w, a, b, 80);
    let n = 0;
    w.segment.dropIf(({ from, frame }) => {
      const p = parseTcp(frame);
      return from === a && p !== null && p.payload.length > 0 && ++n === 2; // lose the second data segment once
    });
    const rcv = new Receiver(b, s);
    w.apps.push(rcv.pump);
    const data = w.rng.bytes(8 * 1460);
    a.stack.send(c, data);
    w.runFor(1);
    assert.equal(rcv.length, 1460, "only the first segment is readable");
    assert.ok(b.stack.stats().tcpOooSegments >= 5);
    assert.ok(w.run(() => rcv.length === data.length, 5_000));
    assert.ok(rcv.data().equals(data));
  });
});

describe("flow control", () => {
  it("window exhaustion: the sender stalls, probes the zero window with backoff, and resumes exactly", () => {
    const [w, a, b] = pair(31, {}, { rcvBuf: 16384 });
    const [c, s] = establish(w, a, b, 80);
    a.recordSent = true;
    const data = w.rng.bytes(200_000);
    const snd = new Sender(a, c, data, true);
    const rcv = new Receiver(b, s);
    rcv.reading = false;
    w.apps.push(snd.pump, rcv.pump);
    w.runFor(30_000);
    assert.equal(b.stack.recvAvailable(s), 16384, "receiver buffer full");
    assert.equal(a.stack.info(c).sndWnd, 0);
    const probes = a.stack.stats().tcpPersistProbes;
    assert.ok(probes >= 5 && probes <= 12, `persist probes back off (got ${probes})`);
    // Probes carry an old sequence number and no data.
    const una = a.stack.info(c).sndUna;
    const probeFrames = a.sent
      .map((x) => parseTcp(x.frame))
      .filter((p) => p && p.tcp.seq === (una - 1) >>> 0);
    assert.ok(probeFrames.length >= 5);
    assert.ok(probeFrames.every((p) => p?.payload.length === 0));
    // Resume reading; lose the receiver's first window updates too, so only a probe can find them.
    let lost = 0;
    w.segment.dropIf(({ from }) => from === b && lost++ < 3);
    rcv.reading = true;
    assert.ok(w.run(() => rcv.eof, 600_000));
    assert.ok(rcv.data().equals(data));
  });

  it("a slow reader paces a fast writer without loss (receiver SWS: window updates come in big steps)", () => {
    const [w, a, b] = pair(32, {}, { rcvBuf: 8192 });
    const [c, s] = establish(w, a, b, 80);
    const data = w.rng.bytes(100_000);
    const snd = new Sender(a, c, data, true);
    let got = Buffer.alloc(0);
    let eof = false;
    w.apps.push(snd.pump);
    // Read 100 bytes every 5 ms.
    const tick = (): void => {
      const r = b.stack.recv(s, 100);
      if (r) got = Buffer.concat([got, r]);
      if (b.stack.eof(s)) eof = true;
      w.wakeAt(w.now + 5);
    };
    w.apps.push(tick);
    w.wakeAt(0);
    b.recordSent = true;
    assert.ok(w.run(() => eof, 2_000_000));
    assert.ok(got.equals(data));
    // The right edge b advertises (ack + window) never moves left and never creeps
    // forward by less than min(rcvBuf/2, MSS) = 1460 bytes.
    let edge = -1;
    let steps = 0;
    for (const x of b.sent) {
      const p = parseTcp(x.frame);
      if (!p || !(p.tcp.flags & TCP_FLAG.ACK) || p.tcp.flags & TCP_FLAG.SYN) continue;
      const e = p.tcp.ack + p.tcp.window; // no wrap: the test's ISS is far from 2^32 or checked below
      if (edge >= 0 && e !== edge && Math.abs(e - edge) < 2 ** 31) {
        assert.ok(e - edge >= 1460, `edge moved by ${e - edge}`);
        steps++;
      }
      edge = e;
    }
    assert.ok(steps > 20);
  });
});

describe("closing", () => {
  function close(seed: number, who: "client" | "server") {
    const [w, a, b] = pair(seed, { timeWaitMs: 4000 });
    const [c, s, l] = establish(w, a, b, 80);
    const [closer, cs, other, os] = who === "client" ? [a, c, b, s] : [b, s, a, c];
    closer.stack.shutdown(cs);
    assert.equal(closer.stack.state(cs), "FIN_WAIT_1");
    assert.ok(w.run(() => other.stack.eof(os)));
    assert.equal(other.stack.state(os), "CLOSE_WAIT");
    assert.ok(w.run(() => closer.stack.state(cs) === "FIN_WAIT_2"));
    // Half-close: the other side can still send.
    other.stack.send(os, Buffer.from("last words"));
    assert.ok(w.run(() => closer.stack.recvAvailable(cs) === 10));
    assert.equal(closer.stack.recv(cs)?.toString(), "last words");
    other.stack.close(os);
    assert.ok(w.run(() => closer.stack.state(cs) === "TIME_WAIT"));
    assert.ok(closer.stack.eof(cs));
    // The passive closer's TCB went LAST_ACK -> CLOSED and was freed.
    assert.ok(w.run(() => !other.stack.sockets().some((x) => x.id === os)));
    const tw = w.now;
    assert.ok(w.run(() => closer.stack.state(cs) === "CLOSED"));
    assert.ok(w.now - tw >= 3990 && w.now - tw <= 4010, `TIME_WAIT lasted ${w.now - tw} ms`);
    assert.equal(closer.stack.error(cs), null);
    closer.stack.close(cs);
    void l;
    return { a, b };
  }

  it("FIN from the client: FIN_WAIT_1/2, TIME_WAIT for 2MSL; server CLOSE_WAIT, LAST_ACK", () => {
    const { a, b } = close(41, "client");
    assert.equal(a.stack.socketCount, 0);
    assert.equal(b.stack.socketCount, 1, "only the listener");
  });

  it("FIN from the server", () => {
    const { a, b } = close(42, "server");
    assert.equal(a.stack.socketCount, 0);
    assert.equal(b.stack.socketCount, 1);
  });

  it("simultaneous close: both FINs cross, both sides go CLOSING then TIME_WAIT", () => {
    const [w, a, b] = pair(43, { timeWaitMs: 1000 });
    const [c, s] = establish(w, a, b, 80);
    a.recordSent = true;
    b.recordSent = true;
    a.stack.shutdown(c);
    b.stack.shutdown(s);
    const seen = new Set<string>();
    w.apps.push(() => {
      seen.add(`a:${a.stack.state(c)}`);
      seen.add(`b:${b.stack.state(s)}`);
    });
    assert.ok(w.run(() => a.stack.state(c) === "TIME_WAIT" && b.stack.state(s) === "TIME_WAIT"));
    assert.ok(seen.has("a:CLOSING") && seen.has("b:CLOSING"), [...seen].join(","));
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED" && b.stack.state(s) === "CLOSED"));
    a.stack.close(c);
    b.stack.close(s);
    assert.equal(a.stack.socketCount, 0);
  });

  it("close() with data still in flight delivers it all, then FIN; the TCB is freed after TIME_WAIT", () => {
    const [w, a, b] = pair(44, { timeWaitMs: 500 });
    const heapBefore = a.heap.allocations;
    const [c, s] = establish(w, a, b, 80);
    w.segment.delay(1, 2).drop(0.05).duplicate(0);
    const data = w.rng.bytes(50_000);
    assert.equal(a.stack.send(c, data), 50_000);
    a.stack.close(c);
    assert.throws(() => a.stack.state(c));
    const rcv = new Receiver(b, s);
    w.apps.push(rcv.pump);
    assert.ok(w.run(() => rcv.eof));
    assert.ok(rcv.data().equals(data));
    b.stack.close(s);
    assert.ok(w.run(() => a.stack.socketCount === 0 && b.stack.socketCount === 1));
    assert.equal(a.heap.allocations, heapBefore, "every TCB, buffer and queued frame was freed");
  });

  it("close() with unread data resets the connection", () => {
    const [w, a, b] = pair(45);
    const [c, s] = establish(w, a, b, 80);
    a.stack.send(c, Buffer.from("unread"));
    assert.ok(w.run(() => b.stack.recvAvailable(s) === 6));
    b.stack.close(s);
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED"));
    assert.equal(a.stack.error(c), "reset");
  });

  it("data arriving after close() is answered with a RST", () => {
    const [w, a, b] = pair(46);
    const [c, s] = establish(w, a, b, 80);
    b.stack.close(s);
    assert.ok(w.run(() => a.stack.state(c) === "CLOSE_WAIT"));
    a.stack.send(c, Buffer.from("anyone?"));
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED"));
    assert.equal(a.stack.error(c), "reset");
    assert.equal(b.stack.socketCount, 1);
  });
});

describe("connection churn", () => {
  it("300 short request/response connections through a 32-slot table: slots recycle, nothing leaks", () => {
    const [w, a, b] = pair(47, { maxSockets: 32, timeWaitMs: 500, rcvBuf: 4096, sndBuf: 4096 });
    const heapA = a.heap.allocations;
    const l = b.stack.listen(6379, 16);
    const heapB = b.heap.allocations;
    w.segment.delay(1, 2).drop(0.01).duplicate(0);
    let started = 0;
    let finished = 0;
    const clients = new Set<number>();
    const servers = new Set<number>();
    w.apps.push(() => {
      // Server: answer "PING" with "+PONG", close after the client's FIN.
      for (let s = b.stack.accept(l); s !== 0; s = b.stack.accept(l)) servers.add(s);
      for (const s of servers) {
        const r = b.stack.recv(s);
        if (r) assert.equal(b.stack.send(s, Buffer.from(`+PONG ${r.toString()}`)), 6 + r.length);
        if (b.stack.eof(s)) {
          b.stack.close(s);
          servers.delete(s);
        }
      }
      // Clients: at most 8 at a time (the rest of the table holds TIME_WAITs).
      while (started < 300 && clients.size < 8 && a.stack.socketCount < 30) {
        const c = a.stack.connect(b.ip, 6379);
        a.stack.send(c, Buffer.from(`${started++}`));
        clients.add(c);
      }
      for (const c of clients) {
        const r = a.stack.recv(c);
        if (r) {
          assert.match(r.toString(), /^\+PONG \d+$/);
          a.stack.close(c);
          clients.delete(c);
          finished++;
        }
      }
    });
    assert.ok(
      w.run(() => finished === 300, 600_000),
      `${finished} finished`,
    );
    assert.ok(w.run(() => a.stack.socketCount === 0 && b.stack.socketCount === 1, 10_000));
    assert.equal(a.heap.allocations, heapA);
    assert.equal(b.heap.allocations, heapB);
    // Resets only answer stray segments (a delayed ACK overtaken by the FIN exchange reaching a
    // freed connection): no client ever saw its connection reset before its reply.
    assert.equal(a.stack.stats().tcpResetsSent, 0);
    assert.equal(b.stack.stats().tcpResetsSent, b.stack.stats().tcpListenStrayAcks);
  });
});

describe("resets", () => {
  it("a SYN to a closed port is refused with a RST", () => {
    const [w, a, b] = pair(51);
    const c = a.stack.connect(b.ip, 9999);
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED"));
    assert.equal(a.stack.error(c), "refused");
    assert.ok(a.stack.eof(c));
    assert.equal(b.stack.stats().tcpNoSocket, 1);
    assert.equal(b.stack.stats().tcpResetsSent, 1);
    assert.equal(a.stack.stats().tcpResetsReceived, 1);
    assert.equal(a.stack.send(c, Buffer.from("x")), -1);
  });

  it("abort() resets the peer", () => {
    const [w, a, b] = pair(52);
    const [c, s] = establish(w, a, b, 80);
    a.stack.abort(c);
    assert.throws(() => a.stack.state(c));
    assert.ok(w.run(() => b.stack.state(s) === "CLOSED"));
    assert.equal(b.stack.error(s), "reset");
    assert.ok(b.stack.eof(s));
    assert.equal(b.stack.send(s, Buffer.from("x")), -1);
  });

  it("RFC 5961: an in-window RST with the wrong sequence number draws a challenge ACK; an exact one resets", () => {
    const [w, a, b] = pair(53, { ackDelayMs: 0 });
    const [c, s] = establish(w, a, b, 80);
    const ia = a.stack.info(c);
    const spoof = (seq: number, flags: number): void => {
      w.inject(
        b,
        tcpFrame({
          dstMac: b.mac,
          srcMac: a.mac,
          src: a.ip,
          dst: b.ip,
          sport: ia.localPort,
          dport: 80,
          seq,
          ack: ia.rcvNxt,
          flags,
        }),
      );
    };
    spoof((ia.sndNxt + 1000) >>> 0, TCP_FLAG.RST);
    w.runFor(10);
    assert.equal(b.stack.state(s), "ESTABLISHED");
    assert.equal(b.stack.stats().tcpChallengeAcks, 1);
    spoof((ia.sndNxt + 10_000_000) >>> 0, TCP_FLAG.RST); // out of window: silently ignored
    spoof(ia.sndNxt, TCP_FLAG.SYN); // SYN on a synchronized connection: challenge ACK
    w.runFor(10);
    assert.equal(b.stack.state(s), "ESTABLISHED");
    assert.equal(b.stack.stats().tcpChallengeAcks, 2);
    a.stack.send(c, Buffer.from("still here"));
    assert.ok(w.run(() => b.stack.recvAvailable(s) === 10));
    spoof(a.stack.info(c).sndNxt, TCP_FLAG.RST);
    assert.ok(w.run(() => b.stack.state(s) === "CLOSED"));
    assert.equal(b.stack.error(s), "reset");
  });
});

describe("retransmission", () => {
  it("the RTO doubles on each expiry (min RTO 200 ms) up to the limit, then the connection times out", () => {
    const [w, a, b] = pair(61, { maxRetries: 6, maxRtoMs: 60_000 });
    const [c] = establish(w, a, b, 80);
    a.recordSent = true;
    b.up = false; // the peer is gone
    a.stack.send(c, Buffer.from("hello?"));
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED", 600_000));
    assert.equal(a.stack.error(c), "timeout");
    const times = dataSegments(a).map((x) => x.at);
    assert.equal(times.length, 7, "first transmission plus 6 retransmissions");
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    assert.deepEqual(gaps, [200, 400, 800, 1600, 3200, 6400]);
    assert.equal(a.stack.stats().tcpTimeouts, 6);
    assert.equal(a.stack.stats().tcpConnTimeouts, 1);
  });

  it("the minimum RTO is configurable and backoff is capped at the maximum RTO", () => {
    const [w, a, b] = pair(62, { minRtoMs: 50, maxRtoMs: 1000, maxRetries: 8 });
    const [c] = establish(w, a, b, 80);
    a.recordSent = true;
    b.up = false;
    a.stack.send(c, Buffer.from("x"));
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED"));
    const times = dataSegments(a).map((x) => x.at);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    assert.deepEqual(gaps, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it("SYNs are retransmitted at the initial RTO of 1 s, doubling, until synRetries", () => {
    const [w, a, b] = pair(63, { synRetries: 4 });
    b.stack.connect(a.ip, 1); // b's ARP request teaches a b's MAC (a answers with a RST)
    w.runFor(5);
    b.up = false;
    a.recordSent = true;
    const c = a.stack.connect(b.ip, 80);
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED"));
    assert.equal(a.stack.error(c), "timeout");
    const syns = a.sent.filter((x) => parseTcp(x.frame)?.tcp.flags === TCP_FLAG.SYN).map((x) => x.at);
    const gaps = syns.slice(1).map((t, i) => t - (syns[i] as number));
    assert.deepEqual(gaps, [1000, 2000, 4000, 8000]);
  });

  it("RTT estimation: with a 40 ms path the RTO settles near SRTT + 4*RTTVAR, above the minimum", () => {
    const [w, a, b] = pair(64, { minRtoMs: 10 });
    w.segment.delay(20, 0).drop(0).duplicate(0);
    const [c, s] = establish(w, a, b, 80);
    transfer(w, a, c, b, s, w.rng.bytes(200_000));
    const i = a.stack.info(c);
    assert.ok(i.srttMs >= 39 && i.srttMs <= 82, `srtt ${i.srttMs}`);
    assert.ok(i.rtoMs >= i.srttMs && i.rtoMs <= 400, `rto ${i.rtoMs}`);
  });

  it("fast retransmit: a single lost segment is repaired by three duplicate ACKs, without a timeout", () => {
    const [w, a, b] = pair(65, { ackDelayMs: 0 });
    const [c, s] = establish(w, a, b, 80);
    let n = 0;
    w.segment.dropIf(
      ({ from, frame }) => from === a && (parseTcp(frame)?.payload.length ?? 0) > 0 && ++n === 5,
    );
    a.recordSent = true;
    const rcv = transfer(w, a, c, b, s, w.rng.bytes(64 * 1024));
    void rcv;
    const st = a.stack.stats();
    assert.equal(st.tcpFastRetransmits, 1);
    assert.equal(st.tcpTimeouts, 0);
    const segs = dataSegments(a);
    const lost = segs[4];
    assert.ok(lost);
    const again = segs.filter((x) => x.seq === lost.seq);
    assert.equal(again.length, 2);
    assert.ok((again[1]?.at ?? 0) - lost.at < 100, "repaired well before the 200 ms RTO");
  });

  it("a delayed ACK goes out after ackDelayMs, a second full segment is ACKed at once", () => {
    const [w, a, b] = pair(66, { ackDelayMs: 40 });
    const [c] = establish(w, a, b, 80);
    b.recordSent = true;
    a.stack.send(c, Buffer.from("tiny"));
    const t0 = w.now;
    w.runFor(100);
    const acks = b.sent
      .map((x) => ({ at: x.at, p: parseTcp(x.frame) }))
      .filter((x) => x.p?.tcp.flags === TCP_FLAG.ACK);
    assert.equal(acks.length, 1);
    assert.equal((acks[0]?.at ?? 0) - t0, 1 + 40);
    b.sent.length = 0;
    a.stack.send(c, w.rng.bytes(2920));
    const t1 = w.now;
    w.runFor(100);
    assert.equal(b.sent.length, 1);
    assert.equal((b.sent[0]?.at ?? 0) - t1, 1, "ACK of two full segments is immediate");
  });
});

describe("NIC backpressure", () => {
  it("transmit refusing frames for long stretches loses nothing, in both directions", () => {
    const [w, a, b] = pair(71);
    const [c, s] = establish(w, a, b, 80);
    // Each NIC refuses everything for 30 ms out of every 70, out of phase.
    a.blocked = (t) => t % 70 < 30;
    b.blocked = (t) => (t + 35) % 70 < 30;
    w.segment.delay(1, 2).drop(0.01).duplicate(0);
    const d1 = w.rng.bytes(300_000);
    const d2 = w.rng.bytes(100_000);
    const r1 = new Receiver(b, s);
    const r2 = new Receiver(a, c);
    w.apps.push(new Sender(a, c, d1, true).pump, new Sender(b, s, d2, true).pump, r1.pump, r2.pump);
    assert.ok(w.run(() => r1.eof && r2.eof));
    assert.ok(r1.data().equals(d1));
    assert.ok(r2.data().equals(d2));
    assert.ok(a.stack.stats().txBlocked > 0 && b.stack.stats().txBlocked > 0);
  });

  it("a RST for a closed port waits in the control queue until the NIC takes it", () => {
    const [w, a, b] = pair(72);
    a.stack.announce();
    b.stack.announce();
    w.runFor(5);
    b.blocked = (t) => t < 200;
    const c = a.stack.connect(b.ip, 4444);
    w.runFor(100);
    assert.equal(a.stack.state(c), "SYN_SENT");
    assert.ok(b.stack.pendingOutput());
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED"));
    assert.equal(a.stack.error(c), "refused");
    assert.equal(b.stack.stats().ctlQueued, 1);
  });
});

void parseIpv4;

describe("edge cases", () => {
  it("sequence numbers wrap around 2^32 in the middle of a transfer", () => {
    const [w, a, b] = pair(81);
    // The next random numbers become the ISSs: a few KiB below the wrap on both sides.
    const wrapSoon = (h: Host, iss: number): void => {
      const orig = h.rng;
      let first = true;
      h.rng = Object.assign(Object.create(Object.getPrototypeOf(orig)), orig, {
        u32: () => {
          if (first) {
            first = false;
            return iss;
          }
          return orig.u32();
        },
      });
    };
    const l = b.stack.listen(80);
    wrapSoon(a, 0xffffffff - 5000);
    wrapSoon(b, 0xffffffff - 3000);
    const c = a.stack.connect(b.ip, 80, 40000);
    let s = 0;
    assert.ok(w.run(() => (s ||= b.stack.accept(l)) !== 0));
    assert.ok(a.stack.info(c).sndUna > 0xffff0000);
    w.segment.delay(1, 3).drop(0.03).duplicate(0.01);
    const d1 = w.rng.bytes(100_000);
    const d2 = w.rng.bytes(60_000);
    const r1 = new Receiver(b, s);
    const r2 = new Receiver(a, c);
    w.apps.push(new Sender(a, c, d1, true).pump, new Sender(b, s, d2, true).pump, r1.pump, r2.pump);
    assert.ok(w.run(() => r1.eof && r2.eof));
    assert.ok(r1.data().equals(d1) && r2.data().equals(d2));
    assert.ok(a.stack.info(c).sndUna < 0x10000000, "wrapped");
  });

  const lossTargets = [
    "SYN",
    "SYN-ACK",
    "handshake ACK",
    "first FIN",
    "ACK of first FIN",
    "second FIN",
    "last ACK",
  ];
  for (const target of lossTargets) {
    it(`handshake and close recover when the ${target} is lost`, () => {
      const [w, a, b] = pair(82, { timeWaitMs: 3000 });
      const l = b.stack.listen(80);
      let lostOne = false;
      let finsFromA = 0;
      let finsFromB = 0;
      w.segment.dropIf(({ from, frame }) => {
        const p = parseTcp(frame);
        if (!p || lostOne) return false;
        const fl = p.tcp.flags;
        const isFin = (fl & TCP_FLAG.FIN) !== 0;
        if (isFin && from === a) finsFromA++;
        if (isFin && from === b) finsFromB++;
        let hit = false;
        if (target === "SYN") hit = fl === TCP_FLAG.SYN;
        if (target === "SYN-ACK") hit = fl === (TCP_FLAG.SYN | TCP_FLAG.ACK);
        if (target === "handshake ACK") hit = from === a && fl === TCP_FLAG.ACK && p.payload.length === 0;
        if (target === "first FIN") hit = isFin && from === a;
        if (target === "ACK of first FIN") hit = from === b && finsFromA > 0 && !isFin && fl === TCP_FLAG.ACK;
        if (target === "second FIN") hit = isFin && from === b;
        if (target === "last ACK") hit = from === a && finsFromB > 0 && fl === TCP_FLAG.ACK;
        if (hit) lostOne = true;
        return hit;
      });
      const c = a.stack.connect(b.ip, 80);
      a.stack.send(c, Buffer.from("hello"));
      a.stack.shutdown(c);
      let s = 0;
      let got = "";
      let closed = false;
      w.apps.push(() => {
        if (s === 0) s = b.stack.accept(l);
        if (s === 0 || closed) return;
        const r = b.stack.recv(s);
        if (r) got += r.toString();
        if (b.stack.eof(s)) {
          b.stack.send(s, Buffer.from("bye"));
          b.stack.close(s);
          closed = true;
        }
      });
      let reply = "";
      w.apps.push(() => {
        const r = a.stack.state(c) !== "CLOSED" ? a.stack.recv(c) : null;
        if (r) reply += r.toString();
      });
      assert.ok(w.run(() => a.stack.state(c) === "CLOSED" && b.stack.socketCount === 1, 60_000));
      assert.ok(lostOne, "the targeted segment was seen and dropped");
      assert.equal(got, "hello");
      assert.equal(reply, "bye");
      assert.equal(a.stack.error(c), null);
      a.stack.close(c);
      assert.equal(a.stack.socketCount, 0);
    });
  }
});
