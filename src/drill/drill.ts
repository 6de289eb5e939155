/**
 * `remusd drill`: rehearses failovers against a pair under client load, and
 * measures each one.
 *
 * Data flow:
 *
 *   plan (kinds of fault) ──► for each failover:
 *     steady state (dwell) ─ mark the client ─ inject the fault ─ wait for the
 *     backup to be primary ─ read its events (peer.lost, failover.activated,
 *     output.resumed) ─ watch the old primary (gone, fenced, stopped, or still
 *     running: two primaries) ─ re-protect (PairDriver.reprotect, the runbook)
 *     ─ wait for `protected` ─ read sync.completed (resync time and bytes) ─
 *     audit the client (every acknowledged write read back)
 *   then: finish the client (a last full read-back), build the report.
 *
 * Clocks: every time is wall-clock ms (the daemons' event timestamps, the
 * client's samples and the drill's own clock), so a drill against daemons on
 * other hosts needs their clocks in sync for the detection and activation
 * figures (not for the client's).
 */
import { request } from "../api/client.js";
import type { Config, EventsReply, FailoverReply, FaultReply, Status } from "../api/schemas.js";
import type { KvLoadSummary } from "../client/kvload.js";
import { RemusError } from "../errors.js";
import { parseHostPort, parseIpOption } from "../net/addr.js";
import { VERSION } from "../version.js";
import { CheckingClient, type ClientMark, CommandClient } from "./clients.js";
import {
  binWidth,
  clientDelta,
  type DrillReport,
  type FailoverRecord,
  latencyStats,
  type OldPrimaryFate,
  timeline,
} from "./measure.js";
import { type PairDriver, type Side, statusOf } from "./pair.js";
import type { DrillFault } from "./plan.js";
import type { Progress } from "./progress.js";

export interface DrillOptions {
  readonly pair: PairDriver;
  readonly faults: readonly DrillFault[];
  /** Stall and link-cut duration (undefined: three heartbeat timeouts of the pair, at least 1 s). */
  readonly faultMs: number | undefined;
  /** Steady protected load before each fault (and before the first). */
  readonly dwellMs: number;
  /** The checking client (null: none, e.g. no vswitch to attach to). */
  readonly check: {
    readonly connections: number;
    readonly pipeline: number;
    readonly keys: number;
    readonly seed: number;
    readonly target: string;
  } | null;
  readonly command: string | undefined;
  readonly activationTimeoutMs: number;
  readonly protectTimeoutMs: number;
  readonly progress: Progress;
  /** What the report shows of the options. */
  readonly settings: Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A failover's record before the client's counters for it are known. */
type Pending = Omit<FailoverRecord, "client" | "ok" | "problems" | "commandErrors"> & {
  readonly mark: ClientMark | undefined;
  readonly problems: string[];
  readonly faultAt: number;
};

export async function runDrill(o: DrillOptions): Promise<DrillReport> {
  const { pair, progress } = o;
  const startedAt = new Date();
  const t0 = startedAt.getTime();
  const say = (s: string) => progress.log(s);
  const problems: string[] = [];
  const pending: Pending[] = [];
  let client: CheckingClient | undefined;
  let command: CommandClient | undefined;
  let finalClient: { finished: boolean; summary: KvLoadSummary } | undefined;
  let lastMark: ClientMark | undefined;
  let doing = "starting";
  const rate = () => {
    if (!client) return "";
    const s = client.samples.sent;
    const lat = client.samples.latency;
    const now = Date.now();
    let n = 0;
    let max = 0;
    for (let i = s.length - 1; i >= 0 && (s[i] as number) > now - 2000; i--) {
      const done = (s[i] as number) + (lat[i] as number);
      if (done > now - 1000) {
        n++;
        max = Math.max(max, lat[i] as number);
      }
    }
    return `${n} req/s, slowest ${Math.round(max)} ms`;
  };
  const ticker = setInterval(() => progress.status(pending.length, doing, rate()), 200);
  const step = (s: string) => {
    doing = s;
    progress.status(pending.length, doing, rate());
  };
  const wait = async (ms: number, what: string) => {
    step(what);
    await sleep(ms);
  };

  try {
    step("waiting for the pair to be protected");
    let { primary: P, backup: B } = await roles(pair, o.protectTimeoutMs);
    say(`pair protected: side ${P.name} primary, side ${B.name} backup`);
    const cfg = (await request(P.client, "GET", "/v1/config")) as Config;
    const hbTimeout = cfg.heartbeat.intervalMs * cfg.heartbeat.misses;
    const faultMs = o.faultMs ?? Math.max(1000, 3 * hbTimeout);
    if (o.check) {
      if (!pair.switchAddr)
        throw new RemusError("REMUSD_ERR_BAD_USAGE", "the checking client needs --switch");
      client = await CheckingClient.start({
        switchAddr: parseHostPort(pair.switchAddr, "--switch"),
        mac: Uint8Array.from([0x02, 0, 0, 0, 0x0d, 0x01]),
        ip: parseIpOption("10.0.0.201", "client ip"),
        load: {
          connections: o.check.connections,
          seed: o.check.seed,
          targetIp: parseIpOption(o.check.target, "--target"),
          port: 6379,
          keysPerConnection: o.check.keys,
          pipeline: o.check.pipeline,
        },
        drainMs: 30_000,
      });
      say(
        `checking client: ${o.check.connections} connections to ${o.check.target}:6379, ${o.check.pipeline} requests in flight each`,
      );
    }
    if (o.command) {
      command = new CommandClient(o.command);
      command.start();
      say(`client command: ${o.command}`);
    }

    for (const [i, fault] of o.faults.entries()) {
      const n = i + 1;
      const label = `failover ${n}/${o.faults.length} (${fault})`;
      ({ primary: P, backup: B } = await roles(pair, o.protectTimeoutMs));
      await wait(o.dwellMs, `${label}: steady load before the fault`);
      const before = await statusOf(P);
      const bSeq = await lastSeq(B);
      const pSeq = await lastSeq(P);
      const mark = client ? await client.mark() : undefined;
      lastMark = mark ?? lastMark;
      step(`${label}: injecting`);
      const ms = fault === "stall" || fault === "link-cut" ? faultMs : null;
      let faultAt = Date.now();
      try {
        faultAt = await inject(pair, fault, P, B, ms);
      } catch (e) {
        // A fault the pair refuses (no --allow-fault-injection, a refused switchover) ends the drill.
        const why = e instanceof Error ? e.message : String(e);
        problems.push(`failover ${n} (${fault}) could not be injected: ${why}`);
        say(`failover ${n} (${fault}): could not be injected: ${why}`);
        break;
      }
      step(`${label}: waiting for side ${B.name} to activate`);
      const activated = await waitUntil(o.activationTimeoutMs, async () => {
        const s = await statusOf(B).catch(() => undefined);
        return s?.role === "primary" ? s : undefined;
      });
      const ev = (await eventsSince(B, bSeq)).filter((e) => Date.parse(e.ts) >= faultAt - 5);
      const find = (name: string) => ev.find((e) => e.event === name);
      const act = find("failover.activated");
      const at = (e: { ts: string } | undefined) => (e ? Date.parse(e.ts) - faultAt : null);
      const rec: Pending = {
        index: n,
        fault,
        faultMs: ms,
        from: P.name,
        to: B.name,
        at: faultAt - t0,
        faultAt,
        committedBefore: before.epoch.committed,
        activated: activated !== undefined,
        reason: (act?.reason as string | undefined) ?? null,
        resumedEpoch: act ? act.epoch : null,
        detectionMs: at(find("peer.lost")),
        activationMs: at(act),
        firstOutputMs: at(find("output.resumed")),
        firstReplyMs: null,
        stall: { requests: 0, p50Ms: null, p99Ms: null, maxMs: null },
        baseline: { requests: 0, p50Ms: null, p99Ms: null, maxMs: null },
        oldPrimary: null,
        oldPrimaryUnprotected: null,
        protectedMs: null,
        resyncMs: null,
        resyncBytes: null,
        mark,
        problems: [],
      };
      pending.push(rec);
      if (!activated) {
        rec.problems.push(`side ${B.name} did not activate within ${o.activationTimeoutMs / 1000} s`);
        say(`failover ${n} (${fault}): FAILED: side ${B.name} did not activate`);
        break;
      }
      say(
        `failover ${n} (${fault}${ms ? ` ${ms} ms` : ""}): side ${B.name} activated from epoch ${rec.resumedEpoch ?? "?"} ` +
          `(${rec.reason ?? "?"}) after ${fmtMs(rec.activationMs)}`,
      );

      step(`${label}: watching the old primary (side ${P.name})`);
      const fate = await oldPrimaryFate(P, fault, (ms ?? 0) + 3000);
      Object.assign(rec, { oldPrimary: fate });
      const released = fate === "gone" ? null : await releasedUnprotected(P, pSeq, faultAt, act?.ts);
      Object.assign(rec, { oldPrimaryUnprotected: released });
      if (released) {
        rec.problems.push(
          `two primaries: side ${P.name} ran its domain as an unprotected primary from ${fmtMs(released.afterMs)} after the fault` +
            ` for ${fmtMs(released.forMs)} while side ${B.name} was the primary`,
        );
      }
      if (fate === "running") {
        rec.problems.push(
          `two primaries: side ${P.name} still ran its domain ${((ms ?? 0) + 3000) / 1000} s after side ${B.name} activated`,
        );
      }

      step(`${label}: re-protecting (new backup on side ${P.name})`);
      await pair.reprotect(P, B, (s) => say(`  ${s}`));
      const prot = await waitUntil(o.protectTimeoutMs, async () => {
        const s = await statusOf(B).catch(() => undefined);
        return s?.role === "primary" && s.state === "protected" ? s : undefined;
      });
      if (!prot) {
        rec.problems.push(`not protected again within ${o.protectTimeoutMs / 1000} s`);
        say(`failover ${n}: FAILED: side ${B.name} not protected again`);
        break;
      }
      const protectedAt = Date.now();
      // Read the events again: output.resumed and sync.completed came after the first look.
      const all = (await eventsSince(B, bSeq)).filter((e) => Date.parse(e.ts) >= faultAt - 5);
      const sync = all.filter((e) => e.event === "sync.completed" && e.role === "primary").pop();
      const resumed = all.find((e) => e.event === "output.resumed");
      Object.assign(rec, {
        firstOutputMs: at(resumed),
        protectedMs: protectedAt - faultAt,
        resyncMs: (sync?.durationMs as number | undefined) ?? null,
        resyncBytes: (sync?.wireBytes as number | undefined) ?? null,
      });
      if (client) {
        step(`${label}: reading back every acknowledged write`);
        const audited = await Promise.race([client.audit(), sleep(AUDIT_TIMEOUT_MS).then(() => undefined)]);
        if (!audited) {
          rec.problems.push(
            `the checking client's read-back did not finish within ${AUDIT_TIMEOUT_MS / 1000} s: a connection makes no progress`,
          );
          say(`failover ${n}: the read-back of acknowledged writes is stuck; stopping the drill`);
          break;
        }
      }
      say(
        `  first output after ${fmtMs(rec.firstOutputMs)}; old primary ${rec.oldPrimary}; protected again after ` +
          `${fmtMs(rec.protectedMs)} (resync ${fmtMs(rec.resyncMs)}, ${fmtBytes(rec.resyncBytes)})`,
      );
    }
  } catch (e) {
    problems.push(`the drill stopped: ${e instanceof Error ? e.message : String(e)}`);
    say(`the drill stopped: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    clearInterval(ticker);
    step("finishing: final read-back of every acknowledged write");
    if (client) {
      finalClient = await Promise.race([client.finish(), sleep(60_000).then(() => undefined)]);
      if (!finalClient) {
        await client.kill();
        problems.push("the checking client's final read-back did not finish within 60 s");
      } else if (!finalClient.finished) {
        problems.push("the checking client's final read-back did not finish");
      }
    }
    await command?.stop();
    progress.end();
  }

  const end = Date.now();
  const samples = client?.samples ?? { sent: [], latency: [] };
  const marks: (KvLoadSummary | undefined)[] = pending.map((p) => p.mark?.summary);
  const records: FailoverRecord[] = pending.map((p, i) => {
    const next = pending[i + 1];
    const nextAt = next ? next.faultAt : end;
    const activatedAt = p.activationMs === null ? p.faultAt + 5000 : p.faultAt + p.activationMs;
    const stall = latencyStats(samples, (sent, done) => sent <= activatedAt + 1000 && done >= p.faultAt);
    const baseline = latencyStats(samples, (sent, done) => sent >= p.faultAt - o.dwellMs && done < p.faultAt);
    let firstReply: number | null = null;
    for (let k = 0; k < samples.sent.length; k++) {
      const done = (samples.sent[k] as number) + (samples.latency[k] as number);
      if (done >= activatedAt && (firstReply === null || done < firstReply)) firstReply = done;
    }
    const a = marks[i];
    const b = marks[i + 1] ?? finalClient?.summary;
    const delta = a && b ? clientDelta(a, b) : null;
    const cmd = command?.record;
    const inWindow = (t: number) => t >= p.faultAt && t < nextAt;
    const commandErrors = cmd
      ? cmd.errorLines.filter((l) => inWindow(l.at)).length +
        cmd.exits.filter((x) => inWindow(x.at) && x.code !== 0).length
      : 0;
    const probs = [...p.problems];
    if (delta) {
      if (delta.lostWrites > 0) probs.push(`${delta.lostWrites} acknowledged writes lost`);
      if (delta.resets > 0) probs.push(`${delta.resets} connection resets`);
      if (delta.wrongReads > 0) probs.push(`${delta.wrongReads} wrong replies`);
      if (delta.protocolErrors > 0) probs.push(`${delta.protocolErrors} unparsable replies`);
    }
    if (commandErrors > 0) probs.push(`the client command reported ${commandErrors} errors`);
    const { mark: _m, faultAt: _f, ...rest } = p;
    return {
      ...rest,
      firstReplyMs: firstReply === null ? null : Math.round(firstReply - p.faultAt),
      stall,
      baseline,
      client: delta,
      commandErrors,
      problems: probs,
      ok: probs.length === 0,
    };
  });
  if (finalClient && !finalClient.summary.ok && records.every((r) => r.ok)) {
    problems.push(`the checking client failed: ${finalClient.summary.errors.slice(0, 3).join("; ")}`);
  }
  if (records.length < o.faults.length && problems.length === 0 && records.every((r) => r.ok)) {
    problems.push(`only ${records.length} of ${o.faults.length} failovers ran`);
  }
  const sum = (f: (r: FailoverRecord) => number) => records.reduce((acc, r) => acc + f(r), 0);
  const stalls = records.map((r) => r.stall.maxMs).filter((x): x is number => x !== null);
  const acts = records
    .map((r) => r.activationMs)
    .filter((x): x is number => x !== null)
    .sort((x, y) => x - y);
  const binMs = binWidth(end - t0);
  const cmd = command?.record;
  return {
    tool: `remusd ${VERSION} drill`,
    startedAt: startedAt.toISOString(),
    durationMs: end - t0,
    pair: pair.description,
    settings: { ...o.settings, faults: o.faults },
    failovers: records,
    totals: {
      failovers: records.length,
      passed: records.filter((r) => r.ok).length,
      lostWrites: sum((r) => r.client?.lostWrites ?? 0),
      resets: sum((r) => r.client?.resets ?? 0),
      wrongReads: sum((r) => r.client?.wrongReads ?? 0),
      errors: sum((r) => (r.client ? r.client.protocolErrors + r.client.wrongReads : 0) + r.commandErrors),
      maxStallMs: stalls.length ? Math.max(...stalls) : null,
      medianActivationMs: acts.length ? (acts[Math.floor((acts.length - 1) / 2)] as number) : null,
    },
    client: finalClient ? { ...finalClient.summary, finished: finalClient.finished } : null,
    command: cmd
      ? {
          command: cmd.command,
          runs: cmd.runs,
          exits: cmd.exits.length,
          errorLines: cmd.errorLines.slice(0, 50).map((l) => l.line),
          rates: cmd.rates.map((r) => ({ t: r.at - t0, rps: r.rps, avgMs: r.avgMs })),
        }
      : null,
    timeline: { binMs, bins: timeline(samples, t0, end, binMs) },
    problems,
    ok: problems.length === 0 && records.length === o.faults.length && records.every((r) => r.ok),
  };
}

/** How long the checking client's read-back after a failover may take. */
const AUDIT_TIMEOUT_MS = 30_000;

/**
 * Whether the old primary went `unprotected` after the fault (releasing what
 * its netbuf held and sending output freely) while the backup took over:
 * when, after the fault, and for how long until it was fenced or stopped
 * (null: it still was when asked). Null when it never did, or cannot be asked.
 */
async function releasedUnprotected(
  P: Side,
  since: number,
  faultAt: number,
  activatedTs: string | undefined,
): Promise<{ afterMs: number; forMs: number | null } | null> {
  const ev = await eventsSince(P, since).catch(() => undefined);
  if (!ev) return null;
  const state = ev.filter((e) => e.event === "state.changed" && e.role === "primary");
  const i = state.findIndex((e) => e.to === "unprotected");
  const un = state[i];
  if (!un) return null;
  const end = state.slice(i + 1).find((e) => e.to === "fenced" || e.to === "stopped");
  // A planned stop (switchover, shutdown) passes through `unprotected` after its final checkpoint
  // was acknowledged, with its domain already stopped: nothing uncommitted is left to release.
  const planned = ev.some((e) => e.event === "peer.lost" && e.planned === true && e.seq < un.seq);
  if (end?.to === "stopped" && planned) return null;
  const from = Math.max(Date.parse(un.ts), activatedTs ? Date.parse(activatedTs) : 0);
  return {
    afterMs: Date.parse(un.ts) - faultAt,
    forMs: end ? Math.max(0, Date.parse(end.ts) - from) : null,
  };
}

/** Polls `f` every 20 ms until it gives a value, or `ms` passes (undefined). */
async function waitUntil<T>(ms: number, f: () => Promise<T | undefined>): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) return undefined;
    await sleep(20);
  }
}

/** Which side is the protected primary and which the standby backup (waits until the pair is so). */
async function roles(pair: PairDriver, timeoutMs: number): Promise<{ primary: Side; backup: Side }> {
  let last = "";
  const r = await waitUntil(timeoutMs, async () => {
    const st = await Promise.all(pair.sides.map((s) => statusOf(s).catch((e: Error) => e)));
    last = st
      .map(
        (s, i) => `side ${pair.sides[i]?.name}: ${s instanceof Error ? s.message : `${s.role} ${s.state}`}`,
      )
      .join(", ");
    const pi = st.findIndex((s) => !(s instanceof Error) && s.role === "primary" && s.state === "protected");
    const bi = st.findIndex((s) => !(s instanceof Error) && s.role === "backup" && s.state === "standby");
    if (pi < 0 || bi < 0) return undefined;
    return { primary: pair.sides[pi] as Side, backup: pair.sides[bi] as Side };
  });
  if (!r) {
    const unplanned = /primary fenced/.test(last) && /primary (unprotected|syncing)/.test(last);
    throw new RemusError(
      "REMUSD_ERR_TIMEOUT",
      `the pair is not protected (${last})${unplanned ? ": a failover the drill did not cause (a heartbeat timeout: is the machine overloaded? give the pair more heartbeat slack)" : ""}`,
    );
  }
  return r;
}

/** Injects `fault`; resolves with when it took effect (wall ms). */
async function inject(
  pair: PairDriver,
  fault: DrillFault,
  P: Side,
  B: Side,
  ms: number | null,
): Promise<number> {
  const t = Date.now();
  switch (fault) {
    case "sigkill":
      await pair.kill(P);
      return t;
    case "crash":
    case "stall":
    case "link-cut": {
      const r = (await request(
        P.client,
        "POST",
        `/v1/faults/${fault}`,
        ms === null ? undefined : { ms },
      )) as FaultReply;
      return Date.parse(r.at);
    }
    case "switchover":
      await request(B.client, "POST", "/v1/failover", { planned: true });
      return t;
    case "manual": {
      // With the primary alive the daemon may turn this into a handover (pending): then wait as for a switchover.
      const r = (await request(B.client, "POST", "/v1/failover", { planned: false })) as FailoverReply;
      if (!r.activated && !r.pending)
        throw new RemusError("REMUSD_ERR_WRONG_ROLE", "the backup neither activated nor began a handover");
      return t;
    }
  }
}

type Ev = EventsReply["events"][number] & Record<string, unknown>;

async function eventsSince(side: Side, since: number): Promise<Ev[]> {
  const r = (await request(side.client, "GET", `/v1/events?since=${since}`)) as EventsReply;
  return r.events as Ev[];
}

async function lastSeq(side: Side): Promise<number> {
  const ev = await eventsSince(side, 0);
  return ev.length ? (ev[ev.length - 1] as Ev).seq : 0;
}

/** Watches the old primary for up to `ms`: what became of it. */
async function oldPrimaryFate(P: Side, fault: DrillFault, ms: number): Promise<OldPrimaryFate> {
  const end = Date.now() + ms;
  let fate: OldPrimaryFate = "silent";
  for (;;) {
    let s: Status | undefined;
    try {
      s = await statusOf(P, 500);
    } catch {
      s = undefined;
    }
    if (s === undefined) {
      // A killed process does not come back; a stalled or cut one may yet answer.
      if (fault === "sigkill" || fault === "crash") return "gone";
      fate = "silent";
    } else if (s.role === "backup") return "rejoined";
    else if (s.state === "fenced") return "fenced";
    else if (s.state === "stopped") return "stopped";
    else if (s.domain.running) fate = "running";
    if (Date.now() > end) return fate;
    await sleep(50);
  }
}

export function fmtMs(x: number | null | undefined): string {
  if (x === null || x === undefined) return "-";
  return x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`;
}

export function fmtBytes(x: number | null | undefined): string {
  if (x === null || x === undefined) return "-";
  if (x < 1024) return `${x} B`;
  if (x < 1024 * 1024) return `${(x / 1024).toFixed(1)} KiB`;
  return `${(x / 1024 / 1024).toFixed(1)} MiB`;
}
