/**
 * A broker on a real port for the SDK and CLI tests, on a test store of either backend, that can
 * be restarted on the same port and database (the store outlives the app, as a database outlives
 * a broker process).
 */
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import type { Test } from 'tap'
import { buildApp } from '../../src/http/app.js'
import { testConfig, testStore } from '../helpers/app.js'
import { createTestDatabase, type BackendName } from '../helpers/database.js'

export const SECRET = 'sdk-test-secret'

export interface RealBroker {
  url: string
  port: number
  app: () => FastifyInstance
  /** Closes the app (as a shutdown does) and starts a new one on the same port and store. */
  restart: (between?: () => Promise<void>) => Promise<void>
}

export async function startBroker (t: Test, backend: BackendName, env: Record<string, string> = {}): Promise<RealBroker> {
  const { database } = await createTestDatabase(t, backend)
  const config = testConfig({ TASKBROKER_AUTH_SECRETS: SECRET, ...env })
  const build = () => buildApp(config, { store: testStore(database, config), logger: pino({ level: 'silent' }) })
  let app = await build()
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  t.teardown(() => app.close())
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    app: () => app,
    restart: async (between) => {
      await app.close()
      await between?.()
      app = await build()
      await app.listen({ host: '127.0.0.1', port })
    }
  }
}

export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

/** Waits for `condition` (checked every 20 ms) up to a generous bound; false if it never held. */
export async function waitFor (condition: () => boolean | Promise<boolean>, boundMs = 60_000): Promise<boolean> {
  const end = Date.now() + boundMs
  while (Date.now() < end) {
    if (await condition()) return true
    await sleep(20)
  }
  return false
}
