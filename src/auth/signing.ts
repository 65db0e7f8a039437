/**
 * Request signing, shared by the broker (verifying), clients (signing) and push delivery.
 *
 * signature = hex(HMAC-SHA256(secret, `${METHOD} ${path with query}:${timestamp}:${raw body}`))
 * sent as `taskbroker-signature`, with the unix-seconds timestamp in `taskbroker-timestamp`.
 * Upstream signs `path:body` only; the method, the query and the timestamp are added here so a
 * captured request can neither be replayed later nor turned into another request.
 *
 * An optional `taskbroker-nonce` makes two otherwise identical requests signed in the same second
 * differ (the broker refuses a signature it has already seen): it is then signed as
 * `${timestamp}.${nonce}` in place of the timestamp. A timestamp is only digits, so a request
 * without a nonce can never be read as one with a nonce, or the other way round.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto'

export const SIGNATURE_HEADER = 'taskbroker-signature'
export const TIMESTAMP_HEADER = 'taskbroker-timestamp'
export const NONCE_HEADER = 'taskbroker-nonce'

/** What a nonce may be: 1–64 URL-safe characters (a UUID fits). */
const NONCE = /^[A-Za-z0-9_-]{1,64}$/

export interface SignInput {
  method: string
  /** Path with query string, exactly as sent: `/v1/tasks?x=1`. */
  path: string
  /** The raw body bytes (or text) as sent; empty for bodiless requests. */
  body?: string | Uint8Array
  /** Unix seconds; default now. */
  timestamp?: number
  /**
   * Makes this request differ from an identical one signed in the same second; sent as
   * `taskbroker-nonce`. Default: a fresh random one, because the broker refuses a signature it
   * has seen (concurrent identical claims, a retry within the same second). `null` sends none
   * (the broker's own pushes, which workers do not check for replays).
   */
  nonce?: string | null
}

function digest (secret: string, input: { method: string, path: string, body: string | Uint8Array, timestamp: number, nonce?: string | undefined }): Buffer {
  const stamp = input.nonce === undefined ? String(input.timestamp) : `${input.timestamp}.${input.nonce}`
  return createHmac('sha256', secret)
    .update(`${input.method.toUpperCase()} ${input.path}:${stamp}:`)
    .update(input.body)
    .digest()
}

/** The headers to add to a request: `taskbroker-signature`, `taskbroker-timestamp` and (unless `nonce: null`) `taskbroker-nonce`. */
export function signRequest (secret: string, input: SignInput): Record<string, string> {
  const nonce = input.nonce === undefined ? randomUUID() : input.nonce ?? undefined
  if (nonce !== undefined && !NONCE.test(nonce)) throw new TypeError('a nonce is 1-64 characters of A-Z a-z 0-9 _ -')
  const full = { body: '', timestamp: Math.floor(Date.now() / 1000), ...input, nonce }
  return {
    [SIGNATURE_HEADER]: digest(secret, full).toString('hex'),
    [TIMESTAMP_HEADER]: String(full.timestamp),
    ...(nonce === undefined ? {} : { [NONCE_HEADER]: nonce })
  }
}

/**
 * True when `signature` was made with any one of `secrets` (so secrets can be rotated) and the
 * timestamp is within `maxSkewSec` of now. Every secret is tried with a constant-time compare.
 */
export function verifySignature (secrets: readonly string[], input: {
  method: string
  path: string
  body: string | Uint8Array
  signature: string | undefined
  timestamp: string | undefined
  /** The `taskbroker-nonce` header, when the request has one. */
  nonce?: string | undefined
  maxSkewSec: number
  nowSec?: number
}): boolean {
  if (input.signature === undefined || input.timestamp === undefined) return false
  if (!/^[0-9a-f]{64}$/i.test(input.signature) || !/^\d{1,12}$/.test(input.timestamp)) return false
  if (input.nonce !== undefined && !NONCE.test(input.nonce)) return false
  const timestamp = Number(input.timestamp)
  const now = input.nowSec ?? Math.floor(Date.now() / 1000)
  if (Math.abs(now - timestamp) > input.maxSkewSec) return false
  const given = Buffer.from(input.signature, 'hex')
  let ok = false
  for (const secret of secrets) {
    // No early exit: the time taken does not tell which secret (or whether any) matched.
    if (timingSafeEqual(given, digest(secret, { method: input.method, path: input.path, body: input.body, timestamp, nonce: input.nonce }))) ok = true
  }
  return ok
}
