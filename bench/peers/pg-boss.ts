/**
 * pg-boss 10.4.2, in process, no HTTP: bulk-enqueue N no-op jobs (insert, 1000 per call; timed =
 * enqueue rate), optionally VACUUM ANALYZE the job table, then register `workers` workers with
 * `batchSize` and `pollingIntervalSeconds` and time until all N are `completed` (from the first
 * work() call, start-up included). A fresh schema every run.
 */
import PgBoss from 'pg-boss'
import { connect, readOptions, report, waitFor } from './common.js'

const options = readOptions()
const workers = Number(options.workers ?? 10)
const batchSize = Number(options.batchSize ?? 100)
const pollingIntervalSeconds = Number(options.pollingIntervalSeconds ?? 0.5)
const analyze = options.analyze !== false
const { url, jobs, schema } = options
const queue = 'bench_noop'

const client = await connect(url)
await client.query(`drop schema if exists ${schema} cascade`)
const boss = new PgBoss({ connectionString: url, schema, max: Math.min(60, workers + 4), schedule: false, supervise: false })
boss.on('error', (error) => process.stderr.write(`[pg-boss] ${error.message}\n`))
await boss.start()
await boss.createQueue(queue)

const enqueueStarted = performance.now()
for (let i = 0; i < jobs; i += 1000) {
  await boss.insert(Array.from({ length: Math.min(1000, jobs - i) }, () => ({ name: queue, data: {} })))
}
const enqueueMs = performance.now() - enqueueStarted
if (analyze) await client.query(`vacuum analyze ${schema}.job`)

const started = performance.now()
for (let w = 0; w < workers; w++) {
  await boss.work(queue, { batchSize, pollingIntervalSeconds }, async () => {})
}
const completed = async () => Number((await client.query(`select count(*)::int as n from ${schema}.job where name = $1 and state = 'completed'`, [queue])).rows[0].n)
const { reached } = await waitFor(completed, jobs, 300_000)
const ms = performance.now() - started
await boss.stop({ graceful: false, wait: true, timeout: 5_000 })
await client.query(`drop schema if exists ${schema} cascade`)
await client.end()
report({ jobs, completed: reached, seconds: ms / 1000, jobs_per_sec: reached / (ms / 1000), enqueue_per_sec: jobs / (enqueueMs / 1000) })
