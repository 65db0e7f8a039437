/**
 * `.env.example` and the README's settings table are written from the settings table: they are up
 * to date, and a setting added to a table reaches both (and the parser and the warnings).
 */
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ENV_EXAMPLE, README, renderEnvExample, renderReadmeTable, staleFiles } from '../../scripts/settings.js'
import { loadSettings } from '../../src/config/load.js'
import { configWarnings } from '../../src/config/config.js'
import { closestSetting, knownVariables } from '../../src/config/names.js'
import { group, int, oneOf } from '../../src/config/setting.js'
import { SETTINGS } from '../../src/config/settings.js'

const ROOT = new URL('../..', import.meta.url).pathname

/** The broker's table with one more group: a setting someone is adding. */
const WITH_NEW_SETTING = {
  ...SETTINGS,
  widgets: group('Widgets', {
    perRequest: int('TASKBROKER_WIDGETS_PER_REQUEST', 3, 1, 9, 'widgets handed out per request'),
    colour: oneOf('TASKBROKER_WIDGET_COLOUR', ['red', 'blue'], 'red', 'colour of new widgets')
  })
}

t.test('.env.example and the README\'s settings table are up to date (npx tsx scripts/settings.ts --write)', async (t) => {
  t.same(staleFiles(ROOT), [])
})

t.test('--check exits 0 on this checkout and 1 naming the file on a stale copy', async (t) => {
  const check = (root?: string) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/settings.ts', '--check', ...(root === undefined ? [] : [root])],
    { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  const fresh = check()
  t.equal(fresh.status, 0, fresh.stderr)

  const copy = mkdtempSync(join(tmpdir(), 'tb-settings-'))
  cpSync(join(ROOT, README), join(copy, README))
  writeFileSync(join(copy, ENV_EXAMPLE), renderEnvExample(SETTINGS).replace('TASKBROKER_STATUS_BATCH_SIZE=256', 'TASKBROKER_STATUS_BATCH_SIZE=128'))
  const stale = check(copy)
  t.equal(stale.status, 1)
  t.match(stale.stderr, /^\.env\.example is out of date/m)
  t.notMatch(stale.stderr, /README/)
})

t.test('every setting of the broker is in .env.example and the README table, with its default and bounds', async (t) => {
  const example = renderEnvExample(SETTINGS)
  const readme = renderReadmeTable(SETTINGS)
  t.match(example, /^TASKBROKER_CLAIM_MAX_WAIT_MS=30000$/m)
  t.match(example, /^# largest `wait_ms` .*\[0–300000\]$/m)
  t.match(readme, /^\| `TASKBROKER_CLAIM_MAX_WAIT_MS` \| 30000 \| 0–300000 \| largest `wait_ms`/m)
  t.match(readme, /^\| `TASKBROKER_DATABASE_URL` \/ `DATABASE_URL` \| unset \|/m, 'a fallback variable shares its row')
  t.match(example, /^# DATABASE_URL=$/m)
  t.match(example, /^# TASKBROKER_RUN_MIGRATIONS=$/m, 'unset by default: commented out')
})

t.test('a setting added to the table is parsed, documented and known to the warnings', async (t) => {
  const example = renderEnvExample(WITH_NEW_SETTING)
  t.match(example, /# --- Widgets ---\n# widgets handed out per request \[1–9\]\nTASKBROKER_WIDGETS_PER_REQUEST=3\n# colour of new widgets \[red \| blue\]\nTASKBROKER_WIDGET_COLOUR=red\n$/)
  const readme = renderReadmeTable(WITH_NEW_SETTING)
  t.match(readme, /^\| \*\*Widgets\*\* \| \| \| \|$/m)
  t.match(readme, /^\| `TASKBROKER_WIDGETS_PER_REQUEST` \| 3 \| 1–9 \| widgets handed out per request \|$/m)
  t.match(readme, /^\| `TASKBROKER_WIDGET_COLOUR` \| red \| red, blue \| colour of new widgets \|$/m)

  const stale = mkdtempSync(join(tmpdir(), 'tb-settings-'))
  cpSync(join(ROOT, README), join(stale, README))
  cpSync(join(ROOT, ENV_EXAMPLE), join(stale, ENV_EXAMPLE))
  t.same(staleFiles(stale, WITH_NEW_SETTING), [ENV_EXAMPLE, README], 'the committed files lack it until --write')

  t.match(loadSettings(WITH_NEW_SETTING, {}).widgets, { perRequest: 3, colour: 'red' })
  t.match(loadSettings(WITH_NEW_SETTING, { TASKBROKER_WIDGETS_PER_REQUEST: '7', TASKBROKER_WIDGET_COLOUR: 'blue' }).widgets, { perRequest: 7, colour: 'blue' })
  t.throws(() => loadSettings(WITH_NEW_SETTING, { TASKBROKER_WIDGETS_PER_REQUEST: '10' }),
    { name: 'ConfigError', message: 'Invalid configuration: TASKBROKER_WIDGETS_PER_REQUEST must be <= 9 (got 10)' })
  t.throws(() => loadSettings(WITH_NEW_SETTING, { TASKBROKER_WIDGET_COLOUR: 'green' }),
    { message: 'Invalid configuration: TASKBROKER_WIDGET_COLOUR must be one of red, blue (got "green")' })

  const known = knownVariables(WITH_NEW_SETTING)
  t.same(configWarnings({ TASKBROKER_WIDGETS_PER_REQUEST: '1' }, known), [], 'a declared setting is no stray')
  t.same(configWarnings({ TASKBROKER_WIDGETS_PER_REQUST: '1' }, known),
    ['TASKBROKER_WIDGETS_PER_REQUST is not a known setting and is ignored (did you mean TASKBROKER_WIDGETS_PER_REQUEST?)'])
  t.equal(closestSetting('TASKBROKER_WIDGET_COLOR', known), 'TASKBROKER_WIDGET_COLOUR')
  t.same(configWarnings({ TASKBROKER_WIDGETS_PER_REQUEST: '1' }), [
    'TASKBROKER_WIDGETS_PER_REQUEST is not a known setting and is ignored'
  ], 'the broker\'s own table does not have it')
})
