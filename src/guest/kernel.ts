/**
 * The guest kernel: a deterministic round-robin scheduler, a process table, a
 * page allocator and heap for process memory, and the open-file table over
 * RMFS. Every byte of kernel state lives in guest pages (page 0 holds the
 * kernel header); `Kernel` is a stateless handle that can be re-created on any
 * domain holding the same bytes, which is what makes a restored domain carry on
 * exactly.
 *
 * Guest memory layout:
 *   page 0                 kernel header (below), page-allocator and heap headers
 *   pages 1 .. 1+B         page-allocator bitmap (1 bit per page)
 *   next 4 pages           process table: 64 slots of 128 bytes
 *   next 1 page            open-file table: 128 slots of 32 bytes
 *   the rest               managed by the page allocator (heap, process memory, net)
 *
 * Kernel header (u32 LE unless noted):
 *   0x00 magic "RMSK" · 0x04 version · 0x08 pages · 0x0c bootSeed · 0x10 procTable ·
 *   0x14 procSlots · 0x18 nextPid · 0x1c rrCursor · 0x20 fileTable · 0x24 fileSlots ·
 *   0x28 netRoot (0 = no network) · 0x30 flags · 0x40 page allocator header (32 bytes) ·
 *   0x80 heap header · 0x100.. reserved
 *
 * Process slot (128 bytes): 0 pid · 4 ppid · 8 u8 state · 9 u8 program · 10 u16 flags ·
 *   12 pagesOwned · 16 u64 ticksRun · 24 u64 wakeAtNs · 32 stateAddr · 36 stateSize ·
 *   40 exitCode · 44 args[5] · 64 name[32] · 96 reserved
 *
 * Open-file slot (32 bytes): 0 pid (0 = free) · 4 fd · 8 ino · 12 flags · 16 u64 offset · 24 reserved
 */
import type { Domain } from "../domain/domain.js";
import type { GuestMemory } from "../domain/memory.js";
import { PAGE_SIZE } from "../domain/memory.js";
import { RemusError } from "../errors.js";
import { FileSystem } from "./fs.js";
import { Heap, PageAllocator } from "./mm.js";

export const KERNEL_MAGIC = 0x4b534d52;
export const KERNEL_VERSION = 1;
/** One scheduler tick is one millisecond of guest time. */
export const TICK_NS = 1_000_000;

export const KH = {
  magic: 0x00,
  version: 0x04,
  pages: 0x08,
  bootSeed: 0x0c,
  procTable: 0x10,
  procSlots: 0x14,
  nextPid: 0x18,
  rrCursor: 0x1c,
  fileTable: 0x20,
  fileSlots: 0x24,
  netRoot: 0x28,
  flags: 0x30,
  pageAlloc: 0x40,
  heap: 0x80,
} as const;

export const PROC_SLOTS = 64;
const PROC_SIZE = 128;
const FILE_SLOTS = 128;
const FILE_SIZE = 32;
export const PROC_NAME_MAX = 31;

export const ProcState = { free: 0, runnable: 1, sleeping: 2, exited: 3 } as const;
export type ProcStateName = keyof typeof ProcState;
const STATE_NAMES: Record<number, ProcStateName> = { 0: "free", 1: "runnable", 2: "sleeping", 3: "exited" };

export const OpenFlags = { read: 1, append: 2 } as const;

const P = {
  pid: 0,
  ppid: 4,
  state: 8,
  program: 9,
  flags: 10,
  pagesOwned: 12,
  ticksRun: 16,
  wakeAt: 24,
  stateAddr: 32,
  stateSize: 36,
  exitCode: 40,
  args: 44,
  name: 64,
} as const;

/** What the process table says about one process (`GET /v1/domain/processes`). */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  name: string;
  program: string;
  state: ProcStateName;
  ticks: number;
  pages: number;
  exitCode: number;
}

/** A guest program: stateless code; its state lives in the block `stateAddr` of its process. */
export interface Program {
  readonly id: number;
  readonly name: string;
  /** Bytes of private state the kernel allocates for it (zeroed). */
  readonly stateSize: number;
  /** Runs once when spawned, with its arguments. */
  start(k: Kernel, p: Proc): void;
  /** Runs once per tick while the process is runnable. */
  step(k: Kernel, p: Proc): void;
  /**
   * A server driven by the network: it also runs at a receive interrupt
   * (`Kernel.interrupt`), as a process blocked in poll() would be woken by
   * the NIC's interrupt instead of waiting for the next timer tick.
   */
  readonly wakeOnNetwork?: boolean;
}

const programs = new Map<number, Program>();

/** Registers a program under its id (ids are part of the guest ABI: never reuse one). */
export function registerProgram(p: Program): void {
  const prev = programs.get(p.id);
  if (prev && prev !== p) throw new RemusError("REMUSD_ERR_INTERNAL", `program id ${p.id} registered twice`);
  programs.set(p.id, p);
}

/** A handle on one process-table slot. */
export class Proc {
  constructor(
    readonly k: Kernel,
    readonly slot: number,
  ) {}
  private get base(): number {
    return this.k.procTable + this.slot * PROC_SIZE;
  }
  private get mem(): GuestMemory {
    return this.k.mem;
  }
  get pid(): number {
    return this.mem.u32(this.base + P.pid);
  }
  get ppid(): number {
    return this.mem.u32(this.base + P.ppid);
  }
  get state(): number {
    return this.mem.u8(this.base + P.state);
  }
  set state(v: number) {
    this.mem.setU8(this.base + P.state, v);
  }
  get program(): number {
    return this.mem.u8(this.base + P.program);
  }
  get stateAddr(): number {
    return this.mem.u32(this.base + P.stateAddr);
  }
  get ticksRun(): number {
    return this.mem.u64(this.base + P.ticksRun);
  }
  get pagesOwned(): number {
    return this.mem.u32(this.base + P.pagesOwned);
  }
  set pagesOwned(v: number) {
    this.mem.setU32(this.base + P.pagesOwned, v);
  }
  get wakeAtNs(): number {
    return this.mem.u64(this.base + P.wakeAt);
  }
  set wakeAtNs(v: number) {
    this.mem.setU64(this.base + P.wakeAt, v);
  }
  get exitCode(): number {
    return this.mem.u32(this.base + P.exitCode);
  }
  arg(i: number): number {
    return this.mem.u32(this.base + P.args + i * 4);
  }
  get name(): string {
    const v = this.mem.view(this.base + P.name, 32);
    const end = v.indexOf(0);
    return v.toString("utf8", 0, end < 0 ? 32 : end);
  }
  /** @internal used by the scheduler */
  countTick(): void {
    this.mem.setU64(this.base + P.ticksRun, this.ticksRun + 1);
  }
  /** @internal */
  init(pid: number, ppid: number, program: number, name: string, args: readonly number[]): void {
    const b = this.base;
    this.mem.fill(b, PROC_SIZE, 0);
    this.mem.setU32(b + P.pid, pid);
    this.mem.setU32(b + P.ppid, ppid);
    this.mem.setU8(b + P.state, ProcState.runnable);
    this.mem.setU8(b + P.program, program);
    for (let i = 0; i < args.length; i++) this.mem.setU32(b + P.args + i * 4, args[i] as number);
    const nb = Buffer.from(name, "utf8").subarray(0, PROC_NAME_MAX);
    this.mem.write(b + P.name, nb);
  }
  /** @internal */
  setStateBlock(addr: number, size: number): void {
    this.mem.setU32(this.base + P.stateAddr, addr);
    this.mem.setU32(this.base + P.stateSize, size);
  }
  get stateSize(): number {
    return this.mem.u32(this.base + P.stateSize);
  }
  /** @internal */
  setExit(code: number): void {
    this.mem.setU32(this.base + P.exitCode, code >>> 0);
    this.mem.setU8(this.base + P.state, ProcState.exited);
  }
  /** @internal */
  clear(): void {
    this.mem.fill(this.base, PROC_SIZE, 0);
  }
}

export interface BootOptions {
  readonly seed: number;
}

/** Hooks run by the kernel each tick before the processes (the network's soft interrupt). */
export type TickHook = (k: Kernel) => void;
const tickHooks: TickHook[] = [];
export function registerTickHook(h: TickHook): void {
  if (!tickHooks.includes(h)) tickHooks.push(h);
}

export class Kernel {
  readonly mem: GuestMemory;
  readonly pages: PageAllocator;
  readonly heap: Heap;
  readonly fs: FileSystem;

  constructor(readonly domain: Domain) {
    this.mem = domain.memory;
    if (this.mem.u32(KH.magic) !== KERNEL_MAGIC || this.mem.u32(KH.version) !== KERNEL_VERSION) {
      throw new RemusError("REMUSD_ERR_CORRUPT", "guest memory holds no booted kernel");
    }
    this.pages = new PageAllocator(this.mem, KH.pageAlloc);
    this.heap = new Heap(this.mem, KH.heap);
    this.fs = new FileSystem(domain.disk);
  }

  static isBooted(domain: Domain): boolean {
    return domain.memory.u32(KH.magic) === KERNEL_MAGIC;
  }

  /**
   * Boots a fresh kernel into `domain`: resets the vCPU with `seed`, lays out
   * kernel memory, formats the disk if it holds no file system, and starts init.
   */
  static boot(domain: Domain, opts: BootOptions): Kernel {
    const mem = domain.memory;
    const pages = domain.pages;
    domain.vcpu.reset(opts.seed);
    const bitmapPages = Math.ceil(PageAllocator.bitmapBytes(pages) / PAGE_SIZE);
    const procTable = (1 + bitmapPages) * PAGE_SIZE;
    const procPages = (PROC_SLOTS * PROC_SIZE) / PAGE_SIZE;
    const fileTable = procTable + procPages * PAGE_SIZE;
    const filePages = Math.ceil((FILE_SLOTS * FILE_SIZE) / PAGE_SIZE);
    const firstFree = fileTable / PAGE_SIZE + filePages;
    if (firstFree + 16 > pages)
      throw new RemusError("REMUSD_ERR_BAD_GEOMETRY", "domain too small for the kernel");
    mem.fill(0, firstFree * PAGE_SIZE, 0);
    mem.setU32(KH.version, KERNEL_VERSION);
    mem.setU32(KH.pages, pages);
    mem.setU32(KH.bootSeed, opts.seed >>> 0);
    mem.setU32(KH.procTable, procTable);
    mem.setU32(KH.procSlots, PROC_SLOTS);
    mem.setU32(KH.nextPid, 1);
    mem.setU32(KH.fileTable, fileTable);
    mem.setU32(KH.fileSlots, FILE_SLOTS);
    const pa = PageAllocator.format(mem, KH.pageAlloc, PAGE_SIZE, firstFree, pages - firstFree);
    Heap.format(mem, KH.heap, pa);
    if (!FileSystem.isFormatted(domain.disk)) FileSystem.format(domain.disk);
    mem.setU32(KH.magic, KERNEL_MAGIC);
    const k = new Kernel(domain);
    k.spawn(INIT_PROGRAM_ID, "init", [], 0);
    return k;
  }

  get procTable(): number {
    return this.mem.u32(KH.procTable);
  }
  get vcpu() {
    return this.domain.vcpu;
  }
  /** Guest time in nanoseconds. */
  get nowNs(): number {
    return this.domain.vcpu.clockNs;
  }
  get nowMs(): number {
    return this.domain.vcpu.clockMs;
  }
  random32(): number {
    return this.domain.vcpu.random32();
  }
  header(field: keyof typeof KH): number {
    return this.mem.u32(KH[field]);
  }
  setHeader(field: keyof typeof KH, v: number): void {
    this.mem.setU32(KH[field], v);
  }

  proc(slot: number): Proc {
    return new Proc(this, slot);
  }

  /** The process with `pid`, or undefined. */
  findProc(pid: number): Proc | undefined {
    for (let s = 0; s < PROC_SLOTS; s++) {
      const p = this.proc(s);
      if (p.pid === pid) return p;
    }
    return undefined;
  }

  /** Processes of a program (by id) that have not exited. */
  procsOf(programId: number): Proc[] {
    const out: Proc[] = [];
    for (let s = 0; s < PROC_SLOTS; s++) {
      const p = this.proc(s);
      if (p.pid !== 0 && p.program === programId && p.state !== ProcState.exited) out.push(p);
    }
    return out;
  }

  /** Starts a process running `programId`. Returns its pid. */
  spawn(programId: number, name: string, args: readonly number[], ppid: number): number {
    const prog = programs.get(programId);
    if (!prog) throw new RemusError("REMUSD_ERR_NOT_FOUND", `no guest program with id ${programId}`);
    if (args.length > 5) throw new RemusError("REMUSD_ERR_BAD_REQUEST", "at most 5 process arguments");
    let slot = -1;
    for (let s = 0; s < PROC_SLOTS; s++) {
      if (this.proc(s).pid === 0) {
        slot = s;
        break;
      }
    }
    if (slot < 0) throw new RemusError("REMUSD_ERR_NO_SPACE", "process table full");
    const stateAddr = prog.stateSize > 0 ? this.heap.alloc(prog.stateSize) : 0;
    const pid = this.header("nextPid");
    this.setHeader("nextPid", pid + 1);
    const p = this.proc(slot);
    p.init(pid, ppid, programId, name, args);
    p.setStateBlock(stateAddr, prog.stateSize);
    p.pagesOwned = Math.ceil(Heap.reserved(Math.max(prog.stateSize, 1)) / PAGE_SIZE);
    prog.start(this, p);
    return pid;
  }

  /** Allocates `n` zeroed pages for `p`, charged to it. */
  allocPages(p: Proc, n: number): number {
    const a = this.pages.alloc(n);
    p.pagesOwned = p.pagesOwned + n;
    return a;
  }

  sleep(p: Proc, ns: number): void {
    p.wakeAtNs = this.nowNs + ns;
    p.state = ProcState.sleeping;
  }

  /** Ends `p`: closes its files; its slot stays as `exited` until init reaps it. */
  exit(p: Proc, code: number): void {
    this.closeAll(p.pid);
    p.setExit(code);
  }

  /** Frees an exited process's slot and state block (init does this). */
  reap(p: Proc): void {
    if (p.state !== ProcState.exited) return;
    if (p.stateAddr !== 0) this.heap.free(p.stateAddr, p.stateSize);
    p.clear();
  }

  /**
   * One tick: advance guest time by TICK_NS, run the tick hooks, then every
   * runnable process once, starting from a cursor that rotates each tick.
   */
  tick(): void {
    const vcpu = this.domain.vcpu;
    if (vcpu.halted) return;
    vcpu.tick(TICK_NS);
    for (const h of tickHooks) h(this);
    const now = vcpu.clockNs;
    const start = this.header("rrCursor");
    for (let i = 0; i < PROC_SLOTS; i++) {
      const p = this.proc((start + i) % PROC_SLOTS);
      if (p.pid === 0) continue;
      let st = p.state;
      if (st === ProcState.sleeping && p.wakeAtNs <= now) {
        p.state = ProcState.runnable;
        st = ProcState.runnable;
      }
      if (st !== ProcState.runnable) continue;
      const prog = programs.get(p.program);
      if (!prog) {
        this.exit(p, 127);
        continue;
      }
      p.countTick();
      vcpu.pc = vcpu.pc + 1;
      prog.step(this, p);
    }
    this.setHeader("rrCursor", (start + 1) % PROC_SLOTS);
  }

  /**
   * A receive interrupt between two ticks: the tick hooks (the network's
   * soft interrupt: rx ring into the stack, its output into the tx ring) and
   * then the runnable processes that wait on the network
   * (`Program.wakeOnNetwork`), each once. Guest time does not move and no
   * other process runs, so a workload does no more work per second than its
   * ticks give it; what a server answers leaves now instead of a tick later.
   * Why it exists: a guest that reads its input only on the 1 ms tick adds
   * up to a tick to every request on each replica (in COLO on both, one
   * after the other), which is most of COLO's added latency.
   */
  interrupt(): void {
    if (this.domain.vcpu.halted) return;
    for (const h of tickHooks) h(this);
    for (let i = 0; i < PROC_SLOTS; i++) {
      const p = this.proc(i);
      if (p.pid === 0 || p.state !== ProcState.runnable) continue;
      const prog = programs.get(p.program);
      if (prog?.wakeOnNetwork) prog.step(this, p);
    }
  }

  /** Runs `n` ticks. */
  run(n: number): void {
    for (let i = 0; i < n; i++) this.tick();
  }

  listProcesses(): ProcessInfo[] {
    const out: ProcessInfo[] = [];
    for (let s = 0; s < PROC_SLOTS; s++) {
      const p = this.proc(s);
      if (p.pid === 0) continue;
      out.push({
        pid: p.pid,
        ppid: p.ppid,
        name: p.name,
        program: programs.get(p.program)?.name ?? `program-${p.program}`,
        state: STATE_NAMES[p.state] ?? "free",
        ticks: p.ticksRun,
        pages: p.pagesOwned,
        exitCode: p.exitCode,
      });
    }
    return out.sort((a, b) => a.pid - b.pid);
  }

  // ---- open-file table ----
  private fileSlot(i: number): number {
    return this.header("fileTable") + i * FILE_SIZE;
  }

  private findFd(pid: number, fd: number): number {
    for (let i = 0; i < FILE_SLOTS; i++) {
      const a = this.fileSlot(i);
      if (this.mem.u32(a) === pid && this.mem.u32(a + 4) === fd) return a;
    }
    throw new RemusError("REMUSD_ERR_BAD_FD", `process ${pid} has no open file ${fd}`);
  }

  /** Opens (or with `create`, creates) a file for `pid`; returns the lowest free fd (from 3). */
  open(pid: number, name: string, opts: { create?: boolean; flags?: number } = {}): number {
    let ino = this.fs.lookup(name);
    let free = -1;
    const used = new Set<number>();
    for (let i = 0; i < FILE_SLOTS; i++) {
      const a = this.fileSlot(i);
      const owner = this.mem.u32(a);
      if (owner === 0 && free < 0) free = i;
      if (owner === pid) used.add(this.mem.u32(a + 4));
    }
    if (free < 0) throw new RemusError("REMUSD_ERR_NO_SPACE", "open-file table full");
    if (ino < 0) {
      if (!opts.create) throw new RemusError("REMUSD_ERR_NOT_FOUND", `no file ${name}`);
      ino = this.fs.create(name);
    }
    let fd = 3;
    while (used.has(fd)) fd++;
    const a = this.fileSlot(free);
    this.mem.setU32(a, pid);
    this.mem.setU32(a + 4, fd);
    this.mem.setU32(a + 8, ino);
    this.mem.setU32(a + 12, opts.flags ?? OpenFlags.read | OpenFlags.append);
    this.mem.setU64(a + 16, 0);
    return fd;
  }

  /** Appends to the file; returns its new size. All or nothing. */
  append(pid: number, fd: number, data: Uint8Array): number {
    const a = this.findFd(pid, fd);
    return this.fs.append(this.mem.u32(a + 8), data);
  }

  /** Reads up to `max` bytes from the fd's offset and advances it. */
  read(pid: number, fd: number, max: number): Buffer {
    const a = this.findFd(pid, fd);
    const off = this.mem.u64(a + 16);
    const data = this.fs.read(this.mem.u32(a + 8), off, max);
    if (data.length > 0) this.mem.setU64(a + 16, off + data.length);
    return data;
  }

  /** The read offset of an open file. */
  tell(pid: number, fd: number): number {
    return this.mem.u64(this.findFd(pid, fd) + 16);
  }

  seek(pid: number, fd: number, offset: number): void {
    const a = this.findFd(pid, fd);
    const size = this.fs.size(this.mem.u32(a + 8));
    if (!Number.isInteger(offset) || offset < 0 || offset > size) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `seek to ${offset} outside [0, ${size}]`);
    }
    this.mem.setU64(a + 16, offset);
  }

  fstat(pid: number, fd: number): { ino: number; size: number; offset: number } {
    const a = this.findFd(pid, fd);
    const ino = this.mem.u32(a + 8);
    return { ino, size: this.fs.size(ino), offset: this.mem.u64(a + 16) };
  }

  close(pid: number, fd: number): void {
    const a = this.findFd(pid, fd);
    this.mem.fill(a, FILE_SIZE, 0);
  }

  private closeAll(pid: number): void {
    for (let i = 0; i < FILE_SLOTS; i++) {
      const a = this.fileSlot(i);
      if (this.mem.u32(a) === pid) this.mem.fill(a, FILE_SIZE, 0);
    }
  }

  /** The open-file table: (pid, fd, inode, offset) of every open file. */
  openFiles(): { pid: number; fd: number; ino: number; offset: number }[] {
    const out: { pid: number; fd: number; ino: number; offset: number }[] = [];
    for (let i = 0; i < FILE_SLOTS; i++) {
      const a = this.fileSlot(i);
      const pid = this.mem.u32(a);
      if (pid !== 0)
        out.push({ pid, fd: this.mem.u32(a + 4), ino: this.mem.u32(a + 8), offset: this.mem.u64(a + 16) });
    }
    return out;
  }
}

export const INIT_PROGRAM_ID = 1;
