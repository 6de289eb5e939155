/**
 * The checkpoint pipeline's fast paths in the simulated world, through
 * production's Node: copy-on-write capture, XOR deltas, page jobs that finish
 * out of order, the receive path worked off in slices, the apply in slices
 * (atomic to every reader), live pre-copy rounds, adaptive epochs, and the
 * fallback when the page workers break. Correctness only: digests equal,
 * the history's checkers hold; never speed.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { CowCapturer } from "../../src/domain/capture.js";
import { InlineWorkers } from "../../src/pipeline/inline.js";
import type {
  DecodeJob,
  DecodeResult,
  EncodeJob,
  EncodeResult,
  HashJob,
  HashResult,
} from "../../src/pipeline/jobs.js";
import type { PageWorkers, Ticket } from "../../src/pipeline/pool.js";
import { HEADER_SIZE, PAGE_ENCODING } from "../../src/protocol/constants.js";
import { pairOf, protectedPair } from "../sim/cluster.js";
import { check } from "../sim/history.js";

/** Counts the entries of each encoding in the PAGE_BATCH frames `a` sends. */
function countEncodings(cluster: ReturnType<typeof pairOf>["cluster"]): Map<number, number> {
  const counts = new Map<number, number>();
  cluster.repl.observe((f, phase) => {
    if (phase !== "sent" || f.from !== "a" || f.type !== "pageBatch") return;
    const b = Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength);
    const n = b.readUInt32LE(HEADER_SIZE + 8);
    for (let i = 0; i < n; i++) {
      const enc = b[HEADER_SIZE + 12 + i * 8 + 4] as number;
      counts.set(enc, (counts.get(enc) ?? 0) + 1);
    }
  });
  return counts;
}

test("the simulations run the production pipeline: copy-on-write, XOR deltas, page jobs finishing out of order", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const p = pairOf(seed, {
      workload: "dirty:rate=20000,hot=0.1,pattern=zipf+disk:rate=256",
      // Every batch through the (deferred) page jobs on even seeds; small ones on the node's thread on odd ones.
      inlinePages: seed % 2 === 0 ? 0 : 24,
    });
    const enc = countEncodings(p.cluster);
    p.world.run(() => p.a.node.state === "protected", 3000);
    p.world.runFor(300);
    const where = `seed ${seed}`;
    assert.equal(p.a.node.state, "protected", where);
    assert.ok((enc.get(PAGE_ENCODING.xorLz4) ?? 0) > 0, `${where}: no XOR_LZ4 entry was sent`);
    // Every applied checkpoint and the primary's digests agree (--verify is on in the simulations).
    assert.deepEqual(check(p.cluster.history), [], where);
    assert.ok(p.cluster.history.events("checkpoint.applied", "b").length > 20, where);
    p.a.kill("reset");
    p.world.run(() => p.b.node.roleName === "primary", 1000);
    assert.deepEqual(check(p.cluster.history), [], where);
  }
});

test("the primary's capturer is copy-on-write: captures are frozen at the pause and released after the ack", () => {
  const { world, a } = protectedPair(4);
  const seen = new Set<number>();
  world.every(1, () => {
    const mem = a.domain.memory;
    if (mem.hasWriteBarrier) seen.add(1);
  });
  world.runFor(200);
  assert.ok(seen.has(1), "no copy-on-write barrier was ever installed");
  // The node's capturer is the copy-on-write one.
  const cap = (a.node as unknown as { capturerRef: unknown }).capturerRef;
  assert.ok(cap instanceof CowCapturer);
});

test("a full sync under a busy guest goes in rounds, each smaller, and ends with the primary's digest", () => {
  for (let seed = 1; seed <= 10; seed++) {
    // 16 MiB (4,096 pages) at 32 pages a step on the receive side: the pre-copy takes many turns.
    const p = pairOf(seed, {
      domainMiB: 16,
      turnUnits: 32,
      workload: "dirty:rate=60000,hot=0.5,pattern=uniform",
    });
    const rounds: number[] = [];
    p.cluster.listeners.push((n, e) => {
      if (n === p.a && e.type === "sync.round") rounds.push(e.pages);
    });
    p.world.run(() => p.a.node.state === "protected", 20_000);
    const where = `seed ${seed}`;
    assert.equal(p.a.node.state, "protected", where);
    assert.ok(rounds.length >= 1, `${where}: no round`);
    for (let i = 1; i < rounds.length; i++) {
      assert.ok((rounds[i] as number) < (rounds[i - 1] as number), `${where}: rounds ${rounds.join(",")}`);
    }
    const h = p.cluster.history;
    const sync = h.events("checkpoint.committed", "a")[0];
    assert.ok(sync, where);
    // The sync checkpoint carried only what the last round left.
    assert.ok(
      sync.e.dirtyPages <= Math.max(1024, rounds.at(-1) ?? 0),
      `${where}: ${sync.e.dirtyPages} pages`,
    );
    assert.deepEqual(check(h), [], where);
    // The backup never lost the link while it worked the sync off a slice at a time.
    assert.equal(h.events("peer.lost").length, 0, where);
  }
});

test("an apply in slices is atomic to readers: every digest read mid-stream is one the primary checkpointed", () => {
  for (let seed = 1; seed <= 6; seed++) {
    // A tiny budget: each checkpoint's apply takes several steps.
    const { world, cluster, a, b } = protectedPair(seed, {
      turnUnits: 8,
      workload: "dirty:rate=40000,hot=0.5,pattern=uniform",
    });
    const sent = new Map<number, string>();
    cluster.listeners.push((n, e) => {
      if (n === a && e.type === "checkpoint.sent" && e.digest) sent.set(e.epoch, e.digest);
    });
    let midApply = 0;
    let reads = 0;
    world.every(1, () => {
      const bk = b.node.backup;
      if (!bk || world.rng.float() >= 0.3) return;
      if (bk.busy) midApply++;
      const d = b.node.digest();
      reads++;
      const want = sent.get(d.epoch);
      if (want !== undefined) assert.equal(d.digest, want, `seed ${seed}: digest of epoch ${d.epoch}`);
    });
    world.runFor(300);
    assert.ok(reads > 50 && midApply > 0, `seed ${seed}: ${reads} reads, ${midApply} mid-apply`);
    assert.deepEqual(check(cluster.history), [], `seed ${seed}`);
  }
});

/** Page workers that break (as a pool whose worker died) after `after` jobs: every job fails from then on. */
class BreakingWorkers implements PageWorkers {
  readonly threads = 2;
  broken: Error | undefined;
  private jobs = 0;
  constructor(
    private readonly inner: InlineWorkers,
    private readonly after: number,
  ) {}
  get inFlight(): number {
    return this.inner.inFlight;
  }
  share(b: SharedArrayBuffer): number {
    return this.inner.share(b);
  }
  unshare(b: SharedArrayBuffer): void {
    this.inner.unshare(b);
  }
  private gate<T>(t: Ticket<T>): Ticket<T> {
    if (++this.jobs === this.after) this.broken = new Error("pipeline worker exited with code 1");
    if (this.broken) {
      // The job dies with the worker, whatever it was.
      const orig = t.settle.bind(t);
      t.settle = (_r, _e) => orig(undefined, this.broken);
    }
    return t;
  }
  encode(job: EncodeJob): Ticket<EncodeResult> {
    return this.gate(this.inner.encode(job));
  }
  decode(job: DecodeJob): Ticket<DecodeResult> {
    return this.gate(this.inner.decode(job));
  }
  hash(job: HashJob): Ticket<HashResult> {
    return this.gate(this.inner.hash(job));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

test("when the page workers break, both sides carry on on their own thread and stay exact", () => {
  for (let seed = 1; seed <= 8; seed++) {
    const p = pairOf(seed, {
      workers: (_name, defer) => new BreakingWorkers(new InlineWorkers({ defer }), 40 + seed * 7),
      inlinePages: 0,
    });
    p.world.run(() => p.a.node.state === "protected", 3000);
    p.world.runFor(400);
    const where = `seed ${seed}`;
    assert.equal(p.a.node.state, "protected", where);
    assert.ok(p.cluster.history.events("checkpoint.committed", "a").length > 30, where);
    assert.deepEqual(check(p.cluster.history), [], where);
  }
});

test("switching compression off and on forgets the XOR bases: the backup stays exact", () => {
  const { world, cluster, a } = protectedPair(9, { workload: "dirty:rate=20000,hot=0.05,pattern=zipf" });
  for (let i = 0; i < 6; i++) {
    world.runFor(40);
    a.node.reconfigure({ compress: i % 2 === 1 });
  }
  world.runFor(100);
  assert.equal(a.node.state, "protected");
  assert.deepEqual(check(cluster.history), []);
});

test("adaptive epochs: checkpoints in flight never hold more than the configured bytes, and the status shows the rate", () => {
  const cap = 500 * 4096;
  const { world, cluster, a } = protectedPair(12, {
    maxInFlight: 8,
    maxInFlightBytes: cap,
    workload: "dirty:rate=30000,hot=0.5,pattern=uniform",
  });
  // A slow link: acks take far longer than the 5 ms interval.
  cluster.repl.link("a", "b").delay(15, 10);
  let most = 0;
  let several = 0;
  world.every(1, () => {
    const s = a.node.primary?.status();
    if (!s) return;
    if (s.inFlight > 1) {
      several++;
      most = Math.max(most, s.inFlightBytes);
    }
  });
  world.runFor(600);
  assert.ok(several > 0, "never more than one checkpoint in flight");
  assert.ok(most <= cap, `${most} bytes in flight, cap ${cap}`);
  const rate = a.node.primary?.status().checkpointRate;
  assert.ok(rate !== undefined && rate > 0 && rate < 1000 / 5, `rate ${rate}`);
  assert.deepEqual(check(cluster.history), []);
});
