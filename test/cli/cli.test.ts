/**
 * The `taskbroker` CLI, run in-process (`run(argv, io)` returns the exit code) against a real
 * broker with signing on (both stores); against a scripted server for the commands whose
 * endpoints come with other work (the request each sends); and for its exit codes.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { run } from '../../src/cli/main.js'
import { migrateStore } from '../../src/cli/migrate.js'
import { createClient } from '../../src/client/client.js'
import { NO_UPKEEP } from '../helpers/app.js'
import { eachBackend, TEST_DATABASE_URL } from '../helpers/database.js'
import { SECRET, startBroker } from '../sdk/broker.js'

interface Ran { code: number, stdout: string, stderr: string }

async function cli (argv: string[], env: Record<string, string | undefined> = {}, o: { tty?: boolean, signal?: AbortSignal } = {}): Promise<Ran> {
  let stdout = ''
  let stderr = ''
  const code = await run(argv, {
    stdout: { write: (text: string) => { stdout += text }, isTTY: o.tty ?? false },
    stderr: { write: (text: string) => { stderr += text } },
    env,
    migrate: migrateStore,
    ...(o.signal === undefined ? {} : { signal: o.signal })
  })
  return { code, stdout, stderr }
}

const work = mkdtempSync(join(tmpdir(), 'tb-cli-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

eachBackend(t, 'produce, task get, stats, dead letters and tail against a signed broker', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const env = { TASKBROKER_URL: broker.url, TASKBROKER_SECRET: SECRET }

  const produced = await cli(['--json', 'produce', 'emails', 'send', '-a', 'shop', '--params', '{"order":42}', '--id', 'cli-1'], env)
  t.equal(produced.code, 0, produced.stderr)
  t.same(JSON.parse(produced.stdout).ids, ['cli-1'])
  const plain = await cli(['produce', 'emails', 'send', '-a', 'shop'], env)
  t.match(plain.stdout, /^[0-9a-f-]{36}\n$/, 'human output: the id')
  const file = join(work, `tasks-${backend}.json`)
  writeFileSync(file, JSON.stringify([{ id: 'dead-1', application: 'shop', namespace: 'emails', taskname: 'send', retry_state: { on_attempts_exceeded: 'deadletter' } }]))
  t.equal((await cli(['produce', '--file', file], env)).code, 0)

  const got = await cli(['task', 'get', 'cli-1'], env)
  t.equal(got.code, 0)
  t.match(got.stdout, /status\s+pending/)
  t.match(got.stdout, /parameters\s+\{"order":42\}/)
  t.match(got.stdout, /priority\s+0\n/)
  t.match(got.stdout, /cancel_requested\s+false\n/)
  t.match(got.stdout, /progress\s+-\n/)
  t.equal(JSON.parse((await cli(['stats', '--json'], env)).stdout).by_status.pending, 3)
  t.match((await cli(['stats'], env)).stdout, /application\s+namespace\s+status\s+count\nshop\s+emails\s+pending\s+3/)

  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  const claimed = await client.claim({ application: 'shop', limit: 3 })
  await client.reportMany(claimed.tasks.map(task => ({ id: task.id, status: 'failure' as const })))
  await broker.app().broker.upkeep.runOnce(new Date())
  const listed = await cli(['deadletters', 'list', '-a', 'shop'], env)
  t.match(listed.stdout, /^id\s+application.*\ndead-1\s+shop\s+emails\s+send\s+\S+/)
  t.equal((await cli(['deadletters', 'requeue', 'dead-1'], env)).stdout, 'requeued dead-1\n')
  t.equal((await cli(['task', 'get', 'dead-1', '--json'], env)).stdout.includes('"status":"pending"'), true)
  const requeuedAgain = await cli(['deadletters', 'requeue', 'dead-1'], env)
  t.equal(requeuedAgain.code, 1, 'a broker error exits 1')
  t.match(requeuedAgain.stderr, /TASKBROKER_DEADLETTER_NOT_FOUND \(404\)/)

  const tailed = await cli(['tail', '--interval', '100', '--count', '2'], env)
  t.equal(tailed.stdout.split('\n').filter(l => l.includes('pending 1')).length, 2, 'two refreshes, a line each off a terminal')
  const onTty = await cli(['tail', '--interval', '100', '--count', '1'], env, { tty: true })
  t.ok(onTty.stdout.startsWith('\u001b[H\u001b[J'), 'on a terminal the screen is redrawn in place')
  const json = await cli(['tail', '--json', '--count', '1'], env)
  t.match(JSON.parse(json.stdout), { by_status: { pending: 1 } })
  const stopper = new AbortController()
  setTimeout(() => stopper.abort(), 100)
  t.equal((await cli(['tail', '--interval', '60000'], env, { signal: stopper.signal })).code, 0, 'an endless tail ends when interrupted')

  const wrong = await cli(['stats'], { TASKBROKER_URL: broker.url, TASKBROKER_SECRET: 'wrong' })
  t.equal(wrong.code, 1)
  t.match(wrong.stderr, /TASKBROKER_UNAUTHORIZED/)
  t.equal((await cli(['--url', broker.url, '--secret', SECRET, 'stats'])).code, 0, 'flags instead of the environment')
})

eachBackend(t, 'task cancel|release, queues, schedules and produce --priority against a signed broker', async (t, backend) => {
  const broker = await startBroker(t, backend, NO_UPKEEP)
  const env = { TASKBROKER_URL: broker.url, TASKBROKER_SECRET: SECRET }
  const client = createClient({ url: broker.url, secrets: [SECRET] })
  t.teardown(() => client.close())
  const ok = async (argv: string[]) => {
    const ran = await cli(argv, env)
    t.equal(ran.code, 0, `${argv.join(' ')}: ${ran.stderr}`)
    return ran
  }

  await ok(['produce', 'emails', 'send', '-a', 'shop', '--id', 'low', '--priority', '-5'])
  await ok(['produce', 'emails', 'send', '-a', 'shop', '--id', 'high', '--priority', '7'])
  await ok(['produce', 'emails', 'send', '-a', 'shop', '--id', 'plain'])
  t.equal((await client.getTask('high')).priority, 7)
  t.equal((await client.getTask('low')).priority, -5)
  t.equal((await cli(['produce', 'emails', 'send', '--priority', 'x'], env)).code, 2, 'a priority must be an integer')

  // Queues: paused, nothing is handed out; resumed, the highest priority comes first.
  t.equal((await ok(['queues', 'pause', 'shop', 'emails'])).stdout, 'paused\n')
  let queues = await client.listQueues()
  t.match(queues.queues.find(q => q.application === 'shop' && q.namespace === 'emails'), { counts: { pending: 3 }, settings: { paused: true } })
  t.same((await client.claim({ application: 'shop' })).tasks, [], 'a paused queue hands out nothing')
  t.match((await ok(['queues', 'list'])).stdout, /^application\s+namespace\s+pending\s.*\spaused\s+max_processing\s+rate_limit\nshop\s+emails\s+3\s.*\strue\s+-\s+-\n$/)
  await ok(['queues', 'resume', 'shop', 'emails'])
  await ok(['queues', 'limits', 'shop', 'emails', '--max-processing', '2', '--rate', '50/60'])
  queues = await client.listQueues()
  t.match(queues.queues.find(q => q.namespace === 'emails')?.settings, { paused: false, max_processing: 2, rate_limit: { per_sec: 50, burst: 60 } })
  const listed = JSON.parse((await ok(['--json', 'queues', 'list'])).stdout) as typeof queues
  t.same(listed.queues.map(q => q.settings?.max_processing), [2], '--json prints the answer')
  const claimed = await client.claim({ application: 'shop', limit: 3 })
  t.same(claimed.tasks.map(c => c.id), ['high', 'plain'], 'max_processing 2; highest priority first')
  await ok(['queues', 'limits', 'shop', 'emails', '--max-processing', 'none', '--rate', 'none'])
  t.match(queues = await client.listQueues(), { queues: [{ namespace: 'emails' }] })
  t.equal(queues.queues[0]?.settings, null, 'nothing left set: the settings row is gone')

  // task release: pending again, no attempt counted; task cancel: a held task is asked, a waiting one removed.
  const high = claimed.tasks[0]!
  t.equal((await ok(['task', 'release', 'high', '--lease', high.lease])).stdout, 'released high\n')
  t.match(await client.getTask('high'), { status: 'pending', processing_attempts: 0, task: { retry_state: { attempts: 0 } } })
  const stale = await cli(['task', 'release', 'plain', '--lease', high.lease], env)
  t.equal(stale.code, 1, 'a release under another lease is refused')
  t.match(stale.stderr, /TASKBROKER_LEASE_STALE/)
  t.match((await ok(['task', 'cancel', 'plain'])).stdout, /^cancel requested plain/)
  t.equal((await client.getTask('plain')).cancel_requested, true)
  t.same(JSON.parse((await ok(['--json', 'task', 'cancel', 'low'])).stdout), { removed: true, requested: false })
  t.match(await client.getTask('low').catch((e: unknown) => e), { code: 'TASKBROKER_TASK_NOT_FOUND' }, 'a waiting task is removed')

  // Schedules: put, list, trigger (its task is produced), delete.
  await ok(['schedules', 'put', 'hourly', '--every', '3600', '--task', '{"application":"shop","namespace":"reports","taskname":"sum","priority":3}'])
  t.match(await client.getSchedule('hourly'), { name: 'hourly', every_sec: 3600, cron: null, task: { namespace: 'reports', priority: 3 }, paused: false })
  await ok(['schedules', 'put', 'nightly', '--cron', '0 3 * * *', '--timezone', 'Europe/Paris', '--overlap', 'skip', '--catch-up', 'latest', '--paused', '--task', '{"namespace":"reports","taskname":"night"}'])
  t.match(await client.getSchedule('nightly'), { cron: '0 3 * * *', timezone: 'Europe/Paris', overlap: 'skip', catch_up: 'latest', paused: true })
  t.equal((await cli(['schedules', 'put', 'x', '--every', '60', '--overlap', 'sometimes', '--task', '{}'], env)).code, 2, 'an overlap mode that does not exist')
  t.match((await ok(['schedules', 'list'])).stdout, /name\s+cron\s+every_sec\s+timezone\s+paused\s+next_fire_at\nhourly\s+-\s+3600\s+UTC\s+false\s+\S+\nnightly\s+0 3 \* \* \*\s+-\s+Europe\/Paris\s+true/)
  const triggered = JSON.parse((await ok(['--json', 'schedules', 'trigger', 'hourly'])).stdout) as { id: string, inserted: boolean }
  t.equal(triggered.inserted, true)
  t.match(await client.getTask(triggered.id), { status: 'pending', priority: 3, task: { application: 'shop', namespace: 'reports', taskname: 'sum' } }, 'the trigger produced its task')
  await ok(['schedules', 'delete', 'nightly'])
  t.same((await client.listSchedules()).schedules.map(s => s.name), ['hourly'])
  const gone = await cli(['schedules', 'delete', 'nightly'], env)
  t.equal(gone.code, 1)
  t.match(gone.stderr, /TASKBROKER_SCHEDULE_NOT_FOUND|404/)
  const goneJson = await cli(['--json', 'schedules', 'delete', 'nightly'], env)
  t.equal(goneJson.code, 1)
  t.match(JSON.parse(goneJson.stderr), { error: { code: 'TASKBROKER_SCHEDULE_NOT_FOUND', status_code: 404, exit_code: 1 } }, 'with --json the error is JSON too')
  t.equal((await cli(['schedules', 'put', 'bad', '--cron', 'not a cron', '--task', '{"namespace":"n","taskname":"t"}'], env)).code, 1, 'a bad expression is the broker\'s 400')
})

interface Seen { method: string, url: string, body: unknown }

async function scripted (t: Test, status: number, answer: unknown, headers: Record<string, string> = {}) {
  const seen: Seen[] = []
  const server = createServer((request: IncomingMessage, response) => {
    let body = ''
    request.on('data', (chunk: Buffer) => { body += chunk.toString() })
    request.on('end', () => {
      seen.push({ method: request.method ?? '', url: request.url ?? '', body: body === '' ? undefined : JSON.parse(body) })
      response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(answer))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

t.test('queue, schedule and cancel/release commands send the contract\'s requests', async (t) => {
  const server = await scripted(t, 200, {
    queues: [{ application: 'shop', namespace: 'emails', counts: { pending: 2 }, oldest_pending_age_sec: 0, settings: { paused: true, max_processing: null, rate_limit: null, updated_at: '2026-01-01T00:00:00.000Z', source: 'namespace' } }],
    applications: [],
    schedules: [{ name: 'nightly', cron: '0 3 * * *' }],
    removed: false,
    requested: true,
    released: true,
    cancelled: false,
    id: 'sched:nightly:1',
    inserted: true
  })
  const env = { TASKBROKER_URL: server.url }
  const cases: Array<[string[], Seen]> = [
    [['queues', 'pause', 'shop', 'emails'], { method: 'PATCH', url: '/v1/queues', body: { application: 'shop', namespace: 'emails', paused: true } }],
    [['queues', 'resume', 'shop'], { method: 'PATCH', url: '/v1/queues', body: { application: 'shop', paused: false } }],
    [['queues', 'limits', 'shop', '--max-processing', '5', '--rate', '10/20'], { method: 'PATCH', url: '/v1/queues', body: { application: 'shop', max_processing: 5, rate_limit: { per_sec: 10, burst: 20 } } }],
    [['queues', 'limits', 'shop', '--max-processing', 'none', '--rate', 'none'], { method: 'PATCH', url: '/v1/queues', body: { application: 'shop', max_processing: null, rate_limit: null } }],
    [['schedules', 'put', 'nightly', '--cron', '0 3 * * *', '--timezone', 'Europe/Paris', '--task', '{"namespace":"n","taskname":"t"}'],
      { method: 'PUT', url: '/v1/schedules/nightly', body: { cron: '0 3 * * *', timezone: 'Europe/Paris', task: { namespace: 'n', taskname: 't' } } }],
    [['schedules', 'get', 'nightly'], { method: 'GET', url: '/v1/schedules/nightly', body: undefined }],
    [['schedules', 'trigger', 'nightly'], { method: 'POST', url: '/v1/schedules/nightly/trigger', body: {} }],
    [['schedules', 'delete', 'nightly'], { method: 'DELETE', url: '/v1/schedules/nightly', body: undefined }],
    [['task', 'cancel', 'a b'], { method: 'POST', url: '/v1/tasks/a%20b/cancel', body: {} }],
    [['task', 'release', 't1', '--lease', 'L'], { method: 'POST', url: '/v1/tasks/t1/release', body: { lease: 'L' } }]
  ]
  for (const [argv, expected] of cases) {
    const ran = await cli(argv, env)
    t.equal(ran.code, 0, `${argv.join(' ')}: ${ran.stderr}`)
    t.same(server.seen.at(-1), expected, argv.join(' '))
  }
  t.match((await cli(['queues'], env)).stdout, /application\s+namespace\s+pending\s+paused\s+max_processing\s+rate_limit\nshop\s+emails\s+2\s+true/)
  t.match((await cli(['schedules', 'list'], env)).stdout, /nightly\s+0 3 \* \* \*/)
})

t.test('exit codes: usage 2, unreachable 69, busy 75; --help on every command', async (t) => {
  t.equal((await cli(['nonsense'])).code, 2)
  t.equal((await cli(['task', 'get'])).code, 2, 'missing argument')
  const badJson = await cli(['produce', 'n', 't', '--params', '{nope'])
  t.equal(badJson.code, 2)
  t.match(badJson.stderr, /--params is not valid JSON/)
  t.equal((await cli(['produce', 'n', 't', '--delay', 'soon'])).code, 2)
  // Out of range before any request: a tail without pause would poll the broker flat out.
  for (const argv of [['tail', '--interval', '0'], ['tail', '--count', '0'], ['stats', '--retries', '-1'], ['produce', 'n', 't', '--priority', '99999'],
    ['produce', 'n', 't', '--delay', '-5'], ['produce', 'n', 't', '--max-attempts', '0'], ['deadletters', 'list', '--limit', '0'],
    ['queues', 'limits', 'shop', '--max-processing', '0']]) {
    const refused = await cli(argv)
    t.equal(refused.code, 2, argv.join(' '))
    t.match(refused.stderr, /must be (at least|from) -?\d+/, argv.join(' '))
  }
  t.equal((await cli(['produce', 'n', 't', '--file', 'tasks.json'])).code, 2, '--file with a namespace and taskname')
  for (const limit of ['0', '0.0', '5/0']) t.equal((await cli(['queues', 'limits', 'shop', '--rate', limit])).code, 2, `--rate ${limit}`)
  const badUrl = await cli(['stats', '--url', 'not a url'])
  t.equal(badUrl.code, 2, 'a --url that is no URL is a usage error')
  t.match(badUrl.stderr, /--url \(or TASKBROKER_URL\) is not a URL: not a url/)
  t.equal((await cli(['produce', '-a', 'shop', '--file', 'tasks.json'])).code, 2, '--file with -a')
  t.equal((await cli(['schedules', 'put', 'x', '--task', '{}'])).code, 2, 'neither --cron nor --every')
  // serve is the default command: a word that is no command, or a client option alone, is a usage error, not a broker.
  const typo = await cli(['stat'])
  t.equal(typo.code, 2)
  t.match(typo.stderr, /unknown command 'stat' \(did you mean 'stats'\?\)/)
  const typoWithArgs = await cli(['prodcue', 'emails', 'send'])
  t.equal(typoWithArgs.code, 2)
  t.match(typoWithArgs.stderr, /unknown command 'prodcue' \(did you mean 'produce'\?\)/, 'with its arguments, still named, with the nearest command')
  const urlAlone = await cli(['--url', 'http://127.0.0.1:1'])
  t.equal(urlAlone.code, 2, '--url with no command does not start a broker')
  t.match(urlAlone.stderr, /--url is for the commands that talk to a broker/)
  t.equal((await cli(['queues', 'limits', 'shop'])).code, 2)

  const closed = createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as AddressInfo).port
  await new Promise<void>(resolve => closed.close(() => resolve()))
  const unreachable = await cli(['stats', '--retries', '0'], { TASKBROKER_URL: `http://127.0.0.1:${deadPort}` })
  t.equal(unreachable.code, 69, unreachable.stderr)

  const busy = await scripted(t, 503, { statusCode: 503, code: 'TASKBROKER_SHUTTING_DOWN', error: 'x', message: 'shutting down' }, { 'retry-after': '0' })
  const temporary = await cli(['stats', '--retries', '1'], { TASKBROKER_URL: busy.url })
  t.equal(temporary.code, 75)
  t.match(temporary.stderr, /TASKBROKER_SHUTTING_DOWN \(503\)/)
  t.equal(busy.seen.length, 2, 'retried once')

  const help = await cli(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /Exit codes:[\s\S]*69[\s\S]*75/)
  for (const command of ['serve', 'migrate', 'produce', 'task get', 'task cancel', 'task release', 'stats', 'queues list', 'queues pause',
    'queues resume', 'queues limits', 'deadletters list', 'deadletters requeue', 'deadletters purge', 'schedules list', 'schedules get',
    'schedules put', 'schedules delete', 'schedules trigger', 'tail']) {
    const ran = await cli([...command.split(' '), '--help'])
    t.equal(ran.code, 0, `${command} --help`)
    t.match(ran.stdout, new RegExp(`^Usage: taskbroker ${command}`), `${command} --help prints its usage`)
  }
})

t.test('migrate: the embedded store in TASKBROKER_DATA_DIR, again harmlessly', async (t) => {
  const dataDir = join(work, 'data')
  const first = await cli(['migrate'], { TASKBROKER_DATA_DIR: dataDir, LOG_LEVEL: 'silent' })
  t.equal(first.code, 0, first.stderr)
  t.equal(first.stdout, `migrated the embedded store in ${dataDir}\n`)
  t.ok(readdirSync(dataDir).length > 0)
  t.equal((await cli(['migrate'], { TASKBROKER_DATA_DIR: dataDir, LOG_LEVEL: 'silent' })).code, 0)
  const json = await cli(['--json', 'migrate'], { TASKBROKER_DATA_DIR: dataDir, LOG_LEVEL: 'silent' })
  t.match(JSON.parse(json.stdout), { migrated: true, message: /migrated the embedded store in / }, 'with --json the answer is JSON too')
  const bad = await cli(['migrate'], { TASKBROKER_DATABASE_URL: 'mysql://nope' })
  t.equal(bad.code, 78, 'a bad setting: EX_CONFIG, as the broker\'s start')
  // Nothing listens on port 9 (discard): the database could not be reached, not a broker's error.
  const away = await cli(['migrate'], { TASKBROKER_DATABASE_URL: 'postgres://postgres@127.0.0.1:9/none', LOG_LEVEL: 'silent' })
  t.equal(away.code, 69, `an unreachable database: EX_UNAVAILABLE (${away.stderr})`)
  t.match(away.stderr, /the database could not be reached/)
})

t.test('migrate: a database that does not exist is a configuration error (78), as at a broker\'s start', { skip: TEST_DATABASE_URL === undefined ? 'PostgreSQL only (TASKBROKER_TEST_DATABASE_URL)' : false }, async (t) => {
  const url = new URL(TEST_DATABASE_URL as string)
  url.pathname = '/taskbroker_no_such_database'
  const missing = await cli(['migrate'], { TASKBROKER_DATABASE_URL: url.href, LOG_LEVEL: 'silent' })
  t.equal(missing.code, 78, missing.stderr)
  t.match(missing.stderr, /TASKBROKER_DATABASE_URL.*names a database that does not exist/)
})
