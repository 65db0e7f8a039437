/**
 * The statements behind upkeep: each transition of the task lifecycle is ONE set-based statement,
 * bounded by `limit` rows per call (so a backlog of millions cannot stall a pass) and taking its
 * rows with `FOR UPDATE SKIP LOCKED` (so it never waits on a claim or a flush in progress).
 * Time comes in as `now` (the caller's clock), never from the database, so tests can move it.
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import { inflightTasks } from '../db/schema.js'
import { pgArray } from './arrays.js'
import { guard } from './errors.js'
import type { Released, UpkeepStore } from './interfaces.js'
import { deadletterMove } from './statements/deadletter-move.js'
import { columnsOf, namesOf } from './statements/schema-sql.js'
import { UNDECODABLE } from '../domain/undecodable.js'

export type { Released, UpkeepStore } from './interfaces.js'

const c = columnsOf(inflightTasks)
/** The changed row in an UPDATE (`update inflight_tasks t`). */
const t = columnsOf(inflightTasks, 't')
const k = namesOf(inflightTasks)

const p = {
  now: sql`${sql.placeholder('now')}::timestamptz`,
  limit: sql`${sql.placeholder('limit')}::int`
}

/** What a step that may release tasks returns of each row: its new status and its queue. */
const RELEASE_COLUMNS = sql`${t.status}, ${t.application}, ${t.namespace}`

/** Groups returned rows that became pending by queue. */
function released (rows: Row[]): Released {
  const byQueue = new Map<string, Released[number]>()
  for (const row of rows) {
    if (row[k.status] !== 'pending') continue
    const application = row[k.application] as string
    const namespace = row[k.namespace] as string
    const key = `${application}\u0000${namespace}`
    const entry = byQueue.get(key)
    if (entry === undefined) byQueue.set(key, { application, namespace, count: 1 })
    else entry.count++
  }
  return [...byQueue.values()]
}

/**
 * A jsonb value as an int when it is an integral number in int's range, else null: never an error,
 * whatever a stored activation holds. Nested CASEs because PostgreSQL does not promise to
 * evaluate AND left to right, and a cast of a jsonb string to numeric throws.
 */
function jsonInt (value: string): SQL {
  const n = `(${value})::numeric`
  return sql.raw(`case when jsonb_typeof(${value}) = 'number' then case when ${n} = trunc(${n}) and abs(${n}) < 2147483648 then ${n}::int end end`)
}

/**
 * A retry's delay from retry_state.backoff (in checked, before attempts is counted up): fixed
 * base_sec, or exponential base_sec × 2^attempts, at most max_sec; with jitter a random part of
 * it (full jitter), from random() unless the caller gives the fraction (tests).
 */
const BACKOFF_SEC = sql`(floor(greatest(0, least(max_sec::numeric,
      case when backoff ->> 'strategy' = 'fixed' then base_sec::numeric else base_sec * power(2::numeric, least(greatest(attempts, 0), 62)) end))
    * case when backoff -> 'jitter' = 'true'::jsonb then coalesce(${sql.placeholder('jitter')}::float8, random())::numeric else 1 end))::int`

const countWhere = (rows: Row[], status: string) => rows.filter(r => r[k.status] === status).length

/** A CTE `due` of up to `limit` rows matching `where` (in `order` when given), locked, skipping rows others hold. */
function due (where: SQL, order?: SQL): SQL {
  return sql`due as (
        select ${c.id} from ${inflightTasks}
        where ${where}
        ${order === undefined ? sql`` : sql`order by ${order}`} limit ${p.limit} for update skip locked)`
}

/** Deletes up to `limit` rows matching `where`; returns their ids. */
function remove (where: SQL): SQL {
  return sql`with ${due(where)}
      delete from ${inflightTasks} t using due where ${t.id} = due.${c.id}
      returning ${t.id}`
}

export interface UpkeepStoreOptions {
  /** PostgreSQL: bound on each statement (TASKBROKER_DB_UPKEEP_CALL_TIMEOUT_MS); default: the database's. */
  timeoutMs?: number
}

export function createUpkeepStore (database: Database, options: UpkeepStoreOptions = {}): UpkeepStore {
  const prepare = (name: string, query: SQL) => database.prepare(name, query, { timeoutMs: options.timeoutMs })
  const statements = {
    // Processing deadline passed: back to pending with one more processing attempt (its lease
    // cleared: a late report carrying it is stale), or failure for
    // at_most_once tasks (they may never run twice); a task whose cancel was requested ends
    // (complete: removed by the completed step). A task whose attempts reach the maximum
    // fails here and now: were it made pending first, a claim could take it before the
    // processing_attempts step sees it, and it would run once too often.
    resetMissedDeadlines: prepare('taskbroker_upkeep_deadlines', sql`
      with ${due(sql`${c.status} = 'processing' and ${c.processingDeadline} < ${p.now}`, c.processingDeadline)}
      update ${inflightTasks} t set
        ${c.status} = case when ${t.cancelRequested} then 'complete'
          when ${t.atMostOnce} or ${t.processingAttempts} + 1 >= ${sql.placeholder('maxAttempts')}::int
          then 'failure' else 'pending' end,
        ${c.failureReason} = case when ${t.cancelRequested} then null when ${t.atMostOnce} then 'deadline_missed_at_most_once'
          when ${t.processingAttempts} + 1 >= ${sql.placeholder('maxAttempts')}::int then 'processing_attempts_exceeded' end,
        ${c.processingAttempts} = ${t.processingAttempts} + case when ${t.atMostOnce} then 0 else 1 end,
        ${c.processingDeadline} = null, ${c.lease} = null
      from due where ${t.id} = due.${c.id}
      returning ${RELEASE_COLUMNS}`),

    // Push mode: a claim whose lease ran out was never delivered; it is pending again and no
    // attempt is counted (at_most_once included: the task never ran).
    expireClaims: prepare('taskbroker_upkeep_claims', sql`
      with ${due(sql`${c.status} = 'claimed' and ${c.claimExpiresAt} < ${p.now}`)}
      update ${inflightTasks} t set ${c.status} = case when ${t.cancelRequested} then 'complete' else 'pending' end,
        ${c.claimExpiresAt} = null, ${c.lease} = null
      from due where ${t.id} = due.${c.id}
      returning ${RELEASE_COLUMNS}`),

    // Normally the deadline step already failed such tasks; this catches a lowered maximum.
    failExhaustedProcessingAttempts: prepare('taskbroker_upkeep_attempts', sql`
      with ${due(sql`${c.status} = 'pending' and ${c.processingAttempts} >= ${sql.placeholder('maxAttempts')}::int`)}
      update ${inflightTasks} t set ${c.status} = 'failure', ${c.failureReason} = 'processing_attempts_exceeded'
      from due where ${t.id} = due.${c.id}
      returning ${t.id}`),

    removeExpired: prepare('taskbroker_upkeep_expired', remove(sql`${c.status} = 'pending' and ${c.expiresAt} < ${p.now}`)),

    releaseDelayed: prepare('taskbroker_upkeep_delayed', sql`
      with ${due(sql`${c.status} = 'delay' and ${c.delayUntil} <= ${p.now}`, c.delayUntil)}
      update ${inflightTasks} t set ${c.status} = 'pending'
      from due where ${t.id} = due.${c.id}
      returning ${RELEASE_COLUMNS}`),

    // A retry: same id, retry_state.attempts + 1, at the back of the queue (new added_at), the
    // expiry window restarted from now, delayed by delay_on_retry when set (capped at the maximum
    // delay, as a produced delay is). When the attempts would reach max_attempts the broker fails
    // the task instead (upstream leaves that to workers). A stored activation this step cannot
    // read (not an object, retry_state or a number in it of the wrong type: written by hand or by
    // another version) fails with the reason and becomes a dead letter: one poison row must not
    // fail the step for every task behind it, pass after pass.
    requeueRetries: prepare('taskbroker_upkeep_retries', sql`
      with picked as (
        select ${c.id}, ${c.activation} as a from ${inflightTasks}
        where ${c.status} = 'retry'
        limit ${p.limit} for update skip locked),
      numbers as (
        select ${c.id}, a,
          ${jsonInt("a -> 'retry_state' -> 'attempts'")} as attempts,
          ${jsonInt("a -> 'retry_state' -> 'max_attempts'")} as max_attempts,
          ${jsonInt("a -> 'retry_state' -> 'delay_on_retry'")} as delay_on_retry,
          a -> 'retry_state' -> 'backoff' as backoff,
          ${jsonInt("a -> 'retry_state' -> 'backoff' -> 'base_sec'")} as base_sec,
          ${jsonInt("a -> 'retry_state' -> 'backoff' -> 'max_sec'")} as max_sec,
          ${jsonInt("a -> 'expires'")} as expires_sec
        from picked),
      checked as (
        select *,
          case when jsonb_typeof(a) is distinct from 'object' then 'the activation is not an object'
            when jsonb_typeof(a -> 'retry_state') is distinct from 'object' then 'activation/retry_state is not an object'
            when attempts is null then 'activation/retry_state/attempts is not an integer'
            when max_attempts is null then 'activation/retry_state/max_attempts is not an integer'
            when delay_on_retry is null and a -> 'retry_state' ? 'delay_on_retry' then 'activation/retry_state/delay_on_retry is not an integer'
            when expires_sec is null and a ? 'expires' then 'activation/expires is not an integer'
            when backoff is not null and (jsonb_typeof(backoff) is distinct from 'object' or base_sec is null or max_sec is null
              or (backoff ->> 'strategy') is distinct from 'fixed' and (backoff ->> 'strategy') is distinct from 'exponential')
              then 'activation/retry_state/backoff is not a valid backoff'
          end as undecodable
        from numbers),
      due as (
        select ${c.id}, attempts + 1 as attempts, expires_sec, undecodable,
          undecodable is not null or attempts + 1 >= max_attempts as fails,
          least(case when backoff is null or undecodable is not null then coalesce(delay_on_retry, 0)
            else ${BACKOFF_SEC} end, ${sql.placeholder('maxDelaySec')}::int) as delay_sec
        from checked)
      update ${inflightTasks} t set
        ${c.status} = case when due.fails then 'failure' when due.delay_sec > 0 then 'delay' else 'pending' end,
        ${c.failureReason} = case when due.undecodable is not null then '${sql.raw(UNDECODABLE)}: ' || due.undecodable
          when due.fails then 'retries_exhausted' end,
        ${c.activation} = case when due.fails then ${t.activation}
          else jsonb_set(jsonb_set(
                 case when due.delay_sec > 0 then jsonb_set(${t.activation}, '{delay}', to_jsonb(due.delay_sec))
                      else ${t.activation} - 'delay' end,
                 '{retry_state,attempts}', to_jsonb(due.attempts)),
               '{received_at}', to_jsonb(${sql.placeholder('nowIso')}::text)) end,
        ${c.addedAt} = case when due.fails then ${t.addedAt} else clock_timestamp() end,
        ${c.receivedAt} = case when due.fails then ${t.receivedAt} else ${p.now} end,
        ${c.delayUntil} = case when not due.fails and due.delay_sec > 0
          then ${p.now} + make_interval(secs => due.delay_sec) end,
        ${c.expiresAt} = case when due.fails then ${t.expiresAt}
          when due.expires_sec is not null then ${p.now} + make_interval(secs => due.expires_sec) end,
        ${c.processingAttempts} = case when due.fails then ${t.processingAttempts} else 0 end,
        ${c.processingDeadline} = null
      from due where ${t.id} = due.${c.id}
      returning ${RELEASE_COLUMNS}`),

    // Failure: removed, and moved to deadletter_tasks when on_attempts_exceeded = deadletter (or
    // the activation is undecodable), by ONE statement, so a task is never lost between the two.
    settleFailures: prepare('taskbroker_upkeep_failures', sql`
      with ${due(sql`${c.status} = 'failure'`)},
      ${deadletterMove({
        from: sql`due`,
        reason: sql`coalesce(${t.failureReason}, 'reported_failure')`,
        keep: sql`where ${c.onAttemptsExceeded} = 'deadletter' or ${c.failureReason} like '${sql.raw(UNDECODABLE)}:%'`
      })}
      select (select count(*) from moved)::int as failed, (select count(*) from dead)::int as deadlettered`),

    removeCompleted: prepare('taskbroker_upkeep_completed', remove(sql`${c.status} = 'complete'`)),

    removeKillswitched: prepare('taskbroker_upkeep_killswitch', remove(sql`${c.taskname} = any(${sql.placeholder('names')}::text[])`))
  }

  const at = (now: Date, limit: number) => ({ now: now.toISOString(), limit })

  return {
    async resetMissedDeadlines (now: Date, maxAttempts: number, limit: number) {
      const rows = await guard(() => statements.resetMissedDeadlines.run({ ...at(now, limit), maxAttempts }))
      return { reset: countWhere(rows, 'pending'), failed: countWhere(rows, 'failure'), released: released(rows) }
    },
    async expireClaims (now: Date, limit: number) {
      const rows = await guard(() => statements.expireClaims.run(at(now, limit)))
      return { expired: rows.length, released: released(rows) }
    },
    async failExhaustedProcessingAttempts (maxAttempts: number, limit: number) {
      const rows = await guard(() => statements.failExhaustedProcessingAttempts.run({ maxAttempts, limit }))
      return { failed: rows.length }
    },
    async removeExpired (now: Date, limit: number) {
      return { removed: (await guard(() => statements.removeExpired.run(at(now, limit)))).length }
    },
    async releaseDelayed (now: Date, limit: number) {
      const rows = await guard(() => statements.releaseDelayed.run(at(now, limit)))
      return { released: released(rows), count: rows.length }
    },
    async requeueRetries (now: Date, maxDelaySec: number, limit: number, jitter?: number) {
      const rows = await guard(() => statements.requeueRetries.run({ ...at(now, limit), nowIso: now.toISOString(), maxDelaySec, jitter: jitter ?? null }))
      return {
        requeued: countWhere(rows, 'pending'),
        delayed: countWhere(rows, 'delay'),
        failed: countWhere(rows, 'failure'),
        released: released(rows)
      }
    },
    async settleFailures (limit: number) {
      const [row] = await guard(() => statements.settleFailures.run({ limit }))
      const failed = Number(row?.failed ?? 0)
      const deadlettered = Number(row?.deadlettered ?? 0)
      return { discarded: failed - deadlettered, deadlettered }
    },
    async removeCompleted (limit: number) {
      return { removed: (await guard(() => statements.removeCompleted.run({ limit }))).length }
    },
    async removeKillswitched (names: readonly string[], limit: number) {
      // An empty list never reaches SQL.
      if (names.length === 0) return { removed: 0 }
      return { removed: (await guard(() => statements.removeKillswitched.run({ names: pgArray(names), limit }))).length }
    }
  }
}
