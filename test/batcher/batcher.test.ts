import t from 'tap'
import {
  createBatcher,
  BatcherClosedError,
  BatcherFullError,
  type Batcher,
  type BatcherOptions,
  type FlushInfo
} from '../../src/core/batcher/batcher.js'

// Any unhandled rejection anywhere in this file is recorded and fails the last test.
const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })

// The batcher's timers are unref()'d, so on their own they would let this process exit while a
// test still awaits an interval/backoff flush. This ref'd timer keeps the loop alive meanwhile.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

interface Item { id: number, v: string }

const tick = (): Promise<void> => new Promise(resolve => setImmediate(resolve))
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
const ids = (items: Item[]): string[] => items.map(i => `${i.id}${i.v}`)

/**
 * Fake store. Every flush call is recorded; results are `${id}:${v}@${callNumber}` so a test can
 * see which flush wrote an item. With `hold` set, each call waits for `release(fail)`.
 */
class FakeStore {
  calls: Item[][] = []
  callTimes: number[] = []
  active = 0
  maxActive = 0
  hold = false
  failNext = 0
  failAlways = false
  private held: Array<(fail: boolean) => void> = []
  private listeners: Array<() => void> = []

  flush = async (items: Item[]): Promise<string[]> => {
    this.calls.push(items.map(i => ({ ...i })))
    this.callTimes.push(Date.now())
    const n = this.calls.length
    this.active++
    this.maxActive = Math.max(this.maxActive, this.active)
    for (const l of this.listeners.splice(0)) l()
    try {
      let fail: boolean
      if (this.hold) {
        fail = await new Promise<boolean>(resolve => this.held.push(resolve))
      } else {
        await tick()
        fail = this.failAlways || this.failNext > 0
        if (this.failNext > 0) this.failNext--
      }
      if (fail) throw new Error(`db down (call ${n})`)
      return items.map(i => `${i.id}:${i.v}@${n}`)
    } finally {
      this.active--
    }
  }

  /** Lets the oldest held flush finish (or fail) and gives the batcher time to react. */
  async release (fail = false): Promise<void> {
    const next = this.held.shift()
    if (!next) throw new Error('no flush is held')
    next(fail)
    await tick()
  }

  async waitCalls (n: number): Promise<void> {
    while (this.calls.length < n) await new Promise<void>(resolve => this.listeners.push(resolve))
  }
}

function make (
  t: { teardown: (fn: () => void) => void },
  store: FakeStore,
  opts: Partial<BatcherOptions<Item, number, string>> = {}
): Batcher<Item, string> {
  const b = createBatcher<Item, number, string>({
    name: 'test',
    maxBatchSize: 100,
    flushIntervalMs: 60_000,
    maxQueued: 1000,
    keyOf: i => i.id,
    flush: store.flush,
    ...opts
  })
  t.teardown(() => { b.close({ timeoutMs: 1000 }).catch(() => {}) })
  return b
}

const item = (id: number, v = 'a'): Item => ({ id, v })

t.test('flushes as soon as maxBatchSize distinct keys are queued', async t => {
  const store = new FakeStore()
  const infos: FlushInfo[] = []
  const b = make(t, store, { maxBatchSize: 3, onFlush: i => { infos.push(i) } })
  const ps = [1, 2, 3].map(id => b.add(item(id)))
  t.equal(store.calls.length, 0, 'never flushes synchronously inside add()')
  t.equal(b.queued, 3)
  t.same(await Promise.all(ps), ['1:a@1', '2:a@1', '3:a@1'])
  t.same(store.calls.map(ids), [['1a', '2a', '3a']])
  t.equal(infos[0]?.reason, 'size')
  // below the size, with a 60s interval, nothing is flushed
  const rest = [4, 5].map(id => b.add(item(id)))
  await tick(); await tick()
  t.equal(store.calls.length, 1)
  t.equal(b.queued, 2)
  t.equal(await b.close(), 0)
  t.same(await Promise.all(rest), ['4:a@2', '5:a@2'])
})

t.test('flushes when the oldest item has waited flushIntervalMs', async t => {
  const store = new FakeStore()
  const infos: FlushInfo[] = []
  const b = make(t, store, { flushIntervalMs: 40, onFlush: i => { infos.push(i) } })
  const start = Date.now()
  const p1 = b.add(item(1))
  await tick(); await tick()
  t.equal(store.calls.length, 0, 'not flushed before the interval')
  const p2 = b.add(item(2))
  t.same(await Promise.all([p1, p2]), ['1:a@1', '2:a@1'])
  t.ok(Date.now() - start >= 25, 'waited (roughly) the interval')
  t.same(store.calls.map(ids), [['1a', '2a']])
  t.equal(infos[0]?.reason, 'interval')
})

t.test('the interval counts from the oldest queued item (injected clock)', async t => {
  const store = new FakeStore()
  store.hold = true
  let clock = 0
  const b = make(t, store, { maxBatchSize: 3, now: () => clock })
  const p1 = b.add(item(1))
  clock = 59_999
  const p2 = b.add(item(2))
  b.add(item(3)).catch(() => {}) // size trigger -> flush #1 [1, 2, 3]
  await store.waitCalls(1)
  clock = 60_000
  const p4 = b.add(item(4)) // queued while #1 is in flight
  await store.release()
  await tick(); await tick()
  t.equal(store.calls.length, 1, 'item 4 has waited 0ms of 60s -> timer armed, no flush yet')
  t.same(await Promise.all([p1, p2]), ['1:a@1', '2:a@1'])
  clock = 120_000
  const p5 = b.add(item(5)) // item 4 has now waited 60s -> flush at once, not after the armed timer
  await tick()
  t.same(store.calls.map(ids), [['1a', '2a', '3a'], ['4a', '5a']])
  await store.release()
  t.same(await Promise.all([p4, p5]), ['4:a@2', '5:a@2'])
})

t.test('interval 0 flushes as soon as no flush is in flight; same-tick adds share a batch', async t => {
  const store = new FakeStore()
  store.hold = true
  const b = make(t, store, { flushIntervalMs: 0 })
  const ps = [b.add(item(1)), b.add(item(2))]
  t.equal(store.calls.length, 0)
  await tick()
  t.same(store.calls.map(ids), [['1a', '2a']])
  ps.push(b.add(item(3)), b.add(item(4)))
  await tick()
  t.equal(store.calls.length, 1, 'waits for the in-flight flush')
  t.equal(b.queued, 2)
  t.equal(b.inFlight, 2)
  await store.release()
  t.same(store.calls.map(ids), [['1a', '2a'], ['3a', '4a']], 'next flush right after the first')
  await store.release()
  t.same(await Promise.all(ps), ['1:a@1', '2:a@1', '3:a@2', '4:a@2'])
})

t.test('dedupe: last report wins, first position kept, all callers get the same result', async t => {
  const store = new FakeStore()
  const b = make(t, store, { maxBatchSize: 2 })
  const p1 = b.add(item(1, 'a'))
  const p2 = b.add(item(2, 'a'))
  const p3 = b.add(item(1, 'b'))
  t.equal(b.queued, 2)
  t.same(await Promise.all([p1, p2, p3]), ['1:b@1', '2:a@1', '1:b@1'])
  t.same(store.calls.map(ids), [['1b', '2a']])
})

t.test('an update for a key in flight is written after it, not merged', async t => {
  const store = new FakeStore()
  store.hold = true
  const b = make(t, store, { flushIntervalMs: 0 })
  const p1 = b.add(item(1, 'a'))
  await store.waitCalls(1)
  const p2 = b.add(item(1, 'b'))
  t.equal(b.queued, 1)
  await store.release()
  await store.release()
  t.same(store.calls.map(ids), [['1a'], ['1b']])
  t.same(await Promise.all([p1, p2]), ['1:a@1', '1:b@2'])
})

t.test('a backlog drains in FIFO order in flushes of at most maxBatchSize', async t => {
  const store = new FakeStore()
  const b = make(t, store, { maxBatchSize: 3, flushIntervalMs: 0 })
  const ps = Array.from({ length: 10 }, (_, i) => b.add(item(i + 1)))
  ps.push(b.add(item(5, 'b')))
  await Promise.all(ps)
  t.same(store.calls.map(ids), [['1a', '2a', '3a'], ['4a', '5b', '6a'], ['7a', '8a', '9a'], ['10a']])
  t.equal(await ps[4], '5:b@2')
})

t.test('never more than one flush in flight', async t => {
  const store = new FakeStore()
  const b = make(t, store, { maxBatchSize: 4, flushIntervalMs: 1 })
  const ps: Promise<string>[] = []
  for (let i = 0; i < 40; i++) {
    ps.push(b.add(item(i)))
    if (i % 3 === 0) await tick()
  }
  await Promise.all(ps)
  t.ok(store.calls.length > 5, `several flushes (${store.calls.length})`)
  t.equal(store.maxActive, 1)
  t.ok(store.calls.every(c => c.length <= 4))
  t.same(store.calls.flat().map(i => i.id), Array.from({ length: 40 }, (_, i) => i))
})

t.test('maxConcurrentFlushes: a batch fills while another is written, never more at once', async t => {
  const store = new FakeStore()
  store.hold = true
  const b = make(t, store, { maxBatchSize: 10, flushIntervalMs: 0, maxConcurrentFlushes: 2 })
  const p1 = b.add(item(1))
  await store.waitCalls(1)
  const p2 = b.add(item(2))
  const p3 = b.add(item(3))
  await store.waitCalls(2)
  t.same(store.calls.map(ids), [['1a'], ['2a', '3a']], 'the second flush started beside the first')
  const p4 = b.add(item(4))
  await tick()
  t.equal(store.calls.length, 2, 'a third waits while two are in flight')
  t.equal(b.inFlight, 3)
  t.equal(b.queued, 1)
  await store.release()
  await store.waitCalls(3)
  t.same(ids(store.calls[2] ?? []), ['4a'], 'it starts when one ends')
  await store.release()
  await store.release()
  t.same(await Promise.all([p1, p2, p3, p4]), ['1:a@1', '2:a@2', '3:a@2', '4:a@3'])
  t.equal(store.maxActive, 2)
})

t.test('maxConcurrentFlushes: a key in flight is never written by a concurrent flush', async t => {
  const store = new FakeStore()
  store.hold = true
  const b = make(t, store, { maxBatchSize: 10, flushIntervalMs: 0, maxConcurrentFlushes: 3 })
  const p1 = b.add(item(1, 'a'))
  await store.waitCalls(1)
  const p2 = b.add(item(1, 'b')) // same key, in flight
  const p3 = b.add(item(2, 'a'))
  await store.waitCalls(2)
  t.same(ids(store.calls[1] ?? []), ['2a'], 'the concurrent flush skipped the key in flight')
  t.equal(b.queued, 1)
  await store.release() // ends flush 1: now 1b may go
  await store.waitCalls(3)
  t.same(ids(store.calls[2] ?? []), ['1b'])
  await store.release()
  await store.release()
  t.same(await Promise.all([p1, p2, p3]), ['1:a@1', '1:b@3', '2:a@2'], 'last write of the key is the last one made')
})

t.test('groupOf: items of one group with different keys are all written, one flush at a time, in order', async t => {
  const store = new FakeStore()
  store.hold = true
  const b = createBatcher<Item, string, string>({
    name: 'test',
    maxBatchSize: 10,
    flushIntervalMs: 0,
    maxQueued: 1000,
    maxConcurrentFlushes: 3,
    keyOf: i => `${i.id}/${i.v}`,
    groupOf: i => i.id,
    flush: store.flush
  })
  t.teardown(() => { b.close({ timeoutMs: 1000 }).catch(() => {}) })
  const p1 = b.add(item(1, 'a'))
  await store.waitCalls(1)
  const rest = [b.add(item(1, 'b')), b.add(item(1, 'c')), b.add(item(2, 'a')), b.add(item(1, 'b'))]
  await store.waitCalls(2)
  t.same(ids(store.calls[1] ?? []), ['2a'], 'a concurrent flush skips the group in flight')
  t.equal(b.queued, 2, '1b (its two adds merged: same key) and 1c wait')
  await store.release()
  await store.waitCalls(3)
  t.same(ids(store.calls[2] ?? []), ['1b'], 'never two items of a group in one flush')
  await store.release()
  await store.release()
  await store.waitCalls(4)
  t.same(ids(store.calls[3] ?? []), ['1c'])
  await store.release()
  t.same(await Promise.all([p1, ...rest]), ['1:a@1', '1:b@3', '1:c@4', '2:a@2', '1:b@3'])
})

t.test('maxConcurrentFlushes: under load every item is written once, in order per key', async t => {
  const store = new FakeStore()
  const b = make(t, store, { maxBatchSize: 4, flushIntervalMs: 0, maxConcurrentFlushes: 3 })
  const ps: Promise<string>[] = []
  for (let i = 0; i < 60; i++) {
    ps.push(b.add(item(i % 7, `v${i}`)))
    if (i % 5 === 0) await tick()
  }
  const results = await Promise.all(ps)
  t.ok(store.maxActive > 1 && store.maxActive <= 3, `flushes overlapped, at most 3 (${store.maxActive})`)
  const lastWrite = new Map<number, string>()
  for (const call of store.calls) for (const i of call) lastWrite.set(i.id, i.v)
  for (let k = 0; k < 7; k++) {
    const lastAdded = [...Array(60).keys()].filter(i => i % 7 === k).pop() as number
    t.equal(lastWrite.get(k), `v${lastAdded}`, `key ${k}: the last value added is the last written`)
  }
  t.equal(results.length, 60)
})

t.test('failed flushes are retried with backoff; nothing lost, order kept, newer value wins', async t => {
  const store = new FakeStore()
  store.hold = true
  const errors: Array<[number, number]> = []
  const infos: FlushInfo[] = []
  const b = make(t, store, {
    flushIntervalMs: 0,
    retryBackoffMs: { initial: 20, max: 40 },
    onError: (_e, attempt, size) => { errors.push([attempt, size]) },
    onFlush: i => { infos.push(i) }
  })
  const p1a = b.add(item(1, 'a'))
  const p2 = b.add(item(2, 'a'))
  await store.waitCalls(1)
  const p1b = b.add(item(1, 'b')) // queued while 1a is in flight
  const p3 = b.add(item(3, 'a'))
  await store.release(true) // call 1 fails
  t.equal(b.queued, 3, 'failed items back in the queue')
  t.equal(store.calls.length, 1, 'no immediate retry')
  await store.waitCalls(2)
  await store.release(true) // call 2 fails
  await store.waitCalls(3)
  await store.release() // call 3 succeeds
  t.same(store.calls.map(ids), [['1a', '2a'], ['1b', '2a', '3a'], ['1b', '2a', '3a']])
  t.same(await Promise.all([p1a, p1b, p2, p3]), ['1:b@3', '1:b@3', '2:a@3', '3:a@3'])
  t.same(errors, [[1, 2], [2, 3]])
  t.same(infos.map(i => [i.reason, i.size, i.error !== undefined]), [['interval', 2, true], ['retry', 3, true], ['retry', 3, false]])
  const [c1 = 0, c2 = 0, c3 = 0] = store.callTimes
  t.ok(c2 - c1 >= 15, `first backoff ~20ms (${c2 - c1})`)
  t.ok(c3 - c2 >= 30, `second backoff doubled to ~40ms (${c3 - c2})`)
  // backoff and attempt counter reset after a success
  const p4 = b.add(item(4))
  await store.waitCalls(4)
  await store.release(true)
  await store.waitCalls(5)
  await store.release()
  t.equal(await p4, '4:a@5')
  t.same(errors.at(-1), [1, 1], 'attempt counter restarted at 1')
})

t.test('BatcherFullError at maxQueued (in-flight not counted); accepts again after draining', async t => {
  const store = new FakeStore()
  store.hold = true
  const b = make(t, store, { maxBatchSize: 3, maxQueued: 3 })
  const ps = [1, 2, 3].map(id => b.add(item(id)))
  t.throws(() => b.add(item(4)), BatcherFullError, 'thrown synchronously')
  t.throws(() => b.add(item(4)), { code: 'TASKBROKER_BATCHER_FULL' })
  ps.push(b.add(item(2, 'b'))) // replacing a queued key does not grow the queue
  await store.waitCalls(1)
  t.equal(b.queued, 0)
  t.equal(b.inFlight, 3)
  ps.push(...[4, 5, 6].map(id => b.add(item(id))))
  t.throws(() => b.add(item(7)), BatcherFullError)
  await store.release()
  await store.waitCalls(2)
  ps.push(b.add(item(7))) // accepted again; below maxBatchSize, so close() flushes it
  await store.release()
  const closing = b.close()
  await store.waitCalls(3)
  await store.release()
  t.equal(await closing, 0)
  t.same(await Promise.all(ps), ['1:a@1', '2:b@1', '3:a@1', '2:b@1', '4:a@2', '5:a@2', '6:a@2', '7:a@3'])
})

t.test('with the store down the queue stays bounded; adds are accepted again once it recovers', async t => {
  const store = new FakeStore()
  store.hold = true
  // A backoff long enough that the retry cannot start before the checks below, even on a loaded
  // machine (with 5 ms it sometimes did: the retry then waited on the held store forever).
  const b = make(t, store, { maxBatchSize: 2, maxQueued: 2, flushIntervalMs: 0, retryBackoffMs: { initial: 500, max: 500 } })
  const ps = [b.add(item(1)), b.add(item(2))]
  await store.waitCalls(1)
  await store.release(true) // the store is down
  t.equal(b.queued, 2, 'failed items are kept, and count as queued')
  t.throws(() => b.add(item(3)), BatcherFullError)
  store.hold = false // the store recovers before the retry
  t.same(await Promise.all(ps), ['1:a@2', '2:a@2'])
  t.equal(b.queued, 0)
  t.equal(await b.add(item(3)), '3:a@3', 'accepted again')
})

t.test('close flushes immediately without waiting for the interval, and drains a backlog', async t => {
  const store = new FakeStore()
  const infos: FlushInfo[] = []
  const b = make(t, store, { maxBatchSize: 2, maxQueued: 10, onFlush: i => { infos.push(i) } })
  const ps = [b.add(item(1))]
  await tick()
  ps.push(b.add(item(2)), b.add(item(3)), b.add(item(4)), b.add(item(5)))
  const start = Date.now()
  t.equal(await b.close(), 0)
  t.ok(Date.now() - start < 30_000, 'did not wait for the 60s interval')
  t.equal(b.closed, true)
  t.same(store.calls.map(ids), [['1a', '2a'], ['3a', '4a'], ['5a']])
  t.same(await Promise.all(ps), ['1:a@1', '2:a@1', '3:a@2', '4:a@2', '5:a@3'])
  t.same(infos.map(i => i.reason), ['close', 'close', 'close'])
})

t.test('close while a flush is in flight waits for it, then flushes the rest', async t => {
  const store = new FakeStore()
  store.hold = true
  const b = make(t, store, { flushIntervalMs: 0 })
  const p1 = b.add(item(1))
  await store.waitCalls(1)
  const p2 = b.add(item(2))
  let closed = false
  const closing = b.close().then(n => { closed = true; return n })
  t.equal(b.close(), b.close(), 'idempotent: same promise')
  await tick(); await tick()
  t.equal(closed, false, 'still waiting for the in-flight flush')
  await store.release()
  await store.waitCalls(2)
  t.equal(closed, false)
  await store.release()
  t.equal(await closing, 0)
  t.same(await Promise.all([p1, p2]), ['1:a@1', '2:a@2'])
})

t.test('add after close throws BatcherClosedError', async t => {
  const store = new FakeStore()
  const b = make(t, store)
  await b.close()
  t.throws(() => b.add(item(1)), BatcherClosedError, 'thrown synchronously')
  t.throws(() => b.add(item(1)), { code: 'TASKBROKER_BATCHER_CLOSED' })
  t.equal(store.calls.length, 0)
})

t.test('close with a permanently failing flush and timeoutMs rejects the rest and resolves', async t => {
  const store = new FakeStore()
  store.failAlways = true
  const attempts: number[] = []
  const b = make(t, store, { retryBackoffMs: { initial: 5, max: 10 }, onError: (_e, a) => { attempts.push(a) } })
  const ps = [1, 2, 3].map(id => b.add(item(id)))
  t.equal(await b.close({ timeoutMs: 100 }), 3, 'reports 3 abandoned items')
  const settled = await Promise.allSettled(ps)
  t.ok(settled.every(s => s.status === 'rejected' && s.reason instanceof BatcherClosedError))
  t.ok(store.calls.length >= 2, `kept retrying (${store.calls.length} calls)`)
  t.same(attempts, attempts.map((_, i) => i + 1), 'attempt counts up')
  const calls = store.calls.length
  await sleep(40)
  t.equal(store.calls.length, calls, 'no more retries after abandoning')
})

t.test('close timeout also abandons a flush that never settles', async t => {
  const store = new FakeStore()
  store.hold = true
  const b = make(t, store, { flushIntervalMs: 0 })
  const p1 = b.add(item(1))
  await store.waitCalls(1)
  const p2 = b.add(item(2))
  t.equal(await b.close({ timeoutMs: 20 }), 2)
  await t.rejects(p1, BatcherClosedError)
  await t.rejects(p2, BatcherClosedError)
  await store.release(true) // a late failure is not requeued or retried
  await sleep(10)
  t.equal(store.calls.length, 1)
  t.equal(b.queued, 0)
  t.equal(b.inFlight, 0)
})

t.test('onFlush/onError get the right figures (injected clock)', async t => {
  let clock = 1000
  let fail = 1
  const infos: FlushInfo[] = []
  const errors: Array<[unknown, number, number]> = []
  const boom = new Error('boom')
  const b = createBatcher<Item, number, string>({
    name: 'figures',
    maxBatchSize: 2,
    flushIntervalMs: 0,
    maxQueued: 10,
    keyOf: i => i.id,
    now: () => clock,
    retryBackoffMs: { initial: 1, max: 1 },
    flush: async items => {
      clock += 7
      await tick()
      if (items.length === 1 && fail-- > 0) throw boom
      return items.map(i => String(i.id))
    },
    onFlush: i => { infos.push(i) },
    onError: (e, a, s) => { errors.push([e, a, s]) }
  })
  await Promise.all([b.add(item(1)), b.add(item(2))])
  t.equal(await b.add(item(3)), '3')
  t.same(infos, [
    { size: 2, durationMs: 7, error: undefined, reason: 'size' },
    { size: 1, durationMs: 7, error: boom, reason: 'interval' },
    { size: 1, durationMs: 7, error: undefined, reason: 'retry' }
  ])
  t.same(errors, [[boom, 1, 1]])
  t.equal(await b.close(), 0)
})

t.test('a flush that throws synchronously is retried; throwing hooks do not break anything', async t => {
  let calls = 0
  const b = createBatcher<Item, number, string>({
    name: 'sync-throw',
    maxBatchSize: 10,
    flushIntervalMs: 0,
    maxQueued: 10,
    keyOf: i => i.id,
    retryBackoffMs: { initial: 1, max: 1 },
    flush: (items) => {
      if (++calls === 1) throw new Error('sync')
      return Promise.resolve(items.map(i => String(i.id)))
    },
    onFlush: () => { throw new Error('hook') },
    onError: () => { throw new Error('hook') }
  })
  t.same(await Promise.all([b.add(item(1)), b.add(item(2))]), ['1', '2'])
  t.equal(calls, 2)
  t.equal(await b.close(), 0)
})

t.test('a flush returning the wrong number of results rejects its callers without retrying', async t => {
  let calls = 0
  const b = createBatcher<Item, number, string>({
    name: 'bad-results',
    maxBatchSize: 10,
    flushIntervalMs: 0,
    maxQueued: 10,
    keyOf: i => i.id,
    flush: async () => { calls++; return ['only one'] }
  })
  const p1 = b.add(item(1))
  const p2 = b.add(item(2))
  await t.rejects(p1, /1 results for 2 items/)
  await t.rejects(p2, /1 results for 2 items/)
  t.equal(await b.close(), 0)
  t.equal(calls, 1)
})

t.test('timers do not keep the process alive', async t => {
  const store = new FakeStore()
  const b = make(t, store)
  const timeouts = (): number => process.getActiveResourcesInfo().filter(r => r === 'Timeout').length
  const before = timeouts()
  const p = b.add(item(1)) // arms a 60s interval timer
  t.equal(timeouts(), before, 'interval timer is unref()d')
  await b.close()
  t.equal(await p, '1:a@1')
})

t.test('rejects invalid options', async t => {
  const base = { name: 'x', maxBatchSize: 1, flushIntervalMs: 0, maxQueued: 1, keyOf: (i: Item) => i.id, flush: async () => [] }
  t.throws(() => createBatcher({ ...base, maxBatchSize: 0 }), RangeError)
  t.throws(() => createBatcher({ ...base, maxQueued: 0 }), RangeError)
  t.throws(() => createBatcher({ ...base, flushIntervalMs: -1 }), RangeError)
})

t.test('no unhandled rejections happened', async t => {
  await sleep(20)
  t.same(unhandled, [])
})
