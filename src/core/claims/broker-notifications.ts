/**
 * Brokers sharing a PostgreSQL database tell each other about new tasks with NOTIFY, so a
 * long-poll on one broker wakes for a task produced through another. Each broker ignores its own
 * notifications (it woke its waiters already). On PGlite (one process) this does nothing.
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Store } from '../../store/index.js'
import type { QueueRef } from '../../domain/types.js'
import type { TaskSignal } from './task-signal.js'

/** Channel for "tasks arrived" notifications between broker processes sharing one database. */
const TASKS_CHANNEL = 'taskbroker_tasks'

export interface BrokerNotifications {
  /** Tells the other brokers that `count` tasks of `queue` became claimable. */
  send (queue: QueueRef, count: number): void
  close (): Promise<void>
}

export async function connectBrokers (store: Pick<Store, 'kind' | 'messages'>, signal: TaskSignal, log: Logger): Promise<BrokerNotifications> {
  const noop = { send: () => {}, close: async () => {} }
  if (store.kind !== 'postgres') return noop
  const self = randomUUID()
  let subscription: { unlisten: () => Promise<void> } | undefined
  try {
    subscription = await store.messages.listen(TASKS_CHANNEL, payload => {
      try {
        const message = JSON.parse(payload) as { from: string, queue: QueueRef, count: number }
        if (message.from !== self) signal.notify(message.queue, message.count)
      } catch (error) {
        log.warn({ err: error }, 'ignoring a malformed task notification')
      }
    })
  } catch (error) {
    // Not fatal: long-polls still re-check every second.
    log.warn({ err: error }, 'cannot LISTEN for task notifications; long-polls fall back to polling')
    return noop
  }
  return {
    send (queue: QueueRef, count: number) {
      const payload = JSON.stringify({ from: self, queue, count })
      store.messages.notify(TASKS_CHANNEL, payload).catch((error: unknown) => {
        log.debug({ err: error }, 'task notification not sent')
      })
    },
    close: async () => { await subscription?.unlisten().catch(() => {}) }
  }
}
