/**
 * POST /v1/tasks/claim: FIFO order, filters, what is not claimable, long-polling and its wake-up,
 * and the requests that are refused.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { buildTestApp, NO_UPKEEP, task } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'
import { keepAlive } from '../helpers/keep-alive.js'
import { assertError, metric, produceIds, untilWaiting, type Test } from '../helpers/requests.js'

keepAlive(t)

interface ClaimedTask {
  id: string
  application: string
  namespace: string
  taskname: string
  processing_deadline: string
  processing_attempts: number
  [field: string]: unknown
}

function claimRequest (app: FastifyInstance, body: Record<string, unknown>): Promise<LightMyRequestResponse> {
  // Promise.resolve starts the injection now (a bare inject() chain waits until it is awaited).
  return Promise.resolve(app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: body }))
}

async function claim (t: Test, app: FastifyInstance, body: Record<string, unknown> = {}): Promise<ClaimedTask[]> {
  const res = await claimRequest(app, body)
  t.equal(res.statusCode, 200, `claim ${JSON.stringify(body)} answers 200`)
  return res.json().tasks
}

async function stateOf (app: FastifyInstance, id: string): Promise<{ status: string, [field: string]: unknown }> {
  const res = await app.inject({ method: 'GET', url: `/v1/tasks/${id}` })
  return res.json()
}

eachBackend(t, 'claiming tasks', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)

  await t.test('without a filter a claim takes the oldest tasks of any application, oldest first', async (t) => {
    // Separate requests: arrival order is the FIFO order.
    await produceIds(t, app, [task({ id: 'any-1', application: 'x' })])
    await produceIds(t, app, [task({ id: 'any-2', application: 'y', namespace: 'other' })])
    await produceIds(t, app, [task({ id: 'any-3' })])
    const claimed = await claim(t, app, { limit: 10 })
    t.same(claimed.map(c => c.id), ['any-1', 'any-2', 'any-3'])
  })

  await t.test('one claim after another hands out the oldest task each time', async (t) => {
    for (const id of ['fifo-1', 'fifo-2', 'fifo-3', 'fifo-4']) await produceIds(t, app, [task({ id, application: 'fifo' })])
    const order: string[] = []
    for (let i = 0; i < 4; i++) {
      const [claimed] = await claim(t, app, { application: 'fifo' })
      order.push(claimed?.id ?? 'none')
    }
    t.same(order, ['fifo-1', 'fifo-2', 'fifo-3', 'fifo-4'])
  })

  await t.test('a claimed task has status processing, a deadline of now + duration + grace and processing_attempts 0', async (t) => {
    await produceIds(t, app, [task({ id: 'fields', application: 'fields', parameters: { a: [1, 2] }, processing_deadline_duration: 120 })])
    const before = Date.now()
    const [claimed] = await claim(t, app, { application: 'fields' })
    const after = Date.now()
    if (claimed === undefined) throw new Error('nothing claimed')
    t.equal(claimed.id, 'fields')
    t.equal(claimed.taskname, 'tests.noop')
    t.same(claimed.parameters, { a: [1, 2] })
    t.equal(claimed.processing_deadline_duration, 120)
    t.equal(claimed.processing_attempts, 0)
    const deadline = Date.parse(claimed.processing_deadline)
    const expected = (120 + 3) * 1000 // duration + the default 3 s grace
    const slack = 2000
    t.ok(deadline >= before + expected - slack && deadline <= after + expected + slack,
      `deadline ${claimed.processing_deadline} is about 123 s after the claim (claimed between ${new Date(before).toISOString()} and ${new Date(after).toISOString()})`)
    const state = await stateOf(app, 'fields')
    t.equal(state.status, 'processing')
    t.equal(state.processing_deadline, claimed.processing_deadline, 'GET shows the same deadline')
    t.equal(state.processing_attempts, 0)
  })

  await t.test('a claim returns at most limit tasks', async (t) => {
    await produceIds(t, app, Array.from({ length: 5 }, (_, i) => task({ id: `limit-${i}`, application: 'limit' })))
    t.same((await claim(t, app, { application: 'limit', limit: 3 })).map(c => c.id), ['limit-0', 'limit-1', 'limit-2'])
    t.same((await claim(t, app, { application: 'limit', limit: 10 })).map(c => c.id), ['limit-3', 'limit-4'])
    t.same(await claim(t, app, { application: 'limit', limit: 10 }), [])
  })

  await t.test('a claim without limit takes one task', async (t) => {
    await produceIds(t, app, [task({ id: 'one-1', application: 'one' }), task({ id: 'one-2', application: 'one' })])
    t.same((await claim(t, app, { application: 'one' })).map(c => c.id), ['one-1'])
    t.same((await claim(t, app, { application: 'one' })).map(c => c.id), ['one-2'])
  })

  await t.test('an application filter returns only tasks of that application', async (t) => {
    await produceIds(t, app, [
      task({ id: 'f-b1', application: 'filter-b', namespace: 'n1' }),
      task({ id: 'f-a1', application: 'filter-a', namespace: 'n1' }),
      task({ id: 'f-b2', application: 'filter-b', namespace: 'n2' }),
      task({ id: 'f-a2', application: 'filter-a', namespace: 'n2' })
    ])
    const claimed = await claim(t, app, { application: 'filter-a', limit: 10 })
    t.same(claimed.map(c => c.id), ['f-a1', 'f-a2'])
    t.ok(claimed.every(c => c.application === 'filter-a'))
    t.equal((await stateOf(app, 'f-b1')).status, 'pending', 'the other application\'s tasks stay pending')
    t.equal((await stateOf(app, 'f-b2')).status, 'pending')
  })

  await t.test('an application and namespace filter returns only tasks of that queue', async (t) => {
    await produceIds(t, app, [
      task({ id: 'q-1', application: 'queue-a', namespace: 'wanted' }),
      task({ id: 'q-2', application: 'queue-a', namespace: 'other' }),
      task({ id: 'q-3', application: 'queue-b', namespace: 'wanted' }),
      task({ id: 'q-4', application: 'queue-a', namespace: 'wanted' })
    ])
    const claimed = await claim(t, app, { application: 'queue-a', namespace: 'wanted', limit: 10 })
    t.same(claimed.map(c => c.id), ['q-1', 'q-4'])
    t.same(await claim(t, app, { application: 'queue-b', namespace: 'other', limit: 10 }), [], 'no task in that queue')
    t.equal((await stateOf(app, 'q-2')).status, 'pending')
    t.equal((await stateOf(app, 'q-3')).status, 'pending')
  })

  await t.test('a namespace filter without an application is answered 400 naming namespace and claims nothing', async (t) => {
    await produceIds(t, app, [task({ id: 'ns-only', application: 'ns-only', namespace: 'lonely' })])
    const res = await claimRequest(app, { namespace: 'lonely' })
    assertError(t, res, 400, 'TASKBROKER_INVALID_REQUEST', 'namespace')
    t.equal((await stateOf(app, 'ns-only')).status, 'pending')
  })

  await t.test('a claimed task is not claimed again', async (t) => {
    await produceIds(t, app, [task({ id: 'once', application: 'once' })])
    t.same((await claim(t, app, { application: 'once', limit: 10 })).map(c => c.id), ['once'])
    t.same(await claim(t, app, { application: 'once', limit: 10 }), [])
    t.equal((await stateOf(app, 'once')).status, 'processing')
  })

  await t.test('an expired task is not claimable while an unexpired one of the same queue is', async (t) => {
    const oneMinuteAgo = new Date(Date.now() - 60_000).toISOString()
    await produceIds(t, app, [
      task({ id: 'expired', application: 'expiry', received_at: oneMinuteAgo, expires: 1 }),
      task({ id: 'fresh', application: 'expiry', received_at: oneMinuteAgo, expires: 3600 })
    ])
    t.same((await claim(t, app, { application: 'expiry', limit: 10 })).map(c => c.id), ['fresh'])
    t.not((await stateOf(app, 'expired')).status, 'processing', 'the expired task was not handed out')
  })

  await t.test('a delayed task is not claimable', async (t) => {
    await produceIds(t, app, [task({ id: 'later', application: 'delayed', delay: 60 })])
    t.same(await claim(t, app, { application: 'delayed', limit: 10 }), [])
    t.equal((await stateOf(app, 'later')).status, 'delay')
  })

  await t.test('limit 0 or 101 and wait_ms over 30000 are answered 400 naming the field', async (t) => {
    assertError(t, await claimRequest(app, { limit: 0 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/limit')
    assertError(t, await claimRequest(app, { limit: 101 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/limit')
    assertError(t, await claimRequest(app, { wait_ms: 30_001 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/wait_ms')
    assertError(t, await claimRequest(app, { wait_ms: -1 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/wait_ms')
    assertError(t, await claimRequest(app, { application: 'x', max: 3 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/max is not a known field')
  })

  await t.test('limit 100 is accepted', async (t) => {
    t.same(await claim(t, app, { application: 'nobody', limit: 100 }), [])
  })
})

eachBackend(t, 'long-polling claims', async (t, backend) => {
  // Waiting claims re-check together once a minute here: a long-poll answered sooner was woken.
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_CLAIM_RECHECK_MS: '60000' })

  await t.test('a claim with wait_ms and nothing to claim answers [] after about wait_ms', async (t) => {
    const started = Date.now()
    const tasks = await claim(t, app, { application: 'idle', wait_ms: 300 })
    const elapsed = Date.now() - started
    t.same(tasks, [])
    t.ok(elapsed >= 250, `waited ${elapsed} ms (>= 250)`)
    t.ok(elapsed < 10_000, `but not much longer (${elapsed} ms)`)
  })

  await t.test('a claim with wait_ms 0 answers at once', async (t) => {
    const started = Date.now()
    t.same(await claim(t, app, { application: 'idle', wait_ms: 0 }), [])
    t.ok(Date.now() - started < 10_000, 'not after the 30 s the cap allows')
  })

  await t.test('a waiting long-poll wakes and returns a matching task as soon as it is produced', async (t) => {
    const started = Date.now()
    const pending = claimRequest(app, { application: 'wake', wait_ms: 30_000 })
    await untilWaiting(t, app, 1)
    const [id] = await produceIds(t, app, [task({ id: 'wake-me', application: 'wake' })])
    const res = await pending
    const elapsed = Date.now() - started
    t.equal(res.statusCode, 200)
    t.same(res.json().tasks.map((c: ClaimedTask) => c.id), [id], 'the long-poll returned the produced task')
    t.ok(elapsed < 20_000, `it returned well before wait_ms and the 60 s re-check: woken (${elapsed} ms of 30000)`)
    t.equal((await stateOf(app, 'wake-me')).status, 'processing')
  })

  await t.test('a long-poll filtered on application A is not woken by a task of application B', async (t) => {
    const started = Date.now()
    // Under the re-check interval, so the periodic re-check never runs: every claim statement after
    // the first would come from a wake-up.
    const waitingForA = claimRequest(app, { application: 'app-a', wait_ms: 900 })
    await untilWaiting(t, app, 1)
    const claimsBefore = await metric(app, 'taskbroker_claim_statement_duration_seconds_count')
    await produceIds(t, app, [task({ id: 'for-b', application: 'app-b' })])
    t.equal(await metric(app, 'taskbroker_claim_waiters'), 1, 'A is still waiting')
    t.equal(await metric(app, 'taskbroker_claim_statement_duration_seconds_count'), claimsBefore, 'A did not wake up to claim again')
    const res = await waitingForA
    const elapsed = Date.now() - started
    t.equal(res.statusCode, 200)
    t.same(res.json().tasks, [], 'A got nothing')
    t.ok(elapsed >= 800, `A kept waiting for its own wait_ms (${elapsed} ms)`)
    t.equal((await stateOf(app, 'for-b')).status, 'pending', 'the B task is still pending')
    t.same((await claim(t, app, { application: 'app-b' })).map(c => c.id), ['for-b'])
  })

  await t.test('with long-polls on A and on B waiting, a task of B goes to the B long-poll and A keeps waiting', async (t) => {
    const waitingForA = claimRequest(app, { application: 'pair-a', wait_ms: 1500 })
    await untilWaiting(t, app, 1)
    const waitingForB = claimRequest(app, { application: 'pair-b', wait_ms: 10_000 })
    await untilWaiting(t, app, 2)
    await produceIds(t, app, [task({ id: 'pair-b-task', application: 'pair-b' })])
    const b = await waitingForB
    t.same(b.json().tasks.map((c: ClaimedTask) => c.id), ['pair-b-task'])
    const a = await waitingForA
    t.same(a.json().tasks, [])
  })

  await t.test('a long-poll wakes for a task of the namespace it filters on and not for another namespace', async (t) => {
    const pending = claimRequest(app, { application: 'nsq', namespace: 'mine', wait_ms: 10_000 })
    await untilWaiting(t, app, 1)
    await produceIds(t, app, [task({ id: 'nsq-other', application: 'nsq', namespace: 'theirs' })])
    await produceIds(t, app, [task({ id: 'nsq-mine', application: 'nsq', namespace: 'mine' })])
    const res = await pending
    t.same(res.json().tasks.map((c: ClaimedTask) => c.id), ['nsq-mine'])
    t.equal((await stateOf(app, 'nsq-other')).status, 'pending')
  })

  await t.test('a delayed task produced during a long-poll does not end it', async (t) => {
    const started = Date.now()
    const pending = claimRequest(app, { application: 'wait-delay', wait_ms: 500 })
    await untilWaiting(t, app, 1)
    await produceIds(t, app, [task({ id: 'wait-delay-task', application: 'wait-delay', delay: 60 })])
    const res = await pending
    t.same(res.json().tasks, [])
    t.ok(Date.now() - started >= 400, 'it waited for its wait_ms')
    t.equal((await stateOf(app, 'wait-delay-task')).status, 'delay')
  })

  await t.test('a long-poll wakes for a task produced with a delay that has already passed', async (t) => {
    const started = Date.now()
    const pending = claimRequest(app, { application: 'past-delay', wait_ms: 30_000 })
    await untilWaiting(t, app, 1)
    const twoMinutesAgo = new Date(Date.now() - 120_000).toISOString()
    await produceIds(t, app, [task({ id: 'past-delay-task', application: 'past-delay', received_at: twoMinutesAgo, delay: 60 })])
    const res = await pending
    t.same(res.json().tasks.map((c: ClaimedTask) => c.id), ['past-delay-task'])
    t.ok(Date.now() - started < 20_000, 'well before its 30 s wait_ms and the 60 s re-check: woken')
  })

  await t.test('a waiting long-poll is answered [] when the broker shuts down', async (t) => {
    const pending = claimRequest(app, { application: 'shutdown', wait_ms: 30_000 })
    await untilWaiting(t, app, 1)
    const started = Date.now()
    await app.close()
    const res = await pending
    t.equal(res.statusCode, 200)
    t.same(res.json().tasks, [])
    t.ok(Date.now() - started < 10_000, 'it did not wait for its wait_ms')
  })
})

eachBackend(t, 'claim limits from the configuration', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_CLAIM_MAX_WAIT_MS: '100' })

  await t.test('wait_ms above TASKBROKER_CLAIM_MAX_WAIT_MS is refused, naming the bound', async (t) => {
    assertError(t, await claimRequest(app, { application: 'capped', wait_ms: 20_000 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/wait_ms must be <= 100')
  })

  await t.test('wait_ms at the bound waits at most that long', async (t) => {
    const started = Date.now()
    t.same(await claim(t, app, { application: 'capped', wait_ms: 100 }), [])
    const elapsed = Date.now() - started
    t.ok(elapsed < 10_000, `returned after ${elapsed} ms`)
  })
})

eachBackend(t, 'a TASKBROKER_CLAIM_MAX_WAIT_MS above 30 s allows long-polls that long', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_CLAIM_MAX_WAIT_MS: '120000', TASKBROKER_CLAIM_RECHECK_MS: '60000' })
  const waiting = claimRequest(app, { application: 'long', wait_ms: 60_000 })
  await untilWaiting(t, app, 1)
  await produceIds(t, app, [task({ id: 'long-polled', application: 'long' })])
  const res = await waiting
  t.equal(res.statusCode, 200, 'a wait of 60 s is accepted')
  t.same(res.json().tasks.map((c: { id: string }) => c.id), ['long-polled'])
  assertError(t, await claimRequest(app, { wait_ms: 120_001 }), 400, 'TASKBROKER_INVALID_REQUEST', 'body/wait_ms must be <= 120000')
})

eachBackend(t, 'claims in push mode', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, { ...NO_UPKEEP, TASKBROKER_DELIVERY_MODE: 'push', TASKBROKER_WORKER_MAP: 'shop=http://127.0.0.1:9/push' })

  await t.test('a claim is answered 409 TASKBROKER_WRONG_DELIVERY_MODE and hands out nothing', async (t) => {
    await produceIds(t, app, [task({ id: 'pushed' })])
    assertError(t, await claimRequest(app, {}), 409, 'TASKBROKER_WRONG_DELIVERY_MODE')
    assertError(t, await claimRequest(app, { limit: 5, wait_ms: 1000 }), 409, 'TASKBROKER_WRONG_DELIVERY_MODE')
    t.equal((await stateOf(app, 'pushed')).status, 'pending')
  })
})
