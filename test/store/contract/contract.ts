/**
 * The store contract suite: every method of every store interface (src/store/interfaces.ts) has
 * contracts here, each run against PGlite and, when TASKBROKER_TEST_DATABASE_URL is set,
 * PostgreSQL. A file per interface registers its contracts with `contracts(...)`, and ends with
 * `everyMethodCovered()`, which fails for a method of the store that has none.
 */
import type { Test } from 'tap'
import type { Database } from '../../../src/db/database.js'
import { backends, type BackendName } from '../../helpers/database.js'

type BackendTest = (t: Test, backend: BackendName) => Promise<void>

export interface ContractOptions {
  timeout?: number
  /** Runs on this backend only (e.g. PostgreSQL for anything that needs a second session). */
  only?: BackendName
}
export type MethodOf<S> = { [K in keyof S]: S[K] extends (...args: never[]) => unknown ? K : never }[keyof S] & string

export interface Contracts<S> {
  /** Registers a contract of `method`, run once per backend. */
  (method: MethodOf<S>, name: string, ...args: [BackendTest] | [ContractOptions, BackendTest]): void
  /** A test that every method of the store has at least one contract. */
  everyMethodCovered (): void
}

/** The contracts of the interface `name`, whose methods are those of `store` (built on `stubDatabase`). */
export function contracts<S extends object> (t: Test, name: string, store: S): Contracts<S> {
  const covered = new Set<string>()
  const register = (method: MethodOf<S>, title: string, ...args: [BackendTest] | [ContractOptions, BackendTest]) => {
    const [options, fn] = args.length === 1 ? [{}, args[0]] : args
    covered.add(method)
    const label = `${name}.${method}: ${title}`
    if (options.only !== undefined && !backends().includes(options.only)) {
      t.test(`${label} [${options.only}]`, { skip: `${options.only} only (TASKBROKER_TEST_DATABASE_URL)` }, async () => {})
      return
    }
    for (const backend of backends()) {
      if (options.only !== undefined && backend !== options.only) continue
      t.test(`${label} [${backend}]`, options.timeout === undefined ? {} : { timeout: options.timeout }, (tt) => fn(tt, backend))
    }
  }
  return Object.assign(register, {
    everyMethodCovered () {
      t.test(`every method of ${name} has a contract`, async (t) => {
        const methods = Object.entries(store).filter(([, value]) => typeof value === 'function').map(([key]) => key)
        t.ok(methods.length > 0, `${name} has ${methods.length} methods`)
        t.same(methods.filter(method => !covered.has(method)), [], 'methods without a contract')
      })
    }
  })
}

/** A database that answers every statement with no rows: enough to build a store and list its methods. */
export const stubDatabase: Database = {
  kind: 'pglite',
  get db (): never { throw new Error('the stub database has no drizzle instance') },
  rows: async () => [],
  prepare: () => ({ run: async () => [] }),
  run: async () => [],
  migrate: async () => {},
  listen: async () => ({ unlisten: async () => {} }),
  notify: async () => {},
  leaderLock: () => ({ acquire: async () => true, release: async () => {} }),
  close: async () => {}
}
