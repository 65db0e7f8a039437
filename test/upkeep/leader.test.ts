/** Several brokers on one database: upkeep runs on one of them at a time (advisory lock). */
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { buildTestApp, testConfig } from '../helpers/app.js'
import { createTestDatabase, TEST_DATABASE_URL } from '../helpers/database.js'

t.test('two brokers on one PostgreSQL take turns at upkeep', { skip: TEST_DATABASE_URL === undefined ? 'needs TASKBROKER_TEST_DATABASE_URL' : false }, async (t) => {
  const { url } = await createTestDatabase(t, 'postgres')
  const config = testConfig({ TASKBROKER_DATABASE_URL: url as string, TASKBROKER_UPKEEP_ENABLED: 'false' })
  const first = await buildApp(config, { logger: pino({ level: 'silent' }) })
  const second = await buildApp(config, { logger: pino({ level: 'silent' }) })
  t.teardown(async () => { await first.close(); await second.close() })

  const now = new Date()
  t.equal((await first.broker.upkeep.runOnce(now)).leader, true, 'the first broker takes the upkeep lock')
  t.equal((await second.broker.upkeep.runOnce(now)).leader, false, 'the second one skips its pass')
  t.equal((await first.broker.upkeep.runOnce(now)).leader, true, 'the holder keeps the lock from pass to pass')
  const metrics = await second.inject('/metrics')
  t.match(metrics.body, /taskbroker_upkeep_leader 0/)

  await first.close()
  t.equal((await second.broker.upkeep.runOnce(now)).leader, true, 'when the holder stops, the other broker takes over')
})

t.test('the embedded store always runs its own upkeep', async (t) => {
  const { app } = await buildTestApp(t, 'pglite', { TASKBROKER_UPKEEP_ENABLED: 'false' })
  t.equal((await app.broker.upkeep.runOnce(new Date())).leader, true)
})

t.test('upkeep counts as late when no pass completed for five intervals (at least 5 s)', async (t) => {
  const { app } = await buildTestApp(t, 'pglite', { TASKBROKER_UPKEEP_INTERVAL_MS: '60000' })
  await app.ready() // starts upkeep; its first pass is a minute away
  t.equal(app.broker.upkeep.lateReason(Date.now()), null, 'just started: on time')
  t.equal(app.broker.upkeep.lateReason(Date.now() + 200_000), null, 'five intervals of a minute have not passed')
  t.match(app.broker.upkeep.lateReason(Date.now() + 301_000), /upkeep has not completed a pass for 30\d s/)
  await app.broker.upkeep.runOnce(new Date())
  t.equal(app.broker.upkeep.lateReason(Date.now()), null, 'a completed pass makes it current again')
})
