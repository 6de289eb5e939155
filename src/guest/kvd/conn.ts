/**
 * kvd's connection block (offsets `CN` in layout.ts): a stateless handle on
 * one client's input and output buffers, parse progress, name and counters,
 * all in guest memory. Output bytes are never dropped: they wait in the
 * output buffer, [head, head+len), until the socket's send buffer takes them.
 */
import type { GuestMemory } from "../../domain/memory.js";
import { PAGE_SIZE } from "../../domain/memory.js";
import type { NetStack } from "../../net/stack.js";
import type { Heap } from "../mm.js";
import { BUF_MIN, CN } from "./layout.js";
import type { ParseProgress } from "./proto.js";

export function roundPages(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

/** A handle on one connection block. */
export class Conn {
  constructor(
    readonly mem: GuestMemory,
    readonly heap: Heap,
    readonly c: number,
  ) {}
  get(off: number): number {
    return this.mem.u32(this.c + off);
  }
  set(off: number, v: number): void {
    this.mem.setU32(this.c + off, v);
  }
  get sock(): number {
    return this.get(CN.sock);
  }
  hasFlag(f: number): boolean {
    return (this.get(CN.flags) & f) !== 0;
  }
  setFlag(f: number, on: boolean): void {
    const v = this.get(CN.flags);
    this.set(CN.flags, on ? v | f : v & ~f);
  }
  get outLen(): number {
    return this.get(CN.outLen);
  }

  /** Makes room for `n` more output bytes; false when the heap cannot provide it. */
  outEnsure(n: number): boolean {
    const m = this.mem;
    const cap = this.get(CN.outCap);
    const head = this.get(CN.outHead);
    const len = this.get(CN.outLen);
    if (head + len + n <= cap) return true;
    const buf = this.get(CN.outBuf);
    if (len + n <= cap) {
      m.copyWithin(buf, buf + head, len);
      this.set(CN.outHead, 0);
      return true;
    }
    const newCap = Math.max(BUF_MIN, cap * 2, roundPages(len + n));
    const nb = this.heap.tryAlloc(newCap);
    if (nb === 0) return false;
    if (len > 0) m.copyWithin(nb, buf + head, len);
    if (buf !== 0) this.heap.free(buf, cap);
    this.set(CN.outBuf, nb);
    this.set(CN.outCap, newCap);
    this.set(CN.outHead, 0);
    return true;
  }

  /** Appends bytes; room must have been ensured. */
  put(b: Uint8Array): void {
    const at = this.get(CN.outBuf) + this.get(CN.outHead) + this.get(CN.outLen);
    this.mem.write(at, b);
    this.set(CN.outLen, this.get(CN.outLen) + b.length);
  }

  /** Appends `len` bytes of guest memory at `addr`; room must have been ensured. */
  putMem(addr: number, len: number): void {
    const at = this.get(CN.outBuf) + this.get(CN.outHead) + this.get(CN.outLen);
    this.mem.copyWithin(at, addr, len);
    this.set(CN.outLen, this.get(CN.outLen) + len);
  }

  /** Moves pending output into the socket's send buffer. False when the connection can no longer send. */
  flush(stack: NetStack): boolean {
    const len = this.get(CN.outLen);
    if (len > 0) {
      const head = this.get(CN.outHead);
      const n = stack.send(this.sock, this.mem.view(this.get(CN.outBuf) + head, len));
      if (n < 0) return false;
      this.set(CN.outHead, n === len ? 0 : head + n);
      this.set(CN.outLen, len - n);
    }
    // An idle large buffer goes back to the heap.
    const cap = this.get(CN.outCap);
    if (this.get(CN.outLen) === 0 && cap > BUF_MIN) {
      this.heap.free(this.get(CN.outBuf), cap);
      this.set(CN.outBuf, 0);
      this.set(CN.outCap, 0);
      this.set(CN.outHead, 0);
    }
    return true;
  }

  /** The name given with CLIENT SETNAME (empty: none). */
  get name(): Buffer {
    const len = this.get(CN.nameLen);
    return len === 0 ? Buffer.alloc(0) : this.mem.read(this.get(CN.name), len);
  }

  /** Replaces the name (empty clears it). False when the heap cannot hold it (nothing changed). */
  setName(name: Uint8Array): boolean {
    const nb = name.length === 0 ? 0 : this.heap.tryAlloc(name.length);
    if (name.length > 0 && nb === 0) return false;
    if (nb !== 0) this.mem.write(nb, name);
    const old = this.get(CN.name);
    if (old !== 0) this.heap.free(old, this.get(CN.nameLen));
    this.set(CN.name, nb);
    this.set(CN.nameLen, name.length);
    return true;
  }

  freeBuffers(): void {
    const ib = this.get(CN.inBuf);
    if (ib !== 0) this.heap.free(ib, this.get(CN.inCap));
    const ob = this.get(CN.outBuf);
    if (ob !== 0) this.heap.free(ob, this.get(CN.outCap));
    const nb = this.get(CN.name);
    if (nb !== 0) this.heap.free(nb, this.get(CN.nameLen));
  }

  progress(): ParseProgress {
    return { argc: this.get(CN.pArgc), done: this.get(CN.pDone), off: this.get(CN.pOff) };
  }
  setProgress(p: ParseProgress): void {
    this.set(CN.pArgc, p.argc);
    this.set(CN.pDone, p.done);
    this.set(CN.pOff, p.off);
  }
}
