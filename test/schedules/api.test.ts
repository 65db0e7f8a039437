/** /v1/schedules: create, replace, read, remove, trigger, the refusals, and the counts in /v1/stats. */
import t from 'tap'
import { eachBackend } from '../helpers/database.js'
import { assertError } from '../helpers/requests.js'
import { buildScheduleApp, firedIds, putSchedule, TASK } from './helpers.js'

eachBackend(t, 'schedules API', async (t, backend) => {
  const { app, database, clock, pass } = await buildScheduleApp(t, backend, '2026-01-01T10:07:00.000Z')

  await t.test('PUT creates (201), shows the next windows, and replaces (200) keeping the fire history', async (t) => {
    const created = await putSchedule(app, 'nightly', {
      cron: '0 3 * * *', timezone: 'Europe/Berlin', task: { ...TASK, parameters: { n: 1 }, priority: 5 }, overlap: 'skip', catch_up: 'latest'
    })
    t.equal(created.statusCode, 201)
    const body = created.json()
    t.match(body, {
      name: 'nightly',
      source: 'api',
      cron: '0 3 * * *',
      every_sec: null,
      timezone: 'Europe/Berlin',
      task: { ...TASK, parameters: { n: 1 }, priority: 5 },
      overlap: 'skip',
      catch_up: 'latest',
      paused: false,
      next_fire_at: '2026-01-02T02:00:00.000Z',
      last_fire_at: null,
      last_task: null
    })
    t.same(body.upcoming, ['2026-01-02T02:00:00.000Z', '2026-01-03T02:00:00.000Z', '2026-01-04T02:00:00.000Z',
      '2026-01-05T02:00:00.000Z', '2026-01-06T02:00:00.000Z'])

    const replaced = await putSchedule(app, 'nightly', { cron: '0 3 * * *', timezone: 'Europe/Berlin', task: TASK })
    t.equal(replaced.statusCode, 200, 'a replace answers 200')
    t.match(replaced.json(), { overlap: 'allow', catch_up: 'none', next_fire_at: '2026-01-02T02:00:00.000Z', task: TASK })
    t.notOk('priority' in replaced.json().task, 'the task is replaced whole')
    t.same((await app.inject('/v1/schedules/nightly')).json(), replaced.json(), 'GET shows what PUT answered')

    const retimed = await putSchedule(app, 'nightly', { every_sec: 600, task: TASK })
    t.match(retimed.json(), { cron: null, every_sec: 600, timezone: 'UTC', next_fire_at: '2026-01-01T10:10:00.000Z' }, 'a new timing computes a new next window')
  })

  await t.test('GET /v1/schedules lists every schedule by name', async (t) => {
    t.equal((await putSchedule(app, 'a-first', { every_sec: 60, task: TASK, paused: true })).statusCode, 201)
    const list = (await app.inject('/v1/schedules')).json().schedules
    t.same(list.map((s: { name: string }) => s.name), ['a-first', 'nightly'])
    t.same(list[0].upcoming, [], 'a paused schedule shows no upcoming windows')
  })

  await t.test('trigger fires now, outside the windows; the last task and its state are shown', async (t) => {
    clock.set('2026-01-01T10:08:30.000Z')
    const res = await app.inject({ method: 'POST', url: '/v1/schedules/nightly/trigger' })
    t.equal(res.statusCode, 201)
    t.same(res.json(), { id: 'sched:nightly:2026-01-01T10:08:30.000Z', inserted: true, killswitched: false })
    const shown = (await app.inject('/v1/schedules/nightly')).json()
    t.match(shown, { last_fire_at: '2026-01-01T10:08:30.000Z', last_task: { id: 'sched:nightly:2026-01-01T10:08:30.000Z', status: 'pending' } })
    t.equal(shown.next_fire_at, '2026-01-01T10:10:00.000Z', 'the windows are not moved by a trigger')
    const task = (await app.inject('/v1/tasks/sched:nightly:2026-01-01T10:08:30.000Z')).json()
    t.match(task.task, { ...TASK, id: 'sched:nightly:2026-01-01T10:08:30.000Z' })

    // The task finished: the schedule says it is gone.
    const claimed = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application: 'app' } })
    t.equal(claimed.json().tasks.length, 1)
    await app.inject({ method: 'POST', url: '/v1/tasks/sched:nightly:2026-01-01T10:08:30.000Z/status', payload: { status: 'complete' } })
    t.match((await app.inject('/v1/schedules/nightly')).json().last_task, { status: 'gone' })
    t.equal((await app.inject({ method: 'POST', url: '/v1/schedules/nope/trigger' })).statusCode, 404)
  })

  await t.test('refusals: bad timing or timezone (400 naming the field), unknown name (404), bad names and bodies (400)', async (t) => {
    assertError(t, await putSchedule(app, 'x', { cron: '* * *', task: TASK }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/cron')
    assertError(t, await putSchedule(app, 'x', { cron: '0 0 * * *', timezone: 'Nowhere/Land', task: TASK }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/timezone')
    assertError(t, await putSchedule(app, 'x', { cron: '0 0 * * *', every_sec: 5, task: TASK }), 400, 'TASKBROKER_INVALID_REQUEST', 'exactly one of cron and every_sec')
    assertError(t, await putSchedule(app, 'x', { task: TASK }), 400, 'TASKBROKER_INVALID_REQUEST', 'exactly one of cron and every_sec')
    assertError(t, await putSchedule(app, 'x', { every_sec: 0, task: TASK }), 400, 'TASKBROKER_INVALID_REQUEST', 'every_sec')
    assertError(t, await putSchedule(app, 'x', { every_sec: 5, task: { ...TASK, bogus: 1 } }), 400, 'TASKBROKER_INVALID_REQUEST')
    assertError(t, await putSchedule(app, 'x', { every_sec: 5, task: TASK, overlap: 'sometimes' }), 400, 'TASKBROKER_INVALID_REQUEST', 'overlap')
    const big = { ...TASK, parameters: 'x'.repeat(1024 * 1024 + 1) }
    assertError(t, await putSchedule(app, 'x', { every_sec: 5, task: big }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/task/parameters is')
    assertError(t, await putSchedule(app, 'bad%20name', { every_sec: 5, task: TASK }), 400, 'TASKBROKER_INVALID_REQUEST', 'name')
    assertError(t, await app.inject('/v1/schedules/missing'), 404, 'TASKBROKER_SCHEDULE_NOT_FOUND', 'missing')
    assertError(t, await app.inject({ method: 'DELETE', url: '/v1/schedules/missing' }), 404, 'TASKBROKER_SCHEDULE_NOT_FOUND')
    t.equal((await app.inject('/v1/schedules/x')).statusCode, 404, 'nothing was stored by a refused PUT')
  })

  await t.test('/v1/stats counts schedules; DELETE removes one (its tasks stay) and the metrics count fires', async (t) => {
    t.same((await app.inject('/v1/stats')).json().schedules, { total: 2, paused: 1, from_file: 0 })
    clock.set('2026-01-01T10:10:00.500Z')
    t.match(await pass(), { 'schedules.fired': 1 })
    t.same(await firedIds(database, 'nightly'), ['sched:nightly:2026-01-01T10:10:00.000Z'])
    const metrics = (await app.inject('/metrics')).body
    t.match(metrics, /taskbroker_schedule_fires_total\{how="upkeep"\} 1/)
    t.match(metrics, /taskbroker_schedule_fires_total\{how="trigger"\} 1/)
    t.match(metrics, /taskbroker_schedule_lag_seconds_count 1/)
    t.equal((await app.inject({ method: 'DELETE', url: '/v1/schedules/nightly' })).statusCode, 204)
    t.equal((await app.inject('/v1/schedules/nightly')).statusCode, 404)
    t.same(await firedIds(database, 'nightly'), ['sched:nightly:2026-01-01T10:10:00.000Z'], 'the fired task stays')
    t.same((await app.inject('/v1/stats')).json().schedules, { total: 1, paused: 1, from_file: 0 })
  })

  await t.test('a schedule\'s task takes the retry fields produce takes, backoff included', async (t) => {
    const retryState = { max_attempts: 4, on_attempts_exceeded: 'discard', delay_on_retry: 5, backoff: { strategy: 'exponential', base_sec: 2, max_sec: 60, jitter: false } }
    t.equal((await putSchedule(app, 'retrying', { every_sec: 3600, task: { ...TASK, retry_state: retryState } })).statusCode, 201)
    const fired = (await app.inject({ method: 'POST', url: '/v1/schedules/retrying/trigger' })).json()
    t.match((await app.inject(`/v1/tasks/${fired.id as string}`)).json().task.retry_state, { ...retryState, attempts: 0 }, 'the fired task carries them')
    assertError(t, await putSchedule(app, 'x', { every_sec: 5, task: { ...TASK, retry_state: { backoff: { strategy: 'linear', base_sec: 1, max_sec: 2, jitter: false } } } }),
      400, 'TASKBROKER_INVALID_REQUEST', 'body/task/retry_state/backoff/strategy')
    t.equal((await app.inject({ method: 'DELETE', url: '/v1/schedules/retrying' })).statusCode, 204)
  })
})
