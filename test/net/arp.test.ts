/** ARP on the simulated LAN: resolution, the waiting queue, gratuitous ARP, ageing, failures. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ARP_QUEUE_MAX } from "../../src/net/link.js";
import { ARP_OP, formatMac, parseIpv4 } from "../../src/net/wire.js";
import { arpFrame, isArp, parseTcp } from "./frames.js";
import { establish, TcpWorld } from "./sim.js";

describe("ARP", () => {
  it("the first frame to an unknown host waits for resolution; the target learns the asker", () => {
    const w = new TcpWorld(1);
    const a = w.addHost("a", "10.0.0.1");
    const b = w.addHost("b", "10.0.0.2");
    a.recordSent = true;
    establish(w, a, b, 80);
    const sa = a.stack.stats();
    const sb = b.stack.stats();
    assert.equal(sa.arpRequestsSent, 1);
    assert.equal(sa.arpQueued, 1, "the SYN waited on the ARP entry");
    assert.equal(sb.arpRepliesSent, 1);
    assert.equal(sb.arpRequestsSent, 0, "b learned a from a's request");
    const first = a.sent[0]?.frame;
    assert.ok(first && isArp(first)?.op === ARP_OP.REQUEST);
    assert.ok(parseTcp(a.sent[1]?.frame as Uint8Array)?.tcp.flags);
  });

  it("a gratuitous ARP moves a peer's entry to the announcer's MAC (and creates none elsewhere)", () => {
    const w = new TcpWorld(2);
    const a = w.addHost("a", "10.0.0.1");
    const b = w.addHost("b", "10.0.0.2");
    const d = w.addHost("d", "10.0.0.4");
    const [c] = establish(w, a, b, 80);
    // b's address moves to a new machine with another MAC.
    b.up = false;
    const b2 = w.addHost("b2", "10.0.0.2");
    b2.recordSent = true;
    a.recordSent = true;
    const updates = a.stack.stats().arpCacheUpdates;
    b2.stack.announce();
    w.runFor(5);
    assert.equal(a.stack.stats().arpCacheUpdates, updates + 1);
    a.stack.send(c, Buffer.from("where are you?"));
    w.runFor(5);
    const seg = a.sent.map((x) => parseTcp(x.frame)).find((p) => p && p.payload.length > 0);
    assert.equal(seg?.dstMac, formatMac(b2.mac).replaceAll(":", ""));
    assert.equal(a.stack.stats().arpRequestsSent, 1, "no new resolution was needed");
    // b2 has no such connection: it answers with a RST, which proves the frame reached it.
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED"));
    assert.equal(a.stack.error(c), "reset");
    // d had no entry for 10.0.0.2 and must not have made one from the announcement: it resolves afresh.
    const before = d.stack.stats().arpRequestsSent;
    d.stack.connect(b2.ip, 1);
    assert.equal(d.stack.stats().arpRequestsSent, before + 1);
  });

  it("an unanswered request is retried every second, then given up with the waiting frames", () => {
    const w = new TcpWorld(3);
    const a = w.addHost("a", "10.0.0.1", { synRetries: 2 });
    a.recordSent = true;
    const c = a.stack.connect(parseIpv4("10.0.0.99"), 80);
    assert.ok(w.run(() => a.stack.state(c) === "CLOSED"));
    assert.equal(a.stack.error(c), "timeout");
    const reqs = a.sent.filter((x) => isArp(x.frame)?.op === ARP_OP.REQUEST).map((x) => x.at);
    // SYN at 0 (ARP at 0, 1000, 2000; fails at 3000 dropping the SYN and its 1 s retransmission);
    // the 3 s retransmission starts a new resolution.
    assert.deepEqual(reqs.slice(0, 4), [0, 1000, 2000, 3000]);
    const st = a.stack.stats();
    assert.ok(st.arpResolveFailures >= 1);
    assert.ok(st.arpQueueDrops >= 2);
    assert.ok(
      a.sent.every((x) => isArp(x.frame) !== null),
      "no TCP frame left without a MAC",
    );
  });

  it(`at most ${ARP_QUEUE_MAX} frames wait per entry; the oldest are dropped`, () => {
    const w = new TcpWorld(4);
    const a = w.addHost("a", "10.0.0.1");
    const b = w.addHost("b", "10.0.0.2");
    const l = b.stack.listen(80, 32);
    // b ignores ARP for the first 2.5 s.
    w.segment.dropIf(({ from, frame, now }) => from === b && isArp(frame) !== null && now < 2500);
    const total = ARP_QUEUE_MAX + 6;
    const cs = Array.from({ length: total }, () => a.stack.connect(b.ip, 80));
    w.runFor(100);
    assert.equal(a.stack.stats().arpQueueDrops, 6);
    // SYN retransmissions get everybody through once ARP works.
    let n = 0;
    w.apps.push(() => {
      while (b.stack.accept(l) !== 0) n++;
    });
    assert.ok(w.run(() => n === total && cs.every((s) => a.stack.state(s) === "ESTABLISHED"), 30_000));
  });

  it("entries age out after arpTimeoutMs and are resolved again", () => {
    const w = new TcpWorld(5);
    const a = w.addHost("a", "10.0.0.1", { arpTimeoutMs: 5000 });
    const b = w.addHost("b", "10.0.0.2", { arpTimeoutMs: 5000 });
    const [c, s] = establish(w, a, b, 80);
    w.runFor(6000);
    a.stack.send(c, Buffer.from("still there?"));
    assert.ok(w.run(() => b.stack.recvAvailable(s) === 12));
    assert.equal(a.stack.stats().arpRequestsSent, 2);
  });

  it("someone else claiming our address is counted as a conflict and changes nothing", () => {
    const w = new TcpWorld(6);
    const a = w.addHost("a", "10.0.0.1");
    const b = w.addHost("b", "10.0.0.2");
    establish(w, a, b, 80);
    const evil = Uint8Array.from([2, 0, 0, 0, 0, 0x66]);
    w.inject(a, arpFrame(ARP_OP.REPLY, evil, a.mac, evil, a.ip, a.mac, a.ip));
    w.runFor(2);
    assert.equal(a.stack.stats().arpConflicts, 1);
  });
});
