import assert from "node:assert/strict";
import { test } from "node:test";
import { Conn, type LocalIdentity } from "../../src/replication/conn.js";
import { SimPair, type SimPort } from "./sim.js";

function protectedPair(seed: number): SimPair {
  const sim = new SimPair({ seed });
  sim.connect();
  sim.run(2000, () => sim.primary.state === "protected");
  sim.run(30);
  assert.equal(sim.backup.state, "standby");
  return sim;
}

/** Opens a connection from a stranger to the backup; returns the stranger's port. */
function strangerPort(sim: SimPair): SimPort {
  const [sp, bp] = sim.net.pair("stranger", "backup");
  bp.onFrame = (d) => sim.backup.frame(bp, d, sim.net.now);
  bp.onClose = (r) => sim.backup.detach(bp, sim.net.now, r);
  sim.backup.attach(bp, sim.net.now);
  return sp;
}

function identity(sim: SimPair, key: Buffer): LocalIdentity {
  return {
    role: "primary",
    key,
    nodeId: Buffer.alloc(16, 9),
    software: "stranger",
    pages: sim.backupDomain.pages,
    diskBlocks: sim.backupDomain.disk.blocks,
    vcpuSize: 128,
    deviceSize: 256,
    generation: () => 1,
    committedEpoch: () => 0,
    helloFlags: () => 0,
  };
}

/**
 * Runs `attack` against a protected pair and checks that the backup refused it
 * and changed nothing: same state, and the pair keeps checkpointing as before,
 * every applied epoch still carrying the primary's digest.
 */
function expectRefusedAndUnchanged(seed: number, attack: (sim: SimPair, port: SimPort) => void): void {
  const sim = protectedPair(seed);
  const refusedBefore = sim.backupEvents.filter((e) => e.type === "peer.refused").length;
  const port = strangerPort(sim);
  let closed = false;
  port.onClose = () => {
    closed = true;
  };
  attack(sim, port);
  sim.run(300, () => closed || !port.open);
  assert.ok(closed || !port.open, "the stranger's connection was closed");
  const refused = sim.backupEvents.filter((e) => e.type === "peer.refused");
  assert.ok(refused.length > refusedBefore, "a peer.refused event names the reason");
  assert.equal(sim.backup.state, "standby");
  assert.equal(sim.primary.state, "protected");
  const committed = sim.backup.committed;
  sim.run(100);
  assert.ok(sim.backup.committed > committed, "the real pair goes on");
  assert.ok(!sim.backupEvents.some((e) => e.type === "peer.lost"), "the real primary was never dropped");
  for (const e of sim.backupEvents) {
    if (e.type === "checkpoint.applied") assert.equal(e.digest, sim.primaryDigests.get(e.epoch));
  }
}

test("a stranger with the wrong key is refused and changes nothing", () => {
  expectRefusedAndUnchanged(1, (sim, port) => {
    const c = new Conn(
      port,
      identity(sim, Buffer.from("not-the-right-key")),
      { intervalMs: 20, misses: 5 },
      sim.now,
    );
    port.onFrame = (d) => c.receive(d, sim.net.now);
    c.start();
  });
});

test("a stranger with no key (empty key) is refused and changes nothing", () => {
  expectRefusedAndUnchanged(2, (sim, port) => {
    const c = new Conn(port, identity(sim, Buffer.alloc(0)), { intervalMs: 20, misses: 5 }, sim.now);
    port.onFrame = (d) => c.receive(d, sim.net.now);
    c.start();
  });
});

test("garbage bytes are refused and change nothing", () => {
  expectRefusedAndUnchanged(3, (_sim, port) => {
    port.send(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  });
  expectRefusedAndUnchanged(4, (sim, port) => {
    const junk = Buffer.alloc(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(sim.random() * 256);
    port.send(junk);
  });
});

test("valid frames replayed from another session are refused and change nothing", () => {
  // Record what the real primary sent in its session...
  const recorded: Buffer[] = [];
  const sim0 = new SimPair({ seed: 5 });
  sim0.net.tap = (from, data) => {
    if (from === sim0.primaryPort) recorded.push(Buffer.from(data));
    return data;
  };
  sim0.connect();
  sim0.run(2000, () => sim0.primary.state === "protected");
  sim0.run(20);
  const hello = recorded[0] as Buffer;
  const auth = recorded[1] as Buffer;
  const batch = recorded.find((f) => f[3] === 0x11) as Buffer;
  assert.ok(hello && auth && batch);
  // ...and replay it, whole or in part, on new connections to another pair's backup.
  expectRefusedAndUnchanged(6, (_sim, port) => {
    port.send(hello);
    port.send(auth);
    port.send(batch);
  });
  expectRefusedAndUnchanged(7, (_sim, port) => {
    port.send(batch);
  });
  // Even a replay against the same backup (same key, new nonces) never authenticates.
  expectRefusedAndUnchanged(5, (_sim, port) => {
    port.send(hello);
    port.send(auth);
  });
});
