/**
 * Which is faster for a `complete` report: deleting the row in the flush statement itself, or
 * marking it `complete` and deleting it in upkeep? Same tasks, same batch size, modes interleaved
 * rep by rep on one PostgreSQL. Mark mode is timed with its upkeep delete included, since that
 * work still has to happen.
 */
import { sql } from 'drizzle-orm'
import pino from 'pino'
import { connectPostgres } from './lib/pg.js'
import { openDatabase } from '../src/db/database.js'
import { createTaskStore } from '../src/store/task-store.js'
import { toActivation } from '../src/domain/activation.js'
import { fmt, median } from './lib/stats.js'

export interface CompleteModeOptions {
  url: string
  tasks: number
  batch: number
  reps: number
  /** The database it creates (if missing) and empties on that server. */
  database: string
}

export async function completeMode (options: CompleteModeOptions): Promise<Record<string, unknown>> {
  const admin = connectPostgres(options.url, { max: 1, onnotice: () => {} })
  const name = options.database
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`--database must be a plain identifier (got ${name})`)
  const exists = await admin`select 1 from pg_database where datname = ${name}`
  if (exists.length === 0) await admin.unsafe(`create database ${name}`)
  await admin.end()
  const url = new URL(options.url)
  url.pathname = `/${name}`
  const database = await openDatabase({ url: url.toString(), dataDir: '', poolSize: 4, log: pino({ level: 'silent' }) })
  await database.migrate()
  const results: Record<'delete' | 'mark', number[]> = { delete: [], mark: [] }
  try {
    for (let rep = 0; rep < options.reps; rep++) {
      for (const mode of ['delete', 'mark'] as const) {
        const store = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600, completedRows: mode })
        await database.rows(sql`truncate inflight_tasks`)
        const now = new Date()
        for (let i = 0; i < options.tasks; i += 1000) {
          const chunk = Array.from({ length: Math.min(1000, options.tasks - i) }, () => toActivation({ namespace: 'bench', taskname: 'noop', parameters: { pad: 'x'.repeat(150) } }, now))
          await store.produce(chunk, now)
        }
        const ids: string[] = []
        for (;;) {
          const claimed = await store.claim({}, 100)
          if (claimed.length === 0) break
          ids.push(...claimed.map(c => c.activation.id))
        }
        await database.rows(sql`vacuum analyze inflight_tasks`)
        const started = performance.now()
        for (let i = 0; i < ids.length; i += options.batch) {
          await store.setStatusMany(ids.slice(i, i + options.batch).map(id => ({ id, status: 'complete' as const })))
        }
        if (mode === 'mark') await database.rows(sql`delete from inflight_tasks where status = 'complete'`)
        const seconds = (performance.now() - started) / 1000
        results[mode].push(ids.length / seconds)
        process.stderr.write(`  rep ${rep + 1} ${mode}: ${fmt(ids.length / seconds)} completions/s\n`)
      }
    }
  } finally {
    await database.close()
  }
  const del = median(results.delete)
  const mark = median(results.mark)
  return {
    scenario: 'complete-mode',
    config: options,
    delete_per_sec: Math.round(del),
    mark_then_upkeep_delete_per_sec: Math.round(mark),
    ratio_delete_over_mark: Number((del / mark).toFixed(2)),
    runs: results
  }
}
