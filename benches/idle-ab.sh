#!/usr/bin/env bash
# Idle memory A/B for docs/BENCHMARKS.md: two pushbridge binaries, alternated run by run (a fresh server per run),
# each holding CLIENTS idle connections of each transport on a source that sends nothing; prints KiB/connection
# per run and the medians. Loopback only; kills only the processes it started.
#
#   cp target/release/pushbridge target/pushbridge-before   # on the old tree, then build the new one
#   A=target/pushbridge-before B=target/release/pushbridge bash benches/idle-ab.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

A=${A:?the "before" binary} B=${B:-target/release/pushbridge}
RUNS=${RUNS:-3} CLIENTS=${CLIENTS:-5000} TRANSPORTS=${TRANSPORTS:-"sse long-poll ws"}
LOAD=target/release/examples/load CONFIG=benches/pushbridge-bench.yaml
ulimit -n "$(ulimit -Hn)"

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

"$LOAD" --upstream 127.0.0.1:28081 --rate 0 --serve-for 30m 2>/dev/null &
wait_port 28081
declare -A kib
for transport in $TRANSPORTS; do
  for run in $(seq "$RUNS"); do
    for side in A B; do
      "${!side}" run -c "$CONFIG" >/dev/null 2>&1 &
      pid=$!; wait_port 28080
      "$LOAD" --target http://127.0.0.1:28080/events/bench --transport sse --clients 1 --duration 1s --settle 0s >/dev/null 2>&1
      k=$("$LOAD" --target http://127.0.0.1:28080/events/bench --transport "$transport" --clients "$CLIENTS" \
            --duration 2s --settle 2s --pid "$pid" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["kib_per_connection"])')
      echo "$transport run $run $side ${!side}: $k KiB/connection"
      kib[$transport,$side]+="$k "
      kill "$pid"; wait "$pid" 2>/dev/null || true
    done
  done
done
for transport in $TRANSPORTS; do
  for side in A B; do
    echo "median $transport $side: $(python3 -c 'import statistics,sys; print(round(statistics.median(map(float, sys.argv[1:])), 1))' ${kib[$transport,$side]})"
  done
done
