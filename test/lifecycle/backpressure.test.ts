/** Produce backpressure: over the limits, produce gets 503 + Retry-After and stores nothing. */
import t from 'tap'
import { buildTestApp, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'

const produce = (app: Awaited<ReturnType<typeof buildTestApp>>['app'], tasks: unknown[]) =>
  app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })
const live = async (app: Awaited<ReturnType<typeof buildTestApp>>['app']) =>
  (await app.inject('/v1/stats')).json().by_status as Record<string, number>

eachBackend(t, 'pending limit: a batch that would pass it is refused whole', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { TASKBROKER_MAX_PENDING_COUNT: '5', TASKBROKER_BACKPRESSURE_CACHE_MS: '0' })
  t.equal((await produce(app, [task(), task(), task(), task()])).statusCode, 201)
  const refused = await produce(app, [task(), task()])
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.match(refused.json(), { code: 'TASKBROKER_BACKPRESSURE', message: /4 pending tasks \+ 2 would pass the limit of 5/ })
  t.equal((await live(app)).pending, 4, 'nothing of the refused request was stored')
  t.equal((await produce(app, [task()])).statusCode, 201, 'a batch that fits is still taken')
})

eachBackend(t, 'delayed tasks count against the delay limit only', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, {
    TASKBROKER_MAX_PENDING_COUNT: '1', TASKBROKER_MAX_DELAY_COUNT: '2', TASKBROKER_BACKPRESSURE_CACHE_MS: '0'
  })
  t.equal((await produce(app, [task({ delay: 60 }), task({ delay: 60 })])).statusCode, 201, 'delayed tasks do not count as pending')
  t.equal((await produce(app, [task({ delay: 60 })])).statusCode, 503, 'the delay limit is reached')
  t.equal((await produce(app, [task()])).statusCode, 201, 'pending tasks do not count as delayed')
  t.equal((await produce(app, [task()])).statusCode, 503, 'the pending limit is reached')
})

eachBackend(t, 'by default there is no limit: 30,000 tasks in batches of 1000 are all taken', async (t, backend) => {
  const { app, config } = await buildTestApp(t, backend, { TASKBROKER_BACKPRESSURE_CACHE_MS: '0' })
  t.match(config.backpressure, { maxPending: 0, maxDelay: 0, maxProcessing: 0 }, 'the limits are off by default')
  const codes = new Set<number>()
  for (let batch = 0; batch < 30; batch++) {
    const tasks = Array.from({ length: 1000 }, (_, i) => task({ delay: i % 10 === 0 ? 60 : undefined }))
    codes.add((await produce(app, tasks)).statusCode)
  }
  t.same([...codes], [201], 'every produce request was taken')
  const counts = await live(app)
  t.equal(counts.pending, 27_000)
  t.equal(counts.delay, 3_000)
  await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { limit: 100 } })
  t.equal((await produce(app, [task()])).statusCode, 201, 'tasks being processed do not stop produce either')
})

eachBackend(t, 'a limit of 0 is no limit, whichever of the three it is', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, {
    TASKBROKER_MAX_PENDING_COUNT: '0', TASKBROKER_MAX_DELAY_COUNT: '1', TASKBROKER_MAX_PROCESSING_COUNT: '0', TASKBROKER_BACKPRESSURE_CACHE_MS: '0'
  })
  t.equal((await produce(app, Array.from({ length: 50 }, () => task()))).statusCode, 201, 'pending 0: no pending limit')
  await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { limit: 40 } })
  t.equal((await produce(app, [task()])).statusCode, 201, 'processing 0: no processing limit')
  t.equal((await produce(app, [task({ delay: 60 }), task({ delay: 60 })])).statusCode, 503, 'the one limit set still holds')
})

eachBackend(t, 'while workers hold the processing limit, produce waits but workers can still claim and report', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { TASKBROKER_MAX_PROCESSING_COUNT: '1', TASKBROKER_BACKPRESSURE_CACHE_MS: '0' })
  await produce(app, [task({ id: 'one' }), task({ id: 'two' })])
  const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: {} })
  t.equal(claimed.json().tasks[0].id, 'one')
  t.equal((await produce(app, [task()])).statusCode, 503)
  const report = await app.inject({ method: 'POST', url: '/v1/tasks/one/status', payload: { status: 'complete', fetch_next: {} } })
  t.equal(report.statusCode, 200)
  t.equal(report.json().task.id, 'two', 'claims go on under backpressure')
})

eachBackend(t, 'counts are cached: a burst inside the cache window still cannot overshoot', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { TASKBROKER_MAX_PENDING_COUNT: '3', TASKBROKER_BACKPRESSURE_CACHE_MS: '60000' })
  t.equal((await produce(app, [task(), task()])).statusCode, 201)
  t.equal((await produce(app, [task(), task()])).statusCode, 503, 'accepted tasks are added to the cached count')
  t.equal((await produce(app, [task()])).statusCode, 201)
})
