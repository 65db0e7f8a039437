/**
 * Queue controls: list the queues (counts, oldest pending age, settings) and change a queue's
 * settings. Claims and pushes enforce the settings in their statements (store/statements/claim.ts);
 * a change that may make tasks claimable again (resume, a cap raised or cleared) wakes the
 * long-polls of the queues it covers, here and on other brokers.
 */
import { InvalidRequestError } from '../domain/errors.js'
import type { QueueListing, QueueSettings, QueueSettingsChange, QueueStore } from '../store/index.js'
import type { Metrics } from './metrics.js'
import type { Wake } from './wake.js'

export type { QueueListing, QueueSettings, QueueSettingsChange }

export interface Queues {
  list (): Promise<QueueListing>
  /** The row's settings after the change, or null when nothing is left set. */
  change (change: QueueSettingsChange): Promise<QueueSettings | null>
}

export function createQueues (deps: { store: QueueStore, wake: Wake, metrics: Metrics, now: () => Date }): Queues {
  deps.metrics.trackQueueControls(() => deps.store.controls())
  return {
    list: async () => await deps.store.list(deps.now()),

    async change (change) {
      if (change.namespace === '') throw new InvalidRequestError('body/namespace must not be empty: leave it out to set the application-wide row')
      const settings = await deps.store.change(change)
      // Waking costs one small statement and wakes only what is pending; a change that tightens
      // settings wakes claims that then find nothing, which is harmless.
      deps.wake(await deps.store.pending(change.application, change.namespace))
      return settings
    }
  }
}
