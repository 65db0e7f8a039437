/** The two ways configuration stops the broker at start (server.ts exits 78 on either). */

/** A setting's value is wrong: the message names the variable, the rule it broke and the value. */
export class ConfigError extends Error {
  readonly code = 'TASKBROKER_CONFIG_INVALID'
  constructor (readonly variable: string, message: string) {
    super(`Invalid configuration: ${variable} ${message}`)
    this.name = 'ConfigError'
  }
}

/**
 * The broker cannot start as it is set up, for a reason that is not one variable's value (its data
 * directory is in use, the database is not migrated): server.ts prints the message and exits 78.
 */
export class StartupRefusedError extends Error {
  readonly code = 'TASKBROKER_STARTUP_REFUSED'
  override name = 'StartupRefusedError'
}
