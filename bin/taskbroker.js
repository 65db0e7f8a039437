#!/usr/bin/env node
// The `taskbroker` command of the installed package: runs the compiled broker, configured by
// environment variables (or TASKBROKER_CONFIG_FILE) as the README's Configuration section says.
import '../dist/src/server.js'
