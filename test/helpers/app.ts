/** Builds a broker app for a test, on a test store, closed when the test ends. */
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import type { Test } from 'tap'
import { buildApp } from '../../src/http/app.js'
import { loadConfig, type Config } from '../../src/config/config.js'
import { storeRules } from '../../src/core/broker.js'
import type { Database } from '../../src/db/database.js'
import { createStore, type Store } from '../../src/store/index.js'
import { createTestDatabase, type BackendName } from './database.js'

/**
 * Upkeep (expiry, delays, retries, discarding failures) runs on its own timer and would race API
 * checks; tests of the API answers turn it off (and call `app.broker.upkeep.runOnce(now)` when needed).
 */
export const NO_UPKEEP: Readonly<Record<string, string>> = { TASKBROKER_UPKEEP_ENABLED: 'false' }

export function testConfig (env: Record<string, string> = {}): Config {
  return loadConfig({ LOG_LEVEL: 'silent', TASKBROKER_DATA_DIR: 'memory://', ...env })
}

/** The stores on a test database, with the rules of `config`; closing it leaves the database open. */
export function testStore (database: Database, config: Config): Store {
  return createStore(database, storeRules(config))
}

export interface TestApp {
  app: FastifyInstance
  database: Database
  config: Config
}

export async function buildTestApp (t: Test, backend: BackendName, env: Record<string, string> = {}): Promise<TestApp> {
  const { database } = await createTestDatabase(t, backend)
  const config = testConfig(env)
  const app = await buildApp(config, { store: testStore(database, config), logger: pino({ level: 'silent' }) })
  // Registered after the database's teardown, so it runs first: the app closes before its store.
  t.teardown(() => app.close())
  return { app, database, config }
}

/** A minimal valid task for produce requests. */
export function task (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { namespace: 'ns', taskname: 'tests.noop', ...overrides }
}
