/**
 * The upkeep loop: every interval, one pass runs every job in order (see jobs.ts). Passes never
 * overlap (a setTimeout chain, not setInterval), timers never keep the process alive, and with
 * several brokers on one database only the holder of an advisory lock runs passes.
 *
 * A failing job is logged and skipped; the others still run. `runOnce(now)` is the whole pass, so
 * tests drive upkeep with their own clock instead of sleeping.
 */
import type { Logger } from 'pino'
import type { LeaderLock } from '../../store/index.js'
import type { Metrics } from '../metrics.js'
import type { Released } from '../../store/upkeep-store.js'
import type { UpkeepJob } from './jobs.js'

export interface PassResult {
  /** False when another broker holds the upkeep lock (nothing was run). */
  leader: boolean
  /** `job.transition` → count, for every job that ran. */
  counts: Record<string, number>
  /** Jobs that threw, by name. */
  errors: Record<string, unknown>
}

export type Upkeep = ReturnType<typeof createUpkeep>

/** True when `promise` settles (either way) within `ms`. */
async function settlesWithin (promise: Promise<unknown>, ms: number): Promise<boolean> {
  if (ms === Infinity) {
    await promise.catch(() => {})
    return true
  }
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      promise.then(() => true, () => true),
      new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), Math.max(0, ms)) })
    ])
  } finally {
    clearTimeout(timer)
  }
}

export function createUpkeep (deps: {
  jobs: UpkeepJob[]
  intervalMs: number
  lock: LeaderLock
  log: Logger
  metrics: Metrics
  now: () => Date
  onReleased: (released: Released) => void
}) {
  const { jobs, log, metrics, lock } = deps
  let timer: ReturnType<typeof setTimeout> | undefined
  let running: Promise<PassResult> | undefined
  let stopped = true
  let lastCompletedAt: number | undefined

  /** Waking long-polls must not count as a failure of the job whose changes are already saved. */
  function wake (released: Released) {
    try {
      deps.onReleased(released)
    } catch (error) {
      log.warn({ err: error }, 'upkeep: waking claimers failed')
    }
  }

  async function runOnce (now: Date): Promise<PassResult> {
    const result: PassResult = { leader: false, counts: {}, errors: {} }
    const endTimer = metrics.upkeepPassDuration.startTimer()
    try {
      result.leader = await lock.acquire()
    } catch (error) {
      result.errors.lock = error
      log.warn({ err: error }, 'upkeep: cannot take the upkeep lock')
    }
    metrics.upkeepLeader.set(result.leader ? 1 : 0)
    if (result.leader) {
      for (const job of jobs) {
        try {
          const { counts, released } = await job.runOnce(now)
          for (const [transition, count] of Object.entries(counts)) {
            result.counts[`${job.name}.${transition}`] = count
            if (count > 0 && transition !== 'skipped') metrics.upkeepTransitions.inc({ job: job.name, transition }, count)
          }
          if (released !== undefined && released.length > 0) wake(released)
        } catch (error) {
          result.errors[job.name] = error
          metrics.upkeepFailures.inc({ job: job.name })
          log.warn({ err: error, job: job.name }, 'upkeep job failed; the others still run')
        }
      }
    }
    endTimer()
    lastCompletedAt = Date.now()
    metrics.upkeepLastPass.set(lastCompletedAt / 1000)
    const changed = Object.entries(result.counts).filter(([name, n]) => n > 0 && !name.endsWith('.skipped'))
    if (changed.length > 0) log.info(Object.fromEntries(changed), 'upkeep pass')
    return result
  }

  function schedule () {
    if (stopped) return
    timer = setTimeout(() => {
      timer = undefined
      running = runOnce(deps.now()).finally(() => { running = undefined; schedule() })
    }, deps.intervalMs)
    timer.unref()
  }

  return {
    runOnce,
    start () {
      if (!stopped) return
      stopped = false
      lastCompletedAt = Date.now()
      schedule()
    },
    /**
     * Stops scheduling, waits for a pass in progress (at most `timeoutMs`: a pass stuck on an
     * unreachable store is left to fail on its own) and gives up the lock.
     */
    async stop (timeoutMs = Infinity) {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      const pass = running
      if (pass !== undefined && !await settlesWithin(pass, timeoutMs)) {
        log.warn({ timeoutMs }, 'upkeep: a pass is still running at shutdown; not waiting for it any longer')
      }
      await lock.release()
    },
    /** Why the broker should not count as ready, or null: upkeep has not completed a pass in time. */
    lateReason (nowMs = Date.now()): string | null {
      if (stopped || lastCompletedAt === undefined) return null
      const allowedMs = Math.max(5_000, deps.intervalMs * 5)
      const since = nowMs - lastCompletedAt
      return since > allowedMs ? `upkeep has not completed a pass for ${Math.round(since / 1000)} s` : null
    }
  }
}
