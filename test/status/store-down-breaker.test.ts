import t from 'tap'
import { createStoreDownBreaker, KNOWN_DOWN_AFTER_MS } from '../../src/core/status/store-down-breaker.js'

const unreachable = () => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })

function breakerAt (start: number) {
  const clock = { now: start }
  return { clock, breaker: createStoreDownBreaker({ now: () => clock.now }) }
}

t.test('refuses once flushes have failed to reach the store for the threshold', async (t) => {
  t.equal(KNOWN_DOWN_AFTER_MS, 500)
  const { clock, breaker } = breakerAt(Date.UTC(2030, 0, 1))
  breaker.throwIfKnownDown()
  breaker.recordFlush(unreachable())
  clock.now += 300
  breaker.recordFlush(unreachable()) // a later failure does not move the start of the outage
  clock.now += KNOWN_DOWN_AFTER_MS - 301
  t.doesNotThrow(() => { breaker.throwIfKnownDown() }, 'a blip is waited out')
  clock.now += 1
  t.throws(() => { breaker.throwIfKnownDown() }, {
    code: 'TASKBROKER_STORE_UNAVAILABLE',
    detail: 'unreachable since 2030-01-01T00:00:00.000Z; status reports are not being written'
  })
})

t.test('one flush that succeeds ends the outage', async (t) => {
  const { clock, breaker } = breakerAt(0)
  breaker.recordFlush(unreachable())
  clock.now += 10 * KNOWN_DOWN_AFTER_MS
  t.throws(() => { breaker.throwIfKnownDown() })
  breaker.recordFlush(undefined)
  t.doesNotThrow(() => { breaker.throwIfKnownDown() })
  breaker.recordFlush(unreachable())
  clock.now += KNOWN_DOWN_AFTER_MS - 1
  t.doesNotThrow(() => { breaker.throwIfKnownDown() }, 'a new outage counts from its own start')
})

t.test('a flush that failed for another reason says nothing about the store', async (t) => {
  const { clock, breaker } = breakerAt(0)
  breaker.recordFlush(Object.assign(new Error('invalid byte sequence'), { code: '22021' }))
  clock.now += 10 * KNOWN_DOWN_AFTER_MS
  t.doesNotThrow(() => { breaker.throwIfKnownDown() })
  breaker.recordFlush(new Error('wrapped', { cause: unreachable() }))
  clock.now += KNOWN_DOWN_AFTER_MS
  t.throws(() => { breaker.throwIfKnownDown() }, { code: 'TASKBROKER_STORE_UNAVAILABLE' }, 'unreachable along the cause chain counts')
})
