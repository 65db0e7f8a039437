/**
 * The bulk status statement: a flush of worker reports in ONE statement, optionally with the claim
 * of the next tasks riding in it (`fetch_next`). Reports arrive as four parallel arrays (id,
 * status, max_attempts, delay_on_retry; six with backoff and lease in the fenced shape, see
 * SHAPES) unnested into rows, so the text is the same for every
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

/**
 * Two shapes of every variant: `fenced` when some report in the batch carries a lease or a
 * backoff, plain otherwise. The plain one is the statement as it was before leases (four arrays,
 * no fencing condition, no stale lookup), so workers that send neither pay (almost) nothing.
 */
interface Shape {
  reports: SQL
  /** `and`-condition on `t` and `v`: the report applies under its lease (or carries none). */
  fence: SQL
  patchFields: SQL
  hasPatch: SQL
}

/**
 * An array parameter behind a scalar subquery: the planner then estimates the reports' rows the
 * same in a custom plan as in the generic one (it sizes `unnest` of a constant array by its
 * length), so after five executions the prepared statement settles on the generic plan. Otherwise
 * every flush of fewer reports than the generic estimate was planned again, and planning the
 * status-with-claim statement costs more than running it (~1.5 ms a flush).
 */
const param = (name: string, type: string) => sql`(select ${sql.placeholder(name)}::${sql.raw(type)})`

const ARRAYS = sql`${param('ids', 'text[]')}, ${param('statuses', 'text[]')},
    ${param('maxAttempts', 'int[]')}, ${param('delays', 'int[]')}`

const SHAPES: Record<'plain' | 'fenced', Shape> = {
  /** The reports as rows `v`: the task's id and new status and the retry fields to patch in. */
  plain: {
    reports: sql`v(${c.id}, ${c.status}, max_attempts, delay_on_retry) as (select * from unnest(${ARRAYS}))`,
    fence: sql``,
    patchFields: sql`'max_attempts', v.max_attempts, 'delay_on_retry', v.delay_on_retry`,
    hasPatch: sql`(v.max_attempts is null and v.delay_on_retry is null)`
  },
  /** Also the backoff to patch in and the lease the report was made under (null: unfenced). */
  fenced: {
    reports: sql`v(${c.id}, ${c.status}, max_attempts, delay_on_retry, backoff, ${c.lease}) as (select * from unnest(${ARRAYS},
      ${param('backoffs', 'jsonb[]')}, ${param('leases', 'uuid[]')}))`,
    fence: sql` and (v.${c.lease} is null or ${t.lease} = v.${c.lease})`,
    patchFields: sql`'max_attempts', v.max_attempts, 'delay_on_retry', v.delay_on_retry, 'backoff', v.backoff`,
    hasPatch: sql`(v.max_attempts is null and v.delay_on_retry is null and v.backoff is null)`
  }
}

// Retry fields only ever add to retry_state; a report without them leaves the activation as it
// is. A stored activation without an object retry_state (written by hand or by another version)
// is left as it is too: patching it would throw and fail every report in the flush; upkeep's retry
// step dead-letters it with the reason.
const patchActivation = (shape: Shape) => sql`case when ${shape.hasPatch}
      or jsonb_typeof(${t.activation} -> 'retry_state') is distinct from 'object' then ${t.activation}
    else jsonb_set(${t.activation}, '{retry_state}', (${t.activation} -> 'retry_state')
      || jsonb_strip_nulls(jsonb_build_object(${shape.patchFields}))) end`

/**
 * A report on a task whose cancel was requested ends it whatever it says: the row is marked
 * complete (upkeep's completed step removes it). Marked, not deleted here: deleting it in the
 * `done` CTE would make that CTE read every reported row, not only the complete ones (measured:
 * a flush of 256 failure reports took a third longer).
 */
function writeReports (shape: Shape, where: SQL): SQL {
  return sql`update ${inflightTasks} t
    set ${c.status} = case when ${t.cancelRequested} then 'complete' else v.${c.status} end,
      ${c.processingDeadline} = null, ${c.activation} = ${patchActivation(shape)},
      ${c.failureReason} = case when v.${c.status} = 'failure' then 'reported_failure' end, ${c.lease} = null
    from v where ${t.id} = v.${c.id}${shape.fence}${where} returning ${t.id}, ${t.cancelRequested}`
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
export function statusQuery (deleteCompleted: boolean, claim: FilterVariant | undefined, graceSec: number, fenced = false, controls = true): SQL {
  const shape = SHAPES[fenced ? 'fenced' : 'plain']
  const reports = deleteCompleted
    ? sql`done as (delete from ${inflightTasks} t using v where ${t.id} = v.${c.id} and v.${c.status} = 'complete'${shape.fence}
        returning ${t.id}, ${t.cancelRequested}),
      changed as (${writeReports(shape, sql` and v.${c.status} <> 'complete'`)})`
    : sql`changed as (${writeReports(shape, sql``)})`
  // Only reports that carry a lease and were not applied are looked up (normally none).
  const applied = deleteCompleted
    ? sql`not exists (select 1 from done x where x.${c.id} = v.${c.id}) and not exists (select 1 from changed x where x.${c.id} = v.${c.id})`
    : sql`not exists (select 1 from changed x where x.${c.id} = v.${c.id})`
  // Materialized: the planner would otherwise look every report up first and filter after.
  const stale = fenced
    ? sql`, unapplied as materialized (select v.${c.id}, v.${c.lease} from v where v.${c.lease} is not null and ${applied}),
      stale as (select ${t.id} from unapplied u join ${inflightTasks} t on ${t.id} = u.${c.id} where ${t.lease} is distinct from u.${c.lease})`
    : sql``
  const outcome = (from: string) => sql`select ${c.id}, case when ${c.cancelRequested} then 'cancelled' else 'applied' end as outcome from ${sql.raw(from)}`
  const staleIds = fenced ? sql` union all select ${c.id}, 'stale' from stale` : sql``
  const reportIds = deleteCompleted
    ? sql`${outcome('done')} union all ${outcome('changed')}${staleIds}`
    : sql`${outcome('changed')}${staleIds}`
  const with_ = sql`with ${shape.reports}, ${reports}${stale}`
  if (claim === undefined) return sql`${with_} ${reportIds}`
  // `except: v`: a task reported here is never also claimed here (one row must not be modified
  // twice by one statement).
  const { next, update } = claimSteps({
    ...pullClaim(claim),
    as: { status: 'processing', graceSec },
    controls,
    except: sql`v`,
    returning: taskColumns('t')
  })
  return sql`${with_}, ${next},
    claimed as (${update})
    select r.${c.id}, ${NULL_TASK_COLUMNS}, r.outcome from (${reportIds}) r
    union all select claimed.*, null::text from claimed`
}

const cache = new Map<string, CompiledStatement>()

/** The statement for one variant, compiled on first use. */
export function statusStatement (deleteCompleted: boolean, claim: FilterVariant | undefined, graceSec = 0, fenced = false, controls = true): CompiledStatement {
  const key = `${deleteCompleted}:${claim ?? ''}:${claim === undefined ? 0 : graceSec}:${fenced}:${claim === undefined || controls}`
  let statement = cache.get(key)
  if (statement === undefined) {
    statement = compile(statusQuery(deleteCompleted, claim, graceSec, fenced, controls))
    cache.set(key, statement)
  }
  return statement
}

/**
 * The reports' values. They go in id order: every bulk statement then locks its rows in the same
 * order, so two flushes (or a flush and another writer of several rows) wait for each other
 * instead of deadlocking. Results are matched by id, so the order callers gave does not matter.
 */
/** Whether some report needs the fenced shape (it carries a lease or a backoff). */
export function needsFence (updates: readonly StatusUpdate[]): boolean {
  return updates.some(u => u.lease !== undefined || u.backoff !== undefined)
}

export function statusValues (unordered: readonly StatusUpdate[], fenced = false): Record<string, string> {
  const updates = [...unordered].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const n = updates.length
  const ids = new Array<string>(n)
  const statuses = new Array<string>(n)
  const maxAttempts = new Array<string | null>(n)
  const delays = new Array<string | null>(n)
  const backoffs = fenced ? new Array<string | null>(n) : undefined
  const leases = fenced ? new Array<string | null>(n) : undefined
  for (let i = 0; i < n; i++) {
    const u = updates[i] as StatusUpdate
    ids[i] = u.id
    statuses[i] = u.status
    maxAttempts[i] = intText(u.maxAttempts)
    delays[i] = intText(u.delayOnRetry)
    if (backoffs !== undefined && leases !== undefined) {
      backoffs[i] = u.backoff === undefined ? null : JSON.stringify(u.backoff)
      leases[i] = u.lease ?? null
    }
  }
  const values: Record<string, string> = { ids: pgArray(ids), statuses: pgArray(statuses), maxAttempts: pgArray(maxAttempts), delays: pgArray(delays) }
  if (backoffs !== undefined && leases !== undefined) {
    values.backoffs = pgArray(backoffs)
    values.leases = pgArray(leases)
  }
  return values
}
