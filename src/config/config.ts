/**
 * The configuration's entrance: the `Config` type, its parts, and the functions the rest of the
 * broker uses. Settings are declared in settings.ts, parsed in load.ts, checked against each other
 * in rules.ts.
 */
import type { ConfigOf } from './setting.js'
import { schemaOf } from './load.js'
import { SETTINGS } from './settings.js'

/** The whole configuration, in groups; its fields and types come from the table in settings.ts. */
export type Config = ConfigOf<typeof SETTINGS>
export type DeliveryMode = Config['broker']['deliveryMode']
export type StatusAck = Config['status']['ack']
/** Bounds on connections and on receiving requests (Node's HTTP server and src/http/plugins/transport.ts). */
export type HttpLimits = Config['http']
/** Bounds on what one request may carry (validated by the route schemas, built from these). */
export type Limits = Config['limits']
export type PushConfig = Config['push']

/** Every variable with its schema (default, bounds, meaning), flat as the environment has them. */
export const ConfigSchema = schemaOf(SETTINGS)

export { SETTINGS } from './settings.js'
export { loadConfig } from './load.js'
export { ConfigError, StartupRefusedError } from './errors.js'
export { closestSetting, configWarnings } from './names.js'
export { exposureWarning, isLoopbackHost } from './exposure.js'
