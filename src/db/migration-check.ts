/**
 * At start, the database's schema must be the one this broker was built for. A never-migrated
 * PostgreSQL database (migrations are off by default there) otherwise gives a broker that says
 * ready and answers every produce and claim with 500; one migrated by a newer broker may have
 * changed tables under this one.
 *
 * drizzle's migrator records each applied migration in drizzle.__drizzle_migrations with its
 * journal timestamp (`created_at` = `when` in migrations/meta/_journal.json) and applies those newer
 * than the newest row. So: fewer, or older, rows than the journal → behind; a row newer than the
 * journal's last entry, or more rows than entries → ahead.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { sql } from 'drizzle-orm'
import type { Logger } from 'pino'
import { ConfigError, StartupRefusedError } from '../config/config.js'
import { migrationsFolder } from '../paths.js'
import { rootMessage, type Database } from './database.js'

interface JournalEntry { tag: string, when: number }

export interface AppliedMigrations {
  count: number
  /** created_at of the newest row (ms since the epoch), undefined when none. */
  newest: number | undefined
}

/** Migrates when asked, then refuses to go on unless the database matches migrations/. */
export async function prepareSchema (database: Database, runMigrations: boolean, log: Logger): Promise<void> {
  try {
    if (runMigrations) {
      log.info({ store: database.kind }, 'applying migrations')
      await database.migrate()
    }
    checkMigrations(await appliedMigrations(database), journal(), database.kind, runMigrations)
  } catch (error) {
    const wrongUrl = urlProblem(error)
    if (wrongUrl !== undefined) throw wrongUrl
    if (error instanceof ConfigError || error instanceof StartupRefusedError || database.kind === 'pglite' || runMigrations) throw error
    // PostgreSQL unreachable right now: start as before (not ready until it answers); the check is
    // skipped rather than making the broker's start depend on the database's.
    log.warn({ err: error }, 'cannot check the database\'s migrations now (database unreachable?); starting without the check')
  }
}

/** PostgreSQL errors at connect time that mean the URL is wrong, not that the server is down. */
const CONFIG_CODES: Record<string, string> = {
  '3D000': 'names a database that does not exist',
  '28P01': 'has credentials the server refused',
  28000: 'names a role the server does not accept'
}

/** The ConfigError a connect-time failure means when the URL is wrong (no such database, role,
 * password), else undefined (the server may just be down). */
export function urlProblem (error: unknown): ConfigError | undefined {
  const code = errorCode(error)
  if (code === undefined || CONFIG_CODES[code] === undefined) return undefined
  return new ConfigError('TASKBROKER_DATABASE_URL', `(or DATABASE_URL) ${CONFIG_CODES[code]}: ${rootMessage(error)}`)
}

export async function appliedMigrations (database: Database): Promise<AppliedMigrations> {
  const [table] = await database.rows(sql`select to_regclass('drizzle.__drizzle_migrations') is not null as present`)
  if (table?.present !== true) return { count: 0, newest: undefined }
  const [row] = await database.rows(sql`select count(*)::int as count, max(created_at)::text as newest from drizzle.__drizzle_migrations`)
  const newest = row?.newest === null || row?.newest === undefined ? undefined : Number(row.newest)
  return { count: Number(row?.count ?? 0), newest }
}

export function journal (): JournalEntry[] {
  const text = readFileSync(join(migrationsFolder(), 'meta', '_journal.json'), 'utf8')
  return (JSON.parse(text) as { entries: JournalEntry[] }).entries
}

/** Throws StartupRefusedError when `applied` does not match `entries`. Exported for tests. */
export function checkMigrations (applied: AppliedMigrations, entries: JournalEntry[], kind: Database['kind'], ranMigrations: boolean): void {
  const last = entries.at(-1)
  if (last === undefined) return
  const where = kind === 'postgres' ? 'The database at TASKBROKER_DATABASE_URL' : 'The embedded database in TASKBROKER_DATA_DIR'
  const inDatabase = applied.newest === undefined
    ? 'none'
    : `${applied.count}, the newest from ${new Date(applied.newest).toISOString()} (created_at ${applied.newest})`
  const known = `${entries.length}, up to ${last.tag} (created_at ${last.when})`
  if ((applied.newest !== undefined && applied.newest > last.when) || applied.count > entries.length) {
    throw new StartupRefusedError(`${where} was migrated by a newer broker: migrations applied there: ${inDatabase}; ` +
      `known to this broker: ${known}. Run the newer broker version (this one would run on a schema it does not know)`)
  }
  const missing = entries.filter(e => applied.newest === undefined || e.when > applied.newest)
  if (missing.length > 0) {
    const how = ranMigrations
      ? 'applying migrations did not bring it up to date'
      : 'run `npm run db:migrate` with TASKBROKER_DATABASE_URL set, or start the broker once with TASKBROKER_RUN_MIGRATIONS=true'
    throw new StartupRefusedError(`${where} is not migrated: migrations applied there: ${inDatabase}; ` +
      `this broker needs ${known} (missing ${missing.map(e => e.tag).join(', ')}): ${how}`)
  }
}

/** The SQLSTATE of a PostgreSQL error, also when drizzle wrapped it (DrizzleQueryError.cause). */
function errorCode (error: unknown): string | undefined {
  for (let e = error as { code?: unknown, cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code
  }
  return undefined
}
