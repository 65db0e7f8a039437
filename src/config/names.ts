/** Setting names for people: the closest known name to a misspelt one, and warnings about strays. */
import { SETTINGS } from './settings.js'
import { variablesOf, type Table } from './setting.js'

/** Read before the settings: it names the file the others may come from. */
export const CONFIG_FILE_VARIABLE = 'TASKBROKER_CONFIG_FILE'

/** Variables of the test and fault tooling, which share the prefix but are not settings. */
const TOOLING_PREFIXES = ['TASKBROKER_TEST_', 'TASKBROKER_FAULT_', 'TASKBROKER_BENCH_']

/** Every variable the broker reads from a table's settings, and the config file's. */
export const knownVariables = (table: Table): string[] => [...variablesOf(table), CONFIG_FILE_VARIABLE]

const KNOWN = knownVariables(SETTINGS)

/** The known setting closest to a misspelt name, or undefined when none is close. */
export function closestSetting (name: string, known: readonly string[] = KNOWN): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const key of known) {
    const distance = editDistance(name, key)
    if (distance < bestDistance) {
      best = key
      bestDistance = distance
    }
  }
  // More than a third of the name changed: a guess would mislead more than help.
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined
}

function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length] as number
}

export function didYouMean (name: string, known: readonly string[] = KNOWN): string {
  const closest = closestSetting(name, known)
  return closest === undefined ? '' : ` (did you mean ${closest}?)`
}

/**
 * Warnings about the environment that do not stop the broker: a TASKBROKER_* variable that is no
 * setting (a misspelling would otherwise be silently ignored). server.ts logs them at start.
 */
export function configWarnings (env: Record<string, string | undefined> = process.env, known: readonly string[] = KNOWN): string[] {
  const names = new Set(known)
  const warnings: string[] = []
  for (const key of Object.keys(env).sort()) {
    if (!key.startsWith('TASKBROKER_') || names.has(key) || TOOLING_PREFIXES.some(p => key.startsWith(p))) continue
    warnings.push(`${key} is not a known setting and is ignored${didYouMean(key, known)}`)
  }
  return warnings
}
