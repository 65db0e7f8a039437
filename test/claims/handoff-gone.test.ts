/**
 * A hand-off whose waiter is gone by the time the produce statement answers: the client went away
 * (the task, stored processing for it, is released at once: pending again, no attempt counted) or
 * its wait ran out (it is answered with the task all the same: a claim in flight is never lost).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { NO_UPKEEP, task, testConfig, testStore } from '../helpers/app.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { metric, untilWaiting, type Test } from '../helpers/requests.js'

keepAlive(t)

/** A broker on a real port whose produce statement waits until `open()` is called. */
async function gatedBroker (t: Test, backend: Parameters<typeof createTestDatabase>[1]) {
  const { database } = await createTestDatabase(t, backend)
  const config = testConfig(NO_UPKEEP)
  const store = testStore(database, config)
  let open = () => {}
  let entered = () => {}
  const gate = new Promise<void>(resolve => { open = resolve })
  const reached = new Promise<void>(resolve => { entered = resolve })
  const produce = store.tasks.produce.bind(store.tasks)
  store.tasks.produce = async (...args) => {
    entered()
    await gate
    return await produce(...args)
  }
  const app = await buildApp(config, { store, logger: pino({ level: 'silent' }) })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url, open, reached }
}

eachBackend(t, 'a task handed to a claim whose client went away is released at once', async (t, backend) => {
  const { app, url, open, reached } = await gatedBroker(t, backend)
  const client = new AbortController()
  const waiting = fetch(`${url}/v1/tasks/claim`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ application: 'shop', wait_ms: 20_000 }),
    signal: client.signal
  }).catch((error: unknown) => error)
  await untilWaiting(t, app, 1)
  const produced = app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'gone-1', application: 'shop' })] } })
  await reached
  client.abort()
  await waiting
  // The broker sees the connection close, then the produce statement answers.
  for (let i = 0; i < 400 && await metric(app, 'taskbroker_claim_waiters') > 0; i++) await sleep(5)
  open()
  t.equal((await produced).statusCode, 201)
  let status = ''
  for (let i = 0; i < 400; i++) {
    status = (await app.inject({ method: 'GET', url: '/v1/tasks/gone-1' })).json().status
    if (status === 'pending') break
    await sleep(10)
  }
  t.equal(status, 'pending', 'the task is pending again')
  t.equal(await metric(app, 'taskbroker_tasks_handed_off_total'), 0, 'not counted as handed off')
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'shop' } })
  t.same(claimed.json().tasks.map((x: { id: string }) => x.id), ['gone-1'], 'the next claim gets it')
  t.equal(claimed.json().tasks[0].processing_attempts, 0, 'no attempt counted')
})

eachBackend(t, 'a claim whose wait ran out while its task was being stored for it still gets the task', async (t, backend) => {
  const { app, open, reached } = await gatedBroker(t, backend)
  const waiting = app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'shop', wait_ms: 300 } })
  await untilWaiting(t, app, 1)
  const produced = app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'late-1', application: 'shop' })] } })
  await reached
  await sleep(600) // past the claim's wait_ms
  open()
  t.equal((await produced).statusCode, 201)
  t.same((await waiting).json().tasks.map((x: { id: string }) => x.id), ['late-1'], 'answered with the task')
  t.equal(await metric(app, 'taskbroker_tasks_handed_off_total'), 1)
})
