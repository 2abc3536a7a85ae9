#!/usr/bin/env bash
# Whole-process runs for docs/BENCHMARKS.md: a fresh server per run (release pushbridge with
# benches/pushbridge-bench.yaml fed by the load tool's SSE upstream; with SERVERS="pushbridge nchan" also Nginx +
# Nchan from benches/nchan.conf.in fed by the load tool's publisher), then the load tool's clients; servers
# alternate run by run. One JSON line per run in $OUT, medians printed at the end. Loopback only; kills only the
# processes it started.
#
#   bash benches/load.sh                                   # defaults below
#   RUNS=1 CLIENTS="1000" TRANSPORTS="sse" bash benches/load.sh
#   SERVERS="pushbridge nchan" bash benches/load.sh        # needs: apt-get install -y nginx libnginx-mod-nchan
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-"1000 5000"}
TRANSPORTS=${TRANSPORTS:-"sse ws"}   # transports that receive RATE events/s
HELD=${HELD:-1}                      # 1: also hold CLIENTS long-polls on a silent upstream
HELD_DURATION=${HELD_DURATION:-3s}
SERVERS=${SERVERS:-pushbridge}
RATE=${RATE:-10}
SIZE=${SIZE:-200}
DURATION=${DURATION:-15s}
OUT=${OUT:-target/bench-load.jsonl}
CONFIG=benches/pushbridge-bench.yaml
LOAD=target/release/examples/load
PUSHBRIDGE=target/release/pushbridge

ulimit -n "$(ulimit -Hn)"   # many sockets: the hard limit (raise it first if it is low)
cargo build --release --bin pushbridge --example load
: > "$OUT"

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() { # until something accepts on 127.0.0.1:$1
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listening on $1" >&2; return 1
}

start_upstream() { # rate
  "$LOAD" --upstream 127.0.0.1:28081 --rate "$1" --size "$SIZE" --serve-for 30m 2>/dev/null &
  UPSTREAM=$!; wait_port 28081
}

one_run() { # server transport clients duration
  local server=$1 transport=$2 clients=$3 duration=$4 pid target publisher="" dir=""
  if [[ $server == nchan ]]; then
    dir=$(mktemp -d)
    sed -e "s|{{DIR}}|$dir|g" -e "s|{{WORKERS}}|1|g" benches/nchan.conf.in > "$dir/nginx.conf"
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    local server_pid=$!; wait_port 28180
    pid=$(pgrep -P "$server_pid")   # the one worker
    target=http://127.0.0.1:28180/sub/bench
    if [[ $RATE_NOW != 0 ]]; then
      "$LOAD" --publish http://127.0.0.1:28180/pub --rate "$RATE_NOW" --size "$SIZE" --serve-for 10m 2>/dev/null &
      publisher=$!
    fi
  else
    "$PUSHBRIDGE" run -c "$CONFIG" >/dev/null 2>&1 &
    local server_pid=$!; wait_port 28080
    pid=$server_pid
    target=http://127.0.0.1:28080/events/bench
  fi
  # One client first, so the stream (and pushbridge's upstream connection) exists before the "before" RSS sample.
  "$LOAD" --target "$target" --transport sse --clients 1 --duration 1s --settle 0s >/dev/null 2>&1
  "$LOAD" --target "$target" --transport "$transport" --clients "$clients" --duration "$duration" \
    --settle 2s --pid "$pid" --json | sed "s/^{/{\"server\":\"$server\",/" | tee -a "$OUT"
  [[ -z $publisher ]] || { kill "$publisher"; wait "$publisher" 2>/dev/null || true; }
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  [[ -z ${dir:-} ]] || rm -rf "$dir"
}

RATE_NOW=$RATE
start_upstream "$RATE"
for transport in $TRANSPORTS; do
  for clients in $CLIENTS; do
    for _ in $(seq "$RUNS"); do
      for server in $SERVERS; do one_run "$server" "$transport" "$clients" "$DURATION"; done
    done
  done
done
kill "$UPSTREAM"; wait "$UPSTREAM" 2>/dev/null || true

if [[ "$HELD" == 1 ]]; then
  # Held long-polls: a source that sends nothing, so every poll stays held for the whole window.
  RATE_NOW=0
  start_upstream 0
  for clients in $CLIENTS; do
    for _ in $(seq "$RUNS"); do
      for server in $SERVERS; do one_run "$server" long-poll "$clients" "$HELD_DURATION"; done
    done
  done
  kill "$UPSTREAM"; wait "$UPSTREAM" 2>/dev/null || true
fi

python3 - "$OUT" "$RATE" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    held = r["events"] == 0 and r["transport"] == "long-poll"
    runs[(r.get("server", "pushbridge"), "held long-poll" if held else r["transport"], r["clients"])].append(r)
med = lambda rs, f: statistics.median(f(r) for r in rs)
print(f"\nmedians of each group ({sys.argv[2]} events/s upstream):")
print("| server | transport | clients | runs | connected | events/s | p50 ms | p90 ms | p99 ms | errors | KiB/conn | server CPU % |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for (s, t, c), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
    print(f"| {s} | {t} | {c} | {len(rs)} | {med(rs, lambda r: r['connected']):.0f} | {med(rs, lambda r: r['events_per_second']):.0f} "
          f"| {med(rs, lambda r: r['latency_ms']['p50']):.2f} | {med(rs, lambda r: r['latency_ms']['p90']):.2f} "
          f"| {med(rs, lambda r: r['latency_ms']['p99']):.2f} | {med(rs, lambda r: r['errors']):.0f} "
          f"| {med(rs, lambda r: r['kib_per_connection'] or 0):.1f} | {med(rs, lambda r: r['target_cpu_percent'] or 0):.1f} |")
PY
