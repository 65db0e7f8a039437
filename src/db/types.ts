/** What the rest of the broker sees of a database connection, whichever the driver. */
import type { SQL } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import type { Logger } from 'pino'
import type * as schema from './schema.js'

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>
export type DatabaseKind = 'postgres' | 'pglite'
export type Row = Record<string, unknown>

/** A statement prepared once and run many times with different values for its placeholders. */
export interface PreparedStatement {
  run (values?: Record<string, unknown>): Promise<Row[]>
}

/** Per-statement options. */
export interface CallOptions {
  /**
   * PostgreSQL: the longest this call may take, waiting for a connection included, instead of the
   * database's `callTimeoutMs` (0 = no limit). Ignored by PGlite.
   */
  timeoutMs?: number
}

export interface Database {
  readonly kind: DatabaseKind
  readonly db: Db
  /** Runs raw SQL (built with drizzle's `sql`) and returns its rows, whichever the driver. */
  rows (query: SQL, options?: CallOptions): Promise<Row[]>
  /** Prepares raw SQL with `sql.placeholder(...)` values under a server-side name (PostgreSQL). */
  prepare (name: string, query: SQL, options?: CallOptions): PreparedStatement
  /**
   * Runs SQL text with `$n` parameters as a prepared statement. For statements whose text is
   * generated (bulk VALUES lists): drizzle's `sql` builder costs ~9 ms of CPU for a 256-row list,
   * four times the statement's own execution time, so their text is built (and cached) by hand.
   */
  run (text: string, params: unknown[], options?: CallOptions): Promise<Row[]>
  /** Applies the migrations in `migrations/`; serialised by an advisory lock on PostgreSQL. */
  migrate (): Promise<void>
  /** Subscribes to a NOTIFY channel (PostgreSQL only; PGlite has a single process). */
  listen (channel: string, onPayload: (payload: string) => void): Promise<{ unlisten: () => Promise<void> }>
  notify (channel: string, payload: string): Promise<void>
  /**
   * A session-level advisory lock held on a connection of its own, for work that one broker at a
   * time must do (upkeep). PGlite is one process: its lock is always held.
   */
  leaderLock (key: number): LeaderLock
  close (): Promise<void>
}

export interface LeaderLock {
  /** Takes the lock if free, or confirms it is still held (its connection alive). */
  acquire (): Promise<boolean>
  release (): Promise<void>
}

export interface DatabaseOptions {
  url?: string | undefined
  dataDir: string
  poolSize: number
  log: Logger
  /**
   * PostgreSQL: the longest one statement call may take, from the call to its result, waiting for
   * a connection included (0 = no limit, the default). See `openPostgres`.
   */
  callTimeoutMs?: number
}
