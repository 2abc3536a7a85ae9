#!/usr/bin/env bash
# Fan-out with the Redis upstream next to the SSE upstream (docs/BENCHMARKS.md, "Redis upstream"): for each run a
# fresh release pushbridge, alternately with benches/pushbridge-bench.yaml (SSE, fed by the load tool's upstream)
# and benches/pushbridge-bench-redis.yaml (kind: redis, fed by benches/redis-publish.py through a redis-server on
# 127.0.0.1:28379), then the load tool's clients. Same rate, size and clients for both. One JSON line per run in
# $OUT, medians printed at the end. Loopback only; kills only the processes it started.
#
#   bash benches/redis-load.sh                          # defaults below
#   RUNS=1 CLIENTS=500 TRANSPORT=ws bash benches/redis-load.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-1000}
TRANSPORT=${TRANSPORT:-sse}
RATE=${RATE:-10}
SIZE=${SIZE:-200}
DURATION=${DURATION:-10s}
OUT=${OUT:-target/bench-redis-load.jsonl}
LOAD=target/release/examples/load
PUSHBRIDGE=target/release/pushbridge

ulimit -n "$(ulimit -Hn)"
cargo build --release --bin pushbridge --example load
: > "$OUT"

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listening on $1" >&2; return 1
}

"$LOAD" --upstream 127.0.0.1:28081 --rate "$RATE" --size "$SIZE" --serve-for 30m 2>/dev/null &
wait_port 28081
REDIS_DIR=$(mktemp -d)
redis-server --port 28379 --bind 127.0.0.1 --save '' --appendonly no --dir "$REDIS_DIR" >/dev/null &
wait_port 28379
python3 benches/redis-publish.py 127.0.0.1 28379 events:bench "$RATE" "$SIZE" &

one_run() { # upstream (sse|redis)
  local config=benches/pushbridge-bench.yaml
  [[ $1 == sse ]] || config=benches/pushbridge-bench-redis.yaml
  "$PUSHBRIDGE" run -c "$config" >/dev/null 2>&1 &
  local pid=$!; wait_port 28080
  "$LOAD" --target http://127.0.0.1:28080/events/bench --transport sse --clients 1 --duration 1s --settle 0s >/dev/null 2>&1
  "$LOAD" --target http://127.0.0.1:28080/events/bench --transport "$TRANSPORT" --clients "$CLIENTS" \
    --duration "$DURATION" --settle 2s --pid "$pid" --json | sed "s/^{/{\"upstream\":\"$1\",/" | tee -a "$OUT"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for _ in $(seq "$RUNS"); do
  for upstream in sse redis; do one_run "$upstream"; done
done
rm -rf "$REDIS_DIR"

python3 - "$OUT" "$RATE" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["upstream"], r["transport"], r["clients"])].append(r)
med = lambda rs, f: statistics.median(f(r) for r in rs)
print(f"\nmedians of each group ({sys.argv[2]} events/s upstream):")
print("| upstream | transport | clients | runs | connected | events/s | p50 ms | p90 ms | p99 ms | errors | KiB/conn | server CPU % |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for (u, t, c), rs in sorted(runs.items()):
    print(f"| {u} | {t} | {c} | {len(rs)} | {med(rs, lambda r: r['connected']):.0f} | {med(rs, lambda r: r['events_per_second']):.0f} "
          f"| {med(rs, lambda r: r['latency_ms']['p50']):.2f} | {med(rs, lambda r: r['latency_ms']['p90']):.2f} "
          f"| {med(rs, lambda r: r['latency_ms']['p99']):.2f} | {med(rs, lambda r: r['errors']):.0f} "
          f"| {med(rs, lambda r: r['kib_per_connection'] or 0):.1f} | {med(rs, lambda r: r['target_cpu_percent'] or 0):.1f} |")
PY
