#!/usr/bin/env bash
# Time from `npm start` to /readyz 200, as a user sees it, and the broker's own startupMs (from its
# ready log line). Usage: scripts/time-to-ready.sh [port] [data dir]  (defaults 18091, ./.taskbroker).
# The broker is stopped again (SIGTERM to the pid in its data directory's lock file).
set -u
cd "$(dirname "$0")/.."
port=${1:-18091}
data=${2:-./.taskbroker}
log=$(mktemp)
start=$(date +%s%N)
PORT=$port TASKBROKER_DATA_DIR=$data npm start > "$log" 2>&1 &
npm_pid=$!
until curl -sf "http://127.0.0.1:$port/readyz" > /dev/null; do
  if ! kill -0 "$npm_pid" 2>/dev/null; then echo "npm start exited before it was ready:"; cat "$log"; exit 1; fi
  sleep 0.05
done
end=$(date +%s%N)
echo "npm start to /readyz 200: $(( (end - start) / 1000000 )) ms; broker $(grep -o '"startupMs":[0-9]*' "$log")$(grep -q 'compiling src/' "$log" && echo ' (compiled first)')"
broker=$(node -e "console.log(JSON.parse(require('fs').readFileSync(process.argv[1] + '/taskbroker.lock', 'utf8')).pid)" "$data")
kill -TERM "$broker"
wait "$npm_pid" 2>/dev/null
rm -f "$log"
