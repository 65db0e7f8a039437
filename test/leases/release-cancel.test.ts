/**
 * Release (a processing task back to pending at once, no attempt counted) and cancel (removed
 * when waiting, ended by its next report when held), one task or many.
 */
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError, claimIds, untilWaiting } from '../helpers/requests.js'
import { fakeWorker, produce, startPushApp, until } from '../push/helpers.js'
import { hold, post, stateOf } from './kit.js'

keepAlive(t)

eachBackend(t, 'release', async (t, backend) => {
  // No periodic recheck: a long-poll only gets a released task by being woken.
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_CLAIM_RECHECK_MS: '600000' })

  await t.test('a processing task is pending again at once, no attempt counted, its lease and progress cleared', async (t) => {
    const held = await hold(t, app, ['r-1'], 'release')
    await post(app, '/v1/tasks/r-1/heartbeat', { progress: 'half' })
    const res = await post(app, '/v1/tasks/r-1/release', { lease: held.get('r-1')?.lease })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { released: true, cancelled: false })
    t.match(await stateOf(app, 'r-1'), { status: 'pending', processing_attempts: 0, processing_deadline: null, progress: null })
    assertError(t, await post(app, '/v1/tasks/r-1/status', { status: 'complete', lease: held.get('r-1')?.lease }), 409, 'TASKBROKER_LEASE_STALE')
    t.same(await claimIds(app, { application: 'release' }), ['r-1'], 'claimable at once')
  })

  await t.test('a long-poll waiting on the queue gets the released task', async (t) => {
    await hold(t, app, ['r-wake'], 'release-wake')
    const waiting = app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'release-wake', wait_ms: 30_000 } })
    await untilWaiting(t, app, 1)
    t.equal((await post(app, '/v1/tasks/r-wake/release', {})).statusCode, 200)
    t.same((await waiting).json().tasks.map((c: { id: string }) => c.id), ['r-wake'])
  })

  await t.test('a request with no body at all, or an empty one, means {} (every field is optional): heartbeat, release, claim', async (t) => {
    await hold(t, app, ['r-bare'], 'release-bare')
    const bare = (url: string) => app.inject({ method: 'POST', url })
    const beat = await bare('/v1/tasks/r-bare/heartbeat')
    t.equal(beat.statusCode, 200, beat.body)
    const released = await bare('/v1/tasks/r-bare/release')
    t.equal(released.statusCode, 200, released.body)
    t.same(released.json(), { released: true, cancelled: false })
    const claimed = await bare('/v1/tasks/claim')
    t.equal(claimed.statusCode, 200, claimed.body)
    t.same(claimed.json().tasks.map((c: { id: string }) => c.id), ['r-bare'])
    assertError(t, await bare('/v1/tasks/status'), 400, 'TASKBROKER_INVALID_REQUEST')
    // What generated clients send for an optional body left out: the JSON type, nothing after it.
    const typed = (url: string) => app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: '' })
    const claimedAgain = await typed('/v1/tasks/claim')
    t.equal(claimedAgain.statusCode, 200, 'an empty body typed application/json is no body')
    t.same(claimedAgain.json().tasks, [])
    t.equal((await typed('/v1/tasks/r-bare/heartbeat')).statusCode, 200)
    t.equal((await typed('/v1/tasks/r-bare/release')).statusCode, 200)
    assertError(t, await typed('/v1/tasks/status'), 400, 'TASKBROKER_INVALID_REQUEST', 'body must be object')
  })

  await t.test('not processing: 409 TASKBROKER_TASK_NOT_PROCESSING; unknown: 404', async (t) => {
    await post(app, '/v1/tasks', { tasks: [task({ id: 'r-pending', application: 'release-none' })] })
    assertError(t, await post(app, '/v1/tasks/r-pending/release', {}), 409, 'TASKBROKER_TASK_NOT_PROCESSING')
    assertError(t, await post(app, '/v1/tasks/r-nobody/release', {}), 404, 'TASKBROKER_TASK_NOT_FOUND')
    t.match(await stateOf(app, 'r-pending'), { status: 'pending' })
  })

  await t.test('releases are counted', async (t) => {
    t.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /taskbroker_tasks_released_total [2-9]/)
  })
})

eachBackend(t, 'cancel', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)

  await t.test('pending, delayed and retrying tasks are removed', async (t) => {
    await post(app, '/v1/tasks', { tasks: [task({ id: 'c-pending', application: 'cancel' }), task({ id: 'c-delay', application: 'cancel', delay: 600 })] })
    await hold(t, app, ['c-retry'], 'cancel-retry')
    t.equal((await post(app, '/v1/tasks/c-retry/status', { status: 'retry' })).json().applied, true)
    for (const id of ['c-pending', 'c-delay', 'c-retry']) {
      const res = await post(app, `/v1/tasks/${id}/cancel`)
      t.equal(res.statusCode, 200)
      t.same(res.json(), { removed: true, requested: false }, id)
      t.equal(await stateOf(app, id), null, `${id} is gone`)
    }
    assertError(t, await post(app, '/v1/tasks/c-pending/cancel'), 404, 'TASKBROKER_TASK_NOT_FOUND')
  })

  await t.test('a processing task is marked: heartbeats and GET show it, the next report ends it whatever it says', async (t) => {
    const held = await hold(t, app, ['c-held', 'c-held-2'], 'cancel-held')
    t.same((await post(app, '/v1/tasks/c-held/cancel')).json(), { removed: false, requested: true })
    t.match(await stateOf(app, 'c-held'), { status: 'processing', cancel_requested: true })
    t.equal((await post(app, '/v1/tasks/c-held/heartbeat', {})).json().cancel_requested, true, 'the heartbeat answer carries it')
    const res = await post(app, '/v1/tasks/c-held/status', { status: 'retry', lease: held.get('c-held')?.lease })
    t.same(res.json(), { applied: true, queued: false, task: null, cancelled: true }, 'the report answer carries it')
    t.match(await stateOf(app, 'c-held'), { status: 'complete' }, 'ended, not retried (complete until upkeep removes it)')

    t.same((await post(app, '/v1/tasks/c-held-2/cancel')).json(), { removed: false, requested: true })
    const batch = await post(app, '/v1/tasks/status', { updates: [{ id: 'c-held-2', status: 'failure' }] })
    t.same(batch.json(), { applied: 1, queued: 0, not_found: [], cancelled: ['c-held-2'] })
    t.match(await stateOf(app, 'c-held-2'), { status: 'complete' }, 'ended, not failed')
    await app.broker.upkeep.runOnce(new Date())
    t.equal(await stateOf(app, 'c-held'), null, 'removed by upkeep')
    t.equal(await stateOf(app, 'c-held-2'), null, 'removed by upkeep, no dead letter')
    t.same((await app.inject({ method: 'GET', url: '/v1/deadletters' })).json().deadletters, [], 'no dead letter')
  })

  await t.test('a held task whose cancel was requested ends when released', async (t) => {
    await hold(t, app, ['c-release'], 'cancel-release')
    await post(app, '/v1/tasks/c-release/cancel')
    t.same((await post(app, '/v1/tasks/c-release/release', {})).json(), { released: false, cancelled: true })
    t.same(await claimIds(app, { application: 'cancel-release' }), [], 'never handed out again')
  })

  await t.test('a finished task: 409 TASKBROKER_TASK_NOT_CANCELLABLE', async (t) => {
    await hold(t, app, ['c-failed'], 'cancel-failed')
    await post(app, '/v1/tasks/c-failed/status', { status: 'failure' })
    assertError(t, await post(app, '/v1/tasks/c-failed/cancel'), 409, 'TASKBROKER_TASK_NOT_CANCELLABLE')
    t.match(await stateOf(app, 'c-failed'), { status: 'failure' })
  })

  await t.test('POST /v1/tasks/cancel cancels every matching task and answers counts', async (t) => {
    await post(app, '/v1/tasks', {
      tasks: [
        task({ id: 'm-1', application: 'many', namespace: 'a', taskname: 'x' }),
        task({ id: 'm-2', application: 'many', namespace: 'a', taskname: 'y' }),
        task({ id: 'm-3', application: 'many', namespace: 'b', taskname: 'x' }),
        task({ id: 'm-other', application: 'many-other', namespace: 'a', taskname: 'x' })
      ]
    })
    t.same(await claimIds(app, { application: 'many', namespace: 'b' }), ['m-3'])
    t.same((await post(app, '/v1/tasks/cancel', { application: 'many', namespace: 'a', taskname: 'x' })).json(), { removed: 1, requested: 0 })
    t.equal(await stateOf(app, 'm-1'), null)
    t.same((await post(app, '/v1/tasks/cancel', { application: 'many' })).json(), { removed: 1, requested: 1 })
    t.equal(await stateOf(app, 'm-2'), null)
    t.match(await stateOf(app, 'm-3'), { cancel_requested: true })
    t.match(await stateOf(app, 'm-other'), { status: 'pending' }, 'other applications are left alone')
    t.same((await post(app, '/v1/tasks/cancel', { application: 'nobody' })).json(), { removed: 0, requested: 0 })
    assertError(t, await post(app, '/v1/tasks/cancel', { namespace: 'a' }), 400, 'TASKBROKER_INVALID_REQUEST', 'application')
  })

  await t.test('cancels are counted by how', async (t) => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
    t.match(text, /taskbroker_tasks_cancelled_total\{how="removed"\} [5-9]/)
    t.match(text, /taskbroker_tasks_cancelled_total\{how="requested"\} [4-9]/)
    t.match(text, /taskbroker_tasks_cancelled_total\{how="reported"\} [3-9]/)
  })
})

eachBackend(t, 'a held task whose deadline passes after its cancel was requested ends instead of running again', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0' })
  await hold(t, app, ['c-late'], 'cancel-late', { processing_deadline_duration: 1 })
  await post(app, '/v1/tasks/c-late/cancel')
  await app.broker.upkeep.runOnce(new Date(Date.now() + 60_000))
  t.equal(await stateOf(app, 'c-late'), null, 'gone')
  t.same(await claimIds(app, { application: 'cancel-late' }), [])
})

eachBackend(t, 'push: a claimed or delivered task is marked, and its worker\'s report ends it', async (t, backend) => {
  const worker = await fakeWorker(t, { mode: 'hang' })
  const { app } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}` })
  t.teardown(async () => { await app.close() })
  const [id] = await produce(t, app, [task({ application: 'shop' })])
  await until(t, 'the task is pushed', () => worker.received.length === 1)
  t.match(await stateOf(app, id as string), { status: 'claimed' })
  t.same((await post(app, `/v1/tasks/${id}/cancel`)).json(), { removed: false, requested: true })
  worker.mode = 'accept'
  await until(t, 'the push is answered and settled', async () => (await stateOf(app, id as string))?.status === 'processing')
  const lease = (worker.received[0] as { lease: string }).lease
  t.same((await post(app, `/v1/tasks/${id}/status`, { status: 'retry', lease })).json(), { applied: true, queued: false, task: null, cancelled: true })
  t.match(await stateOf(app, id as string), { status: 'complete' }, 'ended, not retried')
})

eachBackend(t, 'push: a claimed task whose cancel was requested ends when its push fails, never pushed again', async (t, backend) => {
  const worker = await fakeWorker(t, { mode: 'hang' })
  const { app } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}` })
  t.teardown(async () => { await app.close() })
  const [id] = await produce(t, app, [task({ application: 'shop' })])
  await until(t, 'the task is pushed', () => worker.received.length === 1)
  t.same((await post(app, `/v1/tasks/${id}/cancel`)).json(), { removed: false, requested: true })
  worker.mode = 'reject'
  await until(t, 'the failed push is settled', async () => (await stateOf(app, id as string))?.status !== 'claimed')
  t.match(await stateOf(app, id as string), { status: 'complete' }, 'ended instead of pending again')
  t.equal(worker.received.length, 1, 'not pushed again')
})
