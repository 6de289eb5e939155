/**
 * The control API (fastify): status, failover, checkpoint, digest, processes,
 * metrics, health and readiness. Errors share one body shape {code, message}.
 */
import Fastify, { type FastifyInstance } from "fastify";
import type { Daemon } from "../daemon/daemon.js";
import { httpStatusOf, isRemusError } from "../errors.js";

export async function startApi(d: Daemon, host: string, port: number): Promise<{ app: FastifyInstance; port: number }> {
  const app = Fastify({ logger: false });
  app.setErrorHandler((err, _req, reply) => {
    if (isRemusError(err)) {
      void reply.code(httpStatusOf(err.code)).send({ code: err.code, message: err.message });
      return;
    }
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    void reply.code(status).send({
      code: status === 400 ? "REMUSD_ERR_BAD_REQUEST" : "REMUSD_ERR_INTERNAL",
      message: err instanceof Error ? err.message : String(err),
    });
  });
  app.get("/v1/status", async () => d.status());
  app.post<{ Body: { planned?: boolean } | undefined }>("/v1/failover", async (req) =>
    d.failover(req.body?.planned === true),
  );
  app.post("/v1/checkpoint", async () => d.checkpoint());
  app.get("/v1/domain/digest", async () => d.digest());
  app.get("/v1/domain/processes", async () => ({ processes: d.processes() }));
  app.get("/v1/domain/counter", async () => d.counterCheck());
  app.get("/metrics", async (_req, reply) => {
    void reply.header("content-type", d.metrics.registry.contentType);
    return d.metrics.exposition();
  });
  app.get("/healthz", async () => ({ ok: true }));
  app.get("/readyz", async (_req, reply) => {
    if (!d.ready()) return reply.code(503).send({ ready: false, role: d.role, state: d.machine.state });
    return { ready: true, role: d.role, state: d.machine.state };
  });
  await app.listen({ host, port });
  const addr = app.server.address();
  return { app, port: typeof addr === "object" && addr ? addr.port : port };
}
