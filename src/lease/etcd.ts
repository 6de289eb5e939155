/**
 * The lease service on etcd (npm `etcd3`, its gRPC lease and KV APIs).
 *
 * Keys under the `--lease` PREFIX:
 *  - PREFIX/leader: the holder's LeaderRecord (JSON), attached to its lease,
 *    so etcd deletes it when the lease expires or is revoked;
 *  - PREFIX/generation: the last generation handed out and the lease it was
 *    set under (`N LEASEID`; a bare `N` is read too), never attached to a
 *    lease, so it outlives every holder. The lease lets a candidate whose
 *    swap won but whose answer was lost recognise its own bump (lease.ts).
 *
 * Acquisition is one transaction: if the leader key's create revision is 0
 * (never written, or deleted with its holder's lease) and the generation
 * key's mod revision is the one just read, put generation+1 and the leader
 * record under our lease; otherwise read the leader. Two contenders that read
 * the same generation cannot both succeed (the second's compare fails), so
 * generations are unique and increasing across the cluster.
 *
 * Keep-alives are driven by the caller (lease.ts), one request per call on a
 * stream of its own with a gRPC deadline: the caller knows when each one was
 * sent (etcd3's own keep-alive loop stamps the answer's arrival instead, and
 * by the wall clock).
 */
import {
  ClientClosedError,
  CompareResult,
  CompareTarget,
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  type IKeyValue,
} from "etcd3";
import {
  type Candidate,
  decodeCounter,
  decodeGeneration,
  decodeRecord,
  encodeCounter,
  encodeRecord,
  type LeaderRecord,
  RecordError,
} from "./record.js";
import {
  type Answer,
  type CampaignResult,
  type Cancel,
  fail,
  type Grant,
  type KeepAlive,
  type LeaseService,
  ok,
  type Reply,
} from "./service.js";
import type { EtcdLeaseSpec } from "./spec.js";

export interface EtcdLeaseOptions {
  /** gRPC deadline of each request (the caller's own timeout should be the same or shorter). */
  readonly requestTimeoutMs: number;
}

/** The keys of a lease prefix. */
export function leaseKeys(prefix: string): { readonly leader: string; readonly generation: string } {
  return { leader: `${prefix}/leader`, generation: `${prefix}/generation` };
}

/** Swaps that lose only because the generation moved under them are retried this often. */
const CAMPAIGN_TRIES = 3;

export class EtcdLeaseService implements LeaseService {
  private readonly etcd: Etcd3;
  private readonly keys: { readonly leader: string; readonly generation: string };
  private closed = false;

  constructor(
    spec: EtcdLeaseSpec,
    private readonly o: EtcdLeaseOptions,
  ) {
    this.keys = leaseKeys(spec.prefix);
    this.etcd = new Etcd3({
      hosts: spec.endpoints.map((e) => `http://${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`),
      dialTimeout: o.requestTimeoutMs,
    });
  }

  grant(ttlMs: number, reply: Reply<Grant>): void {
    this.settle(
      this.etcd.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlMs / 1000)) }, this.callOptions()),
      (r) => {
        if (r.error) return fail("unavailable", `lease grant refused: ${r.error}`);
        return ok({ leaseId: r.ID, ttlMs: Number(r.TTL) * 1000 });
      },
      reply,
    );
  }

  keepAlive(leaseId: string, reply: Reply<KeepAlive>): void {
    if (this.closed) {
      reply(fail("closed", "etcd client closed"));
      return;
    }
    let done = false;
    const finish = (a: Answer<KeepAlive>): void => {
      if (done) return;
      done = true;
      reply(a);
    };
    this.etcd.leaseClient.leaseKeepAlive(this.callOptions()).then(
      (stream) => {
        stream.on("data", (res: { TTL: string }) => {
          finish(ok({ ttlMs: Math.max(0, Number(res.TTL)) * 1000 }));
          stream.end();
        });
        stream.on("error", (err: unknown) => finish(this.failure(err)));
        stream.on("end", () => finish(fail("unavailable", "keep-alive stream ended without an answer")));
        stream.write({ ID: leaseId });
      },
      (err: unknown) => finish(this.failure(err)),
    );
  }

  revoke(leaseId: string, reply: Reply<void>): void {
    this.settle(
      this.etcd.leaseClient.leaseRevoke({ ID: leaseId }, this.callOptions()),
      () => ok(undefined),
      reply,
      // Revoking a lease that is already gone is a success.
      (e) => (e instanceof EtcdLeaseInvalidError ? ok(undefined) : undefined),
    );
  }

  campaign(
    leaseId: string,
    candidate: Candidate,
    since: string,
    reply: Reply<CampaignResult>,
    from?: number,
  ): void {
    this.settle(this.swap(leaseId, candidate, since, from), (r) => ok(r), reply);
  }

  advance(leaseId: string, from: number, reply: Reply<LeaderRecord | undefined>): void {
    this.settle(this.bump(leaseId, from), (r) => ok(r), reply);
  }

  holder(reply: Reply<LeaderRecord | undefined>): void {
    this.settle(
      this.etcd.kv.range({ key: Buffer.from(this.keys.leader) }, this.callOptions()),
      (r) => ok(recordOf(r.kvs[0])),
      reply,
    );
  }

  watchHolder(onChange: (holder: LeaderRecord | undefined) => void): Cancel {
    let cancelled = false;
    let cancelWatcher: (() => void) | undefined;
    this.etcd
      .watch()
      .key(this.keys.leader)
      .create()
      .then(
        (w) => {
          cancelWatcher = () => void w.cancel().catch(() => {});
          if (cancelled) {
            cancelWatcher();
            return;
          }
          w.on("put", (kv: IKeyValue) => {
            try {
              onChange(recordOf(kv));
            } catch {
              // A malformed record is nobody we can follow; the next read reports it.
            }
          });
          w.on("delete", () => onChange(undefined));
          w.on("error", () => {});
        },
        () => {},
      );
    return {
      cancel: () => {
        cancelled = true;
        cancelWatcher?.();
      },
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.etcd.close();
  }

  // ---- internals ----

  private async swap(
    leaseId: string,
    candidate: Candidate,
    since: string,
    from: number | undefined,
  ): Promise<CampaignResult> {
    const leaderKey = Buffer.from(this.keys.leader);
    const genKey = Buffer.from(this.keys.generation);
    for (let i = 0; ; i++) {
      const gr = await this.etcd.kv.range({ key: genKey }, this.callOptions());
      const g = gr.kvs[0];
      const counter = decodeCounter(g?.value);
      const current = counter.generation;
      // The compare on the counter's mod revision below makes this read part of the swap.
      if (from !== undefined && current !== from)
        return {
          won: false,
          holder: undefined,
          stale: current,
          ...(counter.by === undefined ? {} : { staleBy: counter.by }),
        };
      const generation = current + 1;
      const record: LeaderRecord = { ...candidate, generation, since };
      const tx = await this.etcd.kv.txn(
        {
          compare: [
            // Why create revision 0: the key exists exactly while its holder's lease lives.
            { key: leaderKey, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 },
            // Why the generation's mod revision: a concurrent winner bumped it, and its number is taken.
            {
              key: genKey,
              target: CompareTarget.Mod,
              result: CompareResult.Equal,
              mod_revision: g ? g.mod_revision : 0,
            },
          ],
          success: [
            { request_put: { key: genKey, value: encodeCounter(generation, leaseId) } },
            { request_put: { key: leaderKey, value: encodeRecord(record), lease: leaseId } },
          ],
          failure: [{ request_range: { key: leaderKey } }],
        },
        this.callOptions(),
      );
      if (tx.succeeded) return { won: true, record };
      const holder = recordOf(tx.responses[0]?.response_range?.kvs[0]);
      if (holder !== undefined || i + 1 >= CAMPAIGN_TRIES) return { won: false, holder };
    }
  }

  /** advance(): the counter from `from` to `from + 1`, and the record with it, while our lease holds the key. */
  private async bump(leaseId: string, from: number): Promise<LeaderRecord | undefined> {
    const leaderKey = Buffer.from(this.keys.leader);
    const genKey = Buffer.from(this.keys.generation);
    const [gr, lr] = await Promise.all([
      this.etcd.kv.range({ key: genKey }, this.callOptions()),
      this.etcd.kv.range({ key: leaderKey }, this.callOptions()),
    ]);
    const g = gr.kvs[0];
    const l = lr.kvs[0];
    if (decodeGeneration(g?.value) !== from || l === undefined) return undefined;
    const record: LeaderRecord = { ...decodeRecord(l.value), generation: from + 1 };
    const tx = await this.etcd.kv.txn(
      {
        compare: [
          // Why the lease: only the holder moves the lineage on.
          { key: leaderKey, target: CompareTarget.Lease, result: CompareResult.Equal, lease: leaseId },
          {
            key: leaderKey,
            target: CompareTarget.Mod,
            result: CompareResult.Equal,
            mod_revision: l.mod_revision,
          },
          {
            key: genKey,
            target: CompareTarget.Mod,
            result: CompareResult.Equal,
            mod_revision: g ? g.mod_revision : 0,
          },
        ],
        success: [
          { request_put: { key: genKey, value: encodeCounter(from + 1, leaseId) } },
          { request_put: { key: leaderKey, value: encodeRecord(record), lease: leaseId } },
        ],
        failure: [],
      },
      this.callOptions(),
    );
    return tx.succeeded ? record : undefined;
  }

  private callOptions(): { deadline: number } {
    return { deadline: Date.now() + this.o.requestTimeoutMs };
  }

  /** Maps a promise to exactly one reply. */
  private settle<R, T>(
    p: Promise<R>,
    map: (r: R) => Answer<T>,
    reply: Reply<T>,
    onError?: (e: unknown) => Answer<T> | undefined,
  ): void {
    if (this.closed) {
      p.catch(() => {});
      reply(fail("closed", "etcd client closed"));
      return;
    }
    p.then(
      (r) => {
        let a: Answer<T>;
        try {
          a = map(r);
        } catch (e) {
          a = this.failure(e);
        }
        reply(a);
      },
      (e: unknown) => reply(onError?.(e) ?? this.failure(e)),
    );
  }

  private failure<T>(e: unknown): Answer<T> {
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof RecordError) return fail("bad-record", msg, e);
    if (e instanceof EtcdLeaseInvalidError) return fail("lease-not-found", msg, e);
    if (e instanceof GRPCDeadlineExceededError) return fail("timeout", msg, e);
    if (e instanceof ClientClosedError || this.closed) return fail("closed", msg, e);
    return fail("unavailable", msg, e);
  }
}

function recordOf(kv: IKeyValue | undefined): LeaderRecord | undefined {
  return kv === undefined ? undefined : decodeRecord(kv.value);
}
