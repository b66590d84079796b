#!/usr/bin/env bash
# Server CPU per request of one REST call under h2load, optionally with a
# perf profile of the server: what Step 13 measured after each change to the
# REST bridge (docs/BENCHMARKS.md). A fresh release `weft serve` on a free
# loopback port, one user, one 3-task workflow; a warm-up run of the same
# h2load arguments, then the measured run; CPU = utime + stime of the server
# (/proc/PID/stat) over the measured run ÷ 2xx responses.
#
#   loadtest/rest-cpu.sh OUT_DIR -c 16 -m 32 -D 6 -t 1            # GET /workflows/{id} over h2c
#   loadtest/rest-cpu.sh OUT_DIR --h1 -c 16 -m 16 -D 6 -t 1       # HTTP/1.1, 16 pipelined
#   PERF=1 loadtest/rest-cpu.sh OUT_DIR --h1 -c 16 -m 1 -D 8 -t 1 # plus perf record -g (8 s)
#   URLPATH=/workflows loadtest/rest-cpu.sh OUT_DIR --h1 -c 16 -D 8 -d body.json -H 'content-type: application/json'
#
# Not a verdict: bench-api.sh is the benchmark of record (rounds, gRPC in the
# same run, validity checks). Needs h2load, curl, python3; perf for PERF=1.
set -euo pipefail
out=${1:?usage: loadtest/rest-cpu.sh OUT_DIR h2load-args...}
shift
cd "$(dirname "$0")/.."
WEFT_BIN=${WEFT_BIN:-.build/release/weft}
rm -rf "$out" && mkdir -p "$out"
"$WEFT_BIN" serve --host 127.0.0.1 --port 0 --data-dir "$out/data" --scrypt-log-n 10 > "$out/weft.log" 2>&1 &
pid=$!
trap 'kill $pid 2> /dev/null || true' EXIT
. loadtest/wait-listening.sh
port=$(wait_listening "$out/weft.log" "$pid") || { cat "$out/weft.log" >&2; exit 1; }
base=http://127.0.0.1:$port
json() { python3 -c "import sys, json; print(json.load(sys.stdin)['$1'])"; }
curl -sf -X POST "$base/users/register" -H 'content-type: application/json' \
  -d '{"email":"rest-cpu@bench.weft.test","password":"correct horse battery","name":"Bench"}' > /dev/null
token=$(curl -sf -X POST "$base/users/login" -H 'content-type: application/json' \
  -d '{"email":"rest-cpu@bench.weft.test","password":"correct horse battery"}' | json token)
workflow=$(curl -sf -X POST "$base/workflows" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"w","description":"a workflow","tasks":[{"key":"a","name":"A","action":"noop"},{"key":"b","name":"B","action":"noop","dependsOn":["a"]},{"key":"c","name":"C","action":"noop","dependsOn":["b"]}]}' | json id)
url="$base${URLPATH:-/workflows/$workflow}"
h2load "$@" -H "authorization: Bearer $token" "$url" > "$out/warm.txt" 2>&1 || true
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
perfpid=""
if [ -n "${PERF:-}" ]; then
  perf record -F 999 -g -p "$pid" -o "$out/perf.data" -- sleep 8 2> /dev/null &
  perfpid=$!
fi
h2load "$@" -H "authorization: Bearer $token" "$url" > "$out/h2load.txt" 2>&1 || true
t1=$(ticks)
if [ -n "$perfpid" ]; then wait "$perfpid"; fi
ok=$(grep -oE '[0-9]+ 2xx' "$out/h2load.txt" | grep -oE '^[0-9]+' || echo 0)
hz=$(getconf CLK_TCK)
python3 -c "import sys; t, ok, hz = map(int, sys.argv[1:]); print(f'server CPU {t / hz:.2f} s, {ok} 2xx, {t / hz * 1e6 / ok if ok else 0:.1f} µs per request')" \
  "$((t1 - t0))" "$ok" "$hz"
grep -E "finished in|requests:" "$out/h2load.txt"
[ -z "$perfpid" ] || echo "perf data: $out/perf.data"
