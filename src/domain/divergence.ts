/**
 * Injected divergence, for tests and benchmarks of COLO: a per-replica switch
 * that makes this replica's guest behave differently from its twin's at a
 * chosen rate, deterministically from a seed.
 *
 * It is deliberately *not* part of the domain's state (not in guest memory,
 * not checkpointed): it models what differs between two physical machines
 * running the same guest, so a checkpoint that copies the primary's state
 * onto the secondary leaves each replica's switch as it was.
 *
 *  - `reply`: the fraction of kvd replies in which one byte of the reply's
 *    text is changed (a digit to another digit, a letter to the next one),
 *    so the RESP framing stays valid and only the content differs.
 *    This is *not* a valid execution: set it on a COLO secondary to force
 *    mismatches; a client that is ever served by a replica with it on sees
 *    wrong replies.
 *  - `stall`: the fraction of guest ticks in which the NIC's receive
 *    interrupt is late (the received frames wait in the ring for the next
 *    tick). That is a valid execution with different timing, like a busier
 *    host: requests of different connections can be served in another order.
 *
 * Spec for command lines: `reply=0.01,stall=0.05,seed=7` (any subset).
 */
import { type RemusError, usageError } from "../errors.js";
import { mulberry32 } from "../prng.js";

export interface DivergenceConfig {
  /** Fraction of kvd replies perturbed, 0..1. */
  readonly reply: number;
  /** Fraction of ticks whose receive processing is deferred, 0..1 (below 1). */
  readonly stall: number;
  readonly seed: number;
}

export class DivergenceSwitch {
  readonly config: DivergenceConfig;
  /** What it did so far. */
  readonly counts = { replies: 0, perturbed: 0, ticks: 0, stalls: 0 };
  private readonly rand: () => number;

  constructor(config: Partial<DivergenceConfig>) {
    const c = { reply: 0, stall: 0, seed: 1, ...config };
    if (!(c.reply >= 0 && c.reply <= 1)) throw bad(`reply=${c.reply} must be in [0, 1]`);
    if (!(c.stall >= 0 && c.stall < 1)) throw bad(`stall=${c.stall} must be in [0, 1)`);
    if (!Number.isInteger(c.seed)) throw bad(`seed=${c.seed} must be an integer`);
    this.config = c;
    this.rand = mulberry32(c.seed);
  }

  /**
   * Called once per kvd reply: the offset of a byte of `reply` to replace and
   * its new value, or undefined to leave the reply alone. Only simple
   * strings, errors, integers and bulk strings are changed, inside their
   * text, so the reply still parses.
   */
  perturbReply(reply: Uint8Array): { offset: number; value: number } | undefined {
    this.counts.replies++;
    if (this.config.reply === 0 || this.rand() >= this.config.reply) return undefined;
    // Only where a change keeps the framing: the text of a +, - or : line, or a bulk string's payload.
    let start = 1;
    const end = reply.length - 2;
    if (end < start || reply[end] !== 0x0d || reply[end + 1] !== 0x0a) return undefined;
    const type = reply[0];
    if (type === 0x24) {
      const crlf = reply.indexOf(0x0d);
      if (crlf < 0 || crlf === end || reply[1] === 0x2d) return undefined; // "$-1": a null, no payload
      start = crlf + 2;
    } else if (type !== 0x2b && type !== 0x2d && type !== 0x3a) return undefined;
    else if (reply.indexOf(0x0d) !== end) return undefined;
    const candidates: number[] = [];
    for (let i = start; i < end; i++) {
      const b = reply[i] as number;
      if ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a))
        candidates.push(i);
    }
    if (candidates.length === 0) return undefined;
    const offset = candidates[Math.floor(this.rand() * candidates.length)] as number;
    const b = reply[offset] as number;
    const value =
      b <= 0x39
        ? 0x30 + ((b - 0x30 + 1) % 10)
        : b <= 0x5a
          ? 0x41 + ((b - 0x41 + 1) % 26)
          : 0x61 + ((b - 0x61 + 1) % 26);
    this.counts.perturbed++;
    return { offset, value };
  }

  /** Called once per guest tick: true when the receive interrupt is late this tick. */
  rxStall(): boolean {
    this.counts.ticks++;
    if (this.config.stall === 0 || this.rand() >= this.config.stall) return false;
    this.counts.stalls++;
    return true;
  }
}

function bad(msg: string): RemusError {
  return usageError(`divergence: ${msg}`);
}

/** Parses `reply=F,stall=F,seed=N` (any subset, each at most once). */
export function parseDivergence(text: string): DivergenceSwitch {
  const c: { reply?: number; stall?: number; seed?: number } = {};
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (eq <= 0 || v === "" || !Number.isFinite(Number(v))) throw bad(`expected KEY=NUMBER, got '${part}'`);
    if (k !== "reply" && k !== "stall" && k !== "seed") throw bad(`unknown key '${k}' (reply, stall, seed)`);
    if (c[k] !== undefined) throw bad(`'${k}' given twice`);
    c[k] = Number(v);
  }
  return new DivergenceSwitch(c);
}
