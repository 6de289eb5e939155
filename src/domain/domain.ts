/**
 * A domain: guest memory in log-dirty mode, the vCPU block, the device block
 * and the virtual disk, plus the incrementally maintained digest. This is the
 * whole state that a checkpoint carries; code that runs the guest keeps nothing
 * anywhere else.
 */
import { RemusError } from "../errors.js";
import { DEVICE_SIZE, DeviceState } from "./device.js";
import { combineDigest, fullDigest, SumHasher } from "./digest.js";
import { BLOCK_SIZE, VirtualDisk } from "./disk.js";
import type { DivergenceSwitch } from "./divergence.js";
import { GuestMemory, PAGE_SIZE } from "./memory.js";
import { VCPU_SIZE, Vcpu } from "./vcpu.js";

export interface DomainGeometry {
  /** Guest memory in bytes (a multiple of 4096, at most 4096 MiB). */
  readonly memoryBytes: number;
  /** Virtual disk in bytes (a multiple of 4096, at most 4096 MiB). */
  readonly diskBytes: number;
}

export const DEFAULT_DOMAIN_MIB = 64;
export const DEFAULT_DISK_MIB = 64;

export function geometryOfMiB(memoryMiB: number, diskMiB: number): DomainGeometry {
  for (const [name, v] of [
    ["--domain-mib", memoryMiB],
    ["--disk-mib", diskMiB],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 4096) {
      throw new RemusError("REMUSD_ERR_BAD_GEOMETRY", `${name} must be an integer from 1 to 4096, got ${v}`);
    }
  }
  return { memoryBytes: memoryMiB * 1024 * 1024, diskBytes: diskMiB * 1024 * 1024 };
}

export class Domain {
  readonly memory: GuestMemory;
  readonly disk: VirtualDisk;
  readonly vcpu: Vcpu;
  readonly device: DeviceState;
  /**
   * Injected divergence for tests (see divergence.ts): this replica's, never
   * part of the state, so neither checkpoints nor `copyFrom` touch it.
   */
  divergence: DivergenceSwitch | undefined;
  private readonly memHash: SumHasher;
  private readonly diskHash: SumHasher;

  constructor(readonly geometry: DomainGeometry) {
    this.memory = new GuestMemory(geometry.memoryBytes);
    this.disk = new VirtualDisk(geometry.diskBytes);
    this.vcpu = new Vcpu();
    this.device = new DeviceState();
    this.memHash = new SumHasher(this.memory.pages, (p) => this.memory.page(p), this.memory.hashLog);
    this.diskHash = new SumHasher(this.disk.blocks, (b) => this.disk.view(b), this.disk.hashLog);
  }

  get pages(): number {
    return this.memory.pages;
  }

  /**
   * Drains the memory dirty log: the pfns written since the last collection,
   * sorted, in `out` if it is large enough. (The digest keeps its own log.)
   */
  collectDirty(out?: Uint32Array): Uint32Array {
    return this.memory.log.drain(out);
  }

  /** Drains the disk write log: blocks written since the last drain, in order of first write. */
  collectDiskWrites(out?: Uint32Array): Uint32Array {
    return this.disk.log.drain(out, false);
  }

  /**
   * The digest of the current state (see digest.ts). Costs O(pages and blocks
   * written since they were last hashed, by this or by `digestStep`).
   */
  digest(): string {
    this.memHash.update();
    this.diskHash.update();
    return combineDigest(this.digestInputs(), this.memHash.sumBytes(), this.diskHash.sumBytes());
  }

  /**
   * Hashes up to `maxUnits` of the pages and blocks written since they were
   * last hashed (pages first), without computing the digest itself. Called a
   * slice at a time while the domain is idle (a backup between checkpoints), it
   * keeps `digest()` cheap when it is finally needed (at activation): the work
   * is the same, it is just done earlier. With `clock` (ms), it also stops
   * once `budgetMs` have passed (checked every 64 units), so a slice never holds
   * the event loop long whatever the pages cost. Returns the units still pending.
   */
  digestStep(maxUnits: number, clock?: () => number, budgetMs = 2): number {
    const stopAt = clock === undefined ? Number.POSITIVE_INFINITY : clock() + budgetMs;
    let left = maxUnits;
    while (left > 0 && this.digestPending > 0) {
      const slice = Math.min(left, 64);
      let done = this.memHash.update(slice);
      if (done < slice) done += this.diskHash.update(slice - done);
      left -= done;
      if (clock !== undefined && clock() >= stopAt) break;
    }
    return this.digestPending;
  }

  /** Pages and blocks written since they were last hashed: the work the next `digest()` does. */
  get digestPending(): number {
    return this.memory.hashLog.count + this.disk.hashLog.count;
  }

  /** The digest recomputed from scratch (slow; for tests and audits). */
  digestFull(): string {
    return fullDigest(
      this.digestInputs(),
      (p) => this.memory.page(p),
      (b) => this.disk.view(b),
    );
  }

  private digestInputs() {
    return {
      pages: this.memory.pages,
      blocks: this.disk.blocks,
      vcpu: this.vcpu.regs,
      device: this.device.regs,
    };
  }

  /** Apply primitive: writes `count` pages, `data` holding them back to back. */
  applyPages(pfns: ArrayLike<number>, data: Uint8Array, count = pfns.length): void {
    if (data.length < count * PAGE_SIZE) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `${count} pages need ${count * PAGE_SIZE} bytes`);
    }
    for (let i = 0; i < count; i++) this.memory.checkPfn(pfns[i] as number);
    for (let i = 0; i < count; i++) this.memory.writePage(pfns[i] as number, data, i * PAGE_SIZE);
  }

  /** Apply primitive for the disk: writes `count` block images in order (a later one wins), `data` holding them back to back. */
  applyDiskBlocks(blocks: ArrayLike<number>, data: Uint8Array, count = blocks.length): void {
    if (data.length < count * BLOCK_SIZE) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `${count} blocks need ${count * BLOCK_SIZE} bytes`);
    }
    for (let i = 0; i < count; i++) this.disk.checkBlock(blocks[i] as number);
    for (let i = 0; i < count; i++) this.disk.writeBlock(blocks[i] as number, data, i * BLOCK_SIZE);
  }

  loadVcpu(bytes: Uint8Array): void {
    if (bytes.length !== VCPU_SIZE)
      throw new RemusError("REMUSD_ERR_BAD_GEOMETRY", "vCPU block size mismatch");
    this.vcpu.regs.set(bytes);
  }

  loadDevice(bytes: Uint8Array): void {
    if (bytes.length !== DEVICE_SIZE)
      throw new RemusError("REMUSD_ERR_BAD_GEOMETRY", "device block size mismatch");
    this.device.regs.set(bytes);
  }

  /** Copies the complete state of `src` (same geometry) into this domain. */
  copyFrom(src: Domain): void {
    if (
      src.geometry.memoryBytes !== this.geometry.memoryBytes ||
      src.geometry.diskBytes !== this.geometry.diskBytes
    ) {
      throw new RemusError("REMUSD_ERR_BAD_GEOMETRY", "domains differ in geometry");
    }
    this.memory.loadImage(src.memory.buf);
    src.disk.buf.copy(this.disk.buf);
    this.vcpu.regs.set(src.vcpu.regs);
    this.device.regs.set(src.device.regs);
    this.memory.log.clear();
    this.disk.log.clear();
    this.memory.hashLog.clear();
    this.disk.hashLog.clear();
    this.memHash.invalidateAll();
    this.diskHash.invalidateAll();
  }

  /** Empties the replication dirty logs (after a full sync made both sides equal). */
  resetLogs(): void {
    this.memory.log.clear();
    this.disk.log.clear();
  }

  /** Forces the digest to rehash everything (after memory was loaded behind its back). */
  invalidateDigest(): void {
    this.memHash.invalidateAll();
    this.diskHash.invalidateAll();
  }
}
