/**
 * The native TAP binding (native/tap.c, built by node-gyp on `npm ci` into
 * build/Release/tap.node), loaded on first use so that a vswitch without
 * `--tap` never needs it. Linux only.
 */
import { createRequire } from "node:module";
import { RemusError } from "../errors.js";

/** An open TAP device (opaque). */
export type TapHandle = { readonly __tap: unique symbol };

export interface TapBinding {
  /** Attaches to device `name`, creating it when it does not exist. Throws an Error with `code` (errno name) and `syscall`. */
  open(name: string): TapHandle;
  info(h: TapHandle): { fd: number; name: string; persistent: boolean };
  /** Reads frames whenever the device is readable, on Node's event loop; `err` when reading failed (reading then stops). */
  start(h: TapHandle, cb: (err: string | null, frames: Buffer[] | null) => void): void;
  /** Writes one frame; bytes written, or -errno (the frame is dropped). */
  write(h: TapHandle, frame: Uint8Array): number;
  /** Stops reading and closes the descriptor: the kernel removes a device that is not persistent. */
  close(h: TapHandle): void;
}

let binding: TapBinding | undefined;

/** The binding, or a RemusError saying why it cannot be loaded. */
export function tapBinding(): TapBinding {
  if (binding) return binding;
  if (process.platform !== "linux") {
    throw new RemusError("REMUSD_ERR_FORBIDDEN", `TAP devices need Linux (this is ${process.platform})`);
  }
  // dist/src/vswitch/tapdev.js -> build/Release/tap.node at the package root.
  const path = new URL("../../../build/Release/tap.node", import.meta.url).pathname;
  try {
    binding = createRequire(import.meta.url)(path) as TapBinding;
  } catch (e) {
    throw new RemusError(
      "REMUSD_ERR_INTERNAL",
      `the TAP addon ${path} cannot be loaded (it is built by 'npm ci' or 'npm run install', which need make and a C compiler): ${(e as Error).message}`,
      { cause: e },
    );
  }
  return binding;
}
