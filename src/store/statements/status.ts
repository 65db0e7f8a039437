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
import { claimSteps, pullClaim, type FilterVariant } from './claim.js'
import { compile, type CompiledStatement } from './compiled.js'
import { columnsOf } from './schema-sql.js'

const c = columnsOf(inflightTasks)
const t = columnsOf(inflightTasks, 't')

/** The reports as rows `v`: the task's id and new status, and the retry fields to patch in. */
const REPORTS = sql`v(${c.id}, ${c.status}, max_attempts, delay_on_retry) as (select * from unnest(
    ${sql.placeholder('ids')}::text[], ${sql.placeholder('statuses')}::text[],
    ${sql.placeholder('maxAttempts')}::int[], ${sql.placeholder('delays')}::int[]))`

// Retry fields only ever add to retry_state; a report without them leaves the activation as it
// is. A stored activation without an object retry_state (written by hand or by another version)
// is left as it is too: patching it would throw and fail every report in the flush; upkeep's retry
// step dead-letters it with the reason.
const PATCH_ACTIVATION = sql`case when (v.max_attempts is null and v.delay_on_retry is null)
      or jsonb_typeof(${t.activation} -> 'retry_state') is distinct from 'object' then ${t.activation}
    else jsonb_set(${t.activation}, '{retry_state}', (${t.activation} -> 'retry_state')
      || jsonb_strip_nulls(jsonb_build_object('max_attempts', v.max_attempts, 'delay_on_retry', v.delay_on_retry))) end`

function writeReports (where: SQL): SQL {
  return sql`update ${inflightTasks} t
    set ${c.status} = v.${c.status}, ${c.processingDeadline} = null, ${c.activation} = ${PATCH_ACTIVATION},
      ${c.failureReason} = case when v.${c.status} = 'failure' then 'reported_failure' end
    from v where ${t.id} = v.${c.id}${where} returning ${t.id}`
}

/**
 * `complete` deletes the row in the statement itself (deleteCompleted) or marks it like any other
 * status; `failure`/`retry` set the status and clear the deadline. With `claim` set, the statement
 * also claims up to `limit` pending tasks (filter in `application`, `namespace`) and returns them
 * after the report rows, which come back with only their id (every other column null).
 */
export function statusQuery (deleteCompleted: boolean, claim: FilterVariant | undefined, graceSec: number): SQL {
  const reports = deleteCompleted
    ? sql`done as (delete from ${inflightTasks} t using v where ${t.id} = v.${c.id} and v.${c.status} = 'complete' returning ${t.id}),
      changed as (${writeReports(sql` and v.${c.status} <> 'complete'`)})`
    : sql`changed as (${writeReports(sql``)})`
  const reportIds = deleteCompleted
    ? sql`select ${c.id} from done union all select ${c.id} from changed`
    : sql`select ${c.id} from changed`
  if (claim === undefined) return sql`with ${REPORTS}, ${reports} ${reportIds}`
  // `except: v`: a task reported here is never also claimed here (one row must not be modified
  // twice by one statement).
  const { next, update } = claimSteps({
    ...pullClaim(claim),
    as: { status: 'processing', graceSec },
    except: sql`v`,
    returning: taskColumns('t')
  })
  return sql`with ${REPORTS}, ${reports}, ${next},
    claimed as (${update})
    select ${c.id}, ${NULL_TASK_COLUMNS} from (${reportIds}) r
    union all select * from claimed`
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
export function statusValues (unordered: readonly StatusUpdate[]): { ids: string, statuses: string, maxAttempts: string, delays: string } {
  const updates = [...unordered].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const n = updates.length
  const ids = new Array<string>(n)
  const statuses = new Array<string>(n)
  const maxAttempts = new Array<string | null>(n)
  const delays = new Array<string | null>(n)
  for (let i = 0; i < n; i++) {
    const u = updates[i] as StatusUpdate
    ids[i] = u.id
    statuses[i] = u.status
    maxAttempts[i] = intText(u.maxAttempts)
    delays[i] = intText(u.delayOnRetry)
  }
  return { ids: pgArray(ids), statuses: pgArray(statuses), maxAttempts: pgArray(maxAttempts), delays: pgArray(delays) }
}
