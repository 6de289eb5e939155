/**
 * The guest's network: the NIC driver and the TCP/IP stack run as the
 * kernel's soft interrupt once per tick (before the processes): received
 * frames go from the rx ring into the stack, then the stack's timers run and
 * its output goes into the tx ring. The stack's state is in guest memory (its
 * root address is in the kernel header), so it is checkpointed like
 * everything else.
 */
import { RemusError } from "../errors.js";
import type { NetEnv } from "../net/ctx.js";
import { NetStack } from "../net/stack.js";
import { type Kernel, registerTickHook } from "./kernel.js";
import { Nic } from "./nic.js";

export interface GuestNetConfig {
  readonly mac: Uint8Array;
  readonly ip: number;
  readonly netmask?: number;
}

/** The stack's environment on a guest: guest memory, guest clock, guest RNG, the NIC's tx ring. */
export function guestNetEnv(k: Kernel): NetEnv {
  const nic = new Nic(k.domain);
  return {
    mem: k.mem,
    heap: k.heap,
    now: () => k.nowMs,
    random32: () => k.random32(),
    transmit: (frame) => nic.transmit(frame),
  };
}

/** A handle on the guest's stack, or undefined when the guest has no network. */
export function guestStack(k: Kernel): NetStack | undefined {
  const root = k.header("netRoot");
  return root === 0 ? undefined : new NetStack(guestNetEnv(k), root);
}

export function requireStack(k: Kernel): NetStack {
  const s = guestStack(k);
  if (!s) throw new RemusError("REMUSD_ERR_WRONG_ROLE", "the guest has no network");
  return s;
}

/** Configures the NIC and formats the stack (at boot). */
export function bootNetwork(k: Kernel, cfg: GuestNetConfig): NetStack {
  Nic.configure(k.domain, k.pages, {
    mac: cfg.mac,
    ip: cfg.ip,
    ...(cfg.netmask !== undefined ? { netmask: cfg.netmask } : {}),
  });
  const env = guestNetEnv(k);
  const root = NetStack.format(env, {
    mac: cfg.mac,
    ip: cfg.ip,
    ...(cfg.netmask !== undefined ? { netmask: cfg.netmask } : {}),
    minRtoMs: 200,
    timeWaitMs: 10_000,
  });
  k.setHeader("netRoot", root);
  return new NetStack(env, root);
}

/** The soft interrupt: rx ring -> stack, then timers and pending output. */
function netTick(k: Kernel): void {
  const stack = guestStack(k);
  if (!stack) return;
  const nic = new Nic(k.domain);
  // Bounded per tick so a flood cannot starve the processes. Injected timing divergence (tests):
  // a late receive interrupt leaves this tick's frames in the ring.
  const budget = k.domain.divergence?.rxStall() ? 0 : 256;
  for (let i = 0; i < budget; i++) {
    const f = nic.receive();
    if (!f) break;
    stack.input(f);
  }
  stack.poll();
}

registerTickHook(netTick);
