/**
 * The pair a drill works on, behind one interface: its two sides' control
 * addresses, how to SIGKILL one, and how to give the surviving primary a new
 * backup (the runbook's re-protection: a new backup where the dead side was,
 * then PATCH /v1/config peer=... on the primary).
 *
 *  - LocalPair (`remusd drill --local`): the drill starts a vswitch and the
 *    pair as its own children (with --allow-fault-injection and a fresh
 *    token), kills them itself, and starts each new backup with an empty data
 *    folder, as the runbook says.
 *  - RemotePair (`remusd drill --control A,B`): a running pair. SIGKILL works
 *    on a daemon of this host (its pid from /v1/status); re-protection runs the
 *    operator's `--heal CMD` and sets the peer from `--peers`, or, without
 *    them, waits for whatever brings a backup back (systemd, self-healing).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { type Client, request } from "../api/client.js";
import type { Status } from "../api/schemas.js";
import { RemusError } from "../errors.js";
import { type Child, spawnRemusd, started, waitFor } from "../proc/children.js";

/** One side of the pair: where its control API is now. */
export interface Side {
  /** "a" or "b": a side keeps its name when its daemon is replaced. */
  readonly name: string;
  client: Client;
  /** Its replication address (ws://...), when known: the primary dials it to re-protect. */
  replication: string | undefined;
  /** Bumped when the side's daemon is replaced (its event sequence starts again). */
  incarnation: number;
}

export interface PairDriver {
  readonly sides: readonly [Side, Side];
  /** The vswitch the checking client attaches to (HOST:PORT), if known. */
  readonly switchAddr: string | undefined;
  /** A short description for the report. */
  readonly description: string;
  /** SIGKILLs the daemon of `side`; resolves once it is gone. */
  kill(side: Side): Promise<void>;
  /** Gives `primary` a new backup in place of `dead` (whose daemon may still run: it is stopped first). */
  reprotect(dead: Side, primary: Side, say: (s: string) => void): Promise<void>;
  /** Ends what the driver started. */
  stop(): Promise<void>;
}

/** GET /v1/status of a side (a short timeout: a stalled daemon must not hold the drill up). */
export function statusOf(side: Side, timeoutMs = 1000): Promise<Status> {
  return request(side.client, "GET", "/v1/status", undefined, timeoutMs) as Promise<Status>;
}

/** Options of a local pair. */
export interface LocalPairOptions {
  readonly dir: string;
  readonly domainMib: number;
  readonly workload: string;
  readonly heartbeatMs: number;
  readonly heartbeatMisses: number;
  readonly verify: boolean;
  /** `--tap` for the vswitch (NAME[,netns=NS][,ip=CIDR]). */
  readonly tap: string | undefined;
}

/** The drill's own vswitch and pair, as child processes on 127.0.0.1. */
export class LocalPair implements PairDriver {
  readonly description: string;
  private readonly children = new Map<string, Child>();
  private readonly all: Child[] = [];

  private constructor(
    o: LocalPairOptions,
    readonly sides: readonly [Side, Side],
    readonly switchAddr: string,
    private readonly args: (name: string) => string[],
  ) {
    this.description = `local pair started by the drill (vswitch udp://${switchAddr}${o.tap ? `, TAP ${o.tap}` : ""})`;
  }

  static async start(o: LocalPairOptions, say: (s: string) => void): Promise<LocalPair> {
    mkdirSync(o.dir, { recursive: true });
    const keyFile = join(o.dir, "replication.key");
    const tokenFile = join(o.dir, "api.token");
    const token = randomBytes(16).toString("hex");
    writeFileSync(keyFile, randomBytes(24).toString("hex"), { mode: 0o600 });
    writeFileSync(tokenFile, token, { mode: 0o600 });
    const vsArgs = ["vswitch", "--listen", "127.0.0.1:0", ...(o.tap ? ["--tap", o.tap] : [])];
    const sw = spawnRemusd("vswitch", vsArgs);
    const swLine = await waitFor("the vswitch", () => started(sw, "remusd vswitch started"), 15_000).catch(
      (e: Error) => {
        sw.proc.kill("SIGKILL");
        throw new RemusError("REMUSD_ERR_INTERNAL", `${e.message}\n${sw.stderr.slice(-800)}`);
      },
    );
    const switchAddr = `127.0.0.1:${swLine.port as number}`;
    const args = (name: string) => [
      "--control",
      "127.0.0.1:0",
      "--listen",
      "127.0.0.1:0",
      "--auth-key-file",
      keyFile,
      "--api-token-file",
      tokenFile,
      "--data-dir",
      join(o.dir, name),
      "--event-log",
      join(o.dir, `${name}.events.jsonl`),
      "--heartbeat-ms",
      String(o.heartbeatMs),
      "--heartbeat-misses",
      String(o.heartbeatMisses),
      "--domain-mib",
      String(o.domainMib),
      "--switch",
      switchAddr,
      "--allow-fault-injection",
      ...(o.verify ? ["--verify"] : []),
    ];
    const side = (name: string): Side => ({
      name,
      client: { base: "", token },
      replication: undefined,
      incarnation: 0,
    });
    const pair = new LocalPair(o, [side("a"), side("b")], switchAddr, args);
    pair.all.push(sw);
    const [a, b] = pair.sides;
    await pair.startDaemon(b, "backup", []);
    say(`  backup   side b  ${b.client.base}  (replication ${b.replication})`);
    await pair.startDaemon(a, "primary", ["--peer", b.replication as string, "--workload", o.workload]);
    say(`  primary  side a  ${a.client.base}`);
    return pair;
  }

  /** Starts the daemon of `side` (a new incarnation, with an empty data folder) and waits until it serves. */
  private async startDaemon(side: Side, role: "primary" | "backup", extra: string[]): Promise<void> {
    const name = `${side.name}${side.incarnation + 1}`;
    const c = spawnRemusd(`${role} ${name}`, [role, ...this.args(name), ...extra]);
    this.all.push(c);
    const line = await waitFor(`${role} ${name}`, () => started(c, `remusd ${role} started`), 20_000);
    side.incarnation++;
    side.client = { ...side.client, base: line.control as string };
    side.replication = `ws://127.0.0.1:${line.replication as number}`;
    this.children.set(side.name, c);
  }

  async kill(side: Side): Promise<void> {
    const c = this.children.get(side.name);
    if (!c || c.exited) return;
    c.proc.kill("SIGKILL");
    await c.exit;
  }

  async reprotect(dead: Side, primary: Side, say: (s: string) => void): Promise<void> {
    // The runbook: keep the old primary down, start a backup with an empty data folder, point the primary at it.
    await this.kill(dead);
    await this.startDaemon(dead, "backup", []);
    say(
      `new backup on side ${dead.name} (${dead.client.base}); PATCH /v1/config peer=${dead.replication} on side ${primary.name}`,
    );
    await request(primary.client, "PATCH", "/v1/config", { peer: dead.replication });
  }

  async stop(): Promise<void> {
    for (const c of this.all) if (!c.exited) c.proc.kill("SIGKILL");
    await Promise.all(this.all.map((c) => c.exit));
  }
}

/** Options of a running pair. */
export interface RemotePairOptions {
  readonly controls: readonly [string, string];
  readonly token: string | undefined;
  /** The sides' replication addresses (ws://...), to point a primary at a healed side. */
  readonly peers: readonly [string, string] | undefined;
  /** A shell command that brings a dead side back as a backup (env: REMUSD_DRILL_SIDE, ..._CONTROL, ..._PRIMARY). */
  readonly heal: string | undefined;
  readonly switchAddr: string | undefined;
  readonly healTimeoutMs: number;
}

const isLocalHost = (host: string) =>
  host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));

/** A pair the drill did not start. */
export class RemotePair implements PairDriver {
  readonly sides: readonly [Side, Side];
  readonly switchAddr: string | undefined;
  readonly description: string;

  constructor(private readonly o: RemotePairOptions) {
    const side = (name: string, control: string, i: number): Side => ({
      name,
      client: { base: control.startsWith("http") ? control : `http://${control}`, token: o.token },
      replication: o.peers?.[i],
      incarnation: 0,
    });
    this.sides = [side("a", o.controls[0], 0), side("b", o.controls[1], 1)];
    this.switchAddr = o.switchAddr;
    this.description = `running pair at ${o.controls.join(" and ")}`;
  }

  async kill(side: Side): Promise<void> {
    const host = new URL(side.client.base).hostname.replace(/^\[|\]$/g, "");
    if (!isLocalHost(host)) {
      throw new RemusError(
        "REMUSD_ERR_BAD_REQUEST",
        `sigkill needs a daemon on this host (its control address is ${side.client.base}); use crash (fault injection) for remote daemons`,
      );
    }
    const pid = (await statusOf(side)).pid;
    process.kill(pid, "SIGKILL");
    await waitFor(`pid ${pid} to exit`, () => !alive(pid), 10_000, 10);
  }

  async reprotect(dead: Side, primary: Side, say: (s: string) => void): Promise<void> {
    const heal = this.o.heal;
    if (heal) {
      const i = this.sides.indexOf(dead) + 1;
      say(`running --heal for side ${dead.name}: ${heal}`);
      const code = await new Promise<number | null>((resolve) => {
        const p = spawn("sh", ["-c", heal], {
          stdio: ["ignore", "inherit", "inherit"],
          env: {
            ...process.env,
            REMUSD_DRILL_SIDE: String(i),
            REMUSD_DRILL_CONTROL: dead.client.base,
            REMUSD_DRILL_PRIMARY: primary.client.base,
          },
        });
        const timer = setTimeout(() => p.kill("SIGKILL"), this.o.healTimeoutMs);
        p.on("exit", (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      if (code !== 0) throw new RemusError("REMUSD_ERR_INTERNAL", `--heal exited with ${code}`);
      dead.incarnation++;
    } else {
      say(`waiting for side ${dead.name} to come back as a backup (no --heal given)`);
    }
    if (dead.replication) {
      say(`PATCH /v1/config peer=${dead.replication} on side ${primary.name}`);
      await request(primary.client, "PATCH", "/v1/config", { peer: dead.replication });
    }
  }

  async stop(): Promise<void> {}
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
