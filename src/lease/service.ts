/**
 * What a lease needs of the service that keeps it (etcd, or the in-memory
 * service of the simulations): grant, keep-alive and revoke of a TTL lease,
 * one compare-and-swap that takes the leader key and bumps the generation,
 * a read and a watch of the holder. Callback style, so that a synchronous
 * virtual-time world can run the same code as the daemon: each call answers
 * exactly once, or never (a lost answer: the caller times out).
 *
 * The service must be linearizable: every call takes effect at one instant
 * between its request and its answer, and the lease it grants must not
 * expire before `ttl` after the instant it received the grant or keep-alive
 * (etcd: the leader refreshes the lease when the request reaches it, and a
 * new leader extends every lease).
 */
import type { Candidate, LeaderRecord } from "./record.js";

export type LeaseServiceErrorKind =
  /** The service cannot serve now (no quorum, not reachable, refused the connection). */
  | "unavailable"
  /** No answer in time. */
  | "timeout"
  /** The lease named in the request does not exist (expired or revoked). */
  | "lease-not-found"
  /** The leader key or the generation counter holds something that is not ours to read. */
  | "bad-record"
  /** The client was closed. */
  | "closed";

export class LeaseServiceError extends Error {
  constructor(
    readonly kind: LeaseServiceErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "LeaseServiceError";
  }
}

export type Answer<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: LeaseServiceError };
export type Reply<T> = (answer: Answer<T>) => void;

export interface Grant {
  readonly leaseId: string;
  /** The TTL the service granted (it may be longer than asked). */
  readonly ttlMs: number;
}

/** The service's answer to a keep-alive: the lease's TTL again, or 0 when the lease is gone. */
export interface KeepAlive {
  readonly ttlMs: number;
}

export type CampaignResult =
  | { readonly won: true; readonly record: LeaderRecord }
  /**
   * Someone holds the leader key (`holder`, or undefined if it vanished
   * between the swap and the read); or, with `stale`, the generation counter
   * has moved past the candidate's `from` (its image is of an older lineage);
   * `staleBy` is the lease under which the counter was last set, when known.
   */
  | {
      readonly won: false;
      readonly holder: LeaderRecord | undefined;
      readonly stale?: number;
      readonly staleBy?: string;
    };

export interface Cancel {
  cancel(): void;
}

export interface LeaseService {
  grant(ttlMs: number, reply: Reply<Grant>): void;
  keepAlive(leaseId: string, reply: Reply<KeepAlive>): void;
  revoke(leaseId: string, reply: Reply<void>): void;
  /**
   * Takes the leader key under `leaseId` if nobody holds it (its create
   * revision is 0: never written, or deleted with its holder's lease), in the
   * same transaction reading and bumping the generation counter, compared by
   * its mod revision: so generations are unique and increasing.
   * With `from`: only while the counter still equals `from` (the generation
   * the candidate's image belongs to); otherwise the answer is `stale`.
   */
  campaign(
    leaseId: string,
    candidate: Candidate,
    since: string,
    reply: Reply<CampaignResult>,
    from?: number,
  ): void;
  /**
   * The holder under `leaseId` moves the lineage on: if it holds the leader
   * key under that lease and the counter equals `from`, the counter becomes
   * `from + 1` and the leader record carries it, in one transaction. Answers
   * the new record, or undefined when refused (not the holder, or the counter
   * moved). Why: a primary about to release output its backup's image lacks
   * first makes that image stale for every later campaign (`from`).
   */
  advance(leaseId: string, from: number, reply: Reply<LeaderRecord | undefined>): void;
  /** The current holder, or undefined when nobody holds the lease. */
  holder(reply: Reply<LeaderRecord | undefined>): void;
  /** Calls `onChange` when the leader key changes (best effort: a reconnect may skip changes). */
  watchHolder(onChange: (holder: LeaderRecord | undefined) => void): Cancel;
  close(): void;
}

export const ok = <T>(value: T): Answer<T> => ({ ok: true, value });
export const fail = <T>(kind: LeaseServiceErrorKind, message: string, cause?: unknown): Answer<T> => ({
  ok: false,
  error: new LeaseServiceError(kind, message, cause === undefined ? undefined : { cause }),
});
