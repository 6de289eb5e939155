/**
 * RMFS: the guest's minimal file system on the virtual disk. A flat namespace
 * of regular files; data in 4 KiB blocks reached through 12 direct pointers,
 * one indirect and one double-indirect block (files up to ~4 GiB). All of its
 * state is on the disk; the open-file table (fd, inode, offset) is the
 * kernel's and lives in guest memory.
 *
 * Disk layout:
 *   block 0                    superblock
 *   blocks 1 .. 1+B            block bitmap (1 bit per disk block, 1 = used)
 *   next I blocks              inode table, 32 inodes of 128 bytes per block
 *   the rest                   data and indirect blocks
 *
 * Superblock (u32 LE): 0 magic "RMFS" · 4 version · 8 blocks · 12 inodes · 16 bitmapStart ·
 *   20 bitmapBlocks · 24 inodeStart · 28 inodeBlocks · 32 dataStart · 36 freeBlocks ·
 *   40 freeInodes · 44 allocHint
 * Inode (128 bytes): 0 u8 used · 1 u8 type (1 = file) · 2 u16 nameLen · 4 u32 reserved ·
 *   8 u64 size · 16 u32 direct[12] · 64 u32 indirect · 68 u32 doubleIndirect · 72 name[56]
 *
 * Every operation checks that it can complete (space, names, bounds) before it
 * writes anything, so a failed call leaves the disk unchanged.
 */
import { BLOCK_SIZE, type VirtualDisk } from "../domain/disk.js";
import { RemusError } from "../errors.js";

const FS_MAGIC = 0x53464d52;
const INODE_SIZE = 128;
const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE;
const NDIRECT = 12;
const PTRS = BLOCK_SIZE / 4;
export const MAX_NAME = 56;
export const MAX_FILE_BYTES = (NDIRECT + PTRS + PTRS * PTRS) * BLOCK_SIZE;
const INODES = 256;

const SB = {
  magic: 0,
  version: 4,
  blocks: 8,
  inodes: 12,
  bitmapStart: 16,
  bitmapBlocks: 20,
  inodeStart: 24,
  inodeBlocks: 28,
  dataStart: 32,
  freeBlocks: 36,
  freeInodes: 40,
  allocHint: 44,
} as const;

export interface FileInfo {
  readonly ino: number;
  readonly name: string;
  readonly size: number;
}

/** A stateless handle on the file system of a disk. */
export class FileSystem {
  constructor(readonly disk: VirtualDisk) {}

  static isFormatted(disk: VirtualDisk): boolean {
    return disk.u32(0, SB.magic) === FS_MAGIC;
  }

  static format(disk: VirtualDisk): FileSystem {
    const blocks = disk.blocks;
    const bitmapBlocks = Math.ceil(blocks / (BLOCK_SIZE * 8));
    const inodeBlocks = Math.ceil(INODES / INODES_PER_BLOCK);
    const dataStart = 1 + bitmapBlocks + inodeBlocks;
    if (dataStart + 8 > blocks) {
      throw new RemusError(
        "REMUSD_ERR_BAD_GEOMETRY",
        `disk of ${blocks} blocks is too small for a file system`,
      );
    }
    const zero = Buffer.alloc(BLOCK_SIZE);
    for (let b = 0; b < dataStart; b++) disk.writeBlock(b, zero);
    const sb = Buffer.alloc(BLOCK_SIZE);
    sb.writeUInt32LE(FS_MAGIC, SB.magic);
    sb.writeUInt32LE(1, SB.version);
    sb.writeUInt32LE(blocks, SB.blocks);
    sb.writeUInt32LE(INODES, SB.inodes);
    sb.writeUInt32LE(1, SB.bitmapStart);
    sb.writeUInt32LE(bitmapBlocks, SB.bitmapBlocks);
    sb.writeUInt32LE(1 + bitmapBlocks, SB.inodeStart);
    sb.writeUInt32LE(inodeBlocks, SB.inodeBlocks);
    sb.writeUInt32LE(dataStart, SB.dataStart);
    sb.writeUInt32LE(blocks - dataStart, SB.freeBlocks);
    sb.writeUInt32LE(INODES, SB.freeInodes);
    sb.writeUInt32LE(dataStart, SB.allocHint);
    disk.writeBlock(0, sb);
    const fs = new FileSystem(disk);
    // Metadata blocks are used.
    for (let b = 0; b < dataStart; b++) fs.setBit(b, true);
    return fs;
  }

  private sb(field: keyof typeof SB): number {
    return this.disk.u32(0, SB[field]);
  }
  private setSb(field: keyof typeof SB, v: number): void {
    this.disk.setU32(0, SB[field], v);
  }

  get freeBlocks(): number {
    return this.sb("freeBlocks");
  }
  get freeInodes(): number {
    return this.sb("freeInodes");
  }

  checkFormatted(): void {
    if (!FileSystem.isFormatted(this.disk))
      throw new RemusError("REMUSD_ERR_CORRUPT", "the disk holds no file system");
  }

  // ---- block bitmap ----
  private bitLoc(b: number): [number, number, number] {
    const bitsPerBlock = BLOCK_SIZE * 8;
    const blk = this.sb("bitmapStart") + Math.floor(b / bitsPerBlock);
    const bit = b % bitsPerBlock;
    return [blk, (bit >>> 5) * 4, 1 << (bit & 31)];
  }
  private getBit(b: number): boolean {
    const [blk, off, m] = this.bitLoc(b);
    return (this.disk.u32(blk, off) & m) !== 0;
  }
  private setBit(b: number, used: boolean): void {
    const [blk, off, m] = this.bitLoc(b);
    const w = this.disk.u32(blk, off);
    this.disk.setU32(blk, off, used ? w | m : w & ~m);
  }

  private allocBlock(): number {
    const blocks = this.sb("blocks");
    const start = this.sb("dataStart");
    let b = this.sb("allocHint");
    for (let n = 0; n < blocks - start; n++) {
      if (b >= blocks) b = start;
      if (!this.getBit(b)) {
        this.setBit(b, true);
        this.setSb("freeBlocks", this.freeBlocks - 1);
        this.setSb("allocHint", b + 1);
        this.disk.write(b, 0, ZERO_BLOCK);
        return b;
      }
      b++;
    }
    throw new RemusError("REMUSD_ERR_NO_SPACE", "the disk is full");
  }

  private freeBlock(b: number): void {
    if (b === 0) return;
    if (!this.getBit(b)) throw new RemusError("REMUSD_ERR_CORRUPT", `disk block ${b} freed twice`);
    this.setBit(b, false);
    this.setSb("freeBlocks", this.freeBlocks + 1);
  }

  // ---- inodes ----
  private inodeLoc(ino: number): [number, number] {
    const n = this.sb("inodes");
    if (!Number.isInteger(ino) || ino < 0 || ino >= n) {
      throw new RemusError("REMUSD_ERR_OUT_OF_RANGE", `inode ${ino} outside [0, ${n})`);
    }
    return [
      this.sb("inodeStart") + Math.floor(ino / INODES_PER_BLOCK),
      (ino % INODES_PER_BLOCK) * INODE_SIZE,
    ];
  }

  private inodeUsed(ino: number): boolean {
    const [b, o] = this.inodeLoc(ino);
    return (this.disk.view(b)[o] as number) !== 0;
  }

  size(ino: number): number {
    const [b, o] = this.inodeLoc(ino);
    return this.disk.u32(b, o + 8) + this.disk.u32(b, o + 12) * 0x1_0000_0000;
  }

  private setSize(ino: number, size: number): void {
    const [b, o] = this.inodeLoc(ino);
    this.disk.setU32(b, o + 8, size % 0x1_0000_0000);
    this.disk.setU32(b, o + 12, Math.floor(size / 0x1_0000_0000));
  }

  nameOf(ino: number): string {
    const [b, o] = this.inodeLoc(ino);
    const v = this.disk.view(b);
    const len = v.readUInt16LE(o + 2);
    return v.toString("utf8", o + 72, o + 72 + len);
  }

  private ptr(ino: number, slot: number): number {
    const [b, o] = this.inodeLoc(ino);
    return this.disk.u32(b, o + 16 + slot * 4);
  }
  private setPtr(ino: number, slot: number, v: number): void {
    const [b, o] = this.inodeLoc(ino);
    this.disk.setU32(b, o + 16 + slot * 4, v);
  }

  static checkName(name: string): Buffer {
    const bytes = Buffer.from(name, "utf8");
    if (bytes.length === 0 || bytes.length > MAX_NAME || name.includes("\0")) {
      throw new RemusError(
        "REMUSD_ERR_BAD_REQUEST",
        `file name must be 1 to ${MAX_NAME} bytes without NUL: ${JSON.stringify(name)}`,
      );
    }
    return bytes;
  }

  lookup(name: string): number {
    const want = FileSystem.checkName(name);
    const n = this.sb("inodes");
    for (let ino = 0; ino < n; ino++) {
      const [b, o] = this.inodeLoc(ino);
      const v = this.disk.view(b);
      if (v[o] === 0) continue;
      const len = v.readUInt16LE(o + 2);
      if (len === want.length && v.compare(want, 0, len, o + 72, o + 72 + len) === 0) return ino;
    }
    return -1;
  }

  create(name: string): number {
    const bytes = FileSystem.checkName(name);
    if (this.lookup(name) >= 0) throw new RemusError("REMUSD_ERR_BAD_REQUEST", `file ${name} exists`);
    const n = this.sb("inodes");
    for (let ino = 0; ino < n; ino++) {
      if (this.inodeUsed(ino)) continue;
      const [b, o] = this.inodeLoc(ino);
      const rec = Buffer.alloc(INODE_SIZE);
      rec[0] = 1;
      rec[1] = 1;
      rec.writeUInt16LE(bytes.length, 2);
      bytes.copy(rec, 72);
      this.disk.write(b, o, rec);
      this.setSb("freeInodes", this.freeInodes - 1);
      return ino;
    }
    throw new RemusError("REMUSD_ERR_NO_SPACE", "no free inode");
  }

  list(): FileInfo[] {
    const out: FileInfo[] = [];
    const n = this.sb("inodes");
    for (let ino = 0; ino < n; ino++) {
      if (this.inodeUsed(ino)) out.push({ ino, name: this.nameOf(ino), size: this.size(ino) });
    }
    return out;
  }

  checkIno(ino: number): void {
    if (!this.inodeUsed(ino)) throw new RemusError("REMUSD_ERR_NOT_FOUND", `inode ${ino} is not in use`);
  }

  /** Blocks (data plus indirect) that growing a file from `from` to `to` bytes allocates. */
  private blocksToGrow(from: number, to: number): number {
    const first = Math.ceil(from / BLOCK_SIZE);
    const last = Math.ceil(to / BLOCK_SIZE);
    let n = 0;
    for (let i = first; i < last; i++) {
      n++;
      if (i === NDIRECT) n++; // the indirect block
      if (i >= NDIRECT + PTRS) {
        const j = i - NDIRECT - PTRS;
        if (j === 0) n++; // the double-indirect block
        if (j % PTRS === 0) n++; // a second-level block
      }
    }
    return n;
  }

  /** Disk block holding byte `index * 4096` of the file, allocating it (and indirect blocks) if asked. */
  private mapBlock(ino: number, index: number, allocate: boolean): number {
    if (index < NDIRECT) {
      let b = this.ptr(ino, index);
      if (b === 0 && allocate) {
        b = this.allocBlock();
        this.setPtr(ino, index, b);
      }
      return b;
    }
    const viaTable = (table: number, slot: number): number => {
      let b = this.disk.u32(table, slot * 4);
      if (b === 0 && allocate) {
        b = this.allocBlock();
        this.disk.setU32(table, slot * 4, b);
      }
      return b;
    };
    let i = index - NDIRECT;
    if (i < PTRS) {
      let ind = this.ptr(ino, NDIRECT);
      if (ind === 0) {
        if (!allocate) return 0;
        ind = this.allocBlock();
        this.setPtr(ino, NDIRECT, ind);
      }
      return viaTable(ind, i);
    }
    i -= PTRS;
    if (i >= PTRS * PTRS) throw new RemusError("REMUSD_ERR_TOO_LARGE", "file exceeds the maximum size");
    let dind = this.ptr(ino, NDIRECT + 1);
    if (dind === 0) {
      if (!allocate) return 0;
      dind = this.allocBlock();
      this.setPtr(ino, NDIRECT + 1, dind);
    }
    const l2 = viaTable(dind, Math.floor(i / PTRS));
    if (l2 === 0) return 0;
    return viaTable(l2, i % PTRS);
  }

  /** Appends `data` at the end of the file; all or nothing. Returns the new size. */
  append(ino: number, data: Uint8Array): number {
    this.checkIno(ino);
    const size = this.size(ino);
    const end = size + data.length;
    if (end > MAX_FILE_BYTES)
      throw new RemusError("REMUSD_ERR_TOO_LARGE", "file would exceed the maximum size");
    const need = this.blocksToGrow(size, end);
    if (need > this.freeBlocks) {
      throw new RemusError(
        "REMUSD_ERR_NO_SPACE",
        `disk full: append of ${data.length} bytes needs ${need} blocks`,
      );
    }
    let pos = size;
    let off = 0;
    while (off < data.length) {
      const within = pos % BLOCK_SIZE;
      const n = Math.min(BLOCK_SIZE - within, data.length - off);
      const blk = this.mapBlock(ino, Math.floor(pos / BLOCK_SIZE), true);
      this.disk.write(blk, within, data.subarray(off, off + n));
      pos += n;
      off += n;
    }
    this.setSize(ino, end);
    return end;
  }

  /** Reads up to `len` bytes at `offset` (fewer at the end of the file). */
  read(ino: number, offset: number, len: number): Buffer {
    this.checkIno(ino);
    const size = this.size(ino);
    if (offset >= size || len <= 0) return Buffer.alloc(0);
    const n = Math.min(len, size - offset);
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const pos = offset + done;
      const within = pos % BLOCK_SIZE;
      const k = Math.min(BLOCK_SIZE - within, n - done);
      const blk = this.mapBlock(ino, Math.floor(pos / BLOCK_SIZE), false);
      if (blk === 0) out.fill(0, done, done + k);
      else this.disk.view(blk).copy(out, done, within, within + k);
      done += k;
    }
    return out;
  }

  /** Empties the file and frees its blocks. */
  truncate(ino: number): void {
    this.checkIno(ino);
    const nblocks = Math.ceil(this.size(ino) / BLOCK_SIZE);
    for (let i = 0; i < nblocks; i++) this.freeBlock(this.mapBlock(ino, i, false));
    const ind = this.ptr(ino, NDIRECT);
    if (ind !== 0) this.freeBlock(ind);
    const dind = this.ptr(ino, NDIRECT + 1);
    if (dind !== 0) {
      for (let s = 0; s < PTRS; s++) {
        const l2 = this.disk.u32(dind, s * 4);
        if (l2 !== 0) this.freeBlock(l2);
      }
      this.freeBlock(dind);
    }
    for (let s = 0; s < NDIRECT + 2; s++) this.setPtr(ino, s, 0);
    this.setSize(ino, 0);
  }
}

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
