#!/usr/bin/env bash
# Issue 18's publish load test (docs/BENCHMARKS.md, "Publishing"): RATE publishes/s (one POST per event, from
# PUBLISHERS kept-alive connections sharing the rate, each numbering its own events; a late tick's post is sent, not
# skipped) while CLIENTS SSE subscribers read the stream for DURATION; every event must be
# delivered to every subscriber once (missing/duplicated from the publisher's sequence log), and the publisher's
# round-trip percentiles are reported — pushbridge's publish listener next to Nginx + Nchan's `POST /pub` in the same
# invocation, the servers alternating run by run, RUNS runs each. Appends one JSON line per run to OUT and prints a
# table. Loopback only; kills only the processes it started. Build first (cargo build --release --bin pushbridge
# --example load), then run it under the cargo lock so no build runs beside the measurement.
#
#   bash benches/publish-load.sh                      # RUNS=3, 1000 clients, 1000/s from 8 publishers, 10s
#   RUNS=1 CLIENTS=200 DURATION=5s bash benches/publish-load.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-1000}
RATE=${RATE:-1000}
PUBLISHERS=${PUBLISHERS:-8}
SIZE=${SIZE:-200}
DURATION=${DURATION:-10s}
GRACE=${GRACE:-2s}
SERVERS=${SERVERS:-"pushbridge nchan"}
NCHAN_WORKERS=${NCHAN_WORKERS:-2}
PUSHBRIDGE=${PUSHBRIDGE:-target/release/pushbridge}
LOAD=target/release/examples/load
OUT=${OUT:-target/bench-publish.jsonl}
LOGS=target/bench-publish-logs
SEQ_LOG=$LOGS/seq.log
[[ -x $PUSHBRIDGE && -x $LOAD ]] || { echo "publish-load: build first: cargo build --release --bin pushbridge --example load" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
mkdir -p "$LOGS" "$(dirname "$OUT")"
INVOCATION=$(date -u +%Y%m%dT%H%M%SZ)
echo "publish-load: $INVOCATION, JSON lines appended to $OUT" >&2

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { # PORT PID
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "publish-load: pid $2 exited (see $LOGS)" >&2; exit 1; }
    sleep 0.1
  done
  echo "publish-load: nothing listening on $1" >&2; exit 1
}
stop() { for pid in "$@"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }

one_run() { # SERVER RUN
  local server=$1 dir="" server_pid pids target publish
  : > "$SEQ_LOG"
  if [[ $server == nchan ]]; then
    dir=$(mktemp -d)
    sed -e "s|{{DIR}}|$dir|g" -e "s|{{WORKERS}}|$NCHAN_WORKERS|g" benches/nchan.conf.in > "$dir/nginx.conf"
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    server_pid=$!; wait_port 28180 "$server_pid"
    for _ in $(seq 50); do (( $(pgrep -c -P "$server_pid" || true) >= NCHAN_WORKERS )) && break; sleep 0.1; done
    pids=$(pgrep -P "$server_pid" | paste -sd,)
    target=http://127.0.0.1:28180/sub/bench publish=http://127.0.0.1:28180/pub
  else
    "$PUSHBRIDGE" run -c benches/pushbridge-bench-publish.yaml >>"$LOGS/pushbridge.log" 2>&1 &
    server_pid=$!; wait_port 28091 "$server_pid"; wait_port 28080 "$server_pid"
    pids=$server_pid
    target=http://127.0.0.1:28080/events/bench publish=http://127.0.0.1:28091/events/bench
  fi
  "$LOAD" --target "$target" --transport sse --clients "$CLIENTS" --duration "$DURATION" --settle 2s \
    --grace "$GRACE" --pid "$pids" --seq-log "$SEQ_LOG" --publish "$publish" --rate "$RATE" --publishers "$PUBLISHERS" --size "$SIZE" \
    --json 2>>"$LOGS/load.log" \
    | sed "s/^{/{\"invocation\":\"$INVOCATION\",\"server\":\"$server\",\"run\":$2,\"rate\":$RATE,\"publishers\":$PUBLISHERS,/" \
    | tee -a "$OUT" | cut -c1-160 >&2
  stop "$server_pid"
  [[ -z $dir ]] || rm -rf "$dir"
}

for run in $(seq "$RUNS"); do
  for server in $SERVERS; do
    echo "publish-load: $server run $run/$RUNS ($CLIENTS SSE clients, $RATE publishes/s from $PUBLISHERS publishers, $DURATION)" >&2
    one_run "$server" "$run"
  done
done

python3 - "$OUT" "$INVOCATION" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r.get("invocation") == sys.argv[2]]
print(f"| server | runs | publish p50 ms | publish p99 ms | publish max ms | delivery p99 ms | published/s | missing | duplicated | failed posts | server CPU % |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for server in sorted({r["server"] for r in rows}):
    rs = [r for r in rows if r["server"] == server]
    med = lambda f: statistics.median(f(r) for r in rs)
    print(f"| {server} | {len(rs)} | {med(lambda r: r['publish_latency_ms']['p50']):.2f} | "
          f"{med(lambda r: r['publish_latency_ms']['p99']):.2f} | {med(lambda r: r['publish_latency_ms']['max']):.2f} | "
          f"{med(lambda r: r['latency_ms']['p99']):.1f} | {med(lambda r: r['published_per_second']):.0f} | "
          f"{sum(r['missing'] for r in rs)} | {sum(r['duplicated'] for r in rs)} | "
          f"{sum(r['publish_failures'] or 0 for r in rs)} | {med(lambda r: r['target_cpu_percent'] or 0):.0f} |")
PY
