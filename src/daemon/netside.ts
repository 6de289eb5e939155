/**
 * The daemon's network attachment: the guest NIC's frames to and from a
 * vswitch over UDP. Both daemons attach; the node decides which frames go
 * out (output commit) and whether input reaches the guest (active side only).
 */
import type { HostPort } from "../net/addr.js";
import { UdpLink } from "../vswitch/udp.js";

export class NetSide {
  private link: UdpLink | undefined;

  /** Attaches to the vswitch at `sw`; frames from the LAN go to `onFrame`. */
  async attach(sw: HostPort, onFrame: (f: Buffer) => void): Promise<void> {
    this.link = await UdpLink.open(sw);
    this.link.onFrame = onFrame;
  }

  get attached(): boolean {
    return this.link !== undefined;
  }

  /** A frame for the LAN (dropped while not attached). */
  send(frame: Buffer): void {
    this.link?.send(frame);
  }

  close(): void {
    this.link?.close();
    this.link = undefined;
  }
}
