/** The embedded store (PGlite in a data directory), loaded only when no database URL is configured. */
import { PGlite } from '@electric-sql/pglite'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import { migrationsFolder } from '../paths.js'
import { lockDataDir } from './data-dir-lock.js'
import { PLANNER_SETTINGS_SQL } from './planner.js'
import { preparedOn, runPrepared } from './drizzle-calls.js'
import * as schema from './schema.js'
import type { Database, DatabaseOptions, Db, Row } from './types.js'

export async function openPglite (options: DatabaseOptions): Promise<Database> {
  const inMemory = options.dataDir.startsWith('memory://')
  // One process per directory: a second broker on it would silently lose tasks (data-dir-lock.ts).
  const lock = inMemory ? undefined : lockDataDir(options.dataDir)
  if (lock?.replaced !== undefined) options.log.warn({ dataDir: lock.dir, previous: lock.replaced }, 'took over the lock of a broker that is gone (it did not shut down cleanly)')
  let client: PGlite | undefined
  try {
    client = await PGlite.create(lock?.dir ?? options.dataDir)
    await client.exec(PLANNER_SETTINGS_SQL)
  } catch (error) {
    await client?.close().catch(() => {})
    lock?.release()
    throw error
  }
  const db = drizzlePglite(client, { schema }) as unknown as Db
  return {
    kind: 'pglite',
    db,
    rows: async (query) => (await db.execute(query) as unknown as { rows: Row[] }).rows,
    prepare: (name, query) => preparedOn(db, name, query),
    run: (text, params) => runPrepared(db, text, params),
    migrate: () => migratePglite(db as never, { migrationsFolder: migrationsFolder() }),
    async listen () {
      return { unlisten: async () => {} }
    },
    async notify () {},
    leaderLock: () => ({ acquire: async () => true, release: async () => {} }),
    async close () {
      try {
        await client.close()
      } finally {
        lock?.release()
      }
    }
  }
}
