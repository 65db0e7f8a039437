/**
 * The `taskbroker` command (bin/taskbroker.js): `serve` (the default) starts the broker, `migrate`
 * migrates its store, every other command talks to a running broker through the client.
 * `run(argv, io)` returns the exit code instead of exiting, so tests run it in-process.
 */
import { Command, CommanderError, Option } from 'commander'
import { createClient, type TaskbrokerClient } from '../client/client.js'
import { TaskbrokerError } from '../client/errors.js'
import type { ScheduleInput, TaskInput } from '../client/types.js'
import { EXIT, EXIT_CODES_HELP, exitCodeOf, UsageError } from './exit-codes.js'
import { fields, table } from './format.js'
import { tail } from './tail.js'

export interface CliIo {
  stdout: { write: (text: string) => unknown, isTTY?: boolean }
  stderr: { write: (text: string) => unknown }
  env: Record<string, string | undefined>
  /** Starts the broker (bin/ passes the server's entry). */
  serve?: () => Promise<unknown>
  /** Migrates the store the environment names (the real one opens the database). */
  migrate?: (env: Record<string, string | undefined>) => Promise<string>
  /** tail: ends after this many refreshes (tests); default until interrupted. */
  signal?: AbortSignal
}

interface Globals { url: string, secret?: string, json?: boolean, retries: number }

/** A whole-number option within [min, max] (a usage error, exit 2, otherwise). */
function int (name: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value)) throw new UsageError(`${name} must be a whole number, got "${value}"`)
    const n = Number(value)
    if (n < min || n > max) throw new UsageError(`${name} must be ${max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`}, got ${value}`)
    return n
  }
}

function json (name: string, value: string): unknown {
  try {
    return JSON.parse(value)
  } catch {
    throw new UsageError(`${name} is not valid JSON: ${value.slice(0, 80)}`)
  }
}

export async function run (argv: string[], io: CliIo): Promise<number> {
  let client: TaskbrokerClient | undefined
  const program = new Command('taskbroker')
  const globals = () => program.opts<Globals>()
  const connect = () => {
    const g = globals()
    if (!URL.canParse(g.url)) throw new UsageError(`--url (or TASKBROKER_URL) is not a URL: ${g.url}`)
    const secret = g.secret ?? io.env.TASKBROKER_SECRET ?? io.env.TASKBROKER_AUTH_SECRETS?.split(',')[0]?.trim()
    client ??= createClient({ url: g.url, ...(secret === undefined || secret === '' ? {} : { secrets: [secret] }), retry: { attempts: g.retries + 1 } })
    return client
  }
  const out = (answer: unknown, human: () => string) => {
    io.stdout.write(globals().json === true ? `${JSON.stringify(answer)}\n` : human())
  }

  program
    .description('Taskbroker: run the broker (serve, the default), migrate its store, or work with a running broker')
    // Defaults from io.env (not commander's .env(), which reads process.env): tests pass their own.
    .addOption(new Option('--url <url>', 'the broker (env: TASKBROKER_URL)').default(io.env.TASKBROKER_URL ?? 'http://127.0.0.1:8080'))
    .addOption(new Option('--secret <secret>', 'sign requests with this secret (env: TASKBROKER_SECRET, else the first of TASKBROKER_AUTH_SECRETS)'))
    .option('--json', 'print answers as JSON, one line each (for scripts)')
    .addOption(new Option('--retries <n>', 'retries of a busy (503/429) or unreachable broker, where safe').argParser(int('--retries', 0, 100)).default(2))
    .addHelpText('after', EXIT_CODES_HELP)
    .exitOverride()
    .configureOutput({ writeOut: text => io.stdout.write(text), writeErr: text => io.stderr.write(text) })
    .showHelpAfterError('(taskbroker --help for usage)')

  program.command('serve', { isDefault: true }).description('start the broker, configured by the environment (see README "Configuration")')
    // Being the default, serve receives any word that is no command: say so, not "too many arguments".
    .argument('[command]')
    .allowExcessArguments()
    .action(async (word: string | undefined) => {
      if (word !== undefined) {
        const near = program.commands.map(c => c.name()).filter(name => name.startsWith(word) || word.startsWith(name) || editDistance(name, word) <= 2)
        throw new UsageError(`unknown command '${word}'${near.length > 0 ? ` (did you mean ${near.map(n => `'${n}'`).join(' or ')}?)` : ''}`)
      }
      const clientOptions = ['url', 'secret', 'json', 'retries'].filter(name => program.getOptionValueSource(name) === 'cli')
      if (clientOptions.length > 0) {
        throw new UsageError(`${clientOptions.map(o => `--${o}`).join(', ')} ${clientOptions.length > 1 ? 'are' : 'is'} for the commands that talk to a broker, not for starting one (its settings come from the environment)`)
      }
      if (io.serve === undefined) throw new UsageError('serve is started by the taskbroker command itself')
      await io.serve()
    })

  program.command('migrate').description('apply the store\'s migrations (TASKBROKER_DATABASE_URL, or the embedded store in TASKBROKER_DATA_DIR)')
    .action(async () => {
      if (io.migrate === undefined) throw new UsageError('migrate is not available here')
      const done = await io.migrate(io.env)
      out({ migrated: true, message: done }, () => `${done}\n`)
    })

  program.command('produce').description('produce one task (or many from --file as a JSON array or {tasks})')
    .argument('[namespace]').argument('[taskname]')
    .option('-a, --application <name>', 'application (default: "": only claims with no application filter take it)')
    .option('-p, --params <json>', 'parameters (JSON)')
    .option('--id <id>', 'task id (default: a fresh UUID)')
    .addOption(new Option('--delay <sec>', 'seconds before it may be claimed').argParser(int('--delay', 0)))
    .addOption(new Option('--priority <n>', 'higher first (brokers with priorities)').argParser(int('--priority', -32768, 32767)))
    .addOption(new Option('--max-attempts <n>', 'executions allowed in all').argParser(int('--max-attempts', 1)))
    .option('--file <path>', 'read tasks from this JSON file ("-": stdin)')
    .action(async (namespace: string | undefined, taskname: string | undefined, o: Record<string, unknown>) => {
      let tasks: TaskInput[]
      if (typeof o.file === 'string') {
        if (namespace !== undefined || o.application !== undefined) throw new UsageError('--file takes its tasks from the file: no <namespace> <taskname> or -a beside it')
        const { readFile } = await import('node:fs/promises')
        const text = o.file === '-' ? await readStdin() : await readFile(o.file, 'utf8').catch((e: Error) => { throw new UsageError(e.message) })
        const parsed = json('--file', text) as TaskInput[] | { tasks: TaskInput[] }
        tasks = Array.isArray(parsed) ? parsed : parsed.tasks
        if (!Array.isArray(tasks)) throw new UsageError('--file holds a JSON array of tasks or {"tasks": [...]}')
      } else {
        if (namespace === undefined || taskname === undefined) throw new UsageError('produce needs <namespace> <taskname> (or --file)')
        tasks = [{
          application: (o.application as string | undefined) ?? '',
          namespace,
          taskname,
          ...(o.params === undefined ? {} : { parameters: json('--params', o.params as string) }),
          ...(o.id === undefined ? {} : { id: o.id as string }),
          ...(o.delay === undefined ? {} : { delay: o.delay as number }),
          ...(o.priority === undefined ? {} : { priority: o.priority as number }),
          ...(o.maxAttempts === undefined ? {} : { retry_state: { max_attempts: o.maxAttempts as number } })
        }]
      }
      const answer = await connect().produce(tasks)
      out(answer, () => `${answer.ids.join('\n')}\n` + (answer.duplicates.length > 0 ? `duplicates (ignored): ${answer.duplicates.join(' ')}\n` : ''))
    })

  const task = program.command('task').description('one task: get, cancel, release')
  task.command('get').argument('<id>').description('the task with its broker state')
    .action(async (id: string) => {
      const answer = await connect().getTask(id)
      out(answer, () => fields({ id: answer.task.id, status: answer.status, application: answer.task.application, namespace: answer.task.namespace, taskname: answer.task.taskname, attempts: answer.task.retry_state.attempts, processing_attempts: answer.processing_attempts, priority: answer.priority, added_at: answer.added_at, processing_deadline: answer.processing_deadline, delay_until: answer.delay_until, cancel_requested: answer.cancel_requested, progress: answer.progress ?? null, parameters: answer.task.parameters }))
    })
  task.command('cancel').argument('<id>').description('cancel a task (a running one is asked to stop)')
    .action(async (id: string) => { const answer = await connect().cancel(id); out(answer, () => answer.requested ? `cancel requested ${id} (held by a worker: its next report ends it)\n` : `cancelled ${id}\n`) })
  task.command('release').argument('<id>').option('--lease <lease>', 'the lease of the claim').description('give a claimed task back (pending, no attempt counted)')
    .action(async (id: string, o: { lease?: string }) => { const answer = await connect().release(id, o.lease === undefined ? {} : { lease: o.lease }); out(answer, () => answer.cancelled ? `cancelled ${id} (its cancel had been requested)\n` : `released ${id}\n`) })

  program.command('stats').description('task counts by status and queue')
    .action(async () => {
      const s = await connect().stats()
      out(s, () => fields({ ...s.by_status, deadletters: s.deadletters, oldest_pending_age_sec: s.oldest_pending_age_sec, status_queue_depth: s.status_queue_depth }) +
        '\n' + table(s.queues, ['application', 'namespace', 'status', 'count']))
    })

  const queues = program.command('queues').description('queue settings: list, pause, resume, limits')
  queues.command('list', { isDefault: true }).description('every queue with its settings')
    .action(async () => {
      const answer = await connect().listQueues()
      const rows = answer.queues.map(q => ({
        application: q.application,
        namespace: q.namespace,
        ...q.counts,
        paused: q.settings?.paused ?? false,
        max_processing: q.settings?.max_processing,
        rate_limit: q.settings?.rate_limit === null || q.settings?.rate_limit === undefined ? undefined : `${q.settings.rate_limit.per_sec}/${q.settings.rate_limit.burst}`
      }))
      const statuses = [...new Set(answer.queues.flatMap(q => Object.keys(q.counts)))]
      out(answer, () => table(rows, ['application', 'namespace', ...statuses, 'paused', 'max_processing', 'rate_limit']))
    })
  const queueFilter = (application: string, namespace?: string) => ({ application, ...(namespace === undefined ? {} : { namespace }) })
  queues.command('pause').argument('<application>').argument('[namespace]').description('stop handing out its tasks')
    .action(async (application: string, namespace?: string) => { out(await connect().updateQueue({ ...queueFilter(application, namespace), paused: true }), () => 'paused\n') })
  queues.command('resume').argument('<application>').argument('[namespace]').description('hand out its tasks again')
    .action(async (application: string, namespace?: string) => { out(await connect().updateQueue({ ...queueFilter(application, namespace), paused: false }), () => 'resumed\n') })
  queues.command('limits').argument('<application>').argument('[namespace]').description('set (or clear with "none") its limits')
    .option('--max-processing <n|none>', 'most tasks processing at once')
    .option('--rate <per_sec[/burst]|none>', 'claims per second, with an optional burst')
    .action(async (application: string, namespace: string | undefined, o: { maxProcessing?: string, rate?: string }) => {
      if (o.maxProcessing === undefined && o.rate === undefined) throw new UsageError('limits needs --max-processing or --rate')
      const patch = {
        ...queueFilter(application, namespace),
        ...(o.maxProcessing === undefined ? {} : { max_processing: o.maxProcessing === 'none' ? null : int('--max-processing', 1)(o.maxProcessing) }),
        ...(o.rate === undefined ? {} : { rate_limit: rate(o.rate) })
      }
      out(await connect().updateQueue(patch), () => 'limits set\n')
    })

  const letters = program.command('deadletters').description('dead letters: list, requeue, purge')
  letters.command('list', { isDefault: true }).description('one page of dead letters, oldest first')
    .option('-a, --application <name>').option('-n, --namespace <name>').option('-t, --taskname <name>')
    .addOption(new Option('--limit <n>').argParser(int('--limit', 1))).option('--cursor <cursor>', 'next page (printed after a full page)')
    .action(async (o: { application?: string, namespace?: string, taskname?: string, limit?: number, cursor?: string }) => {
      const page = await connect().listDeadletters(o)
      out(page, () => table(page.deadletters.map(d => ({ id: d.task.id, application: d.task.application, namespace: d.task.namespace, taskname: d.task.taskname, reason: d.reason, deadlettered_at: d.deadlettered_at })),
        ['id', 'application', 'namespace', 'taskname', 'reason', 'deadlettered_at']) + (page.next_cursor === null ? '' : `next page: --cursor ${page.next_cursor}\n`))
    })
  letters.command('requeue').argument('<id>').description('make it a pending task again')
    .action(async (id: string) => { out(await connect().requeueDeadletter(id), () => `requeued ${id}\n`) })
  letters.command('purge').argument('<id>').description('delete it')
    .action(async (id: string) => { await connect().purgeDeadletter(id); out({ purged: id }, () => `purged ${id}\n`) })

  const schedules = program.command('schedules').description('schedules: list, get, put, delete, trigger')
  schedules.command('list', { isDefault: true }).description('every schedule')
    .action(async () => {
      const answer = await connect().listSchedules()
      out(answer, () => table(answer.schedules, ['name', 'cron', 'every_sec', 'timezone', 'paused', 'next_fire_at']))
    })
  schedules.command('get').argument('<name>').action(async (name: string) => { const s = await connect().getSchedule(name); out(s, () => fields(s)) })
  schedules.command('put').argument('<name>').description('create or replace a schedule')
    .option('--cron <expr>', 'cron expression').addOption(new Option('--every <sec>', 'every this many seconds').argParser(int('--every', 1)))
    .option('--timezone <tz>', 'IANA time zone of --cron, e.g. Europe/Berlin (default UTC)').requiredOption('--task <json>', 'the task to produce (JSON: namespace, taskname, …)')
    .addOption(new Option('--overlap <mode>', 'skip: no fire while the previous fire\'s task is still stored (default allow)').choices(['allow', 'skip']))
    .addOption(new Option('--catch-up <mode>', 'windows missed while no broker ran (default none)').choices(['none', 'latest', 'all']))
    .option('--paused', 'created paused')
    .action(async (name: string, o: { cron?: string, every?: number, timezone?: string, task: string, overlap?: 'allow' | 'skip', catchUp?: 'none' | 'latest' | 'all', paused?: boolean }) => {
      if ((o.cron === undefined) === (o.every === undefined)) throw new UsageError('put needs exactly one of --cron and --every')
      const s = await connect().putSchedule(name, {
        ...(o.cron === undefined ? {} : { cron: o.cron }),
        ...(o.every === undefined ? {} : { every_sec: o.every }),
        ...(o.timezone === undefined ? {} : { timezone: o.timezone }),
        ...(o.overlap === undefined ? {} : { overlap: o.overlap }),
        ...(o.catchUp === undefined ? {} : { catch_up: o.catchUp }),
        ...(o.paused === true ? { paused: true } : {}),
        task: json('--task', o.task) as ScheduleInput['task']
      })
      out(s, () => `schedule ${name} saved\n`)
    })
  schedules.command('delete').argument('<name>').action(async (name: string) => { await connect().deleteSchedule(name); out({ deleted: name }, () => `deleted ${name}\n`) })
  schedules.command('trigger').argument('<name>').description('produce its task now')
    .action(async (name: string) => { const answer = await connect().triggerSchedule(name); out(answer, () => `triggered ${name}: ${answer.id}${answer.inserted ? '' : ' (not stored)'}\n`) })

  program.command('tail').description('live task counts, refreshed in place (Ctrl-C ends)')
    .addOption(new Option('--interval <ms>', 'refresh period (at least 100)').argParser(int('--interval', 100)).default(1000))
    .addOption(new Option('--count <n>', 'stop after this many refreshes').argParser(int('--count', 1)))
    .action(async (o: { interval: number, count?: number }) => {
      await tail(connect(), { intervalMs: o.interval, count: o.count, json: globals().json === true, stdout: io.stdout, signal: io.signal })
    })

  try {
    await program.parseAsync(argv, { from: 'user' })
    return EXIT.ok
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage
    const code = exitCodeOf(error)
    const message = error instanceof TaskbrokerError ? (error.body.message as string | undefined) ?? error.message : (error as Error).message
    if (globals().json === true) {
      // For scripts: the error as one JSON line too, with the broker's code when it answered.
      const answered = error instanceof TaskbrokerError ? { code: error.code, status_code: error.statusCode } : {}
      io.stderr.write(`${JSON.stringify({ error: { ...answered, message, exit_code: code } })}\n`)
      return code
    }
    const detail = error instanceof TaskbrokerError ? `${error.code} (${error.statusCode}): ${message}` : message
    io.stderr.write(`taskbroker: ${detail}\n`)
    if (code === EXIT.usage) io.stderr.write('(taskbroker --help for usage)\n')
    return code
  } finally {
    await client?.close()
  }
}

function rate (value: string): { per_sec: number, burst?: number } | null {
  if (value === 'none') return null
  const match = /^(\d+(?:\.\d+)?)(?:\/(\d+))?$/.exec(value)
  if (match === null) throw new UsageError(`--rate is per_sec[/burst] or none, got "${value}"`)
  const perSec = Number(match[1])
  if (perSec <= 0 || (match[2] !== undefined && Number(match[2]) < 1)) throw new UsageError(`--rate needs a per_sec above 0 and a burst of at least 1, got "${value}" (none: no limit)`)
  return { per_sec: perSec, ...(match[2] === undefined ? {} : { burst: Number(match[2]) }) }
}

async function readStdin (): Promise<string> {
  let text = ''
  for await (const chunk of process.stdin) text += (chunk as Buffer).toString()
  return text
}

/** Letters to insert, delete or change to turn one word into the other (for "did you mean"). */
function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length] as number
}
