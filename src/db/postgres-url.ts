/**
 * A PostgreSQL URL as libpq reads it, for postgres.js. libpq takes the server's host and port from
 * `host` and `port` query parameters too, which is how a URL names a Unix-socket directory
 * (`postgres://user@/db?host=/var/run/postgresql`, `&port=5433` for the socket of another port);
 * postgres.js reads them from the authority only and sends every query parameter it does not know
 * to the server as a setting, which refuses them. Here they are taken out of the URL and given as
 * postgres.js's `host` and `port` options (a directory as host: postgres.js connects to its socket).
 */
import { StartupRefusedError } from '../config/errors.js'

export interface PostgresTarget {
  /** The URL without `host` and `port` parameters (and with a host, which postgres.js's URL parser needs). */
  url: string
  /** The `host` parameter's value, when there was one. */
  host?: string
  /** The `port` parameter's value, when there was one. */
  port?: number
}

export function postgresTarget (url: string): PostgresTarget {
  const query = url.indexOf('?')
  if (query === -1) return { url }
  const params = new URLSearchParams(url.slice(query + 1))
  const host = params.get('host')
  const port = params.get('port')
  if (host === null && port === null) return { url }
  params.delete('host')
  params.delete('port')
  const rest = params.toString()
  const target: PostgresTarget = { url: withHost(url.slice(0, query)) + (rest === '' ? '' : `?${rest}`) }
  // An empty value means "the default", as in libpq.
  if (host !== null && host !== '') target.host = host
  if (port !== null && port !== '') {
    const number = Number(port)
    if (!Number.isInteger(number) || number < 1 || number > 65535) throw new StartupRefusedError(`TASKBROKER_DATABASE_URL: the port parameter is not a port number (got ${port})`)
    target.port = number
  }
  return target
}

/** `postgres://user@/db` is no URL to postgres.js's parser: an empty host becomes `localhost` (the options override it). */
function withHost (base: string): string {
  const authorityStart = base.indexOf('://') + 3
  const slash = base.indexOf('/', authorityStart)
  const authorityEnd = slash === -1 ? base.length : slash
  const at = base.lastIndexOf('@', authorityEnd)
  const hostStart = at >= authorityStart ? at + 1 : authorityStart
  const hostAndPort = base.slice(hostStart, authorityEnd)
  if (authorityEnd === authorityStart || (hostAndPort !== '' && !hostAndPort.startsWith(':'))) return base
  return `${base.slice(0, hostStart)}localhost${base.slice(hostStart)}`
}
