/**
 * Capturing an epoch's dirty pages while the domain is paused.
 *
 * Callers see only `EpochCapture`: a list of pfns and a view of each page's
 * contents as they were at the pause, valid until `release()`. `CopyCapturer`
 * implements it by copying the pages into a preallocated staging area (one
 * `Buffer.copy` per page, no allocation per page). A copy-on-write capturer can
 * implement the same interface later (resume first, copy a page only when the
 * guest is about to write it) without changing any caller.
 */
import { RemusError } from "../errors.js";
import { type GuestMemory, PAGE_SIZE } from "./memory.js";

export interface EpochCapture {
  readonly count: number;
  pfn(i: number): number;
  /** The page's bytes at capture time: a 4096-byte view valid until `release()`. */
  page(i: number): Uint8Array;
  release(): void;
}

export interface Capturer {
  capture(pfns: Uint32Array): EpochCapture;
  /** Staging areas currently handed out (checkpoints in flight). */
  readonly inUse: number;
}

class StagingArea {
  buf: Buffer;
  pfns: Uint32Array;
  constructor(pages: number) {
    this.buf = Buffer.allocUnsafe(pages * PAGE_SIZE);
    this.pfns = new Uint32Array(pages);
  }
  get capacity(): number {
    return this.pfns.length;
  }
}

class CopiedEpoch implements EpochCapture {
  private released = false;
  constructor(
    private readonly owner: CopyCapturer,
    private readonly area: StagingArea,
    readonly count: number,
  ) {}
  pfn(i: number): number {
    return this.area.pfns[i] as number;
  }
  page(i: number): Uint8Array {
    if (this.released || i < 0 || i >= this.count) {
      throw new RemusError("REMUSD_ERR_INTERNAL", `captured page ${i} is not available`);
    }
    const o = i * PAGE_SIZE;
    return this.area.buf.subarray(o, o + PAGE_SIZE);
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.owner.giveBack(this.area);
  }
}

/** Copies dirty pages into reusable staging areas (grown on demand, never shrunk). */
export class CopyCapturer implements Capturer {
  private readonly free: StagingArea[] = [];
  private out = 0;

  constructor(
    private readonly memory: GuestMemory,
    initialPages = Math.min(memory.pages, 4096),
  ) {
    this.free.push(new StagingArea(Math.max(1, initialPages)));
  }

  get inUse(): number {
    return this.out;
  }

  capture(pfns: Uint32Array): EpochCapture {
    const n = pfns.length;
    let area = this.free.pop();
    if (!area || area.capacity < n) {
      // Grow geometrically so a burst of large epochs allocates only a few times.
      const want = Math.min(this.memory.pages, Math.max(n, (area?.capacity ?? 0) * 2));
      area = new StagingArea(Math.max(want, n, 1));
    }
    const src = this.memory.buf;
    const dst = area.buf;
    for (let i = 0; i < n; i++) {
      const pfn = pfns[i] as number;
      this.memory.checkPfn(pfn);
      area.pfns[i] = pfn;
      const s = pfn * PAGE_SIZE;
      src.copy(dst, i * PAGE_SIZE, s, s + PAGE_SIZE);
    }
    this.out++;
    return new CopiedEpoch(this, area, n);
  }

  /** @internal */
  giveBack(area: StagingArea): void {
    this.out--;
    this.free.push(area);
  }
}
