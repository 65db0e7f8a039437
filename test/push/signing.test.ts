/**
 * Signed pushes: with TASKBROKER_AUTH_SECRETS set the broker signs every push with the first
 * secret (the request-signing scheme of src/auth/signing.ts), and the reference worker verifies it
 * and signs its reports.
 */
import t from 'tap'
import { startPushWorker } from '../../examples/push-worker.js'
import { verifySignature } from '../../src/auth/signing.js'
import { task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { fakeWorker, metric, produce, startPushApp, statusCounts, taskRows, until } from './helpers.js'

const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

eachBackend(t, 'pushes are signed; a worker with the secret verifies them and its signed reports are accepted', async (t, backend) => {
  const ran: string[] = []
  const worker = await startPushWorker({ secrets: ['old', 'new'], handler: (pushed) => { ran.push(pushed.id); return 'complete' } })
  const { app, database } = await startPushApp(t, backend, {
    TASKBROKER_WORKER_MAP: `shop=${worker.url}`,
    TASKBROKER_AUTH_SECRETS: 'new,old' // rotation: the broker signs with its first, the worker accepts any of its own
  })
  t.teardown(async () => { await app.close(); await worker.close() })
  const ids = await produce(t, app, Array.from({ length: 5 }, () => task({ application: 'shop' })), 'new')
  await until(t, 'all five ran and were reported', async () => (await taskRows(database)).length === 0 && worker.stats.reported === 5)
  t.same(ran.sort(), ids.slice().sort())
  t.equal(worker.stats.unauthorized, 0)
})

eachBackend(t, 'the signature covers method, path, timestamp and body', async (t, backend) => {
  const worker = await fakeWorker(t)
  const { app } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}?via=broker`, TASKBROKER_AUTH_SECRETS: 's3cret' })
  await produce(t, app, [task({ application: 'shop' })], 's3cret')
  await until(t, 'the push arrives', () => worker.received.length === 1)
  const push = worker.received[0]
  const header = (name: string) => push?.headers[name] as string | undefined
  // The body is re-serialised from what the worker parsed: the broker sends compact JSON, so it is the same text.
  const body = JSON.stringify({ task: push?.task, callback_url: push?.callback_url, lease: push?.lease, priority: push?.priority })
  const check = (secrets: string[], path: string) => verifySignature(secrets, {
    method: 'POST', path, body, signature: header('taskbroker-signature'), timestamp: header('taskbroker-timestamp'), maxSkewSec: 300
  })
  t.ok(check(['s3cret'], '/push?via=broker'), 'verifies with the secret over the worker URL\'s path and query')
  t.notOk(check(['other'], '/push?via=broker'), 'not with another secret')
  t.notOk(check(['s3cret'], '/push'), 'not for another path')
})

eachBackend(t, 'a worker with another secret refuses the pushes (401): nothing is delivered, nothing lost', async (t, backend) => {
  const worker = await startPushWorker({ secrets: ['not-the-broker-secret'], handler: () => 'complete' })
  const { app, database } = await startPushApp(t, backend, { TASKBROKER_WORKER_MAP: `shop=${worker.url}`, TASKBROKER_AUTH_SECRETS: 's3cret' })
  t.teardown(async () => { await app.close(); await worker.close() })
  await produce(t, app, Array.from({ length: 3 }, () => task({ application: 'shop' })), 's3cret')
  await until(t, 'pushes are refused', async () => await metric(app, 'taskbroker_push_total{result="rejected"}') >= 2)
  t.ok(worker.stats.unauthorized >= 2, 'the worker saw bad signatures')
  t.equal(worker.stats.received, 0, 'and ran nothing')
  await until(t, 'the tasks are pending', async () => (await statusCounts(database)).pending === 3)
})
