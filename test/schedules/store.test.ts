/** The schedule store on both backends: the upsert rules, compare-and-set advance, removal by source, file sync, counts. */
import t from 'tap'
import { createScheduleStore, type ScheduleWrite } from '../../src/store/schedule-store.js'
import { eachBackend } from '../helpers/database.js'
import { scheduleDatabase, TASK } from './helpers.js'

const at = (iso: string) => new Date(iso)

function write (name: string, overrides: Partial<ScheduleWrite> = {}): ScheduleWrite {
  return {
    name,
    cron: null,
    everySec: 60,
    timezone: 'UTC',
    task: TASK,
    overlap: 'allow',
    catchUp: 'none',
    paused: false,
    nextFireAt: at('2026-01-01T10:01:00.000Z'),
    ...overrides
  }
}

eachBackend(t, 'schedule store', async (t, backend) => {
  const { database } = await scheduleDatabase(t, backend)
  const store = createScheduleStore(database)

  await t.test('put keeps next_fire_at while the timing is unchanged and takes the new one when it changes', async (t) => {
    t.match(await store.put(write('a'), 'api'), { name: 'a', source: 'api', nextFireAt: at('2026-01-01T10:01:00.000Z'), lastTaskId: null })
    t.match(await store.put(write('a', { nextFireAt: at('2026-01-01T11:00:00.000Z'), paused: true }), 'api'),
      { paused: true, nextFireAt: at('2026-01-01T10:01:00.000Z') }, 'same every_sec: the stored window stays')
    t.match(await store.put(write('a', { everySec: 120, nextFireAt: at('2026-01-01T10:02:00.000Z') }), 'api'),
      { everySec: 120, nextFireAt: at('2026-01-01T10:02:00.000Z') }, 'a new timing takes the new window')
  })

  await t.test('advance moves on only from the window it read, and records the fire', async (t) => {
    const from = at('2026-01-01T10:02:00.000Z')
    t.equal(await store.advance('a', at('2026-01-01T09:00:00.000Z'), at('2026-01-01T10:04:00.000Z'), null), false, 'a stale window changes nothing')
    t.match(await store.get('a'), { nextFireAt: from, lastFireAt: null })
    t.equal(await store.advance('a', from, at('2026-01-01T10:04:00.000Z'), { at: from, taskId: 'sched:a:x' }), true)
    t.equal(await store.advance('a', from, at('2026-01-01T10:06:00.000Z'), null), false, 'the second of two advances from one window loses')
    t.match(await store.get('a'), { nextFireAt: at('2026-01-01T10:04:00.000Z'), lastFireAt: from, lastTaskId: 'sched:a:x', lastTaskStatus: null })
    t.equal(await store.advance('a', at('2026-01-01T10:04:00.000Z'), at('2026-01-01T10:06:00.000Z'), null), true)
    t.match(await store.get('a'), { lastTaskId: 'sched:a:x' }, 'an advance without a fire keeps the last fire')
    t.equal(await store.recordFire('nope', from, 'x'), false)
  })

  await t.test('due lists unpaused schedules whose window has come, oldest first', async (t) => {
    await store.put(write('b', { nextFireAt: at('2026-01-01T10:05:00.000Z') }), 'api')
    await store.put(write('c', { everySec: 30, nextFireAt: at('2026-01-01T10:00:00.000Z'), paused: true }), 'api')
    t.same((await store.due(at('2026-01-01T10:06:00.000Z'), 10)).map(s => s.name), ['b', 'a'])
    t.same((await store.due(at('2026-01-01T10:06:00.000Z'), 1)).map(s => s.name), ['b'], 'bounded')
    t.same((await store.due(at('2026-01-01T10:04:59.999Z'), 10)).map(s => s.name), [])
  })

  await t.test('file schedules: synced exactly, never replaced or removed as api; counts', async (t) => {
    await store.syncFile([write('f1'), write('b', { everySec: 600 })])
    t.match(await store.get('b'), { source: 'file', everySec: 600 }, 'the file takes over a name')
    t.equal(await store.put(write('f1', { everySec: 5 }), 'api'), null, 'api does not replace a file schedule')
    t.equal(await store.remove('f1'), 'file')
    t.equal(await store.remove('nope'), 'not_found')
    t.same(await store.counts(), { total: 4, paused: 1, fromFile: 2 })
    await store.syncFile([write('f1')])
    t.equal(await store.get('b'), null, 'no longer declared: removed')
    await store.syncFile([])
    t.equal(await store.get('f1'), null)
    t.equal(await store.remove('a'), 'removed')
    t.same((await store.list()).map(s => s.name), ['c'])
  })
})
