/**
 * Headless Chromium (Debian's `chromium`) for tests of pages we generate:
 * the DOM after the page's scripts ran (--dump-dom) and a screenshot. Each
 * run gets a fresh profile folder and no network features.
 *
 * The rule for a missing browser (as for etcd): with CI set the tests that
 * need it fail (the browser is required: .ci/run installs it); without CI
 * they are skipped with the reason.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = "/usr/bin/chromium";

/** The `skip` option of a test that needs Chromium: false when installed or CI is set, else the reason. */
export function chromiumSkip(): string | false {
  if (existsSync(CHROMIUM) || process.env.CI) return false;
  return "chromium is not installed (apt-get install chromium); CI fails instead of skipping";
}

function run(args: string[]): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), "remusd-chromium-"));
  const flags = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    `--user-data-dir=${profile}`,
  ];
  return new Promise((resolve, reject) => {
    execFile(
      CHROMIUM,
      [...flags, ...args],
      { timeout: 90_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        rmSync(profile, { recursive: true, force: true });
        if (err) reject(new Error(`chromium ${args.join(" ")}: ${err.message}\n${stderr.slice(-2000)}`));
        else resolve(stdout);
      },
    );
  });
}

/** The DOM of `file` once its scripts ran. */
export function dumpDom(file: string): Promise<string> {
  return run(["--dump-dom", `file://${file}`]);
}

/** A PNG screenshot of `file` at `width`x`height`. */
export async function screenshot(file: string, png: string, width = 1240, height = 1500): Promise<void> {
  await run([`--window-size=${width},${height}`, `--screenshot=${png}`, `file://${file}`]);
}
