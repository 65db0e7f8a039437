/**
 * PostgreSQL that stops answering without closing its sockets (a vanished host, a network
 * partition): every store call is bounded by TASKBROKER_DB_CALL_TIMEOUT_MS, a call that timed out
 * never runs later, and the broker serves again by itself as soon as the server answers. The
 * database sits behind a TCP proxy in the test that can go silent: it keeps every socket open and
 * forwards nothing. Needs TASKBROKER_TEST_DATABASE_URL (skipped otherwise).
 */
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { openDatabase, StoreTimeoutError } from '../../src/db/database.js'
import { guard } from '../../src/store/errors.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { testConfig, task } from '../helpers/app.js'
import { createTestDatabase, TEST_DATABASE_URL } from '../helpers/database.js'
import { PgProxy } from '../helpers/pg-proxy.js'

keepAlive(t)

const silent = pino({ level: 'silent' })
const elapsed = (started: number) => Date.now() - started
/** The 500 ms call timeout + 10 s: generous for a loaded machine, still short of every wrong wait (17 s, 30 s, 60 s). */
const BOUND_MS = 500 + 10_000

async function until (check: () => Promise<boolean>, timeoutMs: number): Promise<number | undefined> {
  const started = Date.now()
  while (Date.now() - started < timeoutMs) {
    if (await check()) return Date.now() - started
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return undefined
}

const skip = TEST_DATABASE_URL === undefined || TEST_DATABASE_URL === '' ? 'needs TASKBROKER_TEST_DATABASE_URL' : false

t.test('store calls are bounded in time, never run after they timed out, and recover by themselves', { skip }, async (t) => {
  const { url } = await createTestDatabase(t, 'postgres')
  await (async () => {
    const setup = await openDatabase({ url, dataDir: '', poolSize: 1, log: silent })
    await setup.rows(sql`create table probe (n int)`)
    await setup.close()
  })()
  const proxy = await PgProxy.start(url as string)
  t.teardown(() => proxy.close())
  const database = await openDatabase({ url: proxy.url(url as string), dataDir: '', poolSize: 3, log: silent, callTimeoutMs: 500 })
  t.teardown(() => database.close())
  const direct = await openDatabase({ url: url as string, dataDir: '', poolSize: 1, log: silent })
  t.teardown(() => direct.close())

  t.same(await database.rows(sql`select 1 as one`), [{ one: 1 }], 'the proxy forwards')

  proxy.goSilent()
  let started = Date.now()
  // 100 calls on 3 connections: timed from each call's start they all end after ~500 ms; timed
  // from when each got a connection they would take 34 rounds of 500 ms (17 s). The bound between
  // (call timeout + 10 s) is generous for a loaded machine and still tells the two apart.
  const inserts = await Promise.allSettled(Array.from({ length: 100 }, (_, n) => database.rows(sql`insert into probe values (${n})`)))
  const waited = elapsed(started)
  t.ok(inserts.every(r => r.status === 'rejected' && r.reason instanceof StoreTimeoutError), 'every call during the silence failed with StoreTimeoutError')
  t.ok(waited < BOUND_MS, `…after the 500 ms call timeout, not one round after another (${waited} ms for 100 calls)`)
  const mapped = await guard(() => database.rows(sql`select 1`)).catch((error: unknown) => error)
  t.match(mapped, { code: 'TASKBROKER_STORE_UNAVAILABLE', statusCode: 503 }, 'the store guard answers a timeout as store unavailable (503)')
  started = Date.now()
  const sleeping = await database.rows(sql`select pg_sleep(60)`).catch((error: unknown) => error)
  t.ok(sleeping instanceof StoreTimeoutError && elapsed(started) < BOUND_MS, 'a statement that never answers is bounded too')

  proxy.restore()
  const recoveredMs = await until(async () => {
    try {
      await database.rows(sql`select 1`)
      return true
    } catch {
      return false
    }
  }, BOUND_MS)
  t.ok(recoveredMs !== undefined, `calls succeed again soon after the server answers (${String(recoveredMs)} ms)`)

  // Whatever was queued or connecting when the calls timed out must never run now.
  await new Promise(resolve => setTimeout(resolve, 1_500))
  t.same(await direct.rows(sql`select count(*)::int as n from probe`), [{ n: 0 }], 'no statement that timed out ran after the server came back')

  // A statement that runs too long on a healthy server is cancelled there, and the pool stays usable.
  started = Date.now()
  const slow = await database.rows(sql`select pg_sleep(60)`).catch((error: unknown) => error)
  t.ok(slow instanceof StoreTimeoutError && elapsed(started) < BOUND_MS, 'a slow statement is given up after the timeout')
  const cancelledMs = await until(async () => {
    const rows = await direct.rows(sql`select count(*)::int as n from pg_stat_activity where query like 'select pg_sleep(60)%' and state = 'active'`)
    return rows[0]?.n === 0
  }, BOUND_MS)
  t.ok(cancelledMs !== undefined, 'the server stopped running it (cancelled)')
  t.same(await database.rows(sql`select 2 as two`), [{ two: 2 }], 'the pool serves the next call')
})

t.test('a result cut off in the middle leaves nothing behind for the next statement on the connection', { skip }, async (t) => {
  // postgres.js counts a result's rows per connection and resets the count only when a result
  // completes: after a cut it reconnected with the count where the cut left it, and the next
  // result started with that many empty slots (seen as a 500 in the outage fault test).
  const { url } = await createTestDatabase(t, 'postgres')
  const proxy = await PgProxy.start(url as string)
  t.teardown(() => proxy.close())
  const database = await openDatabase({ url: proxy.url(url as string), dataDir: '', poolSize: 1, log: silent, callTimeoutMs: 5_000 })
  t.teardown(() => database.close())
  t.same(await database.rows(sql`select 1 as one`), [{ one: 1 }], 'the proxy forwards')
  proxy.cutOnceAfter(256 * 1024)
  const cut = await database.rows(sql`select g, repeat('x', 200) as pad from generate_series(1, 50000) g`).catch((error: unknown) => error)
  t.ok(cut instanceof Error, 'the cut-off statement fails')
  let first: unknown
  const back = await until(async () => {
    try {
      first = await database.rows(sql`select n from generate_series(1, 3) n`)
      return true
    } catch {
      return false
    }
  }, BOUND_MS)
  t.ok(back !== undefined, 'the connection is back')
  t.same(first, [{ n: 1 }, { n: 2 }, { n: 3 }], 'the first result after the cut has its rows and nothing else')
  t.same(await database.rows(sql`select 2 as two`), [{ two: 2 }], 'so does the next')
})

t.test('a server that goes silent right after a connection starts up costs a timeout, never an unhandled rejection', { skip }, async (t) => {
  // postgres.js runs a query of its own on every new connection unless fetch_types is off (array
  // type oids), from a handler that drops the promise: were that query cut off by the pool being
  // closed, its rejection would be unhandled — and the server (close-with-grace) would shut down.
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
  const { url } = await createTestDatabase(t, 'postgres')
  const proxy = await PgProxy.start(url as string, { silentOnceReady: true })
  t.teardown(() => proxy.close())
  const database = await openDatabase({ url: proxy.url(url as string), dataDir: '', poolSize: 1, log: silent, callTimeoutMs: 300 })
  const first = await database.rows(sql`select 1`).catch((error: unknown) => error)
  t.ok(first instanceof StoreTimeoutError, 'the call times out')
  // The stuck pool is replaced and closed (its connections destroyed after the close timeout);
  // then the database itself is closed. Wait out both.
  const second = await database.rows(sql`select 1`).catch((error: unknown) => error)
  t.ok(second instanceof StoreTimeoutError, 'so does the next one, on a fresh pool')
  await new Promise(resolve => setTimeout(resolve, 1_500))
  await database.close()
  await new Promise(resolve => setTimeout(resolve, 1_500))
  t.same(unhandled.map(String), [], 'no unhandled rejection while the pools were closed')
})

t.test('a broker on a database that went silent answers 503 + Retry-After at once and closes in time', { skip }, async (t) => {
  const { url } = await createTestDatabase(t, 'postgres')
  const proxy = await PgProxy.start(url as string)
  t.teardown(() => proxy.close())
  const config = testConfig({
    TASKBROKER_DATABASE_URL: proxy.url(url as string),
    TASKBROKER_DB_CALL_TIMEOUT_MS: '500',
    TASKBROKER_DB_UPKEEP_CALL_TIMEOUT_MS: '30000',
    TASKBROKER_UPKEEP_INTERVAL_MS: '50',
    TASKBROKER_STATUS_ACK_TIMEOUT_MS: '1000',
    TASKBROKER_SHUTDOWN_TIMEOUT_MS: '2000',
    TASKBROKER_RETRY_AFTER_SEC: '3'
  })
  const app = await buildApp(config, { logger: silent })
  let closed = false
  t.teardown(async () => { if (!closed) await app.close() })
  await app.ready()
  t.equal((await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task()] } })).statusCode, 201, 'serving before the silence')

  proxy.goSilent()
  // Upkeep runs every 50 ms: give a pass the time to get stuck on the silent server.
  await new Promise(resolve => setTimeout(resolve, 200))
  for (const [name, request] of [
    ['produce', { method: 'POST' as const, url: '/v1/tasks', payload: { tasks: [task()] } }],
    ['claim', { method: 'POST' as const, url: '/v1/tasks/claim', payload: { wait_ms: 30_000 } }],
    ['read', { method: 'GET' as const, url: '/v1/tasks/nope' }],
    ['stats', { method: 'GET' as const, url: '/v1/stats' }]
  ] as const) {
    const started = Date.now()
    const response = await app.inject(request)
    t.equal(response.statusCode, 503, `${name}: 503`)
    t.equal(response.headers['retry-after'], '3', `${name}: with Retry-After`)
    // Not held up by the 30 s upkeep statement bound or the claim's 30 s wait.
    t.ok(elapsed(started) < BOUND_MS, `${name}: answered after the call timeout, not 30 s (${elapsed(started)} ms)`)
  }

  // Shutdown: the upkeep pass is stuck on a 30 s statement bound; close must not wait for it.
  const started = Date.now()
  await app.close()
  closed = true
  t.ok(elapsed(started) < 2_000 + 10_000, `close finished within the shutdown timeout + 10 s, not after the 30 s statement (${elapsed(started)} ms)`)
})
