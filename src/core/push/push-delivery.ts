/**
 * Push delivery: fetch loops claim pending tasks into `claimed` with a lease, a bounded pool
 * POSTs each to its application's worker, and the outcomes are settled through the push updater
 * (delivered → processing, otherwise → pending at once, no attempt counted).
 *
 * Bounds: a fetch loop claims only what fits in `queueSize + concurrency` minus everything
 * outstanding (waiting for a push slot, being pushed, waiting for its outcome to be written), so
 * the tasks held in memory never exceed that, whether workers or the store are slow or down.
 *
 * Each fetch loop owns a range of the task `bucket` (0–255), so loops never compete for rows;
 * loops sleep `fetchBackoffMs` when they find nothing, and wake at once when a task is produced
 * (the task signal, which NOTIFY feeds from other brokers too). Applications whose worker is
 * pausing after failures are left out of claims until the pause ends.
 *
 * Shutdown (`stopFetching`, then `close`): the loops stop (what a claim in progress returns goes
 * straight back to pending), queued tasks go back to pending, pushes in flight finish (or are
 * aborted when the time is nearly up: they go back to pending too), and the updater's final flush
 * writes every outcome before close() returns.
 */
import { setMaxListeners } from 'node:events'
import type { Logger } from 'pino'
import type { TaskSignal } from '../claims/task-signal.js'
import type { PushConfig } from '../../config/config.js'
import type { Metrics } from '../metrics.js'
import type { PushClaim, PushStore } from '../../store/push-store.js'
import { bucketRange, pushClaimLeaseMs } from './lease.js'
import { createPushUpdater } from './push-updater.js'
import type { PushResult, PushWorkers } from './workers.js'

export type PushDelivery = ReturnType<typeof createPushDelivery>

export interface PushDeliveryDeps {
  config: PushConfig
  store: PushStore
  workers: PushWorkers
  signal: TaskSignal
  metrics: Metrics
  log: Logger
}

/** Promises that resolve when woken, or after a timeout. */
function createWakeup () {
  let waiters: Array<() => void> = []
  return {
    wait (timeoutMs: number): Promise<void> {
      return new Promise(resolve => {
        const timer = setTimeout(done, timeoutMs)
        timer.unref()
        waiters.push(done)
        function done () {
          clearTimeout(timer)
          resolve()
        }
      })
    },
    wakeAll (): void {
      const woken = waiters
      waiters = []
      for (const wake of woken) wake()
    }
  }
}

export function createPushDelivery (deps: PushDeliveryDeps) {
  const { config, store, workers, signal, metrics, log } = deps
  const leaseMs = pushClaimLeaseMs(config)
  const capacity = config.queueSize + config.concurrency
  const updater = createPushUpdater({ store, config, maxQueued: capacity, metrics, log: log.child({ component: 'push-updater' }) })

  const waiting: PushClaim[] = [] // claimed, waiting for a push slot (FIFO)
  // Mutable counters in one object (loops below read them while other callbacks change them).
  const state = {
    pushing: 0,
    settling: 0, // outcomes handed to the updater, not yet written
    reserved: 0, // room taken by claim statements in progress
    stopping: false
  }
  let callbackBase = ''
  const shutdown = new AbortController() // aborts pushes in flight when shutdown runs out of time
  setMaxListeners(0, shutdown.signal) // every push in flight listens to it
  const stopListening = new AbortController()
  const taskArrived = createWakeup()
  const roomFreed = createWakeup()
  const pushesDone = createWakeup()
  let loops: Array<Promise<void>> = []

  metrics.trackPush(() => ({ queued: waiting.length, inFlight: state.pushing, workersPausing: workers.pausing() }))
  const outstanding = () => waiting.length + state.pushing + state.settling + state.reserved

  async function fetchLoop (buckets: [number, number]): Promise<void> {
    let failures = 0 // consecutive failed claims: logged at the first and then every 100th
    while (!state.stopping) {
      const room = capacity - outstanding()
      if (room <= 0) {
        await roomFreed.wait(config.fetchBackoffMs)
        continue
      }
      const applications = workers.availableApplications()
      if (applications.length === 0) {
        await taskArrived.wait(Math.min(config.fetchBackoffMs, workers.nextResumeInMs() ?? config.fetchBackoffMs))
        continue
      }
      const seen = signal.sequence
      const limit = Math.min(config.fetchBatchSize, room)
      state.reserved += limit
      let claimed: PushClaim[]
      try {
        claimed = await store.claim({ buckets, applications, limit, leaseMs })
      } catch (error) {
        metrics.pushFetchFailures.inc()
        if (failures++ % 100 === 0) log.warn({ err: error, buckets, failures }, 'push fetch failed; retrying after the backoff')
        await taskArrived.wait(config.fetchBackoffMs)
        continue
      } finally {
        state.reserved -= limit
      }
      if (failures > 0) log.info({ buckets, failures }, 'push fetch works again')
      failures = 0
      if (claimed.length > 0) {
        metrics.pushClaimed.inc(claimed.length)
        if (state.stopping) { // shutdown began during the claim: straight back to pending
          for (const claim of claimed) settle(claim, 'shutdown')
        } else {
          waiting.push(...claimed)
          pump()
        }
      }
      // A full batch: there may be more right away. Otherwise sleep, unless a task arrived meanwhile.
      if (claimed.length < limit && signal.sequence === seen) await taskArrived.wait(config.fetchBackoffMs)
    }
  }

  /** Forwards task-signal notifications (produce, NOTIFY, upkeep releases) to every fetch loop. */
  async function listen (): Promise<void> {
    while (!state.stopping && !signal.closed) {
      await signal.wait({}, 1000, stopListening.signal)
      taskArrived.wakeAll()
    }
  }

  /** Starts pushes while there are slots. */
  function pump (): void {
    while (!state.stopping && state.pushing < config.concurrency && waiting.length > 0) {
      const claim = waiting.shift() as PushClaim
      state.pushing++
      deliver(claim).catch((error: unknown) => log.error({ err: error }, 'push failed unexpectedly')).finally(() => {
        state.pushing--
        pushesDone.wakeAll()
        pump()
      })
    }
  }

  async function deliver (claim: PushClaim): Promise<void> {
    const { activation } = claim
    const body = JSON.stringify({ task: activation, callback_url: callbackUrl(activation.id), lease: claim.lease, priority: claim.priority })
    const started = performance.now()
    const result = await workers.push({ application: activation.application, body, abort: shutdown.signal })
    metrics.pushes.inc({ result })
    if (result !== 'backoff') metrics.pushDuration.observe({ result }, (performance.now() - started) / 1000)
    if (result === 'delivered' && claim.processingAttempts === 0 && activation.retry_state.attempts === 0) {
      metrics.pushReceivedToPushed.observe(Math.max(0, Date.now() - new Date(activation.received_at).getTime()) / 1000)
    }
    if (result !== 'delivered' && result !== 'backoff') log.debug({ id: activation.id, application: activation.application, result }, 'push failed; the task is pending again')
    settle(claim, result) // the push slot is free now; the outcome counts as outstanding until written
  }

  function settle (claim: PushClaim, result: PushResult): Promise<void> {
    state.settling++
    return updater.settle({ id: claim.activation.id, token: claim.token, delivered: result === 'delivered' }).then(() => {
      state.settling--
      roomFreed.wakeAll()
    })
  }

  function callbackUrl (id: string): string {
    return `${callbackBase}/v1/tasks/${encodeURIComponent(id)}/status`
  }

  return {
    leaseMs,
    get queued () { return waiting.length },
    get inFlight () { return state.pushing },

    /** Starts the fetch loops; `publicBaseUrl` is where workers reach the broker (callback_url). */
    start (publicBaseUrl: string): void {
      if (loops.length > 0 || state.stopping) return
      callbackBase = publicBaseUrl.replace(/\/+$/, '')
      listen().catch((error: unknown) => log.error({ err: error }, 'push: the task-signal listener ended'))
      loops = Array.from({ length: config.fetchLoops }, (_, i) => fetchLoop(bucketRange(i, config.fetchLoops)).catch((error: unknown) => {
        log.error({ err: error }, 'push fetch loop ended with an error')
      }))
      log.info({ loops: config.fetchLoops, concurrency: config.concurrency, leaseMs, workers: config.workers.length, callbackBase }, 'push delivery started')
    },

    /** No new claims from now on (called first at shutdown, while requests still drain). */
    stopFetching (): void {
      state.stopping = true
      stopListening.abort()
      taskArrived.wakeAll()
      roomFreed.wakeAll()
    },

    /** Stops everything in order and writes every outcome; see the file comment. */
    async close (timeoutMs: number): Promise<void> {
      this.stopFetching()
      const deadline = performance.now() + timeoutMs
      // Pushes get most of the time; the final flush keeps the rest (at least a little).
      const pushDeadline = deadline - Math.min(timeoutMs / 4, 2_000)
      const unpushed = waiting.splice(0)
      if (unpushed.length > 0) log.info({ tasks: unpushed.length }, 'push: tasks not pushed yet go back to pending')
      for (const claim of unpushed) settle(claim, 'shutdown')
      // A loop in the middle of a claim statement releases what it claims itself (see fetchLoop).
      await Promise.race([Promise.all(loops), sleep(Math.max(0, pushDeadline - performance.now()))])
      while (state.pushing > 0 && performance.now() < pushDeadline) await pushesDone.wait(pushDeadline - performance.now())
      if (state.pushing > 0) {
        log.warn({ pushes: state.pushing }, 'push: aborting pushes still in flight at shutdown; their tasks go back to pending')
        shutdown.abort()
        while (state.pushing > 0) await pushesDone.wait(100)
      }
      await updater.close(Math.max(1, deadline - performance.now()))
      // Unbatched outcomes are statements of their own, still running: wait for them too.
      while (state.settling > 0 && performance.now() < deadline) await roomFreed.wait(Math.max(1, deadline - performance.now()))
      if (state.settling > 0) log.error({ outcomes: state.settling }, 'push outcomes not written before shutdown; those tasks stay claimed until their lease passes')
      await workers.close()
    }
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => { setTimeout(resolve, ms).unref() })
}
