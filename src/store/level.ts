/**
 * The backup's durable store in `level` under --data-dir: the disk blocks of
 * the committed image and the last committed epoch, written in one atomic
 * batch per epoch. The memory image stays in RAM: after a restart the store
 * says which epoch it held, but the backup resyncs (a stale image is never
 * resumed).
 */
import { Level } from "level";
import type { BackupStore } from "../replication/backup.js";

const META_EPOCH = "meta:committed";
const META_GENERATION = "meta:generation";
const META_VALID = "meta:valid";
const blockKey = (b: number): string => `disk:${b.toString(16).padStart(8, "0")}`;
const ZERO_BLOCK = Buffer.alloc(4096);

export class LevelStore implements BackupStore {
  private readonly db: Level<string, Uint8Array>;
  private chain: Promise<void> = Promise.resolve();
  /** Epochs made durable so far (for metrics and tests). */
  commits = 0;

  constructor(readonly dir: string) {
    this.db = new Level<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
  }

  async open(): Promise<{ committed: number; generation: number; valid: boolean }> {
    await this.db.open();
    const get = async (k: string): Promise<number> => {
      const v = await this.db.get(k);
      return v === undefined ? 0 : Number(Buffer.from(v).toString("utf8"));
    };
    return {
      committed: await get(META_EPOCH),
      generation: await get(META_GENERATION),
      valid: (await get(META_VALID)) === 1,
    };
  }

  private enqueue(f: () => Promise<void>): Promise<void> {
    const p = this.chain.then(f);
    this.chain = p.catch(() => undefined);
    return p;
  }

  commit(
    epoch: number,
    generation: number,
    blocks: ArrayLike<number>,
    dataOf: (block: number) => Uint8Array,
    full: boolean,
    done: (err?: Error) => void,
  ): void {
    // Copy now: the blocks may change as soon as we return. A zero block is stored as no key,
    // so a full image of a mostly empty disk costs what its data costs, not its size.
    type Op = { type: "put"; key: string; value: Uint8Array } | { type: "del"; key: string };
    const ops: Op[] = [];
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i] as number;
      const data = dataOf(b);
      if (ZERO_BLOCK.equals(data)) {
        if (!full) ops.push({ type: "del", key: blockKey(b) });
      } else {
        ops.push({ type: "put", key: blockKey(b), value: Buffer.from(data) });
      }
    }
    ops.push({ type: "put", key: META_EPOCH, value: Buffer.from(String(epoch)) });
    ops.push({ type: "put", key: META_GENERATION, value: Buffer.from(String(generation)) });
    ops.push({ type: "put", key: META_VALID, value: Buffer.from("1") });
    this.enqueue(async () => {
      // A full image replaces everything: the image was invalidated when the sync began, so a
      // crash between the clear and the batch leaves a store that says it holds nothing.
      if (full) await this.db.clear({ gte: "disk:", lt: "disk;" });
      await this.db.batch(ops);
      this.commits++;
    }).then(
      () => done(),
      (e: unknown) => done(e instanceof Error ? e : new Error(String(e))),
    );
  }

  invalidate(): Promise<void> {
    return this.enqueue(() => this.db.put(META_VALID, Buffer.from("0")));
  }

  saveGeneration(generation: number): Promise<void> {
    return this.enqueue(() => this.db.put(META_GENERATION, Buffer.from(String(generation))));
  }

  /** Reads a committed disk block (zeros if never written). */
  async readBlock(b: number): Promise<Buffer> {
    const v = await this.db.get(blockKey(b));
    return v === undefined ? Buffer.alloc(4096) : Buffer.from(v);
  }

  async close(): Promise<void> {
    await this.chain;
    await this.db.close();
  }
}
