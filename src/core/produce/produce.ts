/**
 * Produce, the whole use case: the producer's checks (parameter size, received_at), the
 * killswitch (those tasks are dropped and listed), backpressure (the batch is refused whole), the
 * insert (a stored id is a duplicate, ignored), metrics, and waking claims for what became
 * claimable at once (delayed tasks wait for upkeep). Tasks that claims are long-polling for are
 * offered to them: the insert stores those it may as processing and they go straight to their
 * waiters, with no claim statement between (handoff.ts). When the store may have committed without
 * answering, the error carries every id so the producer can produce them again safely.
 */
import { PRIORITY_MAX, PRIORITY_MIN, toActivation, type TaskInput } from '../../domain/activation.js'
import { receivedAtProblem } from '../../domain/dates.js'
import { BackpressureError, InvalidRequestError, OutcomeUnknownError } from '../../domain/errors.js'
import { initialStatus } from '../../domain/schedule.js'
import type { Activation } from '../../domain/types.js'
import { outcomeUnknown } from '../../store/index.js'
import type { TaskStore } from '../../store/task-store.js'
import type { Metrics } from '../metrics.js'
import { countByQueue, type Wake } from '../wake.js'
import type { Backpressure } from './backpressure.js'
import { offerToWaiters, type Handoff } from './handoff.js'
import { mayHoldTooLargeParameters, parametersTooLarge } from './parameters.js'

export interface ProduceOptions {
  /** Size of the request as received, in bytes, when the front end knows it: spares measuring parameters. */
  receivedBytes?: number | undefined
}

export interface ProduceOutcome {
  /** The id of every task given, in order (generated where none was given). */
  ids: string[]
  /** Tasks stored now. */
  inserted: number
  /** Ids already stored (or repeated in the batch): ignored. */
  duplicates: string[]
  /** Ids dropped because their task name is killswitched. */
  killswitched: string[]
}

export type Produce = (tasks: readonly TaskInput[], options?: ProduceOptions) => Promise<ProduceOutcome>

export function createProduce (deps: {
  store: Pick<TaskStore, 'produce'>
  backpressure: Backpressure
  isKillswitched: (taskname: string) => boolean
  metrics: Metrics
  wake: Wake
  now: () => Date
  parametersMaxBytes: number
  maxDelaySec: number
  /** Waiting claims produced tasks may go to (absent: every task is stored pending). */
  handoff?: Handoff
}): Produce {
  const { store, backpressure, metrics } = deps
  const wakeFor = (activations: readonly Activation[]) => { deps.wake(countByQueue(activations)) }

  return async (tasks, options = {}) => {
    if (mayHoldTooLargeParameters(options.receivedBytes, deps.parametersMaxBytes)) {
      const problem = parametersTooLarge(tasks, deps.parametersMaxBytes)
      if (problem !== null) throw new InvalidRequestError(problem)
    }
    const dateProblem = receivedAtProblem(tasks)
    if (dateProblem !== null) throw new InvalidRequestError(dateProblem)
    const now = deps.now()
    const activations = tasks.map(input => toActivation(input, now))
    const priorityProblem = priorityOutOfRange(tasks)
    if (priorityProblem !== null) throw new InvalidRequestError(priorityProblem)
    // Killswitched task names are dropped here, and removed by upkeep if already stored.
    const killswitched = activations.filter(a => deps.isKillswitched(a.taskname)).map(a => a.id)
    metrics.tasksKillswitched.inc(killswitched.length)
    const kept = killswitched.length === 0 ? tasks.map((_, i) => i) : tasks.flatMap((_, i) => deps.isKillswitched((activations[i] as Activation).taskname) ? [] : [i])
    const accepted = kept.map(i => activations[i] as Activation)
    const priorities = kept.map(i => tasks[i]?.priority ?? 0)
    const delayed = new Set(accepted.filter(a => initialStatus(a, now, deps.maxDelaySec) === 'delay').map(a => a.id))
    const refusal = await backpressure.refusal({ pending: accepted.length - delayed.size, delay: delayed.size })
    if (refusal !== null) {
      metrics.produceRefused.inc({ reason: 'backpressure' })
      throw new BackpressureError(refusal)
    }
    const offer = deps.handoff === undefined ? undefined : offerToWaiters(deps.handoff, accepted, priorities, delayed)
    let result
    try {
      result = await store.produce(accepted, now, priorities, offer?.targets)
    } catch (error) {
      offer?.withdraw()
      if (!outcomeUnknown(error)) throw error
      // The insert may have committed: the producer learns the ids to produce again (a stored id
      // is ignored), and waiting claims look, in case the tasks are there.
      wakeFor(accepted.filter(a => !delayed.has(a.id)))
      throw Object.assign(new OutcomeUnknownError(), { ids: activations.map(a => a.id) })
    }
    const inserted = new Set(result.inserted)
    const insertedDelayed = result.inserted.filter(id => delayed.has(id)).length
    backpressure.record({ pending: inserted.size - insertedDelayed, delay: insertedDelayed })
    metrics.tasksProduced.inc(inserted.size)
    metrics.tasksDuplicate.inc(result.duplicates.length)
    offer?.deliver(result.handedOff)
    wakeFor(accepted.filter(a => inserted.has(a.id) && !delayed.has(a.id) && !result.handedOff.has(a.id)))
    return {
      ids: activations.map(a => a.id),
      inserted: inserted.size,
      duplicates: result.duplicates,
      killswitched
    }
  }
}

/** Front ends check the range too (HTTP: the request schema); any other caller is checked here. */
function priorityOutOfRange (tasks: readonly TaskInput[]): string | null {
  for (const [i, task] of tasks.entries()) {
    const p = task.priority
    if (p !== undefined && !(Number.isInteger(p) && p >= PRIORITY_MIN && p <= PRIORITY_MAX)) {
      return `tasks/${i}/priority must be an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX}`
    }
  }
  return null
}
