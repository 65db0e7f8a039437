/**
 * Test stores. Every store and API test runs on the embedded PGlite and, when
 * TASKBROKER_TEST_DATABASE_URL is set, on a real PostgreSQL too: each test there gets a database
 * of its own (created, migrated, dropped), so tap's parallel test files never share rows.
 */
import { randomBytes } from 'node:crypto'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import postgres from 'postgres'
import tap, { type Test } from 'tap'
import { openDatabase, type Database } from '../../src/db/database.js'
import { openPgliteCopy } from './pglite-template.js'

export type BackendName = 'pglite' | 'postgres'

export const TEST_DATABASE_URL = process.env.TASKBROKER_TEST_DATABASE_URL

/** The stores to run store tests on: always PGlite, PostgreSQL when configured. */
export function backends (): BackendName[] {
  return TEST_DATABASE_URL === undefined || TEST_DATABASE_URL === '' ? ['pglite'] : ['pglite', 'postgres']
}

const silent = pino({ level: 'silent' })

/**
 * One PGlite per test process, opened on a copy of a migrated template (pglite-template.ts); each
 * test gets it emptied.
 */
let sharedPglite: Promise<Database> | undefined

export interface TestDatabase {
  database: Database
  /** PostgreSQL only: the URL of this test's own database, for apps that open their own pool. */
  url?: string
}

export async function createTestDatabase (t: Test, backend: BackendName): Promise<TestDatabase> {
  if (backend === 'pglite') {
    if (sharedPglite === undefined) {
      sharedPglite = openPgliteCopy().then((copy) => {
        tap.teardown(() => copy.close())
        return copy.database
      })
    }
    const database = await sharedPglite
    await database.rows(sql`truncate table inflight_tasks, deadletter_tasks, queue_settings`)
    return { database }
  }
  const adminUrl = TEST_DATABASE_URL as string
  const name = `tb_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  const database = await openDatabase({ url: url.toString(), dataDir: '', poolSize: 5, log: silent })
  await database.migrate()
  t.teardown(async () => {
    await database.close()
    await admin.unsafe(`drop database if exists ${name} with (force)`)
    await admin.end()
  })
  return { database, url: url.toString() }
}

type BackendTest = (t: Test, backend: BackendName) => Promise<void>

/** Runs `fn` as a subtest once per backend (options: tap's, e.g. a longer timeout). */
export function eachBackend (t: Test, name: string, ...args: [BackendTest] | [{ timeout?: number }, BackendTest]): void {
  const [options, fn] = args.length === 1 ? [{}, args[0]] : args
  for (const backend of backends()) {
    t.test(`${name} [${backend}]`, options, (tt) => fn(tt, backend))
  }
}
