#!/usr/bin/env bash
# A CPU profile of pushbridge's per-delivery path (issue 17 item 2, docs/BENCHMARKS.md): the release binary under
# CLIENTS subscribers × RATE events/s of SIZE bytes (the matrix's `target` rows), `perf record` attached to the
# server for PERF_SECONDS in the middle of the load tool's window. Prints the load tool's JSON line, then the
# top of `perf report` (self time by symbol) to stdout; the data stays in OUT.
#
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --bin pushbridge --example load
#   KIND=ws bash benches/profile-delivery.sh
#
# Loopback only, the matrix's fixed ports (pushbridge 28080, admin 28090, source 28081); kills only what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KIND=${KIND:-sse}
CLIENTS=${CLIENTS:-1000}
RATE=${RATE:-200}
SIZE=${SIZE:-200}
DURATION=${DURATION:-12s}
PERF_SECONDS=${PERF_SECONDS:-6}
PERF_ARGS=${PERF_ARGS:-"-F 999 --call-graph dwarf,16384"}
PUSHBRIDGE=${PUSHBRIDGE:-target/release/pushbridge}
LOAD=target/release/examples/load
OUT=${OUT:-target/perf-$KIND.data}
LOGS=target/bench-matrix-logs
mkdir -p "$LOGS"
ulimit -n "$(ulimit -Hn)"

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() {
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "profile: nothing listening on $1" >&2; exit 1
}
for port in 28080 28081 28090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "profile: port $port busy" >&2; exit 1; fi
done

"$LOAD" --upstream 127.0.0.1:28081 --rate "$RATE" --size "$SIZE" --serve-for 30m 2>/dev/null &
wait_port 28081
"$PUSHBRIDGE" run -c benches/pushbridge-bench.yaml >>"$LOGS/pushbridge.log" 2>&1 &
server=$!
wait_port 28080
target=http://127.0.0.1:28080/events/bench
"$LOAD" --target "$target" --transport sse --clients 1 --duration 1s --settle 0s >/dev/null 2>&1 || true
"$LOAD" --target "$target" --transport "$KIND" --clients "$CLIENTS" --duration "$DURATION" --settle 2s \
  --grace 2s --pid "$server" --json 2>>"$LOGS/load.log" &
load=$!
# Connected and settled (2 s), then a few seconds into the window.
sleep $(( ${DURATION%s} / 2 ))
perf record $PERF_ARGS -p "$server" -o "$OUT" -- sleep "$PERF_SECONDS" 2>/dev/null
wait "$load"
perf report -i "$OUT" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -60
