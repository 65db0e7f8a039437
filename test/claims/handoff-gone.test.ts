/**
 * A hand-off whose waiter is gone by the time the produce statement answers: the client went away
 * (the task, stored processing for it, is released at once: pending again, no attempt counted) or
 * its wait ran out (it is answered with the task all the same: a claim in flight is never lost).
 * The same for a long-poll's claim statement whose waiter's client went away.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import t from 'tap'
import { toActivation } from '../../src/domain/activation.js'
import { buildApp } from '../../src/http/app.js'
import { NO_UPKEEP, task, testConfig, testStore } from '../helpers/app.js'
import { createTestDatabase, eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { metric, untilWaiting, type Test } from '../helpers/requests.js'

keepAlive(t)

/** A broker on a real port whose produce statement (or second claim statement) waits until `open()` is called. */
async function gatedBroker (t: Test, backend: Parameters<typeof createTestDatabase>[1], gated: 'produce' | 'claim' = 'produce') {
  const { database } = await createTestDatabase(t, backend)
  // The claim gate needs the room's re-checks; the produce gate must not have them: a produce
  // cannot hold a waiter whose re-check statement is running, so on a busy machine it would
  // sometimes store the task pending instead of handing it off.
  const config = testConfig({ ...NO_UPKEEP, TASKBROKER_CLAIM_RECHECK_MS: gated === 'claim' ? '50' : '600000' })
  const store = testStore(database, config)
  let open = () => {}
  let entered = () => {}
  const gate = new Promise<void>(resolve => { open = resolve })
  const reached = new Promise<void>(resolve => { entered = resolve })
  if (gated === 'produce') {
    // Produce stores through the coalescer, which calls produceMany.
    const produceMany = store.tasks.produceMany.bind(store.tasks)
    store.tasks.produceMany = async (...args) => {
      entered()
      await gate
      return await produceMany(...args)
    }
  } else {
    const claim = store.tasks.claim.bind(store.tasks)
    let calls = 0
    store.tasks.claim = async (...args) => {
      if (++calls > 1) {
        entered()
        await gate
      }
      return await claim(...args)
    }
  }
  const app = await buildApp(config, { store, logger: pino({ level: 'silent' }) })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url, open, reached, store }
}

/** A long-poll over a real connection, which `abort()` closes. */
function longPoll (url: string, body: Record<string, unknown>) {
  const client = new AbortController()
  const answer = fetch(`${url}/v1/tasks/claim`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: client.signal
  }).catch((error: unknown) => error)
  return { abort: () => client.abort(), answer }
}

/** Until the broker has seen every client connection close (generously bounded). */
async function untilClosed (app: FastifyInstance): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const open = await new Promise<number>((resolve, reject) => app.server.getConnections((error, count) => error === null ? resolve(count) : reject(error)))
    if (open === 0) break
    await sleep(10)
  }
  await sleep(20) // the response's close handlers run with the socket's
}

async function untilStatus (app: FastifyInstance, id: string, wanted: string): Promise<string> {
  let status = ''
  for (let i = 0; i < 400; i++) {
    status = (await app.inject({ method: 'GET', url: `/v1/tasks/${id}` })).json().status
    if (status === wanted) break
    await sleep(10)
  }
  return status
}

eachBackend(t, 'a task handed to a claim whose client went away is released at once', async (t, backend) => {
  const { app, url, open, reached } = await gatedBroker(t, backend)
  const poll = longPoll(url, { application: 'shop', wait_ms: 20_000 })
  await untilWaiting(t, app, 1)
  const produced = app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [task({ id: 'gone-1', application: 'shop' })] } })
  await reached
  poll.abort()
  await poll.answer
  await untilClosed(app) // its waiter stays held until the produce answers
  open()
  t.equal((await produced).statusCode, 201)
  for (let i = 0; i < 2000 && await metric(app, 'taskbroker_tasks_released_total') < 1; i++) await sleep(10)
  t.equal(await metric(app, 'taskbroker_tasks_released_total'), 1, 'released')
  t.equal(await untilStatus(app, 'gone-1', 'pending'), 'pending', 'the task is pending again')
  t.equal(await metric(app, 'taskbroker_tasks_handed_off_total'), 0, 'not counted as handed off')
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'shop' } })
  t.same(claimed.json().tasks.map((x: { id: string }) => x.id), ['gone-1'], 'the next claim gets it')
  t.equal(claimed.json().tasks[0].processing_attempts, 0, 'no attempt counted')
})

eachBackend(t, 'a task a long-poll\'s claim statement took for a client that went away is released at once', async (t, backend) => {
  const { app, url, open, reached, store } = await gatedBroker(t, backend, 'claim')
  const poll = longPoll(url, { application: 'shop', wait_ms: 20_000 })
  await untilWaiting(t, app, 1)
  // Stored without a wake-up: the room's next re-check (50 ms) claims it, and waits at the gate.
  await store.tasks.produce([toActivation({ id: 'gone-2', application: 'shop', namespace: 'ns', taskname: 'x' }, new Date())], new Date())
  await reached
  poll.abort()
  await poll.answer
  await untilClosed(app)
  open()
  for (let i = 0; i < 2000 && await metric(app, 'taskbroker_tasks_released_total') < 1; i++) await sleep(10)
  t.equal(await metric(app, 'taskbroker_tasks_released_total'), 1, 'released')
  t.equal(await untilStatus(app, 'gone-2', 'pending'), 'pending', 'the task is pending again')
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'shop' } })
  t.same(claimed.json().tasks.map((x: { id: string }) => x.id), ['gone-2'], 'the next claim gets it')
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
