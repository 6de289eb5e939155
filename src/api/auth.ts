/**
 * Bearer-token authorisation of the control API.
 *
 * Mutating routes (failover, checkpoint, config changes) always need the
 * token; read-only routes and /metrics need it only with `--api-auth all`.
 * The probes (/healthz, /readyz) never do: a kubelet or load balancer must
 * reach them without a secret. Without a configured token the mutating routes
 * are refused (403) unless the operator chose `--unsafe-open-api`.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { HEALTH_PATH, READY_PATH } from "../contract.js";
import type { ErrorBody } from "./schemas.js";

/** Who may call what: the token, which routes need it, and the explicit opt-out. */
export interface ApiAuthOptions {
  readonly token: string | undefined;
  readonly mode: "mutating" | "all";
  readonly unsafeOpen: boolean;
}

declare module "fastify" {
  interface FastifyContextConfig {
    /** The route changes the daemon and needs the token (set from contract.ts ROUTES). */
    mutating?: boolean;
  }
}

const OPEN_PATHS = new Set<string>([HEALTH_PATH, READY_PATH]);
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Whether `given` is the token. */
export function tokenMatches(expected: string, given: string): boolean {
  // Why: hashing first gives equal-length inputs, so neither the comparison nor a length
  // check leaks how much of the token a guess got right.
  const a = createHash("sha256").update(expected, "utf8").digest();
  const b = createHash("sha256").update(given, "utf8").digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer TOKEN` header, or undefined. */
export function bearerOf(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
  return m ? m[1] : undefined;
}

/** Whether a request changes something (routes say so; unknown routes by method). */
export function isMutating(req: FastifyRequest): boolean {
  return req.routeOptions.config?.mutating ?? !SAFE_METHODS.has(req.method);
}

function refuse(reply: FastifyReply, status: 401 | 403, body: ErrorBody, challenge?: string): FastifyReply {
  if (challenge !== undefined) void reply.header("www-authenticate", challenge);
  return reply.code(status).send(body);
}

/** An onRequest hook that enforces the rules above. */
export function authHook(opts: ApiAuthOptions) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const path = req.url.split("?")[0] ?? req.url;
    if (OPEN_PATHS.has(path)) return;
    const mutating = isMutating(req);
    if (!mutating && opts.mode !== "all") return;
    if (opts.token === undefined) {
      if (opts.unsafeOpen) return;
      await refuse(reply, 403, {
        code: "REMUSD_ERR_FORBIDDEN",
        message:
          "this route changes the daemon and no API token is configured: start it with --api-token-file FILE (or REMUSD_API_TOKEN), or --unsafe-open-api",
      });
      return;
    }
    const given = bearerOf(req.headers.authorization);
    if (given === undefined) {
      await refuse(
        reply,
        401,
        {
          code: "REMUSD_ERR_AUTH",
          message: "this route needs 'Authorization: Bearer TOKEN' (the daemon's API token)",
        },
        'Bearer realm="remusd"',
      );
      return;
    }
    if (!tokenMatches(opts.token, given)) {
      await refuse(
        reply,
        401,
        { code: "REMUSD_ERR_AUTH", message: "the bearer token is not the daemon's API token" },
        'Bearer realm="remusd", error="invalid_token"',
      );
    }
  };
}
