/** The PostgreSQL connection (postgres.js), loaded only when a database URL is configured. */
import { fillPlaceholders } from 'drizzle-orm'
import { PgDialect } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import { migrationsFolder } from '../paths.js'
import { markIfSent, StoreTimeoutError } from './call-errors.js'
import { rowsOf, within } from './drizzle-calls.js'
import { PLANNER_SETTINGS } from './planner.js'
import { LISTENER_APPLICATION_NAME } from './listener.js'
import { postgresTarget } from './postgres-url.js'
import * as schema from './schema.js'
import type { CallOptions, Database, DatabaseOptions, Db, LeaderLock, Row } from './types.js'

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
export function openPostgres (givenUrl: string, options: DatabaseOptions): Database {
  const defaultTimeoutMs = options.callTimeoutMs ?? 0
  const dialect = new PgDialect()
  // `?host=/socket/dir&port=N` as libpq reads them.
  const { url, host, port } = postgresTarget(givenUrl)
  const hostOption = { ...(host === undefined ? {} : { host }), ...(port === undefined ? {} : { port }) }
  const clientOptions = (max: number, applicationName: string): postgres.Options<Record<string, postgres.PostgresType>> => ({
    ...hostOption,
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
      idle_in_transaction_session_timeout: 60_000,
      // The claim's estimated cost (a LIMIT over a large partial index, the queue-control CTEs)
      // passes jit_above_cost, and compiling it took ~170 ms of a statement that runs in ~7 ms:
      // the unfiltered single loop fell to ~700 tasks/s. Short OLTP statements never gain from JIT.
      jit: 'off',
      ...PLANNER_SETTINGS
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
      const migrator = postgres(url, { ...hostOption, max: 1, onnotice: () => {}, connect_timeout: 10, fetch_types: false })
      try {
        await migrator`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`
        await migratePostgres(drizzlePostgres(migrator), { migrationsFolder: migrationsFolder() })
        await migrator`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`
      } finally {
        await migrator.end({ timeout: 5 })
      }
    },
    async listen (channel, onPayload) {
      listener ??= postgres(url, clientOptions(1, LISTENER_APPLICATION_NAME))
      const subscription = await listener.listen(channel, onPayload)
      // Bounded: on a server that stopped answering, UNLISTEN would wait forever (the listener
      // client is closed right after anyway).
      return { unlisten: async () => { await within(subscription.unlisten(), Math.min(defaultTimeoutMs > 0 ? defaultTimeoutMs : 1_000, 1_000)) } }
    },
    async notify (channel, payload) {
      await call('select pg_notify($1, $2)', [channel, payload], true, undefined)
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
