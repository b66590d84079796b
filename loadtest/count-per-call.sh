#!/usr/bin/env bash
# Work per Health/Check (or GetWorkflow) call that does not depend on the machine's noise:
# swift_retain, swift_release and malloc calls of the server, counted with
# perf uprobes over a fixed number of calls, for one or more weft binaries.
#
# CPU time per call on a shared 2-vCPU VM moves by ±10 % between runs of the
# same binary; these counts move by less than 1 %. They are not a time: a
# retain is a few nanoseconds, a malloc a few tens. Use them next to
# compare-builds.py to see whether a change added work to the call path.
#
#   loadtest/count-per-call.sh /tmp/weft-base/weft .build/release/weft
#
# Environment: CALLS (default 200000), WARMUP_CALLS (default 50000),
# PORT (default 21001, one per binary upward), METHOD (health, the default,
# or get-workflow: weft.v1.WorkflowService/GetWorkflow of a 3-task workflow
# by its owner, through authentication and every interceptor). Needs perf (linux-perf) and
# root (uprobes); the probes are added once and left in place.
set -euo pipefail
CALLS=${CALLS:-200000}
WARMUP_CALLS=${WARMUP_CALLS:-50000}
PORT=${PORT:-21001}
[ $# -ge 1 ] || { echo "usage: $0 WEFT_BIN [WEFT_BIN ...]" >&2; exit 2; }
BINARIES=("$@")
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }
command -v h2load >/dev/null || { echo "needs h2load (apt-get install nghttp2-client)" >&2; exit 2; }

# The libraries the server actually loads: swift_retain/release live in the
# toolchain's libswiftCore, malloc in jemalloc (linked into weft) or, for an
# older build without it, libc. Builds with different allocators cannot be
# compared in one run (the probes differ): compare like with like.
swiftcore=$(ldd "${BINARIES[0]}" | awk '/libswiftCore/ {print $3}')
malloc_lib=$(ldd "${BINARIES[0]}" | awk '/libjemalloc/ {print $3}')
[ -n "$malloc_lib" ] || malloc_lib=$(ldd "${BINARIES[0]}" | awk '/libc\.so/ {print $3}')
[ -n "$swiftcore" ] && [ -n "$malloc_lib" ] || { echo "cannot find libswiftCore/malloc of ${BINARIES[0]}" >&2; exit 2; }
add_probe() {  # library function
    perf probe -l 2>/dev/null | grep -q ":$2 " || perf probe -q -x "$1" "$2" >/dev/null
}
add_probe "$swiftcore" swift_retain
add_probe "$swiftcore" swift_release
case "$malloc_lib" in
*jemalloc*)
    # By address: a probe by name would also catch jemalloc's own malloc@plt.
    addr=$(nm -D --defined-only "$malloc_lib" | awk '$3 == "malloc" {print $1}')
    perf probe -l 2>/dev/null | grep -q ":jemalloc_malloc " || perf probe -q -x "$malloc_lib" -a "jemalloc_malloc=0x$addr" >/dev/null
    malloc_event=jemalloc_malloc ;;
*)
    add_probe "$malloc_lib" malloc
    malloc_event=malloc ;;
esac
event() { perf probe -l 2>/dev/null | awk -v f=":$1" 'index($1, f) == length($1) - length(f) + 1 {print $1; exit}'; }
EVENTS="$(event swift_retain),$(event swift_release),$(event $malloc_event)"

METHOD=${METHOD:-health}
OUT=$(mktemp -d /tmp/weft-count.XXXXXX)
printf '\0\0\0\0\0' > "$OUT/empty.grpc"   # gRPC frame: uncompressed, 0-byte HealthCheckRequest
AUTH=()
PATH_=/grpc.health.v1.Health/Check
BODY="$OUT/empty.grpc"
setup() {  # port: for get-workflow, an account, a workflow and the request frame
    [ "$METHOD" = get-workflow ] || return 0
    local base="http://127.0.0.1:$1" email="count-$1-$$@example.com"
    curl -sf "$base/users/register" -H 'content-type: application/json' \
        -d "{\"email\": \"$email\", \"password\": \"correct horse\", \"name\": \"Count\"}" >/dev/null
    local token
    token=$(curl -sf "$base/users/login" -H 'content-type: application/json' \
        -d "{\"email\": \"$email\", \"password\": \"correct horse\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    local wf
    wf=$(curl -sf "$base/workflows" -H 'content-type: application/json' -H "authorization: Bearer $token" \
        -d '{"name": "count", "tasks": [{"key": "a", "name": "a", "action": "noop"}, {"key": "b", "name": "b", "action": "noop", "dependsOn": ["a"]}, {"key": "c", "name": "c", "action": "noop", "dependsOn": ["b"]}]}' \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    # GetWorkflowRequest{workflow_id}: field 1, length-delimited, in a gRPC frame.
    python3 -c 'import sys,struct; w=sys.argv[1].encode(); m=b"\x0a"+bytes([len(w)])+w; sys.stdout.buffer.write(b"\0"+struct.pack(">I",len(m))+m)' "$wf" > "$OUT/get-$1.grpc"
    AUTH=(-H "authorization: Bearer $token")
    PATH_=/weft.v1.WorkflowService/GetWorkflow
    BODY="$OUT/get-$1.grpc"
}
h2() {  # calls port
    h2load -c 16 -m 32 -n "$1" -d "$BODY" -H 'content-type: application/grpc' -H 'te: trailers' "${AUTH[@]}" \
        "http://127.0.0.1:$2$PATH_"
}

printf '| binary | calls | retains / call | releases / call | mallocs / call |\n|---|---:|---:|---:|---:|\n'
port=$PORT
status=0
for bin in "${BINARIES[@]}"; do
    data="$OUT/data-$port"
    mkdir -p "$data"
    "$bin" serve --host 127.0.0.1 --port "$port" --data-dir "$data" --scrypt-log-n 10 > "$OUT/weft-$port.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    setup "$port"
    h2 "$WARMUP_CALLS" "$port" > "$OUT/warmup-$port.txt"
    perf stat -x, -e "$EVENTS" -p "$pid" -o "$OUT/stat-$port.csv" &
    stat_pid=$!
    sleep 0.5   # perf attaches
    h2 "$CALLS" "$port" > "$OUT/h2load-$port.txt"
    kill -INT "$stat_pid"; wait "$stat_pid" || true
    kill -TERM "$pid"; wait "$pid" || true
    ok=$(awk '/^requests:/ {print $8}' "$OUT/h2load-$port.txt")
    if [ "$ok" != "$CALLS" ]; then
        echo "| $bin | $ok of $CALLS succeeded: not counted | | | |"; status=1
    else
        # perf -x, lines: count,unit,event,...; the idle server adds a few
        # hundred events over the run (timers), which is noise below 0.01 / call.
        awk -F, -v bin="$bin" -v n="$CALLS" '
            $3 ~ /swift_retain/ {r=$1} $3 ~ /swift_release/ {l=$1} $3 ~ /malloc/ {m=$1}
            END {printf "| %s | %d | %.2f | %.2f | %.2f |\n", bin, n, r/n, l/n, m/n}' "$OUT/stat-$port.csv"
    fi
    port=$((port + 1))
done
echo
echo "Logs: $OUT"
exit $status
