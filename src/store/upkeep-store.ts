/**
 * The statements behind upkeep: each transition of the task lifecycle is ONE set-based statement,
 * bounded by `limit` rows per call (so a backlog of millions cannot stall a pass) and taking its
 * rows with `FOR UPDATE SKIP LOCKED` (so it never waits on a claim or a flush in progress).
 * Time comes in as `now` (the caller's clock), never from the database, so tests can move it.
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import type { QueueRef } from '../core/claims/task-signal.js'
import { pgArray } from './arrays.js'
import { guard } from './errors.js'
import { UNDECODABLE } from './undecodable.js'

export type UpkeepStore = ReturnType<typeof createUpkeepStore>

/** Tasks that became claimable, grouped by queue, so long-polls can be woken. */
export type Released = Array<QueueRef & { count: number }>

const p = {
  now: sql`${sql.placeholder('now')}::timestamptz`,
  limit: sql`${sql.placeholder('limit')}::int`
}

/** Groups returned rows that became pending by queue. */
function released (rows: Row[]): Released {
  const byQueue = new Map<string, QueueRef & { count: number }>()
  for (const row of rows) {
    if (row.status !== 'pending') continue
    const key = `${row.application as string}\u0000${row.namespace as string}`
    const entry = byQueue.get(key)
    if (entry === undefined) byQueue.set(key, { application: row.application as string, namespace: row.namespace as string, count: 1 })
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

const countWhere = (rows: Row[], status: string) => rows.filter(r => r.status === status).length

export interface UpkeepStoreOptions {
  /** PostgreSQL: bound on each statement (TASKBROKER_DB_UPKEEP_CALL_TIMEOUT_MS); default: the database's. */
  timeoutMs?: number
}

export function createUpkeepStore (database: Database, options: UpkeepStoreOptions = {}) {
  const prepare = (name: string, query: SQL) => database.prepare(name, query, { timeoutMs: options.timeoutMs })
  const statements = {
    // Processing deadline passed: back to pending with one more processing attempt, or failure for
    // at_most_once tasks (they may never run twice). A task whose attempts reach the maximum
    // fails here and now: were it made pending first, a claim could take it before the
    // processing_attempts step sees it, and it would run once too often.
    resetMissedDeadlines: prepare('taskbroker_upkeep_deadlines', sql`
      with due as (
        select id from inflight_tasks
        where status = 'processing' and processing_deadline < ${p.now}
        order by processing_deadline limit ${p.limit} for update skip locked)
      update inflight_tasks t set
        status = case when t.at_most_once or t.processing_attempts + 1 >= ${sql.placeholder('maxAttempts')}::int
          then 'failure' else 'pending' end,
        failure_reason = case when t.at_most_once then 'deadline_missed_at_most_once'
          when t.processing_attempts + 1 >= ${sql.placeholder('maxAttempts')}::int then 'processing_attempts_exceeded' end,
        processing_attempts = t.processing_attempts + case when t.at_most_once then 0 else 1 end,
        processing_deadline = null
      from due where t.id = due.id
      returning t.status, t.application, t.namespace`),

    // Push mode: a claim whose lease ran out was never delivered; it is pending again and no
    // attempt is counted (at_most_once included: the task never ran).
    expireClaims: prepare('taskbroker_upkeep_claims', sql`
      with due as (
        select id from inflight_tasks
        where status = 'claimed' and claim_expires_at < ${p.now}
        limit ${p.limit} for update skip locked)
      update inflight_tasks t set status = 'pending', claim_expires_at = null
      from due where t.id = due.id
      returning t.status, t.application, t.namespace`),

    // Normally the deadline step already failed such tasks; this catches a lowered maximum.
    failExhaustedProcessingAttempts: prepare('taskbroker_upkeep_attempts', sql`
      with due as (
        select id from inflight_tasks
        where status = 'pending' and processing_attempts >= ${sql.placeholder('maxAttempts')}::int
        limit ${p.limit} for update skip locked)
      update inflight_tasks t set status = 'failure', failure_reason = 'processing_attempts_exceeded'
      from due where t.id = due.id
      returning t.id`),

    removeExpired: prepare('taskbroker_upkeep_expired', sql`
      delete from inflight_tasks where id in (
        select id from inflight_tasks
        where status = 'pending' and expires_at < ${p.now}
        limit ${p.limit} for update skip locked)
      returning id`),

    releaseDelayed: prepare('taskbroker_upkeep_delayed', sql`
      with due as (
        select id from inflight_tasks
        where status = 'delay' and delay_until <= ${p.now}
        order by delay_until limit ${p.limit} for update skip locked)
      update inflight_tasks t set status = 'pending'
      from due where t.id = due.id
      returning t.status, t.application, t.namespace`),

    // A retry: same id, retry_state.attempts + 1, at the back of the queue (new added_at), the
    // expiry window restarted from now, delayed by delay_on_retry when set (capped at the maximum
    // delay, as a produced delay is). When the attempts would reach max_attempts the broker fails
    // the task instead (upstream leaves that to workers). A stored activation this step cannot
    // read (not an object, retry_state or a number in it of the wrong type: written by hand or by
    // another version) fails with the reason and becomes a dead letter: one poison row must not
    // fail the step for every task behind it, pass after pass.
    requeueRetries: prepare('taskbroker_upkeep_retries', sql`
      with picked as (
        select id, activation as a from inflight_tasks
        where status = 'retry'
        limit ${p.limit} for update skip locked),
      numbers as (
        select id, a,
          ${jsonInt("a -> 'retry_state' -> 'attempts'")} as attempts,
          ${jsonInt("a -> 'retry_state' -> 'max_attempts'")} as max_attempts,
          ${jsonInt("a -> 'retry_state' -> 'delay_on_retry'")} as delay_on_retry,
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
          end as undecodable
        from numbers),
      due as (
        select id, attempts + 1 as attempts, expires_sec, undecodable,
          undecodable is not null or attempts + 1 >= max_attempts as fails,
          least(coalesce(delay_on_retry, 0), ${sql.placeholder('maxDelaySec')}::int) as delay_sec
        from checked)
      update inflight_tasks t set
        status = case when due.fails then 'failure' when due.delay_sec > 0 then 'delay' else 'pending' end,
        failure_reason = case when due.undecodable is not null then '${sql.raw(UNDECODABLE)}: ' || due.undecodable
          when due.fails then 'retries_exhausted' end,
        activation = case when due.fails then t.activation
          else jsonb_set(jsonb_set(
                 case when due.delay_sec > 0 then jsonb_set(t.activation, '{delay}', to_jsonb(due.delay_sec))
                      else t.activation - 'delay' end,
                 '{retry_state,attempts}', to_jsonb(due.attempts)),
               '{received_at}', to_jsonb(${sql.placeholder('nowIso')}::text)) end,
        added_at = case when due.fails then t.added_at else clock_timestamp() end,
        received_at = case when due.fails then t.received_at else ${p.now} end,
        delay_until = case when not due.fails and due.delay_sec > 0
          then ${p.now} + make_interval(secs => due.delay_sec) end,
        expires_at = case when due.fails then t.expires_at
          when due.expires_sec is not null then ${p.now} + make_interval(secs => due.expires_sec) end,
        processing_attempts = case when due.fails then t.processing_attempts else 0 end,
        processing_deadline = null
      from due where t.id = due.id
      returning t.status, t.application, t.namespace`),

    // Failure: removed, and copied into deadletter_tasks when on_attempts_exceeded = deadletter,
    // by ONE statement, so a task is never lost between the two tables.
    settleFailures: prepare('taskbroker_upkeep_failures', sql`
      with failed as (
        delete from inflight_tasks where id in (
          select id from inflight_tasks where status = 'failure'
          limit ${p.limit} for update skip locked)
        returning *),
      dead as (
        insert into deadletter_tasks (id, activation, application, namespace, taskname, reason, processing_attempts, received_at)
        select id, activation, application, namespace, taskname, coalesce(failure_reason, 'reported_failure'), processing_attempts, received_at
        from failed where on_attempts_exceeded = 'deadletter' or failure_reason like '${sql.raw(UNDECODABLE)}:%'
        on conflict (id) do update set
          activation = excluded.activation, reason = excluded.reason, processing_attempts = excluded.processing_attempts,
          received_at = excluded.received_at, deadlettered_at = clock_timestamp()
        returning id)
      select (select count(*) from failed)::int as failed, (select count(*) from dead)::int as deadlettered`),

    removeCompleted: prepare('taskbroker_upkeep_completed', sql`
      delete from inflight_tasks where id in (
        select id from inflight_tasks where status = 'complete'
        limit ${p.limit} for update skip locked)
      returning id`),

    removeKillswitched: prepare('taskbroker_upkeep_killswitch', sql`
      delete from inflight_tasks where id in (
        select id from inflight_tasks where taskname = any(${sql.placeholder('names')}::text[])
        limit ${p.limit} for update skip locked)
      returning id`)
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
    async requeueRetries (now: Date, maxDelaySec: number, limit: number) {
      const rows = await guard(() => statements.requeueRetries.run({ ...at(now, limit), nowIso: now.toISOString(), maxDelaySec }))
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
