/**
 * Push mode end to end: a broker listening on loopback pushes to real worker HTTP servers (the
 * reference worker in examples/), which run each task and report back through the status
 * endpoint; with the claimed → processing updates batched and unbatched.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { startPushWorker, type PushedTask } from '../../examples/push-worker.js'
import { task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { fakeWorker, metric, produce, startPushApp, statusCounts, taskRows, unique, until } from './helpers.js'

// The broker's timers are unref()'d; nothing else keeps this process alive while a test awaits them.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

for (const batching of ['true', 'false']) {
  eachBackend(t, `every task reaches its application's worker once and completes (update batching ${batching})`, async (t, backend) => {
    const seen: Record<string, string[]> = { shop: [], mail: [] }
    const handler = (application: string) => (pushed: PushedTask) => {
      seen[application]?.push(pushed.id)
      t.equal(pushed.application, application, 'pushed to the worker of its application')
      return undefined
    }
    const shop = await startPushWorker({ handler: handler('shop') })
    const mail = await startPushWorker({ handler: handler('mail') })
    const { app, database } = await startPushApp(t, backend, {
      TASKBROKER_WORKER_MAP: `shop=${shop.url},mail=${mail.url}`,
      TASKBROKER_PUSH_UPDATE_BATCHING: batching,
      TASKBROKER_PUSH_FETCH_LOOPS: '4',
      TASKBROKER_PUSH_FETCH_BATCH_SIZE: '8'
    })
    t.teardown(async () => { await app.close(); await shop.close(); await mail.close() })

    const shopIds = await produce(t, app, Array.from({ length: 60 }, (_, i) => task({ application: 'shop', parameters: { i } })))
    const mailIds = await produce(t, app, Array.from({ length: 40 }, () => task({ application: 'mail' })))
    await until(t, 'every task is completed and reported', async () => (await taskRows(database)).length === 0 && shop.stats.reported + mail.stats.reported === 100)
    const results = (await app.inject({ method: 'GET', url: '/metrics' })).body.split('\n').filter(l => l.startsWith('taskbroker_push_total{'))
    t.same(results, ['taskbroker_push_total{result="delivered"} 100'], 'every push was delivered the first time')

    t.same(seen.shop?.slice().sort(), shopIds.slice().sort(), 'the shop worker ran exactly the shop tasks, each once')
    t.same(seen.mail?.slice().sort(), mailIds.slice().sort(), 'the mail worker ran exactly the mail tasks, each once')
    t.equal(shop.stats.reported + mail.stats.reported, 100, 'every outcome was reported through the status endpoint')
    t.equal(await metric(app, 'taskbroker_push_total{result="delivered"}'), 100, 'pushes counted as delivered')
    t.equal(await metric(app, 'taskbroker_push_claimed_total'), 100, 'claims counted')
    const settled = await metric(app, 'taskbroker_push_updates_total{to="processing",result="applied"}') +
      await metric(app, 'taskbroker_push_updates_total{to="processing",result="skipped"}')
    t.equal(settled, 100, 'every delivery was settled (skipped when the worker had already reported)')
    const flushes = await metric(app, 'taskbroker_batcher_flush_size_count{batcher="push_update"}')
    if (batching === 'true') t.ok(flushes > 0 && flushes < 100, `outcomes were written in bulk (${flushes} flushes for 100)`)
    else t.equal(flushes, 0, 'no batcher: one statement per push')
    t.ok(await metric(app, 'taskbroker_push_received_to_pushed_seconds_count') === 100, 'received→pushed latency observed for first deliveries')
  })

  eachBackend(t, `a delivered task is processing with its deadline until its worker reports (update batching ${batching})`, async (t, backend) => {
    const worker = await fakeWorker(t)
    const { app, database, config } = await startPushApp(t, backend, {
      TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
      TASKBROKER_PUSH_UPDATE_BATCHING: batching,
      TASKBROKER_PUSH_UPDATE_FLUSH_INTERVAL_MS: '50'
    })
    const before = Date.now()
    const ids = await produce(t, app, Array.from({ length: 5 }, () => task({ application: 'shop', processing_deadline_duration: 30 })))
    await until(t, 'all five are processing', async () => (await statusCounts(database)).processing === 5)
    for (const row of await taskRows(database)) {
      const deadline = new Date(row.processing_deadline as string).getTime()
      const expected = before + (30 + config.tasks.processingDeadlineGraceSec) * 1000
      t.ok(deadline >= expected - 1000 && deadline <= Date.now() + (30 + config.tasks.processingDeadlineGraceSec) * 1000 + 1000, 'deadline = push time + duration + grace')
      t.equal(row.claim_expires_at, null, 'the claim lease is cleared')
      t.equal(row.processing_attempts, 0, 'no attempt counted')
    }
    t.same(unique(worker.accepted).sort(), ids.slice().sort(), 'each pushed once')

    const res = await app.inject({ method: 'POST', url: `/v1/tasks/${ids[0] as string}/status`, payload: { status: 'complete' } })
    t.equal(res.statusCode, 200)
    t.equal(res.json().applied, true, 'the worker reports through the normal status endpoint')
    t.equal((await taskRows(database)).length, 4)
  })
}

eachBackend(t, 'the push body is {task, callback_url}; callback_url is the task\'s status URL on TASKBROKER_PUBLIC_URL', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
    TASKBROKER_PUBLIC_URL: 'https://broker.example.com/'
  })
  const [id] = await produce(t, app, [task({ id: 'a/b c', application: 'shop', parameters: { order: 42 } })])
  await until(t, 'the push arrives', () => worker.received.length === 1)
  const push = worker.received[0]
  t.same(Object.keys(push?.task ?? {}).sort(), [
    'application', 'headers', 'id', 'namespace', 'parameters', 'processing_deadline_duration', 'received_at', 'retry_state', 'taskname'
  ], 'the task is the activation as produced')
  t.equal(push?.task.id, id)
  t.same(push?.task.parameters, { order: 42 })
  t.equal(push?.callback_url, 'https://broker.example.com/v1/tasks/a%2Fb%20c/status')
  t.equal(push?.headers['content-type'], 'application/json')
  t.equal(push?.headers['taskbroker-signature'], undefined, 'unsigned without secrets')
})

eachBackend(t, 'without TASKBROKER_PUBLIC_URL the callback URL is the address the broker listens on', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app, baseUrl } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}` })
  const [id] = await produce(t, app, [task({ application: 'shop' })])
  await until(t, 'the push arrives', () => worker.received.length === 1)
  t.equal(worker.received[0]?.callback_url, `${baseUrl}/v1/tasks/${id as string}/status`)
})

eachBackend(t, 'a task produced while the loops sleep is pushed at once, not after the fetch backoff', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
    TASKBROKER_PUSH_FETCH_BACKOFF_MS: '60000'
  })
  await sleep(100) // the loops found nothing and sleep for a minute
  await produce(t, app, [task({ application: 'shop' })])
  // Half the backoff: generous for a loaded machine, and still long before the loops wake by themselves.
  t.ok(await until(t, 'the push arrives', () => worker.received.length === 1, 30_000), 'woken by the produce')
})
