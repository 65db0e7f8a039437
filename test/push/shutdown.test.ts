/**
 * Shutdown in push mode: the fetch loops stop, queued tasks go back to pending, pushes in flight
 * finish (or are aborted when the shutdown budget runs out) and every outcome is written before
 * the store closes. Nothing is left `claimed`; every task the worker accepted is `processing`.
 */
import t from 'tap'
import { task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { fakeWorker, produce, startPushApp, statusCounts, taskRows, until } from './helpers.js'

const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

for (const batching of ['true', 'false']) {
  eachBackend(t, `pushes in flight at shutdown finish and are recorded; the rest go back to pending (update batching ${batching})`, async (t, backend) => {
    const worker = await fakeWorker(t, { delayMs: 300 })
    const { app, database, config } = await startPushApp(t, backend, {
      TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
      TASKBROKER_PUSH_UPDATE_BATCHING: batching,
      TASKBROKER_PUSH_UPDATE_FLUSH_INTERVAL_MS: '1000', // only the final flush writes them
      TASKBROKER_PUSH_CONCURRENCY: '4',
      TASKBROKER_PUSH_QUEUE_SIZE: '4'
    })
    await produce(t, app, Array.from({ length: 20 }, () => task({ application: 'shop' })))
    await until(t, 'four pushes are in flight and four more wait', async () =>
      worker.received.length === 4 && (await statusCounts(database)).claimed === 8)

    const started = Date.now()
    await app.close()
    // Bound for a bug (close waiting for its whole shutdown timeout and more), not a speed target.
    t.ok(Date.now() - started < config.broker.shutdownTimeoutMs + 10_000, 'close did not wait for anything but the pushes in flight')
    const rows = await taskRows(database)
    t.equal(rows.length, 20, 'nothing lost')
    t.equal(rows.filter(r => r.status === 'claimed').length, 0, 'nothing left claimed')
    t.equal(worker.accepted.length, 4, 'the four pushes in flight finished')
    for (const id of worker.accepted) t.equal(rows.find(r => r.id === id)?.status, 'processing', 'a delivered task is processing')
    t.equal(rows.filter(r => r.status === 'pending').length, 16, 'the others are pending, for the next broker')
    t.ok(rows.every(r => r.processing_attempts === 0), 'no attempt counted')
  })
}

eachBackend(t, 'a push still hanging when the shutdown budget runs out is aborted; its task goes back to pending', async (t, backend) => {
  const worker = await fakeWorker(t, { mode: 'hang' })
  const { app, database } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
    TASKBROKER_PUSH_TIMEOUT_MS: '60000',
    TASKBROKER_SHUTDOWN_TIMEOUT_MS: '1000'
  })
  await produce(t, app, Array.from({ length: 3 }, () => task({ application: 'shop' })))
  await until(t, 'the pushes hang', () => worker.received.length === 3)
  const started = Date.now()
  await app.close()
  // The push would hang for its 60 s timeout: well within that (budget + 10 s) means it was aborted.
  t.ok(Date.now() - started < 1_000 + 10_000, `close kept to its budget (${Date.now() - started} ms; budget 1 s, push timeout 60 s)`)
  t.same(await statusCounts(database), { pending: 3 }, 'all pending again, none claimed')
})
