/** `remusd vswitch`: the virtual LAN as a process, with an optional TAP port. */
import { pino } from "pino";
import { parseHostPort } from "../net/addr.js";
import { formatCidr, parseTapSpec, TapPort } from "../vswitch/tap.js";
import { startVswitch } from "../vswitch/udp.js";
import type { OptValues } from "./options.js";

export async function runVswitch(v: OptValues): Promise<void> {
  const log = pino(
    { level: v["log-level"] as string, base: { role: "vswitch" } },
    pino.destination({ fd: 2, sync: false }),
  );
  const addr = parseHostPort(v.listen as string, "--listen");
  const tapSpec = v.tap === undefined ? undefined : parseTapSpec(v.tap as string);
  // The device first: a host that cannot give us one fails before anything listens.
  const tap = tapSpec ? await TapPort.open(tapSpec) : undefined;
  const sw = await startVswitch(addr, (v["mac-aging-s"] as number) * 1000);
  if (tap) {
    const { input } = sw.attach(tap);
    tap.onFrames = (frames) => {
      for (const f of frames) input(f);
    };
    tap.onError = (reason) => {
      log.error({ tap: tap.spec.name, reason }, "TAP device failed: detached from the switch");
      sw.sw.removePort(tap.id);
    };
  }
  log.info(
    {
      listen: `${addr.host}:${sw.port}`,
      port: sw.port,
      ...(tap
        ? {
            tap: tap.spec.name,
            netns: tap.spec.netns ?? null,
            ip: tap.spec.ip ? formatCidr(tap.spec.ip) : null,
            persistent: tap.persistent,
          }
        : {}),
    },
    "remusd vswitch started",
  );
  const every = v["stats-s"] as number;
  if (every > 0) {
    setInterval(
      () => log.info({ ports: sw.sw.portStats(), macs: sw.sw.table(performance.now()) }, "vswitch stats"),
      every * 1000,
    );
  }
  const stop = () => {
    // Closing the descriptor deletes the device (unless it is persistent); a kill does the same.
    tap?.close();
    void sw.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
