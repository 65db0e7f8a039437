import t from 'tap'
import { withinAckTimeout } from '../../src/core/status/ack-timeout.js'
import { StatusAckTimeoutError } from '../../src/domain/errors.js'

// The ack timer is unref()'d; keep the test process alive while it runs.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

t.test('an ack that does not come in time is answered with StatusAckTimeoutError', async (t) => {
  await t.rejects(withinAckTimeout(new Promise(() => {}), 20), StatusAckTimeoutError)
})

t.test('an ack in time is passed on', async (t) => {
  t.same(await withinAckTimeout(Promise.resolve([true, false]), 60_000), [true, false])
})

t.test('a failed write is passed on, translated', async (t) => {
  const closed = new Error('closed')
  const shuttingDown = new Error('shutting down')
  await t.rejects(withinAckTimeout(Promise.reject(closed), 60_000, e => e === closed ? shuttingDown : e), shuttingDown)
})

t.test('an ack later than the timeout does not undo it', async (t) => {
  let write!: (found: boolean) => void
  const answer = withinAckTimeout(new Promise<boolean>(resolve => { write = resolve }), 20)
  await t.rejects(answer, StatusAckTimeoutError)
  write(true)
  await t.rejects(answer, StatusAckTimeoutError)
})
