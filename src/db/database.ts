/**
 * The connection to the store: PostgreSQL through postgres.js when a URL is given, otherwise an
 * embedded PGlite in a data directory. Both are wrapped by drizzle, so the store runs the same
 * queries on either; the few differences between the two drivers end in this file.
 */
import { PGlite } from '@electric-sql/pglite'
import { fillPlaceholders, type SQL } from 'drizzle-orm'
import { PgDialect, type PgDatabase, type PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import type { Logger } from 'pino'
import { migrationsFolder } from '../paths.js'
import { lockDataDir } from './data-dir-lock.js'
import * as schema from './schema.js'

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>
export type DatabaseKind = 'postgres' | 'pglite'
export type Row = Record<string, unknown>

/** A statement prepared once and run many times with different values for its placeholders. */
export interface PreparedStatement {
  run (values?: Record<string, unknown>): Promise<Row[]>
}

/** Per-statement options. */
export interface CallOptions {
  /**
   * PostgreSQL: the longest this call may take, waiting for a connection included, instead of the
   * database's `callTimeoutMs` (0 = no limit). Ignored by PGlite.
   */
  timeoutMs?: number
}

export interface Database {
  readonly kind: DatabaseKind
  readonly db: Db
  /** Runs raw SQL (built with drizzle's `sql`) and returns its rows, whichever the driver. */
  rows (query: SQL, options?: CallOptions): Promise<Row[]>
  /** Prepares raw SQL with `sql.placeholder(...)` values under a server-side name (PostgreSQL). */
  prepare (name: string, query: SQL, options?: CallOptions): PreparedStatement
  /**
   * Runs SQL text with `$n` parameters as a prepared statement. For statements whose text is
   * generated (bulk VALUES lists): drizzle's `sql` builder costs ~9 ms of CPU for a 256-row list,
   * four times the statement's own execution time, so their text is built (and cached) by hand.
   */
  run (text: string, params: unknown[], options?: CallOptions): Promise<Row[]>
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
  /**
   * PostgreSQL: the longest one statement call may take, from the call to its result, waiting for
   * a connection included (0 = no limit, the default). See `openPostgres`.
   */
  callTimeoutMs?: number
}

/**
 * A store call that got no answer in time (TASKBROKER_DB_CALL_TIMEOUT_MS): the statement was
 * cancelled; store guards answer it as "store unavailable" (503 + Retry-After).
 */
export class StoreTimeoutError extends Error {
  readonly code = 'TASKBROKER_STORE_TIMEOUT'
  override name = 'StoreTimeoutError'
}

const MAY_HAVE_RUN = Symbol('taskbroker.mayHaveRun')

/**
 * True when a failed call's statement had been sent before it failed without an answer from the
 * server (a timeout, a connection lost): it may have committed. Marked here, on the error or a
 * cause of it; a refusal by the server itself or a call never sent is a definite "nothing changed".
 */
export function mayHaveRun (error: unknown): boolean {
  for (let e = error as { cause?: unknown } | null, depth = 0; e !== null && typeof e === 'object' && depth < 10; e = e.cause as typeof e, depth++) {
    if ((e as Record<symbol, unknown>)[MAY_HAVE_RUN] === true) return true
  }
  return false
}

/** Marks `error` as mayHaveRun when its query was sent and no server error answered it. */
function markIfSent<E> (error: E, query: unknown): E {
  const sent = (query as { state: unknown }).state !== null
  const fromServer = (error as { name?: unknown } | null)?.name === 'PostgresError'
  if (sent && !fromServer && error !== null && typeof error === 'object') Object.defineProperty(error, MAY_HAVE_RUN, { value: true })
  return error
}

/**
 * postgres.js waits before each new connection attempt after a failed one: by default
 * 0.5–1 × min(3^n / 100, 20) seconds, so after a few failures every query waits up to 20 s for a
 * connection. Ours starts at 50–100 ms and never exceeds 1 s: calls during an outage fail fast,
 * and the pool reconnects within a second of the database coming back.
 */
export function reconnectBackoffSec (retries: number): number {
  return Math.min(0.1 * 2 ** Math.max(0, retries - 1), 1) * (0.5 + Math.random() / 2)
}

/** Arbitrary but fixed: the key of the advisory lock that serialises migrations across brokers. */
const MIGRATION_LOCK_KEY = 0x7462_6d67 // "tbmg"

export async function openDatabase (options: DatabaseOptions): Promise<Database> {
  return options.url !== undefined ? openPostgres(options.url, options) : openPglite(options)
}

/**
 * PostgreSQL through postgres.js. Every call is bounded by `callTimeoutMs` (per call overridable):
 * - reconnecting never waits long (reconnectBackoffSec) and a connection attempt gives up after
 *   the call timeout (at most 5 s), so calls during an outage fail within about a second;
 * - a call with no answer in time is rejected with StoreTimeoutError and its statement cancelled:
 *   one still waiting for a connection is taken off the queue (it never runs later, when nobody
 *   waits for it any more), one already sent gets a cancel request;
 * - a call that timed out before it could even be sent, or whose connection stays silent after the
 *   cancel, means the pool is stuck (a database that vanished without closing its sockets): the
 *   pool is replaced by a fresh one for the next calls and the old one is closed, its calls in
 *   flight given `callTimeoutMs` to finish.
 * LISTEN has a client of its own, so replacing the pool never drops the subscription.
 */
function openPostgres (url: string, options: DatabaseOptions): Database {
  const defaultTimeoutMs = options.callTimeoutMs ?? 0
  const dialect = new PgDialect()
  const clientOptions = (max: number, applicationName: string): postgres.Options<Record<string, postgres.PostgresType>> => ({
    max,
    // Fail fast when the server is unreachable: callers get a 503 instead of a hanging request.
    connect_timeout: defaultTimeoutMs > 0 ? Math.min(5, Math.max(0.5, defaultTimeoutMs / 1000)) : 5,
    backoff: reconnectBackoffSec,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    onnotice: () => {},
    // No query of postgres.js's own on each new connection (array type oids: every array the
    // broker sends goes as PostgreSQL array text, and none comes back). It runs from a handler that
    // drops its promise, so a connection closed before the answer came (a server gone silent, a
    // stuck pool being closed) made an unhandled rejection, which shuts the server down.
    fetch_types: false,
    connection: {
      application_name: applicationName,
      // A broker statement never legitimately runs this long; a stuck one must not pin the
      // MVCC horizon that SKIP LOCKED queues depend on.
      statement_timeout: 60_000,
      idle_in_transaction_session_timeout: 60_000
    }
  })
  interface Pool { client: postgres.Sql, db: Db, retired: boolean }
  const openPool = (): Pool => {
    const client = postgres(url, clientOptions(options.poolSize, 'taskbroker'))
    return { client, db: drizzlePostgres(client, { schema }) as unknown as Db, retired: false }
  }
  let pool = openPool()
  let listener: postgres.Sql | undefined

  /** Puts a fresh pool in place of `stuck` (once) and closes `stuck`, its calls in flight given time to finish. */
  function replacePool (stuck: Pool, why: string): void {
    if (stuck.retired) return
    stuck.retired = true
    if (pool === stuck) pool = openPool()
    options.log.warn({ why }, 'replacing the PostgreSQL connection pool')
    stuck.client.end({ timeout: Math.max(1, defaultTimeoutMs / 1000) }).catch(() => {})
  }

  /** One statement on the current pool, bounded in time (see above). */
  function call (text: string, params: unknown[], prepare: boolean, callOptions: CallOptions | undefined): Promise<Row[]> {
    const current = pool
    const query = current.client.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare })
    const limitMs = callOptions?.timeoutMs ?? defaultTimeoutMs
    if (!(limitMs > 0)) return query.then(rowsOf, (error: unknown) => { throw markIfSent(error, query) })
    return new Promise<Row[]>((resolve, reject) => {
      let settled = false
      const timer = setTimeout(() => {
        const sent = (query as unknown as { state: unknown }).state !== null
        cancelQuery(query)
        reject(markIfSent(new StoreTimeoutError(`no answer from PostgreSQL within ${limitMs} ms`), query))
        if (!sent) {
          replacePool(current, `a statement waited ${limitMs} ms for a connection`)
        } else {
          // Sent and cancelled: it settles at once unless its connection is dead.
          setTimeout(() => {
            if (!settled) replacePool(current, `a statement cancelled after ${limitMs} ms got no answer`)
          }, Math.max(1_000, limitMs)).unref()
        }
      }, limitMs)
      query.then((rows) => {
        settled = true
        clearTimeout(timer)
        resolve(rowsOf(rows))
      }, (error: unknown) => {
        settled = true
        clearTimeout(timer)
        reject(markIfSent(error, query))
      })
    })
  }

  return {
    kind: 'postgres',
    get db () { return pool.db },
    rows: (query, callOptions) => {
      const built = dialect.sqlToQuery(query)
      return call(built.sql, built.params, false, callOptions)
    },
    prepare: (_name, query, prepareOptions) => {
      // postgres.js prepares a statement once per connection, keyed by its text (the name drizzle
      // asks for only switches preparing on).
      const built = dialect.sqlToQuery(query)
      return { run: (values) => call(built.sql, fillPlaceholders(built.params, values ?? {}), true, prepareOptions) }
    },
    run: (text, params, callOptions) => call(text, params, true, callOptions),
    async migrate () {
      // One connection of its own, holding the lock for the whole run.
      const migrator = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10, fetch_types: false })
      try {
        await migrator`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`
        await migratePostgres(drizzlePostgres(migrator), { migrationsFolder: migrationsFolder() })
        await migrator`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`
      } finally {
        await migrator.end({ timeout: 5 })
      }
    },
    async listen (channel, onPayload) {
      listener ??= postgres(url, clientOptions(1, 'taskbroker-listen'))
      const subscription = await listener.listen(channel, onPayload)
      // Bounded: on a server that stopped answering, UNLISTEN would wait forever (the listener
      // client is closed right after anyway).
      return { unlisten: async () => { await within(subscription.unlisten(), Math.min(defaultTimeoutMs > 0 ? defaultTimeoutMs : 1_000, 1_000)) } }
    },
    async notify (channel, payload) {
      await call('select pg_notify($1, $2)', [channel, payload], false, undefined)
    },
    leaderLock: (key) => postgresLeaderLock(url, key, clientOptions(1, 'taskbroker-upkeep-lock'), defaultTimeoutMs),
    async close () {
      // Calls still in flight (a pass of upkeep left running at shutdown) get a second.
      pool.retired = true
      await Promise.all([pool.client.end({ timeout: 1 }), listener?.end({ timeout: 1 })])
    }
  }
}

/**
 * Cancels a postgres.js query: off the queue when it waits for a connection, a cancel request when
 * it was sent. postgres.js's own `query.cancel()` drops the promise of the cancel request, whose
 * rejection (the server unreachable, which is when timeouts happen) would then be unhandled.
 */
function cancelQuery (query: unknown): void {
  const q = query as { canceller?: ((query: unknown) => Promise<unknown>) | null }
  const canceller = q.canceller
  if (typeof canceller !== 'function') return
  q.canceller = null
  try {
    Promise.resolve(canceller(query)).catch(() => {})
  } catch {}
}

async function openPglite (options: DatabaseOptions): Promise<Database> {
  const inMemory = options.dataDir.startsWith('memory://')
  // One process per directory: a second broker on it would silently lose tasks (data-dir-lock.ts).
  const lock = inMemory ? undefined : lockDataDir(options.dataDir)
  if (lock?.replaced !== undefined) options.log.warn({ dataDir: lock.dir, previous: lock.replaced }, 'took over the lock of a broker that is gone (it did not shut down cleanly)')
  let client: PGlite
  try {
    client = await PGlite.create(lock?.dir ?? options.dataDir)
  } catch (error) {
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

/**
 * The lock lives on a client of its own with one connection (not a reserved pool connection:
 * postgres.js 3.4 throws an uncatchable error when a reserved connection's server session is
 * killed). Each pass asks for the lock again; it is re-entrant within the session, and if the
 * session died the server released it and the new session simply competes for it again.
 * Both calls are bounded in time: a lock call with no answer drops the client (and with it the
 * session and its lock), so an upkeep pass or a shutdown never hangs on an unreachable server.
 */
function postgresLeaderLock (url: string, key: number, clientOptions: postgres.Options<Record<string, postgres.PostgresType>>, timeoutMs: number): LeaderLock {
  let client: postgres.Sql | undefined
  const limitMs = timeoutMs > 0 ? timeoutMs : 5_000
  const drop = (current: postgres.Sql) => {
    if (client === current) client = undefined
    current.end({ timeout: 0 }).catch(() => {})
  }
  return {
    async acquire () {
      const current = client ??= postgres(url, clientOptions)
      try {
        const rows = await within(current`select pg_try_advisory_lock(${key}) as locked`, limitMs)
        if (rows === undefined) throw new StoreTimeoutError(`no answer from PostgreSQL within ${limitMs} ms (upkeep lock)`)
        return rows[0]?.locked === true
      } catch (error) {
        drop(current)
        throw error
      }
    },
    async release () {
      const current = client
      client = undefined
      if (current === undefined) return
      // At most a second in all: closing the session gives the lock up anyway.
      await within(current`select pg_advisory_unlock_all()`.catch(() => {}), Math.min(limitMs, 500))
      await current.end({ timeout: 0.5 }).catch(() => {})
    }
  }
}

/** `promise`'s value, or undefined when it has not settled within `ms` (it is then left to itself). */
async function within<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  promise.catch(() => {})
  try {
    return await Promise.race([promise, new Promise<undefined>(resolve => { timer = setTimeout(() => resolve(undefined), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * drizzle only prepares server-side when a statement has a name (a named statement is parsed and
 * planned once per connection, not on every call), and its `execute()` for raw SQL never names one. So raw SQL goes
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

/**
 * A result's rows. postgres.js counts the rows of a result per connection and resets the count only
 * when a result completes, so after a result was cut off (connection lost mid-stream) the first
 * result on the reconnected connection starts with as many empty slots; a row is never undefined
 * otherwise, so they are dropped here (test/lifecycle/store-timeout.test.ts reproduces it).
 */
function rowsOf (result: unknown): Row[] {
  if (!Array.isArray(result)) return (result as { rows: Row[] }).rows
  const rows: Row[] = []
  for (let i = 0; i < result.length; i++) {
    const row = result[i] as Row | undefined
    if (row !== undefined) rows.push(row)
  }
  return rows
}

interface PrepareCapable {
  prepareQuery (
    query: { sql: string, params: unknown[] },
    fields: undefined,
    name: string,
    isResponseInArrayMode: boolean
  ): { execute (values?: Record<string, unknown>): Promise<unknown> }
}

/** The innermost message along an error's cause chain (drivers wrap theirs), at most 300 characters. */
export function rootMessage (error: unknown): string {
  let current = error as { cause?: unknown, message?: unknown }
  while (current.cause !== undefined && current.cause !== null && typeof current.cause === 'object') {
    current = current.cause as { cause?: unknown, message?: unknown }
  }
  return typeof current.message === 'string' ? current.message.slice(0, 300) : 'unknown error'
}
