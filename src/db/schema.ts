/**
 * The store's tables: the single source of truth for the schema. Migrations in `migrations/`
 * are generated from this file by drizzle-kit (`npm run db:generate`); never edit a landed one.
 */
import { sql } from 'drizzle-orm'
import { boolean, index, integer, jsonb, pgTable, smallint, text, timestamp } from 'drizzle-orm/pg-core'

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
  failureReason: text('failure_reason')
}, (table) => [
  // Claims: oldest pending first, with or without an application (and namespace) filter.
  // Partial indexes stay small: only claimable rows are in them.
  index('inflight_tasks_pending_added_at_idx').on(table.addedAt).where(sql`status = 'pending'`),
  index('inflight_tasks_pending_app_ns_added_at_idx')
    .on(table.application, table.namespace, table.addedAt).where(sql`status = 'pending'`),
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
