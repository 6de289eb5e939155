/**
 * echo: the guest's echo service (TCP port 7). Every byte a client sends comes
 * back. State (the listening socket and up to 32 connections) is in the
 * process's state block; bytes are taken from a connection only as far as its
 * send buffer has room, so nothing is ever held outside the stack's buffers.
 */
import { registerProgram } from "../kernel.js";
import { requireStack } from "../netd.js";

export const ECHO_PROGRAM_ID = 5;
export const ECHO_PORT = 7;
const MAX_CONNS = 32;

// state: 0 u32 listener · 4 u32 reserved · 8 u32 conns[32]
registerProgram({
  id: ECHO_PROGRAM_ID,
  name: "echo",
  wakeOnNetwork: true,
  stateSize: 8 + MAX_CONNS * 4,
  start(k, p) {
    const s = requireStack(k);
    k.mem.setU32(p.stateAddr, s.listen(p.arg(0) || ECHO_PORT, 16));
  },
  step(k, p) {
    const s = requireStack(k);
    const st = p.stateAddr;
    const m = k.mem;
    const l = m.u32(st);
    // accept scans the socket table: call it only while it yields and there is a free slot.
    let pending = true;
    for (let i = 0; i < MAX_CONNS; i++) {
      const slot = st + 8 + i * 4;
      let c = m.u32(slot);
      if (c === 0) {
        if (!pending) continue;
        c = s.accept(l);
        if (c === 0) {
          pending = false;
          continue;
        }
        m.setU32(slot, c);
      }
      const room = s.sendSpace(c);
      if (room > 0) {
        const data = s.recv(c, Math.min(room, 16384));
        if (data && data.length > 0) s.send(c, data);
      }
      const state = s.state(c);
      if (state === "CLOSED" || (s.eof(c) && s.recvAvailable(c) === 0)) {
        s.close(c);
        m.setU32(slot, 0);
      }
    }
  },
});
