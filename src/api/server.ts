/**
 * The control API (fastify): every route of DESIGN.md Part 1 (contract.ts
 * ROUTES) with TypeBox schemas for body, query and reply, an OpenAPI document
 * and UI at /docs generated from them, bearer-token authorisation, and one
 * error body shape `{code, message}` with stable `REMUSD_ERR_*` codes.
 */
import { AjvCompiler } from "@fastify/ajv-compiler";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { type TSchema, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import Fastify, { type FastifyError, type FastifyInstance, type FastifySchema } from "fastify";
import { type FaultKind, ROUTES } from "../contract.js";
import type { Daemon } from "../daemon/daemon.js";
import { blockFor, crashNow } from "../daemon/faults.js";
import { type ErrorCode, httpStatusOf, isRemusError, RemusError } from "../errors.js";
import { VERSION } from "../version.js";
import { type ApiAuthOptions, authHook } from "./auth.js";
import {
  CheckpointQuery,
  type CheckpointReply,
  CheckpointReply as CheckpointReplySchema,
  Config,
  ConfigPatch,
  CounterReply,
  DigestReply,
  ERROR_REPLIES,
  type ErrorBody,
  EventsQuery,
  EventsReply,
  FailoverBody,
  FailoverReply,
  FaultDurationBody,
  FaultReply,
  HealthReply,
  ProcessesReply,
  ReadyReply,
  Status,
} from "./schemas.js";
import { applyConfig, configOf, statusOf } from "./status.js";

/** Options of the API (the auth rules; tests build APIs with other rules over the same daemon). */
export interface ApiOptions {
  readonly auth: ApiAuthOptions;
}

/** The auth options of a daemon's settings. */
export function authOptionsOf(d: Daemon): ApiAuthOptions {
  const s = d.settings;
  return { token: s.apiToken, mode: s.apiAuth, unsafeOpen: s.unsafeOpenApi };
}

type Method = (typeof ROUTES)[number]["method"];
type Url = (typeof ROUTES)[number]["url"];

/** How long POST /v1/checkpoint?wait=true waits for the acknowledgement. */
const CHECKPOINT_WAIT_MS = 10_000;

/** Route options from the contract: which routes need the token, for the hook and the docs. */
function contract(method: Method, url: Url, schema: FastifySchema & { tags: string[]; summary: string }) {
  const r = ROUTES.find((x) => x.method === method && x.url === url);
  if (!r) throw new Error(`${method} ${url} is not in contract.ts ROUTES`);
  return {
    config: { mutating: r.mutating },
    schema: { ...schema, ...(r.mutating ? { security: [{ bearerAuth: [] }] } : {}) },
  };
}

function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { code, message };
}

/** Maps fastify's own errors (validation, body parsing, limits) onto our codes. */
function codeOfHttpError(status: number): ErrorCode {
  if (status === 404) return "REMUSD_ERR_NOT_FOUND";
  if (status === 413) return "REMUSD_ERR_TOO_LARGE";
  if (status >= 400 && status < 500) return "REMUSD_ERR_BAD_REQUEST";
  return "REMUSD_ERR_INTERNAL";
}

const ajvCompilers = AjvCompiler();

/**
 * Validators that take request bodies exactly as typed: `{"intervalMs": "30"}`
 * is a bad request, not 30 (a JSON body has types, so a mutating route never
 * guesses). Query strings and parameters are text on the wire and keep Ajv's
 * coercion (`?wait=true`).
 */
const strictBodies: typeof ajvCompilers = (externalSchemas, options) => {
  const coercing = ajvCompilers(externalSchemas, options);
  const custom = (options?.mode === "JTD" ? {} : options?.customOptions) ?? {};
  const strict = ajvCompilers(externalSchemas, {
    ...(options?.plugins ? { plugins: options.plugins } : {}),
    ...(options?.onCreate ? { onCreate: options.onCreate } : {}),
    customOptions: { ...custom, coerceTypes: false },
  });
  return (route) => (route.httpPart === "body" ? strict : coercing)(route);
};

/** Builds the API of daemon `d` (not listening yet; tests use `inject`). */
export async function buildApi(
  d: Daemon,
  opts: ApiOptions = { auth: authOptionsOf(d) },
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    return503OnClosing: true,
    // Unknown keys in a body are an error, not silently dropped: a typo in a config
    // change must not look like success.
    ajv: { customOptions: { removeAdditional: false } },
    schemaController: { compilersFactory: { buildValidator: strictBodies } },
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "remusd control API",
        version: VERSION,
        description:
          "Status, failover, checkpoints, run-time configuration, the domain's digest and process table, metrics and probes of one remusd daemon. Errors are {code, message} with a stable REMUSD_ERR_* code.",
      },
      components: {
        securitySchemes: {
          bearerAuth: {
            type: "http",
            scheme: "bearer",
            description: "the daemon's API token (--api-token-file or REMUSD_API_TOKEN)",
          },
        },
      },
      tags: [
        { name: "replication", description: "role, state, failover, checkpoints" },
        { name: "config", description: "run-time configuration" },
        { name: "domain", description: "the protected domain" },
        { name: "ops", description: "metrics and probes" },
        {
          name: "faults",
          description: "fault injection for rehearsals (remusd drill): only with --allow-fault-injection",
        },
      ],
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs", staticCSP: true });

  app.addHook("onRequest", authHook(opts.auth));
  app.addHook("onResponse", async (req, reply) => {
    if (req.routeOptions.config?.mutating) {
      d.log.info(
        { method: req.method, url: req.url, status: reply.statusCode, remote: req.ip },
        "api request",
      );
    }
  });

  app.setErrorHandler((err: FastifyError | RemusError | Error, req, reply) => {
    if (isRemusError(err)) {
      return reply.code(httpStatusOf(err.code)).send(errorBody(err.code, err.message));
    }
    const fe = err as FastifyError;
    if (fe.validation) return reply.code(400).send(errorBody("REMUSD_ERR_BAD_REQUEST", fe.message));
    const status = typeof fe.statusCode === "number" && fe.statusCode >= 400 ? fe.statusCode : 500;
    if (status >= 500)
      d.log.error({ err, method: req.method, url: req.url }, "internal error in the control API");
    return reply.code(status).send(errorBody(codeOfHttpError(status), err.message));
  });
  app.setNotFoundHandler((req, reply) =>
    reply
      .code(404)
      .send(errorBody("REMUSD_ERR_NOT_FOUND", `no route ${req.method} ${req.url.split("?")[0]}`)),
  );

  const replies = (ok: TSchema, more: Record<number, TSchema> = {}) => ({
    200: ok,
    ...more,
    ...ERROR_REPLIES,
  });

  app.get(
    "/v1/status",
    contract("GET", "/v1/status", {
      tags: ["replication"],
      summary: "role, state, epochs, last checkpoint, peer, netbuf, disk replication, domain",
      response: replies(Status),
    }),
    async () => statusOf(d),
  );

  app.post<{ Body: FailoverBody | undefined }>(
    "/v1/failover",
    {
      ...contract("POST", "/v1/failover", {
        tags: ["replication"],
        summary:
          "on a backup: take over. With the primary alive and connected (or planned: true) it is a switchover (final checkpoint, then this backup activates; the reply says pending); otherwise it activates now. The body is optional",
        body: FailoverBody,
        response: replies(FailoverReply),
      }),
      // A bare `curl -X POST .../v1/failover` means an unplanned activation.
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req) => {
      const r = d.failover(req.body?.planned === true);
      return {
        activated: r.activated,
        pending: r.pending === true,
        epoch: r.epoch ?? null,
        digest: r.digest ?? null,
      };
    },
  );

  app.post<{ Querystring: CheckpointQuery }>(
    "/v1/checkpoint",
    contract("POST", "/v1/checkpoint", {
      tags: ["replication"],
      summary: "on a primary: end the open epoch and checkpoint it now",
      querystring: CheckpointQuery,
      response: replies(CheckpointReplySchema),
    }),
    async (req): Promise<CheckpointReply> => {
      const { epoch } = d.checkpoint();
      if (req.query.wait !== true) return { epoch, committed: false };
      const p = d.primary;
      const deadline = performance.now() + CHECKPOINT_WAIT_MS;
      while (p && p.committed < epoch && p.state === "protected" && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2));
      }
      const committed = (p?.committed ?? 0) >= epoch;
      if (!committed && p?.state === "protected") {
        throw new RemusError(
          "REMUSD_ERR_TIMEOUT",
          `epoch ${epoch} was not acknowledged within ${CHECKPOINT_WAIT_MS} ms`,
        );
      }
      if (!committed) {
        throw new RemusError(
          "REMUSD_ERR_PEER_UNAVAILABLE",
          `the backup was lost before epoch ${epoch} committed`,
        );
      }
      return { epoch, committed };
    },
  );

  app.get(
    "/v1/config",
    contract("GET", "/v1/config", {
      tags: ["config"],
      summary: "checkpoint interval, compression and heartbeat settings",
      response: replies(Config),
    }),
    async () => configOf(d),
  );

  app.patch<{ Body: ConfigPatch }>(
    "/v1/config",
    contract("PATCH", "/v1/config", {
      tags: ["config"],
      summary:
        "change the interval or compression (from the next epoch; on a backup: once it is primary) or the heartbeat (at once)",
      body: ConfigPatch,
      response: replies(Config),
    }),
    async (req) => applyConfig(d, req.body),
  );

  app.get(
    "/v1/domain/digest",
    contract("GET", "/v1/domain/digest", {
      tags: ["domain"],
      summary: "digest of the domain's state (a backup: at its last applied epoch)",
      response: replies(DigestReply),
    }),
    async () => d.digest(),
  );

  app.get(
    "/v1/domain/processes",
    contract("GET", "/v1/domain/processes", {
      tags: ["domain"],
      summary: "the guest's process table",
      response: replies(ProcessesReply),
    }),
    async () => ({ processes: d.processes() }),
  );

  app.get(
    "/v1/domain/counter",
    contract("GET", "/v1/domain/counter", {
      tags: ["domain"],
      summary: "continuity check of the guest's counter file (1..counter, no gap, no repeat)",
      response: replies(CounterReply),
    }),
    async () => d.counterCheck(),
  );

  app.get(
    "/metrics",
    contract("GET", "/metrics", {
      tags: ["ops"],
      summary: "Prometheus text exposition (needs the token with --api-auth all)",
      response: {
        200: {
          description: "Prometheus text format 0.0.4",
          content: { "text/plain": { schema: Type.String() } },
        },
        ...ERROR_REPLIES,
      },
    }),
    async (_req, reply) => {
      const text = await d.metrics.exposition();
      return reply.header("content-type", d.metrics.registry.contentType).send(text);
    },
  );

  app.get(
    "/healthz",
    contract("GET", "/healthz", {
      tags: ["ops"],
      summary: "liveness: the process serves requests (never needs a token)",
      response: replies(HealthReply),
    }),
    async () => ({ ok: true }),
  );

  app.get(
    "/readyz",
    contract("GET", "/readyz", {
      tags: ["ops"],
      summary:
        "readiness: 200 once the daemon serves its role (primary running, backup in standby), else 503",
      response: replies(ReadyReply, { 503: ReadyReply }),
    }),
    async (_req, reply) => {
      const body = { ready: d.ready(), role: d.role, state: d.node.state };
      return reply.code(body.ready ? 200 : 503).send(body);
    },
  );

  app.get<{ Querystring: EventsQuery }>(
    "/v1/events",
    contract("GET", "/v1/events", {
      tags: ["ops"],
      summary:
        "the last events of the event log (checkpoint events excepted), with sequence numbers; ?since=SEQ for newer ones",
      querystring: EventsQuery,
      response: replies(EventsReply),
    }),
    async (req) => d.events.recent(req.query.since ?? 0),
  );

  registerFaultRoutes(app, d, replies);

  await app.ready();
  return app;
}

/**
 * POST /v1/faults/crash, /stall and /link-cut. Refused (403) unless the daemon
 * was started with --allow-fault-injection; the auth hook has already asked
 * for the token. A body is checked strictly (an integer `ms`, no coercion of
 * "500"), and the fault takes effect once the reply has left.
 */
function registerFaultRoutes(
  app: FastifyInstance,
  d: Daemon,
  replies: (ok: TSchema) => Record<string | number, TSchema>,
): void {
  const route = (fault: FaultKind, summary: string, act: (ms: number) => void) => {
    const url = `/v1/faults/${fault}` as const;
    const timed = fault !== "crash";
    app.post<{ Body: FaultDurationBody }>(
      url,
      {
        ...contract("POST", url, {
          tags: ["faults"],
          summary,
          ...(timed ? { body: FaultDurationBody } : {}),
          response: replies(FaultReply),
        }),
        preValidation: async (req) => {
          if (!d.settings.allowFaultInjection) {
            throw new RemusError(
              "REMUSD_ERR_FORBIDDEN",
              "fault injection is off on this daemon: it accepts POST /v1/faults/* only when started with --allow-fault-injection",
            );
          }
          if (timed && !Value.Check(FaultDurationBody, req.body)) {
            const first = [...Value.Errors(FaultDurationBody, req.body)][0];
            throw new RemusError(
              "REMUSD_ERR_BAD_REQUEST",
              `body must be {"ms": an integer from 1 to 60000}${first ? `: ${first.path || "body"} ${first.message}` : ""}`,
            );
          }
        },
      },
      async (req, reply) => {
        const ms = timed ? req.body.ms : null;
        d.recordFault(fault, ms);
        reply.raw.once("finish", () => setImmediate(() => act(ms ?? 0)));
        return { fault, ms, pid: process.pid, at: new Date().toISOString() };
      },
    );
  };
  route("crash", "the daemon kills itself with SIGKILL (a crash: no final checkpoint, no GOODBYE)", () =>
    crashNow(),
  );
  route(
    "stall",
    "the daemon's event loop is blocked for ms (like SIGSTOP and SIGCONT): no guest, heartbeat or I/O meanwhile",
    (ms) => blockFor(ms),
  );
  route(
    "link-cut",
    "every replication connection is torn down at once, and none is dialled or accepted for ms",
    (ms) => d.cutReplication(ms),
  );
}

/** Builds the API and listens on `host:port` (port 0: an ephemeral port). */
export async function startApi(
  d: Daemon,
  host: string,
  port: number,
  opts?: ApiOptions,
): Promise<{ app: FastifyInstance; port: number }> {
  const app = await buildApi(d, opts);
  await app.listen({ host, port });
  const addr = app.server.address();
  return { app, port: typeof addr === "object" && addr ? addr.port : port };
}
