/**
 * The store layer's one entrance: opens the database (or takes one given) and builds every store on
 * it. The broker core depends on this file and the store interfaces, never on src/db/.
 */
import type { Logger } from 'pino'
import { openDatabase, type Database, type DatabaseKind, type LeaderLock } from '../db/database.js'
import { prepareSchema } from '../db/migration-check.js'
import { createDeadletterStore, type DeadletterStore } from './deadletter-store.js'
import { createLeaseStore, type LeaseStore } from './lease-store.js'
import { createListenerCount } from './listeners.js'
import { createPushStore, type PushStore } from './push-store.js'
import { createQueueRestrictions, type QueueRestrictions } from './queue-restrictions.js'
import { createQueueStore, type QueueStore } from './queue-store.js'
import { createScheduleStore, type ScheduleStore } from './schedule-store.js'
import { createTaskStore, type TaskStore } from './task-store.js'
import { createUpkeepStore, type UpkeepStore } from './upkeep-store.js'

export type { LeaderLock } from '../db/database.js'
export type { QueueRestrictions } from './queue-restrictions.js'
export type * from './interfaces.js'
export type { ScheduleCounts, ScheduleRecord, ScheduleSource, ScheduleStore, ScheduleWrite } from './schedule-store.js'
// What the core may ask of store failures and dead-letter cursors.
export { isStoreUnavailable, outcomeUnknown } from './errors.js'
export { decodeCursor } from './deadletter-store.js'

export interface Store {
  readonly kind: DatabaseKind
  readonly tasks: TaskStore
  readonly upkeep: UpkeepStore
  readonly deadletters: DeadletterStore
  readonly push: PushStore
  readonly leases: LeaseStore
  readonly queues: QueueStore
  readonly schedules: ScheduleStore
  /** Whether some queue is paused or capped, as last seen (claims skip the queue-control steps while
   * none is): looked at again after every change made here; the core also looks periodically and
   * when another broker says it made one. */
  readonly queueRestrictions: QueueRestrictions
  /** Messages between brokers sharing one PostgreSQL database (LISTEN/NOTIFY); PGlite has none. */
  readonly messages: {
    listen (channel: string, onPayload: (payload: string) => void): Promise<{ unlisten: () => Promise<void> }>
    notify (channel: string, payload: string): Promise<void>
    /** Sessions listening for these messages on this database: one per broker, this one's included. */
    listeners (): Promise<number>
  }
  /** A lock one broker at a time holds (upkeep); always held on PGlite, which is one process. */
  leaderLock (key: number): LeaderLock
  /** Closes the database, unless it was given to createStore by its owner. */
  close (): Promise<void>
}

/** What the statements need to know of the broker's settings. */
export interface StoreRules {
  /** Seconds added to every processing deadline. */
  processingDeadlineGraceSec: number
  /** Longest delay honoured; a longer one is capped. */
  maxDelaySec: number
  /** PostgreSQL: bound on each upkeep statement, in ms (0 = none). */
  upkeepCallTimeoutMs: number
}

export interface OpenStoreOptions extends StoreRules {
  /** PostgreSQL URL, or undefined for the embedded PGlite in `dataDir`. */
  databaseUrl: string | undefined
  dataDir: string
  runMigrations: boolean
  poolSize: number
  callTimeoutMs: number
  log: Logger
}

/** Builds the stores on a database its caller owns (and closes). */
export function createStore (database: Database, rules: StoreRules, owned = false): Store {
  const queueRestrictions = createQueueRestrictions(database)
  return {
    kind: database.kind,
    tasks: createTaskStore(database, rules, queueRestrictions),
    upkeep: createUpkeepStore(database, { timeoutMs: rules.upkeepCallTimeoutMs }),
    deadletters: createDeadletterStore(database),
    push: createPushStore(database, rules, queueRestrictions),
    leases: createLeaseStore(database, rules),
    queues: createQueueStore(database, queueRestrictions),
    schedules: createScheduleStore(database),
    queueRestrictions,
    messages: {
      listen: async (channel, onPayload) => await database.listen(channel, onPayload),
      notify: async (channel, payload) => { await database.notify(channel, payload) },
      listeners: createListenerCount(database)
    },
    leaderLock: key => database.leaderLock(key),
    close: async () => { if (owned) await database.close() }
  }
}

/**
 * Opens the database, migrates it if configured and refuses one whose schema is behind or ahead of
 * this broker (StartupRefusedError), then builds the stores. The store closes its database.
 */
export async function openStore (options: OpenStoreOptions): Promise<Store> {
  const database = await openDatabase({
    url: options.databaseUrl,
    dataDir: options.dataDir,
    poolSize: options.poolSize,
    callTimeoutMs: options.callTimeoutMs,
    log: options.log.child({ component: 'db' })
  })
  try {
    await prepareSchema(database, options.runMigrations, options.log)
    return createStore(database, options, true)
  } catch (error) {
    await database.close().catch(() => {})
    throw error
  }
}
