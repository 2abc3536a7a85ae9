#!/usr/bin/env bash
# Idle memory A/B for docs/BENCHMARKS.md: two pushbridge binaries, alternated run by run (a fresh server per run),
# each holding CLIENTS idle connections of each transport on a source that sends nothing; prints KiB/connection
# per run and the medians. Loopback only; kills only the processes it started. TRANSPORTS may also name tls (SSE
# over HTTP/1.1 + TLS, benches/pushbridge-bench-tls.yaml) and h2 (SSE streams, H2_STREAMS per h2c connection; KiB
# per stream). The kernel's socket buffers are not in the RSS; SS=1 prints them too (ss -m, KiB per connection).
#
#   cp target/release/pushbridge target/pushbridge-before   # on the old tree, then build the new one
#   A=target/pushbridge-before B=target/release/pushbridge bash benches/idle-ab.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

A=${A:?the "before" binary} B=${B:-target/release/pushbridge}
RUNS=${RUNS:-3} CLIENTS=${CLIENTS:-5000} TRANSPORTS=${TRANSPORTS:-"sse long-poll ws"}
LOAD=target/release/examples/load CONFIG=benches/pushbridge-bench.yaml H2_STREAMS=${H2_STREAMS:-100}
ulimit -n "$(ulimit -Hn)"
export PUSHBRIDGE_BENCH_TLS=$PWD/target/bench-tls
"$LOAD" --write-cert "$PUSHBRIDGE_BENCH_TLS" >/dev/null

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

"$LOAD" --upstream 127.0.0.1:28081 --rate 0 --serve-for 30m 2>/dev/null &
wait_port 28081
declare -A kib
for transport in $TRANSPORTS; do
  for run in $(seq "$RUNS"); do
    for side in A B; do
      config=$CONFIG port=28080 scheme=http kind=$transport flags=() warm=()
      case $transport in
        tls) config=benches/pushbridge-bench-tls.yaml port=28443 scheme=https kind=sse
             flags=(--tls --ca "$PUSHBRIDGE_BENCH_TLS/cert.pem") warm=("${flags[@]}") ;;
        h2) kind=sse flags=(--h2 --streams-per-conn "$H2_STREAMS") ;;
      esac
      "${!side}" run -c "$config" >/dev/null 2>&1 &
      pid=$!; wait_port "$port"
      target=$scheme://127.0.0.1:$port/events/bench
      "$LOAD" --target "$target" --transport sse "${warm[@]}" --clients 1 --duration 1s --settle 0s >/dev/null 2>&1
      ss_job=""
      if [[ ${SS:-0} == 1 ]]; then   # sampled while the clients are connected (they settle 2 s, then idle 2 s)
        ( sleep 3; ss -tmnH state established "( sport = :$port )" | python3 benches/skmem.py ) &
        ss_job=$!
      fi
      k=$("$LOAD" --target "$target" --transport "$kind" "${flags[@]}" --clients "$CLIENTS" \
            --duration 2s --settle 2s --pid "$pid" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["kib_per_connection"])')
      [[ -z $ss_job ]] || wait "$ss_job"
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
