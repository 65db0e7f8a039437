/**
 * Firing due schedules, run by the upkeep leader every pass. For each schedule whose next_fire_at
 * has come: decide which windows to fire (catch_up, overlap), produce them through the normal
 * produce path with ids `sched:<name>:<window>`, THEN move next_fire_at on (compare and set).
 *
 * Exactly once: a crash, a failover or a second broker between the produce and the move makes the
 * next fire produce the same ids again, which produce ignores while the task is stored; the move
 * succeeds for one of them only. (A task that already finished and left the store in that gap
 * would be produced again: the gap is one statement long.)
 */
import type { Logger } from 'pino'
import { InvalidRequestError } from '../../domain/errors.js'
import type { ScheduleRecord, ScheduleStore } from '../../store/index.js'
import type { Metrics } from '../metrics.js'
import type { Produce } from '../produce/produce.js'
import { fireId, fireInput, type ScheduleTask } from './spec.js'
import { parseTiming, type Timing } from './timing.js'

export interface FiringSettings {
  /** catch_up: all fires at most this many windows of one schedule per pass. */
  catchUpMax: number
  /** catch_up: none fires a window at most this late. */
  misfireGraceSec: number
  /** Schedules one pass looks at. */
  limit: number
}

export interface FireCounts {
  /** Windows produced (or found already produced: a fire retried after a failover). */
  fired: number
  /** Windows left out: catch_up, overlap, killswitch, a task the produce path refused. */
  skipped: number
  /** Schedules whose fire failed (store down, backpressure): they stay due and are tried again next pass. */
  failed: number
}

/** What the fire of one schedule decided. */
interface Plan {
  windows: Date[]
  skipped: Record<string, number>
  next: Date | null
}

export function plan (row: Pick<ScheduleRecord, 'catchUp' | 'overlap' | 'lastTaskStatus'>, timing: Timing, from: Date, now: Date, settings: FiringSettings): Plan {
  const all = row.catchUp === 'all'
  const { windows: due, earlier } = timing.between(from, now, all ? settings.catchUpMax : 1)
  const skipped: Record<string, number> = { missed: earlier }
  let windows = row.catchUp === 'none' ? due.filter(at => now.getTime() - at.getTime() <= settings.misfireGraceSec * 1000) : due
  skipped.missed = (skipped.missed ?? 0) + due.length - windows.length
  // The last fire's task is still in the store (any status but gone): skip is asked for.
  if (row.overlap === 'skip' && windows.length > 0) {
    const live = row.lastTaskStatus !== null && row.lastTaskStatus !== 'deadletter'
    const keep = live ? 0 : 1
    skipped.overlap = windows.length - keep
    windows = windows.slice(windows.length - keep)
  }
  return { windows, skipped, next: timing.next(now) }
}

export function createFiring (deps: {
  store: Pick<ScheduleStore, 'due' | 'advance'>
  produce: Produce
  metrics: Metrics
  log: Logger
  settings: FiringSettings
}) {
  const { store, metrics, log, settings } = deps

  function skip (counts: FireCounts, reasons: Record<string, number>) {
    for (const [reason, n] of Object.entries(reasons)) {
      if (n <= 0) continue
      counts.skipped += n
      metrics.scheduleSkips.inc({ reason }, n)
    }
  }

  async function fireOne (row: ScheduleRecord, now: Date, counts: FireCounts): Promise<void> {
    const from = row.nextFireAt as Date
    let timing: Timing
    try {
      timing = parseTiming({ cron: row.cron, every_sec: row.everySec, timezone: row.timezone }, `schedules/${row.name}`)
    } catch (error) {
      // Stored by an older broker, or a timezone this runtime does not know: parked, not retried every pass.
      log.error({ schedule: row.name, reason: (error as Error).message }, 'schedule cannot be read; it stops firing until replaced')
      await store.advance(row.name, from, null, null)
      return
    }
    const decided = plan(row, timing, from, now, settings)
    skip(counts, decided.skipped)
    let last: Date | undefined
    if (decided.windows.length > 0) {
      try {
        const outcome = await deps.produce(decided.windows.map(at => fireInput(row.name, row.task as ScheduleTask, at)))
        const killswitched = new Set(outcome.killswitched)
        skip(counts, { killswitch: killswitched.size })
        for (const at of decided.windows) {
          if (killswitched.has(fireId(row.name, at))) continue
          last = at
          counts.fired++
          metrics.scheduleFires.inc({ how: 'upkeep' })
          metrics.scheduleLag.observe(Math.max(0, now.getTime() - at.getTime()) / 1000)
        }
      } catch (error) {
        // A task the produce path refuses for good (e.g. parameters too large) must not block the
        // schedule pass after pass; anything else (store down, backpressure) is tried again.
        if (!(error instanceof InvalidRequestError)) throw error
        log.error({ schedule: row.name, reason: error.message }, 'schedule fire refused; its windows are skipped')
        skip(counts, { refused: decided.windows.length })
      }
    }
    const moved = await store.advance(row.name, from, decided.next, last === undefined ? null : { at: last, taskId: fireId(row.name, last) })
    if (!moved) log.info({ schedule: row.name }, 'schedule moved on by another fire or a replace meanwhile')
  }

  return {
    /** Fires every due schedule (up to the limit); a failing one is logged and the others still fire. */
    async fireDue (now: Date): Promise<FireCounts> {
      const counts: FireCounts = { fired: 0, skipped: 0, failed: 0 }
      for (const row of await store.due(now, settings.limit)) {
        try {
          await fireOne(row, now, counts)
        } catch (error) {
          counts.failed++
          log.warn({ err: error, schedule: row.name }, 'schedule fire failed; it stays due')
        }
      }
      return counts
    }
  }
}
