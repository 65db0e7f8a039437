/**
 * The broker's timers (long-poll waits, batcher flushes, ack timeouts, upkeep) are unref()'d so
 * they never keep a broker process alive; in a test file running an app on PGlite nothing else keeps
 * the process alive while a test awaits them. Each such file calls this once.
 */
export function keepAlive (t: { teardown: (fn: () => void) => void }): void {
  const timer = setInterval(() => {}, 1000)
  t.teardown(() => { clearInterval(timer) })
}
