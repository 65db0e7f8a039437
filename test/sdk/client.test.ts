/**
 * The client against a real broker on a real port with signing on (both stores), and against a
 * scripted HTTP server for the retry rules: what is retried, after what, and what never is.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { createClient, isRouteNotFound, TaskbrokerError, TaskbrokerUnreachableError } from '../../src/client/index.js'
import { backoffMs, DEFAULT_RETRY, mayRetry } from '../../src/client/retry.js'
import { eachBackend } from '../helpers/database.js'
import { NO_UPKEEP } from '../helpers/app.js'
import { SECRET, startBroker } from './broker.js'

eachBackend(t, 'every call of the API, signed, on a real port', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())

  const produced = await client.produce([
    { namespace: 'emails', taskname: 'send', application: 'shop', parameters: { n: 1 } },
    { id: 'given', namespace: 'emails', taskname: 'send', application: 'shop', retry_state: { max_attempts: 1, on_attempts_exceeded: 'deadletter' } }
  ])
  t.equal(produced.inserted, 2)
  t.equal(produced.ids[1], 'given')
  t.match(produced.ids[0], /^[0-9a-f-]{36}$/, 'the client gave the id before sending')
  t.same((await client.produce([{ id: 'given', namespace: 'emails', taskname: 'send', application: 'shop' }])).duplicates, ['given'])

  const claimed = await client.claim({ application: 'shop', namespace: 'emails', limit: 2, wait_ms: 1000 })
  t.same(claimed.tasks.map(task => task.id).sort(), [...produced.ids].sort())
  t.equal((await client.getTask('given')).status, 'processing')

  const first = claimed.tasks.find(task => task.id !== 'given')
  const report = await client.report(first?.id ?? '', { status: 'complete', fetch_next: { application: 'shop' } })
  t.equal(report.applied, true)
  t.equal(report.task, null, 'nothing else to fetch')
  const batch = await client.reportMany([{ id: 'given', status: 'failure' }, { id: 'nope', status: 'complete' }])
  t.same(batch.not_found, ['nope'])
  t.equal(batch.applied, 1)

  const stats = await client.stats()
  t.equal(stats.by_status.failure, 1)
  await broker.app().broker.upkeep.runOnce(new Date())
  const letters = await client.listDeadletters({ application: 'shop', limit: 10 })
  t.same(letters.deadletters.map(d => d.task.id), ['given'])
  t.same(await client.requeueDeadletter('given'), { id: 'given', status: 'pending' })
  await client.claim({ application: 'shop', limit: 1 }).then(c => client.report(c.tasks[0]?.id ?? '', { status: 'failure' }))
  await broker.app().broker.upkeep.runOnce(new Date())
  await client.purgeDeadletter('given')
  t.same((await client.listDeadletters()).deadletters, [])
  t.equal(await client.ready(), true)

  const missing = await client.getTask('nope').catch((error: unknown) => error)
  t.ok(missing instanceof TaskbrokerError)
  t.match(missing, { statusCode: 404, code: 'TASKBROKER_TASK_NOT_FOUND' })
  const gone = await client.requeueDeadletter('nope').catch((error: unknown) => error)
  t.match(gone, { statusCode: 404, code: 'TASKBROKER_DEADLETTER_NOT_FOUND' })
  const invalid = await client.claim({ namespace: 'no-app' }).catch((error: unknown) => error)
  t.match(invalid, { statusCode: 400, code: 'TASKBROKER_INVALID_REQUEST' })

  const unsigned = createClient({ url: broker.url, secrets: ['wrong'] })
  t.teardown(() => unsigned.close())
  t.match(await unsigned.stats().catch((error: unknown) => error), { statusCode: 401, code: 'TASKBROKER_UNAUTHORIZED' })
})

eachBackend(t, 'endpoints a broker lacks answer ROUTE_NOT_FOUND, which feature detection reads; an unknown task does not', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  const missingRoute = await client.heartbeatAt(`${broker.url}/v1/nothing/here/status`).catch((e: unknown) => e)
  t.match(missingRoute, { statusCode: 404, code: 'TASKBROKER_ROUTE_NOT_FOUND' })
  t.ok(isRouteNotFound(missingRoute))
  const unknownTask = await client.heartbeat('x').catch((e: unknown) => e)
  t.match(unknownTask, { code: 'TASKBROKER_TASK_NOT_FOUND' })
  t.notOk(isRouteNotFound(unknownTask))
})

eachBackend(t, 'lease calls: heartbeat, batch heartbeat (extended, not_processing, stale), release, cancel', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce(['h-0', 'h-1', 'h-2'].map(id => ({ id, application: 'a', namespace: 'n', taskname: 't' })))
  const [t0, t1, t2] = (await client.claim({ limit: 3 })).tasks
  const beat = await client.heartbeat(t0!.id, { lease: t0!.lease, progress: { done: 1 }, extend_sec: 120 })
  t.equal(beat.cancel_requested, false)
  t.ok(Date.parse(beat.processing_deadline) > Date.parse(t0!.processing_deadline), 'the deadline moved on')
  t.match(await client.heartbeat(t0!.id, { lease: t1!.lease }).catch((e: unknown) => e), { statusCode: 409, code: 'TASKBROKER_LEASE_STALE' })
  const many = await client.heartbeatMany([{ id: t0!.id, lease: t0!.lease }, { id: t1!.id, lease: t2!.lease }, { id: 'nope' }])
  t.same(many.extended.map(e => e.id), [t0!.id])
  t.same(many.stale, [t1!.id])
  t.same(many.not_processing, ['nope'])
  t.same(await client.release(t2!.id, { lease: t2!.lease }), { released: true, cancelled: false })
  t.same(await client.cancel(t2!.id), { removed: true, requested: false })
  t.same(await client.cancel(t1!.id), { removed: false, requested: true })
  t.same(await client.cancelMatching({ application: 'a' }), { removed: 0, requested: 2 })
  t.same(await client.report(t1!.id, { status: 'failure', lease: t1!.lease }), { applied: true, queued: false, task: null, cancelled: true })
})

/** A server answering from a script, one answer per request, counting requests and connections. */
async function scripted (t: Test, answers: Array<{ status: number, body: unknown, headers?: Record<string, string> }>) {
  const seen: Array<{ method?: string, url?: string, body: string, headers: IncomingMessage['headers'] }> = []
  let connections = 0
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    let body = ''
    request.on('data', (chunk: Buffer) => { body += chunk.toString() })
    request.on('end', () => {
      seen.push({ method: request.method, url: request.url, body, headers: request.headers })
      const answer = answers[Math.min(seen.length - 1, answers.length - 1)] ?? { status: 500, body: {} }
      response.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers })
      response.end(JSON.stringify(answer.body))
    })
  })
  server.on('connection', () => { connections++ })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, connections: () => connections }
}

const unavailable = (code: string, retryAfter = '0') => ({ status: 503, body: { statusCode: 503, code, error: 'Service Unavailable', message: 'later' }, headers: { 'retry-after': retryAfter } })

t.test('produce is retried after 503 with the same ids, each attempt signed afresh', async (t) => {
  const server = await scripted(t, [unavailable('TASKBROKER_OUTCOME_UNKNOWN'), { status: 429, body: { code: 'X', message: 'slow down' }, headers: { 'retry-after': '0' } }, { status: 201, body: { ids: ['a'], inserted: 1, duplicates: [], killswitched: [] } }])
  const client = createClient({ url: server.url, secrets: ['s'], retry: { baseMs: 1 } })
  t.teardown(() => client.close())
  const retries: number[] = []
  const answer = await createClient({ url: server.url, secrets: ['s'], onRetry: info => retries.push(info.attempt) }).produce([{ namespace: 'n', taskname: 't' }])
  t.equal(answer.inserted, 1)
  t.equal(server.seen.length, 3, 'two retries')
  t.same(retries, [1, 2])
  const bodies = server.seen.map(s => s.body)
  t.equal(new Set(bodies).size, 1, 'the same body (and ids) every time')
  t.equal(new Set(server.seen.map(s => s.headers['taskbroker-nonce'])).size, 3, 'a fresh nonce per attempt')
})

t.test('a claim is retried only when the broker surely claimed nothing', async (t) => {
  const refused = await scripted(t, [unavailable('TASKBROKER_TOO_MANY_WAITERS'), { status: 200, body: { tasks: [] } }])
  const client = createClient({ url: refused.url })
  t.teardown(() => client.close())
  t.same(await client.claim({ limit: 1 }), { tasks: [] })
  t.equal(refused.seen.length, 2)

  const unknown = await scripted(t, [unavailable('TASKBROKER_OUTCOME_UNKNOWN'), { status: 200, body: { tasks: [] } }])
  const other = createClient({ url: unknown.url })
  t.teardown(() => other.close())
  const error = await other.claim({ limit: 1 }).catch((e: unknown) => e)
  t.match(error, { statusCode: 503, code: 'TASKBROKER_OUTCOME_UNKNOWN', retryAfterSec: 0 })
  t.equal(unknown.seen.length, 1, 'not sent again')
  // A report with fetch_next claims too; without it, it is harmless to repeat.
  t.notOk(mayRetry(error, false))
  t.ok(mayRetry(error, true))
})

t.test('retries end after the configured attempts; other errors are never retried', async (t) => {
  const server = await scripted(t, [unavailable('TASKBROKER_SHUTTING_DOWN')])
  const client = createClient({ url: server.url, retry: { attempts: 3 } })
  t.teardown(() => client.close())
  t.match(await client.stats().catch((e: unknown) => e), { code: 'TASKBROKER_SHUTTING_DOWN', temporary: true })
  t.equal(server.seen.length, 3)
  const bad = await scripted(t, [{ status: 409, body: { statusCode: 409, code: 'TASKBROKER_WRONG_DELIVERY_MODE', message: 'push' } }])
  const other = createClient({ url: bad.url })
  t.teardown(() => other.close())
  t.match(await other.claim().catch((e: unknown) => e), { code: 'TASKBROKER_WRONG_DELIVERY_MODE', temporary: false })
  t.equal(bad.seen.length, 1)
})

t.test('calls share keep-alive connections', async (t) => {
  const server = await scripted(t, [{ status: 200, body: { tasks: [] } }])
  const client = createClient({ url: server.url, connections: 2 })
  t.teardown(() => client.close())
  for (let i = 0; i < 20; i++) await client.claim()
  t.equal(server.seen.length, 20)
  // Without keep-alive every call would open its own connection; the pool holds at most 2.
  t.ok(server.connections() <= 2, `${server.connections()} connection(s) for 20 sequential calls`)
})

t.test('an unreachable broker: a typed error, retried only for safe calls or when nothing was sent', async (t) => {
  const server = await scripted(t, [])
  const port = new URL(server.url).port
  // A port nobody listens on: close a listener and reuse its port.
  const closed = createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as AddressInfo).port
  await new Promise<void>(resolve => closed.close(() => resolve()))
  t.not(String(deadPort), port)
  const client = createClient({ url: `http://127.0.0.1:${deadPort}`, retry: { attempts: 2, baseMs: 1 } })
  t.teardown(() => client.close())
  const error = await client.claim().catch((e: unknown) => e)
  t.ok(error instanceof TaskbrokerUnreachableError)
  t.match(error, { code: 'TASKBROKER_CLIENT_UNREACHABLE', sent: false })
  t.ok(mayRetry(error, false), 'refused: nothing was sent, so even a claim may go again')
  t.notOk(mayRetry(new TaskbrokerUnreachableError('reset', true), false), 'a reset after sending: a claim may not')
})

t.test('backoff: Retry-After honoured with up to 50 % jitter, else doubling up to the cap', async (t) => {
  const later = new TaskbrokerError(503, 'TASKBROKER_BACKPRESSURE', 'x', 2, {})
  t.equal(backoffMs(1, later, DEFAULT_RETRY, () => 0), 2000)
  t.equal(backoffMs(1, later, DEFAULT_RETRY, () => 1), 3000)
  t.equal(backoffMs(1, undefined, DEFAULT_RETRY, () => 0), 100)
  t.equal(backoffMs(3, undefined, DEFAULT_RETRY, () => 0), 400)
  t.equal(backoffMs(40, undefined, DEFAULT_RETRY, () => 0), 5000, 'capped')
  t.equal(backoffMs(1, new TaskbrokerError(503, 'X', 'x', 60, {}), DEFAULT_RETRY, () => 0), 60_000, 'a longer Retry-After beats the cap')
})
