/** A database that reports the text of every statement prepared or sent through it. */
import { PgDialect } from 'drizzle-orm/pg-core'
import type { Database } from '../../../src/db/database.js'

export function recording (database: Database, record: (text: string) => void): Database {
  const dialect = new PgDialect()
  return {
    kind: database.kind,
    get db () { return database.db },
    rows (query, options) {
      record(dialect.sqlToQuery(query).sql)
      return database.rows(query, options)
    },
    prepare (name, query, options) {
      record(dialect.sqlToQuery(query).sql)
      return database.prepare(name, query, options)
    },
    run (text, params, options) {
      record(text)
      return database.run(text, params, options)
    },
    migrate: () => database.migrate(),
    listen: (channel, onPayload) => database.listen(channel, onPayload),
    notify: (channel, payload) => database.notify(channel, payload),
    leaderLock: (key) => database.leaderLock(key),
    close: () => database.close()
  }
}
