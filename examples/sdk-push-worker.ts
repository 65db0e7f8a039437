/**
 * A push worker on the SDK: an HTTP server on PORT (default 9000) whose /push receives the
 * broker's signed pushes and runs each task; outcomes go to the task's callback_url.
 *
 *   PORT=9000 TASKBROKER_SECRET=s3cret npx tsx examples/sdk-push-worker.ts
 *   # broker: TASKBROKER_DELIVERY_MODE=push TASKBROKER_WORKER_MAP=example=http://127.0.0.1:9000/push
 *
 * In your project: `import { createPushHandler } from 'taskbroker/client'` (or the Fastify
 * plugin `taskbrokerPush`).
 */
import { createServer } from 'node:http'
import { createPushHandler } from '../src/client/index.js'

const secret = process.env.TASKBROKER_SECRET
const push = createPushHandler({
  ...(secret === undefined ? {} : { secrets: [secret] }),
  concurrency: 8,
  handler: async (task) => {
    await new Promise(resolve => setTimeout(resolve, 10))
    process.stdout.write(`done ${task.id}\n`)
  }
})
const server = createServer((req, res) => {
  if (req.url?.split('?')[0] === '/push') push(req, res)
  else res.writeHead(404).end()
})
server.listen(Number(process.env.PORT ?? 9000), '127.0.0.1', () => process.stdout.write('listening\n'))

// Ctrl-C (SIGINT) or SIGTERM: refuse new pushes (503: the broker hands them to another worker or
// later), finish and report the rest.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    push.receiver.close().then(() => server.close(() => process.exit(0)), () => process.exit(1))
  })
}
