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
import { bucketOf, delayUntilOf, initialStatus, scheduleStart } from '../domain/schedule.js'
import { intText, pgArray } from './arrays.js'
import { guard } from './errors.js'
import { toDate, toStoredTask } from './rows.js'
import { setAsideUndecodable } from './undecodable.js'
import type {
  Activation, ClaimFilter, ProduceResult, StatusUpdate, StoredTask, StoreStats, TaskStatus
} from '../domain/types.js'
import { TASK_STATUSES } from '../domain/types.js'

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
const TASK_COLUMN_LIST = 't.id, t.activation, t.status, t.added_at, t.processing_attempts, t.processing_deadline, ' +
  't.expires_at, t.delay_until, t.claim_expires_at'
const TASK_COLUMNS = sql.raw(TASK_COLUMN_LIST)

export function createTaskStore (database: Database, options: TaskStoreOptions) {
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
      const insertedRows = await guard(() => database.run(PRODUCE_TEXT, produceParams(rows)))
      const inserted = new Set(insertedRows.map(r => r.id as string))
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
      const statement = claimStatements[filterVariant(filter)]
      // A task whose stored activation cannot be decoded goes to the dead letters instead (undecodable.ts).
      const rows = await setAsideUndecodable(database, await guard(() => statement.run({ limit, application, namespace })))
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
      const rows = await guard(() => database.run(statusText(deleteCompleted, undefined), statusParams(updates)))
      return new Set(rows.map(r => r.id as string))
    },

    /**
     * setStatusMany and a claim of up to `limit` pending tasks matching `filter`, in ONE statement
     * (one round trip, one commit): the path of status reports that ask for their next task
     * (`fetch_next`). The claim never picks a task reported in the same statement.
     */
    async setStatusManyAndClaim (updates: readonly StatusUpdate[], filter: ClaimFilter, limit: number): Promise<{ applied: Set<string>, claimed: StoredTask[] }> {
      if (limit < 1) return { applied: await this.setStatusMany(updates), claimed: [] }
      // An empty id list never reaches SQL.
      if (updates.length === 0) return { applied: new Set(), claimed: await this.claim(filter, limit) }
      const variant = filterVariant(filter)
      const params = [...statusParams(updates), limit]
      if (variant !== 'any') params.push(filter.application)
      if (variant === 'namespace') params.push(filter.namespace)
      const rows = await guard(() => database.run(statusText(deleteCompleted, variant, graceSec), params))
      const applied = new Set<string>()
      const claimedRows: Row[] = []
      for (const row of rows) {
        if (row.status === null) applied.add(row.id as string)
        else claimedRows.push(row)
      }
      const claimed = (await setAsideUndecodable(database, claimedRows)).map(toStoredTask)
      claimed.sort((a, b) => a.addedAt.getTime() - b.addedAt.getTime())
      return { applied, claimed }
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

// A stored activation without an object retry_state (written by hand or by another version) is
// left as it is: patching it would throw and fail every report in the flush; upkeep's retry step
// dead-letters it with the reason.
const PATCH_ACTIVATION = `case when (v.max_attempts is null and v.delay_on_retry is null)
      or jsonb_typeof(t.activation -> 'retry_state') is distinct from 'object' then t.activation
    else jsonb_set(t.activation, '{retry_state}', (t.activation -> 'retry_state')
      || jsonb_strip_nulls(jsonb_build_object('max_attempts', v.max_attempts, 'delay_on_retry', v.delay_on_retry))) end`

type FilterVariant = 'any' | 'application' | 'namespace'

/** Which prepared claim a filter uses (a namespace without an application is ignored). */
function filterVariant (filter: ClaimFilter): FilterVariant {
  return filter.application === undefined ? 'any' : filter.namespace === undefined ? 'application' : 'namespace'
}

/** The claim's WHERE clause after `status = 'pending'`, with its filter as $n parameters from `first`. */
function pendingWhere (variant: FilterVariant, first: number): string {
  const filter = variant === 'any'
    ? ''
    : variant === 'application'
      ? ` and application = $${first}`
      : ` and application = $${first} and namespace = $${first + 1}`
  return `status = 'pending' and (expires_at is null or expires_at > now())${filter}`
}

/** Report rows in the combined statement: the task columns' names (a union takes its first branch's), all null. */
const NULL_TASK_COLUMNS = 'null::jsonb as activation, null::text as status, null::timestamptz as added_at, ' +
  'null::int as processing_attempts, null::timestamptz as processing_deadline, null::timestamptz as expires_at, ' +
  'null::timestamptz as delay_until, null::timestamptz as claim_expires_at'

const statusTextCache = new Map<string, string>()

/**
 * The bulk status statement: reports arrive as four parallel arrays (id, status, max_attempts,
 * delay_on_retry) unnested into rows, so the text is the same for every batch size (one prepared
 * statement, a stable plan: a VALUES list's estimate grows with its rows and can flip the join to a
 * sequential scan on large batches, where unnest keeps the index nested loop). Retry fields only ever add to retry_state; a report
 * without them leaves the activation as it is. With `claim` set, the same statement also claims up
 * to $5 pending tasks (filter in $6, $7) and returns them; report rows come back with a null status.
 */
function statusText (deleteCompleted: boolean, claim: FilterVariant | undefined, graceSec = 0): string {
  const key = `${deleteCompleted}:${claim ?? ''}:${graceSec}`
  const cached = statusTextCache.get(key)
  if (cached !== undefined) return cached
  const head = 'with v(id, status, max_attempts, delay_on_retry) as (select * from unnest($1::text[], $2::text[], $3::int[], $4::int[]))'
  const update = (where: string) => `update inflight_tasks t
    set status = v.status, processing_deadline = null, activation = ${PATCH_ACTIVATION},
      failure_reason = case when v.status = 'failure' then 'reported_failure' end
    from v where t.id = v.id${where} returning t.id`
  const reports = deleteCompleted
    ? `done as (delete from inflight_tasks t using v where t.id = v.id and v.status = 'complete' returning t.id),
      changed as (${update(" and v.status <> 'complete'")})`
    : `changed as (${update('')})`
  const reportIds = deleteCompleted
    ? 'select id from done union all select id from changed'
    : 'select id from changed'
  let text: string
  if (claim === undefined) {
    text = `${head}, ${reports} ${reportIds}`
  } else {
    // `not exists (… v …)`: a task reported here is never also claimed here (one row must not be
    // modified twice by one statement).
    text = `${head}, ${reports},
      next as (
        select id from inflight_tasks n
        where ${pendingWhere(claim, 6)} and not exists (select 1 from v where v.id = n.id)
        order by added_at limit $5 for update skip locked
      ),
      claimed as (
        update inflight_tasks t
        set status = 'processing',
            processing_deadline = now() + make_interval(secs => t.processing_deadline_duration + ${graceSec}),
            claim_expires_at = null
        from next where t.id = next.id
        returning ${TASK_COLUMN_LIST}
      )
      select id, ${NULL_TASK_COLUMNS} from (${reportIds}) r
      union all select * from claimed`
  }
  statusTextCache.set(key, text)
  return text
}

/**
 * Reports go in id order: every bulk statement then locks its rows in the same order, so two
 * flushes (or a flush and another writer of several rows) wait for each other instead of
 * deadlocking. Results are matched by id, so the order callers gave does not matter.
 */
function statusParams (unordered: readonly StatusUpdate[]): unknown[] {
  const updates = [...unordered].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const n = updates.length
  const ids = new Array<string>(n)
  const statuses = new Array<string>(n)
  const maxAttempts = new Array<string | null>(n)
  const delays = new Array<string | null>(n)
  for (let i = 0; i < n; i++) {
    const u = updates[i] as StatusUpdate
    ids[i] = u.id
    statuses[i] = u.status
    maxAttempts[i] = intText(u.maxAttempts)
    delays[i] = intText(u.delayOnRetry)
  }
  return [pgArray(ids), pgArray(statuses), pgArray(maxAttempts), pgArray(delays)]
}

/**
 * Produce: one INSERT of unnested column arrays. The text never changes, so it is prepared once;
 * drizzle's insert builder spent 200–300 ms of CPU on a 1000-task batch (13 bind parameters per
 * row), this takes a fraction of that.
 */
const PRODUCE_TEXT = `insert into inflight_tasks (id, activation, received_at, expires_at, delay_until,
    processing_deadline_duration, status, at_most_once, application, namespace, taskname,
    on_attempts_exceeded, bucket)
  select id, activation::jsonb, received_at, expires_at, delay_until, processing_deadline_duration, status,
    at_most_once, application, namespace, taskname, on_attempts_exceeded, bucket
  from unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::int[],
    $7::text[], $8::bool[], $9::text[], $10::text[], $11::text[], $12::text[], $13::smallint[])
    with ordinality as r(id, activation, received_at, expires_at, delay_until, processing_deadline_duration, status,
      at_most_once, application, namespace, taskname, on_attempts_exceeded, bucket, ord)
  -- rows get added_at (clock_timestamp) as they are inserted: in batch order, so FIFO holds
  order by ord
  on conflict (id) do nothing
  returning id`

function produceParams (rows: ReadonlyArray<ReturnType<typeof toRow>>): unknown[] {
  const columns: Array<Array<string | null>> = Array.from({ length: 13 }, () => new Array<string | null>(rows.length))
  rows.forEach((r, i) => {
    const c = columns
    ;(c[0] as unknown[])[i] = r.id
    ;(c[1] as unknown[])[i] = JSON.stringify(r.activation)
    ;(c[2] as unknown[])[i] = r.receivedAt.toISOString()
    ;(c[3] as unknown[])[i] = r.expiresAt?.toISOString() ?? null
    ;(c[4] as unknown[])[i] = r.delayUntil?.toISOString() ?? null
    ;(c[5] as unknown[])[i] = intText(r.processingDeadlineDuration)
    ;(c[6] as unknown[])[i] = r.status
    ;(c[7] as unknown[])[i] = r.atMostOnce ? 'true' : 'false'
    ;(c[8] as unknown[])[i] = r.application
    ;(c[9] as unknown[])[i] = r.namespace
    ;(c[10] as unknown[])[i] = r.taskname
    ;(c[11] as unknown[])[i] = r.onAttemptsExceeded
    ;(c[12] as unknown[])[i] = intText(r.bucket)
  })
  return columns.map(pgArray)
}

function toRow (activation: Activation, now: Date, maxDelaySec: number) {
  const expiresAt = activation.expires === undefined ? null : new Date(scheduleStart(activation.received_at, now) + activation.expires * 1000)
  return {
    id: activation.id,
    activation,
    receivedAt: new Date(activation.received_at),
    expiresAt,
    delayUntil: delayUntilOf(activation, now, maxDelaySec),
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
