/**
 * Writes `.env.example` and the README's settings table from the settings table
 * (src/config/settings.ts). `npx tsx scripts/settings.ts --write` rewrites both; `--check` exits 1
 * naming the files that differ (a directory after the flag is checked instead of this checkout). test/config/settings-docs.test.ts fails when either is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Kind, type Setting, type Table } from '../src/config/setting.js'
import { SETTINGS } from '../src/config/settings.js'
import { packageRoot } from '../src/paths.js'

export const ENV_EXAMPLE = '.env.example'
export const README = 'README.md'
export const TABLE_BEGIN = '<!-- settings table: written by `npx tsx scripts/settings.ts --write` from src/config/settings.ts -->'
export const TABLE_END = '<!-- end of settings table -->'

const ENV_HEADER = `# Taskbroker configuration: every setting with its default. Values come from the environment
# (or from the YAML/JSON file named by TASKBROKER_CONFIG_FILE, same keys; the environment wins).
# A bad value stops the broker with a message naming the variable.
# Written by \`npx tsx scripts/settings.ts --write\` from src/config/settings.ts: change settings there.
`

const WIDTH = 100

/** What a setting accepts, for people; undefined when any text is. */
function allowed (kind: Kind, separator: string): string | undefined {
  switch (kind.type) {
    case 'int': return `${kind.minimum}–${kind.maximum}`
    case 'enum': return kind.values.join(separator)
    case 'bool': case 'optional bool': return ['true', 'false'].join(separator)
    default: return undefined
  }
}

/** The default as written in the environment, or undefined when the setting is unset by default. */
function defaultValue (kind: Kind): string | undefined {
  return 'default' in kind ? String(kind.default) : undefined
}

/** `text` as comment lines of at most WIDTH characters; `tail` is never split. */
function commentLines (text: string, tail: string | undefined): string[] {
  const lines: string[] = []
  let line = '#'
  for (const word of [...text.split(' '), ...(tail === undefined ? [] : [tail])]) {
    if (line.length + 1 + word.length > WIDTH && line !== '#') {
      lines.push(line)
      line = '#'
    }
    line += ` ${word}`
  }
  return [...lines, line]
}

function envEntry (setting: Setting<unknown>): string[] {
  // true | false goes without saying next to `=true`.
  const range = setting.kind.type === 'bool' || setting.kind.type === 'optional bool' ? undefined : allowed(setting.kind, ' | ')
  const notes = [range, setting.defaultText === undefined ? undefined : `default: ${setting.defaultText}`]
    .filter((note): note is string => note !== undefined)
  const comment = commentLines(setting.description, notes.length > 0 ? `[${notes.join('; ')}]` : undefined)
  const value = defaultValue(setting.kind)
  const assignment = value !== undefined ? `${setting.env}=${value}` : `# ${setting.env}=${setting.example ?? ''}`
  return [...comment, assignment, ...setting.aliases.map(alias => `# ${alias}=`)]
}

export function renderEnvExample (table: Table): string {
  const sections = Object.values(table).map(({ title, settings }) =>
    [`# --- ${title} ---`, ...Object.values(settings).flatMap(envEntry)].join('\n'))
  return `${ENV_HEADER}\n${sections.join('\n\n')}\n`
}

const cell = (text: string): string => text.replaceAll('|', '\\|')

export function renderReadmeTable (table: Table): string {
  const rows = Object.values(table).flatMap(({ title, settings }) => [
    `| **${cell(title)}** | | | |`,
    ...Object.values(settings).map(setting => {
      const names = [setting.env, ...setting.aliases].map(name => `\`${name}\``).join(' / ')
      const fallback = setting.defaultText ?? defaultValue(setting.kind) ?? 'unset'
      return `| ${names} | ${cell(fallback)} | ${cell(allowed(setting.kind, ', ') ?? '')} | ${cell(setting.description)} |`
    })
  ])
  return [TABLE_BEGIN, '| variable | default | allowed | meaning |', '|---|---|---|---|', ...rows, TABLE_END].join('\n')
}

/** The README with its settings table (between the two markers) replaced. */
export function withReadmeTable (readme: string, table: Table): string {
  const begin = readme.indexOf(TABLE_BEGIN)
  const end = readme.indexOf(TABLE_END)
  if (begin < 0 || end < begin) throw new Error(`${README} has no settings table between "${TABLE_BEGIN}" and "${TABLE_END}"`)
  return readme.slice(0, begin) + renderReadmeTable(table) + readme.slice(end + TABLE_END.length)
}

/** Each generated file with its path under `root`, as it is and as the table says it should be. */
export function generatedFiles (root: string, table: Table = SETTINGS): Array<{ path: string, current: string, expected: string }> {
  const read = (name: string) => readFileSync(join(root, name), 'utf8')
  return [
    { path: ENV_EXAMPLE, current: read(ENV_EXAMPLE), expected: renderEnvExample(table) },
    { path: README, current: read(README), expected: withReadmeTable(read(README), table) }
  ]
}

/** The generated files under `root` that differ from what the table says. */
export function staleFiles (root: string, table: Table = SETTINGS): string[] {
  return generatedFiles(root, table).filter(f => f.current !== f.expected).map(f => f.path)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // An optional second argument names another checkout (tests check a stale copy).
  const [mode, root = packageRoot()] = process.argv.slice(2)
  if (mode === '--write') {
    for (const file of generatedFiles(root)) {
      if (file.current !== file.expected) writeFileSync(join(root, file.path), file.expected)
      process.stdout.write(`${file.current === file.expected ? 'unchanged' : 'wrote'} ${file.path}\n`)
    }
  } else if (mode === '--check') {
    const stale = staleFiles(root)
    for (const path of stale) process.stderr.write(`${path} is out of date: run npx tsx scripts/settings.ts --write\n`)
    process.exitCode = stale.length > 0 ? 1 : 0
  } else {
    process.stderr.write('usage: npx tsx scripts/settings.ts --write | --check\n')
    process.exitCode = 2
  }
}
