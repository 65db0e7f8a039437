/**
 * The requests and answers of API v1, as types derived from the broker's own TypeBox schemas
 * (type-only imports: nothing of the server is loaded by the client).
 */
import type { Static } from 'typebox'
import type {
  BatchStatusResponseSchema, ClaimedTaskSchema, ClaimResponseSchema, ProduceResponseSchema, RequestSchemas,
  StatsResponseSchema, StatusResponseSchema, TaskSchema, TaskStateResponseSchema
} from '../http/routes/v1/schemas.js'
import type { DeadletterListResponseSchema, DeadletterSchema, RequeueResponseSchema } from '../http/routes/v1/deadletter-schemas.js'
import type {
  BatchHeartbeatResponseSchema, CancelManyResponseSchema, CancelResponseSchema, createLeaseSchemas, HeartbeatResponseSchema, ReleaseResponseSchema
} from '../http/routes/v1/lease-schemas.js'
import type { createQueueRequestSchemas, QueueChangeResponseSchema, QueueListResponseSchema } from '../http/routes/v1/queue-schemas.js'
import type { createScheduleSchemas } from '../http/routes/v1/schedule-schemas.js'

type LeaseSchemas = ReturnType<typeof createLeaseSchemas>
type QueueSchemas = ReturnType<typeof createQueueRequestSchemas>
type ScheduleSchemas = ReturnType<typeof createScheduleSchemas>

export type Task = Static<typeof TaskSchema>
/** A task to produce (`priority`: claims take higher first). */
export type TaskInput = Static<RequestSchemas['TaskInput']>
export type ProduceResult = Static<typeof ProduceResponseSchema>
/** A claimed task with its `lease`: send it back with heartbeats, reports and release. */
export type ClaimedTask = Static<typeof ClaimedTaskSchema>
export type ClaimRequest = Static<RequestSchemas['ClaimBody']>
export type ClaimResult = Static<typeof ClaimResponseSchema>
export type StatusRequest = Static<RequestSchemas['StatusBody']>
export type StatusResult = Static<typeof StatusResponseSchema>
export type BatchStatusUpdate = Static<RequestSchemas['BatchStatusBody']>['updates'][number]
export type BatchStatusResult = Static<typeof BatchStatusResponseSchema>
export type TaskState = Static<typeof TaskStateResponseSchema>
export type Stats = Static<typeof StatsResponseSchema>
export type Deadletter = Static<typeof DeadletterSchema>
export type DeadletterPage = Static<typeof DeadletterListResponseSchema>
export type RequeueResult = Static<typeof RequeueResponseSchema>
export interface DeadletterQuery { application?: string, namespace?: string, taskname?: string, limit?: number, cursor?: string }

export type HeartbeatRequest = Static<LeaseSchemas['HeartbeatBody']>
export type HeartbeatResult = Static<typeof HeartbeatResponseSchema>
export type BatchHeartbeat = Static<LeaseSchemas['BatchHeartbeatBody']>['heartbeats'][number]
export type BatchHeartbeatResult = Static<typeof BatchHeartbeatResponseSchema>
export type ReleaseRequest = Static<LeaseSchemas['ReleaseBody']>
export type ReleaseResult = Static<typeof ReleaseResponseSchema>
export type CancelResult = Static<typeof CancelResponseSchema>
export type CancelFilter = Static<LeaseSchemas['CancelManyBody']>
export type CancelManyResult = Static<typeof CancelManyResponseSchema>

export type QueueSettingsPatch = Static<QueueSchemas['ChangeBody']>
export type QueueList = Static<typeof QueueListResponseSchema>
/** One queue as GET /v1/queues lists it, with its counts and the settings that steer it. */
export type Queue = QueueList['queues'][number]
export type QueueChangeResult = Static<typeof QueueChangeResponseSchema>

export type ScheduleInput = Static<ScheduleSchemas['Spec']>
/** One schedule as the broker shows it, with its next windows and last fire. */
export type Schedule = Static<ScheduleSchemas['Schedule']>
export type ScheduleList = Static<ScheduleSchemas['ScheduleList']>
export type TriggerResult = Static<ScheduleSchemas['Trigger']>
