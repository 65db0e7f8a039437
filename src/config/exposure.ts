/** The start-time warning for a broker anyone on the network may use. */

const LOOPBACK_NAMES = new Set(['localhost', '::1', '0:0:0:0:0:0:0:1'])

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost (host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return LOOPBACK_NAMES.has(h) || /^127(\.\d{1,3}){3}$/.test(h) || /^::ffff:127(\.\d{1,3}){3}$/.test(h)
}

/** The warning to log at start when anyone who can reach the port may use the API; undefined when none. */
export function exposureWarning (config: { http: { host: string }, auth: { secrets: readonly string[] } }): string | undefined {
  if (config.auth.secrets.length > 0 || isLoopbackHost(config.http.host)) return undefined
  return `request signing is off (TASKBROKER_AUTH_SECRETS unset) and HOST=${config.http.host} is not a loopback address: anyone who can reach the port can produce, claim and purge tasks`
}
