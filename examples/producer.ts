/**
 * A producer on the SDK: produces N tasks (default 10) and prints their ids.
 *
 *   TASKBROKER_URL=http://127.0.0.1:8080 TASKBROKER_SECRET=s3cret npx tsx examples/producer.ts 100
 *
 * In your project: `import { createClient } from 'taskbroker/client'`.
 */
import { createClient } from '../src/client/index.js'

const count = Number(process.argv[2] ?? 10)
const secret = process.env.TASKBROKER_SECRET
const client = createClient({ url: process.env.TASKBROKER_URL ?? 'http://127.0.0.1:8080', ...(secret === undefined ? {} : { secrets: [secret] }) })

try {
  // Ids are given by the client before sending, so a produce retried after a 503 never doubles a task.
  const answer = await client.produce(Array.from({ length: count }, (_, i) => ({
    application: 'example',
    namespace: 'emails',
    taskname: 'send_receipt',
    parameters: { order: i },
    retry_state: { max_attempts: 3 }
  })))
  process.stdout.write(`${answer.ids.join('\n')}\n`)
} finally {
  await client.close()
}
