/**
 * The guest network stack (Ethernet II, ARP, IPv4, TCP) with all state in a
 * `Mem`. See stack.ts for the design, layout.ts for the memory layout.
 */
export {
  type NetConfig,
  type NetEnv,
  NetStack,
  type NetStats,
  type SocketError,
  type SocketInfo,
  TCP_STATE_NAMES,
  TcpState,
  type TcpStateName,
} from "./stack.js";
export * from "./wire.js";
