/**
 * The task store: every statement the broker runs against its tables lives here (or in the
 * upkeep jobs' store functions), behind one seam that routes, batchers and upkeep call.
 *
 * Each operation is one set-based statement. Hot statements (claims) are prepared once.
 * Connection-level failures surface as StoreUnavailableError (503 + Retry-After).
 */
import { sql, type SQL } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import { inflightTasks } from '../db/schema.js'
import { StoreUnavailableError } from '../errors.js'
import type {
  Activation, ClaimFilter, ProduceResult, StatusUpdate, StoredTask, StoreStats, TaskStatus
} from './types.js'
import { TASK_STATUSES } from './types.js'

export interface TaskStoreOptions {
  /** Seconds added to every processing deadline. */
  processingDeadlineGraceSec: number
  /** Longest delay honoured; a longer one is capped (upstream's max_delayed_task_allowed_sec). */
  maxDelaySec: number
  /**
   * What a `complete` report does to the row: delete it in the flush statement itself, or mark it
   * and leave the delete to upkeep. `delete` is the default: it was faster (see CHANGELOG / README).
   */
  completedRows?: 'delete' | 'mark'
}

export type TaskStore = ReturnType<typeof createTaskStore>

export interface LiveCounts { pending: number, delay: number, processing: number, claimed: number }

/** Columns returned to callers for a task; one list so every query maps rows the same way. */
const TASK_COLUMNS = sql.raw(
  't.id, t.activation, t.status, t.added_at, t.processing_attempts, t.processing_deadline, ' +
  't.expires_at, t.delay_until, t.claim_expires_at'
)

export function createTaskStore (database: Database, options: TaskStoreOptions) {
  const { db } = database
  const graceSec = options.processingDeadlineGraceSec
  const deleteCompleted = (options.completedRows ?? 'delete') === 'delete'

  const statements = {
    countLive: database.prepare('taskbroker_count_live', sql`
      select status, count(*)::int as count from inflight_tasks
      where status in ('pending', 'delay', 'processing', 'claimed') group by status`)
  }
  const claimStatements = {
    any: prepareClaim(database, 'taskbroker_claim_any', sql``, graceSec),
    application: prepareClaim(database, 'taskbroker_claim_app',
      sql`and application = ${sql.placeholder('application')}`, graceSec),
    namespace: prepareClaim(database, 'taskbroker_claim_app_ns',
      sql`and application = ${sql.placeholder('application')} and namespace = ${sql.placeholder('namespace')}`, graceSec)
  }

  return {
    kind: database.kind,

    /** Inserts new tasks; ids already present (or repeated in the batch) are listed as duplicates. */
    async produce (activations: Activation[], now: Date): Promise<ProduceResult> {
      const seen = new Set<string>()
      const duplicates: string[] = []
      const rows: Array<ReturnType<typeof toRow>> = []
      for (const activation of activations) {
        if (seen.has(activation.id)) {
          duplicates.push(activation.id)
          continue
        }
        seen.add(activation.id)
        rows.push(toRow(activation, now, options.maxDelaySec))
      }
      if (rows.length === 0) return { inserted: [], duplicates }
      const insertedRows = await guard(() => db.insert(inflightTasks).values(rows)
        .onConflictDoNothing({ target: inflightTasks.id })
        .returning({ id: inflightTasks.id }))
      const inserted = new Set(insertedRows.map(r => r.id))
      for (const row of rows) if (!inserted.has(row.id)) duplicates.push(row.id)
      return { inserted: rows.map(r => r.id).filter(id => inserted.has(id)), duplicates }
    },

    /**
     * Claims up to `limit` pending tasks, oldest `added_at` first, skipping rows other claims hold;
     * each becomes `processing` with deadline = DB now + its duration + grace.
     * A namespace filter needs an application (callers validate; here it is simply ignored).
     */
    async claim (filter: ClaimFilter, limit: number): Promise<StoredTask[]> {
      const { application, namespace } = filter
      const statement = application === undefined
        ? claimStatements.any
        : namespace === undefined ? claimStatements.application : claimStatements.namespace
      const rows = await guard(() => statement.run({ limit, application, namespace }))
      // RETURNING comes back in no particular order; callers rely on FIFO.
      return rows.map(toStoredTask).sort((a, b) => a.addedAt.getTime() - b.addedAt.getTime())
    },

    /**
     * Writes many worker reports in ONE statement: every row carries its own status and retry
     * fields. `complete` deletes the row (or marks it, see completedRows); `failure`/`retry` set the
     * status and clear the deadline; retry fields patch activation.retry_state. Ids must be unique
     * (the batcher dedupes). Returns the ids that existed and were changed.
     */
    async setStatusMany (updates: readonly StatusUpdate[]): Promise<Set<string>> {
      if (updates.length === 0) return new Set()
      const rows = await guard(() => database.run(setStatusText(updates.length, deleteCompleted), setStatusParams(updates)))
      return new Set(rows.map(r => r.id as string))
    },

    async getById (id: string): Promise<StoredTask | null> {
      const rows = await guard(() => database.rows(sql`select ${TASK_COLUMNS} from ${inflightTasks} t where t.id = ${id}`))
      return rows[0] === undefined ? null : toStoredTask(rows[0])
    },

    /** Counts by status and by application/namespace/status, and the age of the oldest pending task. */
    async stats (now: Date): Promise<StoreStats> {
      const rows = await guard(() => database.rows(sql`
        select status, application, namespace, count(*)::int as count,
               min(coalesce(delay_until, received_at)) filter (where expires_at is null or expires_at > now()) as oldest
        from ${inflightTasks} group by status, application, namespace`))
      const byStatus = Object.fromEntries(TASK_STATUSES.map(s => [s, 0])) as Record<TaskStatus, number>
      let oldestPending: Date | null = null
      const byQueue = rows.map(r => {
        const status = r.status as TaskStatus
        byStatus[status] = (byStatus[status] ?? 0) + (r.count as number)
        const oldest = toDate(r.oldest)
        if (status === 'pending' && oldest !== null && (oldestPending === null || oldest < oldestPending)) oldestPending = oldest
        return { application: r.application as string, namespace: r.namespace as string, status, count: r.count as number }
      })
      const oldestPendingAgeSec = oldestPending === null ? 0 : Math.max(0, (now.getTime() - (oldestPending as Date).getTime()) / 1000)
      return { byStatus, byQueue, oldestPendingAgeSec }
    },

    /** Live task counts behind produce backpressure: one grouped count over the status index. */
    async countLive (): Promise<LiveCounts> {
      const rows = await guard(() => statements.countLive.run())
      const counts: LiveCounts = { pending: 0, delay: 0, processing: 0, claimed: 0 }
      for (const row of rows) counts[row.status as keyof LiveCounts] = Number(row.count)
      return counts
    },

    /** Cheap round trip for readiness checks. */
    async ping (): Promise<void> {
      await guard(() => database.rows(sql`select 1`))
    }
  }
}

function prepareClaim (database: Database, name: string, filter: SQL, graceSec: number) {
  return database.prepare(name, sql`
    with next as (
      select id from ${inflightTasks}
      where status = 'pending' and (expires_at is null or expires_at > now()) ${filter}
      order by added_at
      limit ${sql.placeholder('limit')}
      for update skip locked
    )
    update ${inflightTasks} t
    set status = 'processing',
        processing_deadline = now() + make_interval(secs => t.processing_deadline_duration + ${sql.raw(String(graceSec))}),
        claim_expires_at = null
    from next where t.id = next.id
    returning ${TASK_COLUMNS}`)
}

const PATCH_ACTIVATION = `case when v.max_attempts is null and v.delay_on_retry is null then t.activation
    else jsonb_set(t.activation, '{retry_state}', coalesce(t.activation -> 'retry_state', '{}'::jsonb)
      || jsonb_strip_nulls(jsonb_build_object('max_attempts', v.max_attempts, 'delay_on_retry', v.delay_on_retry))) end`

const statusStatementCache = new Map<string, string>()

/**
 * The bulk status statement for `rows` reports: a VALUES list of (id, status, max_attempts,
 * delay_on_retry), one bind parameter each. The text depends only on the row count and the mode,
 * so it is built once per size and the prepared statement is reused. Retry fields only ever add to
 * retry_state; a report without them leaves the activation as it is.
 */
function setStatusText (rows: number, deleteCompleted: boolean): string {
  const key = `${rows}:${deleteCompleted}`
  const cached = statusStatementCache.get(key)
  if (cached !== undefined) return cached
  const values = Array.from({ length: rows }, (_, i) =>
    `($${i * 4 + 1}::text, $${i * 4 + 2}::text, $${i * 4 + 3}::int, $${i * 4 + 4}::int)`).join(', ')
  const head = `with v(id, status, max_attempts, delay_on_retry) as (values ${values})`
  const update = (where: string) => `update inflight_tasks t
    set status = v.status, processing_deadline = null, activation = ${PATCH_ACTIVATION},
      failure_reason = case when v.status = 'failure' then 'reported_failure' end
    from v where t.id = v.id${where} returning t.id`
  const text = deleteCompleted
    ? `${head},
      done as (delete from inflight_tasks t using v where t.id = v.id and v.status = 'complete' returning t.id),
      changed as (${update(" and v.status <> 'complete'")})
      select id from done union all select id from changed`
    : `${head} ${update('')}`
  statusStatementCache.set(key, text)
  return text
}

function setStatusParams (updates: readonly StatusUpdate[]): unknown[] {
  const params: unknown[] = new Array(updates.length * 4)
  updates.forEach((u, i) => {
    params[i * 4] = u.id
    params[i * 4 + 1] = u.status
    params[i * 4 + 2] = u.maxAttempts ?? null
    params[i * 4 + 3] = u.delayOnRetry ?? null
  })
  return params
}

/** When a delayed task may first be claimed (delay capped at maxDelaySec), or null. */
function delayUntilOf (activation: Activation, maxDelaySec: number): Date | null {
  const delaySec = Math.min(activation.delay ?? 0, maxDelaySec)
  return delaySec > 0 ? new Date(new Date(activation.received_at).getTime() + delaySec * 1000) : null
}

/** A new task starts as `delay` while its delay lasts, `pending` otherwise. */
export function initialStatus (activation: Activation, now: Date, maxDelaySec: number): 'pending' | 'delay' {
  const delayUntil = delayUntilOf(activation, maxDelaySec)
  return delayUntil !== null && delayUntil > now ? 'delay' : 'pending'
}

function toRow (activation: Activation, now: Date, maxDelaySec: number) {
  const receivedAt = new Date(activation.received_at)
  return {
    id: activation.id,
    activation,
    receivedAt,
    expiresAt: activation.expires === undefined ? null : new Date(receivedAt.getTime() + activation.expires * 1000),
    delayUntil: delayUntilOf(activation, maxDelaySec),
    processingDeadlineDuration: activation.processing_deadline_duration,
    status: initialStatus(activation, now, maxDelaySec),
    atMostOnce: activation.retry_state.at_most_once,
    application: activation.application,
    namespace: activation.namespace,
    taskname: activation.taskname,
    onAttemptsExceeded: activation.retry_state.on_attempts_exceeded,
    bucket: bucketOf(activation.id)
  }
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i

/** Upstream's bucket: the UUID as a 128-bit number mod 256, i.e. its last byte; 0 for other ids. */
export function bucketOf (id: string): number {
  return UUID.test(id) ? parseInt(id.slice(-2), 16) : 0
}

export function toStoredTask (row: Row): StoredTask {
  return {
    activation: row.activation as Activation,
    status: row.status as TaskStatus,
    addedAt: toDate(row.added_at) as Date,
    processingAttempts: row.processing_attempts as number,
    processingDeadline: toDate(row.processing_deadline),
    expiresAt: toDate(row.expires_at),
    delayUntil: toDate(row.delay_until),
    claimExpiresAt: toDate(row.claim_expires_at)
  }
}

/** Raw queries give timestamps as strings (drizzle turns postgres.js's parser off) or Dates. */
export function toDate (value: unknown): Date | null {
  if (value === null || value === undefined) return null
  return value instanceof Date ? value : new Date(value as string)
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED',
  // SQLSTATE: admin shutdown, crash shutdown, cannot connect now, too many connections,
  // statement timeout (the server is overloaded or a lock is stuck)
  '57P01', '57P02', '57P03', '53300', '57014'
])

/** True when the error means "the database cannot be reached right now", not "this query is wrong". */
export function isStoreUnavailable (error: unknown): boolean {
  const err = error as { code?: unknown, cause?: unknown, errno?: unknown } | null
  if (err === null || typeof err !== 'object') return false
  const code = typeof err.code === 'string' ? err.code : ''
  if (CONNECTION_ERROR_CODES.has(code) || code.startsWith('08')) return true
  return err.cause !== undefined && err.cause !== error && isStoreUnavailable(err.cause)
}

function rootMessage (error: unknown): string {
  let current = error as { cause?: unknown, message?: unknown }
  while (current.cause !== undefined && current.cause !== null && typeof current.cause === 'object') {
    current = current.cause as { cause?: unknown, message?: unknown }
  }
  return typeof current.message === 'string' ? current.message.slice(0, 500) : 'unknown error'
}

/** Runs a store call, turning connection failures into StoreUnavailableError (503). */
export async function guard<T> (call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    if (isStoreUnavailable(error)) {
      // The innermost message ("connect ECONNREFUSED …"), not drizzle's wrapper, which quotes the
      // whole statement with every parameter (hundreds of KB for a produce).
      throw new StoreUnavailableError(rootMessage(error), { cause: error })
    }
    throw error
  }
}
