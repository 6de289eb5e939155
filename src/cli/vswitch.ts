/** `remusd vswitch`: the virtual LAN as a process. */
import { pino } from "pino";
import { parseHostPort } from "../net/addr.js";
import { startVswitch } from "../vswitch/udp.js";
import type { OptValues } from "./options.js";

export async function runVswitch(v: OptValues): Promise<void> {
  const log = pino(
    { level: v["log-level"] as string, base: { role: "vswitch" } },
    pino.destination({ fd: 2, sync: false }),
  );
  const addr = parseHostPort(v.listen as string, "--listen");
  const sw = await startVswitch(addr, (v["mac-aging-s"] as number) * 1000);
  log.info({ listen: `${addr.host}:${sw.port}`, port: sw.port }, "remusd vswitch started");
  const every = v["stats-s"] as number;
  if (every > 0) {
    setInterval(
      () => log.info({ ports: sw.sw.portStats(), macs: sw.sw.table(performance.now()) }, "vswitch stats"),
      every * 1000,
    );
  }
  const stop = () => {
    void sw.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
