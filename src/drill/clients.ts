/**
 * The drill's clients, seen from the drill: the checking client in a worker
 * thread (every reply's latency, resets, wrong reads, lost acknowledged
 * writes through audits), and any command the user gives (`--client CMD`,
 * e.g. redis-benchmark through a TAP port), run for the whole drill and
 * watched for errors, exits and redis-benchmark's progress lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Worker } from "node:worker_threads";
import type { KvClientOptions } from "../client/kvclient.js";
import { type KvLoadSummary, newKvLoadSummary } from "../client/kvload.js";
import type { ClientCommand, ClientMessage } from "./kvworker.js";

/** Every reply the checking client saw: when its request was sent (wall ms) and its latency (ms). */
export interface Samples {
  readonly sent: number[];
  readonly latency: number[];
}

/** The counters of the checking client at one instant. */
export interface ClientMark {
  readonly at: number;
  readonly summary: KvLoadSummary;
}

/** The checking client (remusd client's load and checks) in a worker thread. */
export class CheckingClient {
  readonly samples: Samples = { sent: [], latency: [] };
  private readonly waiting = new Map<number, (m: ClientMark) => void>();
  private nextId = 1;
  private doneResult: { finished: boolean; summary: KvLoadSummary } | undefined;
  private onDone: ((r: { finished: boolean; summary: KvLoadSummary }) => void) | undefined;
  /** The worker failed: the drill reports it instead of waiting forever. */
  failure: string | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on("message", (m: ClientMessage) => this.onMessage(m));
    worker.on("error", (e) => {
      this.failure = `the checking client failed: ${e.message}`;
      for (const f of this.waiting.values()) f({ at: Date.now(), summary: emptySummary(this.failure) });
      this.waiting.clear();
    });
  }

  /** Starts the client and resolves once it has opened its link. */
  static async start(opts: KvClientOptions & { readonly drainMs: number }): Promise<CheckingClient> {
    const worker = new Worker(new URL("./kvworker.js", import.meta.url), { workerData: opts });
    const c = new CheckingClient(worker);
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: ClientMessage) => {
        if (m.type === "ready") {
          worker.off("message", onMsg);
          resolve();
        }
      };
      worker.on("message", onMsg);
      worker.once("error", reject);
    });
    return c;
  }

  private onMessage(m: ClientMessage): void {
    switch (m.type) {
      case "samples":
        for (let i = 0; i + 1 < m.data.length; i += 2) {
          this.samples.sent.push(m.data[i] as number);
          this.samples.latency.push(m.data[i + 1] as number);
        }
        return;
      case "mark":
      case "audited": {
        const f = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        f?.({ at: m.at, summary: m.summary });
        return;
      }
      case "done":
        this.doneResult = { finished: m.finished, summary: m.summary };
        this.onDone?.(this.doneResult);
        return;
      case "ready":
        return;
    }
  }

  private ask(cmd: "mark" | "audit"): Promise<ClientMark> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.worker.postMessage({ cmd, id } satisfies ClientCommand);
    });
  }

  /** The counters now. */
  mark(): Promise<ClientMark> {
    return this.ask("mark");
  }

  /** Reads back every acknowledged write, then resumes the load; resolves with the counters after it. */
  audit(): Promise<ClientMark> {
    return this.ask("audit");
  }

  /** Stops the load, reads everything back, and resolves with the final summary. */
  async finish(): Promise<{ finished: boolean; summary: KvLoadSummary }> {
    const done = this.doneResult
      ? Promise.resolve(this.doneResult)
      : new Promise<{ finished: boolean; summary: KvLoadSummary }>((resolve) => {
          this.onDone = resolve;
        });
    this.worker.postMessage({ cmd: "finish" } satisfies ClientCommand);
    const r = await done;
    await this.worker.terminate();
    return r;
  }

  /** Ends the worker at once (on an interrupted drill). */
  async kill(): Promise<void> {
    await this.worker.terminate();
  }
}

function emptySummary(error: string): KvLoadSummary {
  return { ...newKvLoadSummary(), errors: [error], ok: false };
}

/** What a user's command did during the drill. */
export interface CommandRecord {
  readonly command: string;
  /** Times it was started (it is restarted when it exits before the drill ends). */
  runs: number;
  /** Exits before the drill ended: wall ms, exit code or signal. */
  readonly exits: { at: number; code: number | null; signal: string | null }[];
  /** Output lines that report an error (error, reset, refused, timeout), with when they came. */
  readonly errorLines: { at: number; line: string }[];
  /** redis-benchmark's progress lines: requests per second and average latency (ms), when seen. */
  readonly rates: { at: number; test: string; rps: number; avgMs: number }[];
}

const RATE = /^\s*([^:]+): rps=([\d.]+) \(overall: [\d.]+\) avg_msec=([\d.]+)/;
const ERROR_LINE = /error|reset|refused|timed? ?out|broken pipe/i;

/**
 * A user's command (`--client CMD`), run with `sh -c` in its own process
 * group for the whole drill and restarted whenever it exits; the drill ends
 * it with SIGINT (then SIGKILL).
 */
export class CommandClient {
  readonly record: CommandRecord;
  private proc: ChildProcess | undefined;
  private stopping = false;

  constructor(command: string) {
    this.record = { command, runs: 0, exits: [], errorLines: [], rates: [] };
  }

  start(): void {
    if (this.stopping) return;
    const p = spawn("sh", ["-c", this.record.command], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    this.proc = p;
    this.record.runs++;
    let partial = "";
    const onData = (d: Buffer) => {
      const text = partial + d.toString();
      const lines = text.split(/[\r\n]/);
      partial = lines.pop() ?? "";
      for (const line of lines) this.line(line);
    };
    p.stdout?.on("data", onData);
    p.stderr?.on("data", onData);
    p.on("exit", (code, signal) => {
      if (this.stopping) return;
      this.record.exits.push({ at: Date.now(), code, signal });
      // Keep the load on: a command that ends (redis-benchmark without -l) is started again.
      setTimeout(() => this.start(), 100);
    });
  }

  private line(line: string): void {
    const at = Date.now();
    const m = RATE.exec(line);
    if (m) {
      this.record.rates.push({ at, test: (m[1] as string).trim(), rps: Number(m[2]), avgMs: Number(m[3]) });
      return;
    }
    if (ERROR_LINE.test(line) && this.record.errorLines.length < 1000)
      this.record.errorLines.push({ at, line: line.trim().slice(0, 300) });
  }

  /** Ends the command (its whole process group): SIGINT, then SIGKILL after 2 s. */
  async stop(): Promise<void> {
    this.stopping = true;
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return;
    const pid = p.pid;
    const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
    try {
      process.kill(-pid, "SIGINT");
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
    }, 2000);
    await exited;
    clearTimeout(timer);
  }
}
