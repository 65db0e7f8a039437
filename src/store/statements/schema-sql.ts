/**
 * How statements name tables and columns: always through the Drizzle schema (src/db/schema.ts), so
 * renaming a column there breaks the compilation of every statement that uses it, and no SQL text
 * in the store spells a table or column name by hand (test/store/schema-references.test.ts).
 *
 * `${inflightTasks}` renders the table. Drizzle renders a bare column qualified by its table's
 * name, which is wrong after `from inflight_tasks t` and in SET lists, so columns go through
 * `columnsOf`: `columnsOf(inflightTasks).status` is `"status"`, `columnsOf(inflightTasks, 't').status`
 * is `t."status"`.
 */
import { getTableColumns, sql, type SQL } from 'drizzle-orm'
import type { AnyPgColumn, PgTable } from 'drizzle-orm/pg-core'

export type ColumnNames<T extends PgTable> = { readonly [K in keyof T['_']['columns']]: SQL }

/** The table's columns as SQL, by their schema property, bare or qualified by `alias`. */
export function columnsOf<T extends PgTable> (table: T, alias?: string): ColumnNames<T> {
  const prefix = alias === undefined ? undefined : sql.raw(`${alias}.`)
  const names: Record<string, SQL> = {}
  for (const [key, column] of Object.entries(getTableColumns(table) as Record<string, AnyPgColumn>)) {
    names[key] = prefix === undefined ? sql`${sql.identifier(column.name)}` : sql`${prefix}${sql.identifier(column.name)}`
  }
  return names as ColumnNames<T>
}

/** A comma-separated list of SQL chunks (column lists, SET lists). */
export function list (chunks: readonly SQL[]): SQL {
  return sql.join([...chunks], sql`, `)
}

export type ColumnKeys<T extends PgTable> = { readonly [K in keyof T['_']['columns']]: string }

/** The table's column names by schema property: the keys of a returned row. */
export function namesOf<T extends PgTable> (table: T): ColumnKeys<T> {
  const names: Record<string, string> = {}
  for (const [key, column] of Object.entries(getTableColumns(table) as Record<string, AnyPgColumn>)) names[key] = column.name
  return names as ColumnKeys<T>
}
