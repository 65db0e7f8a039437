import pino from 'pino'
import t from 'tap'
import { createMetrics } from '../../src/metrics.js'
import { createStatusWriter } from '../../src/status/status-writer.js'
import type { TaskStore } from '../../src/store/task-store.js'
import type { StatusUpdate } from '../../src/store/types.js'
import { testConfig } from '../helpers/app.js'

// The batcher's timers are unref()'d; keep the test process alive while they run.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => clearInterval(keepAlive))

t.test('a report the store refuses does not block the reports flushed with it', async (t) => {
  const statements: string[][] = []
  const store = {
    async setStatusMany (updates: readonly StatusUpdate[]) {
      statements.push(updates.map(u => u.id))
      if (updates.some(u => u.id === 'poison')) throw Object.assign(new Error('invalid byte sequence'), { code: '22021' })
      return new Set(updates.map(u => u.id))
    }
  } as unknown as TaskStore
  const config = testConfig({ TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '20' }).status
  const writer = createStatusWriter({ store, config, metrics: createMetrics(), log: pino({ level: 'silent' }) })
  const outcome = await writer.report([{ id: 'a', status: 'complete' }, { id: 'poison', status: 'complete' }, { id: 'b', status: 'failure' }])
  t.same(outcome.applied, ['a', 'b'], 'the good reports were written')
  t.same(outcome.notFound, ['poison'], 'the bad one is answered as not applied')
  t.same(statements[0], ['a', 'poison', 'b'], 'first one bulk statement')
  t.equal(statements.length, 4, 'then one statement per report')
  t.same((await writer.report([{ id: 'c', status: 'complete' }])).applied, ['c'], 'later reports flow normally')
  await writer.close(1000)
})

t.test('a store outage is retried, not treated as a bad report', async (t) => {
  let down = true
  const store = {
    async setStatusMany (updates: readonly StatusUpdate[]) {
      if (down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
      return new Set(updates.map(u => u.id))
    }
  } as unknown as TaskStore
  const writer = createStatusWriter({ store, config: testConfig().status, metrics: createMetrics(), log: pino({ level: 'silent' }) })
  const pending = writer.report([{ id: 'x', status: 'complete' }])
  setTimeout(() => { down = false }, 150)
  t.same((await pending).applied, ['x'], 'written once the store is back')
  await writer.close(1000)
})
