/**
 * TypeBox schemas of the control API: every route's body, query and reply.
 * Fastify validates requests and serialises replies with them, and the
 * OpenAPI document at /docs is generated from them, so the three cannot
 * disagree. Types for the handlers come from the same schemas (`Static`).
 */
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { type Bound, HEARTBEAT_MISSES, HEARTBEAT_MS, INTERVAL_MS } from "../bounds.js";
import { ERROR_CODES } from "../errors.js";
import { STATES } from "../states.js";

const Nullable = <T extends TSchema>(t: T, description?: string) =>
  Type.Union([t, Type.Null()], description ? { description } : {});

/** A setting's bounds as JSON Schema keywords: the API validates exactly as the command line does. */
const bounds = (b: Bound): { minimum: number; maximum: number } => ({ minimum: b.min, maximum: b.max });

/** A daemon's role. */
export const Role = Type.Union([Type.Literal("primary"), Type.Literal("backup")]);
/** Every state of either machine. */
export const State = Type.Union(
  STATES.map((s) => Type.Literal(s)),
  {
    description:
      "primary: syncing, protected, unprotected (stopped, fenced); backup: waiting, syncing, standby (activated, stopped)",
  },
);

/** The one error body of every route. */
export const ErrorBody = Type.Object(
  {
    code: Type.Union(
      Object.keys(ERROR_CODES).map((c) => Type.Literal(c)),
      { description: "stable REMUSD_ERR_* code (docs/errors.md)" },
    ),
    message: Type.String(),
  },
  { $id: "Error", title: "Error" },
);
export type ErrorBody = Static<typeof ErrorBody>;

/** 4xx/5xx replies of a route. */
export const ERROR_REPLIES = { "4xx": ErrorBody, "5xx": ErrorBody } as const;

/** The last checkpoint committed (primary) or applied (backup); fields the side cannot know are null. */
export const LastCheckpoint = Type.Object(
  {
    epoch: Type.Integer(),
    at: Type.String({
      format: "date-time",
      description: "when it was committed (primary) or applied (backup)",
    }),
    dirtyPages: Type.Integer({ description: "pages in the checkpoint" }),
    diskWrites: Nullable(Type.Integer(), "disk blocks in the checkpoint (backup)"),
    pauseMs: Nullable(Type.Number(), "time the domain was paused to capture it (primary)"),
    durationMs: Nullable(Type.Number(), "from the pause to the backup's acknowledgement (primary)"),
    wireBytes: Nullable(Type.Integer(), "bytes sent for it (primary)"),
    applyMs: Nullable(Type.Number(), "time to apply it atomically (backup)"),
  },
  { title: "LastCheckpoint" },
);

/** GET /v1/status. `role`, `state`, `epoch.committed` and `peer.connected` are the contract (DESIGN.md Part 1). */
export const Status = Type.Object(
  {
    role: Role,
    state: State,
    generation: Type.Integer({ description: "raised at every failover; an older primary is fenced" }),
    version: Type.String(),
    epoch: Type.Object({
      current: Type.Integer({ description: "primary: the open epoch; backup: the epoch being received" }),
      committed: Type.Integer({ description: "the last epoch acknowledged (primary) or applied (backup)" }),
    }),
    intervalMs: Type.Integer({
      description: "checkpoint interval (a backup uses it once it becomes primary)",
    }),
    lastCheckpoint: Nullable(LastCheckpoint),
    peer: Type.Object({
      connected: Type.Boolean(),
      lastSeenMsAgo: Nullable(Type.Number(), "ms since the last valid frame from the peer"),
      heartbeatRttMs: Nullable(Type.Number()),
    }),
    netbuf: Type.Object(
      {
        packets: Type.Integer({ description: "guest frames held until their epoch commits" }),
        bytes: Type.Integer(),
        oldestAgeMs: Type.Number({ description: "how long the oldest held frame has waited (0 when empty)" }),
        outputCommit: Type.Boolean({
          description:
            "false when started with --no-netbuf --unsafe: guest output never waits for the backup",
        }),
        holding: Type.Boolean({
          description:
            "whether guest output waits for commits now: protected, or a backup that may still activate (an incremental resync, a link the backup closed alive); otherwise it leaves at once",
        }),
        attached: Type.Boolean({ description: "whether the guest NIC is attached to a vswitch" }),
      },
      { description: "the output buffer (output commit)" },
    ),
    disk: Type.Object(
      {
        epoch: Type.Integer({ description: "the epoch the pending disk writes belong to" }),
        pendingWrites: Type.Integer({
          description:
            "primary: blocks written and not yet sent; backup: blocks staged until their epoch commits",
        }),
      },
      { description: "disk replication" },
    ),
    domain: Type.Object({
      pages: Type.Integer(),
      pageSize: Type.Integer(),
      diskBlocks: Type.Integer(),
      imageValid: Type.Boolean({ description: "the domain holds a complete, consistent image" }),
      running: Type.Boolean({ description: "the guest is running here (only on a primary)" }),
      digestEpoch: Nullable(Type.Integer(), "epoch of the last digest computed at a checkpoint (--verify)"),
      digest: Nullable(Type.String(), "that digest"),
      generationId: Type.String({
        description:
          "the VM Generation ID in the device block (hex): the same while the domain continues (failover, switchover, rewind), new when it starts from an image that may also exist elsewhere",
      }),
      config: Nullable(
        Type.Object({
          memoryMiB: Type.Number(),
          diskMiB: Type.Number(),
          intervalMs: Type.Integer(),
          guestMac: Type.String(),
          guestIp: Type.String(),
          workload: Type.String(),
        }),
        "the domain's configuration: a primary's own, or the one a backup took from its primary's stream (DOMAIN_CONFIG; null before the first)",
      ),
    }),
    lastRoleChange: Type.Object({
      from: Nullable(Role),
      to: Role,
      reason: Type.String(),
      at: Type.String({ format: "date-time" }),
    }),
    lastStateChange: Type.String({ description: "the reason of the last state change" }),
    pid: Type.Integer({ description: "the daemon's process id (remusd drill kills a local daemon by it)" }),
    mode: Type.Union([Type.Literal("remus"), Type.Literal("colo")], {
      description:
        "remus: checkpoints on a timer, output held until acknowledged; colo: output released when both replicas produced it",
    }),
    colo: Nullable(
      Type.Object({
        compared: Type.Object(
          { match: Type.Integer(), mismatch: Type.Integer(), timeout: Type.Integer() },
          { description: "the primary's output frames by comparison result, since the daemon started" },
        ),
        checkpoints: Type.Object(
          {
            mismatch: Type.Integer(),
            timeout: Type.Integer(),
            periodic: Type.Integer(),
            queue_full: Type.Integer(),
            requested: Type.Integer(),
          },
          { description: "COLO checkpoints taken, by reason, since the daemon started" },
        ),
        divergencePerSecond: Type.Number({
          description:
            "checkpoints forced by divergence (mismatch, timeout, queue_full) per second since the daemon started",
        }),
        mismatchRatio: Type.Number({ description: "the fraction of compared frames that differed" }),
        rewriter: Nullable(
          Type.Object({
            connections: Type.Integer({ description: "TCP connections the rewriter tracks" }),
            offsets: Type.Integer({
              description:
                "of those, the ones whose sequence numbers differ between the replicas (renumbered)",
            }),
            failedOver: Type.Boolean({ description: "kept for good: this secondary took over" }),
          }),
          "the TCP sequence rewriter (a secondary, or a secondary that took over)",
        ),
      }),
      "COLO mode's comparator and checkpoints (null in Remus mode)",
    ),
    fencing: Type.Union([Type.Literal("lease"), Type.Literal("generation-only")], {
      description:
        "lease: output leaves only under the domain's lease (--lease etcd://...); generation-only (--lease none): a partition with both nodes up can run two primaries until they meet",
    }),
    lease: Nullable(
      Type.Object({
        state: Type.Union([
          Type.Literal("none"),
          Type.Literal("acquiring"),
          Type.Literal("held"),
          Type.Literal("lost"),
        ]),
        generation: Nullable(Type.Integer(), "the generation held or last held"),
        holder: Nullable(
          Type.Object({
            nodeId: Type.String(),
            generation: Type.Integer(),
            address: Type.String(),
            control: Type.String(),
            since: Type.String(),
          }),
          "the holder as last seen (this node while it holds the lease)",
        ),
        deadlineInMs: Nullable(
          Type.Number(),
          "ms until the lease's deadline on this node's clock (while held; output stops the margin before it)",
        ),
        ttlMs: Type.Integer({ description: "the TTL the service granted (0 before the first acquisition)" }),
        marginMs: Type.Integer(),
      }),
      "the lease, with fencing lease",
    ),
  },
  { title: "Status" },
);
export type Status = Static<typeof Status>;

const intervalBounds = bounds(INTERVAL_MS);
const hbBounds = bounds(HEARTBEAT_MS);
const missesBounds = bounds(HEARTBEAT_MISSES);

/** The run-time configuration (GET /v1/config, and the reply of PATCH). */
export const Config = Type.Object(
  {
    intervalMs: Type.Integer({ ...intervalBounds, description: "checkpoint interval (epoch length) in ms" }),
    compress: Type.Boolean({ description: "LZ4-compress pages and disk blocks on the wire" }),
    heartbeat: Type.Object({
      intervalMs: Type.Integer({ ...hbBounds }),
      misses: Type.Integer({
        ...missesBounds,
        description: "heartbeats missed before the peer counts as lost",
      }),
    }),
    peer: Type.Union([Type.String(), Type.Null()], {
      description:
        "the backup this daemon dials as primary (ws://HOST:PORT), or null. Set it on an activated primary to re-protect it with a new backup",
    }),
    pending: Type.Boolean({
      description:
        "a primary: interval/compression changes wait for the open epoch to end. A backup: always false; interval and compression are kept and apply when it becomes primary",
    }),
  },
  { title: "Config" },
);
export type Config = Static<typeof Config>;

/** PATCH /v1/config: any subset of the settings; unknown keys and values out of bounds are 400. */
export const ConfigPatch = Type.Object(
  {
    intervalMs: Type.Optional(Type.Integer({ ...intervalBounds })),
    compress: Type.Optional(Type.Boolean()),
    peer: Type.Optional(
      Type.Union([Type.String({ pattern: "^wss?://[^\\s]+$", maxLength: 512 }), Type.Null()]),
    ),
    heartbeat: Type.Optional(
      Type.Object(
        {
          intervalMs: Type.Optional(Type.Integer({ ...hbBounds })),
          misses: Type.Optional(Type.Integer({ ...missesBounds })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, minProperties: 1, title: "ConfigPatch" },
);
export type ConfigPatch = Static<typeof ConfigPatch>;

/** POST /v1/failover (the body is optional). */
export const FailoverBody = Type.Object(
  {
    planned: Type.Optional(
      Type.Boolean({
        description:
          "true: ask the connected primary for a switchover (final checkpoint, then this backup activates); false: activate now if the primary is silent, else the same switchover (activating beside a live primary would roll back what it released)",
      }),
    ),
  },
  { additionalProperties: false },
);
export type FailoverBody = Static<typeof FailoverBody>;

/** The reply of POST /v1/failover. */
export const FailoverReply = Type.Object({
  activated: Type.Boolean(),
  pending: Type.Boolean({ description: "a planned switchover was requested and completes asynchronously" }),
  epoch: Nullable(Type.Integer(), "the epoch the domain resumed from"),
  digest: Nullable(Type.String(), "the domain digest at that epoch"),
});
export type FailoverReply = Static<typeof FailoverReply>;

/** POST /v1/checkpoint query string. */
export const CheckpointQuery = Type.Object(
  {
    wait: Type.Optional(
      Type.Boolean({ description: "wait until the checkpoint is committed (at most 10 s)" }),
    ),
  },
  { additionalProperties: false },
);
export type CheckpointQuery = Static<typeof CheckpointQuery>;

/** The reply of POST /v1/checkpoint. */
export const CheckpointReply = Type.Object({
  epoch: Type.Integer({ description: "the epoch whose end was requested" }),
  committed: Type.Boolean({ description: "the backup acknowledged it (only with ?wait=true)" }),
});
export type CheckpointReply = Static<typeof CheckpointReply>;

/** GET /v1/domain/digest. */
export const DigestReply = Type.Object({
  epoch: Type.Integer(),
  digest: Type.String(),
  live: Type.Boolean({ description: "true on a primary: the running domain, which moves on" }),
});

/** GET /v1/domain/processes. */
export const ProcessesReply = Type.Object({
  processes: Type.Array(
    Type.Object({
      pid: Type.Integer(),
      ppid: Type.Integer(),
      name: Type.String(),
      program: Type.String(),
      state: Type.String(),
      ticks: Type.Integer(),
      pages: Type.Integer(),
      exitCode: Type.Integer(),
    }),
  ),
});
export type ProcessesReply = Static<typeof ProcessesReply>;

/** GET /v1/domain/counter: the guest counter file's continuity check. */
export const CounterReply = Type.Object({
  ok: Type.Boolean(),
  counter: Type.Integer(),
  lines: Type.Integer(),
  lastLine: Type.Integer(),
  error: Type.Optional(Type.String()),
});

/** GET /healthz. */
export const HealthReply = Type.Object({ ok: Type.Boolean() });
/** GET /readyz (200 or 503). */
export const ReadyReply = Type.Object({ ready: Type.Boolean(), role: Role, state: State });

/** How long a stall or a link cut lasts, in ms (the same bounds as `remusd drill`). */
export const FAULT_MS = { min: 1, max: 60_000 } as const;

/** POST /v1/faults/stall and /v1/faults/link-cut: how long, in ms (an integer; no coercion). */
export const FaultDurationBody = Type.Object(
  {
    ms: Type.Integer({
      minimum: FAULT_MS.min,
      maximum: FAULT_MS.max,
      description:
        "stall: how long the event loop is blocked; link-cut: how long reconnection is held off after the cut",
    }),
  },
  { additionalProperties: false, title: "FaultDuration" },
);
export type FaultDurationBody = Static<typeof FaultDurationBody>;

/** The reply of a fault route, sent before the fault takes effect. */
export const FaultReply = Type.Object(
  {
    fault: Type.Union([Type.Literal("crash"), Type.Literal("stall"), Type.Literal("link-cut")]),
    ms: Nullable(Type.Integer(), "how long (stall, link-cut); null for a crash"),
    pid: Type.Integer({ description: "the daemon's process id" }),
    at: Type.String({ format: "date-time", description: "when the fault was injected" }),
  },
  { title: "FaultReply" },
);
export type FaultReply = Static<typeof FaultReply>;

/** One entry of GET /v1/events: an event-log line (checkpoint events excepted) with its sequence number. */
export const EventEntry = Type.Object(
  {
    seq: Type.Integer({ description: "increases by one per event since the daemon started" }),
    ts: Type.String({ format: "date-time" }),
    event: Type.String(),
    role: Role,
    epoch: Type.Integer(),
  },
  { additionalProperties: true, title: "Event" },
);
export type EventEntry = Static<typeof EventEntry>;

/** GET /v1/events query: events after sequence number `since`. */
export const EventsQuery = Type.Object(
  {
    since: Type.Optional(Type.Integer({ minimum: 0, description: "only events with a larger seq" })),
  },
  { additionalProperties: false },
);
export type EventsQuery = Static<typeof EventsQuery>;

/** GET /v1/events. */
export const EventsReply = Type.Object({
  events: Type.Array(EventEntry),
  dropped: Type.Boolean({
    description: "events after `since` were dropped from the bounded buffer (the event log file has them)",
  }),
});
export type EventsReply = Static<typeof EventsReply>;
