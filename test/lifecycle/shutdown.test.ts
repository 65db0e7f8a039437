import { sql } from 'drizzle-orm'
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { buildTestApp, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { metric } from '../helpers/requests.js'

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

eachBackend(t, 'shutting down, answers close their keep-alive connections, so the drain does not wait for the clients', async (t, backend) => {
  // Reports wait up to a second for their flush: one is still in flight when the server closes.
  const { app } = await buildTestApp(t, backend, { TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '1000' })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  // A client that keeps its connections (undici's default agent does, for seconds).
  const agent = new Agent({ keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 })
  t.teardown(() => agent.close())
  const post = (path: string, body: unknown) => request(`${url}${path}`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const produced = await post('/v1/tasks', { tasks: [task({ id: 'kept-alive' })] })
  t.not(produced.headers.connection, 'close', 'a connection is kept while the broker runs')
  await produced.body.dump()
  await (await post('/v1/tasks/claim', {})).body.dump()
  const report = post('/v1/tasks/kept-alive/status', { status: 'complete' })
  for (let i = 0; i < 1000 && !(await metric(app, 'taskbroker_batcher_queue_depth{batcher="status"}') > 0); i++) await sleep(5)
  const closed = app.close()
  const answer = await report
  t.equal(answer.statusCode, 200)
  t.equal(answer.headers.connection, 'close', 'the answer during shutdown closes its connection')
  t.same(await answer.body.json(), { applied: true, queued: false, task: null })
  await closed
  t.pass('the server closed with the client still holding its agent open')
})
