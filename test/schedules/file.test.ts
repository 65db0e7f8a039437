/**
 * Schedules kept in git: declared under `schedules:` in the runtime config file, shown with
 * source "file", never changed by the API (409), changed and removed by editing the file.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { testConfig, testStore } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { assertError, type Test } from '../helpers/requests.js'
import { buildScheduleApp, putSchedule, TASK } from './helpers.js'

const NIGHTLY = `schedules:
  nightly:
    cron: "0 3 * * *"
    timezone: Europe/Berlin
    catch_up: latest
    task: {application: app, namespace: ns, taskname: tests.tick, parameters: {days: 1}}
`

function runtimeFile (text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'tb-schedules-')), 'runtime.yaml')
  writeFileSync(file, text)
  return file
}

/** Waits (bounded, 10 s) until GET /v1/schedules/{name} answers `status`: the file's sync runs after a reload resolves. */
async function until (t: Test, app: FastifyInstance, name: string, status: number): Promise<Record<string, unknown>> {
  for (let i = 0; i < 1000; i++) {
    const res = await app.inject(`/v1/schedules/${name}`)
    if (res.statusCode === status) return res.json()
    await sleep(10)
  }
  t.fail(`GET /v1/schedules/${name} never answered ${status}`)
  return {}
}

eachBackend(t, 'schedules from the runtime config file', async (t, backend) => {
  const file = runtimeFile(NIGHTLY)
  const { app, clock } = await buildScheduleApp(t, backend, '2026-01-01T10:00:00.000Z', { TASKBROKER_RUNTIME_CONFIG: file })

  await t.test('are in the table from the start, with source file', async (t) => {
    t.match((await app.inject('/v1/schedules/nightly')).json(), {
      source: 'file',
      cron: '0 3 * * *',
      timezone: 'Europe/Berlin',
      catch_up: 'latest',
      next_fire_at: '2026-01-02T02:00:00.000Z',
      task: { ...TASK, parameters: { days: 1 } }
    })
    t.same((await app.inject('/v1/stats')).json().schedules, { total: 1, paused: 0, from_file: 1 })
  })

  await t.test('cannot be replaced or removed by the API (409), but can be triggered', async (t) => {
    assertError(t, await putSchedule(app, 'nightly', { every_sec: 60, task: TASK }), 409, 'TASKBROKER_SCHEDULE_FROM_FILE', 'nightly')
    assertError(t, await app.inject({ method: 'DELETE', url: '/v1/schedules/nightly' }), 409, 'TASKBROKER_SCHEDULE_FROM_FILE')
    t.equal((await app.inject('/v1/schedules/nightly')).json().cron, '0 3 * * *', 'unchanged')
    t.equal((await app.inject({ method: 'POST', url: '/v1/schedules/nightly/trigger' })).statusCode, 201)
  })

  await t.test('an edit of the file changes them; a name taken over from the API becomes the file\'s', async (t) => {
    t.equal((await putSchedule(app, 'hourly', { every_sec: 60, task: TASK })).statusCode, 201)
    clock.set('2026-01-01T11:30:00.000Z')
    writeFileSync(file, `${NIGHTLY.replace('0 3 * * *', '0 4 * * *')}  hourly:\n    cron: "@hourly"\n    task: {namespace: ns, taskname: tests.tick}\n`)
    t.equal(await app.broker.runtimeConfig.reload(), true)
    for (let i = 0; i < 1000 && (await app.inject('/v1/schedules/nightly')).json().cron !== '0 4 * * *'; i++) await sleep(10)
    t.match((await app.inject('/v1/schedules/nightly')).json(), { cron: '0 4 * * *', next_fire_at: '2026-01-02T03:00:00.000Z' })
    // The file's schedules are synced one by one: wait for this one too (it answers 200 throughout,
    // as the API's until the sync reaches it).
    for (let i = 0; i < 1000 && (await app.inject('/v1/schedules/hourly')).json().source !== 'file'; i++) await sleep(10)
    t.match((await app.inject('/v1/schedules/hourly')).json(), { source: 'file', cron: '@hourly', every_sec: null })
  })

  await t.test('removing one from the file removes it; a broken edit keeps the last good schedules', async (t) => {
    writeFileSync(file, 'schedules:\n  hourly:\n    cron: "@hourly"\n    task: {namespace: ns, taskname: tests.tick}\n')
    t.equal(await app.broker.runtimeConfig.reload(), true)
    await until(t, app, 'nightly', 404)
    writeFileSync(file, 'schedules:\n  hourly:\n    cron: "@every-hour"\n    task: {namespace: ns, taskname: tests.tick}\n')
    t.equal(await app.broker.runtimeConfig.reload(), false, 'refused')
    t.equal((await app.inject('/v1/schedules/hourly')).json().cron, '@hourly')
    writeFileSync(file, '')
    t.equal(await app.broker.runtimeConfig.reload(), true, 'an empty file declares no schedules')
    await until(t, app, 'hourly', 404)
  })
})

eachBackend(t, 'a broker with no runtime config file leaves the file\'s schedules alone (another broker declares them)', async (t, backend) => {
  const { app: declaring, database } = await buildScheduleApp(t, backend, '2026-01-01T10:00:00.000Z', { TASKBROKER_RUNTIME_CONFIG: runtimeFile(NIGHTLY) })
  t.equal((await declaring.inject('/v1/schedules/nightly')).statusCode, 200)
  const config = testConfig({ TASKBROKER_UPKEEP_ENABLED: 'false' })
  const other = await buildApp(config, { store: testStore(database, config), logger: pino({ level: 'silent' }) })
  t.teardown(() => other.close())
  const pass = await other.broker.upkeep.runOnce(new Date('2026-01-01T10:00:01.000Z'))
  t.same(Object.keys(pass.errors), [], 'its upkeep pass ran')
  t.match((await other.inject('/v1/schedules/nightly')).json(), { source: 'file', cron: '0 3 * * *' }, 'still there, as the file declares it')
})

t.test('a broken schedule in the file stops the broker at start, naming the schedule and the field', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['schedules:\n  nightly:\n    cron: "0 3 * *"\n    task: {namespace: ns, taskname: t}\n', /schedules\/nightly\/cron must have five fields/],
    ['schedules:\n  nightly:\n    cron: "0 3 * * *"\n    timezone: Moon/Base\n    task: {namespace: ns, taskname: t}\n', /schedules\/nightly\/timezone/],
    ['schedules:\n  nightly:\n    every_sec: 60\n    task: {namespace: ns, taskname: t, colour: red}\n', /schedules\/nightly\/task/],
    ['schedules:\n  nightly:\n    every_sec: 60\n', /schedules\/nightly.*task/],
    ['schedules:\n  "bad name":\n    every_sec: 60\n    task: {namespace: ns, taskname: t}\n', /schedules: the name must be/],
    ['schedules: [a, b]\n', /schedules must be a map/]
  ]
  for (const [text, message] of cases) {
    const file = runtimeFile(text)
    await t.rejects(buildApp(testConfig({ TASKBROKER_RUNTIME_CONFIG: file }), { logger: pino({ level: 'silent' }) }),
      { message: new RegExp(`Invalid runtime config ${file}: .*${message.source}`) }, message.source)
  }
})
