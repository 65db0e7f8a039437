/**
 * The push side of the SDK: a broker in push mode (signing on, both stores) pushes to a worker
 * served by `createPushHandler` on Node's http, or by the `taskbrokerPush` Fastify plugin; the
 * worker verifies the push, runs the handler and reports to callback_url.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import pino from 'pino'
import t, { type Test } from 'tap'
import { signRequest } from '../../src/auth/signing.js'
import { createClient, createPushHandler, createPushReceiver, retry, TaskAbortedError, taskbrokerPush, type Handler, type PushReceiver } from '../../src/client/index.js'
import { eachBackend } from '../helpers/database.js'
import { PUSH_ENV } from '../push/helpers.js'
import { SECRET, sleep, startBroker, waitFor } from './broker.js'

const silent = pino({ level: 'silent' })

const handler: Handler = (task) => {
  const p = task.parameters as { outcome?: string }
  if (p.outcome === 'fail') throw new Error('no')
  if (p.outcome === 'retry') return retry({ delaySec: 60 })
}

const produced = [
  { id: 'ok-1', application: 'shop', namespace: 'n', taskname: 't', parameters: {} },
  { id: 'ok-2', application: 'shop', namespace: 'n', taskname: 't', parameters: {} },
  { id: 'bad', application: 'shop', namespace: 'n', taskname: 't', parameters: { outcome: 'fail' }, retry_state: { max_attempts: 2 } },
  { id: 'again', application: 'shop', namespace: 'n', taskname: 't', parameters: { outcome: 'retry' }, retry_state: { max_attempts: 2 } }
]

async function checkOutcomes (t: Test, url: string, receiver: PushReceiver) {
  const client = createClient({ url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce(produced)
  t.ok(await waitFor(() => receiver.stats.reported === 4), 'four reports written')
  const state = async (id: string) => await client.getTask(id).then(s => s.status, (e: { code: string }) => e.code)
  t.equal(await state('ok-1'), 'TASKBROKER_TASK_NOT_FOUND', 'completed')
  t.equal(await state('bad'), 'failure')
  t.equal(await state('again'), 'retry')
  t.equal((await client.getTask('again')).task.retry_state.delay_on_retry, 60)
  t.equal(receiver.stats.unauthorized, 0, 'the broker\'s signed pushes verified')
}

eachBackend(t, 'createPushHandler on node:http: verified pushes run and report to callback_url', async (t, backend) => {
  const listener = createPushHandler({ handler, secrets: [SECRET], logger: silent })
  const server = createServer(listener)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const workerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/push`
  const broker = await startBroker(t, backend, { ...PUSH_ENV, TASKBROKER_WORKER_MAP: `shop=${workerUrl}` })
  await checkOutcomes(t, broker.url, listener.receiver)

  // Refusals: no signature, a wrong one, a malformed body.
  const body = JSON.stringify({ task: { id: 'x' }, callback_url: `${broker.url}/v1/tasks/x/status` })
  const post = (headers: Record<string, string>, payload = body) => fetch(workerUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: payload })
  t.equal((await post({})).status, 401)
  t.equal((await post(signRequest('other', { method: 'POST', path: '/push', body }))).status, 401)
  t.equal((await post(signRequest(SECRET, { method: 'POST', path: '/push', body: '{' }), '{')).status, 400)
  t.equal(listener.receiver.stats.unauthorized, 2)
  await listener.receiver.close()
  t.equal((await post(signRequest(SECRET, { method: 'POST', path: '/push', body }))).status, 503, 'closed: refused with 503')
})

eachBackend(t, 'the Fastify plugin: verified pushes run and report; a full worker answers 503', async (t, backend) => {
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let gated = true
  const worker = Fastify()
  await worker.register(taskbrokerPush, {
    path: '/tasks/push',
    secrets: [SECRET],
    logger: silent,
    concurrency: 1,
    maxQueued: 0,
    handler: async (task, context) => {
      if (gated) await gate
      return await handler(task, context)
    }
  })
  await worker.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => worker.close())
  const workerUrl = `http://127.0.0.1:${(worker.server.address() as AddressInfo).port}/tasks/push`
  const broker = await startBroker(t, backend, { ...PUSH_ENV, TASKBROKER_WORKER_MAP: `shop=${workerUrl}` })
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce([produced[0] as (typeof produced)[number]])
  // One task running and no queue: a second push is refused with 503 + Retry-After.
  const body = JSON.stringify({ task: { id: 'extra', processing_deadline_duration: 60 }, callback_url: `${broker.url}/v1/tasks/extra/status` })
  t.ok(await waitFor(async () => {
    const answer = await fetch(workerUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...signRequest(SECRET, { method: 'POST', path: '/tasks/push', body }) }, body })
    return answer.status === 503 && answer.headers.get('retry-after') === '1'
  }), 'busy: 503 with Retry-After')
  gated = false
  release()
  t.ok(await waitFor(async () => await client.getTask('ok-1').then(() => false, () => true)), 'the pushed task completed')
  await client.produce(produced.slice(1))
  t.ok(await waitFor(async () => (await client.getTask('bad').catch(() => undefined))?.status === 'failure'))
  t.ok(await waitFor(async () => (await client.getTask('again').catch(() => undefined))?.status === 'retry'))
  t.ok(await waitFor(async () => await client.getTask('ok-2').then(() => false, () => true)))
})

eachBackend(t, 'a pushed task heartbeats from its first moment and is kept alive past its deadline, run once', { timeout: 120_000 }, async (t, backend) => {
  const runs = new Map<string, number>()
  const heartbeatErrors: unknown[] = []
  let firstDeadline = Infinity
  const listener = createPushHandler({
    secrets: [SECRET],
    logger: silent,
    handler: async (task, { signal, heartbeat }) => {
      runs.set(task.id, (runs.get(task.id) ?? 0) + 1)
      // At once: the broker may not have recorded the delivery yet (the push's answer is on its way).
      await heartbeat({ step: 1 }).catch((error: unknown) => heartbeatErrors.push(error))
      firstDeadline = Math.min(firstDeadline, Date.now() + task.processing_deadline_duration * 1000)
      // Well past the first deadline: only the receiver's own heartbeats keep the task.
      await waitFor(() => signal.aborted || Date.now() > firstDeadline + 8_000, 90_000)
      if (signal.aborted) throw signal.reason
    }
  })
  const server = createServer(listener)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const workerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/push`
  // Upkeep runs often and resets at once: without heartbeats the task would be pushed again.
  const broker = await startBroker(t, backend, {
    ...PUSH_ENV,
    TASKBROKER_WORKER_MAP: `shop=${workerUrl}`,
    TASKBROKER_UPKEEP_ENABLED: 'true',
    TASKBROKER_UPKEEP_INTERVAL_MS: '100',
    TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: '1'
  })
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce(['early-1', 'early-2', 'early-3'].map(id => ({ id, application: 'shop', namespace: 'n', taskname: 't', processing_deadline_duration: 4 })))
  t.ok(await waitFor(() => listener.receiver.stats.reported === 3, 100_000), 'three reports written')
  t.same(heartbeatErrors, [], 'the first heartbeats were taken')
  t.same([...runs.values()], [1, 1, 1], 'each task ran once')
  for (const id of ['early-1', 'early-2', 'early-3']) t.equal(await client.getTask(id).then(s => s.status, (e: { code: string }) => e.code), 'TASKBROKER_TASK_NOT_FOUND', `${id} completed`)
  await listener.receiver.close()
})

t.test('a pushed task that waited in the queue has that much less of its deadline', async (t) => {
  // A broker stand-in that takes every report.
  const reports: string[] = []
  const callbacks = createServer((request, response) => {
    reports.push(request.url ?? '')
    request.resume().on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{"applied":true,"queued":false,"task":null}'))
  })
  await new Promise<void>(resolve => callbacks.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { callbacks.closeAllConnections(); callbacks.close(() => resolve()) }))
  const base = `http://127.0.0.1:${(callbacks.address() as AddressInfo).port}`
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  const seen = new Map<string, unknown>()
  const receiver = createPushReceiver({
    concurrency: 1,
    logger: silent,
    handler: async (task, { signal }) => {
      if (task.id === 'first') await gate
      seen.set(task.id, signal.aborted ? (signal.reason as TaskAbortedError).reason : 'running')
      if (signal.aborted) throw signal.reason
    }
  })
  const push = (id: string, seconds: number) => receiver.receive({
    method: 'POST',
    path: '/push',
    header: () => undefined,
    body: JSON.stringify({ task: { id, processing_deadline_duration: seconds }, callback_url: `${base}/v1/tasks/${id}/status` })
  })
  t.equal(push('first', 60).statusCode, 202)
  t.equal(push('queued', 1).statusCode, 202, 'queued behind the first, with a 1 s deadline')
  await sleep(1_500) // longer than the queued task's deadline
  release()
  await receiver.close()
  t.equal(seen.get('queued'), 'deadline', 'its deadline had passed while it waited: its signal is aborted as it starts')
  t.same(reports, ['/v1/tasks/first/status'], 'and its failure after that abort is not reported (the broker resets it)')
})
