/**
 * How many brokers listen for notifications on this database: their LISTEN sessions, found by
 * application_name in pg_stat_activity (visible to every role). A broker alone sends none.
 */
import { sql } from 'drizzle-orm'
import type { Database } from '../db/database.js'
import { LISTENER_APPLICATION_NAME } from '../db/listener.js'
import { guard } from './errors.js'

/** Counts the listening sessions, this broker's own included. */
export function createListenerCount (database: Pick<Database, 'prepare'>): () => Promise<number> {
  const count = database.prepare('taskbroker_listeners', sql`select count(*)::int as listeners from pg_stat_activity
    where datname = current_database() and application_name = ${LISTENER_APPLICATION_NAME}`)
  return async () => Number((await guard(() => count.run()))[0]?.listeners ?? 0)
}
