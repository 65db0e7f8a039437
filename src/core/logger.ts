/** The broker's logger: pino at the configured level, credentials never written. */
import pino, { type Logger } from 'pino'
import type { Config } from '../config/config.js'

export function createLogger (config: { broker: Pick<Config['broker'], 'logLevel'> }): Logger {
  return pino({
    level: config.broker.logLevel,
    redact: ['req.headers.authorization', 'req.headers["taskbroker-signature"]']
  })
}
