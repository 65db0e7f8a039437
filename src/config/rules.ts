/**
 * Rules between settings, checked after each setting passed its own: a value that is fine alone
 * but not with another's.
 */
import { SETTINGS } from './settings.js'
import type { ConfigOf } from './setting.js'

interface Rule {
  /** The variable the message names (the one to change). */
  readonly variable: string
  /** The rule's message when `config` breaks it, else undefined. */
  readonly check: (config: ConfigOf<typeof SETTINGS>) => string | undefined
}

const { http, push, broker, store } = SETTINGS

export const RULES: readonly Rule[] = [
  {
    // The embedded store is one process's database: a second process cannot open it.
    variable: broker.settings.processes.env,
    check: c => c.broker.processes > 1 && c.store.databaseUrl === undefined
      ? `must be 1 with the embedded store (PGlite is one process; got ${c.broker.processes}); set ${store.settings.databaseUrl.env} to run several processes`
      : undefined
  },
  {
    variable: push.settings.workers.env,
    check: c => c.broker.deliveryMode === 'push' && c.push.workers.length === 0
      ? `must name at least one application=url when ${broker.settings.deliveryMode.env} is push`
      : undefined
  },
  {
    variable: push.settings.workerBackoffMaxMs.env,
    check: c => c.push.workerBackoffMaxMs < c.push.workerBackoffMs
      ? `must be at least ${push.settings.workerBackoffMs.env} (got ${c.push.workerBackoffMaxMs})`
      : undefined
  },
  {
    variable: http.settings.headersTimeoutMs.env,
    check: c => c.http.headersTimeoutMs > c.http.requestTimeoutMs
      ? `must be at most ${http.settings.requestTimeoutMs.env} (got ${c.http.headersTimeoutMs})`
      : undefined
  },
  {
    // Else a body of the largest allowed size could never be received.
    variable: http.settings.maxInflightBodyBytes.env,
    check: c => c.http.maxInflightBodyBytes < c.http.bodyLimitBytes
      ? `must be at least ${http.settings.bodyLimitBytes.env} (got ${c.http.maxInflightBodyBytes})`
      : undefined
  }
]
