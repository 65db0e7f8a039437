/**
 * A produce whose statement reached PostgreSQL but whose answer did not come back within
 * TASKBROKER_DB_CALL_TIMEOUT_MS may have committed: the broker says so (503
 * TASKBROKER_OUTCOME_UNKNOWN) with the ids it gave the tasks, and producing them again with those
 * ids stores nothing twice. The database sits behind a proxy that can hold back every answer while
 * still forwarding statements. Needs TASKBROKER_TEST_DATABASE_URL (PGlite has no call timeout).
 */
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { openDatabase } from '../../src/db/database.js'
import { NO_UPKEEP, task, testConfig } from '../helpers/app.js'
import { createTestDatabase, TEST_DATABASE_URL } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { PgProxy } from '../helpers/pg-proxy.js'

keepAlive(t)

const skip = TEST_DATABASE_URL === undefined || TEST_DATABASE_URL === '' ? 'needs TASKBROKER_TEST_DATABASE_URL' : false

t.test('a produce that committed but whose answer came too late says outcome unknown, with ids that make a retry safe', { skip }, async (t) => {
  const { url } = await createTestDatabase(t, 'postgres')
  const proxy = await PgProxy.start(url as string)
  t.teardown(() => proxy.close())
  const direct = await openDatabase({ url: url as string, dataDir: '', poolSize: 1, log: pino({ level: 'silent' }) })
  t.teardown(() => direct.close())
  const app = await buildApp(testConfig({
    ...NO_UPKEEP,
    TASKBROKER_DATABASE_URL: proxy.url(url as string),
    TASKBROKER_DB_CALL_TIMEOUT_MS: '3000', // ample for 4 inserts, so the cancel never catches the statement still running
    // One connection, already open and with the insert prepared when the answers are held: the
    // statement surely reaches the server (a call still waiting for a connection is never sent,
    // and is answered TASKBROKER_STORE_UNAVAILABLE: nothing changed).
    TASKBROKER_DB_POOL_SIZE: '1',
    TASKBROKER_RETRY_AFTER_SEC: '2'
  }), { logger: pino({ level: 'silent' }) })
  t.teardown(() => app.close())
  const produce = (tasks: unknown[]) => app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })
  t.equal((await produce([task({ id: 'before' })])).statusCode, 201, 'the proxy forwards')
  // Answered after the produce's own NOTIFY on the one connection: nothing else is in flight.
  t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/before' })).statusCode, 200)

  proxy.hold()
  const tasks = Array.from({ length: 4 }, (_, i) => task({ taskname: `tests.unknown.${i}`, parameters: { n: i } }))
  const res = await produce(tasks)
  proxy.release()
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '2', 'with Retry-After')
  const body = res.json()
  t.equal(body.code, 'TASKBROKER_OUTCOME_UNKNOWN')
  t.match(body.message, /may or may not be stored/)
  t.equal(body.ids.length, 4, 'the answer lists the id of every task')
  t.equal(new Set(body.ids).size, 4)

  const stored = async () => (await direct.rows(sql`select count(*)::int as n from inflight_tasks where id in ${body.ids}`))[0]?.n
  t.equal(await stored(), 4, 'the statement had committed: the tasks are stored (hence no "nothing changed")')

  const retried = await produce(tasks.map((one, i) => ({ ...one, id: body.ids[i] })))
  t.equal(retried.statusCode, 201, 'producing them again with those ids is answered')
  t.same({ inserted: retried.json().inserted, duplicates: retried.json().duplicates }, { inserted: 0, duplicates: body.ids }, 'and stores nothing twice')
  t.equal(await stored(), 4)
  t.same(await direct.rows(sql`select count(*)::int as n from inflight_tasks`), [{ n: 5 }], 'no other row appeared')
})
