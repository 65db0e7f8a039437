/**
 * Request signing, shared by the broker (verifying), clients (signing) and push delivery.
 *
 * signature = hex(HMAC-SHA256(secret, `${METHOD} ${path with query}:${timestamp}:${raw body}`))
 * sent as `taskbroker-signature`, with the unix-seconds timestamp in `taskbroker-timestamp`.
 * Upstream signs `path:body` only; the method, the query and the timestamp are added here so a
 * captured request can neither be replayed later nor turned into another request.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export const SIGNATURE_HEADER = 'taskbroker-signature'
export const TIMESTAMP_HEADER = 'taskbroker-timestamp'

export interface SignInput {
  method: string
  /** Path with query string, exactly as sent: `/v1/tasks?x=1`. */
  path: string
  /** The raw body bytes (or text) as sent; empty for bodiless requests. */
  body?: string | Uint8Array
  /** Unix seconds; default now. */
  timestamp?: number
}

function digest (secret: string, input: Required<SignInput>): Buffer {
  return createHmac('sha256', secret)
    .update(`${input.method.toUpperCase()} ${input.path}:${input.timestamp}:`)
    .update(input.body)
    .digest()
}

/** The headers to add to a request: `{ 'taskbroker-signature', 'taskbroker-timestamp' }`. */
export function signRequest (secret: string, input: SignInput): Record<string, string> {
  const full = { body: '', timestamp: Math.floor(Date.now() / 1000), ...input }
  return {
    [SIGNATURE_HEADER]: digest(secret, full).toString('hex'),
    [TIMESTAMP_HEADER]: String(full.timestamp)
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
  maxSkewSec: number
  nowSec?: number
}): boolean {
  if (input.signature === undefined || input.timestamp === undefined) return false
  if (!/^[0-9a-f]{64}$/i.test(input.signature) || !/^\d{1,12}$/.test(input.timestamp)) return false
  const timestamp = Number(input.timestamp)
  const now = input.nowSec ?? Math.floor(Date.now() / 1000)
  if (Math.abs(now - timestamp) > input.maxSkewSec) return false
  const given = Buffer.from(input.signature, 'hex')
  let ok = false
  for (const secret of secrets) {
    // No early exit: the time taken does not tell which secret (or whether any) matched.
    if (timingSafeEqual(given, digest(secret, { method: input.method, path: input.path, body: input.body, timestamp }))) ok = true
  }
  return ok
}
