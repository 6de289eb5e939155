import assert from "node:assert/strict";
import { test } from "node:test";
import { GOODBYE_REASON } from "../../src/protocol/constants.js";
import { FrameCodec } from "../../src/protocol/frame.js";
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

// ---- fencing claims: nothing before AUTH counts, and a claim must be proven ----

/** A protected pair (a primary, b backup), or with `activated`, b after taking over from a killed a. */
function target(seed: number, activated: boolean): { p: Pair; node: SimNode } {
  const p = protectedPair(seed);
  if (!activated) return { p, node: p.a };
  p.a.kill("reset");
  p.world.run(() => p.b.node.roleName === "primary", 500);
  assert.equal(p.b.node.roleName, "primary");
  return { p, node: p.b };
}

/** A primary's identity with the given generation and claim epoch, for a stranger or a member. */
function primaryIdentity(world: World, n: SimNode, key: Buffer, generation: number, claimEpoch: number) {
  return {
    ...identity(world, n, key),
    generation: () => generation,
    claimEpoch: () => claimEpoch,
  };
}

/** Runs `attack` against `node` and checks that it refused it: still running, not fenced, a peer.refused event. */
function expectNotFenced(
  seed: number,
  activated: boolean,
  attack: (p: Pair, node: SimNode, port: SimPort) => void,
) {
  const { p, node } = target(seed, activated);
  const { world, cluster } = p;
  const h = cluster.history;
  const state = node.node.state;
  const generation = node.node.generation;
  const refused = h.events("peer.refused", node.name).length;
  const port = cluster.stranger("stranger", node);
  attack(p, node, port);
  world.run(() => h.events("peer.refused", node.name).length > refused, 300);
  world.runFor(50);
  const where = `${activated ? "activated backup" : "primary"}, seed ${seed}`;
  assert.ok(h.events("peer.refused", node.name).length > refused, `${where}: refused with a reason`);
  assert.equal(node.node.state, state, where);
  assert.equal(node.node.primary?.isRunning, true, where);
  assert.equal(node.node.generation, generation, where);
  assert.equal(node.node.dev.active, true, `${where}: still on the LAN`);
  assert.equal(h.events("fenced", node.name).length, 0, where);
  assert.ok(!port.open, `${where}: the stranger's connection was closed`);
  assert.deepEqual(check(h), [], where);
}

for (const activated of [false, true]) {
  const who = activated ? "an activated backup" : "a primary";

  test(`a GOODBYE FENCED before AUTH (session 0, sequence 0) does not fence ${who}`, () => {
    expectNotFenced(11, activated, (_p, _n, port) => {
      port.send(
        new FrameCodec().encode({
          type: "goodbye",
          reason: GOODBYE_REASON.fenced,
          generation: 1000,
          epoch: 1_000_000,
          message: "you are fenced",
        }),
      );
    });
  });

  test(`a HELLO of a primary (or backup) of a high generation, without the key, does not fence ${who}`, () => {
    for (const role of ["primary", "backup"] as const) {
      expectNotFenced(12, activated, (p, n, port) => {
        const me = { ...primaryIdentity(p.world, n, Buffer.from("wrong-key"), 1000, 1_000_000), role };
        const c = new Conn(port, me, { intervalMs: 20, misses: 5 }, p.world.now);
        port.onFrame = (d) => c.receive(d, p.world.now);
        c.start();
      });
    }
  });

  test(`a HELLO then GOODBYE FENCED before AUTH (the handshake half done) does not fence ${who}`, () => {
    expectNotFenced(13, activated, (p, n, port) => {
      const c = new Conn(
        port,
        primaryIdentity(p.world, n, Buffer.from("wrong-key"), 1000, 1_000_000),
        { intervalMs: 20, misses: 5 },
        p.world.now,
      );
      c.start();
      c.goodbye(GOODBYE_REASON.fenced, "you are fenced");
    });
  });
}

test("a member's claim from a lineage that began before the activated primary's own generation is refused", () => {
  // An authenticated peer (it holds the key) claiming a newer generation that resumed an epoch
  // older than the one this primary's generation began from: not a successor, no proof.
  expectNotFenced(14, true, (p, n, port) => {
    const base = n.node.primary?.base ?? 0;
    assert.ok(base > 0);
    const c = new Conn(
      port,
      primaryIdentity(p.world, n, Buffer.from("simulation-key"), 1000, base - 1),
      { intervalMs: 20, misses: 5 },
      p.world.now,
    );
    port.onFrame = (d) => c.receive(d, p.world.now);
    c.start();
  });
});

test("a proven claim (authenticated, a newer generation, a successor's epoch) fences the primary: output discarded, NIC off the LAN", () => {
  const { p, node } = target(15, true);
  const base = node.node.primary?.base ?? 0;
  const port = p.cluster.stranger("member", node);
  const c = new Conn(
    port,
    primaryIdentity(p.world, node, Buffer.from("simulation-key"), 7, base + 3),
    { intervalMs: 20, misses: 5 },
    p.world.now,
  );
  port.onFrame = (d) => c.receive(d, p.world.now);
  c.start();
  p.world.run(() => node.node.state === "fenced", 300);
  assert.equal(node.node.state, "fenced");
  assert.equal(node.node.dev.active, false);
  assert.equal(node.node.dev.netbuf.packets, 0);
  assert.equal(p.cluster.history.events("fenced", node.name)[0]?.e.peerGeneration, 7);
  assert.equal(node.persistedGeneration, 7);
});
