/**
 * What COMMAND, COMMAND INFO and COMMAND DOCS report about each command kvd
 * serves: Redis 7's command flags, ACL categories, key positions (legacy
 * first/last/step and one key specification), and the documentation
 * (summary, version, group, complexity, argument tree) that redis-cli's
 * interactive help and client libraries read. Static program text, keyed by
 * full name ("get", "config|get"); test/guest/kvd-admin.test.ts checks that
 * it covers exactly the command table.
 */

export type ArgType =
  | "key"
  | "string"
  | "integer"
  | "pattern"
  | "unix-time"
  | "pure-token"
  | "oneof"
  | "block";

export interface ArgDoc {
  readonly name: string;
  readonly type: ArgType;
  readonly token?: string;
  readonly optional?: boolean;
  readonly multiple?: boolean;
  readonly args?: readonly ArgDoc[];
}

/** Where a command's keys are: from argument `first`, to `last` (relative: 0 = only the first, -1 = to the end), every `step`. */
export interface KeyRange {
  readonly first: number;
  readonly last: number;
  readonly step: number;
  /** Key-specification flags (RW, RO, OW, RM, ACCESS, UPDATE, INSERT, DELETE, VARIABLE_FLAGS). */
  readonly flags: readonly string[];
}

export interface CommandDoc {
  readonly summary: string;
  readonly since: string;
  readonly group: string;
  readonly complexity: string;
  /** Command flags as COMMAND INFO reports them (write, readonly, denyoom, fast, ...). */
  readonly flags: readonly string[];
  /** ACL categories (@read, @write, @fast, ...). */
  readonly acl: readonly string[];
  readonly keys?: KeyRange;
  readonly args?: readonly ArgDoc[];
}

const key: ArgDoc = { name: "key", type: "key" };
const keys: ArgDoc = { name: "key", type: "key", multiple: true };
const flushType: ArgDoc = {
  name: "flush-type",
  type: "oneof",
  optional: true,
  args: [
    { name: "async", type: "pure-token", token: "ASYNC" },
    { name: "sync", type: "pure-token", token: "SYNC" },
  ],
};
const READ_KEY: KeyRange = { first: 1, last: 0, step: 1, flags: ["RO", "ACCESS"] };
const RW_KEY: KeyRange = { first: 1, last: 0, step: 1, flags: ["RW", "ACCESS", "UPDATE"] };
const ADMIN = { flags: ["admin", "noscript", "loading", "stale"], acl: ["@admin", "@slow", "@dangerous"] };
const CONN = { flags: ["noscript", "loading", "stale"], acl: ["@slow", "@connection"] };

function help(since: string, group: string): CommandDoc {
  return {
    summary: "Returns helpful text about the different subcommands.",
    since,
    group,
    complexity: "O(1)",
    flags: ["loading", "stale"],
    acl: ["@slow"],
  };
}

function counter(summary: string, name: string): CommandDoc {
  return {
    summary,
    since: "1.0.0",
    group: "string",
    complexity: "O(1)",
    flags: ["write", "denyoom", "fast"],
    acl: ["@write", "@string", "@fast"],
    keys: RW_KEY,
    args: name === "" ? [key] : [key, { name, type: "integer" }],
  };
}

function ttl(summary: string, since: string): CommandDoc {
  return {
    summary,
    since,
    group: "generic",
    complexity: "O(1)",
    flags: ["readonly", "fast"],
    acl: ["@keyspace", "@read", "@fast"],
    keys: READ_KEY,
    args: [key],
  };
}

function flush(summary: string): CommandDoc {
  return {
    summary,
    since: "1.0.0",
    group: "server",
    complexity: "O(N) where N is the number of keys",
    flags: ["write"],
    acl: ["@keyspace", "@write", "@slow", "@dangerous"],
    args: [flushType],
  };
}

/** The documentation of every command and subcommand, by full name. */
export const COMMAND_DOCS: Readonly<Record<string, CommandDoc>> = {
  ping: {
    summary: "Returns PONG, or its argument.",
    since: "1.0.0",
    group: "connection",
    complexity: "O(1)",
    flags: ["fast"],
    acl: ["@fast", "@connection"],
    args: [{ name: "message", type: "string", optional: true }],
  },
  echo: {
    summary: "Returns its argument.",
    since: "1.0.0",
    group: "connection",
    complexity: "O(1)",
    flags: ["fast"],
    acl: ["@fast", "@connection"],
    args: [{ name: "message", type: "string" }],
  },
  set: {
    summary: "Sets a key's string value, optionally only if it exists or not, with an expiry.",
    since: "1.0.0",
    group: "string",
    complexity: "O(1)",
    flags: ["write", "denyoom"],
    acl: ["@write", "@string", "@slow"],
    keys: { first: 1, last: 0, step: 1, flags: ["RW", "ACCESS", "UPDATE", "VARIABLE_FLAGS"] },
    args: [
      key,
      { name: "value", type: "string" },
      {
        name: "condition",
        type: "oneof",
        optional: true,
        args: [
          { name: "nx", type: "pure-token", token: "NX" },
          { name: "xx", type: "pure-token", token: "XX" },
        ],
      },
      { name: "get", type: "pure-token", token: "GET", optional: true },
      {
        name: "expiration",
        type: "oneof",
        optional: true,
        args: [
          { name: "seconds", type: "integer", token: "EX" },
          { name: "milliseconds", type: "integer", token: "PX" },
          { name: "unix-time-seconds", type: "unix-time", token: "EXAT" },
          { name: "unix-time-milliseconds", type: "unix-time", token: "PXAT" },
          { name: "keepttl", type: "pure-token", token: "KEEPTTL" },
        ],
      },
    ],
  },
  get: {
    summary: "Returns a key's string value.",
    since: "1.0.0",
    group: "string",
    complexity: "O(1)",
    flags: ["readonly", "fast"],
    acl: ["@read", "@string", "@fast"],
    keys: READ_KEY,
    args: [key],
  },
  strlen: {
    summary: "Returns the length of a key's string value (0 when the key does not exist).",
    since: "2.2.0",
    group: "string",
    complexity: "O(1)",
    flags: ["readonly", "fast"],
    acl: ["@read", "@string", "@fast"],
    keys: { first: 1, last: 0, step: 1, flags: ["RO"] },
    args: [key],
  },
  del: {
    summary: "Deletes keys; returns how many existed.",
    since: "1.0.0",
    group: "generic",
    complexity: "O(N) where N is the number of keys",
    flags: ["write"],
    acl: ["@keyspace", "@write", "@slow"],
    keys: { first: 1, last: -1, step: 1, flags: ["RM", "DELETE"] },
    args: [keys],
  },
  exists: {
    summary: "Counts how many of the given keys exist.",
    since: "1.0.0",
    group: "generic",
    complexity: "O(N) where N is the number of keys",
    flags: ["readonly", "fast"],
    acl: ["@keyspace", "@read", "@fast"],
    keys: { first: 1, last: -1, step: 1, flags: ["RO"] },
    args: [keys],
  },
  incr: counter("Adds one to a key's integer value (0 when it does not exist).", ""),
  decr: counter("Subtracts one from a key's integer value (0 when it does not exist).", ""),
  incrby: counter("Adds an integer to a key's integer value (0 when it does not exist).", "increment"),
  decrby: counter("Subtracts an integer from a key's integer value (0 when it does not exist).", "decrement"),
  mget: {
    summary: "Returns the string values of several keys.",
    since: "1.0.0",
    group: "string",
    complexity: "O(N) where N is the number of keys",
    flags: ["readonly", "fast"],
    acl: ["@read", "@string", "@fast"],
    keys: { first: 1, last: -1, step: 1, flags: ["RO", "ACCESS"] },
    args: [keys],
  },
  mset: {
    summary: "Sets several keys to string values at once.",
    since: "1.0.1",
    group: "string",
    complexity: "O(N) where N is the number of keys",
    flags: ["write", "denyoom"],
    acl: ["@write", "@string", "@slow"],
    keys: { first: 1, last: -1, step: 2, flags: ["OW", "UPDATE"] },
    args: [
      {
        name: "data",
        type: "block",
        multiple: true,
        args: [key, { name: "value", type: "string" }],
      },
    ],
  },
  ttl: ttl("Returns a key's remaining time to live in seconds (-1: no expiry, -2: no key).", "1.0.0"),
  pttl: ttl("Returns a key's remaining time to live in milliseconds (-1: no expiry, -2: no key).", "2.6.0"),
  dbsize: {
    summary: "Returns the number of keys.",
    since: "1.0.0",
    group: "server",
    complexity: "O(1)",
    flags: ["readonly", "fast"],
    acl: ["@keyspace", "@read", "@fast"],
  },
  flushall: flush("Deletes every key."),
  flushdb: flush("Deletes every key of the current database (kvd has one)."),
  select: {
    summary: "Selects a database: kvd has only database 0.",
    since: "1.0.0",
    group: "connection",
    complexity: "O(1)",
    flags: ["loading", "stale", "fast"],
    acl: ["@fast", "@connection"],
    args: [{ name: "index", type: "integer" }],
  },
  info: {
    summary: "Returns information and counters about the server, by section.",
    since: "1.0.0",
    group: "server",
    complexity: "O(1)",
    flags: ["loading", "stale"],
    acl: ["@slow", "@dangerous"],
    args: [{ name: "section", type: "string", optional: true, multiple: true }],
  },
  config: {
    summary: "Server configuration: a container for its subcommands.",
    since: "2.0.0",
    group: "server",
    complexity: "Depends on subcommand.",
    flags: [],
    acl: ["@slow"],
  },
  "config|get": {
    summary: "Returns configuration parameters matching glob patterns, with their values.",
    since: "2.0.0",
    group: "server",
    complexity: "O(N) when N is the number of configuration parameters provided",
    ...ADMIN,
    args: [{ name: "parameter", type: "string", multiple: true }],
  },
  "config|set": {
    summary: "Sets configuration parameters (kvd's are all fixed).",
    since: "2.0.0",
    group: "server",
    complexity: "O(N) when N is the number of configuration parameters provided",
    ...ADMIN,
    args: [
      {
        name: "data",
        type: "block",
        multiple: true,
        args: [
          { name: "parameter", type: "string" },
          { name: "value", type: "string" },
        ],
      },
    ],
  },
  "config|resetstat": {
    summary: "Resets the counters INFO reports.",
    since: "2.0.0",
    group: "server",
    complexity: "O(1)",
    ...ADMIN,
  },
  "config|rewrite": {
    summary: "Writes the configuration to its file (kvd has none).",
    since: "2.8.0",
    group: "server",
    complexity: "O(1)",
    ...ADMIN,
  },
  "config|help": help("5.0.0", "server"),
  command: {
    summary: "Returns the details of every command.",
    since: "2.8.13",
    group: "server",
    complexity: "O(N) where N is the total number of commands",
    flags: ["loading", "stale"],
    acl: ["@slow", "@connection"],
  },
  "command|count": {
    summary: "Returns the number of commands.",
    since: "2.8.13",
    group: "server",
    complexity: "O(1)",
    flags: ["loading", "stale"],
    acl: ["@slow", "@connection"],
  },
  "command|docs": {
    summary: "Returns the documentation of some or all commands.",
    since: "7.0.0",
    group: "server",
    complexity: "O(N) where N is the number of commands to look up",
    flags: ["loading", "stale"],
    acl: ["@slow", "@connection"],
    args: [{ name: "command-name", type: "string", optional: true, multiple: true }],
  },
  "command|info": {
    summary: "Returns the details of some or all commands.",
    since: "2.8.13",
    group: "server",
    complexity: "O(N) where N is the number of commands to look up",
    flags: ["loading", "stale"],
    acl: ["@slow", "@connection"],
    args: [{ name: "command-name", type: "string", optional: true, multiple: true }],
  },
  "command|list": {
    summary: "Returns the names of the commands, optionally filtered.",
    since: "7.0.0",
    group: "server",
    complexity: "O(N) where N is the total number of commands",
    flags: ["loading", "stale"],
    acl: ["@slow", "@connection"],
    args: [
      {
        name: "filterby",
        type: "oneof",
        token: "FILTERBY",
        optional: true,
        args: [
          { name: "module-name", type: "string", token: "MODULE" },
          { name: "category", type: "string", token: "ACLCAT" },
          { name: "pattern", type: "pattern", token: "PATTERN" },
        ],
      },
    ],
  },
  "command|help": help("5.0.0", "server"),
  client: {
    summary: "Client connections: a container for its subcommands.",
    since: "2.4.0",
    group: "connection",
    complexity: "Depends on subcommand.",
    flags: [],
    acl: ["@slow"],
  },
  "client|id": {
    summary: "Returns the connection's unique id.",
    since: "5.0.0",
    group: "connection",
    complexity: "O(1)",
    ...CONN,
  },
  "client|getname": {
    summary: "Returns the connection's name, or nil.",
    since: "2.6.9",
    group: "connection",
    complexity: "O(1)",
    ...CONN,
  },
  "client|setname": {
    summary: "Names the connection (an empty name clears it).",
    since: "2.6.9",
    group: "connection",
    complexity: "O(1)",
    ...CONN,
    args: [{ name: "connection-name", type: "string" }],
  },
  "client|info": {
    summary: "Returns one line describing the connection.",
    since: "6.2.0",
    group: "connection",
    complexity: "O(1)",
    ...CONN,
  },
  "client|list": {
    summary: "Returns one line per open connection.",
    since: "2.4.0",
    group: "connection",
    complexity: "O(N) where N is the number of client connections",
    ...CONN,
    args: [
      {
        name: "client-type",
        type: "oneof",
        token: "TYPE",
        optional: true,
        args: [
          { name: "normal", type: "pure-token", token: "NORMAL" },
          { name: "master", type: "pure-token", token: "MASTER" },
          { name: "replica", type: "pure-token", token: "REPLICA" },
          { name: "pubsub", type: "pure-token", token: "PUBSUB" },
        ],
      },
      { name: "client-id", type: "integer", token: "ID", optional: true, multiple: true },
    ],
  },
  "client|help": help("5.0.0", "connection"),
  quit: {
    summary: "Replies OK and closes the connection.",
    since: "1.0.0",
    group: "connection",
    complexity: "O(1)",
    flags: ["allow_busy", "noscript", "loading", "stale", "fast", "no_auth"],
    acl: ["@fast", "@connection"],
  },
};
