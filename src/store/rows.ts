/**
 * Task rows as the store returns them: ONE list of columns, which every statement that returns
 * tasks selects (claims, the claim riding in a status flush, getById), and the mapping of such a
 * row to a StoredTask. A task field is added here and nowhere else in the statements.
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Row } from '../db/database.js'
import { inflightTasks } from '../db/schema.js'
import type { Activation, StoredTask, TaskStatus } from '../domain/types.js'
import { list } from './statements/schema-sql.js'

const c = inflightTasks
/** The returned columns, `id` first (the rider statement's report rows put only an id there). */
const TASK_COLUMNS = [c.id, c.activation, c.status, c.addedAt, c.processingAttempts, c.processingDeadline, c.expiresAt, c.delayUntil, c.claimExpiresAt, c.priority, c.lease, c.cancelRequested, c.progress] as const

/**
 * The task columns qualified by `alias`, for a SELECT list or RETURNING. The activation comes as its
 * JSON text: parsed once here (claims check its shape), and the text handed to the worker as it is
 * instead of serialised again.
 */
export function taskColumns (alias: string): SQL {
  return list(TASK_COLUMNS.map(column => column === c.activation
    ? sql`${sql.raw(alias)}.${sql.identifier(column.name)}::text as ${sql.identifier(column.name)}`
    : sql`${sql.raw(alias)}.${sql.identifier(column.name)}`))
}

/** Every task column but `id`, as typed nulls under the column's name: rows that carry only an id in a union with task rows. */
export const NULL_TASK_COLUMNS: SQL = list(TASK_COLUMNS.slice(1).map(column =>
  sql`null::${sql.raw(column === c.activation ? 'text' : column.getSQLType())} as ${sql.identifier(column.name)}`))

/** Where `parseActivations` keeps a row's activation text. */
const ACTIVATION_JSON = 'activation_json'

/** Rows of `taskColumns`: each activation parsed in place, its text kept beside it (for toStoredTask). */
export function parseActivations (rows: Row[]): Row[] {
  for (const row of rows) {
    const text = row[c.activation.name]
    if (typeof text !== 'string') continue
    row[ACTIVATION_JSON] = text
    row[c.activation.name] = JSON.parse(text)
  }
  return rows
}

export function toStoredTask (row: Row): StoredTask {
  const json = row[ACTIVATION_JSON]
  return {
    activation: row[c.activation.name] as Activation,
    activationJson: typeof json === 'string' ? json : undefined,
    status: row[c.status.name] as TaskStatus,
    addedAt: toDate(row[c.addedAt.name]) as Date,
    processingAttempts: row[c.processingAttempts.name] as number,
    processingDeadline: toDate(row[c.processingDeadline.name]),
    expiresAt: toDate(row[c.expiresAt.name]),
    delayUntil: toDate(row[c.delayUntil.name]),
    claimExpiresAt: toDate(row[c.claimExpiresAt.name]),
    priority: row[c.priority.name] as number,
    lease: (row[c.lease.name] as string | null | undefined) ?? null,
    progress: row[c.progress.name] ?? null,
    cancelRequested: row[c.cancelRequested.name] === true
  }
}

/** Raw queries give timestamps as strings (drizzle turns postgres.js's parser off) or Dates. */
export function toDate (value: unknown): Date | null {
  if (value === null || value === undefined) return null
  return value instanceof Date ? value : new Date(value as string)
}
