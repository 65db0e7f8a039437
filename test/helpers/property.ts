/**
 * Seeds of the property tests (fast-check). A failing property names its seed (fast-check's
 * report, and `seedOf` for the tap message); `TASKBROKER_TEST_SEED=<seed>` runs every property of
 * the file with that seed, so the same inputs come again: a failure replays (and shrinks again).
 */
import fc from 'fast-check'

function parseSeed (text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined
  const seed = Number(text.trim())
  if (!Number.isSafeInteger(seed)) throw new Error(`TASKBROKER_TEST_SEED must be an integer (fast-check's seed), got ${JSON.stringify(text)}`)
  return seed
}

/** The seed every property runs with, when TASKBROKER_TEST_SEED is set. */
export const TEST_SEED: number | undefined = parseSeed(process.env.TASKBROKER_TEST_SEED)

/** fast-check parameters with the seed of TASKBROKER_TEST_SEED, when set (it wins over `params.seed`). */
export function withTestSeed<Ts> (params: fc.Parameters<Ts> = {}): fc.Parameters<Ts> {
  return TEST_SEED === undefined ? params : { ...params, seed: TEST_SEED }
}

/** The seed in a fast-check failure report ("… { seed: -160782434, path: … }"), if any. */
export function seedOf (report: string): number | undefined {
  const match = /seed: (-?\d+)/.exec(report)
  return match === null ? undefined : Number(match[1])
}

/**
 * fc.assert with TASKBROKER_TEST_SEED applied; a failure is rethrown with the seed and how to
 * replay it on its first line (fast-check's full report, counterexample included, follows).
 */
export async function assertProperty<Ts> (property: fc.IAsyncProperty<Ts> | fc.IProperty<Ts>, params: fc.Parameters<Ts> = {}): Promise<void> {
  try {
    await fc.assert(property as fc.IAsyncProperty<Ts>, withTestSeed(params))
  } catch (error) {
    const report = error instanceof Error ? error.message : String(error)
    throw new Error(`${replayHint(report)}\n${report}`, { cause: error })
  }
}

/** "seed S (replay: TASKBROKER_TEST_SEED=S)" for a failure report; what to say when it has none. */
export function replayHint (report: string): string {
  const seed = seedOf(report)
  return seed === undefined ? 'property failed (no seed in the report)' : `seed ${seed} (replay: TASKBROKER_TEST_SEED=${seed})`
}
