/**
 * `remusd node --holder-label KEY`: the node labels its own Kubernetes pod
 * KEY=true while it holds the lease and KEY=false otherwise, so a Service
 * that selects KEY=true routes to the holder.
 *
 * Data flow: the daemon calls `set(true)` on `lease.acquired` and
 * `set(false)` on `lease.lost` / `lease.released`, first thing. The labeller
 * keeps one wanted value and one PATCH in flight at most; when the PATCH
 * fails it retries with exponential backoff, and when the wanted value
 * changed meanwhile it sends the new one after the current answer. It never
 * blocks the caller.
 *
 * Invariant: the label is routing only. The lease alone decides who releases
 * output; a stale `true` on a pod that lost the lease sends clients to a node
 * that releases nothing, it never lets two nodes release output.
 */

import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { hostname } from "node:os";
import type { Logger } from "pino";
import { usageError } from "../errors.js";
import type { LeaseEvent } from "../lease/core.js";

/** Where the service account's files live inside a pod. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The label a lease event calls for: true on `lease.acquired`, false on a loss or a release. */
export function holderLabelFor(e: LeaseEvent): boolean {
  return e.event === "lease.acquired";
}

/** The HTTP edge: one PATCH; resolves with the status and body, rejects on a transport error. */
export type PatchFn = (url: string, body: string) => Promise<{ status: number; body: string }>;

/** Which pod to label, and how to reach the API server. */
export interface PodTarget {
  /** e.g. https://10.0.0.1:443 (no trailing slash). */
  readonly baseUrl: string;
  readonly namespace: string;
  readonly pod: string;
  readonly token: string;
  /** PEM of the cluster CA (https only). */
  readonly ca?: string;
}

/**
 * The pod target from the in-cluster environment (KUBERNETES_SERVICE_HOST/PORT,
 * the service account files, POD_NAME or the hostname). Outside Kubernetes: a
 * usage error naming what is missing.
 */
export function inClusterTarget(
  env: NodeJS.ProcessEnv = process.env,
  dir = SERVICE_ACCOUNT_DIR,
  host: () => string = hostname,
): PodTarget {
  const h = env.KUBERNETES_SERVICE_HOST;
  const p = env.KUBERNETES_SERVICE_PORT;
  if (!h || !p)
    throw usageError(
      "--holder-label needs to run in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set",
    );
  const read = (name: string): string => {
    try {
      return readFileSync(`${dir}/${name}`, "utf8").trim();
    } catch (e) {
      throw usageError(
        `--holder-label needs the pod's service account ${name} (${dir}/${name}): ${(e as Error).message}`,
        { cause: e },
      );
    }
  };
  const pod = env.POD_NAME || host();
  return {
    baseUrl: `https://${h.includes(":") ? `[${h}]` : h}:${p}`,
    namespace: read("namespace"),
    pod,
    token: read("token"),
    ca: read("ca.crt"),
  };
}

/** The default edge: node:https (with the cluster CA) or node:http, bearer token, merge patch. */
export function httpPatch(target: PodTarget, timeoutMs = 5000): PatchFn {
  return (url, body) =>
    new Promise((resolve, reject) => {
      const u = new URL(url);
      const req = (u.protocol === "https:" ? httpsRequest : httpRequest)(
        u,
        {
          method: "PATCH",
          timeout: timeoutMs,
          headers: {
            authorization: `Bearer ${target.token}`,
            "content-type": "application/merge-patch+json",
            accept: "application/json",
            "content-length": Buffer.byteLength(body),
          },
          ...(u.protocol === "https:" && target.ca ? { ca: target.ca } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          );
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on("error", reject);
      req.end(body);
    });
}

export interface PodLabellerOptions {
  readonly key: string;
  readonly target: PodTarget;
  readonly log: Logger;
  readonly patch?: PatchFn;
  /** First retry delay and the cap (ms); doubles each failure. */
  readonly backoff?: { readonly firstMs: number; readonly maxMs: number };
}

/** Keeps the node's own pod label KEY in step with the value last `set`, retrying until the API server accepts it. */
export class PodLabeller {
  private wanted: boolean | undefined;
  private applied: boolean | undefined;
  private busy = false;
  private retry: NodeJS.Timeout | undefined;
  private delayMs: number;
  private stopped = false;
  private readonly patch: PatchFn;
  private readonly url: string;
  private readonly firstMs: number;
  private readonly maxMs: number;
  private idle: Array<() => void> = [];

  constructor(private readonly o: PodLabellerOptions) {
    this.patch = o.patch ?? httpPatch(o.target);
    const t = o.target;
    this.url = `${t.baseUrl}/api/v1/namespaces/${encodeURIComponent(t.namespace)}/pods/${encodeURIComponent(t.pod)}`;
    this.firstMs = o.backoff?.firstMs ?? 250;
    this.maxMs = o.backoff?.maxMs ?? 10_000;
    this.delayMs = this.firstMs;
  }

  /** The label value the API server last accepted (undefined before the first success). */
  get current(): boolean | undefined {
    return this.applied;
  }

  /** Wants KEY=value on the pod; returns at once, the PATCH (and its retries) run behind. */
  set(value: boolean): void {
    if (this.stopped) return;
    this.wanted = value;
    if (this.retry) {
      // A new value is worth trying now, not after the backoff.
      clearTimeout(this.retry);
      this.retry = undefined;
    }
    this.pump();
  }

  /** Resolves when the wanted value is applied, or after `timeoutMs` (for a graceful stop). */
  settled(timeoutMs: number): Promise<void> {
    if (!this.busy && !this.retry) return Promise.resolve();
    return new Promise((r) => {
      const t = setTimeout(r, timeoutMs);
      t.unref?.();
      this.idle.push(() => {
        clearTimeout(t);
        r();
      });
    });
  }

  /** No more PATCHes (one in flight finishes on its own). */
  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    for (const f of this.idle.splice(0)) f();
  }

  private pump(): void {
    if (this.busy || this.stopped || this.wanted === undefined || this.wanted === this.applied) {
      if (!this.busy && !this.retry) for (const f of this.idle.splice(0)) f();
      return;
    }
    const value = this.wanted;
    const body = JSON.stringify({ metadata: { labels: { [this.o.key]: value ? "true" : "false" } } });
    this.busy = true;
    this.patch(this.url, body).then(
      (r) =>
        this.answered(
          value,
          r.status >= 200 && r.status < 300 ? undefined : `HTTP ${r.status}: ${r.body.slice(0, 300)}`,
        ),
      (e: unknown) => this.answered(value, (e as Error).message),
    );
  }

  private answered(value: boolean, error: string | undefined): void {
    this.busy = false;
    if (error === undefined) {
      this.applied = value;
      this.delayMs = this.firstMs;
      this.o.log.info({ label: this.o.key, value, pod: this.o.target.pod }, "holder label set on this pod");
      this.pump();
      return;
    }
    if (this.stopped) return;
    this.o.log.error(
      { label: this.o.key, value, pod: this.o.target.pod, err: error, retryMs: this.delayMs },
      "could not set the holder label on this pod (the Service may route to the wrong node); retrying",
    );
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.pump();
    }, this.delayMs);
    this.retry.unref?.();
    this.delayMs = Math.min(this.delayMs * 2, this.maxMs);
  }
}
