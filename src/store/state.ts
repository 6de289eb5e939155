/**
 * A daemon's small persistent identity in its data directory: the node id
 * (stable across restarts, sent in HELLO) and the highest generation it has
 * seen or taken, which fencing relies on. Written atomically (temp + rename).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RemusError } from "../errors.js";
import { type Entropy, systemEntropy } from "../prng.js";

export interface NodeState {
  nodeId: string;
  generation: number;
}

export class NodeStateFile {
  readonly path: string;
  state: NodeState;

  /** `entropy` draws a new node id when the directory holds none. */
  constructor(dir: string, entropy: Entropy = systemEntropy) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, "node.json");
    let s: NodeState | undefined;
    try {
      const parsed = JSON.parse(readFileSync(this.path, "utf8")) as Partial<NodeState>;
      if (
        typeof parsed.nodeId === "string" &&
        /^[0-9a-f]{32}$/.test(parsed.nodeId) &&
        Number.isInteger(parsed.generation)
      ) {
        s = { nodeId: parsed.nodeId, generation: parsed.generation as number };
      } else {
        throw new RemusError("REMUSD_ERR_CORRUPT", `${this.path} is malformed`);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    this.state = s ?? { nodeId: Buffer.from(entropy.bytes(16)).toString("hex"), generation: 0 };
    this.save();
  }

  get nodeId(): Buffer {
    return Buffer.from(this.state.nodeId, "hex");
  }

  setGeneration(g: number): void {
    if (g > this.state.generation) {
      this.state.generation = g;
      this.save();
    }
  }

  private save(): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.state)}\n`);
    renameSync(tmp, this.path);
  }
}
