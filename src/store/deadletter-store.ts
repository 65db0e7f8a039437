/**
 * Dead letters: tasks that failed for good with on_attempts_exceeded = deadletter. Upkeep moves
 * them here (src/store/upkeep-store.ts); this module lists, requeues and purges them.
 *
 * Like the task store, every operation is one statement, wrapped in `guard()` (503 when the store
 * cannot be reached).
 */
import { sql, type SQL } from 'drizzle-orm'
import type { QueueRef } from '../core/claims/task-signal.js'
import type { Database, Row } from '../db/database.js'
import { InvalidRequestError } from '../domain/errors.js'
import { bucketOf } from '../domain/schedule.js'
import { guard } from './errors.js'
import { toDate } from './rows.js'
import type { Activation } from '../domain/types.js'
import { undecodableReason } from './undecodable.js'

export type DeadletterStore = ReturnType<typeof createDeadletterStore>

/** A task that failed for good, with why and when. */
export interface DeadLetter {
  id: string
  /** As stored: an Activation, unless the dead letter was set aside as undecodable (see `undecodable`). */
  activation: Activation
  /** Why `activation` cannot be decoded as a task, or null (src/store/undecodable.ts). */
  undecodable: string | null
  application: string
  namespace: string
  taskname: string
  /** Why it failed (a FailureReason, see types.ts). */
  reason: string
  processingAttempts: number
  receivedAt: Date
  deadletteredAt: Date
}

export interface DeadletterFilter {
  application?: string | undefined
  namespace?: string | undefined
  taskname?: string | undefined
}

export interface DeadletterListOptions extends DeadletterFilter {
  /** Most dead letters in the page (callers bound it). */
  limit: number
  /** `nextCursor` of the previous page; the page starts after it. */
  after?: string | undefined
}

export interface DeadletterPage {
  items: DeadLetter[]
  /** Pass as `after` for the next page; null on the last page. */
  nextCursor: string | null
}

/** What a requeue did; a requeued task's queue is given so long-polls can be woken. */
export type RequeueResult =
  | { outcome: 'requeued', queue: QueueRef }
  /** No dead letter has this id. */
  | { outcome: 'not_found' }
  /** A task with this id is live in inflight_tasks: nothing was changed. */
  | { outcome: 'live' }
  /** Its stored activation cannot be decoded as a task: nothing was changed. */
  | { outcome: 'undecodable', reason: string }

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

/** Independent of the session's TimeZone and DateStyle; read back by `::timestamptz` exactly. */
const CURSOR_TIMESTAMP = sql.raw('to_char(d.deadlettered_at at time zone \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')')

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

export function createDeadletterStore (database: Database) {
  return {
    /**
     * Dead letters oldest first by (deadlettered_at, id), after `after` when given; filters match
     * exactly. Reads one row more than the page to know whether another page follows.
     */
    async list (options: DeadletterListOptions): Promise<DeadletterPage> {
      const conditions: SQL[] = []
      if (options.application !== undefined) conditions.push(sql`d.application = ${options.application}`)
      if (options.namespace !== undefined) conditions.push(sql`d.namespace = ${options.namespace}`)
      if (options.taskname !== undefined) conditions.push(sql`d.taskname = ${options.taskname}`)
      if (options.after !== undefined) {
        const cursor = decodeCursor(options.after)
        if (cursor === null) throw new InvalidRequestError('the cursor is malformed: pass next_cursor of a previous page as is')
        conditions.push(sql`(d.deadlettered_at, d.id) > (${cursor.deadletteredAt}::timestamptz, ${cursor.id}::text)`)
      }
      const where = conditions.length === 0 ? sql`` : sql`where ${sql.join(conditions, sql` and `)}`
      const rows = await guard(() => database.rows(sql`
        select d.id, d.activation, d.application, d.namespace, d.taskname, d.reason, d.processing_attempts, d.received_at, d.deadlettered_at,
               ${CURSOR_TIMESTAMP} as cursor_ts
        from deadletter_tasks d
        ${where}
        order by d.deadlettered_at, d.id
        limit ${options.limit + 1}::int`))
      const page = rows.slice(0, options.limit)
      const last = page[page.length - 1]
      const nextCursor = rows.length > options.limit && last !== undefined
        ? encodeCursor({ deadletteredAt: last.cursor_ts as string, id: last.id as string })
        : null
      return { items: page.map(toDeadLetter), nextCursor }
    },

    /**
     * Moves a dead letter back into inflight_tasks as a fresh pending task, in ONE statement: the
     * row is deleted from deadletter_tasks and inserted with no attempts (retry_state.attempts and
     * processing_attempts 0), received_at = now (in the activation too), the expiry window
     * restarted from now and no delay (claimable at once, so `delay` leaves the activation).
     * Nothing changes when a task with the id is live.
     */
    async requeue (id: string, now: Date): Promise<RequeueResult> {
      // A poison dead letter would fail the statement below (or requeue a task no worker can take).
      const [stored] = await guard(() => database.rows(sql`select activation from deadletter_tasks where id = ${id}`))
      if (stored === undefined) return { outcome: 'not_found' }
      const reason = undecodableReason(stored.activation, id)
      if (reason !== null) return { outcome: 'undecodable', reason }
      const nowIso = now.toISOString()
      const at = sql`${nowIso}::timestamptz`
      const query = sql`
        with found as (
          select exists (select 1 from deadletter_tasks where id = ${id}) as found,
                 exists (select 1 from inflight_tasks where id = ${id}) as live),
        dead as (
          delete from deadletter_tasks d using found
          where d.id = ${id} and not found.live
          returning d.id, jsonb_set(jsonb_set(d.activation - 'delay',
            '{retry_state,attempts}', '0'::jsonb), '{received_at}', to_jsonb(${nowIso}::text)) as activation),
        moved as (
          insert into inflight_tasks (id, activation, received_at, processing_attempts, expires_at, delay_until,
            processing_deadline_duration, processing_deadline, claim_expires_at, status, at_most_once,
            application, namespace, taskname, on_attempts_exceeded, bucket, failure_reason)
          select id, activation, ${at}, 0,
            case when activation ->> 'expires' is not null then ${at} + make_interval(secs => (activation ->> 'expires')::int) end,
            null, (activation ->> 'processing_deadline_duration')::int, null, null, 'pending',
            coalesce((activation -> 'retry_state' ->> 'at_most_once')::boolean, false),
            activation ->> 'application', activation ->> 'namespace', activation ->> 'taskname',
            coalesce(activation -> 'retry_state' ->> 'on_attempts_exceeded', 'discard'),
            ${bucketOf(id)}::smallint, null
          from dead
          returning application, namespace)
        select found.found, found.live, moved.application, moved.namespace
        from found left join moved on true`
      let rows: Row[]
      try {
        rows = await guard(() => database.rows(query))
      } catch (error) {
        // The id was produced after this statement's snapshot: the whole statement rolled back.
        if (isUniqueViolation(error)) return { outcome: 'live' }
        throw error
      }
      const row = rows[0]
      if (row !== undefined && typeof row.application === 'string') {
        return { outcome: 'requeued', queue: { application: row.application, namespace: row.namespace as string } }
      }
      if (row?.found === true && row.live === true) return { outcome: 'live' }
      // Unknown, or removed (or requeued) by another request meanwhile.
      return { outcome: 'not_found' }
    },

    /** Purges one dead letter; false when there was none with the id. */
    async remove (id: string): Promise<boolean> {
      const rows = await guard(() => database.rows(sql`delete from deadletter_tasks where id = ${id} returning id`))
      return rows.length > 0
    },

    /** How many dead letters there are (for stats). */
    async count (): Promise<number> {
      const rows = await guard(() => database.rows(sql`select count(*)::int as count from deadletter_tasks`))
      return Number(rows[0]?.count ?? 0)
    }
  }
}

function toDeadLetter (row: Row): DeadLetter {
  return {
    id: row.id as string,
    activation: row.activation as Activation,
    undecodable: undecodableReason(row.activation, row.id as string),
    application: row.application as string,
    namespace: row.namespace as string,
    taskname: row.taskname as string,
    reason: row.reason as string,
    processingAttempts: row.processing_attempts as number,
    receivedAt: toDate(row.received_at) as Date,
    deadletteredAt: toDate(row.deadlettered_at) as Date
  }
}

function isUniqueViolation (error: unknown): boolean {
  const err = error as { code?: unknown, cause?: unknown } | null
  if (err === null || typeof err !== 'object') return false
  if (err.code === '23505') return true
  return err.cause !== undefined && err.cause !== error && isUniqueViolation(err.cause)
}
