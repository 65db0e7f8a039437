/**
 * Knows when the store has been down long enough that waiting for a flush is pointless. With every
 * status flush failing to reach the store for `knownDownAfterMs`, a report awaiting a flushed ack
 * is refused at once (503) instead of after the ack timeout: the outage is no blip (a killed
 * connection is back within ~50 ms, the first retry), so waiting would only hold the worker for
 * seconds to tell it the same.
 */
import { StoreUnavailableError } from '../../domain/errors.js'
import { isStoreUnavailable } from '../../store/index.js'

export const KNOWN_DOWN_AFTER_MS = 500

export interface StoreDownBreaker {
  /** After each flush attempt: `error` undefined when it succeeded. */
  recordFlush (error: unknown): void
  /** Throws StoreUnavailableError when the store has been unreachable for `knownDownAfterMs`. */
  throwIfKnownDown (): void
}

export function createStoreDownBreaker (options: { knownDownAfterMs?: number, now?: () => number } = {}): StoreDownBreaker {
  const knownDownAfterMs = options.knownDownAfterMs ?? KNOWN_DOWN_AFTER_MS
  const now = options.now ?? Date.now
  /** When flushes began failing to reach the store; undefined after one succeeded. */
  let downSince: number | undefined
  return {
    recordFlush (error) {
      if (error === undefined) downSince = undefined
      // Any other failure (a bad report) says nothing about the store being reachable.
      else if (isStoreUnavailable(error)) downSince ??= now()
    },
    throwIfKnownDown () {
      if (downSince === undefined || now() - downSince < knownDownAfterMs) return
      throw new StoreUnavailableError(`unreachable since ${new Date(downSince).toISOString()}; status reports are not being written`)
    }
  }
}
