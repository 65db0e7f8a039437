/**
 * The bulk status statement: a flush of worker reports in ONE statement, optionally with the claim
 * of the next tasks riding in it (`fetch_next`). Reports arrive as four parallel arrays (id,
 * status, max_attempts, delay_on_retry) unnested into rows, so the text is the same for every
 * batch size: compiled once per variant, one prepared statement, a stable plan (a VALUES list's
 * estimate grows with its rows and can flip the join to a sequential scan on large batches, where
 * unnest keeps the index nested loop).
 */
import { sql, type SQL } from 'drizzle-orm'
import { inflightTasks } from '../../db/schema.js'
import type { StatusUpdate } from '../../domain/types.js'
import { intText, pgArray } from '../arrays.js'
import { NULL_TASK_COLUMNS, taskColumns } from '../rows.js'
import { claimSteps, pullFilter, type FilterVariant } from './claim.js'
import { compile, type CompiledStatement } from './compiled.js'
import { columnsOf } from './schema-sql.js'

const c = columnsOf(inflightTasks)
const t = columnsOf(inflightTasks, 't')

/** The reports as rows `v`: the task's id and new status, the retry fields to patch in, and the lease a report was made under (null: unfenced). */
const REPORTS = sql`v(${c.id}, ${c.status}, max_attempts, delay_on_retry, backoff, ${c.lease}) as (select * from unnest(
    ${sql.placeholder('ids')}::text[], ${sql.placeholder('statuses')}::text[],
    ${sql.placeholder('maxAttempts')}::int[], ${sql.placeholder('delays')}::int[],
    ${sql.placeholder('backoffs')}::jsonb[], ${sql.placeholder('leases')}::uuid[]))`

/** Fencing: a report with a lease applies only under that lease; without one (an unfenced worker) always. */
const FENCED = sql`(v.${c.lease} is null or ${t.lease} = v.${c.lease})`

// Retry fields only ever add to retry_state; a report without them leaves the activation as it
// is. A stored activation without an object retry_state (written by hand or by another version)
// is left as it is too: patching it would throw and fail every report in the flush; upkeep's retry
// step dead-letters it with the reason.
const PATCH_ACTIVATION = sql`case when (v.max_attempts is null and v.delay_on_retry is null and v.backoff is null)
      or jsonb_typeof(${t.activation} -> 'retry_state') is distinct from 'object' then ${t.activation}
    else jsonb_set(${t.activation}, '{retry_state}', (${t.activation} -> 'retry_state')
      || jsonb_strip_nulls(jsonb_build_object('max_attempts', v.max_attempts, 'delay_on_retry', v.delay_on_retry, 'backoff', v.backoff))) end`

/**
 * `cancelled`: a cancel was requested while the task was held, so this report ends it whatever it
 * says (mark mode marks it complete, for upkeep to remove).
 */
function writeReports (where: SQL, deleteCompleted: boolean): SQL {
  const status = deleteCompleted ? sql`v.${c.status}` : sql`case when ${t.cancelRequested} then 'complete' else v.${c.status} end`
  return sql`update ${inflightTasks} t
    set ${c.status} = ${status}, ${c.processingDeadline} = null, ${c.activation} = ${PATCH_ACTIVATION},
      ${c.failureReason} = case when v.${c.status} = 'failure' then 'reported_failure' end, ${c.lease} = null
    from v where ${t.id} = v.${c.id} and ${FENCED}${where} returning ${t.id}, ${t.cancelRequested}`
}

/** What happened to each report: applied, cancelled (applied, and the task ended) or stale. */
export type ReportRowOutcome = 'applied' | 'cancelled' | 'stale'

/**
 * `complete` deletes the row in the statement itself (deleteCompleted) or marks it like any other
 * status; `failure`/`retry` set the status and clear the deadline. A report whose lease is not the
 * task's is not applied and comes back as `stale` (only reports that carry a lease are looked at:
 * without any the CTE reads no row). Each report row carries its id and `outcome`. With `claim`
 * set, the statement also claims up to `limit` pending tasks (filter in `application`,
 * `namespace`) and returns them after the report rows, whose other columns are null (claimed
 * rows have a null outcome).
 */
export function statusQuery (deleteCompleted: boolean, claim: FilterVariant | undefined, graceSec: number): SQL {
  const reports = deleteCompleted
    ? sql`done as (delete from ${inflightTasks} t using v where ${t.id} = v.${c.id} and ${FENCED}
        and (v.${c.status} = 'complete' or ${t.cancelRequested}) returning ${t.id}, ${t.cancelRequested}),
      changed as (${writeReports(sql` and v.${c.status} <> 'complete' and not ${t.cancelRequested}`, true)})`
    : sql`changed as (${writeReports(sql``, false)})`
  const stale = sql`stale as (select ${t.id} from ${inflightTasks} t join v on ${t.id} = v.${c.id}
      where v.${c.lease} is not null and ${t.lease} is distinct from v.${c.lease})`
  const outcome = (from: string) => sql`select ${c.id}, case when ${c.cancelRequested} then 'cancelled' else 'applied' end as outcome from ${sql.raw(from)}`
  const reportIds = deleteCompleted
    ? sql`${outcome('done')} union all ${outcome('changed')} union all select ${c.id}, 'stale' from stale`
    : sql`${outcome('changed')} union all select ${c.id}, 'stale' from stale`
  if (claim === undefined) return sql`with ${REPORTS}, ${reports}, ${stale} ${reportIds}`
  // `except: v`: a task reported here is never also claimed here (one row must not be modified
  // twice by one statement).
  const { next, update } = claimSteps({
    filter: pullFilter(claim),
    limit: sql`${sql.placeholder('limit')}`,
    as: { status: 'processing', graceSec },
    except: sql`v`,
    returning: taskColumns('t')
  })
  return sql`with ${REPORTS}, ${reports}, ${stale}, ${next},
    claimed as (${update})
    select r.${c.id}, ${NULL_TASK_COLUMNS}, r.outcome from (${reportIds}) r
    union all select claimed.*, null::text from claimed`
}

const cache = new Map<string, CompiledStatement>()

/** The statement for one variant, compiled on first use. */
export function statusStatement (deleteCompleted: boolean, claim: FilterVariant | undefined, graceSec = 0): CompiledStatement {
  const key = `${deleteCompleted}:${claim ?? ''}:${claim === undefined ? 0 : graceSec}`
  let statement = cache.get(key)
  if (statement === undefined) {
    statement = compile(statusQuery(deleteCompleted, claim, graceSec))
    cache.set(key, statement)
  }
  return statement
}

/**
 * The reports' values. They go in id order: every bulk statement then locks its rows in the same
 * order, so two flushes (or a flush and another writer of several rows) wait for each other
 * instead of deadlocking. Results are matched by id, so the order callers gave does not matter.
 */
export function statusValues (unordered: readonly StatusUpdate[]): { ids: string, statuses: string, maxAttempts: string, delays: string, backoffs: string, leases: string } {
  const updates = [...unordered].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const n = updates.length
  const ids = new Array<string>(n)
  const statuses = new Array<string>(n)
  const maxAttempts = new Array<string | null>(n)
  const delays = new Array<string | null>(n)
  const backoffs = new Array<string | null>(n)
  const leases = new Array<string | null>(n)
  for (let i = 0; i < n; i++) {
    const u = updates[i] as StatusUpdate
    ids[i] = u.id
    statuses[i] = u.status
    maxAttempts[i] = intText(u.maxAttempts)
    delays[i] = intText(u.delayOnRetry)
    backoffs[i] = u.backoff === undefined ? null : JSON.stringify(u.backoff)
    leases[i] = u.lease ?? null
  }
  return {
    ids: pgArray(ids),
    statuses: pgArray(statuses),
    maxAttempts: pgArray(maxAttempts),
    delays: pgArray(delays),
    backoffs: pgArray(backoffs),
    leases: pgArray(leases)
  }
}
