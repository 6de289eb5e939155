import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { errorsMarkdown } from "../../src/api/errorsdoc.js";
import { ERROR_CODES, httpStatusOf } from "../../src/errors.js";

const FILE = join(process.cwd(), "docs", "errors.md");

test("docs/errors.md lists exactly the codes of ERROR_CODES with their HTTP status", () => {
  if (process.env.REMUSD_UPDATE_DOCS === "1") writeFileSync(FILE, errorsMarkdown());
  const text = readFileSync(FILE, "utf8");
  const rows = [...text.matchAll(/^\| `(REMUSD_ERR_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [
    m[1] as string,
    Number(m[2]),
  ]);
  assert.deepEqual(
    rows.map(([c]) => c),
    Object.keys(ERROR_CODES),
  );
  for (const [code, status] of rows)
    assert.equal(status, httpStatusOf(code as keyof typeof ERROR_CODES), String(code));
  assert.equal(text, errorsMarkdown(), "docs/errors.md is stale: run REMUSD_UPDATE_DOCS=1 npm test");
});
