/**
 * Produced tasks offered to the claims long-polling for them. Before the insert, waiting claims
 * are held for each queue's claimable tasks (in claim order: higher priority, then batch order),
 * and each task is offered to one held group; the insert stores as processing those it may
 * (store: produce) and the held claims get them as their answer. What the insert kept pending is
 * claimed the usual way (its waiters stay in their rooms and are woken). A handed-off task whose
 * claim went away meanwhile is released at once: pending again, no attempt counted.
 */
import type { Activation, ClaimFilter, QueueRef, StoredTask } from '../../domain/types.js'
import type { HeldClaims } from '../claims/claim-service.js'

export interface Handoff {
  reserve (queue: QueueRef, tasks: number): HeldClaims[]
  /** Puts a handed-off task nobody took back to pending. */
  release (task: StoredTask): Promise<void>
}

export interface Offer {
  /** Per accepted task: the filter of the claims it is offered to, if any (the store's `handoff`). */
  targets: Array<ClaimFilter | undefined>
  /** The insert failed: the held claims wait on. */
  withdraw (): void
  /** The insert answered: each held group gets its tasks that were handed off. */
  deliver (handedOff: ReadonlyMap<string, StoredTask>): void
}

export function offerToWaiters (handoff: Handoff, accepted: readonly Activation[], priorities: readonly number[], delayed: ReadonlySet<string>): Offer | undefined {
  const byQueue = new Map<string, number[]>()
  for (const [i, activation] of accepted.entries()) {
    if (delayed.has(activation.id)) continue
    const key = `${activation.application}\u0000${activation.namespace}`
    const indexes = byQueue.get(key)
    if (indexes === undefined) byQueue.set(key, [i])
    else indexes.push(i)
  }
  const targets = new Array<ClaimFilter | undefined>(accepted.length)
  const groups: Array<{ held: HeldClaims, ids: string[] }> = []
  for (const indexes of byQueue.values()) {
    const first = accepted[indexes[0] as number] as Activation
    const held = handoff.reserve({ application: first.application, namespace: first.namespace }, indexes.length)
    if (held.length === 0) continue
    indexes.sort((a, b) => (priorities[b] ?? 0) - (priorities[a] ?? 0) || a - b)
    let next = 0
    for (const group of held) {
      const ids: string[] = []
      for (const i of indexes.slice(next, next + group.capacity)) {
        targets[i] = group.filter
        ids.push((accepted[i] as Activation).id)
      }
      next += ids.length
      groups.push({ held: group, ids })
    }
  }
  if (groups.length === 0) return undefined
  return {
    targets,
    withdraw () {
      for (const { held } of groups) held.deliver([])
    },
    deliver (handedOff) {
      for (const { held, ids } of groups) {
        const tasks = ids.flatMap(id => handedOff.get(id) ?? [])
        for (const task of held.deliver(tasks)) handoff.release(task).catch(() => {})
      }
    }
  }
}
