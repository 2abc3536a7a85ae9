#!/usr/bin/env bash
# RSS after a spike (issue 16 item 9c): a fresh pushbridge ($BIN) on benches/pushbridge-bench.yaml, CLIENTS SSE
# clients connected at once (events flowing), all disconnected, then RSS read from /proc after WAIT seconds.
# Prints idle (before the spike), peak (during it) and after (WAIT s after the disconnect), in MiB. Loopback only;
# kills only the processes it started.
#
#   BIN=target/release/pushbridge bash benches/rss-return.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${BIN:-target/release/pushbridge} LOAD=${LOAD:-target/release/examples/load}
CLIENTS=${CLIENTS:-10000} WAIT=${WAIT:-30} PORT=${PORT:-28080} UP=${UP:-28081} ADMIN=${ADMIN:-28090}
ulimit -n "$(ulimit -Hn)"
CONFIG=$(mktemp --suffix .yaml)
sed -e "s/28080/$PORT/; s/28081/$UP/; s/28090/$ADMIN/" benches/pushbridge-bench.yaml >"$CONFIG"

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$CONFIG"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

"$LOAD" --upstream "127.0.0.1:$UP" --rate 10 --size 200 --serve-for 30m 2>/dev/null &
wait_port "$UP"
"$BIN" run -c "$CONFIG" >/dev/null 2>&1 &
pid=$!
wait_port "$PORT"
"$LOAD" --target http://127.0.0.1:$PORT/events/bench --clients 1 --duration 1s --settle 0s >/dev/null 2>&1
idle=$(rss_mib "$pid")
# The spike: every client connected, 5 s of events, then all disconnected (the load tool exits).
"$LOAD" --target http://127.0.0.1:$PORT/events/bench --transport sse --clients "$CLIENTS" --duration 5s \
  --settle 1s --pid "$pid" --json >/tmp/rss-return-load.json 2>/dev/null &
load=$!
peak=$idle
while kill -0 "$load" 2>/dev/null; do
  now=$(rss_mib "$pid"); peak=$(python3 -c "print(max($peak, $now))"); sleep 0.2
done
wait "$load" || true
sleep "$WAIT"
after=$(rss_mib "$pid")
open=$(python3 -c "import urllib.request as u; print(sum(float(l.rsplit(' ', 1)[1]) for l in u.urlopen('http://127.0.0.1:$ADMIN/metrics').read().decode().splitlines() if l.startswith('pushbridge_connections_open{')))")
echo "$BIN clients=$CLIENTS idle=${idle}MiB peak=${peak}MiB after_${WAIT}s=${after}MiB (sessions still open: $open)"
