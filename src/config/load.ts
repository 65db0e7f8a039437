/**
 * Configuration: parsed once, at the edge, into a typed and frozen object.
 *
 * Sources, later wins: built-in defaults → the optional config file named by
 * `TASKBROKER_CONFIG_FILE` (YAML or JSON, same keys as the environment) → environment variables.
 * Nothing else in the broker reads `process.env`. A bad value stops the broker with a
 * `ConfigError` naming the variable, the rule it broke and the value it got.
 */
import { readFileSync } from 'node:fs'
import { Type, type TObject, type TSchema } from 'typebox'
import { Value } from 'typebox/value'
import { parse as parseYaml } from 'yaml'
import { ConfigError } from './errors.js'
import { CONFIG_FILE_VARIABLE, didYouMean, knownVariables } from './names.js'
import { RULES } from './rules.js'
import { InvalidValue, rawValue, settingsOf, sourceOf, variablesOf, type ConfigOf, type Table } from './setting.js'
import { SETTINGS } from './settings.js'

type Env = Record<string, string | undefined>

/** A table's settings as one flat TypeBox object keyed by variable (aliases included). */
export function schemaOf (table: Table): TObject<Record<string, TSchema>> {
  const properties: Record<string, TSchema> = {}
  for (const { setting } of settingsOf(table)) {
    for (const name of [setting.env, ...setting.aliases]) properties[name] = setting.schema
  }
  return Type.Object(properties, { additionalProperties: true })
}

/** Reads the config file named by TASKBROKER_CONFIG_FILE: a flat map of the same keys. */
function readConfigFile (path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(CONFIG_FILE_VARIABLE, `cannot be read (${(err as Error).message})`)
  }
  let parsed: unknown
  try {
    parsed = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new ConfigError(CONFIG_FILE_VARIABLE, `is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} (${(err as Error).message})`)
  }
  if (parsed === null || parsed === undefined) return {}
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(CONFIG_FILE_VARIABLE, 'must hold a map of settings')
  }
  return parsed as Record<string, unknown>
}

/**
 * typebox's Convert truncates "80.9" to 80 (and reads "1e3" or "0x10"): an integer setting must be
 * written as a whole number in digits.
 */
function checkIntegers (table: Table, raw: Record<string, unknown>): void {
  for (const { setting } of settingsOf(table)) {
    if (setting.kind.type !== 'int') continue
    for (const key of [setting.env, ...setting.aliases]) {
      const value = raw[key]
      if (value === undefined) continue
      const whole = typeof value === 'number' ? Number.isInteger(value) : typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value)
      if (!whole) throw new ConfigError(key, `must be a whole number (got ${JSON.stringify(value)})`)
    }
  }
}

function describeError (schema: TObject<Record<string, TSchema>>, key: string, value: unknown, message: string): string {
  const property = schema.properties[key] as { enum?: unknown[] } | undefined
  if (property?.enum !== undefined) return `must be one of ${property.enum.join(', ')} (got ${JSON.stringify(value)})`
  return `${message} (got ${JSON.stringify(value)})`
}

/**
 * The values of `table` from environment variables (and the optional config file), each setting's
 * own rules checked, not frozen. Empty strings count as unset, so `PORT=` falls back to the default.
 */
export function loadSettings<T extends Table> (table: T, env: Env): ConfigOf<T> {
  const fromEnv: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') fromEnv[key] = value
  }
  const filePath = fromEnv[CONFIG_FILE_VARIABLE]
  const file = typeof filePath === 'string' ? readConfigFile(filePath) : {}
  const variables = variablesOf(table)
  for (const key of Object.keys(file)) {
    if (!variables.includes(key)) throw new ConfigError(key, `is not a known setting (in ${CONFIG_FILE_VARIABLE})${didYouMean(key, knownVariables(table))}`)
  }
  for (const { setting } of settingsOf(table)) {
    if (setting.fromFile !== undefined && file[setting.env] !== undefined) file[setting.env] = setting.fromFile(file[setting.env])
  }
  const raw: Record<string, unknown> = {}
  for (const key of variables) {
    const value = fromEnv[key] ?? file[key]
    if (value !== undefined) raw[key] = value
  }
  checkIntegers(table, raw)
  const schema = schemaOf(table)
  const values = Value.Convert(schema, Value.Default(schema, raw)) as Record<string, unknown>
  const [error] = Value.Errors(schema, values)
  if (error !== undefined) {
    const key = error.instancePath.split('/')[1] ?? '(config)'
    throw new ConfigError(key, describeError(schema, key, raw[key], error.message))
  }

  const config: Record<string, Record<string, unknown>> = {}
  for (const { group, field, setting } of settingsOf(table)) {
    try {
      (config[group] ??= {})[field] = setting.read(rawValue(setting, values), values)
    } catch (err) {
      if (!(err instanceof InvalidValue)) throw err
      throw new ConfigError(sourceOf(setting, values) ?? setting.env, err.message)
    }
  }
  return config as ConfigOf<T>
}

/** Builds the frozen Config from environment variables (and the optional config file). */
export function loadConfig (env: Env = process.env): ConfigOf<typeof SETTINGS> {
  const config = loadSettings(SETTINGS, env)
  for (const rule of RULES) {
    const message = rule.check(config)
    if (message !== undefined) throw new ConfigError(rule.variable, message)
  }
  return deepFreeze(config)
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner)
    Object.freeze(value)
  }
  return value
}
