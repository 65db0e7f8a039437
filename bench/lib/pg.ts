/** postgres.js for the bench's own connections, reading a database URL as the broker does (`?host=`, `?port=`). */
import postgres from 'postgres'
import { postgresTarget } from '../../src/db/postgres-url.js'

export function connectPostgres (url: string, options: postgres.Options<Record<string, postgres.PostgresType>> = {}): postgres.Sql {
  const { url: bare, host, port } = postgresTarget(url)
  return postgres(bare, { ...options, ...(host === undefined ? {} : { host }), ...(port === undefined ? {} : { port }) })
}
