/**
 * At start the database must match migrations/ (src/db/migration-check.ts): a never-migrated one
 * is refused with the command to run, one migrated by a newer broker is refused naming both
 * versions, a database that does not exist is a ConfigError naming TASKBROKER_DATABASE_URL.
 * PostgreSQL cases run when TASKBROKER_TEST_DATABASE_URL is set; each gets a fresh database.
 */
import { randomBytes } from 'node:crypto'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { ConfigError } from '../../src/config/config.js'
import { openDatabase, type Database } from '../../src/db/database.js'
import { checkMigrations, journal, prepareSchema } from '../../src/db/migration-check.js'
import { TEST_DATABASE_URL } from '../helpers/database.js'

const silent = pino({ level: 'silent' })
const entries = journal()
const last = entries.at(-1) as { tag: string, when: number }
const pgOnly = { skip: TEST_DATABASE_URL === undefined || TEST_DATABASE_URL === '' ? 'TASKBROKER_TEST_DATABASE_URL is not set' : false, timeout: 120_000 }

/** An empty PostgreSQL database of the test's own, dropped after it. */
async function emptyPostgres (t: Test): Promise<{ database: Database, url: string }> {
  const admin = postgres(TEST_DATABASE_URL as string, { max: 1, onnotice: () => {} })
  const name = `tb_migcheck_${process.pid}_${randomBytes(4).toString('hex')}`
  await admin.unsafe(`create database ${name}`)
  const url = new URL(TEST_DATABASE_URL as string)
  url.pathname = `/${name}`
  const database = await openDatabase({ url: url.toString(), dataDir: '', poolSize: 2, log: silent })
  t.teardown(async () => {
    await database.close()
    await admin.unsafe(`drop database if exists ${name} with (force)`)
    await admin.end()
  })
  return { database, url: url.toString() }
}

t.test('the check compares counts and timestamps with the journal', async (t) => {
  t.doesNotThrow(() => checkMigrations({ count: entries.length, newest: last.when }, entries, 'postgres', false))
  t.throws(() => checkMigrations({ count: 0, newest: undefined }, entries, 'postgres', false),
    { name: 'StartupRefusedError', message: /^The database at TASKBROKER_DATABASE_URL is not migrated: migrations applied there: none; .*npm run db:migrate.*TASKBROKER_RUN_MIGRATIONS=true/ })
  if (entries.length > 1) {
    const first = entries[0] as { tag: string, when: number }
    t.throws(() => checkMigrations({ count: 1, newest: first.when }, entries, 'postgres', false),
      { name: 'StartupRefusedError', message: new RegExp(`missing ${entries.slice(1).map(e => e.tag).join(', ')}`) })
  }
  t.throws(() => checkMigrations({ count: entries.length + 1, newest: last.when + 1 }, entries, 'pglite', true),
    { name: 'StartupRefusedError', message: new RegExp(`^The embedded database in TASKBROKER_DATA_DIR was migrated by a newer broker: migrations applied there: ${entries.length + 1}, .*known to this broker: ${entries.length}, up to ${last.tag}`) })
  t.throws(() => checkMigrations({ count: entries.length + 1, newest: last.when }, entries, 'postgres', false),
    { name: 'StartupRefusedError', message: /migrated by a newer broker/ }, 'more rows than journal entries')
})

t.test('PGlite: a database that was not migrated is refused; migrated it passes; a newer migration row is refused', async (t) => {
  const database = await openDatabase({ dataDir: 'memory://', poolSize: 1, log: silent })
  t.teardown(() => database.close())
  await t.rejects(prepareSchema(database, false, silent), { name: 'StartupRefusedError', message: /TASKBROKER_DATA_DIR is not migrated/ })
  await prepareSchema(database, true, silent)
  await database.rows(sql`insert into drizzle.__drizzle_migrations (hash, created_at) values ('from-a-newer-broker', ${last.when + 60_000})`)
  await t.rejects(prepareSchema(database, true, silent), { name: 'StartupRefusedError', message: /was migrated by a newer broker/ }, 'migrating does not hide it')
})

t.test('PostgreSQL: a fresh empty database is refused with the command to run', pgOnly, async (t) => {
  const { database } = await emptyPostgres(t)
  await t.rejects(prepareSchema(database, false, silent), {
    name: 'StartupRefusedError',
    message: /^The database at TASKBROKER_DATABASE_URL is not migrated: migrations applied there: none; .*run `npm run db:migrate` with TASKBROKER_DATABASE_URL set, or start the broker once with TASKBROKER_RUN_MIGRATIONS=true$/
  })
})

t.test('PostgreSQL: migrated it passes, with or without TASKBROKER_RUN_MIGRATIONS', pgOnly, async (t) => {
  const { database } = await emptyPostgres(t)
  await prepareSchema(database, true, silent)
  await prepareSchema(database, false, silent)
  t.pass()
})

t.test('PostgreSQL: an extra migration row from a newer broker is refused as ahead', pgOnly, async (t) => {
  const { database } = await emptyPostgres(t)
  await database.migrate()
  await database.rows(sql`insert into drizzle.__drizzle_migrations (hash, created_at) values ('from-a-newer-broker', ${last.when + 60_000})`)
  await t.rejects(prepareSchema(database, false, silent), {
    name: 'StartupRefusedError',
    message: new RegExp(`^The database at TASKBROKER_DATABASE_URL was migrated by a newer broker: migrations applied there: ${entries.length + 1}, the newest from .*; known to this broker: ${entries.length}, up to ${last.tag}`)
  })
})

t.test('PostgreSQL: a database that does not exist is a ConfigError naming TASKBROKER_DATABASE_URL', pgOnly, async (t) => {
  const url = new URL(TEST_DATABASE_URL as string)
  url.pathname = `/tb_missing_${randomBytes(4).toString('hex')}`
  for (const runMigrations of [false, true]) {
    const database = await openDatabase({ url: url.toString(), dataDir: '', poolSize: 1, log: silent })
    t.teardown(() => database.close())
    const err = await prepareSchema(database, runMigrations, silent).then(() => undefined, (error: unknown) => error)
    t.type(err, ConfigError, `runMigrations=${runMigrations}`)
    t.match((err as Error).message, /^Invalid configuration: TASKBROKER_DATABASE_URL \(or DATABASE_URL\) names a database that does not exist: database "tb_missing_\w+" does not exist$/)
  }
})
