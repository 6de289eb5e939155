/**
 * docs/errors.md, rendered from `ERROR_CODES` (src/errors.ts). A test compares
 * the file with this rendering, so the list in the docs cannot drift from the
 * code; `REMUSD_UPDATE_DOCS=1 npm test` rewrites it.
 */
import { ERROR_CODES } from "../errors.js";

/** The Markdown of docs/errors.md. */
export function errorsMarkdown(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, e]) => `| \`${code}\` | ${e.http} | ${e.text} |`);
  return [
    "# Error codes",
    "",
    "<!-- Generated from ERROR_CODES in src/errors.ts; test/api/errors-doc.test.ts keeps it in step. -->",
    "",
    "Every error of remusd has a stable code. The control API answers every failed request with the",
    'same JSON body, `{"code": "REMUSD_ERR_...", "message": "..."}`, and the HTTP status below; this',
    "includes its own request validation (400 `REMUSD_ERR_BAD_REQUEST`), unknown routes (404",
    "`REMUSD_ERR_NOT_FOUND`), a missing or wrong bearer token (401 `REMUSD_ERR_AUTH`, with",
    "`WWW-Authenticate: Bearer`), mutating routes without a configured token (403",
    "`REMUSD_ERR_FORBIDDEN`), the fault-injection routes `POST /v1/faults/*` on a daemon started",
    "without `--allow-fault-injection` (403 `REMUSD_ERR_FORBIDDEN`, after the token check) and a",
    "request for the wrong role (409 `REMUSD_ERR_WRONG_ROLE`).",
    "`remusd` and `remusctl` print runtime failures as one line `CODE: message` on stderr and exit",
    "with 1; bad usage exits with 2.",
    "",
    "| code | HTTP | meaning |",
    "|---|---|---|",
    ...rows,
    "",
  ].join("\n");
}
