// Container healthcheck (the image has no curl): GET /healthz, or the path given
// as the first argument (e.g. /readyz), on the control API named by
// REMUSD_CONTROL (default 127.0.0.1:7781). Exit 0 on HTTP 200, 1 otherwise.
const addr = process.env.REMUSD_CONTROL || "127.0.0.1:7781";
const path = process.argv[2] || "/healthz";
const colon = addr.lastIndexOf(":");
let host = addr.slice(0, colon).replace(/^\[|\]$/g, "");
const port = Number(addr.slice(colon + 1));
// A wildcard listen address is reached on loopback.
if (host === "" || host === "0.0.0.0") host = "127.0.0.1";
if (host === "::") host = "::1";
const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}${path}`;
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(2500) });
  if (res.status !== 200) {
    process.stderr.write(`healthcheck: ${url} answered ${res.status}\n`);
    process.exit(1);
  }
  process.exit(0);
} catch (e) {
  process.stderr.write(`healthcheck: ${url}: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
