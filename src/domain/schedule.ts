/** When a produced task may first be claimed, when it expires, and its bucket: rules of the task, not of any store. */
import type { Activation } from './types.js'

/**
 * When a delayed task may first be claimed (delay capped at maxDelaySec), or null.
 */
export function delayUntilOf (activation: Activation, now: Date, maxDelaySec: number): Date | null {
  const delaySec = Math.min(activation.delay ?? 0, maxDelaySec)
  return delaySec > 0 ? new Date(scheduleStart(activation.received_at, now) + delaySec * 1000) : null
}

/** Where delay and expiry count from: received_at, or now when received_at lies ahead (a producer's clock, or a made-up date). */
export function scheduleStart (receivedAt: string, now: Date): number {
  return Math.min(Date.parse(receivedAt), now.getTime())
}

/** A new task starts as `delay` while its delay lasts, `pending` otherwise. */
export function initialStatus (activation: Activation, now: Date, maxDelaySec: number): 'pending' | 'delay' {
  const delayUntil = delayUntilOf(activation, now, maxDelaySec)
  return delayUntil !== null && delayUntil > now ? 'delay' : 'pending'
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i

/** Upstream's bucket: the UUID as a 128-bit number mod 256, i.e. its last byte; 0 for other ids. */
export function bucketOf (id: string): number {
  return UUID.test(id) ? parseInt(id.slice(-2), 16) : 0
}
