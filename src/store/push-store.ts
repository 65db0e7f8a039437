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
import type { Activation } from '../domain/types.js'
import { pgArray } from './arrays.js'
import { guard } from './errors.js'
import { setAsideUndecodable } from './undecodable.js'

export type PushStore = ReturnType<typeof createPushStore>

/** A task a fetch loop claimed for delivery. */
export interface PushClaim {
  activation: Activation
  processingAttempts: number
  /** The claim's fencing token (its claim_expires_at as PostgreSQL text). */
  token: string
}

export interface PushClaimRequest {
  /** Inclusive range of the task `bucket` (0–255) this fetch loop owns. */
  buckets: readonly [number, number]
  /** Only tasks of these applications (those with a worker that is not backing off). */
  applications: readonly string[]
  limit: number
  /** Lease: when it passes, upkeep puts the task back to pending. */
  leaseMs: number
}

/** What happened to one push: delivered → processing, otherwise → pending (no attempt counted). */
export interface PushOutcome {
  id: string
  token: string
  delivered: boolean
}

export function createPushStore (database: Database, options: { processingDeadlineGraceSec: number }) {
  const claim = database.prepare('taskbroker_push_claim', sql`
    with next as (
      select id from inflight_tasks
      where status = 'pending' and (expires_at is null or expires_at > now())
        and bucket between ${sql.placeholder('low')}::int and ${sql.placeholder('high')}::int
        and application = any(${sql.placeholder('applications')}::text[])
      order by added_at
      limit ${sql.placeholder('limit')}::int
      for update skip locked
    )
    update inflight_tasks t
    set status = 'claimed',
        claim_expires_at = now() + ${sql.placeholder('leaseMs')}::int * interval '1 millisecond',
        processing_deadline = null
    from next where t.id = next.id
    returning t.id, t.activation, t.processing_attempts, t.added_at, t.claim_expires_at::text as token`)

  // One statement for a whole batch of outcomes, whatever their mix; its text never changes, so it
  // is prepared once. The deadline is set as a pull claim sets it: now + duration + grace.
  // SKIP LOCKED: a row locked right now is being changed by someone else (its worker's report in a
  // status flush, upkeep): it has moved on. Waiting for it instead would let this statement and a
  // status flush, each locking its rows in its own order, deadlock (seen in the push benchmark).
  const settleText = `with v(id, token, delivered) as (select * from unnest($1::text[], $2::text[], $3::bool[])),
    mine as (
      select t.id from inflight_tasks t join v on t.id = v.id
      where t.status = 'claimed' and t.claim_expires_at = v.token::timestamptz
      for update of t skip locked
    )
    update inflight_tasks t
    set status = case when v.delivered then 'processing' else 'pending' end,
        processing_deadline = case when v.delivered
          then now() + make_interval(secs => t.processing_deadline_duration + ${Number(options.processingDeadlineGraceSec)}) end,
        claim_expires_at = null
    from v, mine
    where t.id = v.id and t.id = mine.id
    returning t.id`

  return {
    /** Claims up to `limit` pending tasks, oldest first, of the given buckets and applications. */
    async claim (request: PushClaimRequest): Promise<PushClaim[]> {
      if (request.applications.length === 0 || request.limit < 1) return []
      const claimed = await guard(() => claim.run({
        low: request.buckets[0],
        high: request.buckets[1],
        applications: pgArray(request.applications),
        limit: request.limit,
        leaseMs: Math.ceil(request.leaseMs)
      }))
      const rows = await setAsideUndecodable(database, claimed)
      // RETURNING has no order; pushes should start oldest first.
      rows.sort((a, b) => timeOf(a.added_at) - timeOf(b.added_at))
      return rows.map(row => ({
        activation: row.activation as Activation,
        processingAttempts: row.processing_attempts as number,
        token: row.token as string
      }))
    },

    /**
     * Settles push outcomes in ONE statement (ids must be unique; the batcher dedupes). Only rows
     * still `claimed` under the same token change. Returns the ids that did.
     */
    async settle (outcomes: readonly PushOutcome[]): Promise<Set<string>> {
      if (outcomes.length === 0) return new Set()
      const rows = await guard(() => database.run(settleText, [
        pgArray(outcomes.map(o => o.id)),
        pgArray(outcomes.map(o => o.token)),
        pgArray(outcomes.map(o => o.delivered ? 'true' : 'false'))
      ]))
      return new Set(rows.map(r => r.id as string))
    }
  }
}

function timeOf (value: unknown): number {
  return value instanceof Date ? value.getTime() : new Date(value as string).getTime()
}
