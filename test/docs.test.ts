/**
 * The README against the code: the curl walk-through gives the answers it shows, and every error
 * code the broker can answer is in the README's list of error codes.
 */
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ConfigSchema } from '../src/config/config.js'
import { buildTestApp, NO_UPKEEP } from './helpers/app.js'
import { eachBackend } from './helpers/database.js'

const ROOT = new URL('..', import.meta.url).pathname
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')

function section (heading: string): string {
  const start = README.indexOf(`\n${heading}\n`)
  if (start < 0) throw new Error(`README has no "${heading}"`)
  const next = README.indexOf('\n## ', start + heading.length + 2)
  return README.slice(start, next < 0 ? undefined : next)
}

eachBackend(t, 'the curl walk-through gives the answers it shows', async (t, backend) => {
  const { app } = await buildTestApp(t, backend, NO_UPKEEP)
  const walk = section('## A walk through with curl')
  // Each step: `curl -s localhost:8080<path> ... -d '<body>'`, then `# → <answer>`.
  const steps = [...walk.matchAll(/curl -s localhost:8080(\S+) -H 'content-type: application\/json'\s*(?:\\\n\s*)?-d '([^']*)'\n# → (.*)/g)]
  t.equal(steps.length, 4, 'produce, claim, report, batch report')
  for (const [, path, body, answer] of steps) {
    const response = await app.inject({ method: 'POST', url: path as string, headers: { 'content-type': 'application/json' }, payload: body as string })
    t.ok(response.statusCode < 300, `${path} answers ${response.statusCode}`)
    // Every "key":value the README shows (leaving out elided values, "…") is in the answer as shown.
    const shown = [...(answer as string).matchAll(/"[a-z_]+":(\[[^\]…]*\]|"[^"…]*"|[0-9]+|true|false|null)(?=[,}])/g)].map(m => m[0])
    t.ok(shown.length > 0, `${path}: the README shows part of the answer`)
    for (const pair of shown) t.ok(response.body.includes(pair), `${path}: ${pair} (answer: ${response.body.slice(0, 400)})`)
  }
})

/** Codes that never reach a client: they name failures inside the process (start-up, internal queues). */
const INTERNAL_CODES: Record<string, string> = {
  TASKBROKER_CONFIG_INVALID: 'a bad setting stops the broker at start (exit 78)',
  TASKBROKER_STARTUP_REFUSED: 'the broker refuses to start (exit 78)',
  TASKBROKER_BATCHER_FULL: 'answered as TASKBROKER_STATUS_QUEUE_FULL',
  TASKBROKER_BATCHER_CLOSED: 'answered as TASKBROKER_SHUTTING_DOWN',
  TASKBROKER_STORE_TIMEOUT: 'answered as TASKBROKER_STORE_UNAVAILABLE or TASKBROKER_OUTCOME_UNKNOWN',
  TASKBROKER_CLIENT_UNREACHABLE: 'thrown by the client SDK when no answer came (README "Worker SDK and CLI"); never an answer of the broker'
}

function sources (dir: string): string[] {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : []
  })
}

t.test('every error code in src/ is in the README\'s list of error codes', async (t) => {
  const settings = new Set(Object.keys(ConfigSchema.properties))
  const codes = new Set<string>()
  for (const file of sources(join(ROOT, 'src'))) {
    // A quoted TASKBROKER_* name that is no setting (and no prefix of settings, e.g. 'TASKBROKER_') is a code.
    for (const [, code] of readFileSync(file, 'utf8').matchAll(/['"`](TASKBROKER_[A-Z0-9_]*[A-Z0-9])['"`]/g)) {
      if (!settings.has(code as string) && code !== 'TASKBROKER_CONFIG_FILE') codes.add(code as string)
    }
  }
  t.ok(codes.size >= 20, `found ${codes.size} codes`)
  const start = README.indexOf('Errors are always `{statusCode, code, error, message}`')
  t.ok(start >= 0, 'the README lists error codes')
  const list = README.slice(start, README.indexOf('\n\n', start))
  for (const code of [...codes].sort()) {
    if (INTERNAL_CODES[code] !== undefined) continue
    t.ok(list.includes(`\`${code}\``), `${code} is in the README's error list`)
  }
})

t.test('every figure\'s source is in the repository: no measurements file outside it', async (t) => {
  t.notMatch(README, /measurements\.md/)
  // git grep exits 1 when nothing matches, 0 with the files that do.
  const grep = spawnSync('git', ['-C', ROOT, 'grep', '-l', '-I', 'measurements\\.md', '--', 'src', 'bench', 'examples', 'scripts', 'bin', ':!bench/results'], { encoding: 'utf8' })
  t.equal(grep.status, 1, `no source file cites a measurements file users do not have: ${grep.stdout}${grep.stderr}`)
})
