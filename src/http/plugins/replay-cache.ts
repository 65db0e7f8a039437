/**
 * The signatures this broker has accepted and that are still within the timestamp window, so the
 * same signed request is served once. Bounded: at most `maxEntries`; when full, new signatures are
 * refused rather than old ones forgotten (forgetting would let a replay through: fail closed).
 *
 * An entry is kept until its timestamp leaves the window (timestamp + max skew); after that the
 * timestamp check refuses the request anyway. Entries are grouped by that second, so expired ones
 * are dropped a second's group at a time, at most once per second, whatever their arrival order.
 */
export type ReplayVerdict = 'fresh' | 'replayed' | 'full'

export interface ReplayCache {
  /** Remembers `signature` (hex) until `expiresSec` and says 'fresh', or says why not. */
  check: (signature: string, expiresSec: number, nowSec: number) => ReplayVerdict
  readonly size: number
}

export function createReplayCache (maxEntries: number): ReplayCache {
  const seen = new Map<string, number>()
  const byExpiry = new Map<number, string[]>()
  let prunedAt = Number.NEGATIVE_INFINITY

  const prune = (nowSec: number) => {
    if (nowSec === prunedAt) return
    prunedAt = nowSec
    // At most one group per second of the window (about 2 × max skew groups) to look at.
    for (const [expiresSec, keys] of byExpiry) {
      if (expiresSec >= nowSec) continue
      for (const key of keys) seen.delete(key)
      byExpiry.delete(expiresSec)
    }
  }

  return {
    check (signature, expiresSec, nowSec) {
      prune(nowSec)
      // 32 bytes as a one-byte string: half the memory of the hex, and any letter case is one key.
      const key = Buffer.from(signature, 'hex').toString('latin1')
      if (seen.has(key)) return 'replayed'
      if (seen.size >= maxEntries) return 'full'
      seen.set(key, expiresSec)
      const group = byExpiry.get(expiresSec)
      if (group === undefined) byExpiry.set(expiresSec, [key])
      else group.push(key)
      return 'fresh'
    },
    get size () { return seen.size }
  }
}
