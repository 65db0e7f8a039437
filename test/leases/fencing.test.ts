/**
 * Lease fencing: every claim (pull, the fetch_next rider, push) hands out a lease; a report,
 * heartbeat or release carrying an older one (the task was reset and claimed again) is stale and
 * changes nothing. Reports without a lease behave as before.
 */
import { sql } from 'drizzle-orm'
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError } from '../helpers/requests.js'
import { fakeWorker, produce, startPushApp, until } from '../push/helpers.js'
import { FOREIGN_LEASE, hold, post, stateOf } from './kit.js'

keepAlive(t)

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

for (const batching of ['true', 'false']) {
  eachBackend(t, `pull: reports are fenced by the claim's lease (status batching ${batching})`, async (t, backend) => {
    const { app } = await buildTestApp(t, backend, {
      ...NO_UPKEEP,
      TASKBROKER_STATUS_BATCHING: batching,
      TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0',
      TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: '0'
    })

    await t.test('each claimed task carries its own lease', async (t) => {
      const held = await hold(t, app, ['l-1', 'l-2'], 'claims')
      for (const claim of held.values()) t.match(claim.lease, UUID)
      t.not(held.get('l-1')?.lease, held.get('l-2')?.lease)
    })

    await t.test('a report under another lease: 409 TASKBROKER_LEASE_STALE and nothing changed; under its own: applied', async (t) => {
      const held = await hold(t, app, ['f-1'], 'single')
      assertError(t, await post(app, '/v1/tasks/f-1/status', { status: 'failure', lease: FOREIGN_LEASE }), 409, 'TASKBROKER_LEASE_STALE')
      t.equal((await stateOf(app, 'f-1'))?.status, 'processing')
      t.same((await post(app, '/v1/tasks/f-1/status', { status: 'complete', lease: held.get('f-1')?.lease })).json(), { applied: true, queued: false, task: null })
      t.equal(await stateOf(app, 'f-1'), null)
      assertError(t, await post(app, '/v1/tasks/f-1/status', { status: 'complete', lease: 'nope' }), 400, 'TASKBROKER_INVALID_REQUEST', 'lease')
    })

    await t.test('a task reset by upkeep and claimed again refuses its first holder', async (t) => {
      const first = await hold(t, app, ['reset-me'], 'reset', { processing_deadline_duration: 1 })
      const oldLease = first.get('reset-me')?.lease
      await app.broker.upkeep.runOnce(new Date(Date.now() + 60_000))
      const reset = await stateOf(app, 'reset-me')
      t.match(reset, { status: 'pending', processing_attempts: 1 }, 'reset by upkeep')
      const again = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'reset' } })
      const newLease = again.json().tasks[0]?.lease
      t.match(newLease, UUID)
      t.not(newLease, oldLease, 'a new claim, a new lease')

      assertError(t, await post(app, '/v1/tasks/reset-me/status', { status: 'complete', lease: oldLease }), 409, 'TASKBROKER_LEASE_STALE')
      assertError(t, await post(app, '/v1/tasks/reset-me/heartbeat', { lease: oldLease }), 409, 'TASKBROKER_LEASE_STALE')
      assertError(t, await post(app, '/v1/tasks/reset-me/release', { lease: oldLease }), 409, 'TASKBROKER_LEASE_STALE')
      const batch = await post(app, '/v1/tasks/status', { updates: [{ id: 'reset-me', status: 'failure', lease: oldLease }, { id: 'ghost', status: 'failure', lease: oldLease }] })
      t.same(batch.json(), { applied: 0, queued: 0, not_found: ['ghost'], stale: ['reset-me'] }, 'the batch lists it as stale beside not_found')
      t.equal((await stateOf(app, 'reset-me'))?.status, 'processing', 'the second holder still has it')

      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
      t.match(metrics, /taskbroker_stale_reports_total\{kind="status"\} [2-9]/)
      t.match(metrics, /taskbroker_stale_reports_total\{kind="release"\} 1/)

      t.same((await post(app, '/v1/tasks/status', { updates: [{ id: 'reset-me', status: 'complete', lease: newLease }] })).json(),
        { applied: 1, queued: 0, not_found: [] }, 'the current holder\'s report applies')
    })

    await t.test('reports without a lease are applied whoever holds the task (workers that send none)', async (t) => {
      await hold(t, app, ['open-1'], 'open', { processing_deadline_duration: 1 })
      await app.broker.upkeep.runOnce(new Date(Date.now() + 60_000))
      await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'open' } })
      t.same((await post(app, '/v1/tasks/open-1/status', { status: 'complete' })).json(), { applied: true, queued: false, task: null })
    })

    await t.test('the task a report claims next (fetch_next) carries a lease', async (t) => {
      const held = await hold(t, app, ['rider-1'], 'rider')
      await post(app, '/v1/tasks', { tasks: [task({ id: 'rider-2', application: 'rider' })] })
      const res = await post(app, '/v1/tasks/rider-1/status', { status: 'complete', lease: held.get('rider-1')?.lease, fetch_next: { application: 'rider' } })
      t.equal(res.json().applied, true)
      t.equal(res.json().task?.id, 'rider-2')
      t.match(res.json().task?.lease, UUID)
      t.same((await post(app, '/v1/tasks/rider-2/status', { status: 'complete', lease: res.json().task?.lease })).json().applied, true)
    })
  })
}

eachBackend(t, 'a stale report queued beside the holder\'s report of the same task never undoes it (status batching)', async (t, backend) => {
  // A long flush interval: both reports surely wait in the same queue.
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '300' })
  const held = await hold(t, app, ['both-1', 'both-2'], 'both')
  const mine = (id: string) => post(app, `/v1/tasks/${id}/status`, { status: 'complete', lease: held.get(id)?.lease })
  const stale = (id: string) => post(app, '/v1/tasks/status', { updates: [{ id, status: 'failure', lease: FOREIGN_LEASE }] })

  // The stale report second: "last report wins" used to let it replace the holder's, which was then
  // answered stale, and the task stayed processing to run again.
  const [first, second] = await Promise.all([mine('both-1'), stale('both-1')])
  t.same(first.json(), { applied: true, queued: false, task: null }, 'the holder\'s report applied')
  t.equal(second.json().applied, 0, `the stale one did not: ${second.body}`)
  t.equal(await stateOf(app, 'both-1'), null, 'the task is complete')

  const [before, after] = await Promise.all([stale('both-2'), mine('both-2')])
  t.match(before.json(), { applied: 0, stale: ['both-2'] }, 'written first, the stale report is refused')
  t.same(after.json(), { applied: true, queued: false, task: null })
  t.equal(await stateOf(app, 'both-2'), null)
})

eachBackend(t, 'push: the pushed body carries the lease, and reports are fenced by it', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app, database } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}` })
  t.teardown(async () => { await app.close() })
  const [id] = await produce(t, app, [task({ application: 'shop' })])
  await until(t, 'the task is delivered and processing', async () => (await stateOf(app, id as string))?.status === 'processing')
  const pushed = worker.received.find(p => p.task.id === id) as { lease: string }
  t.match(pushed.lease, UUID, 'the push carries a lease')
  const [row] = await database.rows(sql`select lease::text as lease from inflight_tasks where id = ${id}`)
  t.equal(row?.lease, pushed.lease, 'the task\'s lease')
  assertError(t, await post(app, `/v1/tasks/${id}/status`, { status: 'complete', lease: FOREIGN_LEASE }), 409, 'TASKBROKER_LEASE_STALE')
  const beat = await post(app, `/v1/tasks/${id}/heartbeat`, { lease: pushed.lease })
  t.equal(beat.statusCode, 200, 'a push worker heartbeats with it')
  t.same((await post(app, `/v1/tasks/${id}/status`, { status: 'complete', lease: pushed.lease })).json(), { applied: true, queued: false, task: null })
})
