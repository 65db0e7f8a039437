import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino, { type Logger } from 'pino'
import t, { type Test } from 'tap'
import { loadRuntimeConfig, type RuntimeConfig, type RuntimeConfigSource } from '../src/core/runtime-config.js'

interface LogLine { level: number, msg: string, [key: string]: unknown }

const INFO = 30
const ERROR = 50
/** Long enough that the watcher never polls during a test that drives reload() itself. */
const NO_POLL = 600_000

/** A pino logger whose lines land in an array. */
function capture (): { log: Logger, lines: LogLine[] } {
  const lines: LogLine[] = []
  const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } })
  return { log, lines }
}

/** A fresh directory per test; removed afterwards. */
function tempFile (t: Test, name: string, content?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'taskbroker-runtime-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, name)
  if (content !== undefined) writeFileSync(path, content)
  return path
}

async function load (t: Test, path: string | undefined, log: Logger, watchIntervalMs = NO_POLL): Promise<RuntimeConfigSource> {
  const source = await loadRuntimeConfig({ path, log, watchIntervalMs })
  t.teardown(() => source.close())
  return source
}

/** Resolves with the next config passed to onChange; rejects if none comes in time. */
function nextChange (source: RuntimeConfigSource, timeoutMs = 5_000): Promise<RuntimeConfig> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no onChange within ${timeoutMs} ms`)), timeoutMs)
    source.onChange((config) => {
      clearTimeout(timer)
      resolve(config)
    })
  })
}

const yamlList = (...names: string[]) => `drop_task_killswitch:\n${names.map(n => `  - ${n}\n`).join('')}`

t.test('no path: empty, never changes', async (t) => {
  const { log, lines } = capture()
  const source = await load(t, undefined, log)
  t.same(source.current(), { dropTaskKillswitch: [], schedules: [] })
  t.equal(source.isKillswitched('shop.send_spam'), false)
  t.equal(await source.reload(), false)
  t.same(lines, [], 'nothing to say')
})

t.test('missing file: empty config, logged at info once', async (t) => {
  const { log, lines } = capture()
  const path = tempFile(t, 'runtime.yaml')
  const source = await load(t, path, log)
  t.same(source.current().dropTaskKillswitch, [])
  t.equal(await source.reload(), false, 'still missing: no change')
  t.equal(await source.reload(), false)
  const notFound = lines.filter(l => /not found/.test(l.msg))
  t.equal(notFound.length, 1, 'logged once, not at every reload')
  t.equal(notFound[0]?.level, INFO)
  t.equal(notFound[0]?.path, path)
})

t.test('valid YAML', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('shop.send_spam', 'other.task'))
  const source = await load(t, path, log)
  t.same(source.current().dropTaskKillswitch, ['shop.send_spam', 'other.task'])
  t.equal(source.isKillswitched('shop.send_spam'), true)
  t.equal(source.isKillswitched('other.task'), true)
  t.equal(source.isKillswitched('shop.send_mail'), false)
  t.ok(Object.isFrozen(source.current()), 'config is frozen')
  t.throws(() => { (source.current().dropTaskKillswitch as string[]).push('x') }, 'list is frozen')
  t.equal(source.isKillswitched('x'), false)
})

t.test('.yml and other extensions are YAML', async (t) => {
  const { log } = capture()
  for (const name of ['runtime.yml', 'runtime.conf']) {
    const source = await load(t, tempFile(t, name, yamlList('a.b')), log)
    t.same(source.current().dropTaskKillswitch, ['a.b'], name)
  }
})

t.test('valid JSON, and .json files are parsed as JSON', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.json', JSON.stringify({ drop_task_killswitch: ['shop.send_spam'] }))
  const source = await load(t, path, log)
  t.same(source.current().dropTaskKillswitch, ['shop.send_spam'])
  t.equal(source.isKillswitched('shop.send_spam'), true)

  const yamlInJson = tempFile(t, 'runtime.json', yamlList('shop.send_spam'))
  await t.rejects(load(t, yamlInJson, log), { message: /not valid JSON/ }, 'YAML syntax is not accepted in a .json file')
})

t.test('duplicates are removed, first occurrence order kept', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('b', 'a', 'b', 'c', 'a'))
  const source = await load(t, path, log)
  t.same(source.current().dropTaskKillswitch, ['b', 'a', 'c'])
})

t.test('a missing or empty key, or an empty file, is an empty killswitch', async (t) => {
  const { log } = capture()
  for (const [name, content] of [['empty.yaml', ''], ['comment.yaml', '# nothing yet\n'], ['null.yaml', 'drop_task_killswitch:\n'], ['map.json', '{}'], ['list.yaml', 'drop_task_killswitch: []\n']] as const) {
    const source = await load(t, tempFile(t, name, content), log)
    t.same(source.current().dropTaskKillswitch, [], name)
  }
})

t.test('an unknown key is rejected at start, naming the key and the file', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.yaml', 'drop_task_killswitch: []\ndrop_taks_killswitch:\n  - shop.send_spam\n')
  const err = await load(t, path, log).then(() => undefined, (e: unknown) => e as Error)
  t.ok(err instanceof Error, 'start fails')
  t.match(err?.message, /drop_taks_killswitch/)
  t.ok(err?.message.includes(path), 'names the file')
})

t.test('a broken file at start throws, naming the file and the problem', async (t) => {
  const { log } = capture()
  const cases: Array<[string, string, RegExp]> = [
    ['bad-syntax.yaml', 'drop_task_killswitch: [a, b\n', /not valid YAML/],
    ['bad-syntax.json', '{"drop_task_killswitch": [', /not valid JSON/],
    ['not-a-map.yaml', '- shop.send_spam\n', /map/],
    ['not-a-list.yaml', 'drop_task_killswitch: shop.send_spam\n', /drop_task_killswitch must be a list/],
    ['number.yaml', 'drop_task_killswitch:\n  - 42\n', /drop_task_killswitch\[0\]/],
    ['empty-string.yaml', 'drop_task_killswitch:\n  - ok\n  - ""\n', /drop_task_killswitch\[1\]/],
    ['too-long.yaml', yamlList('x'.repeat(256)), /drop_task_killswitch\[0\].*255/]
  ]
  for (const [name, content, problem] of cases) {
    const path = tempFile(t, name, content)
    const err = await load(t, path, log).then(() => undefined, (e: unknown) => e as Error)
    t.ok(err instanceof Error, `${name}: start fails`)
    t.ok(err?.message.includes(path), `${name}: names the file`)
    t.match(err?.message, problem, `${name}: names the problem`)
  }
  const longest = await load(t, tempFile(t, 'longest.yaml', yamlList('x'.repeat(255))), log)
  t.equal(longest.current().dropTaskKillswitch[0]?.length, 255, '255 characters are allowed')
})

t.test('a directory at the path is an error, not a missing file', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'dir.yaml')
  const dir = join(path, '..')
  await t.rejects(load(t, dir, log), { message: /cannot be read/ })
})

t.test('reload picks up an edit and returns true; unchanged returns false', async (t) => {
  const { log, lines } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('a'))
  const source = await load(t, path, log)
  const seen: RuntimeConfig[] = []
  source.onChange(c => seen.push(c))

  t.equal(await source.reload(), false, 'nothing changed yet')
  t.same(seen, [])

  writeFileSync(path, yamlList('a', 'b'))
  t.equal(await source.reload(), true)
  t.same(source.current().dropTaskKillswitch, ['a', 'b'])
  t.same(seen.map(c => c.dropTaskKillswitch), [['a', 'b']], 'onChange called with the new config')
  t.equal(seen[0], source.current())
  const changed = lines.filter(l => l.msg === 'runtime config changed')
  t.equal(changed.length, 1)
  t.equal(changed[0]?.level, INFO)
  t.same(changed[0]?.dropTaskKillswitch, ['a', 'b'], 'the log carries the new list')

  writeFileSync(path, `# same list, new comment\n${yamlList('a', 'b', 'a')}`)
  t.equal(await source.reload(), false, 'same list after dedup: no change')
  t.equal(seen.length, 1)
})

t.test('isKillswitched follows the current config', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('a'))
  const source = await load(t, path, log)
  t.equal(source.isKillswitched('a'), true)
  t.equal(source.isKillswitched('b'), false)
  writeFileSync(path, yamlList('b'))
  t.equal(await source.reload(), true)
  t.equal(source.isKillswitched('a'), false)
  t.equal(source.isKillswitched('b'), true)
})

t.test('a broken file on reload keeps the last good config, returns false and logs why', async (t) => {
  const { log, lines } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('a'))
  const source = await load(t, path, log)
  const seen: RuntimeConfig[] = []
  source.onChange(c => seen.push(c))
  const good = source.current()

  for (const broken of ['drop_task_killswitch: [a\n', 'drop_task_killswich:\n  - a\n', 'drop_task_killswitch:\n  - ""\n']) {
    writeFileSync(path, broken)
    t.equal(await source.reload(), false, JSON.stringify(broken))
    t.equal(source.current(), good, 'last good config kept')
    t.equal(source.isKillswitched('a'), true)
  }
  t.same(seen, [], 'no change notified')
  const errors = lines.filter(l => l.level === ERROR)
  t.equal(errors.length, 3)
  t.equal(errors[0]?.path, path, 'the log names the file')
  t.match(errors[0]?.reason, /not valid YAML/, 'and the reason')
  t.match(errors[1]?.reason, /drop_task_killswich/)

  writeFileSync(path, yamlList('c'))
  t.equal(await source.reload(), true, 'a fixed file is picked up')
  t.same(source.current().dropTaskKillswitch, ['c'])
})

t.test('deleting the file clears the config', async (t) => {
  const { log, lines } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('a'))
  const source = await load(t, path, log)
  rmSync(path)
  t.equal(await source.reload(), true)
  t.same(source.current().dropTaskKillswitch, [])
  t.equal(source.isKillswitched('a'), false)
  t.equal(lines.filter(l => /not found/.test(l.msg)).length, 1)
})

t.test('overlapping reloads report one change', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('a'))
  const source = await load(t, path, log)
  writeFileSync(path, yamlList('b'))
  const results = await Promise.all([source.reload(), source.reload(), source.reload()])
  t.same(results, [true, false, false])
  t.same(source.current().dropTaskKillswitch, ['b'])
})

t.test('a listener that throws does not stop the others, and is logged', async (t) => {
  const { log, lines } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('a'))
  const source = await load(t, path, log)
  const seen: RuntimeConfig[] = []
  source.onChange(() => { throw new Error('listener broke') })
  source.onChange(c => seen.push(c))
  writeFileSync(path, yamlList('b'))
  t.equal(await source.reload(), true)
  t.equal(seen.length, 1)
  t.ok(lines.some(l => l.level === ERROR && /listener/.test(l.msg)))
})

t.test('the watcher notices an edit and calls onChange', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('a'))
  const source = await load(t, path, log, 50)
  const change = nextChange(source)
  writeFileSync(path, yamlList('a', 'shop.send_spam'))
  const config = await change
  t.same(config.dropTaskKillswitch, ['a', 'shop.send_spam'])
  t.equal(source.isKillswitched('shop.send_spam'), true)
})

t.test('the watcher notices a file replaced by rename, and a file that appears', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.yaml')
  const source = await load(t, path, log, 50)
  t.same(source.current().dropTaskKillswitch, [])

  let change = nextChange(source)
  writeFileSync(path, yamlList('appeared'))
  t.same((await change).dropTaskKillswitch, ['appeared'], 'a file created after start')

  change = nextChange(source)
  writeFileSync(`${path}.tmp`, yamlList('renamed.in', 'by.editor'))
  renameSync(`${path}.tmp`, path)
  t.same((await change).dropTaskKillswitch, ['renamed.in', 'by.editor'], 'an atomic replace')
})

t.test('close stops watching (only this source)', async (t) => {
  const { log } = capture()
  const path = tempFile(t, 'runtime.yaml', yamlList('a'))
  const closed = await load(t, path, log, 50)
  const control = await load(t, path, log, 50)
  const seenByClosed: RuntimeConfig[] = []
  closed.onChange(c => seenByClosed.push(c))
  closed.close()

  const change = nextChange(control)
  writeFileSync(path, yamlList('a', 'b'))
  await change // the file was polled and the change seen by a source still watching
  // Give a (wrongly) still-watching source's own reload the time to finish too.
  await new Promise(resolve => setTimeout(resolve, 200))
  t.same(seenByClosed, [], 'no onChange after close')
  t.same(closed.current().dropTaskKillswitch, ['a'], 'config not reloaded by a watcher')
  t.equal(await closed.reload(), true, 'reload() still works after close')
  closed.close()
  t.pass('close is idempotent')
})
