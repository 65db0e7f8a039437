import t from 'tap'
import { createAckMode } from '../../src/core/status/ack-modes.js'
import { createMetrics } from '../../src/core/metrics.js'
import type { StoreDownBreaker } from '../../src/core/status/store-down-breaker.js'
import { StoreUnavailableError } from '../../src/domain/errors.js'
import type { StatusUpdate } from '../../src/domain/types.js'

const knownDown: StoreDownBreaker = { recordFlush: () => {}, throwIfKnownDown: () => { throw new StoreUnavailableError('down') } }
const updates: StatusUpdate[] = [{ id: 'a', status: 'complete' }, { id: 'b', status: 'retry' }]
const deps = { timeoutMs: 60_000, breaker: knownDown, metrics: createMetrics(), translate: (e: unknown) => e }

t.test('flushed ack: refused while the store is known down, else answered with what was written', async (t) => {
  const ack = createAckMode('flushed', deps)
  t.throws(() => { ack.admit() }, StoreUnavailableError)
  t.same(await ack.answer(updates, [Promise.resolve('applied' as const), Promise.resolve('not_found' as const)]), { applied: ['a'], notFound: ['b'], queued: [], stale: [], cancelled: [] })
})

t.test('queued ack: taken while the store is down, answered without waiting for the write', async (t) => {
  const ack = createAckMode('queued', deps)
  t.doesNotThrow(() => { ack.admit() })
  t.same(await ack.answer(updates, [new Promise(() => {}), new Promise(() => {})]), { applied: [], notFound: [], queued: ['a', 'b'], stale: [], cancelled: [] })
})
