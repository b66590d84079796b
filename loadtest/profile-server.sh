#!/usr/bin/env bash
# Where the server's CPU goes under a steady load: starts a release `weft
# serve` on a free loopback port, drives a scenario at a fixed open-loop rate
# with weft-loadtest, records the server with `perf record -g` for the middle
# of the run, and prints the top frames (self time) and the top callers
# (children) with the harness's report.
#
#   loadtest/profile-server.sh                                   # execute-3task at 1000/s, 30 s
#   RATE=1500 DURATION=40 loadtest/profile-server.sh
#   SCENARIO=loadtest/scenarios/mixed.yaml RATE=1000 loadtest/profile-server.sh
#
# Needs `perf` (Debian linux-perf) and release builds of weft and
# weft-loadtest. Output goes to OUT_DIR (default /tmp/weft-profile).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${SCENARIO:-loadtest/scenarios/execute-3task.yaml}
RATE=${RATE:-1000}
DURATION=${DURATION:-30}
RECORD=${RECORD:-15}
OUT_DIR=${OUT_DIR:-/tmp/weft-profile}
WEFT_BIN=${WEFT_BIN:-.build/release/weft}
LOADTEST_BIN=${LOADTEST_BIN:-.build/release/weft-loadtest}

command -v perf > /dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 2; }
for bin in "$WEFT_BIN" "$LOADTEST_BIN"; do
  [ -x "$bin" ] || { echo "no $bin: swift build -c release" >&2; exit 2; }
done
rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR"

"$WEFT_BIN" serve --host 127.0.0.1 --port 0 --data-dir "$OUT_DIR/data" > "$OUT_DIR/weft.log" 2>&1 &
pid=$!
trap 'kill $pid 2> /dev/null || true; wait $pid 2> /dev/null || true' EXIT
. loadtest/wait-listening.sh
port=$(wait_listening "$OUT_DIR/weft.log" "$pid") || { cat "$OUT_DIR/weft.log" >&2; exit 1; }

echo "== $SCENARIO at $RATE/s for $DURATION s against 127.0.0.1:$port (server pid $pid); perf records $RECORD s from second 5"
"$LOADTEST_BIN" run "$SCENARIO" --target "http://127.0.0.1:$port" --rate "$RATE" --duration "$DURATION" --warmup 2 \
  --progress 0 --out "$OUT_DIR/report.json" > "$OUT_DIR/report.txt" &
load=$!
sleep 7
perf record -F 999 -g -p "$pid" -o "$OUT_DIR/perf.data" -- sleep "$RECORD" 2> "$OUT_DIR/perf-record.log"
wait $load
cat "$OUT_DIR/report.txt"
echo
echo "== top frames by self time (perf report --no-children)"
# (head closes the pipe early: not an error)
{ perf report -i "$OUT_DIR/perf.data" --no-children --sort dso,symbol --stdio 2> /dev/null |
  grep -E '^ +[0-9]+\.[0-9]+%' | head -30 | sed -E 's/ +$//'; } || true
echo
echo "== by shared object"
{ perf report -i "$OUT_DIR/perf.data" --no-children --sort dso --stdio 2> /dev/null | grep -E '^ +[0-9]+\.[0-9]+%' | head -12; } || true
echo
echo "perf data: $OUT_DIR/perf.data (perf report -i $OUT_DIR/perf.data)"
