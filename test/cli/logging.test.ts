import assert from "node:assert/strict";
import { test } from "node:test";
import { formatLine } from "../../src/daemon/logging.js";

test("terminal format: time, level, role/generation, message, then the other fields", () => {
  const line = JSON.stringify({
    level: 30,
    time: Date.UTC(2025, 0, 2, 3, 4, 5, 678),
    pid: 1,
    role: "backup",
    generation: 2,
    msg: "peer.lost",
    reason: "heartbeat timeout",
    planned: false,
  });
  assert.equal(
    formatLine(line),
    '03:04:05.678 INFO  backup/g2  peer.lost  reason="heartbeat timeout" planned=false\n',
  );
  assert.ok(formatLine(line, true).includes("\u001b[32mINFO "));
  assert.equal(formatLine("not json\n"), "not json\n");
  const err = formatLine(
    JSON.stringify({
      level: 50,
      time: 0,
      msg: "boom",
      err: { type: "Error", message: "x", stack: "Error: x\n    at f" },
    }),
  );
  assert.match(err, /ERROR boom {2}err=\nError: x\n {4}at f/);
});
