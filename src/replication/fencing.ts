/**
 * Fencing claims: how one node proves to a primary that it has been
 * superseded (proto/SPEC.md §5.5).
 *
 * A claim is a GOODBYE with reason FENCED on an **authenticated** session
 * (both AUTHs verified; nothing said before that changes anything), carrying
 * a generation and an epoch of the claimant's lineage:
 *
 *  - an activated primary claims its own generation and the epoch it resumed
 *    from (the epoch its generation began from, its *base*);
 *  - a backup claims the newest generation it knows and its committed epoch.
 *
 * The primary being fenced accepts the claim only when it is about a
 * generation above its own and the claimant's lineage reached at least the
 * epoch this primary's own generation began from: a successor resumes an
 * epoch this primary (or a later generation) produced, never one from before
 * this primary existed. A claim that fails either test is refused and logged;
 * it changes nothing.
 *
 * Why both tests: the key proves membership, not history. A member that
 * restarted with a stale state, or one that forked off before this primary's
 * generation began, must not be able to stop the domain.
 */

/** What a FENCED goodbye claims. */
export interface FencingClaim {
  readonly generation: number;
  readonly epoch: number;
}

/** What a primary knows of its own lineage. */
export interface Lineage {
  readonly generation: number;
  /** The epoch this primary's generation began from (0 for a domain booted here). */
  readonly base: number;
}

/** Why `claim` does not prove that the primary of `own` is superseded, or undefined when it does. */
export function refuteClaim(claim: FencingClaim, own: Lineage): string | undefined {
  if (claim.generation <= own.generation) {
    return `claimed generation ${claim.generation} is not newer than ours (${own.generation})`;
  }
  if (claim.epoch < own.base) {
    return `claimed lineage reached epoch ${claim.epoch}, before our generation ${own.generation} began (epoch ${own.base})`;
  }
  return undefined;
}
