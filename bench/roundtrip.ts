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
import type { Activation } from '../src/domain/types.js'
import { toActivation } from '../src/domain/activation.js'
import { summarize, type LatencySummary } from './lib/stats.js'

export interface RoundtripOptions { url: string, iterations: number }

/** `iterations` only: the database URL is in the run's options, masked. */
export interface RoundtripResult { scenario: 'roundtrip', iterations: number, ms: Record<Statement, LatencySummary> }

type Statement = 'select_1' | 'produce_3' | 'claim_3' | 'report_3_and_claim_3'

/** Rounds run first and not timed: they prepare the statements and warm the JIT. */
const WARMUP_ROUNDS = 20

export async function roundtrip (options: RoundtripOptions): Promise<RoundtripResult> {
  const database = await openDatabase({ url: options.url, dataDir: '', poolSize: 1, log: pino({ level: 'silent' }), callTimeoutMs: 10_000 })
  await database.migrate()
  const store = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600 })
  const samples: Record<Statement, number[]> = { select_1: [], produce_3: [], claim_3: [], report_3_and_claim_3: [] }
  const three = (): Activation[] => Array.from({ length: 3 }, () => toActivation({ namespace: 'bench', taskname: 'noop', parameters: { pad: 'x'.repeat(100) } }, new Date()))
  try {
    await database.rows(sql`truncate inflight_tasks`)
    const rounds = WARMUP_ROUNDS + options.iterations
    for (let i = 0; i < rounds; i++) {
      const timed = async <T>(key: Statement, fn: () => Promise<T>): Promise<T> => {
        const started = performance.now()
        const result = await fn()
        if (i >= WARMUP_ROUNDS) samples[key].push(performance.now() - started)
        return result
      }
      await timed('select_1', () => database.run('select 1', []))
      await timed('produce_3', () => store.produce(three(), new Date()))
      const claimed = await timed('claim_3', () => store.claim({}, 3))
      await store.produce(three(), new Date())
      await timed('report_3_and_claim_3', () => store.setStatusManyAndClaim(claimed.map(c => ({ id: c.activation.id, status: 'complete' as const })), {}, 3))
      await database.rows(sql`delete from inflight_tasks`)
      if (i % 100 === 0) process.stderr.write(`  roundtrip: ${i}/${rounds}\n`)
    }
  } finally {
    await database.close()
  }
  return {
    scenario: 'roundtrip',
    iterations: options.iterations,
    ms: { select_1: summarize(samples.select_1), produce_3: summarize(samples.produce_3), claim_3: summarize(samples.claim_3), report_3_and_claim_3: summarize(samples.report_3_and_claim_3) }
  }
}
