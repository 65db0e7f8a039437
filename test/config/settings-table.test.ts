/**
 * The settings table itself: names unique, defaults inside their bounds, and the loader fills every
 * field of `Config` from its own variable, at the default and at both ends of its range.
 */
import t from 'tap'
import { ConfigSchema, loadConfig, SETTINGS } from '../../src/config/config.js'
import { settingsOf, variablesOf } from '../../src/config/setting.js'

const ALL = settingsOf(SETTINGS)
const fieldOf = (config: object, group: string, field: string): unknown => (config as Record<string, Record<string, unknown>>)[group]?.[field]

t.test('every variable is declared once, and is a TASKBROKER_* name or one of the conventional ones', async (t) => {
  const names = variablesOf(SETTINGS)
  t.equal(new Set(names).size, names.length, 'no variable fills two fields')
  t.same(names.filter(name => !name.startsWith('TASKBROKER_')).sort(), ['DATABASE_URL', 'HOST', 'LOG_LEVEL', 'PORT'])
  t.same(Object.keys(ConfigSchema.properties).sort(), [...names].sort(), 'the parsing schema has every variable')
})

t.test('each default is inside its bounds and each setting says what it means', async (t) => {
  for (const { setting } of ALL) {
    const { kind } = setting
    if (kind.type === 'int') t.ok(kind.minimum <= kind.default && kind.default <= kind.maximum, `${setting.env}: ${kind.minimum} ≤ ${kind.default} ≤ ${kind.maximum}`)
    if (kind.type === 'enum') t.ok(kind.values.includes(kind.default), `${setting.env}: ${kind.default} is one of ${kind.values.join(', ')}`)
    t.ok(setting.description.length >= 10, `${setting.env} has a description`)
  }
})

t.test('with nothing set every field holds its declared default', async (t) => {
  const config = loadConfig({})
  for (const { group, field, setting } of ALL) {
    if (!('default' in setting.kind)) continue
    t.same(fieldOf(config, group, field), setting.read(setting.kind.default, {}), `${group}.${field} (${setting.env})`)
  }
})

t.test('each int variable reaches its field at both ends of its range, and one past either end is refused', async (t) => {
  const ints = ALL.flatMap(({ group, field, setting }) => setting.kind.type === 'int' ? [{ group, field, env: setting.env, kind: setting.kind }] : [])
  t.ok(ints.length >= 50, `${ints.length} int settings`)
  // All at once: the rules between settings hold at either end.
  const lowest = loadConfig(Object.fromEntries(ints.map(s => [s.env, String(s.kind.minimum)])))
  // Several processes need PostgreSQL (a rule between settings).
  const highest = loadConfig({ ...Object.fromEntries(ints.map(s => [s.env, String(s.kind.maximum)])), TASKBROKER_DATABASE_URL: 'postgres://u@127.0.0.1:5432/d' })
  for (const { group, field, env, kind } of ints) {
    t.equal(fieldOf(lowest, group, field), kind.minimum, `${env} → ${group}.${field} = ${kind.minimum}`)
    t.equal(fieldOf(highest, group, field), kind.maximum, `${env} → ${group}.${field} = ${kind.maximum}`)
    t.throws(() => loadConfig({ [env]: String(kind.maximum + 1) }), { message: `Invalid configuration: ${env} must be <= ${kind.maximum} (got ${kind.maximum + 1})` })
    t.throws(() => loadConfig({ [env]: String(kind.minimum - 1) }), { message: `Invalid configuration: ${env} must be >= ${kind.minimum} (got ${kind.minimum - 1})` })
  }
})

t.test('each bool and enum variable reaches its field', async (t) => {
  for (const { group, field, setting } of ALL) {
    const { kind } = setting
    const values = kind.type === 'bool' ? [!kind.default] : kind.type === 'enum' ? kind.values.filter(v => v !== kind.default) : []
    for (const value of values) {
      // Push mode needs a worker map (a rule between settings).
      const env = { [setting.env]: String(value), ...(value === 'push' ? { TASKBROKER_WORKER_MAP: 'a=http://127.0.0.1:9/push' } : {}) }
      t.equal(fieldOf(loadConfig(env), group, field), value, `${setting.env}=${value} → ${group}.${field}`)
    }
  }
})

t.test('rules between settings still hold, with their messages', async (t) => {
  t.throws(() => loadConfig({ TASKBROKER_HEADERS_TIMEOUT_MS: '40000' }),
    { message: 'Invalid configuration: TASKBROKER_HEADERS_TIMEOUT_MS must be at most TASKBROKER_REQUEST_TIMEOUT_MS (got 40000)' })
  t.throws(() => loadConfig({ TASKBROKER_MAX_INFLIGHT_BODY_BYTES: '2000', TASKBROKER_BODY_LIMIT_BYTES: '3000' }),
    { message: 'Invalid configuration: TASKBROKER_MAX_INFLIGHT_BODY_BYTES must be at least TASKBROKER_BODY_LIMIT_BYTES (got 2000)' })
  t.throws(() => loadConfig({ TASKBROKER_PUSH_WORKER_BACKOFF_MS: '500', TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS: '100' }),
    { message: 'Invalid configuration: TASKBROKER_PUSH_WORKER_BACKOFF_MAX_MS must be at least TASKBROKER_PUSH_WORKER_BACKOFF_MS (got 100)' })
  t.throws(() => loadConfig({ TASKBROKER_DELIVERY_MODE: 'push' }),
    { message: 'Invalid configuration: TASKBROKER_WORKER_MAP must name at least one application=url when TASKBROKER_DELIVERY_MODE is push' })
  t.equal(loadConfig({ TASKBROKER_DATABASE_URL: 'postgres://h/d' }).store.runMigrations, false, 'PostgreSQL: off unless asked')
  t.equal(loadConfig({ DATABASE_URL: 'postgres://h/d', TASKBROKER_RUN_MIGRATIONS: 'true' }).store.runMigrations, true)
  t.equal(loadConfig({ TASKBROKER_RUN_MIGRATIONS: 'false' }).store.runMigrations, false)
  t.same(loadConfig({ TASKBROKER_AUTH_EXEMPT_PATHS: ' /a , ,/b ' }).auth.exemptPaths, ['/a', '/b'])
  t.throws(() => loadConfig({ DATABASE_URL: 'mysql://u:secret@h/d' }),
    { message: 'Invalid configuration: DATABASE_URL must be a postgres:// or postgresql:// URL (got a mysql:// URL)' },
    'the fallback variable is named when it gave the value')
})
