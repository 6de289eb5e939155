import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RespParser } from "../../src/client/resp.js";
import { viewFrame } from "../../src/colo/packet.js";
import { DivergenceSwitch, parseDivergence } from "../../src/domain/divergence.js";
import { Domain, geometryOfMiB } from "../../src/domain/domain.js";
import { bootGuest, type Kernel } from "../../src/guest/guest.js";
import { Nic } from "../../src/guest/nic.js";
import { parseWorkload } from "../../src/guest/workload.js";
import { arpFrame, isArp } from "../net/frames.js";
import { CLIENT_IP, CLIENT_MAC, GUEST_IP, GUEST_MAC, inb, TCP_FLAG } from "./frames.js";

function twin(seed: number): { d: Domain; k: Kernel } {
  const d = new Domain(geometryOfMiB(8, 4));
  const k = bootGuest(d, { seed, workload: parseWorkload("idle"), net: { mac: GUEST_MAC, ip: GUEST_IP } });
  return { d, k };
}

/** The ISN of the guest's SYN-ACK to a client SYN on kvd's port. */
function synAckIsn(t: { d: Domain; k: Kernel }): number {
  const nic = new Nic(t.d);
  t.k.run(5);
  nic.deliver(inb(1000, 0, TCP_FLAG.SYN));
  for (let i = 0; i < 5; i++) {
    t.k.tick();
    for (let f = nic.takeTx(); f; f = nic.takeTx()) {
      const v = viewFrame(f);
      if (v.kind === "tcp" && (v.flags & TCP_FLAG.SYN) !== 0) return v.seq;
      if (isArp(f))
        nic.deliver(arpFrame(2, CLIENT_MAC, GUEST_MAC, CLIENT_MAC, CLIENT_IP, GUEST_MAC, GUEST_IP));
    }
  }
  throw new Error("no SYN-ACK");
}

const e16 = (b: number) => Buffer.alloc(16, b);

describe("guest divergence sources", () => {
  it("twins booted alike draw alike; a reseeded secondary draws its own ISNs", () => {
    assert.equal(synAckIsn(twin(5)), synAckIsn(twin(5)), "deterministic without reseeding (a Remus backup)");
    const a = twin(5);
    const b = twin(5);
    b.d.vcpu.reseed(e16(7));
    assert.notEqual(synAckIsn(a), synAckIsn(b));
    const c = twin(5);
    c.d.vcpu.reseed(e16(7));
    assert.equal(synAckIsn(twin5Reseeded(7)), synAckIsn(c), "the same entropy gives the same stream");
  });

  it("a checkpoint copy makes the digests equal; reseeding changes only the vCPU's generator", () => {
    const p = twin(3);
    p.k.run(20);
    const s = twin(99);
    s.d.copyFrom(p.d);
    assert.equal(s.d.digestFull(), p.d.digestFull());
    const before = Buffer.from(s.d.vcpu.regs);
    s.d.vcpu.reseed(e16(1));
    const after = s.d.vcpu.regs;
    assert.notEqual(s.d.digestFull(), p.d.digestFull());
    assert.deepEqual(after.subarray(0, 32), before.subarray(0, 32));
    assert.deepEqual(after.subarray(48), before.subarray(48));
    assert.notDeepEqual(after.subarray(32, 48), before.subarray(32, 48));
  });

  it("reseeding depends on the whole entropy and never leaves the forbidden all-zero state", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat({ max: 15 }), (ent, i) => {
        const a = new Domain(geometryOfMiB(1, 1));
        const b = new Domain(geometryOfMiB(1, 1));
        a.vcpu.reseed(ent);
        const other = Uint8Array.from(ent);
        other[i] = other[i]! ^ 1;
        b.vcpu.reseed(other);
        assert.notDeepEqual(a.vcpu.regs.subarray(32, 48), b.vcpu.regs.subarray(32, 48));
        assert.ok(a.vcpu.regs.subarray(32, 48).some((x) => x !== 0));
      }),
      { numRuns: 200, seed: 31 },
    );
    assert.throws(() => new Domain(geometryOfMiB(1, 1)).vcpu.reseed(Buffer.alloc(3)), /4 bytes/);
  });

  it("reply perturbation keeps RESP framing and changes the content", () => {
    const sw = new DivergenceSwitch({ reply: 1, seed: 4 });
    for (const text of ["+OK\r\n", ":42\r\n", ":-7\r\n", "$5\r\nhello\r\n", "-ERR no such key\r\n"]) {
      const reply = Buffer.from(text);
      const p = sw.perturbReply(reply);
      assert.ok(p, text);
      const changed = Buffer.from(reply);
      changed[p.offset] = p.value;
      assert.notDeepEqual(changed, reply);
      const a = new RespParser();
      a.push(reply);
      const b = new RespParser();
      b.push(changed);
      const va = a.next();
      const vb = b.next();
      assert.ok(va && vb);
      assert.equal(vb.t, va.t);
      assert.notDeepEqual(vb, va);
    }
    for (const text of ["$-1\r\n", "*1\r\n$1\r\na\r\n", "$0\r\n\r\n", "+\r\n"]) {
      assert.equal(sw.perturbReply(Buffer.from(text)), undefined, text);
    }
  });

  it("rates are deterministic from the seed", () => {
    const run = (seed: number) => {
      const sw = new DivergenceSwitch({ reply: 0.25, stall: 0.1, seed });
      let stalls = 0;
      let perturbed = 0;
      for (let i = 0; i < 4000; i++) {
        if (sw.rxStall()) stalls++;
        if (sw.perturbReply(Buffer.from(":1\r\n"))) perturbed++;
      }
      return [stalls, perturbed];
    };
    assert.deepEqual(run(9), run(9));
    const [stalls, perturbed] = run(9) as [number, number];
    assert.ok(stalls > 300 && stalls < 500, `${stalls}`);
    assert.ok(perturbed > 900 && perturbed < 1100, `${perturbed}`);
    assert.deepEqual(new DivergenceSwitch({}).config, { reply: 0, stall: 0, seed: 1 });
  });

  it("parses its spec and refuses bad ones", () => {
    assert.deepEqual(parseDivergence("reply=0.5,seed=3").config, { reply: 0.5, stall: 0, seed: 3 });
    for (const bad of [
      "reply",
      "reply=2",
      "stall=1",
      "x=1",
      "reply=0.1,reply=0.2",
      "seed=1.5",
      "reply=abc",
    ]) {
      assert.throws(() => parseDivergence(bad), /divergence/, bad);
    }
  });

  it("a late receive interrupt leaves input in the ring until a later tick", () => {
    const t = twin(8);
    t.d.divergence = new DivergenceSwitch({ stall: 0.999_999, seed: 2 });
    const nic = new Nic(t.d);
    t.k.run(3);
    nic.deliver(inb(1000, 0, TCP_FLAG.SYN));
    t.k.run(3);
    assert.equal(nic.rxPending, 1, "the frame waits in the ring while the interrupt is late");
    t.d.divergence = undefined;
    t.k.tick();
    assert.equal(nic.rxPending, 0);
  });
});

function twin5Reseeded(b: number): { d: Domain; k: Kernel } {
  const t = twin(5);
  t.d.vcpu.reseed(e16(b));
  return t;
}
