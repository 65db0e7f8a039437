/** The heartbeat batcher: one statement per flush, a heartbeat the store refuses does not hold up the others. */
import pino from 'pino'
import t from 'tap'
import { createLeases } from '../../src/core/leases/leases.js'
import { createMetrics } from '../../src/core/metrics.js'
import type { Heartbeat, HeartbeatResult, LeaseStore } from '../../src/store/index.js'
import { testConfig } from '../helpers/app.js'
import { keepAlive } from '../helpers/keep-alive.js'

keepAlive(t)

function leasesOn (heartbeat: LeaseStore['heartbeat']) {
  const config = testConfig({ TASKBROKER_STATUS_FLUSH_INTERVAL_MS: '20' })
  const store = { heartbeat } as unknown as LeaseStore
  const leases = createLeases({ store, status: config.status, leases: config.leases, metrics: createMetrics(), log: pino({ level: 'silent' }), wake: () => {} })
  t.teardown(() => leases.close(1000))
  return leases
}

const extended = (beats: readonly Heartbeat[]) => new Map<string, HeartbeatResult>(beats.map(b => [b.id, { outcome: 'extended', processingDeadline: new Date(), cancelRequested: false }]))

t.test('heartbeats sent together are written by one statement', async (t) => {
  const statements: string[][] = []
  const leases = leasesOn(async (beats) => { statements.push(beats.map(b => b.id)); return extended(beats) })
  const answers = await Promise.all(['a', 'b', 'c'].map(id => leases.heartbeat({ id })))
  t.equal(answers.length, 3)
  t.same(statements, [['a', 'b', 'c']])
})

t.test('a heartbeat the store refuses is answered as not found; the others are written', async (t) => {
  const statements: string[][] = []
  const leases = leasesOn(async (beats) => {
    statements.push(beats.map(b => b.id))
    if (beats.some(b => b.id === 'poison')) throw Object.assign(new Error('invalid input syntax'), { code: '22P02' })
    return extended(beats)
  })
  const answer = await leases.heartbeatMany([{ id: 'a' }, { id: 'poison' }, { id: 'b' }])
  t.same(answer.extended.map(e => e.id), ['a', 'b'])
  t.same(answer.notProcessing, ['poison'])
  t.same(statements[0], ['a', 'poison', 'b'], 'first one statement')
  t.equal(statements.length, 4, 'then one per heartbeat')
})

t.test('a store outage is retried until the store is back', async (t) => {
  let down = true
  const leases = leasesOn(async (beats) => {
    if (down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    return extended(beats)
  })
  const pending = leases.heartbeat({ id: 'x' })
  setTimeout(() => { down = false }, 150)
  t.type((await pending).processingDeadline, Date)
})
