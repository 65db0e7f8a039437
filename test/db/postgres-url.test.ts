/**
 * libpq's `?host=` and `?port=` in a database URL (a Unix-socket directory and its port): taken out
 * of the URL and given to postgres.js as options; on PostgreSQL, the broker's connections,
 * migrations and upkeep lock go through the socket.
 */
import { existsSync } from 'node:fs'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { openDatabase } from '../../src/db/database.js'
import { postgresTarget } from '../../src/db/postgres-url.js'
import { backends, createTestDatabase } from '../helpers/database.js'

t.test('host and port query parameters become options; the rest of the URL is kept', async (t) => {
  t.same(postgresTarget('postgres://u:p@db.example:5433/app'), { url: 'postgres://u:p@db.example:5433/app' }, 'no query')
  t.same(postgresTarget('postgres://u@db/app?sslmode=disable'), { url: 'postgres://u@db/app?sslmode=disable' }, 'neither parameter')
  t.same(postgresTarget('postgres://u@/app?host=/var/run/postgresql'), { url: 'postgres://u@localhost/app', host: '/var/run/postgresql' },
    'an empty host in the URL gets a placeholder (postgres.js cannot parse it otherwise)')
  t.same(postgresTarget('postgres://u@:5433/app?host=/tmp'), { url: 'postgres://u@localhost:5433/app', host: '/tmp' }, 'a port without a host')
  t.same(postgresTarget('postgres://u:p@ss@/app?host=/tmp'), { url: 'postgres://u:p@ss@localhost/app', host: '/tmp' }, 'the last @ ends the user part')
  t.same(postgresTarget('postgres:///app?host=/tmp&port=5433'), { url: 'postgres:///app', host: '/tmp', port: 5433 }, 'no authority at all')
  t.same(postgresTarget('postgres://u@db/app?sslmode=disable&host=%2Ftmp&application_name=x'),
    { url: 'postgres://u@db/app?sslmode=disable&application_name=x', host: '/tmp' }, 'other parameters stay, the value is decoded')
  t.same(postgresTarget('postgres://u@db/app?host=&port='), { url: 'postgres://u@db/app' }, 'empty values: the defaults, and never sent to the server')
  t.throws(() => postgresTarget('postgres://u@db/app?port=54x'), { code: 'TASKBROKER_STARTUP_REFUSED', message: /port parameter is not a port number \(got 54x\)/ })
})

const SOCKET_DIR = '/var/run/postgresql'

if (!backends().includes('postgres')) {
  t.comment('the socket connection needs PostgreSQL (TASKBROKER_TEST_DATABASE_URL)')
} else {
  const port = new URL(process.env.TASKBROKER_TEST_DATABASE_URL as string).port
  const socketFile = `${SOCKET_DIR}/.s.PGSQL.${port === '' ? '5432' : port}`
  const skip = existsSync(socketFile) ? false : `no PostgreSQL socket at ${socketFile} on this machine`
  t.test('the broker connects through a Unix socket named by ?host=', { skip }, async (t) => {
    const { url } = await createTestDatabase(t, 'postgres')
    const tcp = new URL(url as string)
    // No host in the URL's authority, socket directory and port as parameters: libpq's spelling.
    const socketUrl = `postgres://${tcp.username}@${tcp.pathname}?host=${encodeURIComponent(SOCKET_DIR)}&port=${tcp.port === '' ? '5432' : tcp.port}`
    const database = await openDatabase({ url: socketUrl, dataDir: '', poolSize: 2, log: pino({ level: 'silent' }), callTimeoutMs: 10_000 })
    t.teardown(() => database.close())
    await database.migrate()
    const [row] = await database.rows(sql`select inet_server_addr() is null as on_socket, current_database() as db`)
    t.same(row, { on_socket: true, db: tcp.pathname.slice(1) }, 'the server sees a socket connection to the test database')
    const lock = database.leaderLock(7)
    t.equal(await lock.acquire(), true, 'the upkeep lock connects the same way')
    await lock.release()
  })
}
