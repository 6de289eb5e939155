/**
 * A domain: guest memory in log-dirty mode, the vCPU block, the device block
 * and the virtual disk, plus the incrementally maintained digest. This is the
 * whole state that a checkpoint carries; code that runs the guest keeps nothing
 * anywhere else.
 */
import { RemusError } from "../errors.js";
import type { Entropy } from "../prng.js";
import { DEVICE_SIZE, DeviceState, GENERATION_ID_SIZE } from "./device.js";
import { combineDigest, fullDigest, SumHasher } from "./digest.js";
import { BLOCK_SIZE, VirtualDisk } from "./disk.js";
import type { DivergenceSwitch } from "./divergence.js";
import { DirtyLog, GuestMemory, PAGE_SIZE } from "./memory.js";
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

/**
 * Pages taken from the digest's log to be hashed elsewhere (a worker thread),
 * folded back in the order they were taken. See `Domain.takeDigestWork`.
 */
export interface DigestWork {
  readonly pfns: Uint32Array;
  /** Cancelled by a synchronous digest (its pages were put back in the log): its result is dropped. */
  cancelled: boolean;
  hashes: Uint32Array | undefined;
}

export class Domain {
  private mem: GuestMemory;
  /** Digest work taken and not folded yet, in the order taken. */
  private digestWork: DigestWork[] = [];
  private dsk: VirtualDisk;
  private geo: DomainGeometry;
  readonly vcpu: Vcpu;
  readonly device: DeviceState;
  /**
   * Injected divergence for tests (see divergence.ts): this replica's, never
   * part of the state, so neither checkpoints nor `copyFrom` touch it.
   */
  divergence: DivergenceSwitch | undefined;
  private memHash: SumHasher;
  private diskHash: SumHasher;
  /** Pages and blocks that left the replication logs since `trackDirtySince` (see `dirtySince`). */
  private since: { readonly pages: DirtyLog; readonly blocks: DirtyLog } | undefined;

  constructor(geometry: DomainGeometry) {
    this.geo = geometry;
    this.mem = new GuestMemory(geometry.memoryBytes);
    this.dsk = new VirtualDisk(geometry.diskBytes);
    this.vcpu = new Vcpu();
    this.device = new DeviceState();
    this.memHash = new SumHasher(this.mem.pages, (p) => this.mem.page(p), this.mem.hashLog);
    this.diskHash = new SumHasher(this.dsk.blocks, (b) => this.dsk.view(b), this.dsk.hashLog);
  }

  /** Guest memory (replaced only by `reshape`). */
  get memory(): GuestMemory {
    return this.mem;
  }

  /** The virtual disk (replaced only by `reshape`). */
  get disk(): VirtualDisk {
    return this.dsk;
  }

  get geometry(): DomainGeometry {
    return this.geo;
  }

  /**
   * Gives the domain another geometry: fresh zeroed memory and disk, reset
   * vCPU and device blocks. Only for a domain that holds nothing yet (a
   * backup that adopts its primary's domain before its first sync, src/domain/config.ts):
   * everything it held is gone, and whoever kept a reference to the old
   * memory or disk (a capturer, a stage) must take the new ones.
   */
  reshape(geometry: DomainGeometry): void {
    this.untrackDirtySince();
    const mem = new GuestMemory(geometry.memoryBytes);
    const dsk = new VirtualDisk(geometry.diskBytes);
    this.geo = geometry;
    this.mem = mem;
    this.dsk = dsk;
    this.vcpu.reset(0);
    this.device.reset();
    // Digest work taken from the old memory's log describes pages that are gone.
    for (const w of this.digestWork) w.cancelled = true;
    this.digestWork = [];
    this.memHash = new SumHasher(mem.pages, (p) => mem.page(p), mem.hashLog);
    this.diskHash = new SumHasher(dsk.blocks, (b) => dsk.view(b), dsk.hashLog);
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
   * written since they were last hashed, by this or by `digestStep`). Work
   * taken by `takeDigestWork` and not folded yet is cancelled and done here.
   */
  digest(): string {
    this.cancelDigestWork();
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
   * the event loop long whatever the pages cost. Digest work out on other
   * threads is cancelled first (its pages are hashed here instead). Returns
   * the units still pending.
   */
  digestStep(maxUnits: number, clock?: () => number, budgetMs = 2): number {
    this.cancelDigestWork();
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

  /**
   * Takes up to `max` pages written since they were last hashed, for another
   * thread to hash (`unitHashInto` over the shared memory); give the hashes
   * back with `foldDigestWork`. Results are folded in the order the work was
   * taken, so a page taken again after a newer write ends with the newer
   * hash. Undefined when no page is pending.
   */
  takeDigestWork(max: number): DigestWork | undefined {
    if (this.memory.hashLog.count === 0) return undefined;
    const w: DigestWork = { pfns: this.memory.hashLog.take(max), cancelled: false, hashes: undefined };
    this.digestWork.push(w);
    return w;
  }

  /** The hashes of `w`'s pages (4 u32 limbs each, in order): folded now or after older work. */
  foldDigestWork(w: DigestWork, hashes: Uint32Array): void {
    if (w.cancelled) return;
    if (hashes.length !== w.pfns.length * 4)
      throw new RangeError(`${hashes.length / 4} hashes for ${w.pfns.length} pages`);
    w.hashes = hashes;
    while (this.digestWork.length > 0) {
      const head = this.digestWork[0] as DigestWork;
      if (head.hashes === undefined) break;
      this.digestWork.shift();
      this.memHash.fold(head.pfns, head.hashes);
    }
  }

  /**
   * Hashes up to `max` disk blocks written since they were last hashed, 64 at
   * a time until `budgetMs` of `clock` have passed (a slice never holds the
   * event loop long); never cancels page work. Returns the blocks still pending.
   */
  digestDiskStep(max: number, clock: () => number, budgetMs: number): number {
    const stopAt = clock() + budgetMs;
    let left = max;
    while (left > 0 && this.disk.hashLog.count > 0) {
      left -= this.diskHash.update(Math.min(left, 64));
      if (clock() >= stopAt) break;
    }
    return this.disk.hashLog.count;
  }

  /** Digest work out on other threads. */
  get digestWorkOut(): number {
    return this.digestWork.length;
  }

  /** Puts every page of unfolded digest work back in the log (its results, when they come, are dropped). */
  private cancelDigestWork(): void {
    for (const w of this.digestWork) {
      w.cancelled = true;
      this.memory.hashLog.markAll(w.pfns, w.pfns.length);
    }
    this.digestWork = [];
  }

  /** Pages and blocks written since they were last hashed (or out being hashed): the work the next `digest()` does. */
  get digestPending(): number {
    let out = 0;
    for (const w of this.digestWork) out += w.pfns.length;
    return this.memory.hashLog.count + this.disk.hashLog.count + out;
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

  /**
   * From now on, remembers every page and block written, across epochs and
   * however often the replication logs are drained (a dirty-since bitmap:
   * each log hands what leaves it to a sink). A primary starts it when it
   * activates, so that it can rewind a former primary (src/replication/rewind.ts).
   */
  trackDirtySince(): void {
    this.untrackDirtySince();
    const pages = new DirtyLog(this.mem.pages);
    const blocks = new DirtyLog(this.dsk.blocks);
    this.mem.log.sink = pages;
    this.dsk.log.sink = blocks;
    this.since = { pages, blocks };
  }

  /** Stops `trackDirtySince`. */
  untrackDirtySince(): void {
    this.mem.log.sink = undefined;
    this.dsk.log.sink = undefined;
    this.since = undefined;
  }

  /**
   * The pages (sorted) and blocks written since `trackDirtySince`, or
   * undefined when nothing is tracked. Nothing is drained.
   */
  dirtySince(): { pages: Uint32Array; blocks: Uint32Array } | undefined {
    const s = this.since;
    if (!s) return undefined;
    return { pages: s.pages.union(this.mem.log), blocks: s.blocks.union(this.dsk.log) };
  }

  /**
   * Draws a new VM Generation ID (device.ts) from `entropy`: the domain now
   * starts from an image that may also exist, and run, elsewhere.
   */
  newGenerationId(entropy: Entropy): void {
    this.device.generationId = entropy.bytes(GENERATION_ID_SIZE);
  }

  /**
   * Restores the complete state of `image` (same geometry) into this domain
   * to run it from there, under a new VM Generation ID: the image may also
   * exist elsewhere (it was saved, or another node holds it), and the guest
   * must be able to tell the two copies apart.
   */
  restoreFrom(image: Domain, entropy: Entropy): void {
    this.copyFrom(image);
    this.newGenerationId(entropy);
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
    this.cancelDigestWork();
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
    this.cancelDigestWork();
    this.memHash.invalidateAll();
    this.diskHash.invalidateAll();
  }
}
