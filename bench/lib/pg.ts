/** postgres.js for the bench's own connections, reading a database URL as the broker does (`?host=`). */
import postgres from 'postgres'
import { postgresTarget } from '../../src/db/postgres-url.js'

export function connectPostgres (url: string, options: postgres.Options<Record<string, postgres.PostgresType>> = {}): postgres.Sql {
  const target = postgresTarget(url)
  return postgres(target.url, target.host === undefined ? options : { ...options, host: target.host })
}
