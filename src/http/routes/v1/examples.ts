/**
 * Request examples for the API docs, chosen so that trying them in order on /docs works:
 * produce a task, claim it, report it (test/openapi.test.ts sends them in this order). Without
 * them Swagger UI builds examples from the schema bounds, e.g. a task delayed for a year.
 */
export const EXAMPLE_TASK_ID = 'example-receipt-42'

export const EXAMPLES = {
  produce: {
    tasks: [{
      id: EXAMPLE_TASK_ID,
      application: 'shop',
      namespace: 'emails',
      taskname: 'send_receipt',
      parameters: { order: 42 },
      retry_state: { max_attempts: 3, on_attempts_exceeded: 'deadletter' }
    }]
  },
  claim: { application: 'shop', namespace: 'emails', limit: 1, wait_ms: 1000 },
  status: { status: 'complete', fetch_next: { application: 'shop', namespace: 'emails' } },
  batchStatus: { updates: [{ id: EXAMPLE_TASK_ID, status: 'retry', delay_on_retry: 10 }, { id: 'no-such-task', status: 'failure' }] }
} as const
