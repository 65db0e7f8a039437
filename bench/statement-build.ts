/**
 * What a status flush costs the broker's CPU before its statement reaches the database: the
 * store's `setStatusMany` / `setStatusManyAndClaim` against a stand-in database that answers at
 * once, so only the JS side is timed (the statement's text, the array parameters, the guard).
 * Also what compiling the Drizzle-built status statement on every flush would cost instead of
 * once, and what a produce costs, timed the same way. `--compare DIR` times the store of another
 * checkout too (e.g. a `git worktree` of an earlier commit) in the same process, the runs
 * interleaved rep by rep.
 *
 *   npx tsx bench/statement-build.ts [--flushes N] [--reps N] [--compare DIR …]
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { PgDialect } from 'drizzle-orm/pg-core'
import type { Database } from '../src/db/database.js'
import { toActivation } from '../src/domain/activation.js'
import type { Activation, StatusUpdate } from '../src/domain/types.js'
import { statusQuery } from '../src/store/statements/status.js'
import { createTaskStore, type TaskStore } from '../src/store/task-store.js'
import { median } from './lib/stats.js'

const { values } = parseArgs({
  options: {
    flushes: { type: 'string', default: '500' },
    reps: { type: 'string', default: '9' },
    compare: { type: 'string', multiple: true, default: [] }
  }
})
const flushes = Number(values.flushes)
const reps = Number(values.reps)
const BATCHES = [1, 16, 256, 1000]

/** Answers every statement with no rows, at once. */
const database: Database = {
  kind: 'postgres',
  get db (): never { throw new Error('not used') },
  rows: async () => [],
  prepare: () => ({ run: async () => [] }),
  run: async () => [],
  migrate: async () => {},
  listen: async () => ({ unlisten: async () => {} }),
  notify: async () => {},
  leaderLock: () => ({ acquire: async () => true, release: async () => {} }),
  close: async () => {}
}
const options = { processingDeadlineGraceSec: 3, maxDelaySec: 3600 }

interface Subject { label: string, store: TaskStore }
const subjects: Subject[] = [{ label: 'this checkout', store: createTaskStore(database, options) }]
for (const dir of values.compare) {
  const other = await import(pathToFileURL(resolve(dir, 'src/store/task-store.ts')).href) as { createTaskStore: typeof createTaskStore }
  subjects.push({ label: dir, store: other.createTaskStore(database, options) })
}

const updatesOf = (n: number): StatusUpdate[] => Array.from({ length: n }, (_, i) => ({
  id: `8a0bd2e2-5d39-4bb6-9e3c-${String(n - i).padStart(12, '0')}`, status: i % 3 === 0 ? 'retry' : 'complete', maxAttempts: i % 3 === 0 ? 5 : undefined
}))

/** Microseconds per call of `fn` over `flushes` calls. */
async function once (fn: () => Promise<unknown> | unknown): Promise<number> {
  const started = performance.now()
  for (let i = 0; i < flushes; i++) await fn()
  return (performance.now() - started) * 1000 / flushes
}

/** Median µs per call of each of `fns`, their runs interleaved rep by rep after one warm-up run each. */
async function timeEach (fns: Array<() => Promise<unknown> | unknown>): Promise<number[]> {
  for (const fn of fns) await once(fn)
  const runs: number[][] = fns.map(() => [])
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < fns.length; i++) runs[i]!.push(await once(fns[i]!))
  }
  return runs.map(median)
}

const dialect = new PgDialect()
const us = (v: number) => v.toFixed(1)
process.stdout.write(`statement-build: node ${process.version}, ${flushes} flushes per run, median of ${reps} runs interleaved, µs per flush\n`)
process.stdout.write(`stores: ${subjects.map(s => s.label).join('; ')}\n\n`)
process.stdout.write(`| reports | ${subjects.map(s => `setStatusMany (${s.label})`).join(' | ')} | ${subjects.map(s => `setStatusManyAndClaim (${s.label})`).join(' | ')} | compiling the status statement per flush |\n`)
process.stdout.write(`|---|${subjects.map(() => '---|').join('')}${subjects.map(() => '---|').join('')}---|\n`)
for (const n of BATCHES) {
  const updates = updatesOf(n)
  const many = await timeEach(subjects.map(s => () => s.store.setStatusMany(updates)))
  const andClaim = await timeEach(subjects.map(s => () => s.store.setStatusManyAndClaim(updates, { application: 'app' }, 3)))
  const [compileEach] = await timeEach([() => dialect.sqlToQuery(statusQuery(true, 'application', 3))])
  process.stdout.write(`| ${n} | ${many.map(us).join(' | ')} | ${andClaim.map(us).join(' | ')} | ${us(compileEach!)} |\n`)
}

// Produce, for comparison: its statement is compiled once too, its rows are 13 array parameters.
const now = new Date()
process.stdout.write(`\n| tasks per produce | ${subjects.map(s => `produce (${s.label})`).join(' | ')} |\n|---|${subjects.map(() => '---|').join('')}\n`)
for (const n of [1, 100, 1000]) {
  const activations: Activation[] = Array.from({ length: n }, (_, i) => toActivation({ id: `task-${i}`, namespace: 'bench', taskname: 'noop', parameters: { pad: 'x'.repeat(100) } }, now))
  const produce = await timeEach(subjects.map(s => () => s.store.produce(activations, now)))
  process.stdout.write(`| ${n} | ${produce.map(us).join(' | ')} |\n`)
}
