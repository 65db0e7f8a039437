/**
 * A report's `fetch_next` can long-poll (`wait_ms`): the report is written first, then, when no
 * task was ready, the request waits for the next one like a claim does. One request per task for a
 * worker that is caught up, instead of a report and then a claim.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import pino from 'pino'
import { buildApp } from '../../src/http/app.js'
import { buildTestApp, NO_UPKEEP, task, testConfig, testStore } from '../helpers/app.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError, metric, untilWaiting, type Test } from '../helpers/requests.js'

keepAlive(t)

const produce = (app: FastifyInstance, tasks: Array<Record<string, unknown>>): Promise<LightMyRequestResponse> =>
  app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })
const report = (app: FastifyInstance, id: string, body: Record<string, unknown>): Promise<LightMyRequestResponse> =>
  app.inject({ method: 'POST', url: `/v1/tasks/${id}/status`, payload: body })

/** Produces one task of `shop` and claims it: its lease. */
async function held (t: Test, app: FastifyInstance, id: string): Promise<string> {
  t.equal((await produce(app, [task({ id, application: 'shop' })])).statusCode, 201)
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'shop' } })
  t.equal(claimed.json().tasks[0]?.id, id, `${id} claimed`)
  return claimed.json().tasks[0].lease
}

eachBackend(t, 'a report with fetch_next.wait_ms is written at once and waits for the next task', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const lease = await held(t, app, 'first')
  const answer = report(app, 'first', { status: 'complete', lease, fetch_next: { application: 'shop', wait_ms: 20_000 } })
  await untilWaiting(t, app, 1)
  const first = await app.inject({ method: 'GET', url: '/v1/tasks/first' })
  t.equal(first.statusCode, 404, 'the report was written before the wait: the completed task is gone')

  t.equal((await produce(app, [task({ id: 'second', application: 'shop' })])).statusCode, 201)
  const res = await answer
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.applied, true, 'the report was applied')
  t.equal(body.task?.id, 'second', 'the next task arrived in the answer')
  t.match(body.task?.lease, /^[0-9a-f-]{36}$/, 'under a lease')
  t.equal(await metric(app, 'taskbroker_tasks_handed_off_total'), 1, 'handed off by the produce, as to a claim')
  t.equal(await metric(app, 'taskbroker_claim_waiters'), 0, 'no one waits any more')
})

eachBackend(t, 'a task ready at report time is answered at once; nothing ready within wait_ms: task null', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const lease = await held(t, app, 'a')
  t.equal((await produce(app, [task({ id: 'b', application: 'shop' })])).statusCode, 201)
  const ready = await report(app, 'a', { status: 'complete', lease, fetch_next: { application: 'shop', wait_ms: 20_000 } })
  t.equal(ready.json().task?.id, 'b', 'the ready task, claimed by the report\'s own statement')

  const none = await report(app, 'b', { status: 'complete', lease: ready.json().task.lease, fetch_next: { application: 'shop', wait_ms: 200 } })
  t.equal(none.statusCode, 200)
  t.same({ applied: none.json().applied, task: none.json().task }, { applied: true, task: null }, 'applied, and no task came')
})

eachBackend(t, 'a task produced after the report\'s statement looked, before its wait began, is not missed', async (t, backend) => {
  const { database } = await createTestDatabase(t, backend)
  // No re-check for a minute: only the announcement can bring the task in time.
  const config = testConfig({ ...NO_UPKEEP, TASKBROKER_CLAIM_RECHECK_MS: '60000' })
  const store = testStore(database, config)
  let open = () => {}
  let entered = () => {}
  const gate = new Promise<void>(resolve => { open = resolve })
  const reached = new Promise<void>(resolve => { entered = resolve })
  const flush = store.tasks.setStatusManyAndClaim.bind(store.tasks)
  store.tasks.setStatusManyAndClaim = async (...args) => {
    const result = await flush(...args)
    entered()
    await gate
    return result
  }
  const app = await buildApp(config, { store, logger: pino({ level: 'silent' }) })
  t.teardown(() => app.close())
  const lease = await held(t, app, 'x')
  const answer = report(app, 'x', { status: 'complete', lease, fetch_next: { application: 'shop', wait_ms: 5_000 } })
  await reached
  t.equal((await produce(app, [task({ id: 'y', application: 'shop' })])).statusCode, 201, 'produced while nobody waits')
  open()
  t.equal((await answer).json().task?.id, 'y', 'the wait looked again at once')
})

eachBackend(t, 'a stale report does not wait: 409 TASKBROKER_LEASE_STALE', async (t, backend) => {
  const { app, config } = await buildTestApp(t, backend, NO_UPKEEP)
  await held(t, app, 's')
  // Were it to wait, the answer would come after the longest wait there is.
  const res = await report(app, 's', { status: 'complete', lease: '00000000-0000-4000-8000-000000000000', fetch_next: { application: 'shop', wait_ms: config.claims.maxWaitMs } })
  assertError(t, res, 409, 'TASKBROKER_LEASE_STALE')
  t.equal(await metric(app, 'taskbroker_claim_waiters'), 0, 'nothing waits')
})

eachBackend(t, 'fetch_next.wait_ms is bounded like a claim\'s; push mode refuses fetch_next', async (t, backend) => {
  const { app, config } = await buildTestApp(t, backend, NO_UPKEEP)
  const lease = await held(t, app, 'w')
  const tooLong = await report(app, 'w', { status: 'complete', lease, fetch_next: { application: 'shop', wait_ms: config.claims.maxWaitMs + 1 } })
  assertError(t, tooLong, 400, 'TASKBROKER_INVALID_REQUEST', 'wait_ms')
  const negative = await report(app, 'w', { status: 'complete', lease, fetch_next: { application: 'shop', wait_ms: -1 } })
  assertError(t, negative, 400, 'TASKBROKER_INVALID_REQUEST', 'wait_ms')
})

eachBackend(t, 'a client that goes away stops the wait; a task produced after it stays pending', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const lease = await held(t, app, 'g')
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const client = new AbortController()
  const answer = fetch(`${url}/v1/tasks/g/status`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ status: 'complete', lease, fetch_next: { application: 'shop', wait_ms: 20_000 } }),
    signal: client.signal
  }).catch((error: unknown) => error)
  await untilWaiting(t, app, 1)
  client.abort()
  await answer
  for (let i = 0; i < 2000 && await metric(app, 'taskbroker_claim_waiters') > 0; i++) await sleep(10)
  t.equal(await metric(app, 'taskbroker_claim_waiters'), 0, 'the wait ended with the client')
  t.equal((await produce(app, [task({ id: 'after', application: 'shop' })])).statusCode, 201)
  t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/after' })).json().status, 'pending', 'handed to no one')
  t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/g' })).statusCode, 404, 'the report was written all the same')
})
