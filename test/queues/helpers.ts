/** The stores of one test database, and producing tasks with priorities, for the queue tests. */
import type { Test } from 'tap'
import { toActivation, type TaskInput } from '../../src/domain/activation.js'
import { createPushStore } from '../../src/store/push-store.js'
import { createQueueRestrictions } from '../../src/store/queue-restrictions.js'
import { createQueueStore } from '../../src/store/queue-store.js'
import { createTaskStore } from '../../src/store/task-store.js'
import { createTestDatabase, type BackendName } from '../helpers/database.js'

/** A UUID whose last byte (its push bucket) is 0x10. */
export const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(10, '0')}10`

export async function queueStores (t: Test, backend: BackendName) {
  const { database } = await createTestDatabase(t, backend)
  // As the broker has them: claims take the plain statement while no queue is restricted.
  const restrictions = createQueueRestrictions(database)
  await restrictions.refresh()
  const tasks = createTaskStore(database, { processingDeadlineGraceSec: 3, maxDelaySec: 3600 }, restrictions)
  const push = createPushStore(database, { processingDeadlineGraceSec: 3 }, restrictions)
  const queues = createQueueStore(database, restrictions)
  /** Produces the tasks one statement each, in order (added_at follows). */
  const produce = async (...inputs: Array<Partial<TaskInput> & { id: string }>) => {
    for (const input of inputs) {
      const activation = toActivation({ application: 'shop', namespace: 'ns', taskname: 'q.task', ...input }, new Date())
      await tasks.produce([activation], new Date(), [input.priority ?? 0])
    }
  }
  return { database, tasks, push, queues, restrictions, produce }
}

export type QueueStores = Awaited<ReturnType<typeof queueStores>>

/** Every claim shape, each as "claim up to `limit` of application `shop` (namespace `ns`)". */
export function claimShapes (stores: QueueStores): Record<string, (limit: number) => Promise<string[]>> {
  const ids = (tasks: Array<{ activation: { id: string } }>) => tasks.map(task => task.activation.id)
  return {
    'pull, no filter': async (limit) => ids(await stores.tasks.claim({}, limit)),
    'pull, application': async (limit) => ids(await stores.tasks.claim({ application: 'shop' }, limit)),
    'pull, application and namespace': async (limit) => ids(await stores.tasks.claim({ application: 'shop', namespace: 'ns' }, limit)),
    // A report of an unknown id with a fetch_next rider: the claim runs in the status statement.
    'fetch_next rider': async (limit) => ids((await stores.tasks.setStatusManyAndClaim([{ id: 'no-such-task', status: 'complete' }], { application: 'shop', namespace: 'ns' }, limit)).claimed),
    'push fetch': async (limit) => (await stores.push.claim({ buckets: [0, 255], applications: ['shop'], limit, leaseMs: 30_000 })).map(c => c.activation.id)
  }
}
