/**
 * What push mode refuses and what it never touches: pull claims and fetch_next answer 409, and a
 * task whose application has no worker is never claimed (upstream cycles such tasks forever).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { fakeWorker, metric, produce, startPushApp, statusCounts, taskRows, until } from './helpers.js'

const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

eachBackend(t, 'pull claims answer 409 in push mode; reports still work', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app, database } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}` })
  const [id] = await produce(t, app, [task({ application: 'shop' })]) as [string]
  await until(t, 'the task is delivered', async () => (await statusCounts(database)).processing === 1)

  const claim = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { limit: 5 } })
  t.equal(claim.statusCode, 409)
  t.equal(claim.json().code, 'TASKBROKER_WRONG_DELIVERY_MODE')

  const withNext = await app.inject({ method: 'POST', url: `/v1/tasks/${id}/status`, payload: { status: 'complete', fetch_next: {} } })
  t.equal(withNext.statusCode, 409, 'a report asking for the next task is refused')
  t.equal(withNext.json().code, 'TASKBROKER_WRONG_DELIVERY_MODE')
  t.equal((await statusCounts(database)).processing, 1, 'and changed nothing')

  const report = await app.inject({ method: 'POST', url: `/v1/tasks/${id}/status`, payload: { status: 'complete' } })
  t.equal(report.statusCode, 200)
  t.same(report.json(), { applied: true, queued: false, task: null })
  const batch = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: [{ id: 'nope', status: 'failure' }] } })
  t.equal(batch.statusCode, 200, 'batch reports work as in pull mode')
  t.equal((await taskRows(database)).length, 0)
})

eachBackend(t, 'a task whose application has no worker is never claimed; it stays pending and shows in /v1/stats', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app, database } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}` })
  const orphans = await produce(t, app, [task({ application: 'nobody' }), task({ application: 'nobody', namespace: 'other' }), task()])
  const shopIds = await produce(t, app, [task({ application: 'shop' }), task({ application: 'shop' })])
  await until(t, 'the shop tasks are delivered', async () => (await statusCounts(database)).processing === 2)
  await sleep(300) // many fetch rounds (backoff 20 ms)

  const rows = new Map((await taskRows(database)).map(r => [r.id, r]))
  for (const id of orphans) {
    t.equal(rows.get(id)?.status, 'pending', 'still pending')
    t.equal(rows.get(id)?.claim_expires_at, null, 'never claimed')
  }
  t.same(worker.received.map(p => p.task.id).sort(), shopIds.slice().sort(), 'only the mapped application\'s tasks were pushed')
  t.equal(await metric(app, 'taskbroker_push_claimed_total'), 2, 'the fetch loops claimed only those')

  const stats = (await app.inject({ method: 'GET', url: '/v1/stats' })).json()
  t.equal(stats.by_status.pending, 3)
  const queues = stats.queues as Array<{ application: string, status: string, count: number }>
  t.equal(queues.filter(q => q.application === 'nobody' && q.status === 'pending').reduce((n, q) => n + q.count, 0), 2, 'visible by application')
})
