/**
 * PushStore contracts: fetch loops claim pending tasks of their buckets and applications under a
 * lease, and push outcomes settle them, fenced by the claim's token.
 */
import { sql } from 'drizzle-orm'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import type { Database } from '../../../src/db/database.js'
import { toActivation } from '../../../src/domain/activation.js'
import type { Activation } from '../../../src/domain/types.js'
import { createLeaseStore } from '../../../src/store/lease-store.js'
import { createPushStore, type PushStore } from '../../../src/store/push-store.js'
import { createTaskStore } from '../../../src/store/task-store.js'
import { createTestDatabase, type BackendName } from '../../helpers/database.js'
import { contracts, stubDatabase } from './contract.js'

const GRACE = 3
const contract = contracts<PushStore>(t, 'PushStore', createPushStore(stubDatabase, { processingDeadlineGraceSec: GRACE }))

/** A UUID whose last byte (its bucket) is `bucket`. */
const uuidIn = (bucket: number, n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(10, '0')}${bucket.toString(16).padStart(2, '0')}`

async function setup (t: Test, backend: BackendName) {
  const { database, url } = await createTestDatabase(t, backend)
  const tasks = createTaskStore(database, { processingDeadlineGraceSec: GRACE, maxDelaySec: 3600 })
  const push = createPushStore(database, { processingDeadlineGraceSec: GRACE })
  const produce = async (...overrides: Array<Partial<Parameters<typeof toActivation>[0]>>): Promise<Activation[]> => {
    const activations = overrides.map(o => toActivation({ namespace: 'ns', taskname: 'push.task', application: 'shop', ...o }, new Date()))
    await tasks.produce(activations, new Date())
    return activations
  }
  return { database, url, tasks, push, produce }
}

async function row (database: Database, id: string) {
  const [found] = await database.rows(sql`select status, processing_attempts, processing_deadline, claim_expires_at::text as lease from inflight_tasks where id = ${id}`)
  return found
}

const dbNow = async (database: Database) => new Date((await database.rows(sql`select now() as now`))[0]!.now as string).getTime()

contract('claim', 'claims pending tasks of its buckets and applications, oldest first, under a lease', async (t, backend) => {
  const { database, push, produce } = await setup(t, backend)
  await produce(
    { id: uuidIn(0x10, 1) },
    { id: uuidIn(0x90, 2) },
    { id: uuidIn(0x11, 3), application: 'other' },
    { id: uuidIn(0x12, 4) },
    { id: uuidIn(0x13, 5), delay: 600 },
    { id: uuidIn(0x14, 6) })
  const before = await dbNow(database)
  const claimed = await push.claim({ buckets: [0, 127], applications: ['shop'], limit: 2, leaseMs: 30_000 })
  const after = await dbNow(database)
  t.same(claimed.map(c => c.activation.id), [uuidIn(0x10, 1), uuidIn(0x12, 4)], 'in range, mapped, pending, up to the limit, oldest first')
  for (const c of claimed) {
    const stored = await row(database, c.activation.id)
    t.equal(stored?.status, 'claimed')
    t.equal(stored?.processing_deadline, null)
    t.equal(c.token, stored?.lease, 'the token is claim_expires_at as text')
    const expires = new Date(c.token).getTime()
    t.ok(expires >= before + 30_000 && expires <= after + 30_000, 'claim_expires_at = statement time + lease')
    t.equal(c.processingAttempts, 0)
  }
  t.same((await push.claim({ buckets: [0, 127], applications: ['shop'], limit: 10, leaseMs: 30_000 })).map(c => c.activation.id), [uuidIn(0x14, 6)], 'claimed tasks are not claimed again')
  t.same(await push.claim({ buckets: [0, 255], applications: [], limit: 10, leaseMs: 30_000 }), [], 'no applications, no claim')
  t.same(await push.claim({ buckets: [0, 255], applications: ['shop'], limit: 0, leaseMs: 30_000 }), [], 'a limit of 0 claims nothing')
  t.same((await push.claim({ buckets: [128, 255], applications: ['shop', 'other'], limit: 10, leaseMs: 30_000 })).map(c => c.activation.id), [uuidIn(0x90, 2)], 'the other range')
})

contract('claim', 'a push claim skips a task another session holds', { only: 'postgres' }, async (t, backend) => {
  const { push, produce, url } = await setup(t, backend)
  await produce({ id: uuidIn(1, 1) }, { id: uuidIn(2, 2) })
  const other = postgres(url as string, { max: 1, onnotice: () => {} })
  t.teardown(() => other.end({ timeout: 5 }))
  const session = await other.reserve()
  await session`begin`
  await session`select id from inflight_tasks where id = ${uuidIn(1, 1)} for update`
  t.same((await push.claim({ buckets: [0, 255], applications: ['shop'], limit: 5, leaseMs: 30_000 })).map(c => c.activation.id), [uuidIn(2, 2)])
  await session`commit`
  session.release()
  t.same((await push.claim({ buckets: [0, 255], applications: ['shop'], limit: 5, leaseMs: 30_000 })).map(c => c.activation.id), [uuidIn(1, 1)])
})

contract('claim', 'a push claim moves an undecodable task to the dead letters and hands out the others', async (t, backend) => {
  const { database, push, produce } = await setup(t, backend)
  await produce({ id: uuidIn(1, 1) }, { id: uuidIn(2, 2) })
  await database.rows(sql`update inflight_tasks set activation = '[1, 2]'::jsonb where id = ${uuidIn(1, 1)}`)
  t.same((await push.claim({ buckets: [0, 255], applications: ['shop'], limit: 5, leaseMs: 30_000 })).map(c => c.activation.id), [uuidIn(2, 2)])
  const dead = await database.rows(sql`select id, reason from deadletter_tasks`)
  t.same(dead, [{ id: uuidIn(1, 1), reason: 'undecodable_activation: the activation is an array, not an object' }])
  t.equal(await row(database, uuidIn(1, 1)), undefined)
})

contract('settle', 'a delivered push becomes processing with a deadline; an undelivered one pending, no attempt counted', async (t, backend) => {
  const { database, push, produce } = await setup(t, backend)
  await produce({ id: uuidIn(1, 1), processing_deadline_duration: 30 }, { id: uuidIn(2, 2) })
  const claimed = await push.claim({ buckets: [0, 255], applications: ['shop'], limit: 5, leaseMs: 30_000 })
  const [delivered, failed] = claimed
  const before = await dbNow(database)
  const settled = await push.settle([
    { id: delivered!.activation.id, token: delivered!.token, delivered: true },
    { id: failed!.activation.id, token: failed!.token, delivered: false }
  ])
  const after = await dbNow(database)
  t.same([...settled].sort(), [uuidIn(1, 1), uuidIn(2, 2)])
  const processing = await row(database, uuidIn(1, 1))
  t.match(processing, { status: 'processing', lease: null, processing_attempts: 0 })
  const deadline = new Date(processing?.processing_deadline as string).getTime() - (30 + GRACE) * 1000
  t.ok(deadline >= before && deadline <= after, 'deadline = statement time + duration + grace, as a pull claim sets it')
  t.match(await row(database, uuidIn(2, 2)), { status: 'pending', lease: null, processing_deadline: null, processing_attempts: 0 })
  t.same(await push.settle([]), new Set(), 'nothing to settle')
})

contract('settle', 'settling is fenced: only a task still claimed under the same token changes', async (t, backend) => {
  const { database, push, tasks, produce } = await setup(t, backend)
  await produce({ id: uuidIn(1, 1) }, { id: uuidIn(2, 2) }, { id: uuidIn(3, 3) })
  const [first, second, third] = await push.claim({ buckets: [0, 255], applications: ['shop'], limit: 5, leaseMs: 30_000 })
  // first: its lease lapsed and it was claimed again (a new token); second: its worker reported it.
  await database.rows(sql`update inflight_tasks set status = 'pending', claim_expires_at = null where id = ${first!.activation.id}`)
  const [again] = await push.claim({ buckets: [0, 255], applications: ['shop'], limit: 1, leaseMs: 60_000 })
  t.equal(again?.activation.id, first!.activation.id)
  t.not(again?.token, first!.token, 'a new claim, a new token')
  await tasks.setStatusMany([{ id: second!.activation.id, status: 'complete' }])

  const settled = await push.settle([
    { id: first!.activation.id, token: first!.token, delivered: true },
    { id: second!.activation.id, token: second!.token, delivered: true },
    { id: third!.activation.id, token: third!.token, delivered: true },
    { id: 'unknown', token: third!.token, delivered: false }
  ])
  t.same([...settled], [third!.activation.id], 'only the push whose claim still stands')
  t.match(await row(database, first!.activation.id), { status: 'claimed', lease: again!.token }, 'the new claim is untouched')
  t.equal(await row(database, second!.activation.id), undefined, 'the reported task stays reported')
  t.same([...await push.settle([{ id: again!.activation.id, token: again!.token, delivered: false }])], [again!.activation.id], 'the current token settles')
})

contract.everyMethodCovered()

contract('settle', 'a heartbeat with the pushed lease before the delivery is recorded marks the task processing; the delivery then leaves it', async (t, backend) => {
  const { database, push, produce } = await setup(t, backend)
  const leases = createLeaseStore(database, { processingDeadlineGraceSec: GRACE })
  await produce({ id: uuidIn(1, 1), processing_deadline_duration: 30 }, { id: uuidIn(2, 2) })
  const [pushed, other] = await push.claim({ buckets: [0, 255], applications: ['shop'], limit: 5, leaseMs: 30_000 })
  // The worker has the task and heartbeats at once, while the push's answer is still on its way.
  const beats = await leases.heartbeat([{ id: pushed!.activation.id, lease: pushed!.lease }, { id: other!.activation.id, lease: '00000000-0000-4000-8000-000000000000' }], 3600)
  t.match(beats.get(pushed!.activation.id), { outcome: 'extended' }, 'the holder\'s heartbeat is taken')
  t.match(beats.get(other!.activation.id), { outcome: 'stale' }, 'another lease is stale, as on a processing task')
  t.match(await row(database, pushed!.activation.id), { status: 'processing', lease: null })
  const settled = await push.settle([{ id: pushed!.activation.id, token: pushed!.token, delivered: false }])
  t.same([...settled], [], 'a delivery recorded late (even as failed) leaves the held task alone')
  t.match(await row(database, pushed!.activation.id), { status: 'processing' })
})
