/**
 * The one claim: which pending tasks a claim takes, in which order, and what it writes to them.
 * The pull claim (three prepared filter variants), the claim that rides in a status flush
 * (`fetch_next`) and the push fetch are all built here; a claim rule (a priority, a queue pause)
 * is added here once.
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Row } from '../../db/database.js'
import { inflightTasks } from '../../db/schema.js'
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
  const at = (row: Row) => (toDate(row[inflightTasks.addedAt.name]) as Date).getTime()
  return rows.sort((a, b) => priority(b) - priority(a) || at(a) - at(b))
}

/** A task a claim may take: pending and not expired. */
const CLAIMABLE = sql`${n.status} = 'pending' and (${n.expiresAt} is null or ${n.expiresAt} > now())`

/** When a task handed to a worker must be reported by: database now + its duration + grace. */
export function processingDeadline (graceSec: number): SQL {
  if (!Number.isFinite(graceSec)) throw new Error(`the processing deadline grace is not a number: ${graceSec}`)
  return sql`now() + make_interval(secs => ${t.processingDeadlineDuration} + ${sql.raw(String(graceSec))})`
}

export type FilterVariant = 'any' | 'application' | 'namespace'

/** Which claim filter applies (a namespace without an application is ignored). */
export function filterVariant (filter: ClaimFilter): FilterVariant {
  return filter.application === undefined ? 'any' : filter.namespace === undefined ? 'application' : 'namespace'
}

/** A pull claim's filter, its values in the placeholders `application` and `namespace`. */
export function pullFilter (variant: FilterVariant): SQL {
  const application = sql`and ${n.application} = ${sql.placeholder('application')}`
  if (variant === 'any') return sql``
  if (variant === 'application') return application
  return sql`${application} and ${n.namespace} = ${sql.placeholder('namespace')}`
}

/** A push fetch's filter: a range of buckets and the applications with a worker. */
export const PUSH_FILTER = sql`and ${n.bucket} between ${sql.placeholder('low')}::int and ${sql.placeholder('high')}::int
  and ${n.application} = any(${sql.placeholder('applications')}::text[])`

/** What a claimed task becomes: processing for a pull worker, or claimed under a lease for a push. */
export type ClaimedAs =
  | { status: 'processing', graceSec: number }
  | { status: 'claimed', leaseMs: SQL }

export interface ClaimSpec {
  /** Conditions on top of "claimable", each starting with `and` (pullFilter, PUSH_FILTER). */
  filter: SQL
  limit: SQL
  as: ClaimedAs
  /** A CTE with an `id` column whose tasks must not be claimed (reported in the same statement). */
  except?: SQL
  /** The RETURNING list, on the claimed row `t`. */
  returning: SQL
}

/**
 * A claim in two steps: `next` (a CTE choosing up to `limit` claimable rows in claim order,
 * skipping rows other claims hold) and `update` (the UPDATE of those rows, `from next`).
 */
export function claimSteps (spec: ClaimSpec): { next: SQL, update: SQL } {
  const except = spec.except === undefined ? sql`` : sql`and not exists (select 1 from ${spec.except} x where x.${c.id} = ${n.id})`
  const next = sql`next as (
      select ${n.id} from ${inflightTasks} n
      where ${CLAIMABLE} ${spec.filter} ${except}
      order by ${CLAIM_ORDER}
      limit ${spec.limit}
      for update skip locked
    )`
  const as = spec.as.status === 'processing'
    ? sql`${c.status} = 'processing', ${c.processingDeadline} = ${processingDeadline(spec.as.graceSec)}, ${c.claimExpiresAt} = null`
    : sql`${c.status} = 'claimed', ${c.claimExpiresAt} = now() + ${spec.as.leaseMs} * interval '1 millisecond', ${c.processingDeadline} = null`
  // Every claim hands out a new lease: reports and heartbeats carrying an older one are stale.
  const set = sql`${as}, ${c.lease} = gen_random_uuid(), ${c.progress} = null`
  const update = sql`update ${inflightTasks} t
    set ${set}
    from next where ${t.id} = next.${c.id}
    returning ${spec.returning}`
  return { next, update }
}
