/**
 * Start and stop of the broker's long-lived parts, in the one order the broker lists them
 * (src/core/broker.ts): stopping runs the list front to back, starting runs it back to front.
 *
 * Shutdown has two steps. `quiesce()` tells every part to take no new work (the front end then
 * drains what it has in flight); `stop(deadline)` stops the parts one after the other, all under
 * one deadline. A part that throws is logged and the next one still stops. A part that does not
 * finish by its deadline is left to finish on its own: waiting longer would take the time of the
 * parts after it (a final flush, closing the store). A part may ask for a minimum (`minimumMs`)
 * that it gets even when the budget is spent, so the slack over the deadline is bounded by the
 * sum of the minimums plus a small grace per part.
 */
import type { Logger } from 'pino'

/** An instant on the monotonic clock (`performance.now()`, ms) by which a stop is to be done. */
export type Deadline = number

export function deadlineIn (ms: number): Deadline {
  return performance.now() + ms
}

export function msLeft (deadline: Deadline): number {
  return Math.max(0, deadline - performance.now())
}

export interface StartOptions {
  /** Where workers reach this broker (push mode's callback URLs); push delivery waits for it. */
  publicUrl?: string | undefined
}

export interface Part {
  readonly name: string
  /** Starts background work; may be called again (a later start with more options) and must then do nothing twice. */
  start?: (options: StartOptions) => void
  /** Takes no new work from now on (the first step of shutdown). */
  quiesce?: () => void
  /** Finishes and lets go of what it holds, by `deadline`. */
  stop?: (deadline: Deadline) => Promise<void> | void
  /** Time the stop gets even when the shared deadline has passed (a final flush). */
  minimumMs?: number
}

/** Time a part gets past its deadline before the next part starts stopping (it may be returning just then). */
export const STOP_GRACE_MS = 50

export interface Lifecycle {
  readonly stopping: boolean
  start (options?: StartOptions): void
  quiesce (): void
  stop (deadline: Deadline): Promise<void>
}

export function createLifecycle (parts: readonly Part[], log: Logger): Lifecycle {
  let quiesced = false
  let stopped: Promise<void> | undefined

  async function stopAll (deadline: Deadline): Promise<void> {
    for (const part of parts) {
      if (part.stop === undefined) continue
      const partDeadline = Math.max(deadline, deadlineIn(part.minimumMs ?? 0))
      log.debug({ part: part.name, msLeft: Math.round(msLeft(partDeadline)) }, 'stopping')
      const stopping = Promise.resolve().then(() => part.stop?.(partDeadline))
      stopping.catch((error: unknown) => log.error({ err: error, part: part.name }, 'stopping a part failed; the others still stop'))
      if (!await settlesBy(stopping, partDeadline + STOP_GRACE_MS)) {
        log.warn({ part: part.name }, 'a part did not stop within the shutdown budget; not waiting for it any longer')
      }
    }
  }

  return {
    get stopping () { return quiesced },

    start (options = {}) {
      if (quiesced) return
      for (const part of [...parts].reverse()) part.start?.(options)
    },

    quiesce () {
      if (quiesced) return
      quiesced = true
      for (const part of parts) {
        try {
          part.quiesce?.()
        } catch (error) {
          log.error({ err: error, part: part.name }, 'a part failed to stop taking work; the others still do')
        }
      }
    },

    stop (deadline) {
      this.quiesce()
      stopped ??= stopAll(deadline)
      return stopped
    }
  }
}

/** True when `promise` settles (either way) by `deadline`. */
async function settlesBy (promise: Promise<unknown>, deadline: Deadline): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      promise.then(() => true, () => true),
      new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), msLeft(deadline)) })
    ])
  } finally {
    clearTimeout(timer)
  }
}
