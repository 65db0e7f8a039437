/** With the database unreachable the broker answers 503 + Retry-After at once: never a hang, never a 500. */
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { testConfig } from '../helpers/app.js'

t.test('requests get 503 with Retry-After while PostgreSQL is unreachable', async (t) => {
  const config = testConfig({
    TASKBROKER_DATABASE_URL: 'postgres://postgres@127.0.0.1:1/unreachable',
    TASKBROKER_RETRY_AFTER_SEC: '7',
    TASKBROKER_STATUS_ACK_TIMEOUT_MS: '1000',
    TASKBROKER_SHUTDOWN_TIMEOUT_MS: '1000'
  })
  const app = await buildApp(config, { logger: pino({ level: 'silent' }) })
  t.teardown(() => app.close())

  const produce = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [{ namespace: 'n', taskname: 't' }] } })
  t.equal(produce.statusCode, 503)
  t.equal(produce.headers['retry-after'], '7')
  t.match(produce.json(), { statusCode: 503, code: 'TASKBROKER_STORE_UNAVAILABLE', error: 'Service Unavailable' })

  const claim = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { wait_ms: 5000 } })
  t.equal(claim.statusCode, 503, 'a long-poll fails fast instead of waiting on a dead store')

  const report = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: [{ id: 'x', status: 'complete' }] } })
  t.equal(report.statusCode, 503)
  t.equal(report.headers['retry-after'], '7')

  const ready = await app.inject('/readyz')
  t.equal(ready.statusCode, 503)
  t.equal((await app.inject('/healthz')).statusCode, 200, 'the process itself is alive')
})
