/**
 * The states of the two replication machines, as the status API, the
 * `remusd_state` metric and the event log name them. One list per machine is
 * the source of both the type and the values.
 */

/** Every state of a primary. */
export const PRIMARY_STATES = ["unprotected", "syncing", "protected", "stopped", "fenced"] as const;
/** Every state of a backup. */
export const BACKUP_STATES = ["waiting", "syncing", "standby", "activated", "stopped"] as const;

export type PrimaryStateName = (typeof PRIMARY_STATES)[number];
export type BackupStateName = (typeof BACKUP_STATES)[number];
export type StateName = PrimaryStateName | BackupStateName;

/** Every state of either machine, each once: the primary's first, then the backup's own. */
export const STATES: readonly StateName[] = [...new Set<StateName>([...PRIMARY_STATES, ...BACKUP_STATES])];
