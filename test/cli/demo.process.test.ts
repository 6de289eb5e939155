import assert from "node:assert/strict";
import { after, test } from "node:test";
import { killAll, startProc } from "../helpers/procs.js";

after(killAll);

test("remusd demo: a failover under load with no reset, no lost write and no wrong read (exit 0)", async () => {
  const demo = startProc("demo", [
    "demo",
    "--kill-after",
    "2",
    "--after",
    "2",
    "--domain-mib",
    "16",
    "--connections",
    "4",
  ]);
  const code = await demo.exited;
  assert.equal(code, 0, `${demo.stdout}\n${demo.stderr.slice(-2000)}`);
  assert.match(demo.stdout, /backup activated from epoch \d+ after \d+ ms/);
  assert.match(demo.stdout, /matches the primary's: true/);
  assert.match(demo.stdout, /resets \/ reconnects\s+0 \/ 0/);
  assert.match(demo.stdout, /lost acknowledged writes\s+0/);
  assert.match(demo.stdout, /wrong reads\s+0/);
  assert.match(demo.stdout, /^PASS/m);
});

test("remusd demo --help and bad usage", async () => {
  const help = startProc("demo-help", ["demo", "--help"]);
  assert.equal(await help.exited, 0);
  assert.match(help.stdout, /--kill-after SECONDS/);
  const bad = startProc("demo-bad", ["demo", "--kill-after", "soon"]);
  assert.equal(await bad.exited, 2);
  assert.match(bad.stderr, /kill-after/);
});
