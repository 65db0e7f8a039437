import { sql } from 'drizzle-orm'
import t from 'tap'
import { buildTestApp, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'

const countRows = async (rows: (q: ReturnType<typeof sql>) => Promise<Array<Record<string, unknown>>>) =>
  Number((await rows(sql`select count(*)::int as n from inflight_tasks`))[0]!.n)

eachBackend(t, 'queued status reports are in the database after close, without waiting for the interval', async (t, backend) => {
  const { app, database } = await buildTestApp(t, backend, {
    TASKBROKER_STATUS_ACK: 'queued',
    TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '60000',
    TASKBROKER_STATUS_BATCH_SIZE: '1000'
  })
  const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: Array.from({ length: 25 }, () => task()) } })
  const { ids } = produced.json() as { ids: string[] }
  await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { limit: 25 } })
  const reported = await app.inject({ method: 'POST', url: '/v1/tasks/status', payload: { updates: ids.map(id => ({ id, status: 'complete' })) } })
  t.equal(reported.json().queued, 25, 'answered at enqueue')
  t.equal(await countRows(q => database.rows(q)), 25, 'nothing written yet: the flush interval is a minute away')

  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 30_000, 'close flushes at once instead of waiting for the minute-long interval')
  t.equal(await countRows(q => database.rows(q)), 0, 'every queued completion was written before close returned')
})

eachBackend(t, 'a long-poll in flight at shutdown returns at once with no task', async (t, backend) => {
  const { app } = await buildTestApp(t, backend)
  const claim = app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { wait_ms: 30_000 } })
  // Let the claim reach its wait before closing.
  await new Promise(resolve => setTimeout(resolve, 200))
  const started = Date.now()
  await app.close()
  const response = await claim
  t.equal(response.statusCode, 200)
  t.same(response.json().tasks, [])
  t.ok(Date.now() - started < 15_000, 'shutdown is not held up by the 30 s wait')
})
