/**
 * What a benchmark case is. A case measures one thing and returns figures,
 * each the median of its samples with their spread; a ratio is computed per
 * round from samples taken side by side, never from two separate runs. Cases
 * live in their own modules and register in index.ts; a case that needs
 * processes, sockets or a temporary folder gets them from the context and
 * cleans up before it returns.
 */
import type { Figure } from "./stats.js";

export interface BenchContext {
  /** The reduced set (`--quick`): fewer sizes and rounds, the whole run under a minute. */
  readonly quick: boolean;
  /** Progress for the operator (stderr). */
  log(msg: string): void;
  /** A fresh temporary folder, removed when the run ends. */
  tempDir(): string;
}

export interface BenchCase {
  /** Stable name, matched by `--only`. */
  readonly name: string;
  /** One line for the table's section header. */
  readonly title: string;
  /** Whether `--quick` runs it. */
  readonly quick: boolean;
  run(ctx: BenchContext): Promise<Figure[]> | Figure[];
}
