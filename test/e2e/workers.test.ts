/**
 * End to end over a real port: 1,000 tasks, 20 concurrent workers that claim and complete them
 * through the API (status with fetch_next, as upstream's workers do). Every task must be completed
 * exactly once and no live work may remain.
 */
import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { eachBackend } from '../helpers/database.js'

const TASKS = 1000
const WORKERS = 20

interface Claimed { id: string }

eachBackend(t, '20 workers complete 1,000 tasks exactly once', async (t, backend) => {
  const { app } = await buildTestApp(t, backend)
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const post = async (path: string, body: unknown) => {
    const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    if (!response.ok) throw new Error(`${path} answered ${response.status}: ${await response.text()}`)
    return response.json() as Promise<Record<string, unknown>>
  }

  const produced: string[] = []
  for (let i = 0; i < TASKS; i += 100) {
    const tasks = Array.from({ length: 100 }, (_, j) => ({ id: `e2e-${i + j}`, namespace: 'e2e', taskname: 'noop', parameters: { n: i + j } }))
    const result = await post('/v1/tasks', { tasks })
    t.equal(result.inserted, 100)
    produced.push(...tasks.map(x => x.id))
  }

  const completed: string[] = []
  async function worker () {
    let idle = 0
    let [next] = (await post('/v1/tasks/claim', { wait_ms: 100 })).tasks as Claimed[]
    while (idle < 2) {
      if (next === undefined) {
        idle++
        ;[next] = (await post('/v1/tasks/claim', { wait_ms: 100 })).tasks as Claimed[]
        continue
      }
      idle = 0
      const reply = await post(`/v1/tasks/${encodeURIComponent(next.id)}/status`, { status: 'complete', fetch_next: {} })
      if (reply.applied !== true) throw new Error(`completion of ${next.id} was not applied`)
      completed.push(next.id)
      next = (reply.task ?? undefined) as Claimed | undefined
    }
  }
  await Promise.all(Array.from({ length: WORKERS }, worker))

  t.equal(completed.length, TASKS, 'every task completed')
  t.equal(new Set(completed).size, TASKS, 'no task completed twice')
  t.same([...completed].sort(), [...produced].sort(), 'exactly the produced tasks')
  const stats = (await (await fetch(base + '/v1/stats')).json()) as { by_status: Record<string, number> }
  t.same(Object.values(stats.by_status).reduce((a, b) => a + b, 0), 0, 'no live work left in the table')
})
