/** Reading the broker's state: one task, and the counts behind /stats. */
import { TaskNotFoundError, TaskUndecodableError } from '../domain/errors.js'
import type { StoreStats, StoredTask } from '../domain/types.js'
import type { DeadletterStore } from '../store/deadletter-store.js'
import type { ScheduleCounts, ScheduleStore } from '../store/schedule-store.js'
import type { TaskStore } from '../store/task-store.js'
import { undecodableReason } from '../domain/undecodable.js'

export interface BrokerStats extends StoreStats {
  /** Tasks in the dead-letter table. */
  deadletters: number
  /** Status reports queued in this broker, not yet written. */
  statusQueueDepth: number
  /** Schedules: in all, paused, declared in the runtime config file. */
  schedules: ScheduleCounts
}

export interface Reads {
  /** The task with its broker state; TaskNotFoundError, or TaskUndecodableError for a row that cannot be decoded. */
  getTask (id: string): Promise<StoredTask>
  stats (): Promise<BrokerStats>
}

export function createReads (deps: {
  tasks: Pick<TaskStore, 'getById' | 'stats'>
  deadletters: Pick<DeadletterStore, 'count'>
  schedules: Pick<ScheduleStore, 'counts'>
  statusQueueDepth: () => number
  now: () => Date
}): Reads {
  return {
    async getTask (id) {
      const task = await deps.tasks.getById(id)
      if (task === null) throw new TaskNotFoundError(id)
      const undecodable = undecodableReason(task.activation, id)
      if (undecodable !== null) throw new TaskUndecodableError(id, undecodable)
      return task
    },

    async stats () {
      const [stats, deadletters, schedules] = await Promise.all([deps.tasks.stats(deps.now()), deps.deadletters.count(), deps.schedules.counts()])
      return { ...stats, deadletters, statusQueueDepth: deps.statusQueueDepth(), schedules }
    }
  }
}
