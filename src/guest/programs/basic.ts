/**
 * The guest's basic programs: init, the counter (the continuity canary), the
 * memory dirtier and the disk writer. Program ids are part of the guest ABI.
 * Each program's state lives in its process's state block in guest memory.
 */
import { PAGE_SIZE } from "../../domain/memory.js";
import { isRemusError } from "../../errors.js";
import { type Kernel, type Proc, ProcState, registerProgram } from "../kernel.js";
import { mixTemplates, TEMPLATE_PAGES } from "../pagemix.js";
import { DirtyFill, DirtyPattern } from "../workload.js";

export const PROGRAM = {
  init: 1,
  counter: 2,
  dirtier: 3,
  diskwriter: 4,
} as const;

/** The file the counter appends to. */
export const COUNTER_FILE = "counter.log";

/** init: reaps exited processes and otherwise sleeps. */
registerProgram({
  id: PROGRAM.init,
  name: "init",
  stateSize: 0,
  start() {},
  step(k: Kernel, p: Proc) {
    for (let s = 0; s < 64; s++) {
      const c = k.proc(s);
      if (c.pid !== 0 && c.pid !== p.pid && c.state === ProcState.exited) k.reap(c);
    }
    k.sleep(p, 100_000_000);
  },
});

// counter state: 0 u64 value · 8 u32 fd
/**
 * counter: each tick increments a u64 in memory and appends the new value as a
 * line to counter.log. The value is stored only after the append succeeded, so
 * memory and file agree at every tick boundary (and so at every checkpoint).
 */
registerProgram({
  id: PROGRAM.counter,
  name: "counter",
  stateSize: 16,
  start(k, p) {
    const fd = k.open(p.pid, COUNTER_FILE, { create: true });
    k.mem.setU32(p.stateAddr + 8, fd);
  },
  step(k, p) {
    const st = p.stateAddr;
    const next = k.mem.u64(st) + 1;
    try {
      k.append(p.pid, k.mem.u32(st + 8), Buffer.from(`${next}\n`));
    } catch (e) {
      if (isRemusError(e, "REMUSD_ERR_NO_SPACE")) {
        k.exit(p, 28); // ENOSPC: stop rather than let memory and file disagree
        return;
      }
      throw e;
    }
    k.mem.setU64(st, next);
  },
});

/** The counter's value in memory, or undefined when no counter runs. */
export function counterValue(k: Kernel): number | undefined {
  const p = k.procsOf(PROGRAM.counter)[0];
  return p ? k.mem.u64(p.stateAddr) : undefined;
}

export interface CounterCheck {
  readonly ok: boolean;
  readonly counter: number;
  readonly lines: number;
  readonly lastLine: number;
  readonly error?: string;
}

/** Checks that counter.log holds exactly the lines 1..counter, no gap, no repeat. */
export function verifyCounter(k: Kernel): CounterCheck {
  const counter = counterValue(k) ?? 0;
  const ino = k.fs.lookup(COUNTER_FILE);
  const text = ino < 0 ? "" : k.fs.read(ino, 0, k.fs.size(ino)).toString("latin1");
  const lines = text === "" ? [] : text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  else if (text !== "")
    return { ok: false, counter, lines: lines.length, lastLine: -1, error: "file does not end in a newline" };
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== String(i + 1)) {
      return {
        ok: false,
        counter,
        lines: lines.length,
        lastLine: -1,
        error: `line ${i + 1} is '${lines[i]}'`,
      };
    }
  }
  const ok = lines.length === counter;
  return {
    ok,
    counter,
    lines: lines.length,
    lastLine: lines.length,
    ...(ok ? {} : { error: `counter is ${counter} but the file has ${lines.length} lines` }),
  };
}

// dirtier state: 0 regionAddr · 4 regionPages · 8 rate (pages/s) · 12 pattern | fill << 8 · 16 acc (millipages) · 20 cursor · 24 writes(u64)
/**
 * dirtier: writes `rate` pages per second of guest time within a working set of
 * `hot` x guest memory, choosing pages by pattern. args: [rate, hot in parts
 * per million, pattern, fill (workload.ts DirtyFill)].
 */
registerProgram({
  id: PROGRAM.dirtier,
  name: "dirtier",
  stateSize: 32,
  start(k, p) {
    const st = p.stateAddr;
    const want = Math.max(1, Math.floor((k.domain.pages * p.arg(1)) / 1_000_000));
    // Leave a quarter of free memory for the heap, network buffers and kvd.
    let n = Math.max(1, Math.min(want, Math.floor((k.pages.freePages * 3) / 4)));
    let addr = 0;
    while (n >= 1 && (addr = k.pages.tryAlloc(n)) === 0) n = Math.floor(n / 2);
    if (addr === 0) {
      k.exit(p, 12); // ENOMEM
      return;
    }
    p.pagesOwned = p.pagesOwned + n;
    k.mem.setU32(st, addr);
    k.mem.setU32(st + 4, n);
    k.mem.setU32(st + 8, p.arg(0));
    k.mem.setU32(st + 12, p.arg(2) | (p.arg(3) << 8));
  },
  step(k, p) {
    const m = k.mem;
    const st = p.stateAddr;
    const region = m.u32(st);
    const n = m.u32(st + 4);
    let acc = m.u32(st + 16) + m.u32(st + 8);
    let count = Math.floor(acc / 1000);
    acc -= count * 1000;
    m.setU32(st + 16, acc);
    const pattern = m.u32(st + 12) & 0xff;
    const fill = m.u32(st + 12) >>> 8;
    const tpl =
      fill === DirtyFill.half
        ? mixTemplates("half")
        : fill === DirtyFill.random
          ? mixTemplates("random")
          : undefined;
    let cursor = m.u32(st + 20);
    let writes = m.u64(st + 24);
    while (count-- > 0) {
      let idx: number;
      if (pattern === DirtyPattern.seq) {
        idx = cursor;
        cursor = (cursor + 1) % n;
      } else if (pattern === DirtyPattern.zipf) {
        // Continuous approximation of Zipf(s=1): P(idx = j) ~ 1/(j+1).
        idx = Math.min(n - 1, Math.floor(Math.exp(k.vcpu.randomFloat() * Math.log(n + 1))) - 1);
      } else {
        idx = k.vcpu.randomInt(n);
      }
      writes++;
      if (fill !== DirtyFill.record) {
        // The whole page: zeros, or a template page stamped with the write count.
        const at = region + idx * PAGE_SIZE;
        if (tpl === undefined) m.fill(at, PAGE_SIZE, 0);
        else {
          m.write(at, tpl, (writes % TEMPLATE_PAGES) * PAGE_SIZE, PAGE_SIZE);
          m.setU64(at, writes);
        }
        continue;
      }
      // A 32-byte record at a random 32-byte slot: the page keeps some structure, like real data.
      const a = region + idx * PAGE_SIZE + k.vcpu.randomInt(PAGE_SIZE / 32) * 32;
      m.setU64(a, writes);
      m.setU32(a + 8, k.random32());
      m.setU32(a + 12, idx);
      m.setU64(a + 16, k.nowNs);
      m.setU32(a + 24, 0x5245_4d55);
    }
    m.setU32(st + 20, cursor);
    m.setU64(st + 24, writes);
  },
});

// diskwriter state: 0 rate KiB/s · 4 acc bytes · 8 file index · 12 fd · 16 chunks written (u64)
const DISK_FILES = 16;
const DISK_FILE_BYTES = 256 * 1024;
/**
 * diskwriter: appends 4 KiB chunks to cc-NN.o files at `rate` KiB/s of guest
 * time, cycling over 16 files of 256 KiB (a file is truncated when reused), the
 * disk side of a compile. args: [rate KiB/s].
 */
registerProgram({
  id: PROGRAM.diskwriter,
  name: "diskwriter",
  stateSize: 32,
  start(k, p) {
    k.mem.setU32(p.stateAddr, p.arg(0));
    k.mem.setU32(p.stateAddr + 12, 0);
  },
  step(k, p) {
    const m = k.mem;
    const st = p.stateAddr;
    let acc = m.u32(st + 4) + Math.floor((m.u32(st) * 1024) / 1000);
    while (acc >= 4096) {
      acc -= 4096;
      let fd = m.u32(st + 12);
      if (fd === 0 || k.fstat(p.pid, fd).size >= DISK_FILE_BYTES) {
        if (fd !== 0) k.close(p.pid, fd);
        const idx = (m.u32(st + 8) + (fd === 0 ? 0 : 1)) % DISK_FILES;
        m.setU32(st + 8, idx);
        const name = `cc-${String(idx).padStart(2, "0")}.o`;
        fd = k.open(p.pid, name, { create: true });
        k.fs.truncate(k.fstat(p.pid, fd).ino);
        m.setU32(st + 12, fd);
      }
      const chunks = m.u64(st + 16) + 1;
      m.setU64(st + 16, chunks);
      // Object-file-like content: a repeating header with a varying word (compressible, not constant).
      const chunk = Buffer.alloc(4096);
      for (let o = 0; o < 4096; o += 16) {
        chunk.writeUInt32LE(0x7f454c46, o);
        chunk.writeUInt32LE(chunks, o + 4);
        chunk.writeUInt32LE(k.random32() & 0xff, o + 8);
        chunk.writeUInt32LE(o, o + 12);
      }
      try {
        k.append(p.pid, fd, chunk);
      } catch (e) {
        if (isRemusError(e, "REMUSD_ERR_NO_SPACE")) {
          k.exit(p, 28);
          return;
        }
        throw e;
      }
    }
    m.setU32(st + 4, acc);
  },
});
