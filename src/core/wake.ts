/**
 * "Tasks became claimable": wakes the long-polls of this broker (the task signal) and tells the
 * other brokers on the same database (NOTIFY), once per queue. Produce, upkeep's releases, a
 * requeued dead letter and a produce of unknown outcome all wake through here.
 */
import type { BrokerNotifications } from './claims/broker-notifications.js'
import type { QueueRef } from '../domain/types.js'
import type { TaskSignal } from './claims/task-signal.js'

/** Claimable tasks by queue. */
export type QueueCounts = ReadonlyArray<QueueRef & { count: number }>

export type Wake = (released: QueueCounts) => void

export function createWake (signal: Pick<TaskSignal, 'notify'>, brokers: Pick<BrokerNotifications, 'send'>): Wake {
  return (released) => {
    for (const { application, namespace, count } of released) {
      if (count <= 0) continue
      const queue = { application, namespace }
      signal.notify(queue, count)
      brokers.send(queue, count)
    }
  }
}

/** One count per queue: one wake per claimable task, not one per task and queue. */
export function countByQueue (tasks: Iterable<QueueRef>): QueueCounts {
  const counts = new Map<string, QueueRef & { count: number }>()
  for (const { application, namespace } of tasks) {
    const key = `${application}\u0000${namespace}`
    const entry = counts.get(key)
    if (entry === undefined) counts.set(key, { application, namespace, count: 1 })
    else entry.count++
  }
  return [...counts.values()]
}
