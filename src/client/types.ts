/**
 * The requests and answers of API v1, as types derived from the broker's own TypeBox schemas
 * (type-only imports: nothing of the server is loaded by the client). The endpoints of leases,
 * queue settings and schedules are typed here from their contracts.
 */
import type { Static } from 'typebox'
import type {
  BatchStatusResponseSchema, ClaimedTaskSchema, ClaimResponseSchema, ProduceResponseSchema, RequestSchemas,
  StatsResponseSchema, StatusResponseSchema, TaskSchema, TaskStateResponseSchema
} from '../http/routes/v1/schemas.js'
import type { DeadletterListResponseSchema, DeadletterSchema, RequeueResponseSchema } from '../http/routes/v1/deadletter-schemas.js'

export type Task = Static<typeof TaskSchema>
/** A task to produce; `priority` (higher first) where the broker supports it. */
export type TaskInput = Static<RequestSchemas['TaskInput']> & { priority?: number }
export type ProduceResult = Static<typeof ProduceResponseSchema>
/** A claimed task; `lease` where the broker hands out leases (send it back with reports). */
export type ClaimedTask = Static<typeof ClaimedTaskSchema> & { lease?: string }
export type ClaimRequest = Static<RequestSchemas['ClaimBody']>
export type ClaimResult = Omit<Static<typeof ClaimResponseSchema>, 'tasks'> & { tasks: ClaimedTask[] }
export type StatusRequest = Static<RequestSchemas['StatusBody']> & { lease?: string }
export type StatusResult = Omit<Static<typeof StatusResponseSchema>, 'task'> & { task: ClaimedTask | null, cancel_requested?: boolean }
export type BatchStatusUpdate = Static<RequestSchemas['BatchStatusBody']>['updates'][number] & { lease?: string }
export type BatchStatusResult = Static<typeof BatchStatusResponseSchema> & { stale?: string[] }
export type TaskState = Static<typeof TaskStateResponseSchema>
export type Stats = Static<typeof StatsResponseSchema>
export type Deadletter = Static<typeof DeadletterSchema>
export type DeadletterPage = Static<typeof DeadletterListResponseSchema>
export type RequeueResult = Static<typeof RequeueResponseSchema>
export interface DeadletterQuery { application?: string, namespace?: string, taskname?: string, limit?: number, cursor?: string }

export interface HeartbeatRequest { extend_sec?: number, progress?: unknown, lease?: string }
export interface HeartbeatResult { processing_deadline: string, cancel_requested: boolean }
export interface CancelFilter { application: string, namespace?: string, taskname?: string }
export interface CancelResult { removed: number, requested: number }

export interface QueueFilter { application: string, namespace?: string }
export interface QueueSettingsPatch extends QueueFilter {
  paused?: boolean
  max_processing?: number | null
  rate_limit?: { per_sec: number, burst?: number } | null
}
/** One queue as GET /v1/queues lists it (fields beyond these are passed through). */
export type Queue = QueueFilter & Record<string, unknown>

export interface ScheduleInput {
  cron?: string
  every_sec?: number
  timezone?: string
  task: TaskInput
  overlap?: unknown
  catch_up?: unknown
  paused?: boolean
}
/** One schedule as the broker shows it (fields beyond these are passed through). */
export type Schedule = ScheduleInput & { name: string } & Record<string, unknown>
