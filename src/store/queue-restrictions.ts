/**
 * Whether some queue_settings row restricts claims (pauses or caps a queue), as this broker last
 * saw it. While none does, claims take the plain statement (ClaimSpec.controls: false), which
 * skips the queue-control steps. Seen wrong either way, claims stay correct: the full statement
 * enforces whatever rows there are, and the plain one takes nothing while a row restricts. So a
 * broker that has not yet seen another broker's first pause only delays its claims until it looks
 * again (`refresh`: after a change made here, when another broker says so, and periodically).
 */
import { sql } from 'drizzle-orm'
import type { Database } from '../db/database.js'
import { guard } from './errors.js'
import { SOME_QUEUE_RESTRICTED } from './statements/claim.js'

export interface QueueRestrictions {
  /** True only when the last look found no restricting row (before any look: false). */
  readonly none: boolean
  /** Looks at the table again; resolves with whether some row restricts. */
  refresh (): Promise<boolean>
}

export function createQueueRestrictions (database: Pick<Database, 'prepare'>): QueueRestrictions {
  const look = database.prepare('taskbroker_queue_restricted', sql`select ${SOME_QUEUE_RESTRICTED} as restricted`)
  let none = false
  // Looks may overlap (a change, a notification, the timer): the latest-started look that has
  // answered wins, so an older one answering late never overwrites what a newer one saw, and
  // every answer counts unless a newer one came first.
  let started = 0
  let applied = 0
  const apply = (look: number, value: boolean) => {
    if (look < applied) return
    applied = look
    none = value
  }
  return {
    get none () { return none },
    async refresh () {
      const mine = ++started
      try {
        const rows = await guard(() => look.run())
        const restricted = rows[0]?.restricted === true
        apply(mine, !restricted)
        return restricted
      } catch (error) {
        // Not knowing: the full statement, which is always correct.
        apply(mine, false)
        throw error
      }
    }
  }
}
