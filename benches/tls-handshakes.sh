#!/usr/bin/env bash
# TLS 1.3 handshakes, pushbridge against nginx with the same certificates in the same run (docs/BENCHMARKS.md,
# "TLS handshakes"). For each certificate kind (KEYS: ecdsa = P-256, rsa = RSA-2048, both signed by one P-256 CA)
# and each of RUNS runs, each server in turn (a fresh process per run, alternated) gets COUNT full handshakes, then
# COUNT resumed ones (session tickets), from examples/handshakes.rs with CONCURRENCY connections in flight; each
# connection also carries one `GET /` and its answer, the same on both servers. Reported per mode: handshakes per
# second of server CPU time (utime + stime of every server process: the rate one core sustains) and per second of
# wall time, medians of the runs; one JSON line per measurement is appended to OUT. Loopback only, fixed ports
# 28443 (pushbridge) and 28543 (nginx); kills only the processes it started. Installs nginx if missing.
#
#   bash benches/tls-handshakes.sh            # KEYS="ecdsa rsa" RUNS=3 COUNT=4000 CONCURRENCY=32
#   BEFORE=target/pushbridge-before bash benches/tls-handshakes.sh   # a second pushbridge build in the same runs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KEYS=${KEYS:-"ecdsa rsa"} RUNS=${RUNS:-3} COUNT=${COUNT:-4000} CONCURRENCY=${CONCURRENCY:-32}
PUSHBRIDGE=${PUSHBRIDGE:-target/release/pushbridge} CLIENT=target/release/examples/handshakes
OUT=${OUT:-target/bench-tls-handshakes.jsonl} DIR=target/bench-handshakes
NGINX_WORKERS=${NGINX_WORKERS:-$(nproc)}

if ! command -v nginx >/dev/null; then
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get install -y nginx >&2
fi
[[ -x $CLIENT && -x $PUSHBRIDGE ]] || cargo build --release --bin pushbridge --example handshakes
mkdir -p "$DIR" "$(dirname "$OUT")"

# One P-256 CA; a leaf per key kind for localhost and 127.0.0.1.
if [[ ! -f $DIR/ca.pem ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$DIR/ca.key" -out "$DIR/ca.pem" \
    -days 30 -subj "/CN=pushbridge bench CA" 2>/dev/null
  for key in ecdsa rsa; do
    case $key in
      ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
      rsa) newkey=(-newkey rsa:2048) ;;
    esac
    openssl req -new "${newkey[@]}" -nodes -keyout "$DIR/$key.key" -out "$DIR/$key.csr" -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$DIR/ext.cnf"
    openssl x509 -req -in "$DIR/$key.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 30 \
      -extfile "$DIR/ext.cnf" -out "$DIR/$key.pem" 2>/dev/null
  done
fi

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }
# Clock ticks of CPU time (utime + stime) of the processes PIDS and their children.
cpu_ticks() {
  local total=0 pid
  for pid in "$@" $(for p in "$@"; do pgrep -P "$p" || true; done); do
    read -r -a stat < "/proc/$pid/stat"
    total=$((total + stat[13] + stat[14]))
  done
  echo "$total"
}
TICKS=$(getconf CLK_TCK)

start_server() { # SERVER KEY: starts it, sets PID and PORT
  local server=$1 key=$2
  if [[ $server == pushbridge || $server == before ]]; then
    local binary=$PUSHBRIDGE; [[ $server == before ]] && binary=$BEFORE
    PORT=28443
    printf 'listen:\n  - address: "127.0.0.1:%s"\n    tls: { cert: "%s", key: "%s" }\nlog: { format: text, level: warn }\n' \
      "$PORT" "$PWD/$DIR/$key.pem" "$PWD/$DIR/$key.key" > "$DIR/pushbridge.yaml"
    "$binary" run -c "$DIR/pushbridge.yaml" >>"$DIR/pushbridge.log" 2>&1 &
    PID=$!
  else
    PORT=28543
    local conf=$PWD/$DIR/nginx-$key
    mkdir -p "$conf"
    cat > "$conf/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
pid $conf/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$PORT ssl;
    ssl_certificate $PWD/$DIR/$key.pem;
    ssl_certificate_key $PWD/$DIR/$key.key;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    location / { return 200 "ok\n"; }
  }
}
EOF
    nginx -p "$conf" -e "$conf/error.log" -c "$conf/nginx.conf" -g 'daemon off;' &
    PID=$!
  fi
  wait_port "$PORT"
}

SERVERS="pushbridge nginx"; [[ -z ${BEFORE:-} ]] || SERVERS="before pushbridge nginx"
declare -A cpu_rate wall_rate
for key in $KEYS; do
  for run in $(seq "$RUNS"); do
    for server in $SERVERS; do
      start_server "$server" "$key"
      "$CLIENT" --target "127.0.0.1:$PORT" --ca "$DIR/ca.pem" --count 20 >/dev/null   # warm-up
      for mode in full resumed; do
        flags=(); [[ $mode == resumed ]] && flags=(--resume)
        before=$(cpu_ticks "$PID")
        json=$("$CLIENT" --target "127.0.0.1:$PORT" --ca "$DIR/ca.pem" --count "$COUNT" \
                 --concurrency "$CONCURRENCY" "${flags[@]}")
        after=$(cpu_ticks "$PID")
        read -r cpu wall resumed failed < <(python3 -c '
import json, sys
j = json.loads(sys.argv[1]); cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
print(round(j["connections"] / cpu), round(j["per_second"]), j["resumed"], j["failed"])' "$json" "$before" "$after" "$TICKS")
        echo "{\"key\":\"$key\",\"run\":$run,\"server\":\"$server\",\"mode\":\"$mode\",\"per_cpu_second\":$cpu,\"client\":$json}" >> "$OUT"
        echo "$key run $run $server $mode: $cpu handshakes per CPU-second, $wall per second (resumed $resumed, failed $failed)" >&2
        cpu_rate[$key,$server,$mode]+="$cpu "
        wall_rate[$key,$server,$mode]+="$wall "
      done
      kill "$PID"; wait "$PID" 2>/dev/null || true
    done
  done
done

median() { python3 -c 'import statistics,sys; print(round(statistics.median(map(float, sys.argv[1:]))))' "$@"; }
echo "| certificate | handshake | pushbridge per CPU-second | nginx per CPU-second | ratio | pushbridge per second | nginx per second |${BEFORE:+ before per CPU-second | before ratio |}"
echo "| --- | --- | --- | --- | --- | --- | --- |${BEFORE:+ --- | --- |}"
for key in $KEYS; do
  for mode in full resumed; do
    p=$(median ${cpu_rate[$key,pushbridge,$mode]}) n=$(median ${cpu_rate[$key,nginx,$mode]}) extra=""
    if [[ -n ${BEFORE:-} ]]; then
      b=$(median ${cpu_rate[$key,before,$mode]})
      extra=" $b | $(python3 -c "print(round($b / $n, 2))") |"
    fi
    echo "| $key | $mode | $p | $n | $(python3 -c "print(round($p / $n, 2))") | $(median ${wall_rate[$key,pushbridge,$mode]}) | $(median ${wall_rate[$key,nginx,$mode]}) |$extra"
  done
done
