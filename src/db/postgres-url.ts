/**
 * A PostgreSQL URL as libpq reads it, for postgres.js. libpq takes the server's host from a `host`
 * query parameter too, which is how a URL names a Unix-socket directory
 * (`postgres://user@/db?host=/var/run/postgresql`); postgres.js reads the host from the authority
 * only and sends every query parameter it does not know to the server as a setting, which refuses
 * `host`. Here the parameter is taken out of the URL and given as postgres.js's `host` option (a
 * directory: postgres.js then connects to its socket).
 */
export interface PostgresTarget {
  /** The URL without a `host` parameter. */
  url: string
  /** The `host` parameter's value, when there was one. */
  host?: string
}

export function postgresTarget (url: string): PostgresTarget {
  const query = url.indexOf('?')
  if (query === -1) return { url }
  const params = new URLSearchParams(url.slice(query + 1))
  const host = params.get('host')
  if (host === null || host === '') return { url }
  params.delete('host')
  const rest = params.toString()
  return { url: url.slice(0, query) + (rest === '' ? '' : `?${rest}`), host }
}
