import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { closestSetting, ConfigError, ConfigSchema, configWarnings, exposureWarning, isLoopbackHost, loadConfig } from '../src/config/config.js'

t.test('defaults follow the brief', async (t) => {
  const config = loadConfig({})
  t.equal(config.http.port, 8080)
  t.equal(config.http.host, '127.0.0.1')
  t.equal(config.broker.logLevel, 'info')
  t.equal(config.store.databaseUrl, undefined)
  t.equal(config.store.dataDir, './.taskbroker')
  t.equal(config.store.runMigrations, true, 'the embedded store migrates itself')
  t.equal(config.status.batching, true)
  t.equal(config.status.ack, 'flushed')
  t.equal(config.upkeep.intervalMs, 1000)
  t.equal(config.upkeep.deadlineResetSkipAfterStartupSec, 60)
  t.equal(config.tasks.processingDeadlineGraceSec, 3)
  t.equal(config.tasks.maxProcessingAttempts, 5)
  t.equal(config.broker.deliveryMode, 'pull')
  t.same(config.auth.secrets, [])
})

t.test('environment values are converted and validated', async (t) => {
  const config = loadConfig({
    PORT: '9000',
    TASKBROKER_STATUS_BATCHING: 'false',
    TASKBROKER_STATUS_BATCH_SIZE: '100',
    TASKBROKER_STATUS_ACK: 'queued',
    TASKBROKER_AUTH_SECRETS: 'new, old ',
    DATABASE_URL: 'postgres://db/x'
  })
  t.equal(config.http.port, 9000)
  t.equal(config.status.batching, false)
  t.equal(config.status.batchSize, 100)
  t.equal(config.status.ack, 'queued')
  t.same(config.auth.secrets, ['new', 'old'])
  t.equal(config.store.databaseUrl, 'postgres://db/x')
  t.equal(config.store.runMigrations, false, 'PostgreSQL is migrated by the drizzle CLI unless asked')
})

t.test('TASKBROKER_DATABASE_URL wins over DATABASE_URL and empty values count as unset', async (t) => {
  const config = loadConfig({ TASKBROKER_DATABASE_URL: 'postgres://a/b', DATABASE_URL: 'postgres://c/d', PORT: '' })
  t.equal(config.store.databaseUrl, 'postgres://a/b')
  t.equal(config.http.port, 8080)
})

t.test('a bad value names the variable, the rule and the value', async (t) => {
  t.throws(() => loadConfig({ PORT: 'eighty' }), { name: 'ConfigError', message: /^Invalid configuration: PORT .*"eighty"/ })
  t.throws(() => loadConfig({ TASKBROKER_STATUS_BATCH_SIZE: '0' }), { name: 'ConfigError', message: /^Invalid configuration: TASKBROKER_STATUS_BATCH_SIZE / })
  t.throws(() => loadConfig({ TASKBROKER_STATUS_BATCH_SIZE: '5000' }), { name: 'ConfigError', message: /^Invalid configuration: TASKBROKER_STATUS_BATCH_SIZE / })
  t.throws(() => loadConfig({ TASKBROKER_STATUS_ACK: 'later' }), new ConfigError('TASKBROKER_STATUS_ACK', 'must be one of flushed, queued (got "later")'))
  t.throws(() => loadConfig({ TASKBROKER_STATUS_BATCHING: 'maybe' }), { name: 'ConfigError', message: /^Invalid configuration: TASKBROKER_STATUS_BATCHING / })
})

t.test('the config is frozen', async (t) => {
  const config = loadConfig({})
  t.throws(() => { (config.http as { port: number }).port = 1 })
  t.throws(() => { (config.status as { batchSize: number }).batchSize = 1 })
})

t.test('a config file supplies values and the environment overrides them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tb-config-'))
  const file = join(dir, 'taskbroker.yaml')
  writeFileSync(file, 'PORT: 7000\nTASKBROKER_STATUS_BATCH_SIZE: 64\n')
  const config = loadConfig({ TASKBROKER_CONFIG_FILE: file, TASKBROKER_STATUS_BATCH_SIZE: '32' })
  t.equal(config.http.port, 7000)
  t.equal(config.status.batchSize, 32)

  const json = join(dir, 'taskbroker.json')
  writeFileSync(json, JSON.stringify({ TASKBROKER_DELIVERY_MODE: 'push', TASKBROKER_WORKER_MAP: { shop: 'http://127.0.0.1:9000/push' } }))
  const push = loadConfig({ TASKBROKER_CONFIG_FILE: json })
  t.equal(push.broker.deliveryMode, 'push')
  t.same(push.push.workers, [{ application: 'shop', url: 'http://127.0.0.1:9000/push' }], 'the worker map may be a map in the file')
})

t.test('a broken or unknown config file entry is refused with the reason', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tb-config-'))
  const typo = join(dir, 'typo.yaml')
  writeFileSync(typo, 'PROT: 7000\n')
  t.throws(() => loadConfig({ TASKBROKER_CONFIG_FILE: typo }), { name: 'ConfigError', message: /^Invalid configuration: PROT / })
  const broken = join(dir, 'broken.json')
  writeFileSync(broken, '{"PORT": ')
  t.throws(() => loadConfig({ TASKBROKER_CONFIG_FILE: broken }), { name: 'ConfigError', message: /^Invalid configuration: TASKBROKER_CONFIG_FILE / })
  t.throws(() => loadConfig({ TASKBROKER_CONFIG_FILE: join(dir, 'missing.yaml') }), { name: 'ConfigError', message: /^Invalid configuration: TASKBROKER_CONFIG_FILE / })
})

t.test('.env.example lists every setting', async (t) => {
  const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8')
  for (const key of Object.keys(ConfigSchema.properties)) {
    t.match(example, new RegExp(`^#? ?${key}=`, 'm'), `${key} is in .env.example`)
  }
})

t.test('a fraction or a non-decimal number for an integer setting is refused, not truncated', async (t) => {
  t.throws(() => loadConfig({ PORT: '80.9' }), new ConfigError('PORT', 'must be a whole number (got "80.9")'))
  t.throws(() => loadConfig({ TASKBROKER_STATUS_BATCH_SIZE: '1e2' }), { message: /^Invalid configuration: TASKBROKER_STATUS_BATCH_SIZE must be a whole number/ })
  t.throws(() => loadConfig({ TASKBROKER_UPKEEP_INTERVAL_MS: '0x100' }), { message: /^Invalid configuration: TASKBROKER_UPKEEP_INTERVAL_MS must be a whole number/ })
  const dir = mkdtempSync(join(tmpdir(), 'tb-config-'))
  const file = join(dir, 'fraction.yaml')
  writeFileSync(file, 'PORT: 80.9\n')
  t.throws(() => loadConfig({ TASKBROKER_CONFIG_FILE: file }), new ConfigError('PORT', 'must be a whole number (got 80.9)'))
  t.equal(loadConfig({ PORT: ' 81 ' }).http.port, 81, 'whole numbers still convert')
})

t.test('a database URL must be a PostgreSQL URL, and the refusal does not echo it', async (t) => {
  t.throws(() => loadConfig({ TASKBROKER_DATABASE_URL: 'mysql://root:secret@db/x' }),
    new ConfigError('TASKBROKER_DATABASE_URL', 'must be a postgres:// or postgresql:// URL (got a mysql:// URL)'))
  t.throws(() => loadConfig({ DATABASE_URL: 'notaurl' }),
    new ConfigError('DATABASE_URL', 'must be a postgres:// or postgresql:// URL (got no URL)'))
  t.equal(loadConfig({ TASKBROKER_DATABASE_URL: 'postgresql://u@h:5432/d' }).store.databaseUrl, 'postgresql://u@h:5432/d')
})

t.test('unknown TASKBROKER_* variables are warned about with the closest setting', async (t) => {
  t.same(configWarnings({ TASKBROKER_STATUS_BATCHSIZE: '5', PORT: '1', TASKBROKER_STATUS_BATCH_SIZE: '5', TASKBROKER_CONFIG_FILE: 'x' }),
    ['TASKBROKER_STATUS_BATCHSIZE is not a known setting and is ignored (did you mean TASKBROKER_STATUS_BATCH_SIZE?)'])
  t.same(configWarnings({ TASKBROKER_SOMETHING_ELSE_ENTIRELY: '1' }), ['TASKBROKER_SOMETHING_ELSE_ENTIRELY is not a known setting and is ignored'])
  t.same(configWarnings({ TASKBROKER_TEST_DATABASE_URL: 'postgres://x/y', TASKBROKER_FAULT_BROKER: 'dist', OTHER: '1' }), [], 'test tooling variables and other prefixes are left alone')
  t.equal(closestSetting('TASKBROKER_DATADIR'), 'TASKBROKER_DATA_DIR')
  t.equal(closestSetting('PROT'), 'PORT')

  const dir = mkdtempSync(join(tmpdir(), 'tb-config-'))
  const typo = join(dir, 'typo.yaml')
  writeFileSync(typo, 'TASKBROKER_UPKEEP_INTERVALMS: 50\n')
  t.throws(() => loadConfig({ TASKBROKER_CONFIG_FILE: typo }), new ConfigError('TASKBROKER_UPKEEP_INTERVALMS',
    'is not a known setting (in TASKBROKER_CONFIG_FILE) (did you mean TASKBROKER_UPKEEP_INTERVAL_MS?)'))
})

t.test('TASKBROKER_AUTH_SECRETS with an empty entry is refused, never read as "signing off"', async (t) => {
  for (const value of [' , ', ',', 'a,,b', 'a, ', ' ', ',a']) {
    t.throws(() => loadConfig({ TASKBROKER_AUTH_SECRETS: value }), { name: 'ConfigError', message: /^Invalid configuration: TASKBROKER_AUTH_SECRETS has an empty entry/ }, JSON.stringify(value))
  }
  t.same(loadConfig({ TASKBROKER_AUTH_SECRETS: '' }).auth.secrets, [], 'set to nothing is unset: signing off')
  t.same(loadConfig({ TASKBROKER_AUTH_SECRETS: ' a , b ' }).auth.secrets, ['a', 'b'], 'spaces around entries are trimmed')
  t.equal(loadConfig({}).auth.replayCacheSize, 1_000_000)
  t.equal(loadConfig({ TASKBROKER_AUTH_REPLAY_CACHE_SIZE: '10' }).auth.replayCacheSize, 10)
  t.throws(() => loadConfig({ TASKBROKER_AUTH_REPLAY_CACHE_SIZE: '0' }), { name: 'ConfigError', message: /TASKBROKER_AUTH_REPLAY_CACHE_SIZE/ })
})

t.test('a warning when signing is off and HOST is not a loopback address', async (t) => {
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) {
    t.equal(isLoopbackHost(host), true, `${host} is loopback`)
    t.equal(exposureWarning({ http: { host }, auth: { secrets: [] } }), undefined, `no warning on ${host}`)
  }
  for (const host of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '127.0.0.1.example.com']) {
    t.equal(isLoopbackHost(host), false, `${host} is not loopback`)
    t.match(exposureWarning({ http: { host }, auth: { secrets: [] } }), /request signing is off .* HOST=.* is not a loopback address/, `a warning on ${host}`)
  }
  t.equal(exposureWarning({ http: { host: '0.0.0.0' }, auth: { secrets: ['k'] } }), undefined, 'no warning with signing on')
  // That the process logs it once: test/startup.test.ts (it starts a broker process).
})
