/**
 * The statements of push mode: fetch loops claim pending tasks into `claimed` with a lease, and
 * push outcomes settle them (`processing` when delivered, `pending` when not).
 *
 * Fencing: a claim hands out the exact `claim_expires_at` it wrote (as text, microseconds kept)
 * as a token, and settling a push requires the row to still be `claimed` with that token. A task
 * whose lease expired and that was claimed again (or reported, or reset) is never touched by the
 * outcome of an earlier push.
 */
import { sql } from 'drizzle-orm'
import type { Database } from '../db/database.js'
import { inflightTasks } from '../db/schema.js'
import type { Activation } from '../domain/types.js'
import { pgArray } from './arrays.js'
import { guard } from './errors.js'
import type { PushClaim, PushStore } from './interfaces.js'
import type { QueueRestrictions } from './queue-restrictions.js'
import { claimSteps, inClaimOrder, processingDeadline, PUSH_CLAIM } from './statements/claim.js'
import { compile } from './statements/compiled.js'
import { columnsOf, list, namesOf } from './statements/schema-sql.js'
import { setAsideUndecodable } from './undecodable.js'

export type { PushClaim, PushClaimRequest, PushOutcome, PushStore } from './interfaces.js'

const c = columnsOf(inflightTasks)
const t = columnsOf(inflightTasks, 't')
const k = namesOf(inflightTasks)

export function createPushStore (database: Database, options: { processingDeadlineGraceSec: number }, restrictions: Pick<QueueRestrictions, 'none'> = { none: false }): PushStore {
  const prepareClaim = (controls: boolean) => {
    const { next, update } = claimSteps({
      ...PUSH_CLAIM,
      as: { status: 'claimed', leaseMs: sql`${sql.placeholder('leaseMs')}::int` },
      controls,
      returning: sql`${list([t.id, t.activation, t.processingAttempts, t.addedAt, t.priority, t.lease])}, ${t.claimExpiresAt}::text as token`
    })
    return database.prepare(controls ? 'taskbroker_push_claim' : 'taskbroker_push_claim_plain', sql`with ${next} ${update}`)
  }
  const claims = { controlled: prepareClaim(true), plain: prepareClaim(false) }

  // One statement for a whole batch of outcomes, whatever their mix (an undelivered task whose
  // cancel was requested ends: complete, for upkeep to remove). The deadline is set as a
  // pull claim sets it. SKIP LOCKED: a row locked right now is being changed by someone else (its
  // worker's report in a status flush, upkeep): it has moved on. Waiting for it instead would let
  // this statement and a status flush, each locking its rows in its own order, deadlock (seen in
  // the push benchmark).
  const settle = compile(sql`with v(${c.id}, token, delivered) as (select * from unnest(
      ${sql.placeholder('ids')}::text[], ${sql.placeholder('tokens')}::text[], ${sql.placeholder('delivered')}::bool[])),
    mine as (
      select ${t.id} from ${inflightTasks} t join v on ${t.id} = v.${c.id}
      where ${t.status} = 'claimed' and ${t.claimExpiresAt} = v.token::timestamptz
      for update of t skip locked
    )
    update ${inflightTasks} t
    set ${c.status} = case when v.delivered then 'processing' when ${t.cancelRequested} then 'complete' else 'pending' end,
        ${c.processingDeadline} = case when v.delivered then ${processingDeadline(options.processingDeadlineGraceSec)} end,
        ${c.claimExpiresAt} = null,
        ${c.lease} = case when v.delivered then ${t.lease} end
    from v, mine
    where ${t.id} = v.${c.id} and ${t.id} = mine.${c.id}
    returning ${t.id}`)

  return {
    async claim (request) {
      if (request.applications.length === 0 || request.limit < 1) return []
      const claimed = await guard(() => claims[restrictions.none ? 'plain' : 'controlled'].run({
        low: request.buckets[0],
        high: request.buckets[1],
        applications: pgArray(request.applications),
        limit: request.limit,
        leaseMs: Math.ceil(request.leaseMs)
      }))
      // Pushes start oldest first.
      const rows = await setAsideUndecodable(database, inClaimOrder(claimed))
      return rows.map((row): PushClaim => ({
        activation: row[k.activation] as Activation,
        processingAttempts: row[k.processingAttempts] as number,
        priority: row[k.priority] as number,
        token: row.token as string,
        lease: row[k.lease] as string
      }))
    },

    async settle (outcomes) {
      if (outcomes.length === 0) return new Set()
      const rows = await guard(() => settle.run(database, {
        ids: pgArray(outcomes.map(o => o.id)),
        tokens: pgArray(outcomes.map(o => o.token)),
        delivered: pgArray(outcomes.map(o => o.delivered ? 'true' : 'false'))
      }))
      return new Set(rows.map(r => r[k.id] as string))
    }
  }
}
