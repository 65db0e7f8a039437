import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, ConfigSchema, loadConfig } from '../src/config.js'

t.test('defaults follow the brief', async (t) => {
  const config = loadConfig({})
  t.equal(config.port, 8080)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.logLevel, 'info')
  t.equal(config.databaseUrl, undefined)
  t.equal(config.dataDir, './.taskbroker')
  t.equal(config.runMigrations, true, 'the embedded store migrates itself')
  t.equal(config.status.batching, true)
  t.equal(config.status.ack, 'flushed')
  t.equal(config.upkeepIntervalMs, 1000)
  t.equal(config.deadlineResetSkipAfterStartupSec, 60)
  t.equal(config.processingDeadlineGraceSec, 3)
  t.equal(config.maxProcessingAttempts, 5)
  t.equal(config.deliveryMode, 'pull')
  t.same(config.authSecrets, [])
})

t.test('environment values are converted and validated', async (t) => {
  const config = loadConfig({
    PORT: '9000',
    TASKBROKER_STATUS_BATCHING: 'false',
    TASKBROKER_STATUS_BATCH_SIZE: '100',
    TASKBROKER_STATUS_ACK: 'queued',
    TASKBROKER_AUTH_SECRETS: 'new, old ,',
    DATABASE_URL: 'postgres://db/x'
  })
  t.equal(config.port, 9000)
  t.equal(config.status.batching, false)
  t.equal(config.status.batchSize, 100)
  t.equal(config.status.ack, 'queued')
  t.same(config.authSecrets, ['new', 'old'])
  t.equal(config.databaseUrl, 'postgres://db/x')
  t.equal(config.runMigrations, false, 'PostgreSQL is migrated by the drizzle CLI unless asked')
})

t.test('TASKBROKER_DATABASE_URL wins over DATABASE_URL and empty values count as unset', async (t) => {
  const config = loadConfig({ TASKBROKER_DATABASE_URL: 'postgres://a/b', DATABASE_URL: 'postgres://c/d', PORT: '' })
  t.equal(config.databaseUrl, 'postgres://a/b')
  t.equal(config.port, 8080)
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
  t.throws(() => { (config as { port: number }).port = 1 })
  t.throws(() => { (config.status as { batchSize: number }).batchSize = 1 })
})

t.test('a config file supplies values and the environment overrides them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tb-config-'))
  const file = join(dir, 'taskbroker.yaml')
  writeFileSync(file, 'PORT: 7000\nTASKBROKER_STATUS_BATCH_SIZE: 64\n')
  const config = loadConfig({ TASKBROKER_CONFIG_FILE: file, TASKBROKER_STATUS_BATCH_SIZE: '32' })
  t.equal(config.port, 7000)
  t.equal(config.status.batchSize, 32)

  const json = join(dir, 'taskbroker.json')
  writeFileSync(json, JSON.stringify({ TASKBROKER_DELIVERY_MODE: 'push', TASKBROKER_WORKER_MAP: { shop: 'http://127.0.0.1:9000/push' } }))
  const push = loadConfig({ TASKBROKER_CONFIG_FILE: json })
  t.equal(push.deliveryMode, 'push')
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
