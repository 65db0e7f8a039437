/**
 * Workers that are down, slow or refusing: their tasks go back to pending at once with no attempt
 * counted, the worker is paused, and every task is delivered once the worker recovers — none lost.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { fakeWorker, freePort, metric, produce, startPushApp, statusCounts, taskRows, unique, until } from './helpers.js'

const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

const shopTasks = (n: number) => Array.from({ length: n }, () => task({ application: 'shop' }))

eachBackend(t, 'a worker that is down: tasks stay pending (no attempt counted) and are delivered once it is up', async (t, backend) => {
  const port = await freePort()
  const { app, database } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=http://127.0.0.1:${port}/push` })
  const ids = await produce(t, app, shopTasks(20))
  await until(t, 'pushes fail as unreachable', async () => await metric(app, 'taskbroker_push_total{result="unreachable"}') >= 3)
  await sleep(100)
  const rows = await taskRows(database)
  t.equal(rows.length, 20, 'nothing lost')
  t.ok(rows.every(r => r.status === 'pending' || r.status === 'claimed'), 'never processing while the worker is down')
  t.ok(rows.every(r => r.processing_attempts === 0), 'failed pushes count no attempt')
  t.ok(await metric(app, 'taskbroker_push_claimed_total') < 200, 'the paused worker\'s tasks are not claimed over and over')

  const worker = await fakeWorker(t, { port, complete: true })
  await until(t, 'every task completes once the worker is up', async () => (await taskRows(database)).length === 0 && unique(worker.completed).length === 20)
  t.same(unique(worker.completed).sort(), ids.slice().sort(), 'each task delivered and completed')
})

eachBackend(t, 'a refusing worker (503): tasks go back to pending at once, the worker backs off, then gets them all', async (t, backend) => {
  const worker = await fakeWorker(t, { mode: 'refuse' })
  const { app, database } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
    TASKBROKER_PUSH_WORKER_BACKOFF_MS: '50',
    TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS: '400'
  })
  const ids = await produce(t, app, shopTasks(10))
  await until(t, 'some pushes were refused', async () => await metric(app, 'taskbroker_push_total{result="refused"}') >= 2)
  await until(t, 'the refused tasks are pending again, not claimed until their lease', async () => {
    const counts = await statusCounts(database)
    return counts.pending === 10
  })
  const refusedSoFar = worker.received.length
  await sleep(300)
  t.ok(worker.received.length - refusedSoFar < 30, `backing off: ${worker.received.length - refusedSoFar} pushes in 300 ms, not a storm`)
  t.ok((await taskRows(database)).every(r => r.processing_attempts === 0), 'refusals count no attempt')

  worker.mode = 'accept'
  await until(t, 'all ten are processing', async () => (await statusCounts(database)).processing === 10)
  t.same(unique(worker.accepted).sort(), ids.slice().sort(), 'every task delivered once the worker accepts')
  t.equal(worker.accepted.length, 10, 'and none twice')
})

eachBackend(t, 'a worker answering 500: treated like a refusal, nothing lost', async (t, backend) => {
  const worker = await fakeWorker(t, { mode: 'reject' })
  const { app, database } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}` })
  await produce(t, app, shopTasks(5))
  await until(t, 'pushes were rejected', async () => await metric(app, 'taskbroker_push_total{result="rejected"}') >= 1)
  worker.mode = 'accept'
  await until(t, 'all five are processing', async () => (await statusCounts(database)).processing === 5)
})

eachBackend(t, 'a slow worker: pushes time out, tasks return to pending and are delivered when it is fast again', async (t, backend) => {
  const worker = await fakeWorker(t, { delayMs: 1_000 })
  const { app, database } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
    TASKBROKER_PUSH_TIMEOUT_MS: '200'
  })
  const ids = await produce(t, app, shopTasks(6))
  await until(t, 'pushes time out', async () => await metric(app, 'taskbroker_push_total{result="timeout"}') >= 1)
  await until(t, 'timed-out tasks are pending again', async () => (await statusCounts(database)).pending === 6)
  t.ok((await taskRows(database)).every(r => r.processing_attempts === 0), 'timeouts count no attempt')

  worker.delayMs = 0
  await until(t, 'all six are processing', async () => (await statusCounts(database)).processing === 6)
  // A push that timed out may still have reached the worker: at least once, never lost.
  t.same(unique(worker.received.map(p => p.task.id)).sort(), ids.slice().sort(), 'every task reached the worker')
})

eachBackend(t, 'one worker failing does not hold up another application\'s worker', async (t, backend) => {
  const port = await freePort()
  const mail = await fakeWorker(t)
  const { app, database } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=http://127.0.0.1:${port}/push,mail=${mail.url}`,
    TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS: '5000'
  })
  await produce(t, app, shopTasks(10))
  await until(t, 'the shop worker is paused', async () => await metric(app, 'taskbroker_push_workers_pausing') === 1)
  const mailIds = await produce(t, app, Array.from({ length: 10 }, () => task({ application: 'mail' })))
  await until(t, 'the mail tasks are delivered', () => mail.accepted.length === 10)
  t.same(mail.accepted.slice().sort(), mailIds.slice().sort())
  await until(t, 'the mail tasks are processing', async () => (await statusCounts(database)).processing === 10)
  const counts = await statusCounts(database)
  t.equal((counts.pending ?? 0) + (counts.claimed ?? 0), 10, 'shop tasks waiting for their worker')
})

eachBackend(t, 'a worker that never answers: claimed tasks in memory stay within queue + concurrency', async (t, backend) => {
  const worker = await fakeWorker(t, { mode: 'hang' })
  const { app, database } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
    TASKBROKER_PUSH_TIMEOUT_MS: '60000',
    TASKBROKER_PUSH_CONCURRENCY: '2',
    TASKBROKER_PUSH_QUEUE_SIZE: '3'
  })
  await produce(t, app, shopTasks(50))
  await until(t, 'the pushes hang', () => worker.received.length === 2)
  await sleep(300) // many fetch rounds
  t.same(await statusCounts(database), { claimed: 5, pending: 45 }, 'two pushing, three queued; the rest left in the store')
  t.equal(await metric(app, 'taskbroker_push_in_flight'), 2)
  t.equal(await metric(app, 'taskbroker_push_queue_depth'), 3)
  worker.mode = 'accept'
  await until(t, 'all delivered once the worker answers', async () => (await statusCounts(database)).processing === 50)
})
