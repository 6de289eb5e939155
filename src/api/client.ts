/**
 * A client of one daemon's control API (remusctl and remusd drill): JSON in
 * and out, the bearer token, a timeout, and the daemon's `{code, message}`
 * errors turned back into RemusErrors with the same code.
 */
import { isErrorCode, RemusError } from "../errors.js";

/** Where a daemon's control API is, and the token of its mutating routes. */
export interface Client {
  readonly base: string;
  readonly token: string | undefined;
}

function unreachable(c: Client, e: unknown, timeoutMs: number): RemusError {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (e as { name?: string }).name;
  const why =
    code === "ECONNREFUSED"
      ? "connection refused (is remusd running there?)"
      : code === "ENOTFOUND" || code === "EAI_AGAIN"
        ? "unknown host"
        : code === "TimeoutError" || code === "UND_ERR_CONNECT_TIMEOUT"
          ? `no answer within ${timeoutMs / 1000} s`
          : (cause?.message ?? (e as Error).message);
  return new RemusError("REMUSD_ERR_UNREACHABLE", `cannot reach remusd at ${c.base}: ${why}`, { cause: e });
}

/**
 * One request; resolves with the parsed JSON (or the text of a non-JSON
 * reply). A daemon that cannot be reached is REMUSD_ERR_UNREACHABLE; an error
 * reply is a RemusError with the daemon's code.
 */
export async function request(
  c: Client,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 5000,
): Promise<unknown> {
  let r: Response;
  const headers: Record<string, string> = { accept: "application/json" };
  if (c.token !== undefined) headers.authorization = `Bearer ${c.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  try {
    r = await fetch(`${c.base}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw unreachable(c, e, timeoutMs);
  }
  const text = await r.text();
  if (!r.ok) {
    let err: { code?: string; message?: string } = {};
    try {
      err = JSON.parse(text) as typeof err;
    } catch {
      // not our error body
    }
    if (isErrorCode(err.code)) throw new RemusError(err.code, err.message ?? `HTTP ${r.status}`);
    throw new RemusError(
      "REMUSD_ERR_BAD_REPLY",
      `${err.code ?? `HTTP ${r.status}`}: ${err.message ?? text.slice(0, 200)}`,
    );
  }
  if ((r.headers.get("content-type") ?? "").includes("application/json")) return JSON.parse(text) as unknown;
  return text;
}
