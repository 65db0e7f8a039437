/**
 * Brokers sharing a PostgreSQL database tell each other about new tasks with NOTIFY, so a
 * long-poll on one broker wakes for a task produced through another, and about changed queue
 * settings, so the others look at them again at once (QueueRestrictions) rather than at their next
 * periodic look. Each broker ignores its own notifications (it acted on them already). On PGlite
 * (one process) this does nothing.
 *
 * A broker alone on its database sends none: a NOTIFY per produce cost PostgreSQL about a third
 * of a small produce's CPU, for a listener that only ever heard itself. Each broker says hello when
 * it starts listening, so the others send again at once, and counts the listening brokers every
 * re-check interval, so it stops once the others have gone.
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
/** Channel for "a broker began listening": the payload is its id. */
const HELLO_CHANNEL = 'taskbroker_hello'

export interface BrokerNotifications {
  /** Tells the other brokers that `count` tasks of `queue` became claimable. */
  send (queue: QueueRef, count: number): void
  /** Tells the other brokers that a queue's settings changed. */
  queuesChanged (): void
  /** Starts counting the listening brokers every re-check interval. */
  start (): void
  close (): Promise<void>
}

export async function connectBrokers (
  store: Pick<Store, 'kind' | 'messages'>,
  signal: TaskSignal,
  log: Logger,
  /** Another broker changed a queue's settings. */
  onQueuesChanged: () => void,
  /** How often the listening brokers are counted. */
  everyMs: number
): Promise<BrokerNotifications> {
  const noop = { send: () => {}, queuesChanged: () => {}, start: () => {}, close: async () => {} }
  if (store.kind !== 'postgres') return noop
  const self = randomUUID()
  const peers = peerView(store.messages.listeners, log)
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
    subscriptions.push(await store.messages.listen(HELLO_CHANNEL, payload => {
      if (payload !== self) peers.joined()
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
  // Listening already: a broker that starts after this hello is heard saying its own.
  notify(HELLO_CHANNEL, self)
  await peers.look()
  let timer: ReturnType<typeof setInterval> | undefined
  return {
    send (queue: QueueRef, count: number) {
      if (peers.othersListen) notify(TASKS_CHANNEL, JSON.stringify({ from: self, queue, count }))
    },
    queuesChanged () { if (peers.othersListen) notify(QUEUES_CHANNEL, self) },
    start () {
      timer ??= setInterval(peers.look, everyMs) // a look never rejects
      timer.unref()
    },
    async close () {
      clearInterval(timer)
      await unlistenAll()
    }
  }
}

/** Whether another broker listens on this database, as last seen; one count at a time. */
export function peerView (count: () => Promise<number>, log: Pick<Logger, 'debug'>) {
  let othersListen = true // not known yet: send, as a broker always did
  let hellos = 0
  let looking: Promise<void> | undefined
  const look = async (): Promise<void> => {
    const hellosBefore = hellos
    try {
      const listening = await count()
      // A hello heard while the count was out is a broker the count may have missed.
      if (hellos === hellosBefore) othersListen = listening > 1
    } catch (error) {
      othersListen = true
      log.debug({ err: error }, 'listening brokers not counted; notifying as if others listen')
    }
  }
  return {
    get othersListen () { return othersListen },
    /** Another broker said hello: it listens. */
    joined (): void {
      hellos++
      othersListen = true
    },
    look (): Promise<void> {
      looking ??= look().finally(() => { looking = undefined })
      return looking
    }
  }
}
