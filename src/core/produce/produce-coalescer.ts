/**
 * Coalesces concurrent small produce calls into one insert. An insert of a few rows costs about
 * as much as one of a few dozen (one round trip, one transaction, one commit), so calls that arrive
 * while a produce statement is running wait for it to end and are then stored together by ONE
 * statement (store: produceMany), each answered as if alone. A lone call waits for nothing.
 *
 * Calls larger than SMALL_CALL_TASKS go straight to the store: their statement is already big. If
 * a coalesced statement fails on its data, each of its calls is tried alone, so one call's bad
 * data never fails the others. When the store is out of reach, or may have committed, every call
 * gets that error (a producer can then produce its ids again safely).
 */
import { StoreUnavailableError } from '../../domain/errors.js'
import type { Activation, ClaimFilter, ProduceResult } from '../../domain/types.js'
import { outcomeUnknown } from '../../store/index.js'
import type { ProduceCall, TaskStore } from '../../store/task-store.js'
import { BatcherClosedError, BatcherFullError, createBatcher } from '../batcher/batcher.js'
import type { Metrics } from '../metrics.js'

/** Calls of at most this many tasks are coalesced. */
export const SMALL_CALL_TASKS = 32
/** Calls per statement: at most 32 × 32 = 1,024 rows. */
const MAX_CALLS_PER_STATEMENT = 32

interface Queued { seq: number, call: ProduceCall }
type Answer = { result: ProduceResult } | { error: unknown }

export function createProduceCoalescer (store: Pick<TaskStore, 'produceMany'>, metrics?: Pick<Metrics, 'batchSize' | 'flushDuration'>) {
  let seq = 0
  const alone = async (call: ProduceCall): Promise<ProduceResult> => (await store.produceMany([call]))[0] as ProduceResult

  async function storeEach (calls: readonly ProduceCall[]): Promise<Answer[]> {
    return await Promise.all(calls.map(async call => {
      try {
        return { result: await alone(call) }
      } catch (error) {
        return { error }
      }
    }))
  }

  const batcher = createBatcher<Queued, number, Answer>({
    name: 'produce',
    maxBatchSize: MAX_CALLS_PER_STATEMENT,
    flushIntervalMs: 0,
    maxQueued: 100_000,
    keyOf: queued => queued.seq,
    retryFailedFlushes: false,
    // batcher="produce": requests per statement, and its time.
    onFlush: ({ size, durationMs, error }) => {
      if (error !== undefined || metrics === undefined) return
      metrics.batchSize.observe({ batcher: 'produce' }, size)
      metrics.flushDuration.observe({ batcher: 'produce' }, durationMs / 1000)
    },
    flush: async (queued) => {
      const calls = queued.map(q => q.call)
      try {
        return (await store.produceMany(calls)).map(result => ({ result }))
      } catch (error) {
        // A store out of reach or a statement that may have committed: the same answer for all.
        if (calls.length === 1 || error instanceof StoreUnavailableError || outcomeUnknown(error)) return calls.map(() => ({ error }))
        return await storeEach(calls)
      }
    }
  })

  return {
    /** TaskStore.produce, coalesced with the calls running beside it. */
    async produce (activations: Activation[], now: Date, priorities?: readonly number[], handoff?: ReadonlyArray<ClaimFilter | undefined>): Promise<ProduceResult> {
      const call: ProduceCall = { activations, now, priorities, handoff }
      // Nothing to store (all killswitched, say) never waits; a large call's statement is big already.
      if (activations.length === 0 || activations.length > SMALL_CALL_TASKS) return await alone(call)
      let answer: Promise<Answer>
      try {
        answer = batcher.add({ seq: seq++, call })
      } catch (error) {
        // Full (a store far behind) or closed (shutting down): the call goes alone.
        if (error instanceof BatcherFullError || error instanceof BatcherClosedError) return await alone(call)
        throw error
      }
      const settled = await answer
      if ('error' in settled) throw settled.error
      return settled.result
    },
    async close (): Promise<void> {
      await batcher.close()
    }
  }
}
