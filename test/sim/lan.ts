/**
 * The guest LAN in the simulated world: the real learning switch, with every
 * endpoint (a node's NIC, a client's stack) on a port. Frames cross the switch
 * at once and reach each destination port after that port's `LinkFaults`
 * (a seeded 0.1-0.3 ms by default; datagrams, so they may reorder). A
 * partition drops the frames between its sides.
 */
import { LearningSwitch } from "../../src/vswitch/switch.js";
import { LinkFaults, type Partitions } from "./faults.js";
import type { Endpoint } from "./repl.js";
import type { World } from "./world.js";

/** What the fault API sees of a LAN frame. */
export interface LanFrame {
  readonly from: string;
  readonly to: string;
  readonly frame: Buffer;
}

export class SimLan {
  readonly sw = new LearningSwitch({ agingMs: 300_000 });
  private readonly links = new Map<string, LinkFaults<LanFrame>>();
  /** The port whose frame the switch is forwarding now. */
  private source = "";

  constructor(
    private readonly world: World,
    private readonly partitions: Partitions,
    private readonly base = { delayMs: 0.1, jitterMs: 0.2, reorder: true },
  ) {}

  /** The faults of the switch's port toward `name` (frames delivered to it). */
  link(name: string): LinkFaults<LanFrame> {
    let l = this.links.get(name);
    if (!l) {
      l = new LinkFaults<LanFrame>(this.world.stream(`lan:${name}`), this.base);
      this.links.set(name, l);
    }
    return l;
  }

  /** Puts `ep` on a switch port; its frames arrive through `deliver`. Returns what it sends with. */
  attach(ep: Endpoint, deliver: (frame: Buffer) => void): (frame: Uint8Array) => void {
    const faults = this.link(ep.name);
    this.sw.addPort(
      {
        id: ep.name,
        send: (frame) => {
          const from = this.source;
          if (this.partitions.blocked(from, ep.name)) return;
          const f = { from, to: ep.name, frame };
          const fate = faults.fate(this.world.now, f);
          const data = fate.corrupt ? faults.flip(frame) : frame;
          for (const at of fate.times) this.world.at(at, () => ep.input(() => deliver(data)));
        },
      },
      this.world.now,
    );
    return (frame) => {
      this.source = ep.name;
      this.sw.input(ep.name, Buffer.from(frame), this.world.now);
    };
  }
}
