/**
 * The store's tables: the single source of truth for the schema. Migrations in `migrations/`
 * are generated from this file by drizzle-kit (`npm run db:generate`); never edit a landed one.
 */
import { sql } from 'drizzle-orm'
import { bigint, boolean, doublePrecision, index, integer, jsonb, pgTable, primaryKey, smallint, text, timestamp, uuid } from 'drizzle-orm/pg-core'

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' })

/** Live work: every task from produce until it is completed, discarded or dead-lettered. */
export const inflightTasks = pgTable('inflight_tasks', {
  id: text('id').primaryKey(),
  /** The task activation as produced (JSON, snake_case); what workers receive. */
  activation: jsonb('activation').notNull(),
  /** FIFO key for claims; set by the database at insert and never changed. clock_timestamp() (not
   * now()) so rows inserted by one statement still get increasing values and keep their order. */
  addedAt: ts('added_at').notNull().default(sql`clock_timestamp()`),
  receivedAt: ts('received_at').notNull(),
  /** Times the processing deadline passed and the task went back to pending. */
  processingAttempts: integer('processing_attempts').notNull().default(0),
  expiresAt: ts('expires_at'),
  delayUntil: ts('delay_until'),
  processingDeadlineDuration: integer('processing_deadline_duration').notNull(),
  processingDeadline: ts('processing_deadline'),
  claimExpiresAt: ts('claim_expires_at'),
  /** pending | claimed | processing | delay | retry | failure | complete */
  status: text('status').notNull(),
  atMostOnce: boolean('at_most_once').notNull().default(false),
  application: text('application').notNull(),
  namespace: text('namespace').notNull(),
  taskname: text('taskname').notNull(),
  /** discard | deadletter */
  onAttemptsExceeded: text('on_attempts_exceeded').notNull().default('discard'),
  /** Last byte of a UUID id (0–255), 0 otherwise; splits push fetch loops. */
  bucket: smallint('bucket').notNull().default(0),
  /** While status = failure: why (see FailureReason), kept with a dead letter. */
  failureReason: text('failure_reason'),
  /** Claims take the highest priority first (smallint range), oldest first within it. */
  priority: smallint('priority').notNull().default(0),
  /** The current claim's token, new at every claim; a report or heartbeat carrying an older one is stale. */
  lease: uuid('lease'),
  /** The worker's last heartbeat progress (any JSON, size-bounded by the API). */
  progress: jsonb('progress'),
  /** Set by a cancel while processing; heartbeats and reports answer it, the next report ends the task. */
  cancelRequested: boolean('cancel_requested').notNull().default(false)
}, (table) => [
  // Claims: highest priority, then oldest, pending first; one index per claim filter shape (none,
  // application, application + namespace), each starting with its filter, so one queue's backlog
  // never lies ahead of another's in the index a claim walks. Partial: only claimable rows.
  index('inflight_tasks_pending_order_idx').on(table.priority.desc(), table.addedAt).where(sql`status = 'pending'`),
  index('inflight_tasks_pending_app_order_idx')
    .on(table.application, table.priority.desc(), table.addedAt).where(sql`status = 'pending'`),
  index('inflight_tasks_pending_app_ns_order_idx')
    .on(table.application, table.namespace, table.priority.desc(), table.addedAt).where(sql`status = 'pending'`),
  // Upkeep: processing deadlines that have passed.
  index('inflight_tasks_processing_deadline_idx').on(table.processingDeadline).where(sql`status = 'processing'`),
  // Upkeep steps and counts by status (delay, retry, failure, claimed are small sets).
  index('inflight_tasks_status_idx').on(table.status)
])

export type InflightTaskRow = typeof inflightTasks.$inferSelect
export type NewInflightTaskRow = typeof inflightTasks.$inferInsert

/**
 * Tasks that failed for good with `on_attempts_exceeded: deadletter`. Moved here by upkeep in the
 * same statement that removes them from inflight_tasks, so a task is never in neither table.
 */
export const deadletterTasks = pgTable('deadletter_tasks', {
  id: text('id').primaryKey(),
  activation: jsonb('activation').notNull(),
  application: text('application').notNull(),
  namespace: text('namespace').notNull(),
  taskname: text('taskname').notNull(),
  /** Why it failed (see FailureReason in src/domain/types.ts). */
  reason: text('reason').notNull(),
  processingAttempts: integer('processing_attempts').notNull(),
  receivedAt: ts('received_at').notNull(),
  deadletteredAt: ts('deadlettered_at').notNull().default(sql`clock_timestamp()`)
}, (table) => [
  // Listing pages newest-last by (deadlettered_at, id), optionally filtered.
  index('deadletter_tasks_deadlettered_at_idx').on(table.deadletteredAt, table.id),
  index('deadletter_tasks_queue_idx').on(table.application, table.namespace, table.taskname)
])

export type DeadletterTaskRow = typeof deadletterTasks.$inferSelect

/**
 * Settings of a queue (an application and namespace), shared by every broker. namespace '' is the
 * application-wide row: it covers every namespace of the application that has no row of its own.
 */
export const queueSettings = pgTable('queue_settings', {
  application: text('application').notNull(),
  namespace: text('namespace').notNull().default(''),
  /** Claims and pushes skip a paused queue; produce still accepts. */
  paused: boolean('paused').notNull().default(false),
  /** At most this many of the queue's tasks processing (or claimed for a push) at once. */
  maxProcessing: integer('max_processing'),
  /** Claims per second (token bucket refill) and the bucket's size. */
  ratePerSec: doublePrecision('rate_per_sec'),
  rateBurst: integer('rate_burst'),
  /** The token bucket's state, updated by the claims that take from it. */
  rateTokens: doublePrecision('rate_tokens'),
  rateUpdatedAt: ts('rate_updated_at'),
  /** Tasks claims have taken under this row, ever: a claim that waited for the row's lock adds
   * what was taken since its snapshot to the processing tasks it counted (claim.ts). */
  claimedTotal: bigint('claimed_total', { mode: 'number' }).notNull().default(0),
  updatedAt: ts('updated_at').notNull().default(sql`clock_timestamp()`)
}, (table) => [
  primaryKey({ columns: [table.application, table.namespace] })
])

export type QueueSettingsRow = typeof queueSettings.$inferSelect

/** Periodic tasks, fired by the upkeep leader through the produce path, once per window. */
export const schedules = pgTable('schedules', {
  name: text('name').primaryKey(),
  /** api | file: a schedule declared in the runtime config file cannot be changed by the API. */
  source: text('source').notNull().default('api'),
  cron: text('cron'),
  everySec: integer('every_sec'),
  timezone: text('timezone').notNull().default('UTC'),
  /** The task each fire produces (application, namespace, taskname, parameters, ...). */
  task: jsonb('task').notNull(),
  /** allow | skip */
  overlap: text('overlap').notNull().default('allow'),
  /** none | latest | all */
  catchUp: text('catch_up').notNull().default('none'),
  paused: boolean('paused').notNull().default(false),
  /** The next window to fire; the leader fires it when due and moves it on in one transaction. */
  nextFireAt: ts('next_fire_at'),
  lastFireAt: ts('last_fire_at'),
  lastTaskId: text('last_task_id'),
  createdAt: ts('created_at').notNull().default(sql`clock_timestamp()`),
  updatedAt: ts('updated_at').notNull().default(sql`clock_timestamp()`)
}, (table) => [
  index('schedules_next_fire_at_idx').on(table.nextFireAt).where(sql`not paused`)
])

export type ScheduleRow = typeof schedules.$inferSelect
