/**
 * Exactly once across brokers: two brokers firing the same schedules at once produce one task per
 * window, and a leader that dies between the produce and moving next_fire_at on leaves the window
 * to the next leader, which produces the same id (ignored) and moves on.
 */
import pino from 'pino'
import t from 'tap'
import { createBroker, type Broker, type Store } from '../../src/core/broker.js'
import { testConfig, testStore } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import type { Test } from '../helpers/requests.js'
import { clock, firedWindows, scheduleDatabase, TASK } from './helpers.js'

const config = testConfig({ TASKBROKER_UPKEEP_ENABLED: 'false', TASKBROKER_SCHEDULE_CATCH_UP_MAX: '50' })

async function broker (t: Test, store: Store, now: () => Date): Promise<Broker> {
  const created = await createBroker(config, { store, now, logger: pino({ level: 'silent' }) })
  t.teardown(() => created.stop())
  return created
}

eachBackend(t, 'two brokers firing together produce exactly one task per window', async (t, backend) => {
  const { database } = await scheduleDatabase(t, backend)
  const time = clock('2026-01-01T10:00:00.500Z')
  const first = await broker(t, testStore(database, config), time.now)
  const second = await broker(t, testStore(database, config), time.now)
  await first.schedules.put('every', { every_sec: 60, catch_up: 'all', task: TASK })
  await second.schedules.put('cron', { cron: '*/5 * * * * *', catch_up: 'all', task: TASK })

  const expectedEvery: string[] = []
  for (let round = 1; round <= 12; round++) {
    time.set(new Date(Date.parse('2026-01-01T10:00:00Z') + round * 60_000 + 100))
    expectedEvery.push(new Date(Date.parse('2026-01-01T10:00:00Z') + round * 60_000).toISOString())
    const [a, b] = await Promise.all([first.schedules.fireDue(time.now()), second.schedules.fireDue(time.now())])
    t.equal(a.failed + b.failed, 0, `round ${round}: no fire failed`)
  }
  t.same(await firedWindows(database, 'every'), expectedEvery, 'each minute once')
  const cronWindows = await firedWindows(database, 'cron')
  t.equal(new Set(cronWindows).size, cronWindows.length, 'no cron window twice')
  t.equal(cronWindows.length, 12 * 12, 'every 5-second window of the 12 minutes (catch_up all, within the bound)')
  t.equal((await first.schedules.get('every')).nextFireAt?.toISOString(), '2026-01-01T10:13:00.000Z')
})

eachBackend(t, 'a leader that dies mid-fire: the next leader produces the same window once and moves on', async (t, backend) => {
  const { database } = await scheduleDatabase(t, backend)
  const time = clock('2026-01-01T10:00:30.000Z')
  const healthy = testStore(database, config)
  // The first leader's connection is lost right after its produce committed.
  const dying: Store = {
    ...healthy,
    schedules: { ...healthy.schedules, advance: async () => { throw Object.assign(new Error('connection lost'), { code: 'ECONNRESET' }) } }
  }
  const first = await broker(t, dying, time.now)
  const second = await broker(t, testStore(database, config), time.now)
  await first.schedules.put('job', { every_sec: 60, task: TASK })

  time.set('2026-01-01T10:01:00.300Z')
  const died = await first.upkeep.runOnce(time.now())
  t.equal(died.leader, true)
  t.equal(died.counts['schedules.failed'], 1, 'the fire failed after its produce')
  t.same(await firedWindows(database, 'job'), ['2026-01-01T10:01:00.000Z'], 'the task was produced')
  t.equal((await second.schedules.get('job')).nextFireAt?.toISOString(), '2026-01-01T10:01:00.000Z', 'but the window was not moved on')
  await first.stop()

  // A worker has taken the task meanwhile: the refire must not touch it.
  const [claimed] = await second.claim({ application: 'app', limit: 1 })
  t.equal(claimed?.activation.id, 'sched:job:2026-01-01T10:01:00.000Z')

  time.set('2026-01-01T10:01:01.000Z')
  const took = await second.upkeep.runOnce(time.now())
  t.equal(took.leader, true, 'the second broker leads once the first is gone')
  t.equal(took.counts['schedules.fired'], 1, 'it fires the window again')
  t.same(await firedWindows(database, 'job'), ['2026-01-01T10:01:00.000Z'], 'still one task for the window')
  t.equal((await second.getTask('sched:job:2026-01-01T10:01:00.000Z')).status, 'processing', 'the claimed task is left as it is')
  const after = await second.schedules.get('job')
  t.equal(after.nextFireAt?.toISOString(), '2026-01-01T10:02:00.000Z')
  t.equal(after.lastTaskId, 'sched:job:2026-01-01T10:01:00.000Z')
  t.match(await second.metrics.registry.metrics(), /taskbroker_tasks_duplicate_total 1/, 'the refire was a duplicate produce')
})
