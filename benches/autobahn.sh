#!/usr/bin/env bash
# The Autobahn test suite (fuzzingclient) against a pushbridge WebSocket route that echoes: each client message goes
# to benches/autobahn/echo_app.py (`client_messages.forward`), which publishes it back on the same route (`kind:
# publish`, `ws.format: data`), so what a client sends comes back byte for byte, compressed as pushbridge compresses
# events (`ws.compression: deflate`). Prints a summary per case group (docs/protocol.md, "Autobahn").
#
#   bash benches/autobahn.sh                      # cases 1.1.*, 12.1.*, 12.4.*, 13.* (the text cases)
#   CASES='["12.*","13.*"]' bash benches/autobahn.sh
#
# Autobahn's wstest needs Python 2.7: PY2 (default: python2.7 on PATH, else pyenv's 2.7.18) gets a virtualenv in
# target/autobahn-venv with autobahntestsuite 0.8.2. Without Python 2.7 and with docker, the image
# crossbario/autobahn-testsuite runs it instead (host network). Binary cases (1.2.*, 12.2/12.3/12.5) cannot pass:
# pushbridge events are text frames, so a binary message cannot come back as binary (the echo app refuses them).
# Loopback only, fixed ports 29080/29081/29082; kills only the processes it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${PUSHBRIDGE_BIN:-target/release/pushbridge}
CASES=${CASES:-'["1.1.*", "12.1.*", "12.4.*", "13.*"]'}
OUT=${OUT:-target/autobahn}
PORT=29080 PUBLISH=29081 APP=29082

if [[ ! -x $BIN ]]; then
  CARGO_INCREMENTAL=0 flock /tmp/pb-cargo.lock cargo build --release --bin pushbridge
fi

# pyenv's shim is on PATH even where its 2.7 is not selected: ask pyenv for the interpreter itself.
if [[ -z ${PY2:-} ]] && command -v pyenv >/dev/null && [[ -x $(pyenv root)/versions/2.7.18/bin/python2.7 ]]; then
  PY2=$(pyenv root)/versions/2.7.18/bin/python2.7
fi
PY2=${PY2:-$(command -v python2.7 || true)}
if [[ -n $PY2 ]] && ! "$PY2" -c 'import sys; assert sys.version_info[0] == 2' 2>/dev/null; then
  PY2=""
fi
WSTEST=()
if [[ -n $PY2 ]]; then
  venv=target/autobahn-venv
  if [[ ! -x $venv/bin/wstest ]]; then
    "$PY2" -m pip --version >/dev/null 2>&1 || "$PY2" -m ensurepip >/dev/null
    "$PY2" -m pip install -q virtualenv
    "$PY2" -m virtualenv -q "$venv"
    "$venv/bin/pip" install -q autobahntestsuite==0.8.2
  fi
  WSTEST=("$venv/bin/wstest")
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  WSTEST=(docker run --rm --network host -v "$PWD/$OUT:/work" -w /work crossbario/autobahn-testsuite wstest)
else
  echo "autobahn: needs Python 2.7 (PY2=...) or docker" >&2
  exit 2
fi

rm -rf "$OUT" && mkdir -p "$OUT"
cat > "$OUT/pushbridge.yaml" <<YAML
listen:
  - address: "127.0.0.1:$PORT"
publish: { address: "127.0.0.1:$PUBLISH", max_body: 4MiB }
limits: { max_event_bytes: 1MiB }
log: { level: warn }
streams:
  - path: /echo
    upstream: { kind: publish }
    transports: [ws]
    buffer: { events: 16 }  # echoes are taken at once; 1000 held 128 KiB events would pass the byte budget
    ws: { format: data, compression: deflate }
    client_messages: { forward: "http://127.0.0.1:$APP/messages", max_bytes: 1MiB }
YAML
# Paths as the test suite sees them (its working directory is $OUT in docker).
reports=$([[ ${WSTEST[0]} == docker ]] && echo reports || echo "$OUT/reports")
cat > "$OUT/fuzzingclient.json" <<JSON
{
  "outdir": "$reports",
  "servers": [{ "agent": "pushbridge", "url": "ws://127.0.0.1:$PORT/echo" }],
  "cases": $CASES,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON

cleanup() { local jobs; jobs=$(jobs -p); [[ -z "$jobs" ]] || kill $jobs 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

python3 benches/autobahn/echo_app.py "$APP" "http://127.0.0.1:$PUBLISH/echo" &
"$BIN" run -c "$OUT/pushbridge.yaml" >"$OUT/pushbridge.log" 2>&1 &
wait_port "$APP" && wait_port "$PORT"

spec=$([[ ${WSTEST[0]} == docker ]] && echo fuzzingclient.json || echo "$OUT/fuzzingclient.json")
started=$(date +%s)
"${WSTEST[@]}" -m fuzzingclient -s "$spec" >"$OUT/wstest.log" 2>&1
echo "autobahn: $(( $(date +%s) - started )) s; report: $OUT/reports/index.html"

python3 - "$OUT/reports/index.json" <<'PY'
import collections, json, sys
cases = json.load(open(sys.argv[1]))["pushbridge"]
groups = collections.OrderedDict()
def key(case):
    return [int(p) for p in case.split(".")]
for case in sorted(cases, key=key):
    group = ".".join(case.split(".")[:2]) + ".*"
    groups.setdefault(group, collections.Counter())[cases[case]["behavior"]] += 1
    if cases[case]["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL"):
        print(f"  {case}: {cases[case]['behavior']} (close: {cases[case]['behaviorClose']})", file=sys.stderr)
print("| cases | OK | NON-STRICT | FAILED | other |")
print("| --- | --- | --- | --- | --- |")
total = collections.Counter()
for group, c in groups.items():
    total.update(c)
    other = sum(v for k, v in c.items() if k not in ("OK", "NON-STRICT", "FAILED"))
    print(f"| {group} | {c['OK']} | {c['NON-STRICT']} | {c['FAILED']} | {other} |")
other = sum(v for k, v in total.items() if k not in ("OK", "NON-STRICT", "FAILED"))
print(f"| all | {total['OK']} | {total['NON-STRICT']} | {total['FAILED']} | {other} |")
PY
