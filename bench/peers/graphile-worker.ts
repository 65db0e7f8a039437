/**
 * graphile-worker 0.17.3, in process, no HTTP: bulk-enqueue N no-op jobs (addJobs, 1000 per call;
 * timed = enqueue rate), then start a runner and time until the jobs table is empty (measured from
 * starting the runner, start-up included). A fresh schema every run.
 */
import { Logger, makeWorkerUtils, run } from 'graphile-worker'
import { connect, readOptions, report, waitFor } from './common.js'

const options = readOptions()
const concurrency = Number(options.concurrency ?? 10)
const localQueueSize = options.localQueueSize === undefined ? undefined : Number(options.localQueueSize)
const completeJobBatchDelay = options.completeJobBatchDelay === undefined ? undefined : Number(options.completeJobBatchDelay)
const { url, jobs, schema } = options

const logger = new Logger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`[graphile-worker] ${message}\n`)
})

const client = await connect(url)
await client.query(`drop schema if exists ${schema} cascade`)
const utils = await makeWorkerUtils({ connectionString: url, schema, logger })
await utils.migrate()

const enqueueStarted = performance.now()
for (let i = 0; i < jobs; i += 1000) {
  await utils.addJobs(Array.from({ length: Math.min(1000, jobs - i) }, () => ({ identifier: 'noop', payload: {} })))
}
const enqueueMs = performance.now() - enqueueStarted
await utils.release()

const started = performance.now()
const runner = await run({
  connectionString: url,
  schema,
  concurrency,
  maxPoolSize: Math.max(10, concurrency + 2),
  pollInterval: 2000,
  noHandleSignals: true,
  logger,
  taskList: { noop: async () => {} },
  preset: {
    worker: {
      ...(localQueueSize === undefined ? {} : { localQueue: { size: localQueueSize } }),
      ...(completeJobBatchDelay === undefined ? {} : { completeJobBatchDelay })
    }
  }
})
const left = async () => Number((await client.query(`select count(*)::int as n from ${schema}._private_jobs`)).rows[0].n)
const { reached } = await waitFor(async () => jobs - await left(), jobs, 300_000)
const ms = performance.now() - started
await runner.stop()
await client.query(`drop schema if exists ${schema} cascade`)
await client.end()
report({ jobs, completed: reached, seconds: ms / 1000, jobs_per_sec: reached / (ms / 1000), enqueue_per_sec: jobs / (enqueueMs / 1000) })
