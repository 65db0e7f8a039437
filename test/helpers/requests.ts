/** Small request helpers the API tests share: produce, claim, metrics, long-poll waits, error bodies. */
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type tap from 'tap'

/** A tap test: a file's `t` or any subtest. */
export type Test = Parameters<Parameters<typeof tap.test>[0]>[0]

/** Produces `tasks` (asserting 201) and returns their ids. */
export async function produceIds (t: Test, app: FastifyInstance, tasks: Array<Record<string, unknown>>): Promise<string[]> {
  const res = await app.inject({ method: 'POST', url: '/v1/tasks', payload: { tasks } })
  t.equal(res.statusCode, 201, 'produced')
  return res.json().ids
}

/** The ids a claim with this body hands out. */
export async function claimIds (app: FastifyInstance, body: Record<string, unknown>): Promise<string[]> {
  const res = await app.inject({ method: 'POST', url: '/v1/tasks/claim', payload: body })
  return res.json().tasks.map((c: { id: string }) => c.id)
}

/** The value of an unlabelled metric from /metrics. */
export async function metric (app: FastifyInstance, name: string): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  const line = text.split('\n').find(l => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

/** Waits (bounded) until `count` claims are long-polling, so a produce after it really wakes one. */
export async function untilWaiting (t: Test, app: FastifyInstance, count: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await metric(app, 'taskbroker_claim_waiters') >= count) return
    await sleep(5)
  }
  t.fail(`${count} claim(s) never started waiting`)
}

/**
 * Every error body is exactly {statusCode, code, error, message}, JSON, with the given status and
 * code; `message`, when given, is a part of the message or a pattern it matches.
 */
export function assertError (t: Test, res: LightMyRequestResponse, statusCode: number, code: string, message?: string | RegExp): void {
  t.equal(res.statusCode, statusCode, `answers ${statusCode}`)
  t.match(res.headers['content-type'], /^application\/json/, 'the error is JSON')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], 'the error body has exactly statusCode, code, error, message')
  t.equal(body.statusCode, statusCode, 'body.statusCode matches the HTTP status')
  t.equal(body.code, code, `code is ${code}`)
  t.type(body.error, 'string')
  t.not(body.error, '', 'error names the HTTP reason')
  t.type(body.message, 'string')
  if (message !== undefined) {
    if (typeof message === 'string') t.ok(body.message.includes(message), `message ${JSON.stringify(body.message)} contains ${JSON.stringify(message)}`)
    else t.match(body.message, message)
  }
}
