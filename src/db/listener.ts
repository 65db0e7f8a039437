/** The application_name of a broker's LISTEN session: how brokers on one database count each other. */
export const LISTENER_APPLICATION_NAME = 'taskbroker-listen'
