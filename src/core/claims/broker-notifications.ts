/**
 * Brokers sharing a PostgreSQL database tell each other about new tasks with NOTIFY, so a
 * long-poll on one broker wakes for a task produced through another, and about changed queue
 * settings, so the others look at them again at once (QueueRestrictions) rather than at their next
 * periodic look. Each broker ignores its own notifications (it acted on them already). On PGlite
 * (one process) this does nothing.
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Store } from '../../store/index.js'
import type { QueueRef } from '../../domain/types.js'
import type { TaskSignal } from './task-signal.js'

/** Channel for "tasks arrived" notifications between broker processes sharing one database. */
const TASKS_CHANNEL = 'taskbroker_tasks'
/** Channel for "queue settings changed": the payload is the sender's id. */
const QUEUES_CHANNEL = 'taskbroker_queues'

export interface BrokerNotifications {
  /** Tells the other brokers that `count` tasks of `queue` became claimable. */
  send (queue: QueueRef, count: number): void
  /** Tells the other brokers that a queue's settings changed. */
  queuesChanged (): void
  close (): Promise<void>
}

export async function connectBrokers (
  store: Pick<Store, 'kind' | 'messages'>,
  signal: TaskSignal,
  log: Logger,
  /** Another broker changed a queue's settings. */
  onQueuesChanged: () => void
): Promise<BrokerNotifications> {
  const noop = { send: () => {}, queuesChanged: () => {}, close: async () => {} }
  if (store.kind !== 'postgres') return noop
  const self = randomUUID()
  const subscriptions: Array<{ unlisten: () => Promise<void> }> = []
  const unlistenAll = async () => { await Promise.all(subscriptions.map(async s => { await s.unlisten().catch(() => {}) })) }
  try {
    subscriptions.push(await store.messages.listen(TASKS_CHANNEL, payload => {
      try {
        const message = JSON.parse(payload) as { from: string, queue: QueueRef, count: number }
        if (message.from !== self) signal.notify(message.queue, message.count)
      } catch (error) {
        log.warn({ err: error }, 'ignoring a malformed task notification')
      }
    }))
    subscriptions.push(await store.messages.listen(QUEUES_CHANNEL, payload => {
      if (payload !== self) onQueuesChanged()
    }))
  } catch (error) {
    // Not fatal: long-polls still re-check every second, queue settings are looked at as often.
    log.warn({ err: error }, 'cannot LISTEN for notifications of other brokers; long-polls fall back to polling')
    await unlistenAll()
    return noop
  }
  const notify = (channel: string, payload: string) => {
    store.messages.notify(channel, payload).catch((error: unknown) => {
      log.debug({ err: error, channel }, 'notification not sent')
    })
  }
  return {
    send (queue: QueueRef, count: number) {
      notify(TASKS_CHANNEL, JSON.stringify({ from: self, queue, count }))
    },
    queuesChanged () { notify(QUEUES_CHANNEL, self) },
    close: unlistenAll
  }
}
