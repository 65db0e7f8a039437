/**
 * The floor under every latency figure: one client, one statement at a time, nothing else
 * running — how long a round trip to PostgreSQL takes from Node on this machine, for a bare
 * `select 1` and for the broker's own statements at their smallest (produce 3 tasks, claim 3,
 * report 3 and claim 3 in one statement). Percentiles over `iterations` rounds.
 */
import { sql } from 'drizzle-orm'
import pino from 'pino'
import { openDatabase } from '../src/db/database.js'
import { createTaskStore } from '../src/store/task-store.js'
import type { Activation } from '../src/store/types.js'
import { toActivation } from '../src/tasks/activation.js'
import { summarize, type LatencySummary } from './lib/stats.js'

export interface RoundtripOptions { url: string, iterations: number }

export async function roundtrip (options: RoundtripOptions): Promise<Record<string, unknown>> {
  const database = await openDatabase({ url: options.url, dataDir: '', poolSize: 1, log: pino({ level: 'silent' }), callTimeoutMs: 10_000 })
  await database.migrate()
  const store = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600 })
  const samples: Record<'select_1' | 'produce_3' | 'claim_3' | 'report_3_and_claim_3', number[]> = { select_1: [], produce_3: [], claim_3: [], report_3_and_claim_3: [] }
  const timed = async <T>(key: keyof typeof samples, fn: () => Promise<T>): Promise<T> => {
    const started = performance.now()
    const result = await fn()
    samples[key].push(performance.now() - started)
    return result
  }
  const three = (): Activation[] => Array.from({ length: 3 }, () => toActivation({ namespace: 'bench', taskname: 'noop', parameters: { pad: 'x'.repeat(100) } }, new Date()))
  try {
    await database.rows(sql`truncate inflight_tasks`)
    for (let i = 0; i < options.iterations + 20; i++) {
      const record = i >= 20 // the first rounds prepare statements and warm the JIT
      const run = async <T>(key: keyof typeof samples, fn: () => Promise<T>) => record ? await timed(key, fn) : await fn()
      await run('select_1', () => database.run('select 1', []))
      await run('produce_3', () => store.produce(three(), new Date()))
      const claimed = await run('claim_3', () => store.claim({}, 3))
      await store.produce(three(), new Date())
      await run('report_3_and_claim_3', () => store.setStatusManyAndClaim(claimed.map(c => ({ id: c.activation.id, status: 'complete' as const })), {}, 3))
      await database.rows(sql`delete from inflight_tasks`)
      if (i % 100 === 0) process.stderr.write(`  roundtrip: ${i}/${options.iterations + 20}\n`)
    }
  } finally {
    await database.close()
  }
  const ms: Record<string, LatencySummary> = {}
  for (const [key, values] of Object.entries(samples)) ms[key] = summarize(values)
  return { scenario: 'roundtrip', config: options, ms }
}
