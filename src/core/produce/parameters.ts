/** TASKBROKER_PARAMETERS_MAX_BYTES: a task's parameters as JSON may take at most this many bytes. */

/**
 * The first task whose `parameters` take more than `maxBytes` bytes as JSON, as a validation
 * message naming the field, or null.
 */
export function parametersTooLarge (tasks: ReadonlyArray<{ parameters?: unknown }>, maxBytes: number): string | null {
  for (let i = 0; i < tasks.length; i++) {
    const parameters = tasks[i]?.parameters
    if (parameters === undefined) continue
    const text = JSON.stringify(parameters)
    // Characters are at most 3 bytes of UTF-8 per UTF-16 unit: most parameters need no count.
    if (text.length * 3 <= maxBytes) continue
    const bytes = Buffer.byteLength(text, 'utf8')
    if (bytes > maxBytes) return `body/tasks/${i}/parameters is ${bytes} bytes as JSON, more than the ${maxBytes} allowed (TASKBROKER_PARAMETERS_MAX_BYTES)`
  }
  return null
}

/**
 * Whether a request of `receivedBytes` bytes of JSON may hold parameters over `maxBytes`: one at
 * most half the limit cannot (re-serialised JSON is never twice as long as the JSON it was parsed
 * from), so most requests skip the measuring. Unknown size: it may.
 */
export function mayHoldTooLargeParameters (receivedBytes: number | undefined, maxBytes: number): boolean {
  return !(receivedBytes !== undefined && receivedBytes * 2 <= maxBytes)
}
