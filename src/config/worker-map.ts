/**
 * The worker map of push mode: which URL receives the tasks of which application.
 *
 * Written `application=url,application=url` in TASKBROKER_WORKER_MAP, or as a map
 * (`{application: url}`) under the same key in the config file.
 */

export interface WorkerRoute {
  readonly application: string
  /** The full URL the broker POSTs each task to (e.g. http://10.0.0.5:9000/push). */
  readonly url: string
}

/** Parses the map; throws an Error whose message says what is wrong (config.ts names the key). */
export function parseWorkerMap (text: string): WorkerRoute[] {
  const routes: WorkerRoute[] = []
  const seen = new Set<string>()
  for (const entry of text.split(',').map(s => s.trim()).filter(s => s.length > 0)) {
    const eq = entry.indexOf('=')
    if (eq < 0) throw new Error(`entry ${JSON.stringify(entry)} is not application=url`)
    const application = entry.slice(0, eq).trim()
    const url = entry.slice(eq + 1).trim()
    if (application.length === 0) throw new Error(`entry ${JSON.stringify(entry)} names no application`)
    if (seen.has(application)) throw new Error(`application ${JSON.stringify(application)} is mapped twice`)
    if (!isHttpUrl(url)) throw new Error(`the URL of ${JSON.stringify(application)} must be an http(s) URL (got ${JSON.stringify(url)})`)
    seen.add(application)
    routes.push({ application, url })
  }
  return routes
}

/** The config file may give the map as an object; it becomes the same text as the environment's. */
export function workerMapText (value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
  return Object.entries(value as Record<string, unknown>).map(([application, url]) => `${application}=${String(url)}`).join(',')
}

export function isHttpUrl (text: string): boolean {
  try {
    const url = new URL(text)
    return url.protocol === 'http:' || url.protocol === 'https:'
  } catch {
    return false
  }
}
