/** Rows as the store returns them to callers. */
import type { Row } from '../db/database.js'
import type { Activation, StoredTask, TaskStatus } from '../domain/types.js'

export function toStoredTask (row: Row): StoredTask {
  return {
    activation: row.activation as Activation,
    status: row.status as TaskStatus,
    addedAt: toDate(row.added_at) as Date,
    processingAttempts: row.processing_attempts as number,
    processingDeadline: toDate(row.processing_deadline),
    expiresAt: toDate(row.expires_at),
    delayUntil: toDate(row.delay_until),
    claimExpiresAt: toDate(row.claim_expires_at)
  }
}

/** Raw queries give timestamps as strings (drizzle turns postgres.js's parser off) or Dates. */
export function toDate (value: unknown): Date | null {
  if (value === null || value === undefined) return null
  return value instanceof Date ? value : new Date(value as string)
}
