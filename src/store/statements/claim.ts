/**
 * The one claim: which pending tasks a claim takes, in which order, and what it writes to them.
 * The pull claim (three prepared filter variants), the claim that rides in a status flush
 * (`fetch_next`) and the push fetch are all built here; a claim rule (a priority, a queue pause)
 * is added here once.
 *
 * Queue controls (queue_settings) are enforced here too, for every claim shape alike. A task's
 * queue is steered by its namespace's row when there is one, otherwise by its application's row
 * (namespace ''), as a whole. Tasks of a queue without a restricting row take the free path: one
 * walk of the claim index, as before (while no row restricts anywhere, claims take the plain
 * statement instead, which is that walk alone: ClaimSpec.controls). Tasks of a paused queue are
 * never taken. A queue with a cap (max_processing, rate_limit) has its row locked (FOR UPDATE, in
 * key order: no deadlocks between claims) and is given an allowance; its tasks come from a walk of
 * their own, and the tokens taken are written back in the same statement. The lock serialises the
 * claims of capped queues across brokers; a locked row returns its newest version, so the token
 * bucket is exact. A count of processing tasks, though, is read from the statement's snapshot,
 * which misses the tasks of claims that committed after it (this claim waited for their lock): each
 * claim adds what it took to the row's claimed_total, and the difference between the locked row's
 * total and the snapshot's is counted as processing too. The cap is never exceeded, and a claim
 * that waited still gets the room left (taking none of the queue whenever the row had moved left
 * workers with empty answers while tasks were pending). Tasks reported in the same statement (a
 * status flush's riders) no longer count: each report ends its task's processing.
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Row } from '../../db/database.js'
import { inflightTasks, queueSettings } from '../../db/schema.js'
import type { ClaimFilter } from '../../domain/types.js'
import { toDate } from '../rows.js'
import { columnsOf } from './schema-sql.js'

const c = columnsOf(inflightTasks)
/** The claimed row in the UPDATE (`update inflight_tasks t`). */
const t = columnsOf(inflightTasks, 't')
/** A candidate row in the CTE that picks them (`from inflight_tasks n`). */
const n = columnsOf(inflightTasks, 'n')

/** Claim order: highest priority, then oldest. Spelled exactly as the partial indexes on pending
 * rows (schema.ts), `nulls last` included, so each claim shape walks its index instead of sorting. */
const CLAIM_ORDER = sql`${n.priority} desc nulls last, ${n.addedAt}`

/** Rows as a claim returns them (RETURNING has no order), in claim order. */
export function inClaimOrder (rows: Row[]): Row[] {
  const priority = (row: Row) => Number(row[inflightTasks.priority.name] ?? 0)
  const at = inflightTasks.addedAt.name
  return rows.sort((a, b) => priority(b) - priority(a) || compareTimestamps(a[at], b[at]))
}

/**
 * PostgreSQL's timestamps arrive as text, microseconds and all, in one format within a result:
 * compared as text, where Dates (milliseconds) would tie two tasks added within the same
 * millisecond and leave them in RETURNING's order. PGlite's arrive as Dates.
 */
function compareTimestamps (a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0
  return (toDate(a) as Date).getTime() - (toDate(b) as Date).getTime()
}

/** A queue_settings row (`from queue_settings s`), the row locked for a claim (`h`), another row (`o`). */
const q = columnsOf(queueSettings)
const s = columnsOf(queueSettings, 's')
const h = columnsOf(queueSettings, 'h')
const o = columnsOf(queueSettings, 'o')
/** A processing (or push-claimed) task counted against max_processing. */
const p = columnsOf(inflightTasks, 'p')

/** A task a claim may take: pending and not expired. */
const CLAIMABLE = sql`${n.status} = 'pending' and (${n.expiresAt} is null or ${n.expiresAt} > now())`

/** When a task handed to a worker must be reported by: database now + its duration (the claimed
 * row's column, unless another expression is given) + grace. */
export function processingDeadline (graceSec: number, duration: SQL = sql`${t.processingDeadlineDuration}`): SQL {
  if (!Number.isFinite(graceSec)) throw new Error(`the processing deadline grace is not a number: ${graceSec}`)
  return sql`now() + make_interval(secs => ${duration} + ${sql.raw(String(graceSec))})`
}

export type FilterVariant = 'any' | 'application' | 'namespace'

/** Which claim filter applies (a namespace without an application is ignored). */
export function filterVariant (filter: ClaimFilter): FilterVariant {
  return filter.application === undefined ? 'any' : filter.namespace === undefined ? 'application' : 'namespace'
}

/** A claim's inputs: a row `args` with a column `lim` (the limit), read by its conditions. */
export interface ClaimFilterSpec {
  /** The columns of `args`, each a placeholder (used once in the whole statement). */
  args: SQL
  /** Conditions on a candidate task `n` on top of "claimable", each starting with `and`. */
  filter: SQL
  /** Conditions on a queue_settings row `s`: the rows that may steer the tasks this claim takes. */
  queues: SQL
  /** True when every task the filter matches is in a restricted queue (the `rules` CTE holds the
   * rows `queues` selects): the free walk is skipped at once instead of reading past every task
   * of the capped queue. Absent: the free walk always runs. */
  allRestricted?: SQL
  /** The claim order, led by the filter's equality columns: the same order (they are fixed), but
   * spelled as the filter's own index is, so a prepared statement's generic plan (which cannot
   * know how selective the application is) walks that index instead of the unfiltered one past
   * another application's backlog. */
  order?: SQL
}

const arg = (name: string) => sql`(select ${sql.identifier(name)} from args)`

/** A pull claim: its limit, application and namespace in the placeholders of those names. */
/**
 * The application filter as `= any(array[…])`, not `=`: an equality with a parameter makes the
 * application a constant of the claim order, so the generic plan of the prepared claim (which
 * cannot know how selective the application is: half the rows, with two applications) was free to
 * walk the unfiltered index and filter, past every pending task of another application (a claim
 * behind 100,000 of them: 66 ms). With the array, only the application's own index gives the
 * order (`order`), and the planner takes it.
 */
const BY_APPLICATION = sql`${n.application} = any(array[${arg('want_app')}])`

export function pullClaim (variant: FilterVariant): ClaimFilterSpec {
  const lim = sql`${sql.placeholder('limit')}::int as lim`
  if (variant === 'any') return { args: lim, filter: sql``, queues: sql`true` }
  const application = sql`${sql.placeholder('application')}::text as want_app`
  if (variant === 'application') {
    return {
      args: sql`${lim}, ${application}`,
      filter: sql`and ${BY_APPLICATION}`,
      queues: sql`${s.application} = ${arg('want_app')}`,
      // The application's row restricts and no namespace of it has a row that does not.
      allRestricted: sql`exists (select 1 from rules where ${q.namespace} = '' and restricts) and not exists (select 1 from rules where not restricts)`,
      order: sql`${n.application}, ${CLAIM_ORDER}`
    }
  }
  return {
    args: sql`${lim}, ${application}, ${sql.placeholder('namespace')}::text as want_ns`,
    filter: sql`and ${BY_APPLICATION} and ${n.namespace} = ${arg('want_ns')}`,
    order: sql`${n.application}, ${n.namespace}, ${CLAIM_ORDER}`,
    // `rules` holds exactly the row that steers the one queue.
    allRestricted: sql`exists (select 1 from rules where restricts)`,
    // Exactly the row that steers this queue: its own, else its application's.
    queues: sql`${s.application} = ${arg('want_app')} and ${s.namespace} = coalesce((select ${o.namespace} from ${queueSettings} o
      where ${o.application} = ${arg('want_app')} and ${o.namespace} = ${arg('want_ns')}), '')`
  }
}

/** A push fetch: a range of buckets and the applications with a worker. */
export const PUSH_CLAIM: ClaimFilterSpec = {
  args: sql`${sql.placeholder('limit')}::int as lim, ${sql.placeholder('low')}::int as low, ${sql.placeholder('high')}::int as high,
    ${sql.placeholder('applications')}::text[] as applications`,
  filter: sql`and ${n.bucket} between ${arg('low')} and ${arg('high')} and ${n.application} = any(${arg('applications')}::text[])`,
  queues: sql`${s.application} = any(${arg('applications')}::text[])`
}

/** What a claimed task becomes: processing for a pull worker, or claimed under a lease for a push. */
export type ClaimedAs =
  | { status: 'processing', graceSec: number }
  | { status: 'claimed', leaseMs: SQL }

export interface ClaimSpec extends ClaimFilterSpec {
  as: ClaimedAs
  /**
   * `false`: the plain claim, for while no queue_settings row restricts claims (QueueRestrictions):
   * one walk of the claim index, none of the queue-control steps (which cost about 0.2 ms a
   * statement even over an empty table). It looks at the table itself and takes nothing when some
   * row restricts, so a broker that has not seen another broker's pause yet delays claims until it
   * does; it never takes a paused or capped queue's task. Default true.
   */
  controls?: boolean
  /** A CTE with an `id` column whose tasks must not be claimed (reported in the same statement). */
  except?: SQL
  /** The RETURNING list, on the claimed row `t`. */
  returning: SQL
}

/** A row restricts claims when it pauses or caps its queue. */
const RESTRICTS = sql`(${s.paused} or ${s.maxProcessing} is not null or ${s.ratePerSec} is not null)`

/** Some queue_settings row restricts claims: the plain claim's guard, and what QueueRestrictions looks at. */
export const SOME_QUEUE_RESTRICTED = sql`exists (select 1 from ${queueSettings} s where ${RESTRICTS})`

/** Task `x` of a queue steered by the application-wide row: its namespace has no row of its own. */
function coveredByApplicationRow (x: ReturnType<typeof columnsOf<typeof inflightTasks>>): SQL {
  return sql`not exists (select 1 from ${queueSettings} o where ${o.application} = ${x.application} and ${o.namespace} = ${x.namespace})`
}

/** `next` of the plain claim (ClaimSpec.controls). */
function plainNext (spec: ClaimSpec, candidates: SQL): SQL {
  return sql`args as (select ${spec.args}),
    next as (
      select ${n.id} ${candidates}
        and not ${SOME_QUEUE_RESTRICTED}
      order by ${spec.order ?? CLAIM_ORDER}
      limit ${arg('lim')}
      for update of n skip locked
    )`
}

/**
 * A claim in two steps: `next` (CTEs ending in `next`, up to `lim` claimable rows in claim order,
 * skipping rows other claims hold, and the charge of the queues' token buckets) and `update` (the
 * UPDATE of those rows, `from next`). See the file comment for the queue controls.
 */
export function claimSteps (spec: ClaimSpec): { next: SQL, update: SQL } {
  const exceptOf = (alias: SQL) => spec.except === undefined ? sql`` : sql`and not exists (select 1 from ${spec.except} x where x.${c.id} = ${alias})`
  const except = exceptOf(n.id)
  const candidates = sql`from ${inflightTasks} n where ${CLAIMABLE} ${spec.filter} ${except}`
  const next = spec.controls === false
    ? plainNext(spec, candidates)
    : sql`args as (select ${spec.args}),
    rules as (select ${s.application}, ${s.namespace}, ${RESTRICTS} as restricts from ${queueSettings} s where ${spec.queues}),
    held as (
      select ${s.application}, ${s.namespace}, ${s.maxProcessing}, ${s.ratePerSec}, ${s.rateBurst}, ${s.rateTokens}, ${s.rateUpdatedAt}, ${s.claimedTotal},
        (select s2.${q.claimedTotal} from ${queueSettings} s2 where s2.${q.application} = ${s.application} and s2.${q.namespace} = ${s.namespace}) as seen_total
      from ${queueSettings} s
      where ${spec.queues} and not ${s.paused} and (${s.maxProcessing} is not null or ${s.ratePerSec} is not null)
      order by ${s.application}, ${s.namespace}
      for update of s
    ),
    allow as (
      select ${h.application}, ${h.namespace}, ${h.ratePerSec}, b.tokens, least(
          case when ${h.maxProcessing} is null then null
            else greatest(0, ${h.maxProcessing} - (select count(*) from ${inflightTasks} p
              where ${p.status} in ('processing', 'claimed') and ${p.application} = ${h.application} ${exceptOf(p.id)}
                and (${p.namespace} = ${h.namespace} or (${h.namespace} = '' and ${coveredByApplicationRow(p)})))
              - (${h.claimedTotal} - coalesce(h.seen_total, 0)))::int end,
          floor(b.tokens + 1e-9)::int,
          ${arg('lim')}) as allowance
      from held h, lateral (select case when ${h.ratePerSec} is null then null else least(${h.rateBurst}::float8,
        coalesce(${h.rateTokens}, ${h.rateBurst}) + greatest(0, extract(epoch from now() - coalesce(${h.rateUpdatedAt}, now()))) * ${h.ratePerSec}) end as tokens) b
    ),
    free as (
      select ${n.id}, ${n.priority}, ${n.addedAt} ${candidates}
        ${spec.allRestricted === undefined ? sql`` : sql`and not (${spec.allRestricted})`}
        and (not exists (select 1 from rules where restricts) or not coalesce(
          (select g.restricts from rules g where g.${q.application} = ${n.application} and g.${q.namespace} = ${n.namespace}),
          (select g.restricts from rules g where g.${q.application} = ${n.application} and g.${q.namespace} = ''), false))
      order by ${spec.order ?? CLAIM_ORDER}
      limit ${arg('lim')}
      for update of n skip locked
    ),
    metered as (
      select m.*, a.${q.application} as qa, a.${q.namespace} as qn from allow a cross join lateral (
        select ${n.id}, ${n.priority}, ${n.addedAt} ${candidates} and ${n.application} = a.${q.application} and ${n.namespace} = a.${q.namespace}
        order by ${CLAIM_ORDER} limit a.allowance for update of n skip locked) m
      where a.${q.namespace} <> '' and a.allowance > 0
      union all
      select m.*, a.${q.application}, a.${q.namespace} from allow a cross join lateral (
        select ${n.id}, ${n.priority}, ${n.addedAt} ${candidates} and ${n.application} = a.${q.application} and ${coveredByApplicationRow(n)}
        order by ${CLAIM_ORDER} limit a.allowance for update of n skip locked) m
      where a.${q.namespace} = '' and a.allowance > 0
    ),
    next as (
      select u.${c.id}, u.qa, u.qn from (
        select ${c.id}, ${c.priority}, ${c.addedAt}, null::text as qa, null::text as qn from free
        union all select ${c.id}, ${c.priority}, ${c.addedAt}, qa, qn from metered) u
      order by u.${c.priority} desc nulls last, u.${c.addedAt}
      limit ${arg('lim')}
    ),
    charge as (
      update ${queueSettings} s
      set ${q.rateTokens} = case when a.${q.ratePerSec} is null then ${s.rateTokens} else a.tokens - k.taken end,
        ${q.rateUpdatedAt} = greatest(${s.rateUpdatedAt}, now()),
        ${q.claimedTotal} = ${s.claimedTotal} + k.taken
      from allow a, (select qa, qn, count(*) as taken from next where qa is not null group by qa, qn) k
      where ${s.application} = a.${q.application} and ${s.namespace} = a.${q.namespace} and k.qa = a.${q.application} and k.qn = a.${q.namespace}
      returning ${s.application}
    )`
  const as = spec.as.status === 'processing'
    ? sql`${c.status} = 'processing', ${c.processingDeadline} = ${processingDeadline(spec.as.graceSec)}, ${c.claimExpiresAt} = null`
    : sql`${c.status} = 'claimed', ${c.claimExpiresAt} = now() + ${spec.as.leaseMs} * interval '1 millisecond', ${c.processingDeadline} = null`
  // Every claim hands out a new lease: reports and heartbeats carrying an older one are stale.
  const set = sql`${as}, ${c.lease} = gen_random_uuid(), ${c.progress} = null`
  // The claimed rows by primary key (`= any(array(...))`): a join with `next` would be planned,
  // in the generic plan of an unknown limit, as a hash of every row of the table (50 ms at 100,000).
  const update = sql`update ${inflightTasks} t
    set ${set}
    where ${t.id} = any(array(select ${c.id} from next))
    returning ${spec.returning}`
  return { next, update }
}
