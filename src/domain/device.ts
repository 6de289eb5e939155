/**
 * Device state outside guest memory: the virtual NIC's registers. A fixed
 * 256-byte block, checkpointed whole every epoch like the vCPU block. The
 * receive and transmit rings themselves live in guest pages (their addresses
 * are registers here), so their contents travel with the dirty pages.
 *
 * Layout (little-endian):
 * | off | size | field        | meaning                                             |
 * |-----|------|--------------|-----------------------------------------------------|
 * |   0 |    4 | magic        | 0x3043494e ("NIC0")                                 |
 * |   4 |    4 | version      | 1                                                   |
 * |   8 |    6 | mac          | the guest NIC's MAC address                         |
 * |  16 |    4 | ip           | the guest's IPv4 address (host order as u32)        |
 * |  20 |    4 | netmask      | IPv4 netmask                                        |
 * |  24 |    4 | rxRingAddr   | guest address of the receive ring                   |
 * |  28 |    4 | rxRingSlots  | slots in the receive ring                           |
 * |  32 |    4 | rxHead       | next slot the device fills (monotonic counter)      |
 * |  36 |    4 | rxTail       | next slot the guest consumes (monotonic counter)    |
 * |  40 |    4 | txRingAddr   | guest address of the transmit ring                  |
 * |  44 |    4 | txRingSlots  | slots in the transmit ring                          |
 * |  48 |    4 | txHead       | next slot the guest fills (monotonic counter)       |
 * |  52 |    4 | txTail       | next slot the device drains (monotonic counter)     |
 * |  56 |    4 | slotSize     | bytes per ring slot (u16 length + frame)            |
 * |  60 |    4 | flags        | bit 0 the NIC is configured                         |
 * |  64 |    8 | rxFrames     | frames delivered to the guest                       |
 * |  72 |    8 | txFrames     | frames the guest transmitted                        |
 * |  80 |    8 | rxDropped    | frames dropped because the receive ring was full    |
 * |  88 |    8 | txStalls     | transmit attempts refused because the ring was full |
 * |  96 |   16 | generationId | the VM Generation ID (below)                        |
 * | 112 |  144 | reserved     | zero                                                |
 *
 * The VM Generation ID (the idea of Hyper-V's and QEMU's vmgenid device) is
 * 128 bits the guest reads to learn that it may have been duplicated: it
 * stays the same while the domain continues (every checkpoint carries the
 * device block, so a failover or switchover resumes it unchanged), and it is
 * drawn anew from the node's entropy whenever the domain starts from an
 * image that may also exist elsewhere (a restore from a saved image, a
 * restart from a persisted one: `Domain.restoreFrom`), so a guest that keeps
 * secrets or unique ids derived from its state knows to reseed them. A fresh
 * boot draws one too.
 */
import { RemusError } from "../errors.js";

export const DEVICE_SIZE = 256;
const NIC_MAGIC = 0x3043494e;

export const NIC_REG = {
  mac: 8,
  ip: 16,
  netmask: 20,
  rxRingAddr: 24,
  rxRingSlots: 28,
  rxHead: 32,
  rxTail: 36,
  txRingAddr: 40,
  txRingSlots: 44,
  txHead: 48,
  txTail: 52,
  slotSize: 56,
  flags: 60,
  rxFrames: 64,
  txFrames: 72,
  rxDropped: 80,
  txStalls: 88,
  generationId: 96,
} as const;

/** Bytes of the VM Generation ID. */
export const GENERATION_ID_SIZE = 16;

export type NicU32Reg = Exclude<
  keyof typeof NIC_REG,
  "mac" | "rxFrames" | "txFrames" | "rxDropped" | "txStalls" | "generationId"
>;
export type NicCounter = "rxFrames" | "txFrames" | "rxDropped" | "txStalls";

export class DeviceState {
  readonly regs: Buffer;

  constructor() {
    this.regs = Buffer.alloc(DEVICE_SIZE);
    this.reset();
  }

  reset(): void {
    this.regs.fill(0);
    this.regs.writeUInt32LE(NIC_MAGIC, 0);
    this.regs.writeUInt32LE(1, 4);
  }

  validate(): void {
    if (this.regs.readUInt32LE(0) !== NIC_MAGIC)
      throw new RemusError("REMUSD_ERR_CORRUPT", "device block has a bad magic");
  }

  get(reg: NicU32Reg): number {
    return this.regs.readUInt32LE(NIC_REG[reg]);
  }
  set(reg: NicU32Reg, v: number): void {
    this.regs.writeUInt32LE(v >>> 0, NIC_REG[reg]);
  }
  counter(c: NicCounter): number {
    const o = NIC_REG[c];
    return this.regs.readUInt32LE(o) + this.regs.readUInt32LE(o + 4) * 0x1_0000_0000;
  }
  /** Adds one to a 64-bit counter. */
  bump(c: NicCounter): void {
    const v = this.counter(c) + 1;
    const o = NIC_REG[c];
    this.regs.writeUInt32LE(v % 0x1_0000_0000, o);
    this.regs.writeUInt32LE(Math.floor(v / 0x1_0000_0000), o + 4);
  }
  /** The VM Generation ID (a copy). */
  get generationId(): Buffer {
    const o = NIC_REG.generationId;
    return Buffer.from(this.regs.subarray(o, o + GENERATION_ID_SIZE));
  }
  set generationId(id: Uint8Array) {
    if (id.length !== GENERATION_ID_SIZE)
      throw new RemusError("REMUSD_ERR_BAD_USAGE", "a VM Generation ID has 16 bytes");
    this.regs.set(id, NIC_REG.generationId);
  }

  get mac(): Buffer {
    return Buffer.from(this.regs.subarray(NIC_REG.mac, NIC_REG.mac + 6));
  }
  set mac(m: Uint8Array) {
    if (m.length !== 6) throw new RemusError("REMUSD_ERR_BAD_USAGE", "a MAC address has 6 bytes");
    this.regs.set(m, NIC_REG.mac);
  }
}
