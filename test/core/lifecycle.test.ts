/** The lifecycle: one order for stopping (and its reverse for starting), one budget, no part stops the others. */
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import t from 'tap'
import { createLifecycle, deadlineIn, msLeft, STOP_GRACE_MS, type Deadline, type Part } from '../../src/core/lifecycle.js'

function recordingLog () {
  const lines: Array<{ msg: string, part?: string }> = []
  const sink = new Writable({ write (chunk, _encoding, done) { lines.push(JSON.parse(String(chunk))); done() } })
  return { log: pino({ level: 'debug' }, sink), lines }
}

/** Resolves with the time `promise` took, or rejects when it takes longer than `boundMs` (a bug, not a speed target). */
async function timed (promise: Promise<unknown>, boundMs: number): Promise<number> {
  const started = performance.now()
  let timer: ReturnType<typeof setTimeout> | undefined
  const bound = new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`not done within ${boundMs} ms`)), boundMs) })
  try {
    await Promise.race([promise, bound])
  } finally {
    clearTimeout(timer)
  }
  return performance.now() - started
}

t.test('stops run in list order after every quiesce; starts run in reverse', async (t) => {
  const events: string[] = []
  const part = (name: string): Part => ({
    name,
    start: () => { events.push(`start ${name}`) },
    quiesce: () => { events.push(`quiesce ${name}`) },
    stop: async () => {
      await sleep(5)
      events.push(`stop ${name}`)
    }
  })
  const lifecycle = createLifecycle([part('a'), part('b'), { name: 'c', stop: () => { events.push('stop c') } }], recordingLog().log)
  lifecycle.start()
  t.same(events.splice(0), ['start b', 'start a'], 'started back to front (c has nothing to start)')
  t.equal(lifecycle.stopping, false)
  lifecycle.quiesce()
  t.equal(lifecycle.stopping, true)
  t.same(events.splice(0), ['quiesce a', 'quiesce b'], 'quiesce takes every part out of work at once, in order')
  await lifecycle.stop(deadlineIn(10_000))
  t.same(events.splice(0), ['stop a', 'stop b', 'stop c'], 'each stop waits for the one before it')
  lifecycle.start()
  await lifecycle.stop(deadlineIn(10_000))
  t.same(events, [], 'after shutdown nothing starts again, and a second stop stops nothing twice')
})

t.test('a part that hangs does not hold the others beyond the budget', async (t) => {
  const { log, lines } = recordingLog()
  const stopped: string[] = []
  const lifecycle = createLifecycle([
    { name: 'hangs', stop: () => new Promise<void>(() => {}) },
    { name: 'flush', stop: () => { stopped.push('flush') }, minimumMs: 100 },
    { name: 'store', stop: () => { stopped.push('store') } }
  ], log)
  const budgetMs = 300
  const tookMs = await timed(lifecycle.stop(deadlineIn(budgetMs)), 30_000)
  t.same(stopped, ['flush', 'store'], 'the parts after the hanging one still stopped')
  // The slack is the minimums plus a grace per part; the bound below is generous for a busy machine.
  t.ok(tookMs < budgetMs + 100 + 3 * STOP_GRACE_MS + 5_000, `stop kept to its budget (${Math.round(tookMs)} ms, budget ${budgetMs} ms)`)
  t.ok(lines.some(l => l.part === 'hangs' && /did not stop within the shutdown budget/.test(l.msg)), 'the hanging part is named in the log')
})

t.test('a part that throws (or rejects) does not stop the rest', async (t) => {
  const { log, lines } = recordingLog()
  const stopped: string[] = []
  const lifecycle = createLifecycle([
    { name: 'throws', quiesce: () => { throw new Error('quiesce broke') }, stop: () => { throw new Error('stop broke') } },
    { name: 'rejects', stop: async () => { throw new Error('async stop broke') } },
    { name: 'last', quiesce: () => { stopped.push('quiesced last') }, stop: () => { stopped.push('stopped last') } }
  ], log)
  await timed(lifecycle.stop(deadlineIn(5_000)), 30_000)
  t.same(stopped, ['quiesced last', 'stopped last'])
  const failed = lines.filter(l => /failed/.test(l.msg)).map(l => l.part)
  t.same(failed, ['throws', 'throws', 'rejects'], 'each failure is logged with its part')
})

t.test('a part with a minimum gets it even when the budget is spent', async (t) => {
  const given: number[] = []
  const lifecycle = createLifecycle([
    // Sleeps past the deadline (a timer may fire a little early), so the budget is surely spent.
    { name: 'slow', stop: async (deadline: Deadline) => { await sleep(msLeft(deadline) + 20) } },
    { name: 'flush', stop: (deadline: Deadline) => { given.push(msLeft(deadline)) }, minimumMs: 250 },
    { name: 'no minimum', stop: (deadline: Deadline) => { given.push(msLeft(deadline)) } }
  ], recordingLog().log)
  await lifecycle.stop(deadlineIn(50))
  t.ok(given[0]! > 150, `the flush had its minimum (${Math.round(given[0]!)} ms left)`)
  t.equal(given[1], 0, 'a part without one gets what is left: nothing')
})
