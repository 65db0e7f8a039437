/** With the database unreachable the broker answers 503 + Retry-After at once: never a hang, never a 500. */
import pino from 'pino'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/http/app.js'
import { testConfig } from '../helpers/app.js'

/** A broker whose PostgreSQL nobody listens for; closed when the test ends. */
async function unreachableApp (t: Test, env: Record<string, string>) {
  const config = testConfig({ TASKBROKER_DATABASE_URL: 'postgres://postgres@127.0.0.1:1/unreachable', TASKBROKER_SHUTDOWN_TIMEOUT_MS: '1000', ...env })
  const app = await buildApp(config, { logger: pino({ level: 'silent' }) })
  t.teardown(() => app.close())
  return app
}

t.test('requests get 503 with Retry-After while PostgreSQL is unreachable', async (t) => {
  const app = await unreachableApp(t, { TASKBROKER_RETRY_AFTER_SEC: '7', TASKBROKER_STATUS_ACK_TIMEOUT_MS: '1000' })

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

t.test('once status flushes have failed for a while, a report awaiting a flushed ack is refused at once, not after the ack timeout', async (t) => {
  const app = await unreachableApp(t, { TASKBROKER_STATUS_ACK_TIMEOUT_MS: '1500' })

  // The first report finds out: its flushes fail (retried) until its ack timeout.
  const first = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: [{ id: 'a', status: 'complete' }] } })
  t.equal(first.statusCode, 503)
  t.equal(first.json().code, 'TASKBROKER_STATUS_ACK_TIMEOUT', 'the first report waited for its flush')

  // Later ones are answered from what the broker knows, single and batch alike (the reason, with
  // the time the store went down, is in the log; answers name no database detail).
  const single = await app.inject({ method: 'POST', url: '/v1/tasks/b/status', payload: { status: 'complete', fetch_next: {} } })
  t.equal(single.statusCode, 503)
  t.match(single.json(), { code: 'TASKBROKER_STORE_UNAVAILABLE', message: 'The task store is unavailable; retry later' })
  t.ok(single.headers['retry-after'] !== undefined, 'with Retry-After')
  const batch = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: [{ id: 'c', status: 'complete' }] } })
  t.equal(batch.statusCode, 503)
  t.equal(batch.json().code, 'TASKBROKER_STORE_UNAVAILABLE')
})

t.test('with ack "queued" reports are still queued while the store is down (bounded by the queue)', async (t) => {
  const app = await unreachableApp(t, { TASKBROKER_STATUS_ACK: 'queued' })
  const first = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: [{ id: 'a', status: 'complete' }] } })
  t.same(first.json(), { applied: 0, queued: 1, not_found: [] })
  // Its flushes fail for longer than the half second after which flushed-ack reports are refused.
  await new Promise(resolve => setTimeout(resolve, 800))
  const later = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: [{ id: 'b', status: 'complete' }] } })
  t.equal(later.statusCode, 200, 'accepted into the queue, as queued ack promises')
  t.same(later.json(), { applied: 0, queued: 1, not_found: [] })
})
