/**
 * A pull worker on the SDK: claims tasks of application "example" (long-poll), runs up to four at
 * once, retries a task whose parameters say so, and drains on Ctrl-C or SIGTERM (nothing left processing).
 *
 *   TASKBROKER_URL=http://127.0.0.1:8080 TASKBROKER_SECRET=s3cret npx tsx examples/sdk-pull-worker.ts
 *
 * In your project: `import { createWorker, retry } from 'taskbroker/client'`.
 */
import { createWorker, retry } from '../src/client/index.js'

const secret = process.env.TASKBROKER_SECRET
const worker = createWorker({
  url: process.env.TASKBROKER_URL ?? 'http://127.0.0.1:8080',
  ...(secret === undefined ? {} : { secrets: [secret] }),
  application: 'example',
  concurrency: 4,
  handler: async (task, { signal }) => {
    const { order, retryMe } = task.parameters as { order?: number, retryMe?: boolean }
    if (retryMe === true && task.retry_state.attempts === 0) return retry({ delaySec: 1 })
    // Real work would pass `signal` on (fetch, database calls) so a cancel or the deadline stops it.
    await new Promise(resolve => setTimeout(resolve, 10))
    if (signal.aborted) throw signal.reason
    process.stdout.write(`done ${task.id} order ${order ?? '-'}\n`)
  }
})
worker.on('warning', (message: string) => process.stderr.write(`${message}\n`))

// Ctrl-C (SIGINT) drains as SIGTERM does: nothing is left processing until its deadline.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    worker.stop({ timeoutMs: 10_000 }).then(() => process.exit(0), () => process.exit(1))
  })
}
