/**
 * Store failures as callers see them: "unavailable" (connection lost, timeout: 503 + Retry-After)
 * or a StoreError (500), neither carrying the statement or its parameters.
 */
import { mayHaveRun, rootMessage } from '../db/database.js'
import { StoreUnavailableError } from '../domain/errors.js'

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED',
  // a call with no answer within TASKBROKER_DB_CALL_TIMEOUT_MS (src/db/database.ts)
  'TASKBROKER_STORE_TIMEOUT',
  // SQLSTATE: admin shutdown, crash shutdown, cannot connect now, too many connections,
  // statement timeout (the server is overloaded or a lock is stuck)
  '57P01', '57P02', '57P03', '53300', '57014'
])

function isUnavailableCode (code: string): boolean {
  return CONNECTION_ERROR_CODES.has(code) || code.startsWith('08')
}

/** True when the error means "the database cannot be reached right now", not "this query is wrong". */
export function isStoreUnavailable (error: unknown): boolean {
  const err = error as { code?: unknown, cause?: unknown, errno?: unknown } | null
  if (err === null || typeof err !== 'object') return false
  if (typeof err.code === 'string' && isUnavailableCode(err.code)) return true
  return err.cause !== undefined && err.cause !== error && isStoreUnavailable(err.cause)
}

/** The code along the cause chain that makes the error "unavailable", else the first (a SQLSTATE). */
function codeOf (error: unknown): string | undefined {
  let first: string | undefined
  for (let e = error as { code?: unknown, cause?: unknown } | null, depth = 0; e !== null && typeof e === 'object' && depth < 10; e = e.cause as typeof e, depth++) {
    if (typeof e.code !== 'string') continue
    if (isUnavailableCode(e.code)) return e.code
    first ??= e.code
  }
  return first
}

/**
 * A store error as it may be logged: the innermost message and the code, nothing else. Drivers'
 * errors quote the whole statement with every parameter (drizzle's "Failed query: … params: …",
 * hundreds of KB of task parameters for a produce), and loggers print a cause chain in full.
 */
export class StoreError extends Error {
  override name = 'StoreError'
  readonly code: string | undefined
  /** The statement had been sent when the call failed without an answer: it may have committed. */
  readonly mayHaveRun: boolean
  constructor (error: unknown) {
    super(rootMessage(error))
    this.code = codeOf(error)
    this.mayHaveRun = mayHaveRun(error)
  }
}

/**
 * Runs a store call. Connection failures and timeouts become StoreUnavailableError (503); any other
 * failure a StoreError (500). Neither carries the statement or its parameters.
 */
export async function guard<T> (call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    const safe = new StoreError(error)
    if (isStoreUnavailable(error)) throw new StoreUnavailableError(safe.message, { cause: safe })
    throw safe
  }
}

/** True when a store call failed in a way that leaves unknown whether its statement committed. */
export function outcomeUnknown (error: unknown): boolean {
  const cause = (error as { cause?: unknown } | null)?.cause
  return error instanceof StoreError ? error.mayHaveRun : cause instanceof StoreError && cause.mayHaveRun
}
