/**
 * The pull worker against a real broker on a real port with signing on, on both stores: outcomes,
 * batched reports, fetch_next chaining, the deadline as an AbortSignal, a broker restart in the
 * middle of a run, and stop() under load leaving nothing processing.
 */
import pino from 'pino'
import t from 'tap'
import { createClient, createWorker, retry, TaskAbortedError, type TaskEnd } from '../../src/client/index.js'
import { NO_UPKEEP } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { SECRET, sleep, startBroker, waitFor } from './broker.js'

const silent = pino({ level: 'silent' })
const tasks = (n: number, extra: Record<string, unknown> = {}) =>
  Array.from({ length: n }, (_, i) => ({ id: `task-${i}`, application: 'app', namespace: 'ns', taskname: 'work', parameters: { i }, ...extra }))

eachBackend(t, 'return completes, a throw fails, retry() retries; reports of tasks that end together go in one batch', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce([
    ...tasks(6),
    { id: 'fails', application: 'app', namespace: 'ns', taskname: 'work', parameters: { fail: true }, retry_state: { max_attempts: 3 } },
    { id: 'retries', application: 'app', namespace: 'ns', taskname: 'work', parameters: { retry: true }, retry_state: { max_attempts: 3 } }
  ])
  let release!: () => void
  const together = new Promise<void>(resolve => { release = resolve })
  const worker = createWorker({
    url: broker.url,
    secrets: [SECRET],
    application: 'app',
    concurrency: 8,
    waitMs: 500,
    logger: silent,
    handler: async (task) => {
      await together
      const p = task.parameters as { fail?: boolean, retry?: boolean }
      if (p.fail === true) throw new Error('boom')
      if (p.retry === true) return retry({ delaySec: 30 })
      return 'ignored: any return completes'
    }
  })
  const started: string[] = []
  const reported: string[][] = []
  const ended: TaskEnd[] = []
  worker.on('start', (task: { id: string }) => started.push(task.id))
  worker.on('reported', (r: { ids: string[] }) => reported.push(r.ids))
  worker.on('end', (e: TaskEnd) => ended.push(e))
  t.ok(await waitFor(() => started.length === 8), 'all 8 tasks started')
  release()
  t.ok(await waitFor(() => reported.flat().length === 8), 'all 8 reported')
  t.same(reported.map(ids => ids.length), [8], 'in one batch report')
  await worker.stop()
  t.equal(worker.holding, 0)
  t.match(ended.find(e => e.task.id === 'fails'), { report: { status: 'failure' }, error: { message: 'boom' } })
  t.equal((await client.getTask('fails')).status, 'failure')
  const retried = await client.getTask('retries')
  t.equal(retried.status, 'retry')
  t.equal(retried.task.retry_state.delay_on_retry, 30, 'retry({delaySec}) sent delay_on_retry')
  t.match(await client.getTask('task-0').catch((e: unknown) => e), { code: 'TASKBROKER_TASK_NOT_FOUND' }, 'completed tasks are gone')
})

eachBackend(t, 'one task at a time: each report brings the next task (fetch_next), no claim between', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce(tasks(5))
  const handled: string[] = []
  const claimed: string[] = []
  const worker = createWorker({ client, application: 'app', namespace: 'ns', waitMs: 300, logger: silent, handler: (task) => { handled.push(task.id) } })
  worker.on('claimed', (list: Array<{ id: string }>) => claimed.push(...list.map(task => task.id)))
  t.ok(await waitFor(() => handled.length === 5), 'all five handled')
  await worker.stop()
  t.same(handled, tasks(5).map(task => task.id), 'in order')
  t.same(claimed, ['task-0'], 'only the first came from a claim')
  t.equal((await client.stats()).by_status.processing ?? 0, 0)
})

eachBackend(t, 'the deadline reaches the handler as an AbortSignal when no heartbeat moved it', async (t, backend) => {
  const broker = await startBroker(t, backend, { ...NO_UPKEEP, TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: '0' })
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce([{ id: 'slow', application: 'app', namespace: 'ns', taskname: 'slow', processing_deadline_duration: 1 }])
  let reason: unknown
  const worker = createWorker({
    client,
    waitMs: 300,
    heartbeatIntervalMs: 600_000, // none before the deadline (worker-leases.test.ts has them keep a task alive)
    logger: silent,
    handler: async (_task, { signal }) => {
      await new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
      reason = signal.reason
      throw signal.reason
    }
  })
  const warnings: string[] = []
  worker.on('warning', (message: string) => warnings.push(message))
  t.ok(await waitFor(() => reason !== undefined), 'the handler was aborted')
  t.match(reason, new TaskAbortedError('deadline'))
  t.ok(await waitFor(() => warnings.some(w => /task slow failed after it was aborted \(deadline\): not reported/.test(w))), 'the worker says why it does not report')
  await worker.stop()
  // A failure report would end a task that did nothing wrong (its deadline may have passed while
  // the broker was out of reach): the broker's deadline reset decides instead (upkeep is off here).
  t.match(await client.getTask('slow'), { status: 'processing', processing_attempts: 0 }, 'its throw after the deadline is not reported')
})

eachBackend(t, 'stop() ends even when an aborted handler never returns and its task is gone from the broker', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce([{ id: 'stuck', application: 'app', namespace: 'ns', taskname: 'stuck' }])
  let started = false
  const worker = createWorker({
    client,
    waitMs: 300,
    heartbeatIntervalMs: 600_000,
    logger: silent,
    handler: async () => {
      started = true
      await new Promise(() => {}) // ignores its signal for ever
    }
  })
  t.ok(await waitFor(() => started), 'the handler runs')
  await client.report('stuck', { status: 'complete' }) // ended elsewhere: gone from the broker
  const warnings: string[] = []
  worker.on('warning', (message: string) => warnings.push(message))
  const stopped = await Promise.race([worker.stop({ timeoutMs: 200 }).then(() => 'stopped'), sleep(60_000).then(() => 'still stopping')])
  t.equal(stopped, 'stopped', 'stop() resolved')
  t.ok(warnings.some(w => /still running at the stop deadline/.test(w)), 'after aborting it')
  t.equal(worker.holding, 0, 'nothing held')
})

eachBackend(t, 'a broker restart in the middle of a run: every task is done once the broker is back', { timeout: 240_000 }, async (t, backend) => {
  const broker = await startBroker(t, backend, { TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0', TASKBROKER_UPKEEP_INTERVAL_MS: '200' })
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  const total = 200
  // A short deadline: a task whose claim answer was lost in the restart comes back soon.
  await client.produce(tasks(total, { processing_deadline_duration: 5 }))
  const done = new Set<string>()
  // From the 50th task on, handlers wait until the broker is down, so they finish and report
  // while nothing listens, and work is certainly left for after the restart.
  let open!: () => void
  const brokerDown = new Promise<void>(resolve => { open = resolve })
  const worker = createWorker({
    url: broker.url,
    secrets: [SECRET],
    application: 'app',
    concurrency: 4,
    waitMs: 500,
    logger: silent,
    handler: async (task) => {
      if (done.size >= 50) await brokerDown
      await sleep(2)
      done.add(task.id)
    }
  })
  t.ok(await waitFor(() => done.size >= 50), 'a quarter done')
  let duringRestart = 0
  await broker.restart(async () => {
    duringRestart = done.size
    open()
    await sleep(300) // the worker meets a closed port for a while
  })
  t.ok(await waitFor(async () => {
    const stats = await client.stats()
    return Object.values(stats.by_status).every(n => n === 0)
  }, 180_000), 'no task left in the broker')
  t.equal(done.size, total, 'every task handled')
  t.ok(duringRestart < total, `work was left for after the restart (${duringRestart} done before)`)
  await worker.stop()
  t.equal(worker.holding, 0)
})

eachBackend(t, 'stop() under load: claims end, running tasks finish, nothing is left processing', { timeout: 120_000 }, async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce(tasks(300))
  let finished = 0
  const worker = createWorker({
    client,
    application: 'app',
    concurrency: 8,
    waitMs: 1_000,
    logger: silent,
    handler: async () => {
      await sleep(5)
      finished++
    }
  })
  t.ok(await waitFor(() => finished >= 30))
  await worker.stop()
  const after = finished
  t.equal(worker.holding, 0, 'the worker holds nothing')
  const stats = await client.stats()
  t.equal(stats.by_status.processing ?? 0, 0, 'nothing processing')
  t.equal(stats.by_status.claimed ?? 0, 0, 'nothing claimed')
  t.equal(stats.by_status.pending, 300 - after, 'every task not handled is pending again or never left')
  await sleep(200)
  t.equal(finished, after, 'nothing runs after stop() resolved')
})

eachBackend(t, 'stop() with a deadline aborts a task that runs past it; its throw is reported', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce([{ id: 'long', application: 'app', namespace: 'ns', taskname: 'long' }])
  let startedTask = false
  let reason: unknown
  const worker = createWorker({
    client,
    waitMs: 300,
    logger: silent,
    handler: async (_task, { signal }) => {
      startedTask = true
      await new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
      reason = signal.reason
      throw signal.reason
    }
  })
  t.ok(await waitFor(() => startedTask))
  await worker.stop({ timeoutMs: 200 })
  t.match(reason, new TaskAbortedError('shutdown'))
  t.equal((await client.getTask('long')).status, 'failure')
  t.equal((await client.stats()).by_status.processing ?? 0, 0)
})

eachBackend(t, 'a worker that keeps up makes one request per task: its report long-polls for the next one', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  /** POST /v1/tasks/claim and POST /v1/tasks/{id}/status requests the broker has answered. */
  const requests = async (route: string) => {
    const text = (await broker.app().inject({ method: 'GET', url: '/metrics' })).body
    return text.split('\n').filter(l => l.startsWith('taskbroker_http_request_duration_seconds_count{') && l.includes(`route="${route}"`))
      .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)
  }
  const waiters = async () => {
    const line = (await broker.app().inject({ method: 'GET', url: '/metrics' })).body.split('\n').find(l => l.startsWith('taskbroker_claim_waiters '))
    return Number(line?.split(' ')[1] ?? 0)
  }
  const done: string[] = []
  const worker = createWorker({ url: broker.url, secrets: [SECRET], application: 'app', concurrency: 1, waitMs: 5_000, logger: silent, handler: async (task) => { done.push(task.id) } })
  t.ok(await waitFor(async () => await waiters() === 1), 'the worker long-polls a claim')
  for (const [i, task] of tasks(3).entries()) {
    await client.produce([task])
    t.ok(await waitFor(() => done.length === i + 1), `${task.id} ran`)
    // Reported with fetch_next, which now waits for the next task.
    t.ok(await waitFor(async () => await waiters() === 1), `after ${task.id} the worker waits again`)
  }
  t.equal(await requests('/v1/tasks/claim'), 1, 'one claim, which brought task-0')
  t.equal(await requests('/v1/tasks/:id/status'), 2, 'two reports answered, each with the next task; the third waits')
  await worker.stop()
  t.equal(worker.holding, 0)
  t.match(await client.getTask('task-2').catch((e: unknown) => e), { code: 'TASKBROKER_TASK_NOT_FOUND' }, 'the last task was reported too')
})

t.test('createWorker refuses options a broker would refuse on every claim, or that leave it idle', async (t) => {
  const base = { url: 'http://127.0.0.1:9', handler: () => {}, logger: silent }
  for (const [bad, message] of [
    [{ concurrency: 0 }, /concurrency must be an integer of at least 1 \(got 0\)/],
    [{ concurrency: 1.5 }, /concurrency must be an integer/],
    [{ waitMs: -1 }, /waitMs must be an integer of at least 0/],
    [{ heartbeatIntervalMs: 0 }, /heartbeatIntervalMs must be/],
    [{ extendSec: -1 }, /extendSec must be an integer of at least 1/],
    [{ namespace: 'emails' }, /a namespace filter needs an application/],
    [{ handler: undefined }, /needs a handler function/]
  ] as const) {
    t.throws(() => createWorker({ ...base, ...bad } as never), { name: 'TypeError', message }, JSON.stringify(bad))
  }
})

eachBackend(t, 'a claim refused for good (a wrong secret) is an error each time, told to an error listener, and the worker goes on', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const worker = createWorker({ url: broker.url, secrets: ['not-the-secret'], waitMs: 100, logger: silent, handler: () => {} })
  const errors: Array<{ code: string, statusCode: number }> = []
  worker.on('error', (error: { code: string, statusCode: number }) => errors.push(error))
  t.ok(await waitFor(() => errors.length >= 2, 60_000), 'told more than once')
  t.match(errors[0], { code: 'TASKBROKER_UNAUTHORIZED', statusCode: 401 })
  await worker.stop()
})

eachBackend(t, 'taskTimeoutMs: past it the signal aborts with timeout and heartbeats stop; the handler\'s throw is reported', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce([{ id: 'too-long', application: 'app', namespace: 'ns', taskname: 'slow', processing_deadline_duration: 60 }])
  let reason: unknown
  let heartbeats = 0
  const worker = createWorker({
    client,
    waitMs: 300,
    heartbeatIntervalMs: 100,
    taskTimeoutMs: 500,
    logger: silent,
    handler: async (_task, { signal }) => {
      await new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
      reason = signal.reason
      const atAbort = heartbeats
      await sleep(500) // a handler slow to give up: no heartbeat keeps the task meanwhile
      if (heartbeats !== atAbort) throw new Error(`${heartbeats - atAbort} heartbeat(s) after the timeout`)
      throw signal.reason
    }
  })
  worker.on('heartbeat', () => { heartbeats++ })
  const ended: TaskEnd[] = []
  worker.on('end', (end: TaskEnd) => ended.push(end))
  t.ok(await waitFor(() => ended.length === 1), 'the task ended')
  t.match(reason, new TaskAbortedError('timeout'))
  t.match(ended[0]?.error, new TaskAbortedError('timeout'), 'it threw its signal\'s reason, not a late heartbeat')
  await worker.stop()
  t.equal((await client.getTask('too-long')).status, 'failure', 'a handler that runs out of time and throws is reported failure')
})
