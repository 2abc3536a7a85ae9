#!/usr/bin/env bash
# Issue 9's benchmark matrix in one command (docs/BENCHMARKS.md, "Issue 9 matrix"): pushbridge against Nginx +
# Nchan on this machine, a fresh server process per run, the servers alternating run by run, medians of RUNS.
# Installs Nchan if missing, raises the open-files limit to the hard limit, builds the release binary and the
# load tool, runs the scenarios, appends one JSON line per run to OUT and prints one markdown table per scenario.
# Loopback only; kills only the processes it started.
#
#   bash benches/matrix.sh                                          # everything, RUNS=3
#   RUNS=1 DURATION=5s SCENARIOS="cpu" CPU_CLIENTS=200 bash benches/matrix.sh
#   PUSHBRIDGE=target/pushbridge-before SERVERS=pushbridge bash benches/matrix.sh   # any binary
#
# Scenarios (SCENARIOS, any subset, in this order):
#   idle      IDLE_CLIENTS idle connections per kind on a silent source → KiB RSS per connection. Kinds
#             (IDLE_KINDS): sse, long-poll (held), ws on both servers; tls (SSE over HTTP/1.1 + rustls) and h2 (SSE
#             streams, H2_STREAMS per prior-knowledge h2c connection) on pushbridge only.
#   cpu       CPU_CLIENTS subscribers × RATE events/s of SIZE bytes, SSE and WebSocket (CPU_TRANSPORTS).
#   overload  SSE subscribers at each of OVERLOAD_CLIENTS × RATE events/s.
#   scale     pushbridge only: idle SSE connections at each of SCALE_CLIENTS → KiB per connection.
#   target    issue 17's rows at RATE events/s: 1,000 SSE and 1,000 WebSocket, 10,000 and 19,000 SSE, 100 SSE
#             (TARGET_ROWS, "kind:clients" pairs).
#   deflate   WebSocket permessage-deflate: pushbridge, Nchan and Pushpin, clients with and without the extension
#             (DEFLATE_* knobs, in the scenario's block below; not in the default SCENARIOS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-"idle cpu overload scale"}
DURATION=${DURATION:-10s}          # measurement window of the cpu and overload runs
GRACE=${GRACE:-2s}                 # events stamped in the window's last GRACE are not owed (see the load tool)
IDLE_DURATION=${IDLE_DURATION:-2s}
OUT=${OUT:-target/bench-matrix.jsonl}
SERVERS=${SERVERS:-"pushbridge nchan"}
PUSHBRIDGE=${PUSHBRIDGE:-target/release/pushbridge}
RATE=${RATE:-200}
SIZE=${SIZE:-200}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
IDLE_KINDS=${IDLE_KINDS:-"sse long-poll ws tls h2"}
H2_STREAMS=${H2_STREAMS:-100}
CPU_CLIENTS=${CPU_CLIENTS:-1000}
CPU_TRANSPORTS=${CPU_TRANSPORTS:-"sse ws"}
OVERLOAD_CLIENTS=${OVERLOAD_CLIENTS:-"1000 5000 10000 15000"}
SCALE_CLIENTS=${SCALE_CLIENTS:-"1000 5000 10000 19000"}
TARGET_ROWS=${TARGET_ROWS:-"sse:1000 ws:1000 sse:10000 sse:19000 sse:100"}
NCHAN_WORKERS=${NCHAN_WORKERS:-2}
CONFIG=benches/pushbridge-bench.yaml
TLS_CONFIG=benches/pushbridge-bench-tls.yaml
LOAD=target/release/examples/load
LOGS=target/bench-matrix-logs
SEQ_LOG=$LOGS/seq.log
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

if [[ " $SCENARIOS " == *" deflate "* && " ${DEFLATE_SERVERS:-} " == *" pushpin "* ]] && ! command -v pushpin >/dev/null; then
  echo "matrix: installing Pushpin (and Condure)" >&2
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get install -y pushpin condure >&2
fi
if [[ " $SCENARIOS " == *" deflate "* && ! -d tests/differential/node_modules/ws ]]; then
  (cd tests/differential && npm ci --no-audit --no-fund >&2)
fi
if [[ " $SERVERS " == *" nchan "* && ! -f $NCHAN_MODULE ]]; then
  echo "matrix: installing nginx and Nchan" >&2
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get install -y nginx libnginx-mod-nchan >&2
fi
ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) >= 20000 )) || echo "matrix: open-files limit $(ulimit -n); runs above it will not connect" >&2
if [[ $PUSHBRIDGE == target/release/pushbridge ]]; then
  cargo build --release --bin pushbridge --example load
else
  cargo build --release --example load
fi
mkdir -p "$LOGS" "$(dirname "$OUT")"
export PUSHBRIDGE_BENCH_TLS=$PWD/target/bench-tls
"$LOAD" --write-cert "$PUSHBRIDGE_BENCH_TLS"
INVOCATION=$(date -u +%Y%m%dT%H%M%SZ)
echo "matrix: $INVOCATION, pushbridge $PUSHBRIDGE, JSON lines appended to $OUT, server logs in $LOGS" >&2

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() { # PORT [PID]: until something accepts on 127.0.0.1:PORT (while PID lives), at most 60 s
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    [[ -z ${2:-} ]] || kill -0 "$2" 2>/dev/null || { echo "matrix: pid $2 exited before listening on $1 (see $LOGS)" >&2; exit 1; }
    sleep 0.1
  done
  echo "matrix: nothing listening on $1 after 60 s" >&2; exit 1
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The fixed ports of benches/*.yaml and nchan.conf.in: another benchmark (benches/load.sh, a second matrix) using
# them would be measured instead of this run's server, so wait for them to be free, then give up.
ports_free() {
  for _ in $(seq 120); do
    local busy=""
    for port in "$@"; do port_busy "$port" && busy+=" $port"; done
    [[ -z $busy ]] && return 0
    echo "matrix: port(s)$busy in use (another benchmark?); waiting" >&2; sleep 5
  done
  echo "matrix: ports $* still in use; giving up" >&2; exit 1
}
alive() { kill -0 "$1" 2>/dev/null || { echo "matrix: $2 exited at start (see $LOGS)" >&2; exit 1; }; }
stop() { for pid in "$@"; do [[ -z $pid ]] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; done; }

# one_run SCENARIO SERVER KIND CLIENTS RATE DURATION: a fresh server (and source), one warm-up client, then the
# measured clients; KIND is sse, ws, long-poll, tls or h2 (the last two SSE).
one_run() {
  local scenario=$1 server=$2 kind=$3 clients=$4 rate=$5 duration=$6
  local server_pid source="" pids target warm=() flags=() transport=$kind dir=""
  [[ $kind == tls || $kind == h2 ]] && transport=sse
  : > "$SEQ_LOG"   # what this run's source publishes: one "seq ts" line per event
  if [[ $server == nchan ]]; then
    ports_free 28180
    dir=$(mktemp -d)
    sed -e "s|{{DIR}}|$dir|g" -e "s|{{WORKERS}}|$NCHAN_WORKERS|g" benches/nchan.conf.in > "$dir/nginx.conf"
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    server_pid=$!; wait_port 28180 "$server_pid"; alive "$server_pid" nginx
    for _ in $(seq 50); do (( $(pgrep -c -P "$server_pid" || true) >= NCHAN_WORKERS )) && break; sleep 0.1; done
    pids=$(pgrep -P "$server_pid" | paste -sd,)   # the workers
    target=http://127.0.0.1:28180/sub/bench
    if [[ $rate != 0 ]]; then
      "$LOAD" --publish http://127.0.0.1:28180/pub --rate "$rate" --size "$SIZE" --seq-log "$SEQ_LOG" \
        --serve-for 30m 2>>"$LOGS/publisher.log" &
      source=$!
    fi
  else
    ports_free 28080 28081 28090 28443
    "$LOAD" --upstream 127.0.0.1:28081 --rate "$rate" --size "$SIZE" --seq-log "$SEQ_LOG" --serve-for 30m 2>/dev/null &
    source=$!; wait_port 28081 "$source"
    local config=$CONFIG port=28080 scheme=http
    [[ $kind == tls ]] && { config=$TLS_CONFIG port=28443 scheme=https; }
    "$PUSHBRIDGE" run -c "$config" >>"$LOGS/pushbridge.log" 2>&1 &
    server_pid=$!; wait_port "$port" "$server_pid"; sleep 0.2; alive "$server_pid" "$PUSHBRIDGE"
    pids=$server_pid
    target=$scheme://127.0.0.1:$port/events/bench
  fi
  case $kind in
    tls) flags=(--tls --ca "$PUSHBRIDGE_BENCH_TLS/cert.pem") warm=("${flags[@]}") ;;
    h2) flags=(--h2 --streams-per-conn "$H2_STREAMS") ;;
  esac
  # One client first, so the stream (and pushbridge's upstream connection) exists before the "before" RSS sample.
  "$LOAD" --target "$target" --transport sse "${warm[@]}" --clients 1 --duration 1s --settle 0s >/dev/null 2>&1 || true
  "$LOAD" --target "$target" --transport "$transport" "${flags[@]}" --clients "$clients" --duration "$duration" \
    --settle 2s --grace "$GRACE" --pid "$pids" --seq-log "$SEQ_LOG" --json 2>>"$LOGS/load.log" \
    | sed "s/^{/{\"invocation\":\"$INVOCATION\",\"scenario\":\"$scenario\",\"server\":\"$server\",\"kind\":\"$kind\",\"rate\":$rate,/" \
    | tee -a "$OUT" | cut -c1-200 >&2
  stop "$source" "$server_pid"
  [[ -z $dir ]] || rm -rf "$dir"
}

# matrix SCENARIO KINDS CLIENT_COUNTS RATE DURATION SERVERS: every combination, RUNS times, servers alternating.
matrix() {
  local scenario=$1 kinds=$2 counts=$3 rate=$4 duration=$5 servers=$6
  for kind in $kinds; do
    for clients in $counts; do
      for run in $(seq "$RUNS"); do
        for server in $servers; do
          [[ $server == nchan && ($kind == tls || $kind == h2) ]] && continue
          echo "matrix: $scenario $server $kind $clients clients, run $run/$RUNS" >&2
          one_run "$scenario" "$server" "$kind" "$clients" "$rate" "$duration"
        done
      done
    done
  done
}

# --- Scenario deflate (issue 20; docs/BENCHMARKS.md, "WebSocket permessage-deflate") ---------------------------
# DEFLATE_CLIENTS WebSocket subscribers × DEFLATE_RATE events/s of ~DEFLATE_SIZE-byte JSON (the load tool's
# --payload json), every client the load tool's own WebSocket client (--ws-offer) so both sides read alike: kind
# ws-off offers no extension, ws-deflate offers DEFLATE_OFFER (what a browser sends) and inflates. Servers
# (DEFLATE_SERVERS): pushbridge with benches/pushbridge-bench-deflate.yaml (compresses each event once); Nchan with
# nchan_deflate_message_for_websocket (compresses each message once); Pushpin with Condure
# (benches/pushpin.conf.in and the GRIP backend benches/pushpin-grip.py; it did not negotiate the extension here);
# node: a Node `ws` server (benches/ws-node-fanout.mjs; compresses per connection, with context takeover).
# With DEFLATE_RATE=0 the clients sit idle: memory per idle connection with and without the extension.
DEFLATE_CLIENTS=${DEFLATE_CLIENTS:-1000}
DEFLATE_RATE=${DEFLATE_RATE:-200}
DEFLATE_SIZE=${DEFLATE_SIZE:-1024}
DEFLATE_SERVERS=${DEFLATE_SERVERS:-"pushbridge nchan node"}
DEFLATE_KINDS=${DEFLATE_KINDS:-"ws-off ws-deflate"}
DEFLATE_OFFER=${DEFLATE_OFFER:-"permessage-deflate; client_max_window_bits"}

# deflate_run SERVER KIND: a fresh server (and source or publisher), one warm-up client, the measured clients.
deflate_run() {
  local server=$1 kind=$2 server_pid source="" grip="" pids target offer="" publish="" format=plain dir
  [[ $kind == ws-deflate ]] && offer=$DEFLATE_OFFER
  : > "$SEQ_LOG"
  dir=$(mktemp -d)
  case $server in
    pushbridge)
      ports_free 28080 28081 28090
      "$LOAD" --upstream 127.0.0.1:28081 --rate "$DEFLATE_RATE" --size "$DEFLATE_SIZE" --payload json \
        --seq-log "$SEQ_LOG" --serve-for 30m 2>/dev/null &
      source=$!; wait_port 28081 "$source"
      "$PUSHBRIDGE" run -c benches/pushbridge-bench-deflate.yaml >>"$LOGS/pushbridge.log" 2>&1 &
      server_pid=$!; wait_port 28080 "$server_pid"; sleep 0.2; alive "$server_pid" "$PUSHBRIDGE"
      pids=$server_pid target=http://127.0.0.1:28080/events/bench ;;
    nchan)
      ports_free 28180
      sed -e "s|{{DIR}}|$dir|g" -e "s|{{WORKERS}}|$NCHAN_WORKERS|g" \
        -e 's|nchan_publisher;|nchan_publisher; nchan_deflate_message_for_websocket on;|' \
        benches/nchan.conf.in > "$dir/nginx.conf"
      nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
      server_pid=$!; wait_port 28180 "$server_pid"; alive "$server_pid" nginx
      for _ in $(seq 50); do (( $(pgrep -c -P "$server_pid" || true) >= NCHAN_WORKERS )) && break; sleep 0.1; done
      pids=$(pgrep -P "$server_pid" | paste -sd,)
      target=http://127.0.0.1:28180/sub/bench publish=http://127.0.0.1:28180/pub ;;
    node)
      ports_free 28380 28081
      "$LOAD" --upstream 127.0.0.1:28081 --rate "$DEFLATE_RATE" --size "$DEFLATE_SIZE" --payload json \
        --seq-log "$SEQ_LOG" --serve-for 30m 2>/dev/null &
      source=$!; wait_port 28081 "$source"
      node benches/ws-node-fanout.mjs >>"$LOGS/node.log" 2>&1 &
      server_pid=$!; wait_port 28380 "$server_pid"; sleep 0.5
      pids=$server_pid target=http://127.0.0.1:28380/bench ;;
    pushpin)
      ports_free 28280 28281 28561
      mkdir -p "$dir/run" "$dir/log"
      sed -e "s|{{DIR}}|$dir|g" benches/pushpin.conf.in > "$dir/pushpin.conf"
      echo "* 127.0.0.1:28281,over_http" > "$dir/routes"
      python3 benches/pushpin-grip.py 2>>"$LOGS/pushpin-grip.log" &
      grip=$!; wait_port 28281 "$grip"
      pushpin --config "$dir/pushpin.conf" --merge-output >>"$LOGS/pushpin.log" 2>&1 &
      server_pid=$!; wait_port 28280 "$server_pid"; wait_port 28561 "$server_pid"; sleep 0.5
      pids=$(pgrep -P "$server_pid" | paste -sd,)   # condure, zurl, pushpin-proxy, pushpin-handler
      target=http://127.0.0.1:28280/bench publish=http://127.0.0.1:28561/publish/ format=pushpin ;;
  esac
  if [[ -n $publish && $DEFLATE_RATE != 0 ]]; then
    "$LOAD" --publish "$publish" --publish-format "$format" --rate "$DEFLATE_RATE" --size "$DEFLATE_SIZE" \
      --payload json --seq-log "$SEQ_LOG" --serve-for 30m 2>>"$LOGS/publisher.log" &
    source=$!
  fi
  "$LOAD" --target "$target" --transport ws --ws-offer "" --clients 1 --duration 1s --settle 0s >/dev/null 2>&1 || true
  "$LOAD" --target "$target" --transport ws --ws-offer "$offer" --clients "$DEFLATE_CLIENTS" --duration "$DURATION" \
    --settle 2s --grace "$GRACE" --pid "$pids" --seq-log "$SEQ_LOG" --json 2>>"$LOGS/load.log" \
    | sed "s/^{/{\"invocation\":\"$INVOCATION\",\"scenario\":\"deflate\",\"server\":\"$server\",\"kind\":\"$kind\",\"rate\":$DEFLATE_RATE,/" \
    | tee -a "$OUT" | cut -c1-200 >&2
  stop "$source" "$server_pid" "$grip"
  rm -rf "$dir"
}

deflate_matrix() {
  for run in $(seq "$RUNS"); do
    for server in $DEFLATE_SERVERS; do
      for kind in $DEFLATE_KINDS; do
        echo "matrix: deflate $server $kind $DEFLATE_CLIENTS clients × $DEFLATE_RATE/s, run $run/$RUNS" >&2
        deflate_run "$server" "$kind"
      done
    done
  done
}
# --- end of scenario deflate ------------------------------------------------------------------------------------

for scenario in $SCENARIOS; do
  case $scenario in
    idle) matrix idle "$IDLE_KINDS" "$IDLE_CLIENTS" 0 "$IDLE_DURATION" "$SERVERS" ;;
    cpu) matrix cpu "$CPU_TRANSPORTS" "$CPU_CLIENTS" "$RATE" "$DURATION" "$SERVERS" ;;
    overload) matrix overload sse "$OVERLOAD_CLIENTS" "$RATE" "$DURATION" "$SERVERS" ;;
    scale) matrix scale sse "$SCALE_CLIENTS" 0 "$IDLE_DURATION" pushbridge ;;
    target) for row in $TARGET_ROWS; do matrix target "${row%%:*}" "${row##*:}" "$RATE" "$DURATION" "$SERVERS"; done ;;
    deflate) deflate_matrix ;;
    *) echo "matrix: unknown scenario $scenario (idle, cpu, overload, scale, target)" >&2; exit 2 ;;
  esac
done

python3 benches/matrix-table.py "$OUT" "$INVOCATION"
