/**
 * The statements of leases: heartbeats (many in ONE statement, rows as unnested arrays like the
 * status statement), a release, and cancels. Fencing as in the status statement: a call carrying
 * a lease acts only while the task's lease is that one.
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import { inflightTasks } from '../db/schema.js'
import { intText, pgArray } from './arrays.js'
import { guard } from './errors.js'
import type { CancelFilter, CancelResult, HeartbeatResult, LeaseStore, ReleaseResult } from './interfaces.js'
import { toDate } from './rows.js'
import { compile } from './statements/compiled.js'
import { columnsOf, namesOf } from './statements/schema-sql.js'

export type { LeaseStore } from './interfaces.js'

const c = columnsOf(inflightTasks)
const t = columnsOf(inflightTasks, 't')
const k = namesOf(inflightTasks)

const FENCED = sql`(v.${c.lease} is null or ${t.lease} = v.${c.lease})`
/** Why a fenced call found nothing to change on a task that exists. */
const MISSED = sql`case when ${t.status} = 'processing' then 'stale' else 'not_processing' end`

/** Statuses a cancel removes at once, and those (held by a worker) it asks to end. */
const REMOVABLE = sql`('pending', 'delay', 'retry')`
const HELD = sql`('processing', 'claimed')`

/**
 * The new deadline is what a claim gives, counted from now: extend_sec (capped) or the task's own
 * duration, plus the grace. Progress is kept when a heartbeat carries none. A pushed task is held
 * from the moment its worker has it: a heartbeat that arrives before the broker has recorded the
 * delivery (`claimed`, the push's answer still on its way) marks it processing, as the delivery
 * would; the delivery's own update then finds it moved on and leaves it.
 */
function heartbeatStatement (graceSec: number) {
  return compile(sql`with v(${c.id}, ${c.lease}, extend_sec, ${c.progress}) as (select * from unnest(
      ${sql.placeholder('ids')}::text[], ${sql.placeholder('leases')}::uuid[],
      ${sql.placeholder('extendSec')}::int[], ${sql.placeholder('progress')}::jsonb[])),
    beat as (
      update ${inflightTasks} t
      set ${c.status} = 'processing', ${c.claimExpiresAt} = null,
        ${c.processingDeadline} = now() + make_interval(secs =>
            least(coalesce(v.extend_sec, ${t.processingDeadlineDuration}), ${sql.placeholder('maxExtendSec')}::int) + ${sql.raw(String(graceSec))}),
        ${c.progress} = coalesce(v.${c.progress}, ${t.progress})
      from v where ${t.id} = v.${c.id} and ${t.status} in ${HELD} and ${FENCED}
      returning ${t.id}, ${t.processingDeadline}, ${t.cancelRequested})
    select ${c.id}, ${c.processingDeadline}, ${c.cancelRequested}, 'extended' as outcome from beat
    union all
    select ${t.id}, null, ${t.cancelRequested}, case when ${t.status} in ${HELD} then 'stale' else 'not_processing' end
      from ${inflightTasks} t join v on ${t.id} = v.${c.id}
      where not exists (select 1 from beat b where b.${c.id} = ${t.id})`)
}

export function createLeaseStore (database: Database, options: { processingDeadlineGraceSec: number }): LeaseStore {
  if (!Number.isInteger(options.processingDeadlineGraceSec)) throw new Error('the processing deadline grace must be an integer')
  const heartbeat = heartbeatStatement(options.processingDeadlineGraceSec)

  return {
    async heartbeat (beats, maxExtendSec) {
      if (beats.length === 0) return new Map()
      // Id order, as every bulk statement locks its rows (no deadlock with a status flush).
      const sorted = [...beats].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
      const rows = await guard(() => heartbeat.run(database, {
        ids: pgArray(sorted.map(b => b.id)),
        leases: pgArray(sorted.map(b => b.lease ?? null)),
        extendSec: pgArray(sorted.map(b => intText(b.extendSec))),
        progress: pgArray(sorted.map(b => b.progress === undefined ? null : JSON.stringify(b.progress))),
        maxExtendSec
      }))
      const results = new Map<string, HeartbeatResult>()
      for (const row of rows) {
        results.set(row[k.id] as string, {
          outcome: row.outcome as HeartbeatResult['outcome'],
          processingDeadline: toDate(row[k.processingDeadline]),
          cancelRequested: row[k.cancelRequested] === true
        })
      }
      return results
    },

    async release (id, lease) {
      // A task whose cancel was requested ends instead of going back (complete: upkeep removes it).
      const rows = await guard(() => database.rows(sql`with v(${c.id}, ${c.lease}) as (select ${id}::text, ${lease ?? null}::uuid),
        released as (
          update ${inflightTasks} t
          set ${c.status} = case when ${t.cancelRequested} then 'complete' else 'pending' end,
            ${c.processingDeadline} = null, ${c.lease} = null, ${c.progress} = null
          from v where ${t.id} = v.${c.id} and ${t.status} = 'processing' and ${FENCED}
          returning ${t.status}, ${t.application}, ${t.namespace})
        select case when ${c.status} = 'complete' then 'cancelled' else 'released' end as outcome, ${c.application}, ${c.namespace} from released
        union all
        select ${MISSED}, ${t.application}, ${t.namespace} from ${inflightTasks} t join v on ${t.id} = v.${c.id}
          where not exists (select 1 from released)`))
      const row = rows[0]
      if (row === undefined) return { outcome: 'not_found' }
      return { outcome: row.outcome as ReleaseResult['outcome'], queue: { application: row[k.application] as string, namespace: row[k.namespace] as string } } as ReleaseResult
    },

    async cancel (id) {
      return await cancelWhere(sql`${c.id} = ${id}`)
    },

    async cancelMany (filter) {
      return await cancelWhere(filterWhere(filter))
    }
  }

  /**
   * One statement: the matching tasks are locked (in id order, as bulk statements lock), those not
   * held are deleted, those held marked cancel_requested (their next report ends them).
   */
  async function cancelWhere (where: SQL): Promise<CancelResult> {
    const rows = await guard(() => database.rows(sql`with target as (
        select ${c.id}, ${c.status} from ${inflightTasks} where ${where} order by ${c.id} for update),
      removed as (
        delete from ${inflightTasks} t using target
        where ${t.id} = target.${c.id} and target.${c.status} in ${REMOVABLE} returning ${t.id}),
      requested as (
        update ${inflightTasks} t set ${c.cancelRequested} = true from target
        where ${t.id} = target.${c.id} and target.${c.status} in ${HELD} returning ${t.id})
      select (select count(*) from target)::int as found, (select count(*) from removed)::int as removed,
        (select count(*) from requested)::int as requested`))
    const row = rows[0] as Row
    return { found: Number(row.found), removed: Number(row.removed), requested: Number(row.requested) }
  }
}

function filterWhere (filter: CancelFilter): SQL {
  const parts = [sql`${c.application} = ${filter.application}`]
  if (filter.namespace !== undefined) parts.push(sql`${c.namespace} = ${filter.namespace}`)
  if (filter.taskname !== undefined) parts.push(sql`${c.taskname} = ${filter.taskname}`)
  return sql.join(parts, sql` and `)
}
