/**
 * Push workers for the `push` benchmark, in a process of their own (forked by bench/push.ts with
 * IPC): N HTTP servers running the reference push worker (examples/push-worker.ts) with a no-op
 * handler; each accepted push is completed through the broker's status endpoint (its callback_url).
 * Counts travel to the driver every 250 ms.
 */
import { startPushWorker, type PushWorker } from '../examples/push-worker.js'

export type PushWorkerCommand =
  | { type: 'start', servers: number, concurrency: number, secrets: string[] }
  | { type: 'exit' }

export interface PushWorkerCounts { received: number, reported: number, refused: number, reportFailures: number }

export type PushWorkerMessage =
  | { type: 'ready', urls: string[] }
  | ({ type: 'progress' } & PushWorkerCounts)
  | { type: 'failed', message: string }

const send = (message: PushWorkerMessage) => { process.send?.(message) }

if (process.send === undefined) {
  process.stderr.write('bench/push-worker.ts is started by bench/push.ts (it needs an IPC channel)\n')
  process.exit(2)
}

let workers: PushWorker[] = []

function counts (): PushWorkerCounts {
  const sum = (pick: (w: PushWorker) => number) => workers.reduce((n, w) => n + pick(w), 0)
  return {
    received: sum(w => w.stats.received),
    reported: sum(w => w.stats.reported),
    refused: sum(w => w.stats.refused),
    reportFailures: sum(w => w.stats.reportFailures)
  }
}

process.on('message', (message: PushWorkerCommand) => {
  if (message.type === 'exit') {
    Promise.all(workers.map(w => w.close())).finally(() => process.exit(0))
    return
  }
  Promise.all(Array.from({ length: message.servers }, () => startPushWorker({
    handler: () => 'complete',
    concurrency: message.concurrency,
    maxQueued: message.concurrency * 4,
    secrets: message.secrets,
    onError: (text, error) => process.stderr.write(`  [push worker] ${text} ${error === undefined ? '' : String(error)}\n`)
  }))).then((started) => {
    workers = started
    setInterval(() => send({ type: 'progress', ...counts() }), 250).unref()
    send({ type: 'ready', urls: started.map(w => w.url) })
  }, (error: unknown) => send({ type: 'failed', message: String((error as Error).stack ?? error) }))
})
// The driver went away: never outlive it.
process.on('disconnect', () => process.exit(0))
