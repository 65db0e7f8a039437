/**
 * Dead letters: tasks that failed for good with on_attempts_exceeded = deadletter. Upkeep moves
 * them here (src/store/upkeep-store.ts); this module lists, requeues and purges them.
 *
 * Like the task store, every operation is one statement, wrapped in `guard()` (503 when the store
 * cannot be reached).
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import { deadletterTasks, inflightTasks } from '../db/schema.js'
import { InvalidRequestError } from '../domain/errors.js'
import { bucketOf } from '../domain/schedule.js'
import { guard } from './errors.js'
import type { DeadLetter, DeadletterStore, RequeueResult } from './interfaces.js'
import { toDate } from './rows.js'
import type { Activation } from '../domain/types.js'
import { columnsOf, list, namesOf } from './statements/schema-sql.js'
import { undecodableReason } from '../domain/undecodable.js'

export type { DeadLetter, DeadletterFilter, DeadletterListOptions, DeadletterPage, DeadletterStore, RequeueResult } from './interfaces.js'

/**
 * A page position: deadlettered_at in UTC with all six fractional digits (a JS Date keeps only
 * milliseconds, so a cursor built from one would skip or repeat rows that share a millisecond),
 * and the id that breaks ties.
 */
interface Cursor {
  deadletteredAt: string
  id: string
}

/** The timestamp text in a cursor: what `CURSOR_TIMESTAMP` renders, nothing else. */
const CURSOR_TIMESTAMP_TEXT = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})\d{3}Z$/
const BASE64URL = /^[A-Za-z0-9_-]+$/

const d = columnsOf(deadletterTasks, 'd')
const dead = columnsOf(deadletterTasks)
const task = columnsOf(inflightTasks)
const k = namesOf(deadletterTasks)
const taskKeys = namesOf(inflightTasks)

/** Independent of the session's TimeZone and DateStyle; read back by `::timestamptz` exactly. */
const CURSOR_TIMESTAMP = sql`to_char(${d.deadletteredAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

/** The columns of a listed dead letter. */
const LISTED = list([d.id, d.activation, d.application, d.namespace, d.taskname, d.reason, d.processingAttempts, d.receivedAt, d.deadletteredAt])

export function encodeCursor (cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.deadletteredAt, cursor.id]), 'utf8').toString('base64url')
}

/** The position in a cursor this store handed out, or null when `text` is not one. */
export function decodeCursor (text: string): Cursor | null {
  if (!BASE64URL.test(text)) return null
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'))
  } catch {
    return null
  }
  if (!Array.isArray(value) || value.length !== 2) return null
  const [deadletteredAt, id] = value as unknown[]
  if (typeof deadletteredAt !== 'string' || typeof id !== 'string') return null
  // A valid calendar time only: PostgreSQL would reject "2024-02-30" with an error, not a 400.
  const match = CURSOR_TIMESTAMP_TEXT.exec(deadletteredAt)
  const millis = match?.[1]
  if (millis === undefined) return null
  const date = new Date(`${millis}Z`)
  if (Number.isNaN(date.getTime()) || date.toISOString() !== `${millis}Z`) return null
  // Year 0 is a valid JS date but not a PostgreSQL one; a NUL cannot be stored or compared.
  if (date.getUTCFullYear() < 1 || id.includes('\u0000')) return null
  return { deadletteredAt, id }
}

export function createDeadletterStore (database: Database): DeadletterStore {
  return {
    async list (options) {
      const conditions: SQL[] = []
      if (options.application !== undefined) conditions.push(sql`${d.application} = ${options.application}`)
      if (options.namespace !== undefined) conditions.push(sql`${d.namespace} = ${options.namespace}`)
      if (options.taskname !== undefined) conditions.push(sql`${d.taskname} = ${options.taskname}`)
      if (options.after !== undefined) {
        const cursor = decodeCursor(options.after)
        if (cursor === null) throw new InvalidRequestError('the cursor is malformed: pass next_cursor of a previous page as is')
        conditions.push(sql`(${d.deadletteredAt}, ${d.id}) > (${cursor.deadletteredAt}::timestamptz, ${cursor.id}::text)`)
      }
      // One row more than the page tells whether another page follows.
      const where = conditions.length === 0 ? sql`` : sql`where ${sql.join(conditions, sql` and `)}`
      const rows = await guard(() => database.rows(sql`
        select ${LISTED}, ${CURSOR_TIMESTAMP} as cursor_ts
        from ${deadletterTasks} d
        ${where}
        order by ${d.deadletteredAt}, ${d.id}
        limit ${options.limit + 1}::int`))
      const page = rows.slice(0, options.limit)
      const last = page[page.length - 1]
      const nextCursor = rows.length > options.limit && last !== undefined
        ? encodeCursor({ deadletteredAt: last.cursor_ts as string, id: last[k.id] as string })
        : null
      return { items: page.map(toDeadLetter), nextCursor }
    },

    /**
     * In ONE statement: the row is deleted from deadletter_tasks and inserted into inflight_tasks
     * with no attempts (retry_state.attempts and processing_attempts 0), received_at = now (in the
     * activation too), the expiry window restarted from now and no delay (claimable at once, so
     * `delay` leaves the activation). Nothing changes when a task with the id is live.
     */
    async requeue (id, now): Promise<RequeueResult> {
      // A poison dead letter would fail the statement below (or requeue a task no worker can take).
      const [stored] = await guard(() => database.rows(sql`select ${dead.activation} from ${deadletterTasks} where ${dead.id} = ${id}`))
      if (stored === undefined) return { outcome: 'not_found' }
      const reason = undecodableReason(stored[k.activation], id)
      if (reason !== null) return { outcome: 'undecodable', reason }
      let rows: Row[]
      try {
        rows = await guard(() => database.rows(requeueQuery(id, now)))
      } catch (error) {
        // The id was produced after this statement's snapshot: the whole statement rolled back.
        if (isUniqueViolation(error)) return { outcome: 'live' }
        throw error
      }
      const row = rows[0]
      const application = row?.[taskKeys.application]
      if (row !== undefined && typeof application === 'string') {
        return { outcome: 'requeued', queue: { application, namespace: row[taskKeys.namespace] as string } }
      }
      if (row?.found === true && row.live === true) return { outcome: 'live' }
      // Unknown, or removed (or requeued) by another request meanwhile.
      return { outcome: 'not_found' }
    },

    async remove (id) {
      const rows = await guard(() => database.rows(sql`delete from ${deadletterTasks} where ${dead.id} = ${id} returning ${dead.id}`))
      return rows.length > 0
    },

    async count () {
      const rows = await guard(() => database.rows(sql`select count(*)::int as count from ${deadletterTasks}`))
      return Number(rows[0]?.count ?? 0)
    }
  }
}

/** The requeue: one row with `found`, `live` and, when requeued, the task's application and namespace. */
function requeueQuery (id: string, now: Date): SQL {
  const nowIso = now.toISOString()
  const at = sql`${nowIso}::timestamptz`
  // The dead letter's activation as the task gets it.
  const a = sql`fresh`
  return sql`
    with found as (
      select exists (select 1 from ${deadletterTasks} where ${dead.id} = ${id}) as found,
             exists (select 1 from ${inflightTasks} where ${task.id} = ${id}) as live),
    requeued as (
      delete from ${deadletterTasks} d using found
      where ${d.id} = ${id} and not found.live
      returning ${d.id}, jsonb_set(jsonb_set(${d.activation} - 'delay',
        '{retry_state,attempts}', '0'::jsonb), '{received_at}', to_jsonb(${nowIso}::text)) as ${a}),
    moved as (
      insert into ${inflightTasks} (${list([task.id, task.activation, task.receivedAt, task.processingAttempts, task.expiresAt, task.delayUntil,
        task.processingDeadlineDuration, task.processingDeadline, task.claimExpiresAt, task.status, task.atMostOnce,
        task.application, task.namespace, task.taskname, task.onAttemptsExceeded, task.bucket, task.failureReason])})
      select ${dead.id}, ${a}, ${at}, 0,
        case when ${a} ->> 'expires' is not null then ${at} + make_interval(secs => (${a} ->> 'expires')::int) end,
        null, (${a} ->> 'processing_deadline_duration')::int, null, null, 'pending',
        coalesce((${a} -> 'retry_state' ->> 'at_most_once')::boolean, false),
        ${a} ->> 'application', ${a} ->> 'namespace', ${a} ->> 'taskname',
        coalesce(${a} -> 'retry_state' ->> 'on_attempts_exceeded', 'discard'),
        ${bucketOf(id)}::smallint, null
      from requeued
      returning ${task.application}, ${task.namespace})
    select found.found, found.live, moved.${task.application}, moved.${task.namespace}
    from found left join moved on true`
}

function toDeadLetter (row: Row): DeadLetter {
  return {
    id: row[k.id] as string,
    activation: row[k.activation] as Activation,
    undecodable: undecodableReason(row[k.activation], row[k.id] as string),
    application: row[k.application] as string,
    namespace: row[k.namespace] as string,
    taskname: row[k.taskname] as string,
    reason: row[k.reason] as string,
    processingAttempts: row[k.processingAttempts] as number,
    receivedAt: toDate(row[k.receivedAt]) as Date,
    deadletteredAt: toDate(row[k.deadletteredAt]) as Date
  }
}

function isUniqueViolation (error: unknown): boolean {
  const err = error as { code?: unknown, cause?: unknown } | null
  if (err === null || typeof err !== 'object') return false
  if (err.code === '23505') return true
  return err.cause !== undefined && err.cause !== error && isUniqueViolation(err.cause)
}
