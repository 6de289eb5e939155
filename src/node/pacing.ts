/**
 * Guest pacing: one guest tick per millisecond of the node's clock. The node
 * asks at every step how many ticks are due; a guest that cannot keep up (or
 * a node that was itself stalled) lets guest time fall behind instead of
 * running a burst of ticks.
 */

/** Ticks run per step at most. */
export const MAX_TICKS_PER_STEP = 20;
/** Lag in ticks after which the guest stops catching up. */
export const MAX_LAG_TICKS = 250;

export class GuestPacer {
  private wallBase: number | undefined;
  private tickBase = 0;

  /** Guest time continues from `ticks` as of `now` (a start, or a domain that resumes elsewhere). */
  reset(now: number, ticks: number): void {
    this.wallBase = now;
    this.tickBase = ticks;
  }

  /** How many ticks to run now, the guest having run `ticks` in all. The first call starts the clock. */
  due(now: number, ticks: number): number {
    if (this.wallBase === undefined) this.reset(now, ticks);
    const base = this.wallBase as number;
    const due = Math.floor(now - base) - (ticks - this.tickBase);
    if (due > MAX_LAG_TICKS) {
      // The guest cannot keep up: let guest time fall behind instead of bursting.
      this.wallBase = base + due - MAX_TICKS_PER_STEP;
    }
    return due > 0 ? Math.min(due, MAX_TICKS_PER_STEP) : 0;
  }
}
