/**
 * The HTTP ceiling of the machine: a Fastify server with one trivial route shaped like the status
 * report (`POST /v1/tasks/:id/status`, a small JSON body in, `{applied, queued, task: null}` out)
 * and no database. The benchmark drives it with the same worker process as the broker, so "single"
 * can be read against what one HTTP request per task costs here at all. Prints its URL on stdout.
 */
import Fastify from 'fastify'

const app = Fastify({ logger: false })
app.post('/v1/tasks/:id/status', async () => ({ applied: true, queued: false, task: null }))
const url = await app.listen({ host: '127.0.0.1', port: 0 })
process.stdout.write(`listening ${url}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => { app.close().finally(() => process.exit(0)) })
process.on('disconnect', () => process.exit(0))
