#!/usr/bin/env bash
# A/B of weft builds on unary Health/Check: server CPU per call of each build,
# alternating, a fresh server (and data directory) per run.
#
#   loadtest/ab-health.sh ROUNDS BIN_A BIN_B [BIN ...]
#   DURATION=8 loadtest/ab-health.sh 3 /tmp/weft-before .build/release/weft
#
# Per run: h2load -c 16 -m 32 for 2 s (warm-up, not measured), then for
# DURATION seconds (default 5); server CPU = utime + stime from /proc/PID/stat
# over the measured run, divided by the calls h2load completed. Prints one line
# per run and each build's mean. Every call must succeed (h2load's count) or the
# script exits 1. Builds are compared with each other in one session only: this
# 2-vCPU VM's speed drifts by tens of percent over minutes, so a figure means
# something next to the other build's in the same round, not on its own. Use
# count-per-call.sh for work per call that does not depend on that noise.
# Loopback only; the server and h2load share the machine's cores.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 ROUNDS WEFT_BIN WEFT_BIN [WEFT_BIN ...]" >&2; exit 2; }
ROUNDS=$1; shift
DURATION=${DURATION:-5}
PORT=${PORT:-21800}
command -v h2load >/dev/null || { echo "needs h2load (apt-get install nghttp2-client)" >&2; exit 2; }
OUT=$(mktemp -d /tmp/weft-ab.XXXXXX)
printf '\0\0\0\0\0' > "$OUT/empty.grpc"   # gRPC frame: uncompressed, empty HealthCheckRequest
CLK_TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status=0
declare -A sum runs
for r in $(seq "$ROUNDS"); do
  port=$PORT
  for bin in "$@"; do
    data=$(mktemp -d "$OUT/data.XXXX")
    "$bin" serve --host 127.0.0.1 --port "$port" --data-dir "$data" > "$data/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    h2=(h2load -c 16 -m 32 -d "$OUT/empty.grpc" -H 'content-type: application/grpc' -H 'te: trailers'
        "http://127.0.0.1:$port/grpc.health.v1.Health/Check")
    timeout 60 "${h2[@]}" -D 2 > /dev/null
    t0=$(ticks "$pid")
    out=$(timeout $((DURATION + 60)) "${h2[@]}" -D "$DURATION")
    t1=$(ticks "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    read -r done ok failed < <(echo "$out" | awk '/^requests:/ {print $6, $8, $10}')
    if [ "${failed:-1}" != 0 ] || [ "${ok:-0}" != "${done:-x}" ] || [ "${ok:-0}" -eq 0 ]; then
      echo "$r $bin: not every call succeeded (done $done, succeeded $ok, failed $failed)"; status=1; continue
    fi
    per=$(python3 -c "print('%.3f' % (($t1 - $t0) / $CLK_TCK / $ok * 1e6))")
    echo "$r $bin calls=$ok cpu_us_per_call=$per"
    sum[$bin]=$(python3 -c "print(${sum[$bin]:-0} + $per)"); runs[$bin]=$(( ${runs[$bin]:-0} + 1 ))
    port=$((port + 1))
  done
done
for bin in "$@"; do
  [ -n "${runs[$bin]:-}" ] && python3 -c "print('mean %s %.3f us per call over %d runs' % ('$bin', ${sum[$bin]} / ${runs[$bin]}, ${runs[$bin]}))"
done
rm -rf "$OUT"
exit $status
