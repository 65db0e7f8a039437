/** Small helpers of the lease tests: claim with leases, heartbeat, read a task. */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Test } from '../helpers/requests.js'
import { task } from '../helpers/app.js'

export interface Held { id: string, lease: string, processing_deadline: string }

/** Produces tasks with these ids in `application` and claims them; returns each one's claim. */
export async function hold (t: Test, app: FastifyInstance, ids: string[], application = 'leases', extra: Record<string, unknown> = {}): Promise<Map<string, Held>> {
  const produced = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks: ids.map(id => task({ id, application, ...extra })) } })
  t.equal(produced.statusCode, 201, 'produced')
  const res = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: { application, limit: 100 } })
  t.equal(res.statusCode, 200)
  const claimed: Held[] = res.json().tasks
  t.same(claimed.map(c => c.id).sort(), [...ids].sort(), 'claimed')
  return new Map(claimed.map(c => [c.id, c]))
}

export async function post (app: FastifyInstance, url: string, payload?: Record<string, unknown>): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url, ...(payload === undefined ? {} : { payload }) })
}

/** GET /v1/tasks/{id}'s body, or null on 404. */
export async function stateOf (app: FastifyInstance, id: string): Promise<Record<string, any> | null> {
  const res = await app.inject({ method: 'GET', url: `/v1/tasks/${encodeURIComponent(id)}` })
  return res.statusCode === 404 ? null : res.json()
}

/** A well-formed lease no claim handed out. */
export const FOREIGN_LEASE = '00000000-0000-4000-8000-000000000000'
