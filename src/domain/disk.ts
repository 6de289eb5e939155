/**
 * The virtual disk: fixed-size 4 KiB blocks held in one buffer, with a write
 * log. Every write marks its block in `log` in order of first write; the
 * replication layer drains the log as the epoch runs and sends the blocks'
 * contents to the backup, which applies them only when the epoch commits.
 */
import { RemusError } from "../errors.js";
import { DirtyLog, MAX_DOMAIN_BYTES } from "./memory.js";

export const BLOCK_SIZE = 4096;

export class VirtualDisk {
  readonly blocks: number;
  readonly buf: Buffer;
  /** Blocks written since the log was last drained, in order of first write. */
  readonly log: DirtyLog;
  /** Blocks written since the digest last rehashed them. */
  readonly hashLog: DirtyLog;

  constructor(bytes: number) {
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes % BLOCK_SIZE !== 0 || bytes > MAX_DOMAIN_BYTES) {
      throw new RemusError(
        "REMUSD_ERR_BAD_GEOMETRY",
        `disk size must be a positive multiple of ${BLOCK_SIZE} bytes up to 4096 MiB, got ${bytes}`,
      );
    }
    this.blocks = bytes / BLOCK_SIZE;
    this.buf = Buffer.alloc(bytes);
    this.log = new DirtyLog(this.blocks);
    this.hashLog = new DirtyLog(this.blocks);
  }

  private touched(block: number): void {
    this.log.mark(block);
    this.hashLog.mark(block);
  }

  static ofMiB(mib: number): VirtualDisk {
    return new VirtualDisk(mib * 1024 * 1024);
  }

  checkBlock(block: number): void {
    if (!Number.isInteger(block) || block < 0 || block >= this.blocks) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `disk block ${block} outside [0, ${this.blocks})`);
    }
  }

  private checkSpan(block: number, offset: number, len: number): void {
    this.checkBlock(block);
    if (!Number.isInteger(offset) || !Number.isInteger(len) || offset < 0 || len < 0) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `bad disk span offset ${offset} length ${len}`);
    }
    if (offset + len > BLOCK_SIZE) {
      throw new RemusError(
        "REMUSD_ERR_TOO_LARGE",
        `disk write of ${len} bytes at offset ${offset} crosses the ${BLOCK_SIZE}-byte block`,
      );
    }
  }

  /** Read-only view of one block; valid until the next write to it. */
  view(block: number): Buffer {
    this.checkBlock(block);
    const a = block * BLOCK_SIZE;
    return this.buf.subarray(a, a + BLOCK_SIZE);
  }

  read(block: number, offset = 0, len = BLOCK_SIZE - offset): Buffer {
    this.checkSpan(block, offset, len);
    const a = block * BLOCK_SIZE + offset;
    return Buffer.from(this.buf.subarray(a, a + len));
  }

  /** Writes `data` into `block` at `offset`; the write must stay inside the block. */
  write(block: number, offset: number, data: Uint8Array): void {
    this.checkSpan(block, offset, data.length);
    if (data.length === 0) return;
    this.buf.set(data, block * BLOCK_SIZE + offset);
    this.touched(block);
  }

  u32(block: number, offset: number): number {
    this.checkSpan(block, offset, 4);
    return this.buf.readUInt32LE(block * BLOCK_SIZE + offset);
  }

  setU32(block: number, offset: number, v: number): void {
    this.checkSpan(block, offset, 4);
    this.buf.writeUInt32LE(v >>> 0, block * BLOCK_SIZE + offset);
    this.touched(block);
  }

  /** A writable view of one block, marked written first; write only through it, at once. */
  writableBlock(block: number): Buffer {
    this.checkBlock(block);
    this.touched(block);
    const a = block * BLOCK_SIZE;
    return this.buf.subarray(a, a + BLOCK_SIZE);
  }

  /** Overwrites a whole block (the apply primitive uses this). */
  writeBlock(block: number, data: Uint8Array, dataOff = 0): void {
    this.checkBlock(block);
    if (dataOff < 0 || dataOff + BLOCK_SIZE > data.length) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", "a block write needs 4096 bytes of source");
    }
    this.buf.set(data.subarray(dataOff, dataOff + BLOCK_SIZE), block * BLOCK_SIZE);
    this.touched(block);
  }
}
