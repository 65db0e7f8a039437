/**
 * The package as a user gets it (`npm run test:package`, not part of `npm test`: it builds, packs
 * and installs from the npm registry, which takes a minute or more): `npm pack` gives a tarball
 * that installs into an empty project, every export of package.json imports from it, and
 * `npx taskbroker` starts the broker, which migrates its embedded store and serves requests.
 */
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { freePort, ROOT } from '../../bench/lib/process.js'

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

/** The environment without tap's loaders (NODE_OPTIONS) and without any broker setting. */
const cleanEnv: Record<string, string> = {}
for (const [key, value] of Object.entries(process.env)) {
  if (value === undefined || key.startsWith('NODE_') || key.startsWith('TASKBROKER_') || key.startsWith('TAP') ||
    ['DATABASE_URL', 'PORT', 'HOST', 'LOG_LEVEL'].includes(key)) continue
  cleanEnv[key] = value
}

function run (command: string, args: string[], cwd: string, timeoutMs = 600_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env: cleanEnv, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stdout.slice(-3000)}\n${stderr.slice(-3000)}`))
      else resolve(stdout)
    })
  })
}

const work = mkdtempSync(join(tmpdir(), 'tb-package-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const project = join(work, 'project')
let installed = false
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string, version: string, exports: Record<string, unknown>, bin: Record<string, string> }

t.test('npm pack gives a tarball with the compiled broker, its launcher and its migrations', async (t) => {
  // Built first and packed without scripts: `npm pack` would run `prepare` too, which rebuilds tap in
  // node_modules — the tap running this test (and any other test run sharing node_modules).
  await run('npm', ['run', 'build'], ROOT)
  const packed = JSON.parse(await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT)) as Array<{ filename: string, files: Array<{ path: string }> }>
  const files = packed[0]?.files.map(f => f.path) ?? []
  for (const needed of ['package.json', 'README.md', 'LICENSE', 'bin/taskbroker.js', 'dist/src/server.js', 'dist/src/client/index.js', 'dist/src/client/index.d.ts', 'dist/src/cli/index.js', 'dist/src/auth/signing.js', 'dist/src/auth/signing.d.ts', 'migrations/meta/_journal.json', 'migrations/0000_init.sql']) {
    t.ok(files.includes(needed), `the tarball holds ${needed}`)
  }
  t.notOk(files.some(f => f.startsWith('src/') || f.startsWith('test/') || f.startsWith('dist/test/') || f.endsWith('.map')), 'no sources, tests or source maps')

  await run('mkdir', ['-p', project], work)
  await run('npm', ['init', '-y'], project)
  await run('npm', ['install', '--no-audit', '--no-fund', join(work, packed[0]?.filename ?? '')], project)
  installed = true
})

t.test('every export of package.json imports in the installed project', async (t) => {
  if (!installed) return t.fail('not installed')
  for (const name of Object.keys(pkg.exports)) {
    const specifier = join(pkg.name, name)
    const loaded = await run(process.execPath, ['--input-type=module', '-e',
      `const m = await import(${JSON.stringify(specifier)}, ${JSON.stringify(specifier.endsWith('.json') ? { with: { type: 'json' } } : {})}); console.log(JSON.stringify(Object.keys(m)))`], project)
    t.ok((JSON.parse(loaded) as string[]).length > 0, `${specifier} imports`)
  }
  const signed = await run(process.execPath, ['--input-type=module', '-e',
    "import { signRequest } from 'taskbroker/signing'; console.log(JSON.stringify(signRequest('s3cret', { method: 'POST', path: '/v1/tasks', body: '{}', timestamp: 1 })))"], project)
  t.match(JSON.parse(signed), { 'taskbroker-signature': /^[0-9a-f]{64}$/, 'taskbroker-timestamp': '1' }, 'the README\'s signRequest import works')
  const sdk = await run(process.execPath, ['--input-type=module', '-e',
    "import * as sdk from 'taskbroker/client'; console.log(JSON.stringify(['createClient', 'createWorker', 'retry', 'createPushHandler', 'taskbrokerPush', 'TaskbrokerError'].map(n => typeof sdk[n])))"], project)
  t.same(JSON.parse(sdk), ['function', 'function', 'function', 'function', 'function', 'function'], 'taskbroker/client exports the SDK')
  const help = await run('npx', ['--no-install', 'taskbroker', '--help'], project)
  t.match(help, /Usage: taskbroker[\s\S]*Exit codes:/, 'npx taskbroker --help is the CLI\'s')
})

t.test('npx taskbroker starts the broker, which migrates its store, serves and stops on SIGTERM', async (t) => {
  if (!installed) return t.fail('not installed')
  t.same(Object.keys(pkg.bin), ['taskbroker'])
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  // detached: npx runs the launcher in a child process; the signal goes to the whole group.
  const child = spawn('npx', ['--no-install', 'taskbroker'], {
    cwd: project,
    detached: true,
    env: { ...cleanEnv, PORT: String(port), HOST: '127.0.0.1', TASKBROKER_DATA_DIR: join(work, 'data'), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  let ended = false
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.once('exit', (code, signal) => {
    ended = true
    resolve({ code, signal })
  }))
  const running = () => !ended
  const pid = child.pid as number
  const killGroup = (signal: NodeJS.Signals) => { try { process.kill(-pid, signal) } catch {} }
  t.teardown(() => killGroup('SIGKILL'))

  let ready = false
  const deadline = Date.now() + 180_000
  while (!ready && running() && Date.now() < deadline) {
    try {
      ready = (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) })).status === 200
    } catch {}
    if (!ready) await sleep(200)
  }
  t.ok(ready, '/readyz answered 200')
  if (!ready) return t.comment(output.slice(-3000))

  const produced = await fetch(`${url}/v1/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tasks: [{ namespace: 'emails', taskname: 'send_receipt' }] })
  })
  t.equal(produced.status, 201, 'the embedded store was migrated: produce works')
  // The installed CLI and SDK against the running broker.
  const cliProduced = await run('npx', ['--no-install', 'taskbroker', '--url', url, '--json', 'produce', 'emails', 'send_receipt', '--id', 'from-cli'], project)
  t.same(JSON.parse(cliProduced).ids, ['from-cli'], 'npx taskbroker produce')
  const stats = await run('npx', ['--no-install', 'taskbroker', '--url', url, '--json', 'stats'], project)
  t.equal(JSON.parse(stats).by_status.pending, 2, 'npx taskbroker stats')
  const claimed = await run(process.execPath, ['--input-type=module', '-e',
    `import { createClient } from 'taskbroker/client'; const c = createClient({ url: ${JSON.stringify(url)} }); const r = await c.claim({ limit: 2 }); await c.reportMany(r.tasks.map(x => ({ id: x.id, status: 'complete' }))); await c.close(); console.log(r.tasks.length)`], project)
  t.equal(claimed.trim(), '2', 'the installed client claims and reports')
  const docs = await fetch(`${url}/openapi.json`)
  t.equal(((await docs.json()) as { info: { version: string } }).info.version, pkg.version, 'the installed broker finds its own package.json')

  killGroup('SIGTERM')
  const timer = setTimeout(() => killGroup('SIGKILL'), 30_000)
  const exit = await exited
  clearTimeout(timer)
  // npm exec ends itself with the signal it got once its child has exited; the broker logs its own end.
  t.ok(exit.code === 0 || exit.signal === 'SIGTERM', `npx ended on SIGTERM (${JSON.stringify(exit)})`)
  const groupAlive = () => { try { process.kill(-pid, 0); return true } catch { return false } }
  for (let waited = 0; groupAlive() && waited < 30_000; waited += 200) await sleep(200)
  t.notOk(groupAlive(), 'no process of the group is left')
  // Read once the whole group is gone: npx may end before the broker has written its last line.
  t.match(output, /"msg":"shutdown complete"/, 'the broker shut down in order')
})
