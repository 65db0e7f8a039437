/**
 * Heartbeats: POST /v1/tasks/{id}/heartbeat and the batch form move a processing task's deadline,
 * store its progress, answer cancel_requested, and are fenced by the lease.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildTestApp, NO_UPKEEP } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError } from '../helpers/requests.js'
import { FOREIGN_LEASE, hold, post, stateOf } from './kit.js'

keepAlive(t)

eachBackend(t, 'heartbeats', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: '0', TASKBROKER_HEARTBEAT_MAX_EXTEND_SEC: '600', TASKBROKER_HEARTBEAT_PROGRESS_MAX_BYTES: '100' })

  await t.test('a heartbeat moves the deadline, stores progress and answers cancel_requested', async (t) => {
    const held = await hold(t, app, ['hb-1'], 'hb', { processing_deadline_duration: 5 })
    const before = Date.now()
    const res = await post(app, '/v1/tasks/hb-1/heartbeat', { extend_sec: 120, progress: { done: 3 }, lease: held.get('hb-1')?.lease })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['cancel_requested', 'processing_deadline'])
    t.equal(body.cancel_requested, false)
    const deadline = new Date(body.processing_deadline).getTime()
    t.ok(deadline >= before + 110_000, 'now + extend_sec (clocks allowed 10 s apart)')
    const state = await stateOf(app, 'hb-1')
    t.same(state?.progress, { done: 3 }, 'GET shows the progress')
    t.equal(state?.processing_deadline, body.processing_deadline, 'GET shows the new deadline')
    t.equal(state?.cancel_requested, false)

    const again = await post(app, '/v1/tasks/hb-1/heartbeat', {})
    t.equal(again.statusCode, 200, 'no lease: unfenced; no extend_sec: the task\'s own duration')
    const shorter = new Date(again.json().processing_deadline).getTime()
    t.ok(shorter < deadline, 'the deadline follows the heartbeat, it may come closer')
    t.ok(shorter <= Date.now() + 5_000 + 10_000, 'now + processing_deadline_duration')
    t.same((await stateOf(app, 'hb-1'))?.progress, { done: 3 }, 'a heartbeat without progress keeps the last one')
  })

  await t.test('extend_sec is capped by TASKBROKER_HEARTBEAT_MAX_EXTEND_SEC', async (t) => {
    await hold(t, app, ['hb-cap'], 'hb-cap')
    const res = await post(app, '/v1/tasks/hb-cap/heartbeat', { extend_sec: 86_400 })
    t.equal(res.statusCode, 200)
    t.ok(new Date(res.json().processing_deadline).getTime() <= Date.now() + 600_000 + 10_000, 'at most 600 s ahead')
  })

  await t.test('a task that is not processing: 409 TASKBROKER_TASK_NOT_PROCESSING; unknown: 404', async (t) => {
    const produced = await post(app, '/v1/tasks', { tasks: [{ id: 'hb-pending', application: 'hb-none', namespace: 'ns', taskname: 'x' }] })
    t.equal(produced.statusCode, 201)
    assertError(t, await post(app, '/v1/tasks/hb-pending/heartbeat', {}), 409, 'TASKBROKER_TASK_NOT_PROCESSING')
    assertError(t, await post(app, '/v1/tasks/hb-nobody/heartbeat', {}), 404, 'TASKBROKER_TASK_NOT_FOUND')
    t.equal((await stateOf(app, 'hb-pending'))?.progress, null, 'nothing stored')
  })

  await t.test('a heartbeat under another lease: 409 TASKBROKER_LEASE_STALE, nothing changed', async (t) => {
    const held = await hold(t, app, ['hb-stale'], 'hb-stale')
    assertError(t, await post(app, '/v1/tasks/hb-stale/heartbeat', { lease: FOREIGN_LEASE, progress: 1 }), 409, 'TASKBROKER_LEASE_STALE')
    const state = await stateOf(app, 'hb-stale')
    t.equal(state?.processing_deadline, held.get('hb-stale')?.processing_deadline, 'the deadline is unchanged')
    t.equal(state?.progress, null)
  })

  await t.test('bad input: 400 naming the field', async (t) => {
    await hold(t, app, ['hb-bad'], 'hb-bad')
    assertError(t, await post(app, '/v1/tasks/hb-bad/heartbeat', { progress: 'x'.repeat(200) }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/progress')
    assertError(t, await post(app, '/v1/tasks/hb-bad/heartbeat', { lease: 'not-a-uuid' }), 400, 'TASKBROKER_INVALID_REQUEST', 'lease')
    assertError(t, await post(app, '/v1/tasks/hb-bad/heartbeat', { extend_sec: 0 }), 400, 'TASKBROKER_INVALID_REQUEST', 'extend_sec')
    assertError(t, await post(app, '/v1/tasks/heartbeat', { heartbeats: [{ id: 'hb-bad' }, { id: 'hb-bad', progress: 'y'.repeat(200) }] }),
      400, 'TASKBROKER_INVALID_REQUEST', 'body/heartbeats/1/progress')
    t.equal((await stateOf(app, 'hb-bad'))?.progress, null, 'a refused batch changes nothing')
  })

  await t.test('the batch form answers one entry per extended task and lists the others', async (t) => {
    const held = await hold(t, app, ['hbb-1', 'hbb-2', 'hbb-3'], 'hbb')
    await post(app, '/v1/tasks', { tasks: [{ id: 'hbb-pending', application: 'hbb-other', namespace: 'ns', taskname: 'x' }] })
    const res = await post(app, '/v1/tasks/heartbeat', {
      heartbeats: [
        { id: 'hbb-1', lease: held.get('hbb-1')?.lease, progress: [1] },
        { id: 'hbb-2', extend_sec: 30 },
        { id: 'hbb-3', lease: FOREIGN_LEASE },
        { id: 'hbb-pending' },
        { id: 'hbb-nobody' }
      ]
    })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.same(body.extended.map((e: { id: string }) => e.id).sort(), ['hbb-1', 'hbb-2'])
    t.ok(body.extended.every((e: { cancel_requested: boolean, processing_deadline: string }) => e.cancel_requested === false && !Number.isNaN(Date.parse(e.processing_deadline))))
    t.same(body.stale, ['hbb-3'])
    t.same(body.not_processing.sort(), ['hbb-nobody', 'hbb-pending'])
    t.same((await stateOf(app, 'hbb-1'))?.progress, [1])
  })

  await t.test('heartbeats are counted', async (t) => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
    t.match(text, /taskbroker_heartbeats_total\{result="extended"\} [1-9]/)
    t.match(text, /taskbroker_heartbeats_total\{result="stale"\} [1-9]/)
    t.match(text, /taskbroker_stale_reports_total\{kind="heartbeat"\} [1-9]/)
    t.match(text, /taskbroker_batcher_flush_size_count\{batcher="heartbeat"\} [1-9]/, 'through the batcher')
  })
})

eachBackend(t, 'a stale heartbeat queued beside the holder\'s never replaces it', async (t, backend) => {
  // A long flush interval: both heartbeats surely wait in the same queue.
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '300' })
  const held = await hold(t, app, ['hb-both'], 'hb-both')
  const [mine, stale] = await Promise.all([
    post(app, '/v1/tasks/hb-both/heartbeat', { lease: held.get('hb-both')?.lease, progress: 'mine' }),
    post(app, '/v1/tasks/hb-both/heartbeat', { lease: FOREIGN_LEASE, progress: 'stale' })
  ])
  t.equal(mine.statusCode, 200, `the holder's heartbeat was written: ${mine.body}`)
  assertError(t, stale, 409, 'TASKBROKER_LEASE_STALE')
  t.equal((await stateOf(app, 'hb-both'))?.progress, 'mine')
})

eachBackend(t, 'a task with a 2 s deadline heartbeated every second is never reset, however long it runs', { timeout: 120_000 }, async (t, backend) => {
  const { app } = await buildTestApp(t, backend, {
    TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: '0',
    TASKBROKER_UPKEEP_INTERVAL_MS: '50',
    TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0'
  })
  await app.ready() // starts upkeep
  const held = await hold(t, app, ['long', 'idle'], 'long', { processing_deadline_duration: 2 })
  const lease = held.get('long')?.lease
  // The control: the same deadline, no heartbeats; upkeep resets it once its deadline passed.
  let beats = 0
  let idleReset = false
  for (let i = 0; i < 120 && !(idleReset && beats >= 8); i++) {
    const started = Date.now()
    const res = await post(app, '/v1/tasks/long/heartbeat', { lease, progress: { beat: beats } })
    t.equal(res.statusCode, 200, `heartbeat ${beats}: the task is still held`)
    if (res.statusCode !== 200) break
    beats++
    idleReset ||= (await stateOf(app, 'idle'))?.status !== 'processing'
    // Every second counted from the last heartbeat's start, whatever the requests took.
    await sleep(Math.max(0, 1000 - (Date.now() - started)))
  }
  t.ok(idleReset, 'the task without heartbeats was reset meanwhile (upkeep ran)')
  t.ok(beats >= 8, 'heartbeated well past its deadline')
  const state = await stateOf(app, 'long')
  t.equal(state?.status, 'processing', 'still processing')
  t.equal(state?.processing_attempts, 0, 'never reset')
  const done = await post(app, '/v1/tasks/long/status', { status: 'complete', lease })
  t.same(done.json(), { applied: true, queued: false, task: null }, 'its report under the first lease applies')
})
