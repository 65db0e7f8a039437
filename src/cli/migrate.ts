/**
 * `taskbroker migrate`: applies the migrations to the store the environment names, as the broker
 * would at start (the embedded store's directory lock keeps it off a directory a broker holds).
 */
import pino from 'pino'
import { loadConfig } from '../config/config.js'
import { openDatabase } from '../db/database.js'
import { urlProblem } from '../db/migration-check.js'
import { DatabaseUnreachableError } from './exit-codes.js'

/** Socket errors that mean nothing answered at the address (the settings may be right). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET'])

export async function migrateStore (env: Record<string, string | undefined>): Promise<string> {
  const config = loadConfig(env)
  const url = config.store.databaseUrl
  const database = await openDatabase({ url, dataDir: config.store.dataDir, poolSize: 1, log: pino({ level: 'warn' }) })
  try {
    await database.migrate()
  } catch (error) {
    // A database that does not exist, a refused role: the settings are wrong, as at a broker's start.
    const code = (error as { code?: unknown }).code
    if (typeof code === 'string' && UNREACHABLE.has(code)) throw new DatabaseUnreachableError(`the database could not be reached: ${(error as Error).message}`)
    throw urlProblem(error) ?? error
  } finally {
    await database.close()
  }
  return url === undefined ? `migrated the embedded store in ${config.store.dataDir}` : `migrated ${new URL(url).host}${new URL(url).pathname}`
}
