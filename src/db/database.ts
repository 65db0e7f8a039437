/**
 * The connection to the store: PostgreSQL through postgres.js when a URL is given, otherwise an
 * embedded PGlite in a data directory. Both are wrapped by drizzle, so the store runs the same
 * queries on either; the few differences between the two drivers end in this file.
 */
import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { type SQL } from 'drizzle-orm'
import { type PgDatabase, type PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import type { Logger } from 'pino'
import { migrationsFolder } from '../paths.js'
import * as schema from './schema.js'

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>
export type DatabaseKind = 'postgres' | 'pglite'
export type Row = Record<string, unknown>

/** A statement prepared once and run many times with different values for its placeholders. */
export interface PreparedStatement {
  run (values?: Record<string, unknown>): Promise<Row[]>
}

export interface Database {
  readonly kind: DatabaseKind
  readonly db: Db
  /** Runs raw SQL (built with drizzle's `sql`) and returns its rows, whichever the driver. */
  rows (query: SQL): Promise<Row[]>
  /** Prepares raw SQL with `sql.placeholder(...)` values under a server-side name (PostgreSQL). */
  prepare (name: string, query: SQL): PreparedStatement
  /**
   * Runs SQL text with `$n` parameters as a prepared statement. For statements whose text is
   * generated (bulk VALUES lists): drizzle's `sql` builder costs ~9 ms of CPU for a 256-row list,
   * four times the statement's own execution time, so their text is built (and cached) by hand.
   */
  run (text: string, params: unknown[]): Promise<Row[]>
  /** Applies the migrations in `migrations/`; serialised by an advisory lock on PostgreSQL. */
  migrate (): Promise<void>
  /** Subscribes to a NOTIFY channel (PostgreSQL only; PGlite has a single process). */
  listen (channel: string, onPayload: (payload: string) => void): Promise<{ unlisten: () => Promise<void> }>
  notify (channel: string, payload: string): Promise<void>
  /**
   * A session-level advisory lock held on a connection of its own, for work that one broker at a
   * time must do (upkeep). PGlite is one process: its lock is always held.
   */
  leaderLock (key: number): LeaderLock
  close (): Promise<void>
}

export interface LeaderLock {
  /** Takes the lock if free, or confirms it is still held (its connection alive). */
  acquire (): Promise<boolean>
  release (): Promise<void>
}

export interface DatabaseOptions {
  url?: string | undefined
  dataDir: string
  poolSize: number
  log: Logger
}

/** Arbitrary but fixed: the key of the advisory lock that serialises migrations across brokers. */
const MIGRATION_LOCK_KEY = 0x7462_6d67 // "tbmg"

export async function openDatabase (options: DatabaseOptions): Promise<Database> {
  return options.url !== undefined ? openPostgres(options.url, options) : openPglite(options)
}

function openPostgres (url: string, options: DatabaseOptions): Database {
  const client = postgres(url, {
    max: options.poolSize,
    // Fail fast when the server is unreachable: callers get a 503 instead of a hanging request.
    connect_timeout: 5,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    onnotice: () => {},
    connection: {
      application_name: 'taskbroker',
      // A broker statement never legitimately runs this long; a stuck one must not pin the
      // MVCC horizon that SKIP LOCKED queues depend on.
      statement_timeout: 60_000,
      idle_in_transaction_session_timeout: 60_000
    }
  })
  const db = drizzlePostgres(client, { schema }) as unknown as Db
  return {
    kind: 'postgres',
    db,
    rows: async (query) => [...await db.execute(query) as unknown as Row[]],
    prepare: (name, query) => preparedOn(db, name, query),
    run: (text, params) => runPrepared(db, text, params),
    async migrate () {
      // One connection of its own, holding the lock for the whole run.
      const migrator = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 })
      try {
        await migrator`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`
        await migratePostgres(drizzlePostgres(migrator), { migrationsFolder: migrationsFolder() })
        await migrator`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`
      } finally {
        await migrator.end({ timeout: 5 })
      }
    },
    async listen (channel, onPayload) {
      const subscription = await client.listen(channel, onPayload)
      return { unlisten: () => subscription.unlisten() }
    },
    async notify (channel, payload) {
      await client.notify(channel, payload)
    },
    leaderLock: (key) => postgresLeaderLock(url, key),
    close: () => client.end({ timeout: 5 })
  }
}

async function openPglite (options: DatabaseOptions): Promise<Database> {
  const inMemory = options.dataDir.startsWith('memory://')
  if (!inMemory) mkdirSync(resolve(options.dataDir), { recursive: true })
  const client = await PGlite.create(inMemory ? options.dataDir : resolve(options.dataDir))
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
    close: () => client.close()
  }
}

/**
 * The lock lives on a client of its own with one connection (not a reserved pool connection:
 * postgres.js 3.4 throws an uncatchable error when a reserved connection's server session is
 * killed). Each pass asks for the lock again; it is re-entrant within the session, and if the
 * session died the server released it and the new session simply competes for it again.
 */
function postgresLeaderLock (url: string, key: number): LeaderLock {
  let client: postgres.Sql | undefined
  return {
    async acquire () {
      client ??= postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5, idle_timeout: 0, connection: { application_name: 'taskbroker-upkeep-lock' } })
      const [row] = await client`select pg_try_advisory_lock(${key}) as locked`
      return row?.locked === true
    },
    async release () {
      const current = client
      client = undefined
      if (current === undefined) return
      await current`select pg_advisory_unlock_all()`.catch(() => {})
      await current.end({ timeout: 2 }).catch(() => {})
    }
  }
}

/**
 * drizzle only prepares server-side when a statement has a name (measurements.md A6: that alone
 * doubles single-row throughput), and its `execute()` for raw SQL never names one. So raw SQL goes
 * through the session's own prepareQuery with a name, exactly as the query builder's
 * `.prepare(name)` does.
 */
function preparedOn (db: Db, name: string, query: SQL): PreparedStatement {
  const prepared = internalsOf(db)._.session.prepareQuery(internalsOf(db).dialect.sqlToQuery(query), undefined, name, false)
  return { run: async (values) => rowsOf(await prepared.execute(values)) }
}

async function runPrepared (db: Db, text: string, params: unknown[]): Promise<Row[]> {
  // The name only has to be defined for drizzle to prepare; postgres.js keys statements by text.
  return rowsOf(await internalsOf(db)._.session.prepareQuery({ sql: text, params }, undefined, 'taskbroker', false).execute())
}

function internalsOf (db: Db) {
  return db as unknown as { _: { session: PrepareCapable }, dialect: { sqlToQuery (query: SQL): { sql: string, params: unknown[] } } }
}

const rowsOf = (result: unknown): Row[] => Array.isArray(result) ? [...result] as Row[] : (result as { rows: Row[] }).rows

interface PrepareCapable {
  prepareQuery (
    query: { sql: string, params: unknown[] },
    fields: undefined,
    name: string,
    isResponseInArrayMode: boolean
  ): { execute (values?: Record<string, unknown>): Promise<unknown> }
}
