/**
 * Queue settings (queue_settings): the rows claims read (statements/claim.ts enforces them), the
 * listing of queues with their counts, and the controls' figures for the metrics. A row with
 * namespace '' is the application's: it steers every namespace of the application without a row
 * of its own, as a whole (a namespace's row replaces it, it is not merged field by field).
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import { inflightTasks, queueSettings } from '../db/schema.js'
import { TASK_STATUSES, type TaskStatus } from '../domain/types.js'
import { guard } from './errors.js'
import type { QueueControls, QueueListing, QueueSettings, QueueSettingsChange, QueueStore } from './interfaces.js'
import type { QueueRestrictions } from './queue-restrictions.js'
import { toDate } from './rows.js'
import { columnsOf, namesOf } from './statements/schema-sql.js'

export type { QueueControls, QueueListing, QueueSettings, QueueSettingsChange, QueueStore } from './interfaces.js'

const q = columnsOf(queueSettings)
const s = columnsOf(queueSettings, 's')
const o = columnsOf(queueSettings, 'o')
const k = namesOf(queueSettings)
const c = columnsOf(inflightTasks)
const p = columnsOf(inflightTasks, 'p')

/** The row steering queue `x` (an application and namespace): its own, else its application's. */
function steeringRow (application: SQL, namespace: SQL): SQL {
  return sql`(select ${o.namespace} from ${queueSettings} o where ${o.application} = ${application}
    and ${o.namespace} in (${namespace}, '') order by ${o.namespace} desc limit 1)`
}

function toSettings (row: Row, prefix = ''): QueueSettings {
  const perSec = row[prefix + k.ratePerSec] as number | null
  return {
    paused: row[prefix + k.paused] as boolean,
    maxProcessing: row[prefix + k.maxProcessing] as number | null,
    rateLimit: perSec === null ? null : { perSec: Number(perSec), burst: row[prefix + k.rateBurst] as number },
    updatedAt: toDate(row[prefix + k.updatedAt]) as Date
  }
}

/** A row's settings as selected columns, each name prefixed (`e_paused`, ...). */
function settingsColumns (alias: string, prefix: string): SQL {
  const a = columnsOf(queueSettings, alias)
  return sql.join((['paused', 'maxProcessing', 'ratePerSec', 'rateBurst', 'updatedAt'] as const)
    .map(key => sql`${a[key]} as ${sql.identifier(prefix + k[key])}`), sql`, `)
}

/** Applies a change to a queue's settings row; the row's settings, or null when nothing is left set (the row is removed). */
async function writeChange (database: Database, change: QueueSettingsChange): Promise<QueueSettings | null> {
  const namespace = change.namespace ?? ''
  // Given fields only; a new row takes the defaults (not paused, no caps) for the others.
  const given: Array<[SQL, SQL]> = []
  if (change.paused !== undefined) given.push([q.paused, sql`${change.paused ?? false}::boolean`])
  if (change.maxProcessing !== undefined) given.push([q.maxProcessing, sql`${change.maxProcessing}::int`])
  if (change.rateLimit !== undefined) {
    const limit = change.rateLimit
    // A new limit starts with a full bucket.
    given.push(
      [q.ratePerSec, sql`${limit?.perSec ?? null}::float8`],
      [q.rateBurst, sql`${limit?.burst ?? null}::int`],
      [q.rateTokens, sql`${limit?.burst ?? null}::float8`],
      [q.rateUpdatedAt, limit === null ? sql`null::timestamptz` : sql`now()`])
  }
  given.push([q.updatedAt, sql`clock_timestamp()`])
  const rows = await guard(() => database.rows(sql`
      insert into ${queueSettings} as s (${q.application}, ${q.namespace}, ${sql.join(given.map(([column]) => column), sql`, `)})
      values (${change.application}, ${namespace}, ${sql.join(given.map(([, value]) => value), sql`, `)})
      on conflict (${q.application}, ${q.namespace}) do update set ${sql.join(given.map(([column]) => sql`${column} = excluded.${column}`), sql`, `)}
      returning ${s.paused}, ${s.maxProcessing}, ${s.ratePerSec}, ${s.rateBurst}, ${s.updatedAt}`))
  const settings = toSettings(rows[0] as Row)
  if (settings.paused || settings.maxProcessing !== null || settings.rateLimit !== null) return settings
  // Nothing left set: the row goes, and its queue follows its application's row again.
  await guard(() => database.rows(sql`
      delete from ${queueSettings} where ${q.application} = ${change.application} and ${q.namespace} = ${namespace}
        and not ${q.paused} and ${q.maxProcessing} is null and ${q.ratePerSec} is null`))
  return null
}

export function createQueueStore (database: Database, restrictions: QueueRestrictions): QueueStore {
  return {
    async list (now) {
      const rows = await guard(() => database.rows(sql`
        with counts as (
          select ${c.application}, ${c.namespace}, ${c.status}, count(*)::int as count,
            min(coalesce(${c.delayUntil}, ${c.receivedAt})) filter (where ${c.status} = 'pending' and (${c.expiresAt} is null or ${c.expiresAt} > now())) as oldest
          from ${inflightTasks} group by ${c.application}, ${c.namespace}, ${c.status}
        ),
        queues as (
          select ${c.application}, ${c.namespace} from counts
          union select ${q.application}, ${q.namespace} from ${queueSettings} where ${q.namespace} <> ''
        )
        select x.${c.application}, x.${c.namespace}, coalesce(n.by_status, '{}'::jsonb) as by_status, n.oldest,
          e.${q.namespace} as steered_by, ${settingsColumns('e', 'e_')}
        from queues x
        left join lateral (select jsonb_object_agg(${c.status}, count) as by_status, min(oldest) as oldest from counts
          where counts.${c.application} = x.${c.application} and counts.${c.namespace} = x.${c.namespace}) n on true
        left join ${queueSettings} e on e.${q.application} = x.${c.application} and e.${q.namespace} = ${steeringRow(sql`x.${c.application}`, sql`x.${c.namespace}`)}
        order by x.${c.application}, x.${c.namespace}`))
      const applications = await guard(() => database.rows(sql`
        select ${q.application}, ${q.paused}, ${q.maxProcessing}, ${q.ratePerSec}, ${q.rateBurst}, ${q.updatedAt}
        from ${queueSettings} where ${q.namespace} = '' order by ${q.application}`))
      const listing: QueueListing = {
        queues: rows.map(row => {
          const counts = Object.fromEntries(TASK_STATUSES.map(status => [status, 0])) as Record<TaskStatus, number>
          Object.assign(counts, row.by_status as Record<string, number>)
          const oldest = toDate(row.oldest)
          const steeredBy = row.steered_by as string | null
          return {
            application: row[k.application] as string,
            namespace: row[k.namespace] as string,
            counts,
            oldestPendingAgeSec: oldest === null ? 0 : Math.max(0, (now.getTime() - oldest.getTime()) / 1000),
            settings: steeredBy === null ? null : { ...toSettings(row, 'e_'), source: steeredBy === '' ? 'application' as const : 'namespace' as const }
          }
        }),
        applications: applications.map(row => ({ application: row[k.application] as string, ...toSettings(row) }))
      }
      return listing
    },

    async change (change) {
      const settings = await writeChange(database, change)
      // Claims here take the statement the settings now call for; a failed look leaves the full
      // one in use, which is always correct (the change itself was made).
      await restrictions.refresh().catch(() => {})
      return settings
    },

    async pending (application, namespace) {
      const rows = await guard(() => database.rows(sql`
        select ${c.application}, ${c.namespace}, count(*)::int as count from ${inflightTasks}
        where ${c.status} = 'pending' and ${c.application} = ${application}
          ${namespace === undefined ? sql`` : sql`and ${c.namespace} = ${namespace}`}
        group by ${c.application}, ${c.namespace}`))
      return rows.map(row => ({ application: row[k.application] as string, namespace: row[k.namespace] as string, count: row.count as number }))
    },

    async controls () {
      const rows = await guard(() => database.rows(sql`
        select count(*) filter (where ${s.paused})::int as paused,
          count(*) filter (where ${s.maxProcessing} is not null and not ${s.paused} and (select count(*) from ${inflightTasks} p
            where ${p.status} in ('processing', 'claimed') and ${p.application} = ${s.application}
              and (${p.namespace} = ${s.namespace} or (${s.namespace} = '' and not exists (select 1 from ${queueSettings} o
                where ${o.application} = ${p.application} and ${o.namespace} = ${p.namespace})))) >= ${s.maxProcessing})::int as at_max_processing,
          count(*) filter (where ${s.ratePerSec} is not null and not ${s.paused} and least(${s.rateBurst}::float8, coalesce(${s.rateTokens}, ${s.rateBurst})
            + greatest(0, extract(epoch from now() - coalesce(${s.rateUpdatedAt}, now()))) * ${s.ratePerSec}) < 1)::int as out_of_tokens
        from ${queueSettings} s`))
      const row = rows[0] ?? {}
      const controls: QueueControls = {
        paused: Number(row.paused ?? 0),
        atMaxProcessing: Number(row.at_max_processing ?? 0),
        outOfTokens: Number(row.out_of_tokens ?? 0)
      }
      return controls
    }
  }
}
