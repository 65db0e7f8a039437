/** Running raw SQL through drizzle's session, the same way on both drivers. */
import type { SQL } from 'drizzle-orm'
import type { Db, PreparedStatement, Row } from './types.js'

/**
 * drizzle only prepares server-side when a statement has a name (a named statement is parsed and
 * planned once per connection, not on every call), and its `execute()` for raw SQL never names one. So raw SQL goes
 * through the session's own prepareQuery with a name, exactly as the query builder's
 * `.prepare(name)` does.
 */
export function preparedOn (db: Db, name: string, query: SQL): PreparedStatement {
  const prepared = internalsOf(db)._.session.prepareQuery(internalsOf(db).dialect.sqlToQuery(query), undefined, name, false)
  return { run: async (values) => rowsOf(await prepared.execute(values)) }
}

export async function runPrepared (db: Db, text: string, params: unknown[]): Promise<Row[]> {
  // The name only has to be defined for drizzle to prepare; postgres.js keys statements by text.
  return rowsOf(await internalsOf(db)._.session.prepareQuery({ sql: text, params }, undefined, 'taskbroker', false).execute())
}

function internalsOf (db: Db) {
  return db as unknown as { _: { session: PrepareCapable }, dialect: { sqlToQuery (query: SQL): { sql: string, params: unknown[] } } }
}

/**
 * A result's rows. postgres.js counts the rows of a result per connection and resets the count only
 * when a result completes, so after a result was cut off (connection lost mid-stream) the first
 * result on the reconnected connection starts with as many empty slots; a row is never undefined
 * otherwise, so they are dropped here (test/lifecycle/store-timeout.test.ts reproduces it).
 */
export function rowsOf (result: unknown): Row[] {
  if (!Array.isArray(result)) return (result as { rows: Row[] }).rows
  const rows: Row[] = []
  for (let i = 0; i < result.length; i++) {
    const row = result[i] as Row | undefined
    if (row !== undefined) rows.push(row)
  }
  return rows
}

interface PrepareCapable {
  prepareQuery (
    query: { sql: string, params: unknown[] },
    fields: undefined,
    name: string,
    isResponseInArrayMode: boolean
  ): { execute (values?: Record<string, unknown>): Promise<unknown> }
}

/** `promise`'s value, or undefined when it has not settled within `ms` (it is then left to itself). */
export async function within<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  promise.catch(() => {})
  try {
    return await Promise.race([promise, new Promise<undefined>(resolve => { timer = setTimeout(() => resolve(undefined), ms) })])
  } finally {
    clearTimeout(timer)
  }
}
