/** Schedule timing: cron fields, aliases, timezones with their DST transitions, intervals, catch-up windows. */
import t from 'tap'
import { parseTiming } from '../../src/core/schedules/timing.js'

const isoAll = (dates: Date[]) => dates.map(d => d.toISOString())
const at = (iso: string) => new Date(iso)

t.test('five fields, six with seconds, and the @ aliases', async (t) => {
  t.same(isoAll(parseTiming({ cron: '*/15 * * * *' }).upcoming(at('2026-01-01T10:07:00Z'), 3)),
    ['2026-01-01T10:15:00.000Z', '2026-01-01T10:30:00.000Z', '2026-01-01T10:45:00.000Z'])
  t.same(isoAll(parseTiming({ cron: '*/20 * * * * *' }).upcoming(at('2026-01-01T10:00:05Z'), 2)),
    ['2026-01-01T10:00:20.000Z', '2026-01-01T10:00:40.000Z'], 'a sixth field is seconds')
  t.same(isoAll(parseTiming({ cron: '@hourly' }).upcoming(at('2026-01-01T10:07:00Z'), 1)), ['2026-01-01T11:00:00.000Z'])
  t.same(isoAll(parseTiming({ cron: '@daily' }).upcoming(at('2026-01-01T10:07:00Z'), 1)), ['2026-01-02T00:00:00.000Z'])
  t.same(isoAll(parseTiming({ cron: '@weekly' }).upcoming(at('2026-01-01T10:07:00Z'), 1)), ['2026-01-04T00:00:00.000Z'], 'Sundays')
  t.equal(parseTiming({ cron: '0 0 * * *', timezone: 'utc' }).timezone, 'UTC', 'the timezone is stored by its canonical name')
  t.equal(parseTiming({ cron: '0 0 * * *', timezone: 'Europe/Berlin' }).next(at('2026-01-01T12:00:00Z'))?.toISOString(), '2026-01-01T23:00:00.000Z',
    'midnight in Berlin is 23:00 UTC in winter')
})

t.test('a bad expression, timing or timezone is an error naming the field', async (t) => {
  const cases: Array<[Parameters<typeof parseTiming>[0], RegExp]> = [
    [{ cron: '* * *' }, /^body\/cron must have five fields/],
    [{ cron: '0 0 0 * * * 2027' }, /^body\/cron must have five fields/],
    [{ cron: '@fortnightly' }, /^body\/cron must have five fields/],
    [{ cron: '61 * * * *' }, /^body\/cron is not a valid cron expression: .*minute/],
    [{ cron: '0 0 30 2 *' }, /^body\/cron never fires/],
    [{ cron: '0 0 * * *', timezone: 'Mars/Olympus' }, /^body\/timezone must be an IANA timezone/],
    [{ cron: '0 0 * * *', timezone: '+02:00' }, /^body\/timezone must be an IANA timezone/],
    [{ every_sec: 0 }, /^body\/every_sec must be a whole number/],
    [{ cron: '0 * * * *', every_sec: 60 }, /^body must have exactly one of cron and every_sec/],
    [{}, /^body must have exactly one of cron and every_sec/]
  ]
  for (const [spec, message] of cases) {
    t.throws(() => parseTiming(spec), { code: 'TASKBROKER_INVALID_REQUEST', message }, JSON.stringify(spec))
  }
  t.throws(() => parseTiming({ cron: 'x' }, 'schedules/nightly'), { message: /^schedules\/nightly\/cron / }, 'the file names its schedule')
})

t.test('Europe/Berlin spring forward: a skipped wall time fires once, right after the gap', async (t) => {
  // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
  const daily = parseTiming({ cron: '30 2 * * *', timezone: 'Europe/Berlin' })
  t.same(isoAll(daily.upcoming(at('2026-03-27T12:00:00Z'), 3)),
    ['2026-03-28T01:30:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z'])
  const hourly = parseTiming({ cron: '0 * * * *', timezone: 'Europe/Berlin' })
  t.same(isoAll(hourly.upcoming(at('2026-03-28T23:30:00Z'), 4)),
    ['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z', '2026-03-29T03:00:00.000Z'],
    'hourly stays one fire per real hour across the gap')
})

t.test('Europe/Berlin fall back: a repeated wall time fires once, hourly fires every real hour', async (t) => {
  // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
  const daily = parseTiming({ cron: '30 2 * * *', timezone: 'Europe/Berlin' })
  t.same(isoAll(daily.upcoming(at('2026-10-24T12:00:00Z'), 2)), ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z'])
  const hourly = parseTiming({ cron: '0 * * * *', timezone: 'Europe/Berlin' })
  t.same(isoAll(hourly.upcoming(at('2026-10-24T23:30:00Z'), 4)),
    ['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T03:00:00.000Z'])
  t.same(isoAll(daily.between(at('2026-10-24T00:00:00Z'), at('2026-10-27T00:00:00Z'), 10).windows),
    ['2026-10-24T00:30:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z'], 'catching up over the transition: once a day')
})

t.test('intervals are whole multiples of every_sec since the epoch', async (t) => {
  const every = parseTiming({ every_sec: 300 })
  t.equal(every.next(at('2026-01-01T10:07:12.345Z'))?.toISOString(), '2026-01-01T10:10:00.000Z')
  t.equal(every.next(at('2026-01-01T10:10:00.000Z'))?.toISOString(), '2026-01-01T10:15:00.000Z', 'strictly after')
  t.equal(every.timezone, 'UTC')
})

t.test('between: the latest windows up to the bound, and how many earlier ones were left out', async (t) => {
  const every = parseTiming({ every_sec: 60 })
  const got = every.between(at('2026-01-01T10:00:00Z'), at('2026-01-01T10:09:30Z'), 3)
  t.same(isoAll(got.windows), ['2026-01-01T10:07:00.000Z', '2026-01-01T10:08:00.000Z', '2026-01-01T10:09:00.000Z'])
  t.equal(got.earlier, 7)
  const cron = parseTiming({ cron: '* * * * *' })
  const same = cron.between(at('2026-01-01T10:00:00Z'), at('2026-01-01T10:09:30Z'), 3)
  t.same(isoAll(same.windows), isoAll(got.windows), 'cron and interval agree')
  t.equal(same.earlier, 7)
  t.same(cron.between(at('2026-01-01T10:00:00Z'), at('2026-01-01T10:00:00Z'), 3).windows.map(d => d.toISOString()),
    ['2026-01-01T10:00:00.000Z'], 'a window at the end is included')
  t.same(every.between(at('2026-01-01T10:00:01Z'), at('2026-01-01T10:00:59Z'), 3), { windows: [], earlier: 0 })
})
