/**
 * End to end over a real port: 2,000 tasks, each with a scripted fate — workers crash (never
 * report), fail, ask for retries or succeed — and upkeep carrying every task to its end. Each task
 * must end exactly as a model of the lifecycle says: completed once, discarded, or dead-lettered;
 * none lost, none stuck.
 */
import { sql } from 'drizzle-orm'
import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'

const TASKS = 2000
const WORKERS = 20
const MAX_PROCESSING_ATTEMPTS = 3
/** No task finished for this long: the rest are stuck (a bound for a bug, not a speed target). */
const STALL_MS = 60_000

type Action = 'ok' | 'fail' | 'retry' | 'crash'
type Fate = 'completed' | 'discarded' | 'deadlettered'

interface Script {
  id: string
  plan: Action[]
  maxAttempts: number
  deadletter: boolean
  atMostOnce: boolean
}

/** Small deterministic PRNG (mulberry32), so a failure can be replayed. */
function random (seed: number) {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

function scripts (seed: number): Script[] {
  const next = random(seed)
  const actions: Action[] = ['ok', 'fail', 'retry', 'retry', 'crash']
  return Array.from({ length: TASKS }, (_, i) => ({
    id: `life-${i}`,
    plan: Array.from({ length: Math.floor(next() * 4) }, () => actions[Math.floor(next() * actions.length)] as Action),
    maxAttempts: 1 + Math.floor(next() * 3),
    deadletter: next() < 0.5,
    atMostOnce: next() < 0.1
  }))
}

/** What the broker must do with a script: the lifecycle rules, written out independently. */
function expectedFate (script: Script): Fate {
  const failed: Fate = script.deadletter ? 'deadlettered' : 'discarded'
  let attempts = 0
  let processingAttempts = 0
  for (let run = 0; ; run++) {
    const action = script.plan[run] ?? 'ok'
    if (action === 'ok') return 'completed'
    if (action === 'fail') return failed
    if (action === 'retry') {
      if (attempts + 1 >= script.maxAttempts) return failed
      attempts++
      processingAttempts = 0
    }
    if (action === 'crash') {
      if (script.atMostOnce) return failed
      if (++processingAttempts >= MAX_PROCESSING_ATTEMPTS) return failed
    }
  }
}

interface Claimed { id: string }

eachBackend(t, 'crashing, failing and retrying workers: every task ends as its retry_state says', { timeout: 600_000 }, async (t, backend) => {
  const { app, database } = await buildTestApp(t, backend, {
    TASKBROKER_UPKEEP_INTERVAL_MS: '100',
    TASKBROKER_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: '0',
    TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: '0',
    TASKBROKER_MAX_PROCESSING_ATTEMPTS: String(MAX_PROCESSING_ATTEMPTS),
    TASKBROKER_MAX_PENDING_COUNT: '100000'
  })
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const post = async (path: string, body: unknown) => {
    const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    if (!response.ok) throw new Error(`${path} answered ${response.status}: ${await response.text()}`)
    return response.json() as Promise<Record<string, unknown>>
  }

  const all = scripts(20261128)
  const byId = new Map(all.map(s => [s.id, s]))
  for (let i = 0; i < all.length; i += 500) {
    await post('/v1/tasks', {
      tasks: all.slice(i, i + 500).map(s => ({
        id: s.id,
        namespace: 'life',
        taskname: 'scripted',
        retry_state: { max_attempts: s.maxAttempts, on_attempts_exceeded: s.deadletter ? 'deadletter' : 'discard', at_most_once: s.atMostOnce }
      }))
    })
  }

  const runs = new Map<string, number>()
  const completions = new Map<string, number>()
  const state = { done: false }
  async function worker () {
    let next: Claimed | undefined
    while (!state.done) {
      if (next === undefined) {
        ;[next] = (await post('/v1/tasks/claim', { wait_ms: 200 })).tasks as Claimed[]
        continue
      }
      const run = runs.get(next.id) ?? 0
      runs.set(next.id, run + 1)
      const action = byId.get(next.id)?.plan[run] ?? 'ok'
      if (action === 'crash') {
        // The worker dies and never reports. Rather than wait out a real deadline (which would
        // also catch slow-but-alive workers on a loaded machine), its deadline is moved into the
        // past; upkeep, running on its timer, must then take the task back.
        await database.rows(sql`update inflight_tasks set processing_deadline = now() - interval '1 second'
          where id = ${next.id} and status = 'processing'`)
        next = undefined
        continue
      }
      const status = action === 'ok' ? 'complete' : action === 'fail' ? 'failure' : 'retry'
      const reply = await post(`/v1/tasks/${next.id}/status`, { status, fetch_next: {} })
      if (status === 'complete' && reply.applied === true) completions.set(next.id, (completions.get(next.id) ?? 0) + 1)
      next = (reply.task ?? undefined) as Claimed | undefined
    }
  }
  const workers = Array.from({ length: WORKERS }, worker)

  // Wait until every task has left the broker: as long as it takes while tasks keep finishing
  // (a loaded machine is slow, not wrong); stuck means none finished for STALL_MS.
  const live = async () => Number((await database.rows(sql`select count(*)::int as n from inflight_tasks`))[0]!.n)
  let left = await live()
  let progressAt = Date.now()
  while (left > 0 && Date.now() - progressAt < STALL_MS) {
    await new Promise(resolve => setTimeout(resolve, 200))
    const now = await live()
    if (now < left) progressAt = Date.now()
    left = now
  }
  state.done = true
  await Promise.all(workers)

  const unfinished = new Map((await database.rows(sql`select id, status from inflight_tasks`)).map(r => [r.id as string, r.status as string]))
  const byStatus: Record<string, number> = {}
  for (const status of unfinished.values()) byStatus[status] = (byStatus[status] ?? 0) + 1
  t.equal(unfinished.size, 0, unfinished.size === 0
    ? 'every task reached its end'
    : `${unfinished.size} tasks never reached their end (none finished for ${STALL_MS / 1000} s); still in the broker by status: ${JSON.stringify(byStatus)}`)
  const deadlettered = new Set((await database.rows(sql`select id from deadletter_tasks`)).map(r => r.id as string))
  const mismatches: string[] = []
  const tally: Record<Fate, number> = { completed: 0, discarded: 0, deadlettered: 0 }
  for (const script of all) {
    const expected = expectedFate(script)
    tally[expected]++
    if (unfinished.has(script.id)) continue // reported above, not a wrong end
    const actual: Fate = completions.has(script.id) ? 'completed' : deadlettered.has(script.id) ? 'deadlettered' : 'discarded'
    if (actual !== expected) mismatches.push(`${script.id}: expected ${expected}, got ${actual} (${JSON.stringify(script)})`)
  }
  t.same(mismatches.slice(0, 10), [], `every task that reached its end ended as its script and retry_state say (${mismatches.length} did not)`)
  t.ok([...completions.values()].every(n => n === 1), 'no task was completed twice')
  t.ok(tally.completed > 100 && tally.discarded > 100 && tally.deadlettered > 100, `all three ends occur: ${JSON.stringify(tally)}`)
  t.ok([...byId.values()].some(s => s.plan.includes('crash') && expectedFate(s) === 'completed'), 'some tasks survive a crash')
})
