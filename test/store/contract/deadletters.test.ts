/**
 * DeadletterStore contracts: listing order, filters and keyset pages (microsecond timestamps
 * included), requeue into inflight_tasks, and purging.
 */
import { sql } from 'drizzle-orm'
import postgres from 'postgres'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { Database } from '../../../src/db/database.js'
import { InvalidRequestError } from '../../../src/domain/errors.js'
import { createDeadletterStore, decodeCursor, encodeCursor, type DeadletterStore } from '../../../src/store/deadletter-store.js'
import { createTaskStore } from '../../../src/store/task-store.js'
import type { Activation } from '../../../src/domain/types.js'
import { toActivation } from '../../../src/domain/activation.js'
import { backends, createTestDatabase, type BackendName } from '../../helpers/database.js'
import { contracts, stubDatabase } from './contract.js'

type Test = Parameters<typeof createTestDatabase>[0]

const contract = contracts<DeadletterStore>(t, 'DeadletterStore', createDeadletterStore(stubDatabase))

function activation (overrides: Partial<Parameters<typeof toActivation>[0]> = {}): Activation {
  return toActivation({
    namespace: 'ns',
    taskname: 'tests.noop',
    retry_state: { attempts: 3, max_attempts: 3, on_attempts_exceeded: 'deadletter' },
    ...overrides
  }, new Date('2024-05-01T10:00:00.000Z'))
}

interface LetterOptions {
  reason?: string
  processingAttempts?: number
  /** deadlettered_at as PostgreSQL timestamptz text (microseconds allowed). */
  at?: string
}

async function insertDeadletter (database: Database, a: Activation, options: LetterOptions = {}): Promise<void> {
  await database.rows(sql`
    insert into deadletter_tasks (id, activation, application, namespace, taskname, reason, processing_attempts, received_at, deadlettered_at)
    values (${a.id}, ${JSON.stringify(a)}::jsonb, ${a.application}, ${a.namespace}, ${a.taskname},
      ${options.reason ?? 'reported_failure'}, ${options.processingAttempts ?? 0}::int, ${a.received_at}::timestamptz,
      coalesce(${options.at ?? null}::timestamptz, clock_timestamp()))`)
}

async function storesFor (t: Test, backend: BackendName) {
  const { database, url } = await createTestDatabase(t, backend)
  const deadletters = createDeadletterStore(database)
  const tasks = createTaskStore(database, { processingDeadlineGraceSec: 0, maxDelaySec: 3600 })
  return { database, deadletters, tasks, url }
}

/** Every page of a listing, following next_cursor to the end. */
async function allPages (store: DeadletterStore, options: Omit<Parameters<DeadletterStore['list']>[0], 'after'>) {
  const pages: string[][] = []
  let after: string | undefined
  for (let i = 0; i < 100; i++) {
    const page = await store.list({ ...options, after })
    pages.push(page.items.map(item => item.activation.id))
    if (page.nextCursor === null) return pages
    after = page.nextCursor
  }
  throw new Error('the listing never ended')
}

contract('list', 'list returns dead letters oldest first with their fields', async (t, backend) => {
  const { database, deadletters } = await storesFor(t, backend)
  const first = activation({ id: 'first', application: 'app', parameters: { n: 1 } })
  await insertDeadletter(database, activation({ id: 'third' }), { at: '2024-05-01T12:00:03Z' })
  await insertDeadletter(database, first, { at: '2024-05-01T12:00:01.5Z', reason: 'retries_exhausted', processingAttempts: 2 })
  await insertDeadletter(database, activation({ id: 'second' }), { at: '2024-05-01T12:00:02Z' })

  const page = await deadletters.list({ limit: 10 })
  t.same(page.items.map(i => i.activation.id), ['first', 'second', 'third'], 'ordered by deadlettered_at, not by insert order or id')
  t.equal(page.nextCursor, null, 'one page holds them all')
  const [item] = page.items
  t.same(item?.activation, first, 'the activation as stored')
  t.equal(item?.reason, 'retries_exhausted')
  t.equal(item?.processingAttempts, 2)
  t.ok(item?.receivedAt instanceof Date)
  t.equal(item?.receivedAt.toISOString(), '2024-05-01T10:00:00.000Z')
  t.equal(item?.deadletteredAt.toISOString(), '2024-05-01T12:00:01.500Z')
  t.equal(await deadletters.count(), 3)
})

contract('list', 'list filters by application, namespace and taskname, exactly', async (t, backend) => {
  const { database, deadletters } = await storesFor(t, backend)
  await insertDeadletter(database, activation({ id: 'a-x-1', application: 'a', namespace: 'x', taskname: 'one' }))
  await insertDeadletter(database, activation({ id: 'a-x-2', application: 'a', namespace: 'x', taskname: 'two' }))
  await insertDeadletter(database, activation({ id: 'a-y-1', application: 'a', namespace: 'y', taskname: 'one' }))
  await insertDeadletter(database, activation({ id: 'b-x-1', application: 'b', namespace: 'x', taskname: 'one' }))
  await insertDeadletter(database, activation({ id: 'ab-x-1', application: 'ab', namespace: 'xx', taskname: 'one1' }))
  await insertDeadletter(database, activation({ id: 'none-x-1', namespace: 'x', taskname: 'one' }))

  const ids = async (filter: Record<string, string>) =>
    (await deadletters.list({ ...filter, limit: 100 })).items.map(i => i.activation.id).sort()
  t.same(await ids({ application: 'a' }), ['a-x-1', 'a-x-2', 'a-y-1'])
  t.same(await ids({ namespace: 'x' }), ['a-x-1', 'a-x-2', 'b-x-1', 'none-x-1'])
  t.same(await ids({ taskname: 'one' }), ['a-x-1', 'a-y-1', 'b-x-1', 'none-x-1'])
  t.same(await ids({ application: 'a', namespace: 'x' }), ['a-x-1', 'a-x-2'])
  t.same(await ids({ application: 'a', namespace: 'x', taskname: 'two' }), ['a-x-2'])
  t.same(await ids({ application: '' }), ['none-x-1'], 'the empty application is a value like any other')
  t.same(await ids({ application: 'z' }), [])
  t.equal((await ids({})).length, 6, 'no filter lists all')
})

contract('list', 'pages follow each other without gaps or repeats, down to the microsecond', async (t, backend) => {
  const { database, deadletters } = await storesFor(t, backend)
  // Three letters inside one millisecond, two sharing one timestamp exactly (the id breaks the tie),
  // and a filtered-out letter in between: a millisecond cursor would repeat or skip rows here.
  const letters: Array<[string, string]> = [
    ['m3', '2024-05-01T12:00:00.000003Z'],
    ['m1', '2024-05-01T12:00:00.000001Z'],
    ['tie-b', '2024-05-01T12:00:00.000500Z'],
    ['tie-a', '2024-05-01T12:00:00.000500Z'],
    ['m2', '2024-05-01T12:00:00.000002Z'],
    ['later', '2024-05-01T12:00:00.000999Z'],
    ['last', '2024-05-01T12:00:01Z']
  ]
  for (const [id, at] of letters) await insertDeadletter(database, activation({ id, application: 'paged' }), { at })
  await insertDeadletter(database, activation({ id: 'other-app', application: 'other' }), { at: '2024-05-01T12:00:00.000004Z' })

  const pages = await allPages(deadletters, { application: 'paged', limit: 3 })
  t.same(pages, [['m1', 'm2', 'm3'], ['tie-a', 'tie-b', 'later'], ['last']], 'three pages in (deadlettered_at, id) order')
  const seen = pages.flat()
  t.equal(new Set(seen).size, seen.length, 'no dead letter appears twice')

  const exact = await deadletters.list({ application: 'paged', limit: 7 })
  t.equal(exact.nextCursor, null, 'a page that ends exactly at the last letter has no next cursor')
  t.same((await allPages(deadletters, { limit: 1 })).flat(), ['m1', 'm2', 'm3', 'other-app', 'tie-a', 'tie-b', 'later', 'last'])
})

contract('list', 'a page after the last one is empty, and a malformed cursor is refused', async (t, backend) => {
  const { database, deadletters } = await storesFor(t, backend)
  await insertDeadletter(database, activation({ id: 'only' }), { at: '2024-05-01T12:00:00Z' })
  await insertDeadletter(database, activation({ id: 'two' }), { at: '2024-05-01T12:00:01Z' })
  const first = await deadletters.list({ limit: 1 })
  t.type(first.nextCursor, 'string')
  const second = await deadletters.list({ limit: 1, after: first.nextCursor ?? undefined })
  t.same(second.items.map(i => i.activation.id), ['two'])
  const beyond = encodeCursor({ deadletteredAt: '2024-05-01T12:00:01.000000Z', id: 'two' })
  t.same(await deadletters.list({ limit: 5, after: beyond }), { items: [], nextCursor: null })
  await t.rejects(deadletters.list({ limit: 5, after: 'not-a-cursor' }), InvalidRequestError)
})

t.test('decodeCursor accepts only the cursors encodeCursor makes', async (t) => {
  const cursor = { deadletteredAt: '2024-05-01T12:00:00.123456Z', id: 'x' }
  t.same(decodeCursor(encodeCursor(cursor)), cursor)
  t.match(encodeCursor(cursor), /^[A-Za-z0-9_-]+$/, 'base64url')
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  t.equal(decodeCursor(''), null)
  t.equal(decodeCursor('abc'), null, 'not JSON')
  t.equal(decodeCursor('a+b/'), null, 'not base64url')
  t.equal(decodeCursor(encode({ deadletteredAt: cursor.deadletteredAt, id: 'x' })), null, 'not a pair')
  t.equal(decodeCursor(encode([cursor.deadletteredAt, 1])), null, 'id not a string')
  t.equal(decodeCursor(encode(['2024-05-01T12:00:00.123Z', 'x'])), null, 'not six fractional digits')
  t.equal(decodeCursor(encode(['2024-02-30T12:00:00.000000Z', 'x'])), null, 'no such day')
  t.equal(decodeCursor(encode(['2024-05-01T25:00:00.000000Z', 'x'])), null, 'no such hour')
  t.equal(decodeCursor(encode(['2024-05-01 12:00:00.000000+00', 'x'])), null, 'another format')
})

contract('requeue', 'requeue moves a dead letter back as a fresh, claimable pending task', async (t, backend) => {
  const { database, deadletters, tasks } = await storesFor(t, backend)
  const id = '8a0bd2e2-5d39-4bb6-9e3c-2f4c3a7d91ab'
  const dead = activation({
    id,
    application: 'app',
    namespace: 'billing',
    taskname: 'charge',
    expires: 60,
    delay: 300,
    processing_deadline_duration: 45,
    received_at: '2024-01-01T00:00:00.000Z',
    retry_state: { attempts: 3, max_attempts: 3, on_attempts_exceeded: 'deadletter', at_most_once: true, delay_on_retry: 5 }
  })
  await insertDeadletter(database, dead, { reason: 'retries_exhausted', processingAttempts: 2 })
  await insertDeadletter(database, activation({ id: 'stays' }))
  const now = new Date()

  t.same(await deadletters.requeue(id, now), { outcome: 'requeued', queue: { application: 'app', namespace: 'billing' } })
  t.same((await deadletters.list({ limit: 10 })).items.map(i => i.activation.id), ['stays'], 'gone from the dead letters')
  t.equal(await deadletters.count(), 1)

  const stored = await tasks.getById(id)
  t.equal(stored?.status, 'pending')
  t.equal(stored?.processingAttempts, 0)
  t.equal(stored?.delayUntil, null, 'no delay: claimable at once')
  t.equal(stored?.processingDeadline, null)
  t.equal(stored?.expiresAt?.getTime(), now.getTime() + 60_000, 'the expiry window restarts at the requeue')
  const { delay, ...rest } = dead
  t.equal(delay, 300)
  t.same(stored?.activation, {
    ...rest,
    received_at: now.toISOString(),
    retry_state: { ...dead.retry_state, attempts: 0 }
  }, 'attempts reset, received_at = now, delay dropped, everything else kept')

  const [row] = await database.rows(sql`
    select bucket, at_most_once, on_attempts_exceeded, failure_reason, processing_deadline_duration,
           application, namespace, taskname, received_at, added_at, claim_expires_at
    from inflight_tasks where id = ${id}`)
  t.equal(row?.bucket, 0xab)
  t.equal(row?.at_most_once, true)
  t.equal(row?.on_attempts_exceeded, 'deadletter')
  t.equal(row?.failure_reason, null)
  t.equal(row?.processing_deadline_duration, 45)
  t.same([row?.application, row?.namespace, row?.taskname], ['app', 'billing', 'charge'])
  t.equal(new Date(row?.received_at as string).getTime(), now.getTime())
  t.not(row?.added_at, null)
  t.equal(row?.claim_expires_at, null)

  const claimed = await tasks.claim({ application: 'app', namespace: 'billing' }, 10)
  t.same(claimed.map(c => c.activation.id), [id], 'a claim gets it')
  t.equal(claimed[0]?.activation.retry_state.attempts, 0)
})

contract('requeue', 'requeue without expires leaves the task without an expiry', async (t, backend) => {
  const { database, deadletters, tasks } = await storesFor(t, backend)
  await insertDeadletter(database, activation({ id: 'forever', application: 'app' }))
  t.equal((await deadletters.requeue('forever', new Date())).outcome, 'requeued')
  const stored = await tasks.getById('forever')
  t.equal(stored?.expiresAt, null)
  t.equal(stored?.activation.expires, undefined)
  t.same((await tasks.claim({}, 10)).map(c => c.activation.id), ['forever'])
})

contract('requeue', 'requeue of an id that is live changes nothing', async (t, backend) => {
  const { database, deadletters, tasks } = await storesFor(t, backend)
  const dead = activation({ id: 'twin', taskname: 'dead.one' })
  await insertDeadletter(database, dead, { reason: 'reported_failure', processingAttempts: 1, at: '2024-05-01T12:00:00.000001Z' })
  const live = toActivation({ id: 'twin', namespace: 'ns', taskname: 'live.one' }, new Date())
  await tasks.produce([live], new Date())
  const liveBefore = await tasks.getById('twin')
  const deadBefore = await deadletters.list({ limit: 10 })

  t.same(await deadletters.requeue('twin', new Date()), { outcome: 'live' })
  t.same(await tasks.getById('twin'), liveBefore, 'the live task is untouched')
  t.same(await deadletters.list({ limit: 10 }), deadBefore, 'the dead letter is still there, unchanged')
})

contract('requeue', 'requeue of an unknown id is not_found, live task or not', async (t, backend) => {
  const { database, deadletters, tasks } = await storesFor(t, backend)
  await insertDeadletter(database, activation({ id: 'known' }))
  await tasks.produce([toActivation({ id: 'only-live', namespace: 'ns', taskname: 'x' }, new Date())], new Date())
  t.same(await deadletters.requeue('unknown', new Date()), { outcome: 'not_found' })
  t.same(await deadletters.requeue('only-live', new Date()), { outcome: 'not_found' }, 'a live task is no dead letter')
  t.equal(await deadletters.count(), 1)
  t.equal((await tasks.getById('only-live'))?.status, 'pending')
  t.equal(await tasks.getById('unknown'), null)
})

contract('requeue', 'requeue twice: the second finds nothing', async (t, backend) => {
  const { database, deadletters } = await storesFor(t, backend)
  await insertDeadletter(database, activation({ id: 'once' }))
  t.equal((await deadletters.requeue('once', new Date())).outcome, 'requeued')
  t.same(await deadletters.requeue('once', new Date()), { outcome: 'not_found' })
})

contract('remove', 'remove purges one dead letter; count follows', async (t, backend) => {
  const { database, deadletters, tasks } = await storesFor(t, backend)
  t.equal(await deadletters.count(), 0)
  await insertDeadletter(database, activation({ id: 'gone' }))
  await insertDeadletter(database, activation({ id: 'kept' }))
  t.equal(await deadletters.count(), 2)
  t.equal(await deadletters.remove('gone'), true)
  t.equal(await deadletters.remove('gone'), false, 'only once')
  t.equal(await deadletters.remove('never'), false)
  t.same((await deadletters.list({ limit: 10 })).items.map(i => i.activation.id), ['kept'])
  t.equal(await deadletters.count(), 1)
  t.equal(await tasks.getById('gone'), null, 'a removed dead letter is not requeued either')
})

// PostgreSQL only: PGlite has one connection, so no other session can hold a transaction open.
t.test('requeue racing a produce of the same id keeps the dead letter [postgres]', { skip: !backends().includes('postgres') && 'needs TASKBROKER_TEST_DATABASE_URL' }, async (t) => {
  const { database, deadletters, url } = await storesFor(t, 'postgres')
  await insertDeadletter(database, activation({ id: 'raced', taskname: 'dead.one' }))
  // Another session inserts the id and holds its transaction open: the requeue's insert waits on
  // it, then hits the unique key when it commits. The statement rolls back as a whole.
  const other = postgres(url as string, { max: 1, onnotice: () => {} })
  t.teardown(() => other.end({ timeout: 5 }))
  const reserved = await other.reserve()
  await reserved`begin`
  await reserved`insert into inflight_tasks (id, activation, received_at, processing_deadline_duration, status, application, namespace, taskname)
    values ('raced', '{}'::jsonb, now(), 60, 'pending', '', 'ns', 'live.one')`
  const requeue = deadletters.requeue('raced', new Date())
  await sleep(200)
  await reserved`commit`
  reserved.release()
  t.same(await requeue, { outcome: 'live' })
  t.same((await deadletters.list({ limit: 10 })).items.map(i => i.activation.taskname), ['dead.one'], 'the dead letter was not lost')
  const [row] = await database.rows(sql`select taskname from inflight_tasks where id = 'raced'`)
  t.equal(row?.taskname, 'live.one')
})

contract('count', 'count follows dead letters as they come and go', async (t, backend) => {
  const { database, deadletters } = await storesFor(t, backend)
  t.equal(await deadletters.count(), 0)
  for (const id of ['c1', 'c2', 'c3']) await insertDeadletter(database, activation({ id }))
  t.equal(await deadletters.count(), 3)
  await deadletters.remove('c1')
  t.equal((await deadletters.requeue('c2', new Date())).outcome, 'requeued')
  t.equal(await deadletters.count(), 1)
})

contract.everyMethodCovered()
