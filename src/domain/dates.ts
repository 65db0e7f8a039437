/**
 * A producer's `received_at`, and the instants a task's `delay` and `expires` make of it.
 *
 * The schema's `date-time` format (RFC 3339) lets through what no store or worker can hold: a
 * leap second (23:59:60), year 0000, or a year-9999 instant that a delay pushes into year 10000.
 * Those are a 400 naming the field here, never a failed statement. The range is upstream's: a
 * protobuf Timestamp runs from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
 *
 * Delays and expiry count from `received_at`, or from the broker's clock when `received_at` lies
 * ahead of it (src/store/task-store.ts): a producer's date never parks a task beyond `now + delay`
 * (itself capped at TASKBROKER_MAX_DELAY_SEC) nor keeps it alive beyond `now + expires`.
 */

export const EARLIEST_MS = Date.parse('0001-01-01T00:00:00.000Z')
export const LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z')
const RANGE = '0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z'

// What ajv-formats' date-time accepts: separator T, t or a space; z or an offset (±hh, ±hhmm, ±hh:mm).
const DATE_TIME = /^(\d{4})-(\d\d)-(\d\d)[Tt\s](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d)(?::?(\d\d))?)?$/

/** `text` as milliseconds since the epoch, or why it is not an instant the broker can keep. */
export function parseTimestamp (text: string): number | string {
  const m = DATE_TIME.exec(text)
  if (m === null) return 'is not an RFC 3339 date-time'
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number]
  if (second > 59) return 'has second 60: leap seconds cannot be stored'
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59) return 'is not a date-time'
  const date = new Date(0)
  date.setUTCFullYear(year, month - 1, day) // Date.UTC would read years 0–99 as 1900–1999
  date.setUTCHours(hour, minute, second, Math.floor(Number(m[7] ?? 0) * 1000))
  const sign = m[9] === '-' ? -1 : 1
  const offsetMin = m[9] === undefined ? 0 : sign * (Number(m[10]) * 60 + Number(m[11] ?? 0))
  const ms = date.getTime() - offsetMin * 60_000
  if (!(ms >= EARLIEST_MS && ms <= LATEST_MS)) return `is outside ${RANGE}`
  return ms
}

function daysIn (year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  return month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31
}

interface DatedTask { received_at?: string, delay?: number, expires?: number }

/**
 * The first task whose `received_at` the broker cannot keep, or which `delay` or `expires` carry
 * past the last representable instant, as a validation message naming the field; or null.
 */
export function receivedAtProblem (tasks: readonly DatedTask[]): string | null {
  for (let i = 0; i < tasks.length; i++) {
    const task = tasks[i] as DatedTask
    if (task.received_at === undefined) continue
    const field = `body/tasks/${i}/received_at`
    const ms = parseTimestamp(task.received_at)
    if (typeof ms === 'string') return `${field} ${ms}`
    for (const key of ['delay', 'expires'] as const) {
      const seconds = task[key]
      if (seconds !== undefined && ms + seconds * 1000 > LATEST_MS) {
        return `${field} plus ${key} (${seconds} s) passes 9999-12-31T23:59:59.999Z, the last instant a task may name`
      }
    }
  }
  return null
}
