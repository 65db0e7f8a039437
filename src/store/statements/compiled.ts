/**
 * Statements run as fixed text: built with Drizzle's `sql` from the schema, compiled to text once,
 * then sent with `database.run(text, params)`, their placeholders filled in order. For the bulk
 * statements (status flush, produce, push settle, dead-letter move), whose rows travel as a few
 * array parameters: the text is the same for every batch size, so building it per call would only
 * cost CPU (bench/statement-build.ts measures what a flush spends).
 */
import { is, Placeholder, type SQL } from 'drizzle-orm'
import { PgDialect } from 'drizzle-orm/pg-core'
import type { CallOptions, Database, Row } from '../../db/database.js'

const dialect = new PgDialect()

export interface CompiledStatement {
  /** The SQL text, with `$n` parameters. */
  readonly text: string
  /** Runs the statement with a value for each of its placeholders. */
  run (database: Database, values: Readonly<Record<string, unknown>>, options?: CallOptions): Promise<Row[]>
}

/**
 * Compiles `query` to text. Every parameter must be a `sql.placeholder`, each used once (an array
 * parameter of 10,000 ids must not be sent twice); values known when the statement is built are
 * part of its text.
 */
export function compile (query: SQL): CompiledStatement {
  const built = dialect.sqlToQuery(query)
  const names = built.params.map((param, i) => {
    if (!is(param, Placeholder)) throw new Error(`parameter $${i + 1} of a compiled statement is a value, not a placeholder`)
    return param.name as string
  })
  const repeated = names.find((name, i) => names.indexOf(name) !== i)
  if (repeated !== undefined) throw new Error(`placeholder "${repeated}" is used twice in one compiled statement`)
  return {
    text: built.sql,
    run (database, values, options) {
      const params = new Array<unknown>(names.length)
      for (let i = 0; i < names.length; i++) {
        const name = names[i] as string
        if (!(name in values)) throw new Error(`no value for placeholder "${name}"`)
        params[i] = values[name]
      }
      return database.run(built.sql, params, options)
    }
  }
}
