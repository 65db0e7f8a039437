/**
 * Queue controls: list the queues (counts, oldest pending age, settings) and change a queue's
 * settings. Claims and pushes enforce the settings in their statements (store/statements/claim.ts);
 * a change that may make tasks claimable again (resume, a cap raised or cleared) wakes the
 * long-polls of the queues it covers, here and on other brokers.
 */
import { InvalidRequestError } from '../domain/errors.js'
import type { Logger } from 'pino'
import type { QueueListing, QueueRestrictions, QueueSettings, QueueSettingsChange, QueueStore } from '../store/index.js'
import type { Metrics } from './metrics.js'
import type { Wake } from './wake.js'

export type { QueueListing, QueueSettings, QueueSettingsChange }

export interface Queues {
  list (): Promise<QueueListing>
  /** The row's settings after the change, or null when nothing is left set. */
  change (change: QueueSettingsChange): Promise<QueueSettings | null>
}

export function createQueues (deps: {
  store: QueueStore
  wake: Wake
  metrics: Metrics
  now: () => Date
  /** A change was made (the store has looked at the restrictions again): tell the other brokers. */
  changed: () => void
}): Queues {
  deps.metrics.trackQueueControls(() => deps.store.controls())
  return {
    list: async () => await deps.store.list(deps.now()),

    async change (change) {
      if (change.namespace === '') throw new InvalidRequestError('body/namespace must not be empty: leave it out to set the application-wide row')
      const settings = await deps.store.change(change)
      deps.changed()
      // Waking costs one small statement and wakes only what is pending; a change that tightens
      // settings wakes claims that then find nothing, which is harmless.
      deps.wake(await deps.store.pending(change.application, change.namespace))
      return settings
    }
  }
}

/**
 * Keeps the store's view of queue restrictions (whether claims may skip the queue-control steps)
 * fresh: looks at once on `lookNow` (another broker changed a setting) and every `everyMs` (a
 * notification can be lost). A stale view costs no correctness (see store/queue-restrictions.ts).
 */
export function watchQueueRestrictions (deps: { restrictions: QueueRestrictions, everyMs: number, log: Logger }) {
  let timer: ReturnType<typeof setInterval> | undefined
  let looking: Promise<void> | undefined
  // A failed look is logged; the store then keeps the full statement.
  const look = (): Promise<void> => deps.restrictions.refresh().then(() => {}, (error: unknown) => {
    deps.log.debug({ err: error }, 'queue restrictions not looked at; claims keep the queue-control steps')
  })
  // A tick while the last periodic look is still out (a slow database) adds none.
  const tick = (): void => {
    looking ??= look().finally(() => { looking = undefined })
  }
  return {
    lookNow: (): void => { look().catch(() => {}) },
    start (): void {
      timer ??= setInterval(tick, deps.everyMs)
      timer.unref()
    },
    stop (): void {
      clearInterval(timer)
      timer = undefined
    }
  }
}
