/**
 * The property the project rests on: a copy of the memory is the whole stack.
 * A new handle on copied memory continues every connection exactly; a backup
 * that resumes from the last checkpoint (with output held until commit)
 * carries the connections on without a reset; and a restored copy given the
 * same inputs produces the same frames and the same bytes.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type GuestMemory, PAGE_SIZE, PlainMemory } from "../../src/domain/memory.js";
import { Heap } from "../../src/guest/mm.js";
import { NetStack } from "../../src/net/stack.js";
import { establish, type Host, Receiver, Sender, TcpWorld } from "./sim.js";

function setup(seed: number): { w: TcpWorld; a: Host; b: Host; c: number; s: number } {
  const w = new TcpWorld(seed);
  const a = w.addHost("a", "10.0.0.1", { timeWaitMs: 2000 });
  const b = w.addHost("b", "10.0.0.2", { timeWaitMs: 2000 });
  const [c, s] = establish(w, a, b, 80);
  return { w, a, b, c, s };
}

describe("restore", () => {
  for (const side of ["receiver", "sender"] as const) {
    it(`copying the ${side}'s memory mid-transfer into a fresh memory and handle continues exactly`, () => {
      const { w, a, b, c, s } = setup(side === "receiver" ? 1 : 2);
      w.segment.delay(2, 3).drop(0.02).duplicate(0.01);
      const data = w.rng.bytes(1 << 20);
      const snd = new Sender(a, c, data, true);
      const rcv = new Receiver(b, s);
      w.apps.push(snd.pump, rcv.pump);
      w.run(() => rcv.length > 300_000);
      const victim = side === "receiver" ? b : a;
      const oldMem = victim.mem;
      victim.restore(victim.snapshot());
      assert.notEqual(victim.mem, oldMem);
      oldMem.buf.fill(0xdd); // the old memory is gone for good
      assert.ok(w.run(() => rcv.eof));
      assert.ok(rcv.data().equals(data));
      // The restored side closes cleanly too.
      assert.ok(w.run(() => b.stack.state(s) === "CLOSE_WAIT"));
      b.stack.close(s);
      assert.ok(w.run(() => a.stack.state(c) === "CLOSED" && b.stack.socketCount === 1));
    });
  }

  /**
   * Remus on one connection: the victim runs in epochs; at the end of each it
   * is checkpointed (memory, RNG, and the test application's state) and only
   * then is the output it produced during that epoch released. It dies at a
   * random moment; its held output is lost with it; a backup resumes from the
   * last checkpoint. The peer never saw anything the backup cannot reproduce,
   * so the connection simply carries on.
   */
  function failover(
    seed: number,
    side: "receiver" | "sender",
    resumeClock: boolean,
    failovers: number,
  ): void {
    const { w, a, b, c, s } = setup(seed);
    w.segment.delay(1, 2).drop(0.01).duplicate(0);
    const data = w.rng.bytes(400_000);
    const snd = new Sender(a, c, data, true);
    const rcv = new Receiver(b, s);
    w.apps.push(snd.pump, rcv.pump);
    const victim = side === "receiver" ? b : a;
    const epochMs = 25;
    victim.holdOutput = true;
    const ck = {
      net: victim.snapshot(),
      sent: 0,
      shut: false,
      chunks: [] as Buffer[],
      length: 0,
      eof: false,
    };
    const commit = (): void => {
      Object.assign(ck, {
        net: victim.snapshot(),
        sent: snd.offset,
        shut: snd.shut,
        chunks: [...rcv.chunks],
        length: rcv.length,
        eof: rcv.eof,
      });
      // Output commit: the epoch's frames go out only now that its checkpoint is safe.
      const out = victim.held.splice(0);
      for (const f of out) w.release(victim, f);
    };
    commit();
    let done = 0;
    while (!rcv.eof) {
      const epochs = 2 + w.rng.int(12);
      for (let i = 0; i < epochs && !rcv.eof; i++) {
        w.runFor(epochMs);
        commit();
      }
      if (done < failovers && !rcv.eof) {
        // Die somewhere inside the next epoch.
        w.runFor(1 + w.rng.int(epochMs - 1));
        victim.held.length = 0;
        victim.restore(ck.net, resumeClock);
        // The application's state rolls back with the guest's memory.
        if (side === "sender") {
          snd.offset = ck.sent;
          snd.shut = ck.shut;
        } else {
          rcv.chunks = [...ck.chunks];
          rcv.length = ck.length;
          rcv.eof = ck.eof;
        }
        done++;
        commit();
      }
      assert.ok(w.now < 600_000, "transfer stalled");
    }
    assert.equal(done, failovers);
    assert.ok(rcv.data().equals(data), "the receiver got exactly the data");
    assert.equal(a.stack.stats().tcpResetsReceived + b.stack.stats().tcpResetsReceived, 0);
    assert.equal(a.stack.error(c), null);
  }

  for (const [seed, side, resumeClock] of [
    [11, "receiver", false],
    [12, "sender", false],
    [13, "receiver", true],
    [14, "sender", true],
    [15, "receiver", true],
    [16, "sender", false],
  ] as const) {
    it(`failover from the last checkpoint with output commit (${side}, seed ${seed}, ${resumeClock ? "guest clock resumes from the checkpoint" : "clock continues"})`, () => {
      failover(seed, side, resumeClock, 3);
    });
  }

  it("a restored copy given the same inputs produces the same frames and the same memory (same bytes, same future)", () => {
    const { w, a, b, c, s } = setup(21);
    w.segment.delay(1, 3).drop(0.03).duplicate(0.02);
    const data = w.rng.bytes(300_000);
    const snd = new Sender(a, c, data, true);
    const rcv = new Receiver(b, s);
    w.apps.push(snd.pump, rcv.pump);
    w.run(() => rcv.length > 50_000);
    // The shadow: a second stack over a copy of b's memory, with b's clock and a clone of b's RNG.
    const ck = b.snapshot();
    const shadowMem = new PlainMemory(Buffer.from(ck.image));
    const shadowRng = ck.rng.clone();
    const shadowOut: Uint8Array[] = [];
    const shadow = new NetStack(
      {
        mem: shadowMem,
        heap: new Heap(shadowMem, b.heap.hdr),
        now: () => w.now - b.clockOffset,
        random32: () => shadowRng.u32(),
        transmit: (f) => {
          shadowOut.push(Uint8Array.from(f));
          return true;
        },
      },
      b.stack.root,
    );
    b.recordSent = true;
    b.sent.length = 0;
    // Every call on b's stack is made on the shadow too, and must return the same.
    const real = b.stack;
    b.stack = new Proxy(real, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== "function") return v;
        return (...args: unknown[]) => {
          const r1 = v.apply(target, args);
          const r2 = (Reflect.get(shadow, prop) as (...x: unknown[]) => unknown).apply(shadow, args);
          assert.deepEqual(r2, r1, `${String(prop)} diverged`);
          return r1;
        };
      },
    });
    assert.ok(w.run(() => rcv.eof));
    assert.ok(rcv.data().equals(data));
    assert.ok(b.sent.length > 100);
    assert.equal(shadowOut.length, b.sent.length);
    for (let i = 0; i < shadowOut.length; i++) {
      assert.deepEqual(shadowOut[i], b.sent[i]?.frame, `frame ${i} differs`);
    }
    assert.ok(shadowMem.buf.equals(b.mem.buf), "memories are byte-identical");
  });

  it("every write goes through the dirty log: baseline + dirty pages reproduce the memory at each checkpoint", () => {
    const w = new TcpWorld(31);
    const a = w.addHost("a", "10.0.0.1");
    const b = w.addHost("b", "10.0.0.2", {}, 4 << 20, true);
    const gm = b.mem as GuestMemory;
    const replica = Buffer.from(gm.buf); // the backup's copy, kept up to date with dirty pages only
    gm.log.drain();
    const l = b.stack.listen(80);
    w.segment.delay(1, 3).drop(0.03).duplicate(0.01);
    const data = w.rng.bytes(300_000);
    const c = a.stack.connect(b.ip, 80);
    const snd = new Sender(a, c, data, true);
    let s = 0;
    let rcv: Receiver | null = null;
    w.apps.push(snd.pump, () => {
      if (s === 0 && (s = b.stack.accept(l)) !== 0) {
        rcv = new Receiver(b, s);
        w.apps.push(rcv.pump);
      }
    });
    let checkpoints = 0;
    let dirty = 0;
    while (!(rcv as Receiver | null)?.eof) {
      w.runFor(1 + w.rng.int(20));
      for (const pfn of gm.log.drain()) {
        gm.buf.copy(replica, pfn * PAGE_SIZE, pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
        dirty++;
      }
      assert.ok(replica.equals(gm.buf), `replica diverged at checkpoint ${checkpoints}`);
      checkpoints++;
      assert.ok(w.now < 120_000);
    }
    assert.ok((rcv as unknown as Receiver).data().equals(data));
    assert.ok(checkpoints > 20);
    // A checkpoint carries a few pages, not the memory: buffers, TCBs and the root page.
    assert.ok(dirty / checkpoints < 40, `${(dirty / checkpoints).toFixed(1)} dirty pages per checkpoint`);
  });
});
