/**
 * Operations endpoints: liveness, readiness, Prometheus metrics, /v1/stats, and the API docs.
 */
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { claimIds, produceIds, type Test } from '../helpers/requests.js'

keepAlive(t)

async function stats (t: Test, app: FastifyInstance) {
  const res = await app.inject({ method: 'GET', url: '/v1/stats' })
  t.equal(res.statusCode, 200)
  return res.json() as {
    by_status: Record<string, number>
    queues: Array<{ application: string, namespace: string, status: string, count: number }>
    oldest_pending_age_sec: number
    status_queue_depth: number
  }
}

/** Sum of the samples of `name` whose labels include every given label (Prometheus text format). */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const have = Object.fromEntries([...(match[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(m => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total = (total ?? 0) + Number(match[4])
  }
  return total
}

const byQueue = (a: { application: string, namespace: string, status: string }, b: typeof a) =>
  `${a.application}/${a.namespace}/${a.status}`.localeCompare(`${b.application}/${b.namespace}/${b.status}`)

eachBackend(t, 'operations endpoints', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)

  await t.test('/healthz answers 200 {status: "ok"}', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/healthz' })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { status: 'ok' })
  })

  await t.test('/readyz answers 200 {status: "ready"} when the store answers', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { status: 'ready' })
  })

  await t.test('/v1/stats of an empty store counts 0 for every status and has no queues', async (t) => {
    const s = await stats(t, app)
    t.same(s.by_status, { pending: 0, claimed: 0, processing: 0, delay: 0, retry: 0, failure: 0, complete: 0 })
    t.same(s.queues, [])
    t.equal(s.oldest_pending_age_sec, 0)
    t.equal(s.status_queue_depth, 0)
  })

  await t.test('/v1/stats counts tasks by status and by queue and gives the age of the oldest pending task', async (t) => {
    const twoMinutesAgo = new Date(Date.now() - 120_000).toISOString()
    await produceIds(t, app, [task({ id: 's-a1', application: 'a', namespace: 'x' }), task({ id: 's-a2', application: 'a', namespace: 'x' })])
    await produceIds(t, app, [task({ id: 's-a3', application: 'a', namespace: 'x' })])
    await produceIds(t, app, [
      task({ id: 's-b1', application: 'b', namespace: 'y', received_at: twoMinutesAgo }),
      task({ id: 's-b2', application: 'b', namespace: 'y' })
    ])
    await produceIds(t, app, [task({ id: 's-delayed', application: 'a', namespace: 'x', delay: 600 })])
    t.same(await claimIds(app, { application: 'a', limit: 2 }), ['s-a1', 's-a2'])
    const failed = await app.inject({ method: 'POST', url: '/v1/tasks/s-a2/status', payload: { status: 'failure' } })
    t.equal(failed.json().applied, true)

    const s = await stats(t, app)
    t.same(s.by_status, { pending: 3, claimed: 0, processing: 1, delay: 1, retry: 0, failure: 1, complete: 0 })
    t.same([...s.queues].sort(byQueue), [
      { application: 'a', namespace: 'x', status: 'delay', count: 1 },
      { application: 'a', namespace: 'x', status: 'failure', count: 1 },
      { application: 'a', namespace: 'x', status: 'pending', count: 1 },
      { application: 'a', namespace: 'x', status: 'processing', count: 1 },
      { application: 'b', namespace: 'y', status: 'pending', count: 2 }
    ])
    t.ok(s.oldest_pending_age_sec >= 115 && s.oldest_pending_age_sec < 600,
      `oldest_pending_age_sec ${s.oldest_pending_age_sec} is the age of the task received two minutes ago`)
    t.equal(s.status_queue_depth, 0)

    // Once that old task is claimed, the oldest pending one is recent.
    t.same(await claimIds(app, { application: 'b', limit: 1 }), ['s-b1'])
    const after = await stats(t, app)
    t.ok(after.oldest_pending_age_sec >= 0 && after.oldest_pending_age_sec < 60, `now ${after.oldest_pending_age_sec} s`)
    t.equal(after.by_status.pending, 2)
    t.equal(after.by_status.processing, 2)
  })

  await t.test('/metrics is Prometheus text with status report and batcher flush metrics after reports', async (t) => {
    const before = (await app.inject({ method: 'GET', url: '/metrics' })).body
    const requestedBefore = sample(before, 'taskbroker_status_reports_requested_total', { status: 'complete' }) ?? 0
    const flushesBefore = sample(before, 'taskbroker_batcher_flush_size_count', { batcher: 'status' }) ?? 0

    // s-a1 and s-b1 are processing (claimed above).
    t.equal((await app.inject({ method: 'POST', url: '/v1/tasks/s-a1/status', payload: { status: 'complete' } })).json().applied, true)
    const batch = await app.inject({
      method: 'POST',
      url: '/v1/tasks/status',
      payload: { updates: [{ id: 's-b1', status: 'complete' }, { id: 'metrics-unknown', status: 'complete' }, { id: 's-a3', status: 'retry' }] }
    })
    t.same(batch.json(), { applied: 2, queued: 0, not_found: ['metrics-unknown'] })

    const res = await app.inject({ method: 'GET', url: '/metrics' })
    t.equal(res.statusCode, 200)
    t.match(res.headers['content-type'], /^text\/plain/)
    const text = res.body
    t.match(text, /# TYPE taskbroker_status_reports_requested_total counter/)
    t.match(text, /# TYPE taskbroker_batcher_flush_size histogram/)
    t.equal(sample(text, 'taskbroker_status_reports_requested_total', { status: 'complete' }), requestedBefore + 3, 'three complete reports counted')
    t.ok((sample(text, 'taskbroker_status_reports_requested_total', { status: 'retry' }) ?? 0) >= 1, 'the retry report counted')
    const flushes = sample(text, 'taskbroker_batcher_flush_size_count', { batcher: 'status' }) ?? 0
    t.ok(flushes > flushesBefore, `flushes counted (${flushesBefore} → ${flushes})`)
    t.ok((sample(text, 'taskbroker_batcher_flush_size_sum', { batcher: 'status' }) ?? 0) >= 4, 'flushed items summed')
    t.ok((sample(text, 'taskbroker_status_reports_not_found_total') ?? 0) >= 1, 'the unknown id counted as not found')
    t.equal(sample(text, 'taskbroker_tasks_produced_total'), 6, 'every produced task counted')
    t.ok((sample(text, 'taskbroker_http_request_duration_seconds_count', { route: '/v1/tasks', method: 'POST', status_code: '201' }) ?? 0) >= 4,
      'HTTP requests are counted by route')
  })

  await t.test('/docs answers 200 with the Swagger UI HTML page', async (t) => {
    for (const url of ['/docs', '/docs/']) {
      const res = await app.inject({ method: 'GET', url })
      t.equal(res.statusCode, 200, `${url} answers 200`)
      t.match(res.headers['content-type'], /^text\/html/)
      t.match(res.body, /<html/i)
      t.match(res.body, /swagger/i)
    }
  })

  await t.test('/openapi.json is an OpenAPI 3.1.0 document with every v1 path', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' })
    t.equal(res.statusCode, 200)
    const doc = res.json() as { openapi: string, paths: Record<string, Record<string, unknown>> }
    t.equal(doc.openapi, '3.1.0')
    const expected: Array<[string, string]> = [
      ['/v1/tasks', 'post'],
      ['/v1/tasks/claim', 'post'],
      ['/v1/tasks/{id}/status', 'post'],
      ['/v1/tasks/status', 'post'],
      ['/v1/tasks/{id}', 'get'],
      ['/v1/stats', 'get']
    ]
    for (const [path, method] of expected) t.ok(doc.paths[path]?.[method] !== undefined, `${method.toUpperCase()} ${path} is documented`)
    for (const probe of ['/healthz', '/readyz', '/metrics']) t.ok(doc.paths[probe]?.get !== undefined, `GET ${probe} is documented`)
    t.notOk('/openapi.json' in doc.paths, '/openapi.json is not in the API docs')
  })
})
