/**
 * Every upper bound in the request schemas is either a setting's value or a constant of the API
 * listed here with its reason: a bound written as a number where a setting exists fails this.
 */
import t from 'tap'
import { Value } from 'typebox/value'
import { loadConfig, SETTINGS, type Config } from '../../src/config/config.js'
import { createDeadletterRequestSchemas } from '../../src/http/routes/v1/deadletter-schemas.js'
import { createRequestSchemas } from '../../src/http/routes/v1/schemas.js'

type Bounded = 'limits' | 'claims'

/** Bounds that follow a setting: where (a pattern over the bound's path) and which setting. */
const FROM_SETTINGS: Array<{ at: RegExp, group: Bounded, field: string }> = [
  { at: /\.id\.maxLength$/, group: 'limits', field: 'idMaxChars' },
  { at: /\.(application|namespace|taskname)\.maxLength$/, group: 'limits', field: 'nameMaxChars' },
  { at: /^ProduceBody\.properties\.tasks\.maxItems$/, group: 'limits', field: 'produceMaxTasks' },
  { at: /^BatchStatusBody\.properties\.updates\.maxItems$/, group: 'limits', field: 'statusMaxUpdates' },
  { at: /^ClaimBody\.properties\.limit\.maximum$/, group: 'limits', field: 'claimMaxTasks' },
  { at: /^ClaimBody\.properties\.wait_ms\.maximum$/, group: 'claims', field: 'maxWaitMs' },
  { at: /^StatusBody\.properties\.fetch_next\.properties\.wait_ms\.maximum$/, group: 'claims', field: 'maxWaitMs' }
]

/** Bounds of the API itself, the same on every broker. */
const FIXED: Array<{ at: RegExp, value: number, why: string }> = [
  { at: /\.headers\.patternProperties\..*\.maxLength$/, value: 8192, why: 'a task header value' },
  { at: /\.(processing_deadline_duration|expires|delay|delay_on_retry|base_sec|max_sec)\.maximum$/, value: 31_536_000, why: 'durations in seconds: at most a year' },
  { at: /\.priority\.maximum$/, value: 32_767, why: 'a priority is a PostgreSQL smallint' },
  { at: /\.(attempts|max_attempts)\.maximum$/, value: 1000, why: 'retry counts' },
  { at: /^DeadletterListQuery\.properties\.limit\.maximum$/, value: 1000, why: 'a page of dead letters' },
  { at: /^DeadletterListQuery\.properties\.cursor\.maxLength$/, value: 2048, why: 'an opaque cursor' }
]

/** A value inside each bounded setting's range, none its default, none equal to another or a fixed bound. */
const UNUSUAL: Record<string, string> = {
  TASKBROKER_ID_MAX_CHARS: '77',
  TASKBROKER_NAME_MAX_CHARS: '66',
  TASKBROKER_PRODUCE_MAX_TASKS: '1234',
  TASKBROKER_STATUS_MAX_UPDATES: '2345',
  TASKBROKER_CLAIM_MAX_TASKS: '345',
  TASKBROKER_CLAIM_MAX_WAIT_MS: '120000',
  TASKBROKER_PARAMETERS_MAX_BYTES: '4567'
}

function upperBounds (node: unknown, path: string, found: Array<{ path: string, value: number }>): void {
  if (node === null || typeof node !== 'object') return
  for (const [key, value] of Object.entries(node)) {
    if (['maximum', 'exclusiveMaximum', 'maxItems', 'maxLength', 'maxProperties'].includes(key)) found.push({ path: `${path}.${key}`, value: value as number })
    else if (key !== 'examples' && key !== 'default') upperBounds(value, `${path}.${key}`, found)
  }
}

function schemasOf (config: Config): Record<string, unknown> {
  const deadletters = Object.entries(createDeadletterRequestSchemas(config.limits)).map(([name, schema]) => [`Deadletter${name}`, schema])
  return { ...createRequestSchemas(config.limits, config.claims), ...Object.fromEntries(deadletters) }
}

for (const [name, env] of [['defaults', {}], ['unusual values', UNUSUAL]] as const) {
  t.test(`every bound in the request schemas follows its setting or is a listed constant (${name})`, async (t) => {
    const config = loadConfig(env)
    const found: Array<{ path: string, value: number }> = []
    for (const [schemaName, schema] of Object.entries(schemasOf(config))) upperBounds(schema, schemaName, found)
    t.ok(found.length >= 30, `${found.length} bounds`)
    const used = new Set<string>()
    for (const { path, value } of found) {
      const setting = FROM_SETTINGS.find(rule => rule.at.test(path))
      const fixed = FIXED.find(rule => rule.at.test(path))
      if (setting !== undefined) {
        const expected = (config[setting.group] as Record<string, number>)[setting.field]
        t.equal(value, expected, `${path} is ${setting.group}.${setting.field}`)
        used.add(`${setting.group}.${setting.field}`)
      } else if (fixed !== undefined) {
        t.equal(value, fixed.value, `${path}: ${fixed.why}`)
      } else {
        t.fail(`${path} = ${value} follows no setting and is no listed constant`)
      }
    }
    t.same([...used].sort(), [...new Set(FROM_SETTINGS.map(r => `${r.group}.${r.field}`))].sort(), 'every setting-driven bound is in the schemas')
    const parameters = (createRequestSchemas(config.limits, config.claims).TaskInput.properties.parameters as unknown as { description: string }).description
    t.match(parameters, `at most ${config.limits.parametersMaxBytes} bytes`, 'the parameter size (checked after validation) is stated')
  })
}

t.test('every unusual value is allowed by its setting and differs from its default', async (t) => {
  const byEnv = new Map(Object.values(SETTINGS).flatMap(g => Object.values(g.settings)).map(s => [s.env, s]))
  for (const [env, value] of Object.entries(UNUSUAL)) {
    const kind = byEnv.get(env)?.kind
    if (kind?.type !== 'int') {
      t.fail(`${env} is an int setting`)
      continue
    }
    t.ok(Number(value) >= kind.minimum && Number(value) <= kind.maximum && Number(value) !== kind.default, `${env}=${value}`)
  }
})

t.test('wait_ms is bounded by TASKBROKER_CLAIM_MAX_WAIT_MS, not by a fixed 30000', async (t) => {
  const { ClaimBody } = createRequestSchemas(loadConfig({}).limits, loadConfig({ TASKBROKER_CLAIM_MAX_WAIT_MS: '120000' }).claims)
  t.ok(Value.Check(ClaimBody, { wait_ms: 60_000 }), '60000 is accepted under a 120000 bound')
  t.ok(Value.Check(ClaimBody, { wait_ms: 120_000 }), 'the bound itself is accepted')
  const [error] = Value.Errors(ClaimBody, { wait_ms: 120_001 })
  t.match(error, { instancePath: '/wait_ms', params: { limit: 120_000 } }, 'one above is refused naming the bound')

  const { ClaimBody: small } = createRequestSchemas(loadConfig({}).limits, loadConfig({ TASKBROKER_CLAIM_MAX_WAIT_MS: '100' }).claims)
  t.notOk(Value.Check(small, { wait_ms: 20_000 }), 'a wait above a small bound is refused, not capped')
  const waitMs = createRequestSchemas(loadConfig({}).limits).ClaimBody.properties.wait_ms as unknown as { maximum: number }
  t.equal(waitMs.maximum, SETTINGS.claims.settings.maxWaitMs.kind.default,
    'without claim settings the declared default applies')
})
