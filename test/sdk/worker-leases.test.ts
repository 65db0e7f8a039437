/**
 * The pull worker and the lease endpoints of a real broker (real port, signing on, both stores):
 * automatic heartbeats keep a short-deadline task alive, a cancel reaches the handler's signal
 * through a heartbeat answer, stop() releases tasks claimed but not started, and a report under
 * a stale lease is refused without harm (single and batch).
 */
import pino from 'pino'
import t from 'tap'
import { createClient, createWorker, TaskAbortedError } from '../../src/client/index.js'
import { NO_UPKEEP } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { SECRET, startBroker, waitFor } from './broker.js'

const silent = pino({ level: 'silent' })
const task = (id: string, extra: Record<string, unknown> = {}) => ({ id, application: 'app', namespace: 'ns', taskname: 'work', ...extra })
const untilAborted = (signal: AbortSignal) => new Promise<void>(resolve => {
  if (signal.aborted) resolve()
  else signal.addEventListener('abort', () => resolve(), { once: true })
})

eachBackend(t, 'automatic heartbeats keep a 2 s task alive while its handler runs several deadlines long', { timeout: 120_000 }, async (t, backend) => {
  // Upkeep runs often and resets at once: without heartbeats the task would be handed out again.
  const broker = await startBroker(t, backend, {
    TASKBROKER_UPKEEP_INTERVAL_MS: '100',
    TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0',
    TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: '1'
  })
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce([task('long', { processing_deadline_duration: 2 })])
  let firstDeadline = Infinity
  let heartbeats = 0
  let midway: { status: string, processing_attempts: number, progress: unknown } | undefined
  let aborted: unknown
  let handled = false
  const worker = createWorker({
    client,
    waitMs: 300,
    heartbeatIntervalMs: 300,
    logger: silent,
    handler: async (claimed, { signal, heartbeat }) => {
      firstDeadline = Date.parse((claimed as { processing_deadline: string }).processing_deadline)
      await heartbeat({ step: 1 }) // a heartbeat of the handler's own, with progress
      // Run until the first deadline is two deadlines behind and several heartbeats went out.
      await waitFor(() => signal.aborted || (Date.now() > firstDeadline + 4_000 && heartbeats >= 5), 90_000)
      const state = await client.getTask('long')
      midway = { status: state.status, processing_attempts: state.processing_attempts, progress: state.progress }
      aborted = signal.aborted ? signal.reason : undefined
      handled = true
    }
  })
  t.teardown(() => worker.stop())
  worker.on('heartbeat', () => { heartbeats++ })
  const stale: unknown[] = []
  const reported: Array<{ ids: string[], applied: number }> = []
  worker.on('stale', (s: unknown) => stale.push(s))
  worker.on('reported', (r: { ids: string[], applied: number }) => reported.push(r))
  t.ok(await waitFor(() => reported.length > 0, 100_000), 'the task was reported')
  await worker.stop()
  t.ok(handled)
  t.equal(aborted, undefined, 'the handler\'s signal was never aborted')
  t.same(midway, { status: 'processing', processing_attempts: 0, progress: { step: 1 } }, 'past its first deadline it was still processing, never reset')
  t.same(reported, [{ ids: ['long'], applied: 1, cancelled: [] }], 'the report was applied')
  t.same(stale, [])
  t.match(await client.getTask('long').catch((e: unknown) => e), { code: 'TASKBROKER_TASK_NOT_FOUND' }, 'completed')
})

eachBackend(t, 'a cancel of a running task reaches its handler through the heartbeat answer; the task ends', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  await client.produce([task('doomed', { retry_state: { max_attempts: 5 } })])
  let started = false
  let reason: unknown
  const worker = createWorker({
    client,
    waitMs: 300,
    heartbeatIntervalMs: 200,
    logger: silent,
    handler: async (_task, { signal }) => {
      started = true
      await untilAborted(signal)
      reason = signal.reason
      throw signal.reason
    }
  })
  t.teardown(() => worker.stop())
  const heard: Array<{ cancel_requested: boolean }> = []
  const reported: Array<{ ids: string[], cancelled: string[] }> = []
  worker.on('heartbeat', (h: { cancel_requested: boolean }) => heard.push(h))
  worker.on('reported', (r: { ids: string[], cancelled: string[] }) => reported.push(r))
  t.ok(await waitFor(() => started))
  t.same(await client.cancel('doomed'), { removed: false, requested: true }, 'held by the worker: a cancel is requested')
  t.equal((await client.getTask('doomed')).cancel_requested, true)
  t.ok(await waitFor(() => reason !== undefined), 'the handler was aborted')
  t.match(reason, new TaskAbortedError('cancelled'))
  t.ok(heard.some(h => h.cancel_requested), 'a heartbeat answer carried cancel_requested')
  t.ok(await waitFor(() => reported.length > 0))
  t.same(reported[0]?.cancelled, ['doomed'], 'the report ended the cancelled task')
  await worker.stop()
  const state = await client.getTask('doomed')
  t.equal(state.status, 'complete', 'ended, not retried although it failed with attempts left')
  t.equal((await client.stats()).by_status.processing ?? 0, 0)
})

eachBackend(t, 'stop() releases tasks claimed but not started: pending again, attempts unchanged', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  const ids = ['r-0', 'r-1', 'r-2']
  await client.produce(ids.map(id => task(id, { retry_state: { max_attempts: 3 } })))
  let ran = 0
  const worker = createWorker({ client, concurrency: 3, waitMs: 300, logger: silent, handler: () => { ran++ } })
  const claimed: string[] = []
  const released: string[] = []
  worker.on('claimed', (list: Array<{ id: string }>) => claimed.push(...list.map(c => c.id)))
  worker.on('released', (r: { ids: string[] }) => released.push(...r.ids))
  // The first claim is already on its way: its tasks arrive after stop() began.
  await worker.stop()
  t.same(claimed.sort(), ids, 'the claim in flight brought the tasks')
  t.same(released.sort(), ids, 'and they were released')
  t.equal(ran, 0, 'no handler ran')
  for (const id of ids) {
    const state = await client.getTask(id)
    t.match(state, { status: 'pending', processing_attempts: 0, task: { retry_state: { attempts: 0 } } }, `${id} is pending again, no attempt counted`)
  }
  const again = await client.claim({ limit: 3 })
  t.equal(again.tasks.length, 3, 'claimable at once')
})

eachBackend(t, 'the worker sends its lease: a report under a stale lease is refused and told, single and batched', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())

  /** A worker whose every slot waits at the gate (so it claims nothing meanwhile), without heartbeats (they would find the lease stale first). */
  function gatedWorker (concurrency: number) {
    let open!: () => void
    const gate = new Promise<void>(resolve => { open = resolve })
    const started = new Set<string>()
    const handled: string[] = []
    const stale: string[][] = []
    const warnings: string[] = []
    const worker = createWorker({
      client,
      application: 'app',
      concurrency,
      waitMs: 300,
      heartbeatIntervalMs: 600_000,
      logger: silent,
      handler: async (claimed) => {
        started.add(claimed.id)
        await gate
        handled.push(claimed.id)
      }
    })
    t.teardown(() => worker.stop())
    worker.on('stale', (s: { ids: string[] }) => stale.push(s.ids))
    worker.on('warning', (message: string) => warnings.push(message))
    return { worker, open, started, handled, stale, warnings }
  }

  /** While the worker's handlers wait: the tasks are released (unfenced) and claimed again elsewhere. */
  async function takeOver (ids: string[]) {
    for (const id of ids) t.same(await client.release(id), { released: true, cancelled: false })
    const taken = await client.claim({ application: 'app', limit: ids.length })
    t.same(taken.tasks.map(c => c.id).sort(), ids)
    return taken.tasks
  }

  await client.produce([task('single')])
  const one = gatedWorker(1)
  t.ok(await waitFor(() => one.started.has('single')))
  const [single] = await takeOver(['single'])
  one.open()
  t.ok(await waitFor(() => one.stale.length === 1), 'the single report was refused as stale')
  t.same(one.stale[0], ['single'])
  t.ok(one.warnings.some(w => w.includes('lease is stale')), 'and logged')
  t.equal((await client.getTask('single')).status, 'processing', 'not applied: the new holder still has it')
  t.same(await client.report('single', { status: 'complete', lease: single!.lease }), { applied: true, queued: false, task: null }, 'the new holder reports it')
  await client.produce([task('after-stale')])
  t.ok(await waitFor(() => one.handled.includes('after-stale')), 'the worker goes on working')
  await one.worker.stop()
  t.match(await client.getTask('after-stale').catch((e: unknown) => e), { code: 'TASKBROKER_TASK_NOT_FOUND' }, 'its own report applied')

  await client.produce([task('b-0'), task('b-1')])
  const two = gatedWorker(2)
  t.ok(await waitFor(() => two.started.has('b-0') && two.started.has('b-1')))
  const taken = await takeOver(['b-0', 'b-1'])
  two.open() // both finish at once: one batch report
  t.ok(await waitFor(() => two.stale.length === 1), 'the batch answer listed them as stale')
  t.same(two.stale[0]?.slice().sort(), ['b-0', 'b-1'])
  for (const c of taken) t.equal((await client.getTask(c.id)).status, 'processing', `${c.id} not applied`)
  await two.worker.stop()
})
