/**
 * Raw loopback TCP throughput, to set the pipeline's figures beside: a child
 * process accepts one connection on 127.0.0.1 and discards what it reads;
 * this process writes 1 MiB buffers for `seconds` as fast as the socket
 * takes them. MB/s (10^6 bytes) of what the receiver read.
 */
import { spawn } from "node:child_process";
import { connect } from "node:net";

const RECEIVER = `
const net = require("node:net");
let bytes = 0;
const s = net.createServer((c) => {
  c.on("data", (d) => { bytes += d.length; });
  c.on("end", () => { process.stdout.write(String(bytes) + "\\n"); s.close(); });
});
s.listen(0, "127.0.0.1", () => process.stdout.write(String(s.address().port) + "\\n"));
`;

export async function loopbackTcpMBps(seconds: number): Promise<number> {
  const child = spawn(process.execPath, ["-e", RECEIVER], { stdio: ["ignore", "pipe", "ignore"] });
  const lines: string[] = [];
  let buf = "";
  const waiters: (() => void)[] = [];
  child.stdout.on("data", (d: Buffer) => {
    buf += d.toString();
    let i = buf.indexOf("\n");
    while (i >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      i = buf.indexOf("\n");
    }
    for (const w of waiters.splice(0)) w();
  });
  const line = async (n: number): Promise<string> => {
    while (lines.length <= n) {
      if (child.exitCode !== null) throw new Error("the TCP receiver exited");
      await new Promise<void>((r) => waiters.push(r));
    }
    return lines[n] as string;
  };
  try {
    const port = Number(await line(0));
    const sock = connect(port, "127.0.0.1");
    await new Promise<void>((r, j) => {
      sock.once("connect", () => r());
      sock.once("error", j);
    });
    const chunk = Buffer.alloc(1 << 20, 0x5a);
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    await new Promise<void>((resolve) => {
      const pump = () => {
        while (performance.now() < end) {
          if (!sock.write(chunk)) {
            sock.once("drain", pump);
            return;
          }
        }
        sock.end(() => resolve());
      };
      pump();
    });
    const bytes = Number(await line(1));
    return bytes / 1e6 / ((performance.now() - t0) / 1000);
  } finally {
    child.kill("SIGKILL");
  }
}
