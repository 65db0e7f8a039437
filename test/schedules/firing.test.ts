/**
 * Upkeep fires due schedules, driven by an injected clock: each window once, DST transitions in
 * Europe/Berlin, catch_up after downtime (none, latest, all up to the bound), overlap: skip, the
 * killswitch and backpressure.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { eachBackend } from '../helpers/database.js'
import { buildScheduleApp, firedWindows, putSchedule, TASK } from './helpers.js'

eachBackend(t, 'each window fires once, however many passes see it', async (t, backend) => {
  const { app, database, clock, pass } = await buildScheduleApp(t, backend, '2026-01-01T10:00:30.000Z')
  t.equal((await putSchedule(app, 'tick', { every_sec: 60, task: TASK })).statusCode, 201)
  t.match(await pass(), { 'schedules.fired': 0 }, 'nothing is due yet')
  clock.set('2026-01-01T10:01:00.200Z')
  t.match(await pass(), { 'schedules.fired': 1 })
  t.match(await pass(), { 'schedules.fired': 0 }, 'a second pass in the same window fires nothing')
  clock.set('2026-01-01T10:02:59.000Z')
  t.match(await pass(), { 'schedules.fired': 1 })
  t.same(await firedWindows(database, 'tick'), ['2026-01-01T10:01:00.000Z', '2026-01-01T10:02:00.000Z'])
  const shown = (await app.inject('/v1/schedules/tick')).json()
  t.match(shown, { next_fire_at: '2026-01-01T10:03:00.000Z', last_fire_at: '2026-01-01T10:02:00.000Z', last_task: { id: 'sched:tick:2026-01-01T10:02:00.000Z', status: 'pending' } })
  const task = (await app.inject('/v1/tasks/sched:tick:2026-01-01T10:02:00.000Z')).json()
  t.match(task.task, { ...TASK, received_at: '2026-01-01T10:02:59.000Z' }, 'produced through produce, at the broker\'s clock')
})

eachBackend(t, 'Europe/Berlin: spring forward and fall back fire each day once', async (t, backend) => {
  const { app, database, clock } = await buildScheduleApp(t, backend, '2026-03-28T12:00:00.000Z')
  // The schedules step of upkeep alone, many times: the other steps have nothing to do here.
  const pass = async () => await app.broker.schedules.fireDue(clock.now())
  await putSchedule(app, 'night', { cron: '30 2 * * *', timezone: 'Europe/Berlin', task: TASK })
  await putSchedule(app, 'hourly', { cron: '0 * * * *', timezone: 'Europe/Berlin', task: TASK })
  // Walk the clock through the spring night in 15-minute passes.
  for (let at = Date.parse('2026-03-28T12:00:00Z'); at <= Date.parse('2026-03-29T04:00:00Z'); at += 900_000) {
    clock.set(new Date(at))
    await pass()
  }
  t.same(await firedWindows(database, 'night'), ['2026-03-29T01:00:00.000Z'], 'the skipped 02:30 fires once, at 03:00 CEST')
  const spring = await firedWindows(database, 'hourly')
  t.equal(spring.length, 16, 'every real hour from 13:00 to 04:00 UTC once')
  t.equal(new Set(spring).size, spring.length)

  await app.inject({ method: 'DELETE', url: '/v1/schedules/hourly' })
  await app.inject({ method: 'PUT', url: '/v1/schedules/night', payload: { cron: '30 2 * * *', timezone: 'Europe/Berlin', task: TASK } })
  clock.set('2026-10-24T12:00:00.000Z')
  // A new timing is not given: the stored next window (March 30th) is long past; catch_up none skips it.
  await pass()
  for (let at = Date.parse('2026-10-24T12:00:00Z'); at <= Date.parse('2026-10-26T04:00:00Z'); at += 900_000) {
    clock.set(new Date(at))
    await pass()
  }
  t.same((await firedWindows(database, 'night')).filter(w => w.startsWith('2026-10')),
    ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z'], 'the repeated 02:30 fires once (the first), then 02:30 CET')
})

eachBackend(t, 'catch_up after downtime: none waits, latest fires once, all fires each missed window up to the bound', async (t, backend) => {
  const { app, database, clock, pass } = await buildScheduleApp(t, backend, '2026-01-01T10:00:30.000Z', {
    TASKBROKER_SCHEDULE_CATCH_UP_MAX: '3',
    TASKBROKER_SCHEDULE_MISFIRE_GRACE_SEC: '20'
  })
  for (const mode of ['none', 'latest', 'all']) await putSchedule(app, mode, { every_sec: 60, catch_up: mode, task: TASK })
  // Down from 10:00:30 to 10:10:30: windows 10:01 … 10:10 were missed (ten of them).
  clock.set('2026-01-01T10:10:30.000Z')
  const counts = await pass()
  t.same(await firedWindows(database, 'none'), [], 'none: the latest window is 30 s late, past the 20 s grace')
  t.same(await firedWindows(database, 'latest'), ['2026-01-01T10:10:00.000Z'])
  t.same(await firedWindows(database, 'all'), ['2026-01-01T10:08:00.000Z', '2026-01-01T10:09:00.000Z', '2026-01-01T10:10:00.000Z'],
    'all: the latest three (TASKBROKER_SCHEDULE_CATCH_UP_MAX)')
  t.match(counts, { 'schedules.fired': 4, 'schedules.windows_skipped': 10 + 9 + 7 })
  t.match((await app.inject('/metrics')).body, /taskbroker_schedule_skips_total\{reason="missed"\} 26/)
  for (const mode of ['none', 'latest', 'all']) {
    t.equal((await app.inject(`/v1/schedules/${mode}`)).json().next_fire_at, '2026-01-01T10:11:00.000Z', `${mode}: waits for the next window`)
  }
  clock.set('2026-01-01T10:11:05.000Z')
  await pass()
  t.same(await firedWindows(database, 'none'), ['2026-01-01T10:11:00.000Z'], 'none: a window within the grace fires')
})

eachBackend(t, 'overlap: skip does not fire while the last fire\'s task is live', async (t, backend) => {
  const { app, database, clock, pass } = await buildScheduleApp(t, backend, '2026-01-01T10:00:30.000Z')
  await putSchedule(app, 'solo', { every_sec: 60, overlap: 'skip', catch_up: 'all', task: TASK })
  await putSchedule(app, 'many', { every_sec: 60, overlap: 'allow', task: TASK })
  clock.set('2026-01-01T10:01:00.000Z')
  await pass()
  clock.set('2026-01-01T10:02:00.000Z')
  t.match(await pass(), { 'schedules.windows_skipped': 1 })
  t.same(await firedWindows(database, 'solo'), ['2026-01-01T10:01:00.000Z'], 'the 10:02 window is skipped: 10:01\'s task is pending')
  t.same(await firedWindows(database, 'many'), ['2026-01-01T10:01:00.000Z', '2026-01-01T10:02:00.000Z'])
  t.match((await app.inject('/metrics')).body, /taskbroker_schedule_skips_total\{reason="overlap"\} 1/)

  // The task finishes; after a downtime catch_up all fires only the latest window (one at a time).
  const done = await app.inject({ method: 'POST', url: '/v1/tasks/sched:solo:2026-01-01T10:01:00.000Z/status', payload: { status: 'complete' } })
  t.equal(done.statusCode, 200)
  clock.set('2026-01-01T10:05:10.000Z')
  await pass()
  t.same(await firedWindows(database, 'solo'), ['2026-01-01T10:05:00.000Z'])
})

eachBackend(t, 'backpressure applies to fired tasks as to any produce', async (t, backend) => {
  const { app, database, clock, pass } = await buildScheduleApp(t, backend, '2026-01-01T10:00:30.000Z', {
    TASKBROKER_MAX_PENDING_COUNT: '1',
    TASKBROKER_BACKPRESSURE_CACHE_MS: '0'
  })
  await putSchedule(app, 'busy', { every_sec: 60, catch_up: 'latest', task: TASK })
  // One pending task fills the broker.
  t.equal((await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: [{ ...TASK, id: 'filler' }] } })).statusCode, 201)
  clock.set('2026-01-01T10:01:00.000Z')
  t.match(await pass(), { 'schedules.fired': 0, 'schedules.failed': 1 }, 'refused by backpressure: the schedule stays due')
  t.equal((await app.inject('/v1/schedules/busy')).json().next_fire_at, '2026-01-01T10:01:00.000Z')
  await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: {} })
  clock.set('2026-01-01T10:01:10.000Z')
  t.match(await pass(), { 'schedules.fired': 1 }, 'fired once there is room')
  t.same(await firedWindows(database, 'busy'), ['2026-01-01T10:01:00.000Z'])
})

eachBackend(t, 'a paused schedule does not fire; on resume catch_up decides about the windows it missed', async (t, backend) => {
  const { app, database, clock, pass } = await buildScheduleApp(t, backend, '2026-01-01T10:00:30.000Z')
  await putSchedule(app, 'p', { every_sec: 60, paused: true, catch_up: 'latest', task: TASK })
  clock.set('2026-01-01T10:05:30.000Z')
  await pass()
  t.same(await firedWindows(database, 'p'), [])
  await putSchedule(app, 'p', { every_sec: 60, paused: false, catch_up: 'latest', task: TASK })
  await pass()
  t.same(await firedWindows(database, 'p'), ['2026-01-01T10:05:00.000Z'])
})

eachBackend(t, 'a killswitched task name is not produced; the window is skipped and counted', async (t, backend) => {
  const file = join(mkdtempSync(join(tmpdir(), 'tb-schedules-')), 'runtime.yaml')
  writeFileSync(file, `drop_task_killswitch: [${TASK.taskname}]\n`)
  const { app, database, clock, pass } = await buildScheduleApp(t, backend, '2026-01-01T10:00:30.000Z', { TASKBROKER_RUNTIME_CONFIG: file })
  await putSchedule(app, 'k', { every_sec: 60, task: TASK })
  clock.set('2026-01-01T10:01:00.000Z')
  t.match(await pass(), { 'schedules.fired': 0, 'schedules.windows_skipped': 1 })
  t.same(await firedWindows(database, 'k'), [])
  t.match((await app.inject('/v1/schedules/k')).json(), { next_fire_at: '2026-01-01T10:02:00.000Z', last_task: null }, 'the window is passed')
  t.match((await app.inject('/metrics')).body, /taskbroker_schedule_skips_total\{reason="killswitch"\} 1/)
  const triggered = await app.inject({ method: 'POST', url: '/v1/schedules/k/trigger' })
  t.match(triggered.json(), { inserted: false, killswitched: true }, 'a trigger is dropped too')
})
