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

export function createQueueRestrictions (database: Database): QueueRestrictions {
  const look = database.prepare('taskbroker_queue_restricted', sql`select ${SOME_QUEUE_RESTRICTED} as restricted`)
  let none = false
  // A look that started before a later one must not overwrite what the later one saw.
  let looks = 0
  return {
    get none () { return none },
    async refresh () {
      const mine = ++looks
      try {
        const rows = await guard(() => look.run())
        const restricted = rows[0]?.restricted === true
        if (mine === looks) none = !restricted
        return restricted
      } catch (error) {
        // Not knowing: the full statement, which is always correct.
        if (mine === looks) none = false
        throw error
      }
    }
  }
}
