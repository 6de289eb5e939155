/**
 * Assembling a guest: boot the kernel into a domain and start the counter and
 * the workload's processes. Importing this module registers every program.
 */
import type { Domain } from "../domain/domain.js";
import { Kernel } from "./kernel.js";
import { bootNetwork, type GuestNetConfig } from "./netd.js";
import { PROGRAM } from "./programs/basic.js";
import { ECHO_PROGRAM_ID } from "./programs/echo.js";
import { KVD_PROGRAM_ID } from "./programs/kvd.js";
import { DirtyFill, DirtyPattern, type WorkloadSpec } from "./workload.js";

export interface GuestOptions {
  readonly seed: number;
  readonly workload: WorkloadSpec;
  /** Configure the NIC and the TCP/IP stack, and start the network services (echo, kvd). */
  readonly net?: GuestNetConfig;
}

export { KVD_PROGRAM_ID };

/** Boots a fresh guest into `domain`. Deterministic in (geometry, seed, workload). */
export function bootGuest(domain: Domain, opts: GuestOptions): Kernel {
  const k = Kernel.boot(domain, { seed: opts.seed });
  k.spawn(PROGRAM.counter, "counter", [], 1);
  if (opts.net) {
    bootNetwork(k, opts.net);
    k.spawn(ECHO_PROGRAM_ID, "echo", [], 1);
    k.spawn(KVD_PROGRAM_ID, "kvd", [], 1);
  }
  for (const part of opts.workload.parts) {
    if (part.kind === "dirty") {
      k.spawn(
        PROGRAM.dirtier,
        `dirty-${part.pattern}`,
        [part.rate, Math.round(part.hot * 1_000_000), DirtyPattern[part.pattern], DirtyFill[part.fill]],
        1,
      );
    } else {
      k.spawn(PROGRAM.diskwriter, "diskwriter", [part.rateKiB], 1);
    }
  }
  return k;
}

export { Kernel };
