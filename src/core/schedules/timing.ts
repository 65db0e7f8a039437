/**
 * When a schedule fires: a cron expression in an IANA timezone (croner does the calendar and the
 * DST transitions) or a fixed interval. Interval windows are whole multiples of `every_sec` since
 * the Unix epoch, so every broker, and every replace of the schedule, computes the same windows
 * (and the same task ids).
 *
 * DST, as croner handles it: a wall time skipped by the spring transition fires at the first
 * instant after the gap (02:30 in Europe/Berlin on the last Sunday of March fires at 03:00 CEST);
 * a wall time that occurs twice in the autumn fires once, at its first occurrence.
 */
import { Cron } from 'croner'
import { InvalidRequestError } from '../../domain/errors.js'

export interface TimingSpec {
  cron?: string | null | undefined
  every_sec?: number | null | undefined
  timezone?: string | undefined
}

export interface Timing {
  /** The canonical timezone name (UTC for intervals). */
  readonly timezone: string
  /** The first window strictly after `after`, or null when the expression never fires again. */
  next (after: Date): Date | null
  /** Up to `n` windows strictly after `after`, oldest first. */
  upcoming (after: Date, n: number): Date[]
  /**
   * The windows in [from, to]: the latest `limit` of them, oldest first, and how many earlier ones
   * there were besides (counted up to MISSED_COUNT_CAP).
   */
  between (from: Date, to: Date, limit: number): { windows: Date[], earlier: number }
}

/** Counting the windows left out of a very long downtime stops here (a per-second cron down for a month). */
export const MISSED_COUNT_CAP = 10_000

const ALIASES = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'])

/** `body` for API requests, `schedules.<name>` for the runtime config file: where a problem is reported. */
function problem (where: string, field: string, message: string): Error {
  return new InvalidRequestError(`${where}/${field} ${message}`)
}

/** The canonical name of an IANA timezone, or null when the runtime does not know it. */
export function canonicalTimezone (name: string): string | null {
  // Offsets ("+02:00") are accepted by Intl but are not IANA names: refused.
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(name)) return null
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone
  } catch {
    return null
  }
}

/**
 * The timing of a schedule, or an InvalidRequestError naming the field (`<where>/cron`,
 * `<where>/timezone`, `<where>/every_sec`). Exactly one of cron and every_sec must be given.
 */
export function parseTiming (spec: TimingSpec, where = 'body'): Timing {
  const hasCron = spec.cron !== undefined && spec.cron !== null
  const hasEvery = spec.every_sec !== undefined && spec.every_sec !== null
  if (hasCron === hasEvery) throw new InvalidRequestError(`${where} must have exactly one of cron and every_sec`)
  const timezone = canonicalTimezone(spec.timezone ?? 'UTC')
  if (timezone === null) throw problem(where, 'timezone', `must be an IANA timezone name such as Europe/Berlin (got ${JSON.stringify(spec.timezone)})`)
  if (hasEvery) return intervalTiming(spec.every_sec as number, where)
  return cronTiming(spec.cron as string, timezone, where)
}

function intervalTiming (everySec: number, where: string): Timing {
  if (!Number.isInteger(everySec) || everySec < 1 || everySec > 31_536_000) {
    throw problem(where, 'every_sec', `must be a whole number of seconds from 1 to 31536000 (got ${everySec})`)
  }
  const step = everySec * 1000
  const next = (after: Date) => new Date((Math.floor(after.getTime() / step) + 1) * step)
  return {
    timezone: 'UTC',
    next,
    upcoming (after, n) {
      const out: Date[] = []
      for (let at = next(after); out.length < n; at = next(at)) out.push(at)
      return out
    },
    between (from, to, limit) {
      const first = Math.ceil(from.getTime() / step)
      const last = Math.floor(to.getTime() / step)
      if (last < first) return { windows: [], earlier: 0 }
      const start = Math.max(first, last - limit + 1)
      const windows: Date[] = []
      for (let k = start; k <= last; k++) windows.push(new Date(k * step))
      return { windows, earlier: Math.min(start - first, MISSED_COUNT_CAP) }
    }
  }
}

function cronTiming (expression: string, timezone: string, where: string): Timing {
  const text = expression.trim()
  const fields = text.split(/\s+/).length
  if (text.startsWith('@') ? !ALIASES.has(text.toLowerCase()) : fields !== 5 && fields !== 6) {
    throw problem(where, 'cron', `must have five fields (minute hour day month weekday), six with seconds first, or be one of ${[...ALIASES].join(', ')} (got ${JSON.stringify(expression)})`)
  }
  let cron: Cron
  try {
    cron = new Cron(text, { timezone })
  } catch (error) {
    throw problem(where, 'cron', `is not a valid cron expression: ${(error as Error).message.replace(/^CronPattern: /, '')}`)
  }
  // An expression such as "0 0 30 2 *" (February 30th) parses but never fires.
  if (cron.nextRun(new Date()) === null) throw problem(where, 'cron', `never fires (got ${JSON.stringify(expression)})`)
  const next = (after: Date) => cron.nextRun(after)
  return {
    timezone,
    next,
    upcoming: (after, n) => cron.nextRuns(n, after),
    between (from, to, limit) {
      // previousRuns is strictly before its reference: 1 ms later includes a window at `to`.
      const windows = cron.previousRuns(limit, new Date(to.getTime() + 1)).filter(at => at >= from).reverse()
      let earlier = 0
      const oldest = windows[0]
      if (oldest !== undefined) {
        for (let at = next(new Date(from.getTime() - 1)); at !== null && at < oldest && earlier < MISSED_COUNT_CAP; at = next(at)) earlier++
      }
      return { windows, earlier }
    }
  }
}
