/**
 * Start-up as users see it, with real broker processes (`node --import tsx src/server.ts`):
 * - a second broker on a data directory in use exits 78 with one line naming it and the holder;
 *   after the first one is SIGKILLed its stale lock is taken over;
 * - a bad database URL, a database that does not exist, a never-migrated database, an unusable
 *   data directory: exit 78 with one line on stderr and no stack trace;
 * - an unknown TASKBROKER_* variable is warned about; the ready line carries startupMs.
 * PostgreSQL cases run when TASKBROKER_TEST_DATABASE_URL is set.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { TEST_DATABASE_URL } from './helpers/database.js'
import { runServer as runBroker } from './helpers/server-process.js'

const pgOnly = { skip: TEST_DATABASE_URL === undefined || TEST_DATABASE_URL === '' ? 'TASKBROKER_TEST_DATABASE_URL is not set' : false }

/** Runs a broker that must refuse to start: exit 78 and exactly one line on stderr. */
async function refusal (t: Test, env: Record<string, string>): Promise<string> {
  const run = await runBroker(t, env)
  const exit = await run.exited
  // Give the pipes a moment to deliver their last bytes after the exit.
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(exit.code, 78, `exit 78 (stderr: ${run.stderr.join('\n')})`)
  const lines = run.stderr.filter(line => line.trim() !== '' && !/^\(node:\d+\) .*Warning|^\(Use `node --trace-warnings/.test(line))
  t.equal(lines.length, 1, 'one line on stderr')
  t.notMatch(lines.join('\n'), /\n\s+at /, 'no stack trace')
  return lines[0] ?? ''
}

t.test('a second broker on the same data directory exits 78 naming it and the holder; a SIGKILLed holder\'s lock is taken over', { timeout: 300_000 }, async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'tb-startup-')), 'data')
  const env = { TASKBROKER_DATA_DIR: dir }
  const first = await runBroker(t, env)
  const ready = await first.ready
  t.ok(ready, `the first broker is ready (stderr: ${first.stderr.join('\n')})`)

  const line = await refusal(t, env)
  t.match(line, `TASKBROKER_DATA_DIR ${dir} is in use by another broker (pid ${first.pid} on host ${hostname()} since `)

  first.kill('SIGKILL')
  await first.exited
  const second = await runBroker(t, env)
  t.ok(await second.ready, `after a crash of the holder the next broker starts (stderr: ${second.stderr.join('\n')})`)
  t.ok(second.stdout.some(line => line.includes('took over the lock of a broker that is gone') && line.includes(`"pid":${first.pid}`)), 'and says whose lock it took over')
  second.kill('SIGTERM')
  t.equal((await second.exited).code, 0, 'shuts down cleanly')
  const third = await runBroker(t, env)
  t.ok(await third.ready, 'the lock was given up at shutdown')
})

t.test('bad database URLs and data directories: exit 78, one line naming the variable', { timeout: 300_000 }, async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'tb-startup-')), 'a-file')
  writeFileSync(file, '')
  const [mysql, notUrl, notDir] = await Promise.all([
    refusal(t, { TASKBROKER_DATABASE_URL: 'mysql://root:secret@127.0.0.1/x' }),
    refusal(t, { DATABASE_URL: 'notaurl' }),
    refusal(t, { TASKBROKER_DATA_DIR: file })
  ])
  t.equal(mysql, 'Invalid configuration: TASKBROKER_DATABASE_URL must be a postgres:// or postgresql:// URL (got a mysql:// URL)')
  t.equal(notUrl, 'Invalid configuration: DATABASE_URL must be a postgres:// or postgresql:// URL (got no URL)')
  t.equal(notDir, `Invalid configuration: TASKBROKER_DATA_DIR ${JSON.stringify(file)} is not a directory`)
})

t.test('an unknown TASKBROKER_* variable is warned about; the ready line says how long start-up took', { timeout: 300_000 }, async (t) => {
  const run = await runBroker(t, { TASKBROKER_STATUS_BATCHSIZE: '5' })
  const ready = await run.ready
  t.ok(ready, `ready (stderr: ${run.stderr.join('\n')})`)
  t.type(ready?.startupMs, 'number')
  t.ok((ready?.startupMs as number) > 0)
  const warning = run.stdout.map(line => JSON.parse(line) as { level: number, msg: string }).find(entry => entry.msg.includes('TASKBROKER_STATUS_BATCHSIZE'))
  t.equal(warning?.level, 40, 'logged as a warning')
  t.equal(warning?.msg, 'TASKBROKER_STATUS_BATCHSIZE is not a known setting and is ignored (did you mean TASKBROKER_STATUS_BATCH_SIZE?)')
})

t.test('PostgreSQL: a missing database and a never-migrated one are refused with exit 78; migrated it starts', { ...pgOnly, timeout: 300_000 }, async (t) => {
  const admin = postgres(TEST_DATABASE_URL as string, { max: 1, onnotice: () => {} })
  const name = `tb_startup_${process.pid}_${randomBytes(4).toString('hex')}`
  await admin.unsafe(`create database ${name}`)
  t.teardown(async () => {
    await admin.unsafe(`drop database if exists ${name} with (force)`)
    await admin.end()
  })
  const url = new URL(TEST_DATABASE_URL as string)
  url.pathname = `/${name}`
  const missing = new URL(url)
  missing.pathname = `/${name}_missing`

  const [empty, absent] = await Promise.all([
    refusal(t, { TASKBROKER_DATABASE_URL: url.toString() }),
    refusal(t, { TASKBROKER_DATABASE_URL: missing.toString() })
  ])
  t.match(empty, /^The database at TASKBROKER_DATABASE_URL is not migrated: migrations applied there: none; .*npm run db:migrate/)
  t.equal(absent, `Invalid configuration: TASKBROKER_DATABASE_URL (or DATABASE_URL) names a database that does not exist: database "${name}_missing" does not exist`)

  const migrating = await runBroker(t, { TASKBROKER_DATABASE_URL: url.toString(), TASKBROKER_RUN_MIGRATIONS: 'true' })
  t.ok(await migrating.ready, `starts with TASKBROKER_RUN_MIGRATIONS=true (stderr: ${migrating.stderr.join('\n')})`)
  migrating.kill('SIGTERM')
  await migrating.exited
  const migrated = await runBroker(t, { TASKBROKER_DATABASE_URL: url.toString() })
  t.ok(await migrated.ready, 'and then without it')
})

t.test('an empty entry in TASKBROKER_AUTH_SECRETS: exit 78 naming it, never "signing off"', { timeout: 300_000 }, async (t) => {
  t.match(await refusal(t, { TASKBROKER_AUTH_SECRETS: ' , ' }), /TASKBROKER_AUTH_SECRETS has an empty entry/)
})

t.test('signing off on a non-loopback HOST: one warning at start', { timeout: 300_000 }, async (t) => {
  const run = await runBroker(t, { HOST: '0.0.0.0', LOG_LEVEL: 'info' })
  t.ok(await run.ready, `ready (stderr: ${run.stderr.join('\n')})`)
  const warnings = run.stdout.filter(line => line.includes('request signing is off'))
  t.equal(warnings.length, 1, 'one warning line')
  t.equal((JSON.parse(warnings[0] as string) as { level: number }).level, 40, 'at level warn')
  run.kill('SIGTERM')
  await run.exited
})
