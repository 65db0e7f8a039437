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
    TASKBROKER_MAX_PENDING_COUNT: '0', TASKBROKER_MAX_DELAY_COUNT: '2', TASKBROKER_BACKPRESSURE_CACHE_MS: '0'
  })
  t.equal((await produce(app, [task({ delay: 60 }), task({ delay: 60 })])).statusCode, 201, 'pending limit 0 still takes delayed tasks')
  t.equal((await produce(app, [task({ delay: 60 })])).statusCode, 503, 'the delay limit is reached')
  t.equal((await produce(app, [task()])).statusCode, 503, 'pending limit 0 takes no pending task')
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
