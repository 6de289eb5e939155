/**
 * `--holder-label` (podlabel.ts) against a fake Kubernetes API server on
 * 127.0.0.1 (node:http) that records every PATCH: the label goes true on
 * `lease.acquired` and false on a loss or release, the request has the shape
 * the API server expects, a 500 is retried, and outside a pod the flag is a
 * usage error.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { holderLabelFor, inClusterTarget, PodLabeller, type PodTarget } from "../../src/daemon/podlabel.js";
import { EXIT, exitCodeOf, isRemusError } from "../../src/errors.js";
import type { LeaseEvent } from "../../src/lease/core.js";

interface Recorded {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** The fake API server: answers the next `failures` PATCHes with 500, then 200. */
class FakeApi {
  readonly requests: Recorded[] = [];
  failures = 0;
  private server!: Server;
  private waiters: Array<{ n: number; r: () => void }> = [];
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        this.requests.push({
          method: req.method ?? "",
          url: req.url ?? "",
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
        });
        if (this.failures > 0) {
          this.failures--;
          res
            .writeHead(500, { "content-type": "application/json" })
            .end('{"kind":"Status","message":"etcd busy"}');
        } else res.writeHead(200, { "content-type": "application/json" }).end("{}");
        for (const w of this.waiters.filter((x) => this.requests.length >= x.n)) w.r();
        this.waiters = this.waiters.filter((x) => this.requests.length < x.n);
      });
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Resolves once `n` requests in all have been answered. */
  received(n: number): Promise<void> {
    if (this.requests.length >= n) return Promise.resolve();
    return new Promise((r) => this.waiters.push({ n, r }));
  }

  labels(): string[] {
    return this.requests.map(
      (q) => (JSON.parse(q.body) as { metadata: { labels: Record<string, string> } }).metadata.labels.k ?? "",
    );
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

const log = pino({ level: "silent" });
const KEY = "remusd.io/lease-holder";
const acquired: LeaseEvent = {
  event: "lease.acquired",
  generation: 2,
  ttlMs: 5000,
  record: {
    nodeId: "a",
    generation: 2,
    address: "ws://a:7780",
    control: "a:7781",
    since: "2026-01-01T00:00:00.000Z",
  },
};
const lost: LeaseEvent = { event: "lease.lost", generation: 2, reason: "expired" };
const released: LeaseEvent = { event: "lease.released", generation: 2 };

describe("holder label", () => {
  const api = new FakeApi();
  before(() => api.start());
  after(() => api.close());
  const target = (): PodTarget => ({
    baseUrl: `http://127.0.0.1:${api.port}`,
    namespace: "remusd",
    pod: "remusd-node-1",
    token: "sa-token",
  });

  test("true on acquire, false on loss and on release; the PATCH the API server expects", async () => {
    api.requests.length = 0;
    const l = new PodLabeller({ key: KEY, target: target(), log, backoff: { firstMs: 1, maxMs: 4 } });
    l.set(holderLabelFor(acquired));
    await l.settled(10_000);
    assert.equal(l.current, true);
    l.set(holderLabelFor(lost));
    await l.settled(10_000);
    assert.equal(l.current, false);
    l.set(holderLabelFor(acquired));
    await l.settled(10_000);
    l.set(holderLabelFor(released));
    await l.settled(10_000);
    assert.equal(l.current, false);
    l.stop();
    const labels = api.requests.map((q) => JSON.parse(q.body));
    assert.deepEqual(
      labels,
      ["true", "false", "true", "false"].map((v) => ({ metadata: { labels: { [KEY]: v } } })),
    );
    for (const q of api.requests) {
      assert.equal(q.method, "PATCH");
      assert.equal(q.url, "/api/v1/namespaces/remusd/pods/remusd-node-1");
      assert.equal(q.headers["content-type"], "application/merge-patch+json");
      assert.equal(q.headers.authorization, "Bearer sa-token");
    }
  });

  test("a 500 is retried until the API server accepts; the value wanted last wins", async () => {
    api.requests.length = 0;
    api.failures = 3;
    const l = new PodLabeller({ key: "k", target: target(), log, backoff: { firstMs: 1, maxMs: 4 } });
    l.set(true);
    await api.received(1);
    // Lost while the first PATCH was failing: only false may end up applied.
    l.set(false);
    await api.received(4);
    await l.settled(10_000);
    assert.equal(l.current, false);
    l.stop();
    // Three refused, then one accepted; true is not retried once false is wanted.
    assert.deepEqual(api.labels(), ["true", "false", "false", "false"]);
  });

  test("a transport error (nothing listening) is retried too, and stop() ends the retries", async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    // Each failed attempt logs an error; three of them show the retries happen.
    let failures = 0;
    let third: () => void = () => {};
    const thirdFailure = new Promise<void>((r) => {
      third = r;
    });
    const errors = pino(
      { level: "error" },
      {
        write: (line: string) => {
          assert.match(line, /could not set the holder label/);
          if (++failures === 3) third();
        },
      },
    );
    const l = new PodLabeller({
      key: "k",
      target: { ...target(), baseUrl: `http://127.0.0.1:${port}` },
      log: errors,
      backoff: { firstMs: 1, maxMs: 2 },
    });
    l.set(true);
    await thirdFailure;
    assert.equal(l.current, undefined);
    l.stop();
    await l.settled(10_000);
  });

  test("the in-cluster target: from the environment and the service account files; outside a pod, a usage error", () => {
    const dir = mkdtempSync(join(tmpdir(), "remusd-sa-"));
    try {
      writeFileSync(join(dir, "token"), "tok\n");
      writeFileSync(join(dir, "ca.crt"), "PEM\n");
      writeFileSync(join(dir, "namespace"), "remusd");
      const env = { KUBERNETES_SERVICE_HOST: "10.0.0.1", KUBERNETES_SERVICE_PORT: "443" };
      assert.deepEqual(inClusterTarget({ ...env, POD_NAME: "remusd-node-0" }, dir), {
        baseUrl: "https://10.0.0.1:443",
        namespace: "remusd",
        pod: "remusd-node-0",
        token: "tok",
        ca: "PEM",
      });
      assert.equal(inClusterTarget(env, dir, () => "host-pod").pod, "host-pod");
      const usage = (e: unknown): boolean =>
        isRemusError(e) && e.code === "REMUSD_ERR_BAD_USAGE" && exitCodeOf(e) === EXIT.usage;
      assert.throws(() => inClusterTarget({}, dir), usage);
      assert.throws(() => inClusterTarget(env, join(dir, "missing")), usage);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
