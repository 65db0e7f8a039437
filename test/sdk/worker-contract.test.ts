/**
 * The worker against the lease contract (heartbeat, release, lease in reports) that other work
 * brings to the broker: a scripted broker implements those endpoints as their contract says, so
 * the worker's side — cancel through a heartbeat, leases sent back, release at stop — is checked
 * before the real endpoints exist.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import t, { type Test } from 'tap'
import { createWorker, TaskAbortedError } from '../../src/client/index.js'
import { waitFor } from './broker.js'

interface Request { method: string, url: string, body: Record<string, unknown> }

const task = (id: string) => ({
  id,
  application: 'app',
  namespace: 'ns',
  taskname: 't',
  parameters: {},
  headers: {},
  received_at: new Date().toISOString(),
  processing_deadline_duration: 60,
  retry_state: { attempts: 0, max_attempts: 1, on_attempts_exceeded: 'discard', at_most_once: false },
  processing_deadline: new Date(Date.now() + 60_000).toISOString(),
  processing_attempts: 0,
  lease: `lease-${id}`
})

/** A broker that hands out `queue` one claim at a time (a claim waits `claimDelayMs`) and answers the rest by `route`. */
async function fakeBroker (t: Test, queue: string[], o: { claimDelayMs?: number, cancelOnHeartbeat?: number, noRelease?: boolean, next?: { id: string, delayMs: number } } = {}) {
  const seen: Request[] = []
  let heartbeats = 0
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    let text = ''
    request.on('data', (chunk: Buffer) => { text += chunk.toString() })
    request.on('end', () => {
      const body = text === '' ? {} : JSON.parse(text) as Record<string, unknown>
      seen.push({ method: request.method ?? '', url: request.url ?? '', body })
      const answer = (status: number, value: unknown) => response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value))
      const url = request.url ?? ''
      if (url === '/v1/tasks/claim') {
        const next = queue.shift()
        setTimeout(() => answer(200, { tasks: next === undefined ? [] : [task(next)] }), next === undefined ? 50 : o.claimDelayMs ?? 0)
      } else if (url.endsWith('/heartbeat')) {
        heartbeats++
        answer(200, { processing_deadline: new Date(Date.now() + 60_000).toISOString(), cancel_requested: heartbeats >= (o.cancelOnHeartbeat ?? Infinity) })
      } else if (url.endsWith('/release') && o.noRelease !== true) answer(200, {})
      else if (url === '/v1/tasks/status') answer(200, { applied: (body.updates as unknown[]).length, queued: 0, not_found: [] })
      else if (url.endsWith('/status') && body.fetch_next !== undefined && o.next !== undefined) {
        const next = o.next
        o.next = undefined
        setTimeout(() => answer(200, { applied: true, queued: false, task: task(next.id) }), next.delayMs)
      } else if (url.endsWith('/status')) answer(200, { applied: true, queued: false, task: null })
      else answer(404, { statusCode: 404, code: 'TASKBROKER_ROUTE_NOT_FOUND', error: 'Not Found', message: url })
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

const silent = pino({ level: 'silent' })

t.test('a heartbeat answering cancel_requested aborts the handler; leases go back with heartbeats and the report', async (t) => {
  const broker = await fakeBroker(t, ['a'], { cancelOnHeartbeat: 2 })
  let reason: unknown
  const worker = createWorker({
    url: broker.url,
    waitMs: 50,
    heartbeatIntervalMs: 20,
    extendSec: 30,
    logger: silent,
    handler: async (_task, { signal, heartbeat }) => {
      await heartbeat({ step: 1 })
      // This very heartbeat may have brought the cancel (an automatic one went first): then the
      // signal is aborted already and its event has passed.
      if (!signal.aborted) await new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
      reason = signal.reason
      throw signal.reason
    }
  })
  t.ok(await waitFor(() => reason !== undefined))
  t.match(reason, new TaskAbortedError('cancelled'))
  await worker.stop()
  const beats = broker.seen.filter(r => r.url === '/v1/tasks/a/heartbeat')
  // An automatic heartbeat may go out before the handler's own.
  t.same(beats.find(b => b.body.progress !== undefined)?.body, { extend_sec: 30, progress: { step: 1 }, lease: 'lease-a' }, 'the handler\'s heartbeat with progress and lease')
  t.ok(beats.length >= 2, 'automatic heartbeats too')
  const report = broker.seen.find(r => r.url.startsWith('/v1/tasks/a/status') || r.url === '/v1/tasks/status')
  // One report alone goes out with fetch_next; several in a batch.
  const sent = report?.url === '/v1/tasks/status' ? (report.body.updates as unknown[])[0] : report?.body
  t.match(sent, { status: 'failure', lease: 'lease-a' }, 'the report carries the lease')
})

t.test('stop(): a task claimed while stopping is released with its lease, not run', async (t) => {
  const broker = await fakeBroker(t, ['late'], { claimDelayMs: 300 })
  const ran: string[] = []
  const worker = createWorker({ url: broker.url, waitMs: 1_000, logger: silent, handler: (task) => { ran.push(task.id) } })
  t.ok(await waitFor(() => broker.seen.some(r => r.url === '/v1/tasks/claim')), 'a claim is in flight')
  await worker.stop()
  t.same(ran, [], 'not run')
  t.same(broker.seen.filter(r => r.url.endsWith('/release')), [{ method: 'POST', url: '/v1/tasks/late/release', body: { lease: 'lease-late' } }])
  t.equal(worker.holding, 0)
})

t.test('stop() past its deadline: a handler that ignores the abort is released and its late result never reported', async (t) => {
  const broker = await fakeBroker(t, ['stuck'])
  let finish!: () => void
  const stuck = new Promise<void>(resolve => { finish = resolve })
  let started = false
  const worker = createWorker({ url: broker.url, waitMs: 50, logger: silent, handler: async () => { started = true; await stuck } })
  t.ok(await waitFor(() => started))
  await worker.stop({ timeoutMs: 50 })
  t.ok(broker.seen.some(r => r.url === '/v1/tasks/stuck/release'), 'released')
  finish()
  await new Promise(resolve => setTimeout(resolve, 100))
  t.notOk(broker.seen.some(r => r.url.includes('status')), 'no report for the abandoned task')
})

t.test('a listener that throws does not cost a report', async (t) => {
  const broker = await fakeBroker(t, ['x'])
  const worker = createWorker({ url: broker.url, waitMs: 50, logger: silent, handler: () => {} })
  worker.on('start', () => { throw new Error('listener bug') })
  worker.on('end', () => { throw new Error('listener bug') })
  t.ok(await waitFor(() => broker.seen.some(r => r.url === '/v1/tasks/x/status')), 'reported')
  await worker.stop()
  t.equal(worker.holding, 0)
})

t.test('stop() while a report with fetch_next is in flight, on a broker without release: the task it brings runs before stop() resolves', async (t) => {
  const broker = await fakeBroker(t, ['first'], { noRelease: true, next: { id: 'second', delayMs: 300 } })
  const ran: string[] = []
  const worker = createWorker({ url: broker.url, waitMs: 50, logger: silent, handler: (task) => { ran.push(task.id) } })
  t.ok(await waitFor(() => broker.seen.some(r => r.url === '/v1/tasks/first/status')), 'the report with fetch_next is in flight')
  await worker.stop()
  t.same(ran, ['first', 'second'], 'the late task ran')
  t.ok(broker.seen.some(r => r.url === '/v1/tasks/second/release'), 'release was tried first')
  t.ok(broker.seen.some(r => r.url === '/v1/tasks/second/status' || (r.url === '/v1/tasks/status' && JSON.stringify(r.body).includes('second'))), 'and its outcome reported')
  t.equal(worker.holding, 0)
})
