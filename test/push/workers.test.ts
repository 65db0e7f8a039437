/** The push client: results by answer, and the per-worker pause (exponential, bounded, Retry-After). */
import t from 'tap'
import { createPushWorkers } from '../../src/core/push/workers.js'
import { fakeWorker, freePort } from './helpers.js'

const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

const body = JSON.stringify({ task: { id: 'x' }, callback_url: 'http://127.0.0.1:1/v1/tasks/x/status' })
const never = new AbortController().signal

t.test('a failing worker pauses, doubling per failure up to the bound; its applications are left out meanwhile', async (t) => {
  const dead = `http://127.0.0.1:${await freePort()}/push`
  const mail = await fakeWorker(t)
  let clock = 1_000_000
  const workers = createPushWorkers({
    workers: [{ application: 'shop', url: dead }, { application: 'shop-eu', url: dead }, { application: 'mail', url: mail.url }],
    timeoutMs: 2000,
    workerBackoffMs: 100,
    workerBackoffMaxMs: 350
  }, { secrets: [], now: () => clock })
  t.teardown(() => workers.close())

  t.same(workers.availableApplications(), ['shop', 'shop-eu', 'mail'])
  const failures = await Promise.all([1, 2, 3].map(() => workers.push({ application: 'shop', body, abort: never })))
  t.same(failures, ['unreachable', 'unreachable', 'unreachable'])
  t.same(workers.availableApplications(), ['mail'], 'both applications of the down worker are paused')
  t.equal(workers.nextResumeInMs(), 100, 'pushes that failed together count as one step: 100 ms, not 400')
  t.equal(workers.pausing(), 1)
  t.equal(await workers.push({ application: 'shop-eu', body, abort: never }), 'backoff', 'not even sent while paused')

  const steps: number[] = []
  for (let i = 0; i < 4; i++) {
    clock += workers.nextResumeInMs() ?? 0
    t.equal(await workers.push({ application: 'shop', body, abort: never }), 'unreachable')
    steps.push(workers.nextResumeInMs() ?? 0)
  }
  t.same(steps, [200, 350, 350, 350], 'doubling, bounded by the max')

  t.equal(await workers.push({ application: 'mail', body, abort: never }), 'delivered', 'the other worker is unaffected')
})

t.test('a worker starting to fail is logged once per streak, and so is its return', async (t) => {
  const worker = await fakeWorker(t, { mode: 'refuse' })
  let clock = 0
  const lines: Array<{ level: string, fields: Record<string, unknown>, message: string }> = []
  const log = {
    warn: (fields: Record<string, unknown>, message: string) => { lines.push({ level: 'warn', fields, message }) },
    info: (fields: Record<string, unknown>, message: string) => { lines.push({ level: 'info', fields, message }) }
  }
  const workers = createPushWorkers({ workers: [{ application: 'shop', url: worker.url }], timeoutMs: 2000, workerBackoffMs: 10, workerBackoffMaxMs: 60_000 }, { secrets: [], now: () => clock, log: log as never })
  t.teardown(() => workers.close())
  for (let i = 0; i < 3; i++) {
    t.equal(await workers.push({ application: 'shop', body, abort: never }), 'refused')
    clock += 1_000
  }
  t.same(lines.map(l => l.level), ['warn'], 'three failures in a row: one warning')
  t.match(lines[0], { fields: { worker: worker.url, result: 'refused' }, message: /push worker failing/ })
  worker.mode = 'accept'
  t.equal(await workers.push({ application: 'shop', body, abort: never }), 'delivered')
  t.equal(await workers.push({ application: 'shop', body, abort: never }), 'delivered')
  t.same(lines.map(l => l.level), ['warn', 'info'], 'its return: one line')
})

t.test('429/503 is "refused" and honours Retry-After up to the bound; a success ends the pause', async (t) => {
  const worker = await fakeWorker(t, { mode: 'refuse' })
  let clock = 0
  const workers = createPushWorkers({ workers: [{ application: 'shop', url: worker.url }], timeoutMs: 2000, workerBackoffMs: 10, workerBackoffMaxMs: 60_000 }, { secrets: [], now: () => clock })
  t.teardown(() => workers.close())
  t.equal(await workers.push({ application: 'shop', body, abort: never }), 'refused')
  t.equal(workers.nextResumeInMs(), 10, 'Retry-After: 0 → the exponential pause')
  clock += 10
  worker.mode = 'reject'
  t.equal(await workers.push({ application: 'shop', body, abort: never }), 'rejected', 'any other status is "rejected"')
  clock += 20
  worker.mode = 'accept'
  t.equal(await workers.push({ application: 'shop', body, abort: never }), 'delivered')
  t.equal(workers.pausing(), 0)
  t.equal(workers.nextResumeInMs(), undefined)
})

t.test('timeouts and shutdown aborts', async (t) => {
  const worker = await fakeWorker(t, { mode: 'hang' })
  const workers = createPushWorkers({ workers: [{ application: 'shop', url: worker.url }], timeoutMs: 100, workerBackoffMs: 1, workerBackoffMaxMs: 1 }, { secrets: [] })
  t.teardown(() => workers.close())
  t.equal(await workers.push({ application: 'shop', body, abort: never }), 'timeout')
  await new Promise(resolve => setTimeout(resolve, 5))
  const shutdown = new AbortController()
  const pushing = workers.push({ application: 'shop', body, abort: shutdown.signal })
  setTimeout(() => shutdown.abort(), 20)
  t.equal(await pushing, 'shutdown')
  t.equal(workers.pausing(), 0, 'an abort at shutdown does not pause the worker')
})
