/**
 * The task store: produce, claims, worker reports, reads and counts (interfaces.ts). Each
 * operation is one set-based statement; claims are prepared once, the bulk statements compiled
 * once (statements/). Connection-level failures surface as StoreUnavailableError (503 + Retry-After).
 */
import { sql } from 'drizzle-orm'
import type { Database, Row } from '../db/database.js'
import { inflightTasks } from '../db/schema.js'
import { TASK_STATUSES, type ProduceResult, type StoredTask, type StoreStats, type TaskStatus } from '../domain/types.js'
import { guard } from './errors.js'
import type { QueueRestrictions } from './queue-restrictions.js'
import type { LiveCounts, ProduceCall, ReportsWritten, TaskStore } from './interfaces.js'
import { parseActivations, taskColumns, toDate, toStoredTask } from './rows.js'
import { claimSteps, filterVariant, inClaimOrder, pullClaim, type FilterVariant } from './statements/claim.js'
import { PRODUCE, produceHandoffStatement, produceHandoffValues, produceValues, producedTask, type HandoffTarget, type ProducedTask } from './statements/produce.js'
import { columnsOf, namesOf } from './statements/schema-sql.js'
import { needsFence, statusStatement, statusValues, type ReportRowOutcome } from './statements/status.js'
import { setAsideUndecodable } from './undecodable.js'

export type { LiveCounts, ProduceCall, TaskStore } from './interfaces.js'

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

const c = columnsOf(inflightTasks)
const k = namesOf(inflightTasks)
const LIVE_STATUSES: ReadonlyArray<keyof LiveCounts> = ['pending', 'delay', 'processing', 'claimed']

/** Report rows (id, outcome) of the status statement, sorted out. */
function reportsWritten (rows: Row[]): ReportsWritten {
  const written: ReportsWritten = { applied: new Set(), stale: new Set(), cancelled: new Set() }
  for (const row of rows) {
    const id = row[k.id] as string
    const outcome = row.outcome as ReportRowOutcome
    if (outcome === 'stale') written.stale.add(id)
    else written.applied.add(id)
    if (outcome === 'cancelled') written.cancelled.add(id)
  }
  return written
}

/** A task produce handed to a waiting claim, as the claim would have returned it. */
function handedOffTask (task: ProducedTask, row: Row): StoredTask {
  return {
    activation: task.activation,
    status: 'processing',
    addedAt: toDate(row[k.addedAt]) as Date,
    processingAttempts: 0,
    processingDeadline: toDate(row[k.processingDeadline]),
    expiresAt: task.expiresAt,
    delayUntil: task.delayUntil,
    claimExpiresAt: null,
    priority: task.priority,
    lease: row[k.lease] as string,
    progress: null,
    cancelRequested: false
  }
}

export function createTaskStore (database: Database, options: TaskStoreOptions, restrictions: Pick<QueueRestrictions, 'none'> = { none: false }): TaskStore {
  const graceSec = options.processingDeadlineGraceSec
  const deleteCompleted = (options.completedRows ?? 'delete') === 'delete'

  const countLive = database.prepare('taskbroker_count_live', sql`
    select ${c.status}, count(*)::int as count from ${inflightTasks}
    where ${c.status} in (${sql.raw(LIVE_STATUSES.map(s => `'${s}'`).join(', '))}) group by ${c.status}`)
  const prepareClaim = (name: string, variant: FilterVariant, controls: boolean) => {
    const { next, update } = claimSteps({
      ...pullClaim(variant),
      as: { status: 'processing', graceSec },
      controls,
      returning: taskColumns('t')
    })
    return database.prepare(controls ? name : `${name}_plain`, sql`with ${next} ${update}`)
  }
  const claimsOf = (controls: boolean): Record<FilterVariant, ReturnType<Database['prepare']>> => ({
    any: prepareClaim('taskbroker_claim_any', 'any', controls),
    application: prepareClaim('taskbroker_claim_app', 'application', controls),
    namespace: prepareClaim('taskbroker_claim_app_ns', 'namespace', controls)
  })
  const claims = { controlled: claimsOf(true), plain: claimsOf(false) }

  /** Claimed rows as tasks, in claim order; undecodable ones go to the dead letters instead. */
  const handOut = async (rows: Row[]) => (await setAsideUndecodable(database, inClaimOrder(parseActivations(rows)))).map(toStoredTask)

  async function claim (filter: Parameters<TaskStore['claim']>[0], limit: number) {
    const { application, namespace } = filter
    const rows = await guard(() => claims[restrictions.none ? 'plain' : 'controlled'][filterVariant(filter)].run({ limit, application, namespace }))
    return await handOut(rows)
  }

  async function writeReports (updates: Parameters<TaskStore['writeReports']>[0]): Promise<ReportsWritten> {
    if (updates.length === 0) return reportsWritten([])
    const fenced = needsFence(updates)
    return reportsWritten(await guard(() => statusStatement(deleteCompleted, undefined, 0, fenced).run(database, statusValues(updates, fenced))))
  }

  async function setStatusMany (updates: Parameters<TaskStore['setStatusMany']>[0]) {
    return (await writeReports(updates)).applied
  }

  async function produceMany (calls: readonly ProduceCall[]): Promise<ProduceResult[]> {
    const seen = new Set<string>()
    const results: ProduceResult[] = calls.map(() => ({ inserted: [], duplicates: [], handedOff: new Map() }))
    const tasks: ProducedTask[] = []
    /** Per task: the index of its call. */
    const callOf: number[] = []
    const targets: Array<HandoffTarget | undefined> = []
    for (const [n, { activations, now, priorities, handoff }] of calls.entries()) {
      for (const [i, activation] of activations.entries()) {
        if (seen.has(activation.id)) {
          (results[n] as ProduceResult).duplicates.push(activation.id)
          continue
        }
        seen.add(activation.id)
        tasks.push(producedTask(activation, now, options.maxDelaySec, priorities?.[i] ?? 0))
        callOf.push(n)
        const to = handoff?.[i]
        targets.push(to === undefined ? undefined : { application: to.application ?? null, namespace: to.application === undefined ? null : to.namespace ?? null })
      }
    }
    if (tasks.length === 0) return results
    const offered = targets.some(t => t !== undefined)
    const insertedRows = await guard(() => offered
      ? produceHandoffStatement(graceSec).run(database, produceHandoffValues(tasks, targets))
      : PRODUCE.run(database, produceValues(tasks)))
    const rowOf = new Map<string, Row>()
    for (const row of insertedRows) rowOf.set(row[k.id] as string, row)
    for (const [t, task] of tasks.entries()) {
      const result = results[callOf[t] as number] as ProduceResult
      const row = rowOf.get(task.id)
      if (row === undefined) result.duplicates.push(task.id)
      else {
        result.inserted.push(task.id)
        if (offered && row[k.status] === 'processing') result.handedOff.set(task.id, handedOffTask(task, row))
      }
    }
    return results
  }

  return {
    kind: database.kind,

    produce: async (activations, now, priorities, handoff) => (await produceMany([{ activations, now, priorities, handoff }]))[0] as ProduceResult,

    produceMany,

    // A namespace filter needs an application (callers validate; here it is simply ignored).
    claim,

    setStatusMany,

    writeReports,

    async setStatusManyAndClaim (updates, filter, limit) {
      if (limit < 1) return { ...await writeReports(updates), claimed: [] }
      // An empty id list never reaches SQL.
      if (updates.length === 0) return { ...reportsWritten([]), claimed: await claim(filter, limit) }
      const fenced = needsFence(updates)
      const statement = statusStatement(deleteCompleted, filterVariant(filter), graceSec, fenced, !restrictions.none)
      // Properties added, not spread: spreading the values into a new object cost ~10 µs a flush.
      const values: Record<string, unknown> = statusValues(updates, fenced)
      values.limit = limit
      values.application = filter.application
      values.namespace = filter.namespace
      const rows = await guard(() => statement.run(database, values))
      // Report rows carry their id and outcome, claimed rows no outcome.
      const reportRows: Row[] = []
      const claimedRows: Row[] = []
      for (const row of rows) (row.outcome === null ? claimedRows : reportRows).push(row)
      return { ...reportsWritten(reportRows), claimed: await handOut(claimedRows) }
    },

    async getById (id) {
      const rows = await guard(() => database.rows(sql`select ${taskColumns('t')} from ${inflightTasks} t where t.${c.id} = ${id}`))
      return rows[0] === undefined ? null : toStoredTask(parseActivations(rows)[0] as Row)
    },

    async stats (now): Promise<StoreStats> {
      const rows = await guard(() => database.rows(sql`
        select ${c.status}, ${c.application}, ${c.namespace}, count(*)::int as count,
               min(coalesce(${c.delayUntil}, ${c.receivedAt})) filter (where ${c.expiresAt} is null or ${c.expiresAt} > now()) as oldest
        from ${inflightTasks} group by ${c.status}, ${c.application}, ${c.namespace}`))
      const byStatus = Object.fromEntries(TASK_STATUSES.map(s => [s, 0])) as Record<TaskStatus, number>
      let oldestPending: Date | null = null
      const byQueue = rows.map(r => {
        const status = r[k.status] as TaskStatus
        const count = r.count as number
        byStatus[status] = (byStatus[status] ?? 0) + count
        const oldest = toDate(r.oldest)
        if (status === 'pending' && oldest !== null && (oldestPending === null || oldest < oldestPending)) oldestPending = oldest
        return { application: r[k.application] as string, namespace: r[k.namespace] as string, status, count }
      })
      const oldestPendingAgeSec = oldestPending === null ? 0 : Math.max(0, (now.getTime() - (oldestPending as Date).getTime()) / 1000)
      return { byStatus, byQueue, oldestPendingAgeSec }
    },

    async countLive () {
      const rows = await guard(() => countLive.run())
      const counts: LiveCounts = { pending: 0, delay: 0, processing: 0, claimed: 0 }
      for (const row of rows) counts[row[k.status] as keyof LiveCounts] = Number(row.count)
      return counts
    },

    async ping () {
      await guard(() => database.rows(sql`select 1`))
    }
  }
}
