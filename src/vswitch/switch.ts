/**
 * An L2 learning switch (sans-IO): ports are anything that can send a frame
 * (a UDP peer, or a Linux TAP device: src/vswitch/tap.ts). Source MACs are learned with
 * aging; frames to a known unicast MAC go to its port, broadcast, multicast and
 * unknown destinations are flooded to every other port. When a MAC shows up on
 * another port (a gratuitous ARP from a backup that took over), the table
 * moves it at once.
 */

export interface PortCounters {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  dropped: number;
}

/** A switch port. `send` must not throw. */
export interface SwitchPort {
  readonly id: string;
  /** Never removed for silence (a local device, not a peer that may have gone away). */
  readonly permanent?: boolean;
  send(frame: Buffer): void;
}

interface PortState {
  readonly port: SwitchPort;
  readonly counters: PortCounters;
  lastSeen: number;
}

interface MacEntry {
  portId: string;
  seen: number;
}

export const MIN_FRAME = 14;
export const MAX_FRAME = 1518;

export interface SwitchOptions {
  /** Forget a learned MAC after this long without a frame from it (Linux bridge default: 300 s). */
  readonly agingMs: number;
}

function macKey(b: Uint8Array, off: number): string {
  let s = "";
  for (let i = off; i < off + 6; i++) s += (b[i] as number).toString(16).padStart(2, "0");
  return s;
}

export class LearningSwitch {
  private readonly ports = new Map<string, PortState>();
  private readonly macs = new Map<string, MacEntry>();
  /** Frames refused as malformed (too short, too long, multicast source). */
  malformed = 0;
  flooded = 0;
  forwarded = 0;

  constructor(readonly opts: SwitchOptions = { agingMs: 300_000 }) {}

  addPort(port: SwitchPort, now: number): void {
    const st = this.ports.get(port.id);
    if (st) {
      st.lastSeen = now;
      return;
    }
    this.ports.set(port.id, {
      port,
      counters: { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, dropped: 0 },
      lastSeen: now,
    });
  }

  hasPort(id: string): boolean {
    return this.ports.has(id);
  }

  touch(id: string, now: number): void {
    const st = this.ports.get(id);
    if (st) st.lastSeen = now;
  }

  removePort(id: string): void {
    this.ports.delete(id);
    for (const [mac, e] of this.macs) if (e.portId === id) this.macs.delete(mac);
  }

  /** Removes ports (except permanent ones) silent for longer than `timeoutMs`, and aged MAC entries. */
  expire(now: number, portTimeoutMs: number): string[] {
    const gone: string[] = [];
    for (const [id, st] of this.ports) {
      if (!st.port.permanent && now - st.lastSeen > portTimeoutMs) {
        gone.push(id);
        this.removePort(id);
      }
    }
    for (const [mac, e] of this.macs) if (now - e.seen > this.opts.agingMs) this.macs.delete(mac);
    return gone;
  }

  /** A frame arrived on port `from`. */
  input(from: string, frame: Buffer, now: number): void {
    const src = this.ports.get(from);
    if (!src) return;
    src.lastSeen = now;
    if (frame.length < MIN_FRAME || frame.length > MAX_FRAME || ((frame[6] as number) & 1) === 1) {
      this.malformed++;
      src.counters.dropped++;
      return;
    }
    src.counters.rxFrames++;
    src.counters.rxBytes += frame.length;
    this.macs.set(macKey(frame, 6), { portId: from, seen: now });
    const multicast = ((frame[0] as number) & 1) === 1;
    if (!multicast) {
      const e = this.macs.get(macKey(frame, 0));
      if (e && now - e.seen <= this.opts.agingMs) {
        if (e.portId === from) return; // already on the right segment
        const dst = this.ports.get(e.portId);
        if (dst) {
          this.forwarded++;
          this.deliver(dst, frame);
          return;
        }
      }
    }
    this.flooded++;
    for (const [id, st] of this.ports) if (id !== from) this.deliver(st, frame);
  }

  private deliver(st: PortState, frame: Buffer): void {
    st.counters.txFrames++;
    st.counters.txBytes += frame.length;
    st.port.send(frame);
  }

  /** The MAC table: mac, port, age. */
  table(now: number): { mac: string; port: string; ageMs: number }[] {
    return [...this.macs].map(([mac, e]) => ({
      mac: mac.replace(/(..)(?!$)/g, "$1:"),
      port: e.portId,
      ageMs: now - e.seen,
    }));
  }

  portStats(): { id: string; counters: PortCounters }[] {
    return [...this.ports.values()].map((s) => ({ id: s.port.id, counters: { ...s.counters } }));
  }
}
