/**
 * The upkeep steps, in upstream's order. Each is a small job: `runOnce(now)` runs one bounded,
 * set-based statement and returns what it did. The scheduler (upkeep.ts) runs them in this order
 * every pass, so a task can move through several steps in one pass (a retry past its
 * max_attempts fails and is dead-lettered in the same pass).
 */
import type { Released, UpkeepStore } from '../../store/upkeep-store.js'

export interface JobResult {
  /** Transitions made, by name (e.g. { reset: 2, failed: 1 }); all zero when nothing happened. */
  counts: Record<string, number>
  /** Tasks that became claimable, for waking long-polls. */
  released?: Released
}

export interface UpkeepJob {
  readonly name: string
  runOnce (now: Date): Promise<JobResult>
}

export interface JobSettings {
  /** Rows one step may touch per pass. */
  limit: number
  maxProcessingAttempts: number
  /** Longest delay honoured; a longer delay_on_retry is capped. */
  maxDelaySec: number
  /** When the broker started, and how long deadline and claim resets wait after that. */
  startedAt: Date
  deadlineResetSkipAfterStartupSec: number
  /** Task names currently killswitched (read at every pass: the runtime config can change). */
  killswitched: () => readonly string[]
}

/** After a restart, workers get this long to report before their tasks are taken back. */
function inStartupWindow (now: Date, settings: JobSettings): boolean {
  return (now.getTime() - settings.startedAt.getTime()) / 1000 <= settings.deadlineResetSkipAfterStartupSec
}

const SKIPPED: JobResult = { counts: { skipped: 1 } }

export function createUpkeepJobs (store: UpkeepStore, settings: JobSettings): UpkeepJob[] {
  const { limit } = settings
  return [
    {
      name: 'processing_deadline',
      async runOnce (now) {
        if (inStartupWindow(now, settings)) return SKIPPED
        const { reset, failed, released } = await store.resetMissedDeadlines(now, settings.maxProcessingAttempts, limit)
        return { counts: { reset, failed }, released }
      }
    },
    {
      name: 'claim_expiry',
      async runOnce (now) {
        if (inStartupWindow(now, settings)) return SKIPPED
        const { expired, released } = await store.expireClaims(now, limit)
        return { counts: { reset: expired }, released }
      }
    },
    {
      name: 'processing_attempts',
      async runOnce () {
        const { failed } = await store.failExhaustedProcessingAttempts(settings.maxProcessingAttempts, limit)
        return { counts: { failed } }
      }
    },
    {
      name: 'expiry',
      async runOnce (now) {
        const { removed } = await store.removeExpired(now, limit)
        return { counts: { removed } }
      }
    },
    {
      name: 'delay',
      async runOnce (now) {
        const { count, released } = await store.releaseDelayed(now, limit)
        return { counts: { released: count }, released }
      }
    },
    {
      name: 'retry',
      async runOnce (now) {
        const { requeued, delayed, failed, released } = await store.requeueRetries(now, settings.maxDelaySec, limit)
        return { counts: { requeued, delayed, failed }, released }
      }
    },
    {
      name: 'failure',
      async runOnce () {
        const { discarded, deadlettered } = await store.settleFailures(limit)
        return { counts: { discarded, deadlettered } }
      }
    },
    {
      name: 'completed',
      async runOnce () {
        const { removed } = await store.removeCompleted(limit)
        return { counts: { removed } }
      }
    },
    {
      name: 'killswitch',
      async runOnce () {
        const { removed } = await store.removeKillswitched(settings.killswitched(), limit)
        return { counts: { removed } }
      }
    }
  ]
}
