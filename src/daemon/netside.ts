/**
 * The daemon's network attachment: the guest NIC's host side (NetDevice, with
 * the netbuf) wired to a vswitch over UDP, and to the metrics. Both daemons
 * attach; only the active side (the primary) exchanges frames.
 */
import type { Domain } from "../domain/domain.js";
import type { Metrics } from "../metrics.js";
import type { HostPort } from "../net/addr.js";
import { NetDevice } from "../replication/netdev.js";
import { UdpLink } from "../vswitch/udp.js";

export class NetSide {
  readonly dev: NetDevice;
  private link: UdpLink | undefined;

  constructor(
    domain: Domain,
    metrics: Metrics,
    readonly outputCommit: boolean,
  ) {
    this.dev = new NetDevice({
      domain,
      outputCommit,
      sendFrame: (f) => this.link?.send(f),
      observeDelay: (s) => metrics.releaseDelay.observe(s),
    });
  }

  async attach(sw: HostPort): Promise<void> {
    this.link = await UdpLink.open(sw);
    this.link.onFrame = (f) => this.dev.input(f);
  }

  get attached(): boolean {
    return this.link !== undefined;
  }

  /** Call after guest ticks and at each checkpoint's pause. (The netbuf gauges are read at scrape time.) */
  pump(epoch: number, mustWait: boolean, now: number): void {
    this.dev.pump(epoch, mustWait, now);
  }

  committed(epoch: number, now: number): void {
    this.dev.committed(epoch, now);
  }

  releaseAll(now: number): void {
    this.dev.releaseAll(now);
  }

  stats(now: number): {
    packets: number;
    bytes: number;
    oldestAgeMs: number;
    outputCommit: boolean;
    attached: boolean;
  } {
    return {
      packets: this.dev.netbuf.packets,
      bytes: this.dev.netbuf.byteCount,
      oldestAgeMs: Math.round(this.dev.netbuf.oldestAgeMs(now) * 1000) / 1000,
      outputCommit: this.outputCommit,
      attached: this.attached,
    };
  }

  close(): void {
    this.link?.close();
    this.link = undefined;
  }
}
