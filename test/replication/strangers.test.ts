import assert from "node:assert/strict";
import { test } from "node:test";
import { Conn, type LocalIdentity } from "../../src/replication/conn.js";
import { pairOf, type SimNode } from "../sim/cluster.js";
import { check } from "../sim/history.js";
import type { SimPort } from "../sim/repl.js";
import type { World } from "../sim/world.js";

type Pair = ReturnType<typeof pairOf>;

function protectedPair(seed: number): Pair {
  const p = pairOf(seed);
  p.world.run(() => p.a.node.state === "protected", 2000);
  p.world.runFor(30);
  assert.equal(p.b.node.state, "standby");
  return p;
}

function identity(world: World, b: SimNode, key: Buffer): LocalIdentity {
  return {
    role: "primary",
    key,
    nodeId: Buffer.alloc(16, 9),
    software: "stranger",
    entropy: world.stream("stranger"),
    pages: b.domain.pages,
    diskBlocks: b.domain.disk.blocks,
    vcpuSize: 128,
    deviceSize: 256,
    generation: () => 1,
    committedEpoch: () => 0,
    helloFlags: () => 0,
    claimEpoch: () => 0,
  };
}

/**
 * Runs `attack` from a stranger's connection against a protected pair's
 * backup and checks that the backup refused it and changed nothing: same
 * state, and the pair keeps checkpointing as before, every applied epoch
 * still carrying the primary's digest.
 */
function expectRefusedAndUnchanged(seed: number, attack: (p: Pair, port: SimPort) => void): void {
  const p = protectedPair(seed);
  const { world, cluster, a, b } = p;
  const h = cluster.history;
  const refusedBefore = h.events("peer.refused", "b").length;
  const port = cluster.stranger("stranger", b);
  let closed = false;
  port.onClose = () => {
    closed = true;
  };
  attack(p, port);
  world.run(() => h.events("peer.refused", "b").length > refusedBefore, 300);
  assert.ok(h.events("peer.refused", "b").length > refusedBefore, "a peer.refused event names the reason");
  world.run(() => closed || !port.open, 300);
  assert.ok(closed || !port.open, "the stranger's connection was closed");
  assert.equal(b.node.state, "standby");
  assert.equal(a.node.state, "protected");
  const committed = b.node.committed;
  world.runFor(100);
  assert.ok(b.node.committed > committed, "the real pair goes on");
  assert.equal(h.events("peer.lost", "b").length, 0, "the real primary was never dropped");
  assert.deepEqual(check(h), []);
}

function speak(p: Pair, port: SimPort, key: Buffer): void {
  const c = new Conn(port, identity(p.world, p.b, key), { intervalMs: 20, misses: 5 }, p.world.now);
  port.onFrame = (d) => c.receive(d, p.world.now);
  c.start();
}

test("a stranger with the wrong key is refused and changes nothing", () => {
  expectRefusedAndUnchanged(1, (p, port) => speak(p, port, Buffer.from("not-the-right-key")));
});

test("a stranger with no key (empty key) is refused and changes nothing", () => {
  expectRefusedAndUnchanged(2, (p, port) => speak(p, port, Buffer.alloc(0)));
});

test("garbage bytes are refused and change nothing", () => {
  expectRefusedAndUnchanged(3, (_p, port) => {
    port.send(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  });
  expectRefusedAndUnchanged(4, (p, port) => {
    port.send(p.world.rng.bytes(4096));
  });
});

test("valid frames replayed from another session are refused and change nothing", () => {
  // Record what the real primary sent in its session...
  const recorded: Buffer[] = [];
  const p0 = pairOf(5);
  p0.cluster.repl.observe((f, phase) => {
    if (phase === "sent" && f.from === "a") recorded.push(Buffer.from(f.data));
  });
  p0.world.run(() => p0.a.node.state === "protected", 2000);
  p0.world.runFor(20);
  const hello = recorded[0] as Buffer;
  const auth = recorded[1] as Buffer;
  const batch = recorded.find((f) => f[3] === 0x11) as Buffer;
  assert.ok(hello && auth && batch);
  // ...and replay it, whole or in part, on new connections to another pair's backup.
  expectRefusedAndUnchanged(6, (_p, port) => {
    port.send(hello);
    port.send(auth);
    port.send(batch);
  });
  expectRefusedAndUnchanged(7, (_p, port) => {
    port.send(batch);
  });
  // Even a replay against the same backup (same key, new nonces) never authenticates.
  expectRefusedAndUnchanged(5, (_p, port) => {
    port.send(hello);
    port.send(auth);
  });
});
