import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { DirtyLog, GuestMemory, PAGE_SIZE, PlainMemory } from "../../src/domain/memory.js";
import { isRemusError } from "../../src/errors.js";

const PAGES = 64;

type Op =
  | { k: "u8" | "u16" | "u32"; addr: number; v: number }
  | { k: "u64"; addr: number; v: number }
  | { k: "bytes"; addr: number; data: Uint8Array }
  | { k: "fill"; addr: number; len: number; v: number }
  | { k: "copy"; dst: number; src: number; len: number }
  | { k: "read"; addr: number; len: number };

const size = PAGES * PAGE_SIZE;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant("u8" as const), addr: fc.nat(size - 1), v: fc.nat(255) }),
  fc.record({ k: fc.constant("u16" as const), addr: fc.nat(size - 2), v: fc.nat(0xffff) }),
  fc.record({ k: fc.constant("u32" as const), addr: fc.nat(size - 4), v: fc.nat(0xffffffff) }),
  fc.record({ k: fc.constant("u64" as const), addr: fc.nat(size - 8), v: fc.maxSafeNat() }),
  fc
    .record({ addr: fc.nat(size - 1), data: fc.uint8Array({ minLength: 0, maxLength: 9000 }) })
    .map(({ addr, data }) => ({ k: "bytes" as const, addr: Math.min(addr, size - data.length), data })),
  fc
    .record({ addr: fc.nat(size - 1), len: fc.nat(10000), v: fc.nat(255) })
    .map(({ addr, len, v }) => ({ k: "fill" as const, addr: Math.min(addr, size - len), len, v })),
  fc.record({ dst: fc.nat(size - 1), src: fc.nat(size - 1), len: fc.nat(6000) }).map(({ dst, src, len }) => ({
    k: "copy" as const,
    dst: Math.min(dst, size - len),
    src: Math.min(src, size - len),
    len,
  })),
  fc
    .record({ addr: fc.nat(size - 1), len: fc.nat(8192) })
    .map(({ addr, len }) => ({ k: "read" as const, addr: Math.min(addr, size - len), len })),
);

function apply(m: GuestMemory, op: Op): void {
  switch (op.k) {
    case "u8":
      m.setU8(op.addr, op.v);
      break;
    case "u16":
      m.setU16(op.addr, op.v);
      break;
    case "u32":
      m.setU32(op.addr, op.v);
      break;
    case "u64":
      m.setU64(op.addr, op.v);
      break;
    case "bytes":
      m.write(op.addr, op.data);
      break;
    case "fill":
      m.fill(op.addr, op.len, op.v);
      break;
    case "copy":
      m.copyWithin(op.dst, op.src, op.len);
      break;
    case "read":
      m.read(op.addr, op.len);
      m.u32(op.addr - (op.addr % 4));
      break;
  }
}

/** Pages a write could have touched: used to tell "written with the same value" from "missed". */
function span(op: Op): [number, number] | undefined {
  const r = (a: number, n: number): [number, number] | undefined =>
    n === 0 ? undefined : [Math.floor(a / PAGE_SIZE), Math.floor((a + n - 1) / PAGE_SIZE)];
  switch (op.k) {
    case "u8":
      return r(op.addr, 1);
    case "u16":
      return r(op.addr, 2);
    case "u32":
      return r(op.addr, 4);
    case "u64":
      return r(op.addr, 8);
    case "bytes":
      return r(op.addr, op.data.length);
    case "fill":
      return r(op.addr, op.len);
    case "copy":
      return r(op.dst, op.len);
    case "read":
      return undefined;
  }
}

test("dirty tracking is exact: no missed and no spurious dirty page (property)", () => {
  fc.assert(
    fc.property(
      fc.array(opArb, { maxLength: 40 }),
      fc.uint8Array({ minLength: 8, maxLength: 8 }),
      (ops, seedBytes) => {
        const m = new GuestMemory(size);
        // Start from non-zero memory so equal-value writes are possible and detectable.
        for (let p = 0; p < PAGES; p++)
          m.buf.fill(seedBytes[p % 8] as number, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
        m.log.clear();
        const before = Buffer.from(m.buf);
        const touched = new Set<number>();
        for (const op of ops) {
          apply(m, op);
          const s = span(op);
          if (s) for (let p = s[0]; p <= s[1]; p++) touched.add(p);
        }
        const dirty = new Set(m.log.drain());
        for (let p = 0; p < PAGES; p++) {
          const changed =
            before.compare(m.buf, p * PAGE_SIZE, (p + 1) * PAGE_SIZE, p * PAGE_SIZE, (p + 1) * PAGE_SIZE) !==
            0;
          // Every changed page is dirty (no miss); every dirty page was written (no spurious mark).
          if (changed) assert.ok(dirty.has(p), `page ${p} changed but is not dirty`);
          assert.equal(
            dirty.has(p),
            touched.has(p),
            `page ${p}: dirty=${dirty.has(p)} written=${touched.has(p)}`,
          );
        }
        assert.equal(m.log.count, 0);
      },
    ),
    { seed: 20261127, numRuns: 300 },
  );
});

test("reads never dirty", () => {
  const m = new GuestMemory(size);
  m.u8(5);
  m.u64(4096 * 3);
  m.read(100, 9000);
  m.view(0, 100);
  const dst = Buffer.alloc(50);
  m.readInto(4096 * 10, dst, 0, 50);
  m.equals(0, dst, 0, 50);
  assert.equal(m.log.count, 0);
});

test("drain returns sorted unique pfns and clears; peek shows insertion order", () => {
  const log = new DirtyLog(1000);
  for (const p of [900, 3, 3, 512, 0, 999, 512]) log.mark(p);
  assert.deepEqual([...log.peek()], [900, 3, 512, 0, 999]);
  assert.deepEqual([...log.drain()], [0, 3, 512, 900, 999]);
  assert.equal(log.count, 0);
  assert.equal(log.has(3), false);
  log.mark(7);
  assert.deepEqual([...log.drain(undefined, false)], [7]);
});

test("out-of-range and oversized accesses throw a typed error and change nothing", () => {
  const m = new GuestMemory(size);
  m.setU32(0, 42);
  m.log.clear();
  const snapshot = Buffer.from(m.buf);
  const cases: (() => void)[] = [
    () => m.setU8(size, 1),
    () => m.setU32(size - 3, 1),
    () => m.setU64(-1, 1),
    () => m.write(size - 10, Buffer.alloc(11)),
    () => m.fill(size - 1, 2, 1),
    () => m.writePage(PAGES, Buffer.alloc(PAGE_SIZE)),
    () => m.writePage(-1, Buffer.alloc(PAGE_SIZE)),
    () => m.setU64(0, 2 ** 60),
    () => m.copyWithin(size - 4, 0, 5),
    () => m.u32(size),
  ];
  for (const c of cases) {
    assert.throws(c, (e) => isRemusError(e) && /OUT_OF_RANGE/.test(e.code));
  }
  assert.equal(m.log.count, 0);
  assert.equal(Buffer.compare(snapshot, m.buf), 0);
});

test("a 4096 MiB domain can be created and addressed at its last byte", () => {
  const m = new GuestMemory(4096 * 1024 * 1024);
  assert.equal(m.pages, 1048576);
  m.setU64(m.size - 8, 123456789);
  assert.equal(m.u64(m.size - 8), 123456789);
  assert.deepEqual([...m.log.drain()], [1048575]);
  assert.throws(() => new GuestMemory(4096 * 1024 * 1024 + 4096), /4096 MiB/);
});

test("PlainMemory behaves like GuestMemory without a log", () => {
  const m = new PlainMemory(8192);
  m.setU64(8, 2 ** 40 + 5);
  assert.equal(m.u64(8), 2 ** 40 + 5);
  m.write(4090, Buffer.from("hello world"));
  assert.equal(m.read(4090, 11).toString(), "hello world");
});
