/**
 * The connection to the store: PostgreSQL through postgres.js when a URL is given, otherwise an
 * embedded PGlite in a data directory. Both are wrapped by drizzle, so the store runs the same
 * queries on either; the differences between the two drivers end in postgres.ts and pglite.ts.
 */
import type { Database, DatabaseOptions } from './types.js'

export type * from './types.js'
export { mayHaveRun, rootMessage, StoreTimeoutError } from './call-errors.js'

/**
 * Opens the store's connection: PostgreSQL when `url` is given, else the embedded PGlite. Each
 * driver's module is loaded only when it is used (start-up time).
 */
export async function openDatabase (options: DatabaseOptions): Promise<Database> {
  if (options.url !== undefined) return (await import('./postgres.js')).openPostgres(options.url, options)
  return await (await import('./pglite.js')).openPglite(options)
}
