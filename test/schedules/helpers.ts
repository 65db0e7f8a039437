/** Schedule tests: an app on a test store with an injected clock, and reads of what fired. */
import { sql } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import type { Test } from 'tap'
import type { Database } from '../../src/db/database.js'
import { buildApp } from '../../src/http/app.js'
import { testConfig, testStore } from '../helpers/app.js'
import { createTestDatabase, type BackendName } from '../helpers/database.js'

/** A clock tests move by hand. */
export interface Clock {
  now: () => Date
  set: (iso: string | Date) => void
  advance: (ms: number) => void
}

export function clock (start: string): Clock {
  let current = new Date(start)
  return {
    now: () => new Date(current),
    set: (at) => { current = new Date(at) },
    advance: (ms) => { current = new Date(current.getTime() + ms) }
  }
}

export interface ScheduleApp {
  app: FastifyInstance
  database: Database
  clock: Clock
  /** One upkeep pass at the clock's time. */
  pass: () => Promise<Record<string, number>>
}

/** The test database, emptied of schedules (the embedded one is shared by the tests of a file). */
export async function scheduleDatabase (t: Test, backend: BackendName): Promise<{ database: Database, url?: string }> {
  const created = await createTestDatabase(t, backend)
  await created.database.rows(sql`delete from schedules`)
  return created
}

export async function buildScheduleApp (t: Test, backend: BackendName, start: string, env: Record<string, string> = {}): Promise<ScheduleApp> {
  const { database } = await scheduleDatabase(t, backend)
  const config = testConfig({ TASKBROKER_UPKEEP_ENABLED: 'false', ...env })
  const time = clock(start)
  const app = await buildApp(config, { store: testStore(database, config), logger: pino({ level: 'silent' }), now: time.now })
  t.teardown(() => app.close())
  return {
    app,
    database,
    clock: time,
    async pass () {
      const result = await app.broker.upkeep.runOnce(time.now())
      const [failure] = Object.values(result.errors)
      if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure))
      return result.counts
    }
  }
}

/** Ids of the stored tasks fired by schedule `name`, sorted. */
export async function firedIds (database: Database, name: string): Promise<string[]> {
  const rows = await database.rows(sql`select id from inflight_tasks where id like ${`sched:${name}:%`} order by id`)
  return rows.map(r => r.id as string)
}

/** The window times of the stored tasks fired by `name`, as ISO text, sorted. */
export async function firedWindows (database: Database, name: string): Promise<string[]> {
  return (await firedIds(database, name)).map(id => id.slice(`sched:${name}:`.length))
}

export function putSchedule (app: FastifyInstance, name: string, body: Record<string, unknown>) {
  return app.inject({ method: 'PUT', url: `/v1/schedules/${name}`, payload: body })
}

export const TASK = { application: 'app', namespace: 'ns', taskname: 'tests.tick' }
