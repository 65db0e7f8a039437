/**
 * Schedules, the use cases: create or replace, read (with the next windows and the last fire), remove,
 * trigger, the upkeep job that fires due schedules (firing.ts), and keeping the schedules declared
 * in the runtime config file in the table (source `file`: the API cannot change those).
 */
import type { Logger } from 'pino'
import { InvalidRequestError, ScheduleFromFileError, ScheduleNotFoundError } from '../../domain/errors.js'
import type { ScheduleCounts, ScheduleRecord, ScheduleSource, ScheduleStore, ScheduleWrite } from '../../store/index.js'
import type { Metrics } from '../metrics.js'
import { parametersTooLarge } from '../produce/parameters.js'
import type { Produce, ProduceOutcome } from '../produce/produce.js'
import type { RuntimeConfigSource } from '../runtime-config.js'
import type { UpkeepJob } from '../upkeep/jobs.js'
import { createFiring, type FireCounts, type FiringSettings } from './firing.js'
import { fireId, fireInput, toDefinition, type ScheduleSpec, type ScheduleTask } from './spec.js'
import { parseTiming } from './timing.js'

/** Upcoming windows a read shows. */
export const UPCOMING = 5

export interface ScheduleView extends ScheduleRecord {
  /** The next windows from next_fire_at on (a due window not fired yet first); empty while paused. */
  upcoming: Date[]
}

export interface TriggerOutcome {
  id: string
  /** False when the id was already stored (a trigger in the same millisecond) or it was killswitched. */
  inserted: boolean
  killswitched: boolean
}

export interface Schedules {
  put (name: string, spec: ScheduleSpec): Promise<{ schedule: ScheduleView, created: boolean }>
  get (name: string): Promise<ScheduleView>
  list (): Promise<ScheduleView[]>
  remove (name: string): Promise<void>
  /** Fires now, outside the windows (overlap does not apply: the operator asked); next_fire_at stays. */
  trigger (name: string): Promise<TriggerOutcome>
  counts (): Promise<ScheduleCounts>
  /** Writes the file's schedules to the table (removing those no longer declared). */
  syncFile (): Promise<void>
  fireDue (now: Date): Promise<FireCounts>
  /** The upkeep job: syncs the file when it changed (or a sync failed), then fires. */
  readonly job: UpkeepJob
}

function toWrite (name: string, spec: ScheduleSpec, now: Date, where: string): ScheduleWrite {
  const definition = toDefinition(spec, where)
  return {
    name,
    cron: definition.cron,
    everySec: definition.everySec,
    timezone: definition.timezone,
    task: definition.task,
    overlap: definition.overlap,
    catchUp: definition.catchUp,
    paused: definition.paused,
    nextFireAt: definition.timing.next(now)
  }
}

function view (record: ScheduleRecord): ScheduleView {
  if (record.paused || record.nextFireAt === null) return { ...record, upcoming: [] }
  let upcoming: Date[] = []
  try {
    const timing = parseTiming({ cron: record.cron, every_sec: record.everySec, timezone: record.timezone })
    // From next_fire_at on: a window due but not fired yet is listed first.
    upcoming = timing.upcoming(new Date(record.nextFireAt.getTime() - 1), UPCOMING)
  } catch {
    // A stored timing this runtime cannot read: shown without upcoming windows (firing logs why).
  }
  return { ...record, upcoming }
}

export function createSchedules (deps: {
  store: ScheduleStore
  produce: Produce
  runtimeConfig: RuntimeConfigSource
  metrics: Metrics
  log: Logger
  now: () => Date
  settings: FiringSettings
  /** Whether TASKBROKER_RUNTIME_CONFIG names a file: without one the file's schedules are left alone. */
  hasFile: boolean
  /** TASKBROKER_PARAMETERS_MAX_BYTES: a schedule whose task could never be produced is refused at PUT. */
  parametersMaxBytes: number
}): Schedules {
  const { store, log, now } = deps
  const firing = createFiring({ store, produce: deps.produce, metrics: deps.metrics, log, settings: deps.settings })
  let fileDirty = deps.hasFile

  async function get (name: string): Promise<ScheduleView> {
    const record = await store.get(name)
    if (record === null) throw new ScheduleNotFoundError(name)
    return view(record)
  }

  async function syncFile (): Promise<void> {
    // A broker with no file has no say over file schedules: another broker on the database may
    // declare them (brokers sharing a database share one file).
    if (!deps.hasFile) return
    fileDirty = true
    const at = now()
    // Checked when the file was read (runtime-config.ts): a broken file never gets here.
    const writes = deps.runtimeConfig.current().schedules.map(({ name, spec }) => toWrite(name, spec, at, `schedules/${name}`))
    await store.syncFile(writes)
    fileDirty = false
  }

  deps.runtimeConfig.onChange(() => {
    syncFile().catch((error: unknown) => { log.warn({ err: error }, 'schedules: syncing the runtime config file failed; upkeep tries again') })
  })

  return {
    async put (name, spec) {
      const write = toWrite(name, spec, now(), 'body')
      const tooLarge = parametersTooLarge([spec.task], deps.parametersMaxBytes)
      if (tooLarge !== null) throw new InvalidRequestError(tooLarge.replace('body/tasks/0/', 'body/task/'))
      const existed = await store.get(name)
      if (existed?.source === 'file') throw new ScheduleFromFileError(name)
      const stored = await store.put(write, 'api' satisfies ScheduleSource)
      // Declared in the file between the read and the write.
      if (stored === null) throw new ScheduleFromFileError(name)
      return { schedule: view(stored), created: existed === null }
    },

    get,

    async list () {
      return (await store.list()).map(view)
    },

    async remove (name) {
      const outcome = await store.remove(name)
      if (outcome === 'not_found') throw new ScheduleNotFoundError(name)
      if (outcome === 'file') throw new ScheduleFromFileError(name)
    },

    async trigger (name) {
      const record = await store.get(name)
      if (record === null) throw new ScheduleNotFoundError(name)
      const at = now()
      const id = fireId(name, at)
      const outcome: ProduceOutcome = await deps.produce([fireInput(name, record.task as ScheduleTask, at)])
      const killswitched = outcome.killswitched.includes(id)
      if (killswitched) {
        deps.metrics.scheduleSkips.inc({ reason: 'killswitch' })
      } else {
        deps.metrics.scheduleFires.inc({ how: 'trigger' })
        await store.recordFire(name, at, id)
      }
      return { id, inserted: outcome.inserted > 0, killswitched }
    },

    counts: async () => await store.counts(),
    syncFile,
    fireDue: firing.fireDue,

    job: {
      name: 'schedules',
      async runOnce (at) {
        if (fileDirty) {
          // Firing goes on with the schedules as stored: the file is tried again next pass.
          await syncFile().catch((error: unknown) => { log.warn({ err: error }, 'schedules: syncing the runtime config file failed') })
        }
        const { fired, skipped, failed } = await firing.fireDue(at)
        return { counts: { fired, windows_skipped: skipped, failed } }
      }
    }
  }
}
