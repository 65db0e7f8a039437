/**
 * When to send a call again, and after how long. A call is `safe` when sending it twice does what
 * sending it once does (reads, produce with ids, reports without fetch_next, heartbeats);
 * otherwise it is only sent again when the broker surely did nothing with it.
 */
import { NOTHING_DONE_CODES, TaskbrokerError, TaskbrokerUnreachableError } from './errors.js'

export interface RetryOptions {
  /** Attempts in all, the first included (default 5; Infinity until it works or `signal` aborts). */
  attempts?: number
  /** First backoff when the answer names no Retry-After (default 100 ms), doubling per attempt. */
  baseMs?: number
  /** Longest backoff (default 5000 ms); a longer Retry-After is still honoured. */
  maxMs?: number
}

export const DEFAULT_RETRY: Required<RetryOptions> = { attempts: 5, baseMs: 100, maxMs: 5_000 }

/** May a call that failed with `error` be sent again? */
export function mayRetry (error: unknown, safe: boolean): boolean {
  if (error instanceof TaskbrokerUnreachableError) return safe || !error.sent
  if (!(error instanceof TaskbrokerError) || !error.temporary) return false
  return safe || error.statusCode === 429 || NOTHING_DONE_CODES.has(error.code)
}

/**
 * The wait before attempt `attempt + 1` (attempt counts from 1): the Retry-After when given, else
 * exponential backoff; then up to +50 % jitter so that many clients told the same do not return
 * in the same instant.
 */
export function backoffMs (attempt: number, error: unknown, options: Required<RetryOptions>, random: () => number = Math.random): number {
  const retryAfter = error instanceof TaskbrokerError ? error.retryAfterSec : undefined
  const base = retryAfter !== undefined
    ? retryAfter * 1000
    : Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt - 1, 30))
  return Math.round(base * (1 + random() / 2))
}

export function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Runs `call` until it succeeds, fails for good, runs out of attempts or `signal` aborts. */
export async function withRetry<T> (
  call: () => Promise<T>,
  safe: boolean,
  options: Required<RetryOptions>,
  hooks: { signal?: AbortSignal | undefined, onRetry?: (error: unknown, attempt: number, waitMs: number) => void } = {}
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call()
    } catch (error) {
      if (attempt >= options.attempts || !mayRetry(error, safe) || hooks.signal?.aborted === true) throw error
      const wait = backoffMs(attempt, error, options)
      hooks.onRetry?.(error, attempt, wait)
      await sleep(wait, hooks.signal)
    }
  }
}
