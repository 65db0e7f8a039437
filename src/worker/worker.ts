/**
 * `createWorker(...)`: a pull worker on the client. It long-polls claims for its free slots, runs
 * the handler per task (run-task.ts), reports outcomes — one finished task with `fetch_next` (long-polling), so
 * the answer brings its next task; several finished at once in one batch report — and keeps long
 * tasks alive with heartbeats, delivering cancellation and the deadline as the task's AbortSignal.
 * `stop()` drains: no more claims, tasks claimed but not started are released, running ones finish
 * (up to a deadline), every report is written. Heartbeat and release are detected: on a broker
 * without them (404 TASKBROKER_ROUTE_NOT_FOUND) the worker sends no heartbeats and runs rather
 * than releases what it holds.
 */
import { EventEmitter } from 'node:events'
import pino, { type Logger } from 'pino'
import { createClient, type TaskbrokerClient } from '../client/client.js'
import { isRouteNotFound, TaskbrokerError } from '../client/errors.js'
import { backoffMs, DEFAULT_RETRY, mayRetry, sleep } from '../client/retry.js'
import type { BatchStatusUpdate, ClaimedTask, StatusRequest } from '../client/types.js'
import { dropReport, heartbeatEveryMs, isGone, MAX_TIMER_MS, runHandler, TaskAbortedError, type AbortReason, type Handler } from './run-task.js'

export interface WorkerOptions {
  /** The broker's base URL (ignored when `client` is given). */
  url?: string
  secrets?: readonly string[]
  /** A client to share (it is not closed by stop()). */
  client?: TaskbrokerClient
  /** Claim only tasks of this application (and namespace, which needs an application). */
  application?: string
  namespace?: string
  /** Tasks run at once (default 1). */
  concurrency?: number
  handler: Handler
  /** Long-poll length of a claim (default 5000 ms); stop() may wait this long for a claim in flight. */
  waitMs?: number
  /**
   * A finished task's report long-polls for the next one (`fetch_next.wait_ms` = waitMs), so a
   * worker that keeps up makes one request per task (default true; false for a broker without
   * `fetch_next.wait_ms`, which refuses it with a 400). stop() may wait this long for it too.
   */
  fetchNextWait?: boolean
  /** Heartbeat period (default: a third of the task's processing_deadline_duration, at least 1 s). */
  heartbeatIntervalMs?: number
  /** Seconds each heartbeat extends the deadline by (default: the broker's). */
  extendSec?: number
  /**
   * Longest a handler may run (default: no limit). Past it the signal aborts with `timeout` and
   * heartbeats stop, so a handler that ignores its signal no longer keeps its task: the broker
   * takes it back at its deadline.
   */
  taskTimeoutMs?: number
  /** How long stop() lets running tasks finish before aborting them (default 30 s). */
  stopTimeoutMs?: number
  logger?: Logger
}

export interface TaskEnd { task: ClaimedTask, report: StatusRequest, error?: unknown, durationMs: number }

/**
 * Events: 'claimed' (tasks), 'start' (task), 'end' (TaskEnd), 'reported' ({ids, applied, cancelled}),
 * 'stale' ({ids}: reports refused because the task was reset and claimed again under another lease),
 * 'released' ({ids}: claimed during stop() and given back), 'heartbeat' ({task, cancel_requested}),
 * 'warning' (message, error), 'error' (a TaskbrokerError: a claim refused with 400, 401 or 403,
 * emitted only while someone listens), 'stopped'.
 */
export interface Worker extends EventEmitter {
  /** Tasks this worker holds now (running, or finished with the report not yet written). */
  readonly holding: number
  /** Stops claiming, drains and resolves when nothing of this worker is left processing. */
  stop: (options?: { timeoutMs?: number }) => Promise<void>
}

interface Running {
  task: ClaimedTask
  controller: AbortController
  startedAt: number
  heartbeat?: NodeJS.Timeout | undefined
  deadline?: NodeJS.Timeout | undefined
  timeout?: NodeJS.Timeout | undefined
  /** Aborted when the handler ends: a heartbeat still being retried then is dropped. */
  beats: AbortController
  /** Released at a hard stop: its result is not reported. */
  abandoned: boolean
  done: Promise<void>
}

interface Finished { task: ClaimedTask, report: StatusRequest, reserved: boolean }

/** The broker's default TASKBROKER_CLAIM_MAX_TASKS: a larger limit would be a 400. */
const CLAIM_MAX = 100
/** After a stop's hard deadline, how long aborted handlers get before they are left behind. */
const ABANDON_AFTER_MS = 10_000

/** Options a broker would refuse on every claim, or that would leave the worker idle: thrown at once. */
function checkOptions (options: WorkerOptions): void {
  const whole = (name: string, value: number | undefined, min: number) => {
    if (value !== undefined && !(Number.isInteger(value) && value >= min)) throw new TypeError(`createWorker: ${name} must be an integer of at least ${min} (got ${String(value)})`)
  }
  whole('concurrency', options.concurrency, 1)
  whole('waitMs', options.waitMs, 0)
  whole('heartbeatIntervalMs', options.heartbeatIntervalMs, 1)
  whole('stopTimeoutMs', options.stopTimeoutMs, 0)
  whole('taskTimeoutMs', options.taskTimeoutMs, 1)
  whole('extendSec', options.extendSec, 1)
  if (options.namespace !== undefined && options.application === undefined) throw new TypeError('createWorker: a namespace filter needs an application')
  if (typeof options.handler !== 'function') throw new TypeError('createWorker needs a handler function')
}

/** A claim the broker refused for a reason retrying does not change: the worker's settings or secret. */
function refusedForGood (error: unknown): error is TaskbrokerError {
  return error instanceof TaskbrokerError && !error.temporary && [400, 401, 403].includes(error.statusCode)
}

export function createWorker (options: WorkerOptions): Worker {
  checkOptions(options)
  const ownsClient = options.client === undefined
  const client = options.client ?? createClient({ url: requireUrl(options.url), ...(options.secrets === undefined ? {} : { secrets: options.secrets }) })
  const log = options.logger ?? pino({ name: 'taskbroker-worker', level: process.env.LOG_LEVEL ?? 'info' })
  const concurrency = Math.max(1, options.concurrency ?? 1)
  const waitMs = options.waitMs ?? 5_000
  const nextWaitMs = options.fetchNextWait === false ? 0 : waitMs
  const filter = {
    ...(options.application === undefined ? {} : { application: options.application }),
    ...(options.namespace === undefined ? {} : { namespace: options.namespace })
  }
  const events = new EventEmitter() as Worker
  const running = new Map<string, Running>()
  const pending: Finished[] = []
  const flushes = new Set<Promise<void>>()
  let reserved = 0
  let unreported = 0 // finished tasks whose report is not written yet
  let stopping = false
  let heartbeats: boolean | undefined // undefined: not known yet
  let releases: boolean | undefined
  let wake: (() => void) | undefined
  const stopController = new AbortController()
  // Reports are retried until written, until stop()'s deadline has passed.
  const reportsController = new AbortController()

  const warn = (message: string, error?: unknown) => {
    log.warn({ err: error }, message)
    emit('warning', message, error)
  }
  /** A listener that throws must not break the worker's bookkeeping: it is logged instead. */
  const emit = (event: string, ...args: unknown[]) => {
    try {
      events.emit(event, ...args)
    } catch (error) {
      log.error({ err: error, event }, 'a worker event listener threw')
    }
  }
  const wakeLoop = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const free = () => concurrency - running.size - reserved

  function abort (entry: Running, reason: AbortReason) {
    if (!entry.controller.signal.aborted) entry.controller.abort(new TaskAbortedError(reason))
  }

  /** Its result will not be reported, and nothing of it (timers, heartbeats) keeps running. */
  function leaveBehind (entry: Running) {
    entry.abandoned = true
    clearInterval(entry.heartbeat)
    clearTimeout(entry.deadline)
    clearTimeout(entry.timeout)
    entry.beats.abort()
  }

  function armDeadline (entry: Running, deadline: string) {
    clearTimeout(entry.deadline)
    const ms = Date.parse(deadline) - Date.now()
    if (!Number.isFinite(ms)) return
    entry.deadline = setTimeout(() => abort(entry, 'deadline'), Math.min(Math.max(0, ms), MAX_TIMER_MS))
  }

  async function sendHeartbeat (entry: Running, progress?: unknown): Promise<void> {
    if (heartbeats === false || entry.controller.signal.aborted) return
    const body = {
      ...(options.extendSec === undefined ? {} : { extend_sec: options.extendSec }),
      ...(progress === undefined ? {} : { progress }),
      lease: entry.task.lease
    }
    try {
      const answer = await client.heartbeat(entry.task.id, body, { signal: entry.beats.signal })
      if (entry.beats.signal.aborted) return
      heartbeats = true
      armDeadline(entry, answer.processing_deadline)
      emit('heartbeat', { task: entry.task, cancel_requested: answer.cancel_requested })
      if (answer.cancel_requested) abort(entry, 'cancelled')
    } catch (error) {
      if (entry.beats.signal.aborted) return
      if (isRouteNotFound(error)) {
        heartbeats = false
        for (const other of running.values()) clearInterval(other.heartbeat)
        log.info('the broker has no heartbeat endpoint: tasks run within their processing deadline')
      } else if (isGone(error)) {
        abort(entry, 'lost') // no longer ours: finished elsewhere, timed out or cancelled
      } else {
        warn(`heartbeat for ${entry.task.id} failed`, error)
      }
    }
  }

  function start (task: ClaimedTask) {
    const controller = new AbortController()
    const entry: Running = { task, controller, startedAt: Date.now(), beats: new AbortController(), abandoned: false, done: Promise.resolve() }
    running.set(task.id, entry)
    armDeadline(entry, task.processing_deadline)
    if (heartbeats !== false) {
      const every = options.heartbeatIntervalMs === undefined ? heartbeatEveryMs(task.processing_deadline_duration) : Math.min(options.heartbeatIntervalMs, MAX_TIMER_MS)
      entry.heartbeat = setInterval(() => { sendHeartbeat(entry).catch(() => {}) }, every)
    }
    if (options.taskTimeoutMs !== undefined) {
      entry.timeout = setTimeout(() => {
        abort(entry, 'timeout')
        clearInterval(entry.heartbeat) // the task is no longer kept: the broker takes it back at its deadline
      }, Math.min(options.taskTimeoutMs, MAX_TIMER_MS))
    }
    emit('start', task)
    entry.done = runHandler(options.handler, task, {
      signal: controller.signal,
      heartbeat: (progress?: unknown) => sendHeartbeat(entry, progress)
    }).then(({ report, error }) => {
      clearInterval(entry.heartbeat)
      clearTimeout(entry.deadline)
      clearTimeout(entry.timeout)
      entry.beats.abort()
      running.delete(task.id)
      const durationMs = Date.now() - entry.startedAt
      emit('end', { task, report, error, durationMs } satisfies TaskEnd)
      if (error !== undefined) log.debug({ taskId: task.id, err: error }, 'task failed')
      if (entry.abandoned) return
      if (dropReport(controller.signal, report)) {
        warn(`task ${task.id} failed after it was aborted (${(controller.signal.reason as TaskAbortedError).reason}): not reported; the broker runs it again after its deadline`)
        return
      }
      const reserve = !stopping
      if (reserve) reserved++
      unreported++
      pending.push({ task, report: withLease(report, task), reserved: reserve })
      if (pending.length === 1) setImmediate(flush)
    })
  }

  function flush () {
    const batch = pending.splice(0)
    if (batch.length === 0) return
    const work = (async () => {
      try {
        await writeReports(batch)
      } catch (error) {
        warn(`${batch.length} report(s) not written; the broker runs those tasks again after their deadline`, error)
      } finally {
        unreported -= batch.length
        for (const item of batch) if (item.reserved) reserved--
        wakeLoop()
      }
    })()
    flushes.add(work)
    work.finally(() => flushes.delete(work)).catch(() => {})
  }

  const until = { attempts: Infinity }

  async function writeReports (batch: Finished[]) {
    const only = batch.length === 1 ? batch[0] : undefined
    if (only !== undefined && only.reserved && !stopping) {
      // One report: ask for the next task in the same request.
      let answer
      try {
        const next = nextWaitMs > 0 ? { ...filter, wait_ms: nextWaitMs } : filter
        answer = await client.report(only.task.id, { ...only.report, fetch_next: next }, { signal: reportsController.signal, retry: until })
      } catch (error) {
        if (isStale(error)) return staleReports([only.task.id])
        if (!mayRetry(error, true)) throw error
        // The answer was lost: the report may or may not be written, and a next task may have been
        // claimed for us. Report again without fetch_next (harmless); such a task runs after its deadline.
        try {
          answer = await client.report(only.task.id, only.report, { signal: reportsController.signal, retry: until })
        } catch (again) {
          if (isStale(again)) return staleReports([only.task.id])
          throw again
        }
      }
      emit('reported', { ids: [only.task.id], applied: answer.applied || answer.queued ? 1 : 0, cancelled: answer.cancelled === true ? [only.task.id] : [] })
      if (answer.task !== null) {
        if (stopping) await giveBack([answer.task])
        else start(answer.task)
      }
      return
    }
    for (let i = 0; i < batch.length; i += 1000) {
      const updates: BatchStatusUpdate[] = batch.slice(i, i + 1000).map(item => ({ id: item.task.id, ...item.report }) as BatchStatusUpdate)
      const answer = await client.reportMany(updates, { signal: reportsController.signal, retry: until })
      emit('reported', { ids: updates.map(u => u.id), applied: answer.applied + answer.queued, cancelled: answer.cancelled ?? [] })
      if (answer.stale !== undefined && answer.stale.length > 0) staleReports(answer.stale)
    }
  }

  /** Reports refused as stale: the task was reset (missed deadline) and claimed again; its new holder reports it. */
  function staleReports (ids: string[]) {
    warn(`${ids.length} report(s) refused: the lease is stale (the task was handed out again), not applied: ${ids.join(' ')}`)
    emit('stale', { ids })
  }

  /** Tasks claimed during stop: released when the broker can, else run like any other. */
  async function giveBack (tasks: ClaimedTask[]) {
    for (const task of tasks) {
      if (releases !== false) {
        try {
          await client.release(task.id, { lease: task.lease })
          releases = true
          emit('released', { ids: [task.id] })
          continue
        } catch (error) {
          if (isRouteNotFound(error)) releases = false
          else warn(`release of ${task.id} failed; running it`, error)
        }
      }
      start(task)
    }
  }

  async function claimLoop () {
    let failures = 0
    // stop() sets `stopping` while this loop awaits.
    const going = () => !stopping
    while (going()) {
      if (free() <= 0) {
        await new Promise<void>(resolve => { wake = resolve })
        continue
      }
      try {
        const answer = await client.claim({ ...filter, limit: Math.min(free(), CLAIM_MAX), wait_ms: waitMs }, { retry: { attempts: 1 } })
        failures = 0
        if (answer.tasks.length > 0) emit('claimed', answer.tasks)
        if (stopping) await giveBack(answer.tasks)
        else for (const task of answer.tasks) start(task)
      } catch (error) {
        failures++
        const wait = mayRetry(error, false) ? backoffMs(failures, error, DEFAULT_RETRY) : backoffMs(failures, undefined, { ...DEFAULT_RETRY, baseMs: 500 })
        if (refusedForGood(error)) {
          // Settings or a secret the broker refuses: an error each time (a secret being rotated
          // heals, so the worker goes on); an 'error' listener may stop the worker to fail fast.
          log.error({ err: error }, `claim refused: ${error.code} (${error.statusCode}); trying again in ${wait} ms`)
          if (events.listenerCount('error') > 0) emit('error', error)
        } else if (failures === 1 || failures % 10 === 0) warn(`claim failed (${failures} in a row); trying again in ${wait} ms`, error)
        await sleep(wait, stopController.signal).catch(() => {})
      }
    }
  }

  const loop = claimLoop()
  let stopped: Promise<void> | undefined

  // Unref'd: a stop that ended early leaves no timer holding the process open.
  const timer = (ms: number) => new Promise<'timeout'>(resolve => setTimeout(() => resolve('timeout'), Math.max(0, ms)).unref())
  const live = () => [...running.values()].filter(r => !r.abandoned)

  /** The stop deadline passed: abort what still runs, a short grace, then give back what the broker takes back. */
  async function hardStop () {
    const late = live()
    if (late.length === 0) return
    warn(`${late.length} task(s) still running at the stop deadline: aborting them`)
    for (const entry of late) abort(entry, 'shutdown')
    await Promise.race([Promise.allSettled(late.map(r => r.done)), timer(1_000)])
    for (const entry of live()) {
      if (releases === false) break
      try {
        await client.release(entry.task.id, { lease: entry.task.lease })
        releases = true
        warn(`task ${entry.task.id} released while its handler still runs (it did not end within 1 s of its abort); the handler is left behind`)
        leaveBehind(entry)
      } catch (error) {
        if (isRouteNotFound(error)) releases = false
        // No longer ours (finished, cancelled, handed out again): nothing to wait for or report.
        else if (isGone(error)) leaveBehind(entry)
      }
    }
  }

  async function drain (timeoutMs: number) {
    stopping = true
    stopController.abort()
    wakeLoop()
    const deadline = Date.now() + timeoutMs
    await loop
    let hard = false
    let reportTimer: NodeJS.Timeout | undefined
    // Until nothing runs and every report is written; a task that arrives late (the answer of a
    // report with fetch_next sent before stop()) counts like any other.
    for (;;) {
      flush() // reports held for fetch_next go out plainly now
      const busy = live()
      if (busy.length === 0 && flushes.size === 0 && pending.length === 0) break
      if (busy.length === 0 && reportTimer === undefined) {
        // Reports are retried until written, but not forever once the stop deadline is behind.
        reportTimer = setTimeout(() => reportsController.abort(new Error('stop deadline passed')), Math.max(0, deadline - Date.now()) + 10_000)
      }
      const settled = Promise.allSettled([...flushes, ...busy.map(r => r.done)])
      if (hard) {
        // Without release: wait for them (they were told to stop), so nothing is left processing;
        // but not for ever: a handler that ignores its signal is left behind.
        if (await Promise.race([settled, timer(ABANDON_AFTER_MS)]) === 'timeout') {
          const stuck = live()
          if (stuck.length > 0) warn(`${stuck.length} task(s) did not end ${ABANDON_AFTER_MS} ms after being aborted: left behind, the broker runs them again after their deadline: ${stuck.map(e => e.task.id).join(' ')}`)
          for (const entry of stuck) leaveBehind(entry)
        }
        continue
      }
      if (await Promise.race([settled, timer(deadline - Date.now())]) === 'timeout') {
        hard = true
        await hardStop()
      }
    }
    clearTimeout(reportTimer)
    if (ownsClient) await client.close()
    emit('stopped')
  }

  Object.defineProperties(events, {
    holding: { get: () => live().length + unreported },
    stop: {
      value: (o: { timeoutMs?: number } = {}) => {
        stopped ??= drain(o.timeoutMs ?? options.stopTimeoutMs ?? 30_000)
        return stopped
      }
    }
  })
  return events
}

function withLease (report: StatusRequest, task: ClaimedTask): StatusRequest {
  return { ...report, lease: task.lease }
}

function isStale (error: unknown): boolean {
  return error instanceof TaskbrokerError && error.code === 'TASKBROKER_LEASE_STALE'
}

function requireUrl (url: string | undefined): string {
  if (url === undefined || url === '') throw new TypeError('createWorker needs `url` (or `client`)')
  return url
}
