#!/usr/bin/env bash
# Step-2 benchmark: the weft.v1 API under h2load, on loopback.
#
# Two Weft servers, each with a fresh data directory (under OUT_DIR):
#   full    $WEFT_BIN serve ... --store-sync full     (SQLite fsync per commit, the default)
#   normal  $WEFT_BIN serve ... --store-sync normal   (no fsync per commit; WAL still)
# On each: register + log in one user, create one workflow with 3 noop tasks.
# Cases (all on "full" unless named), DURATION seconds each, ROUNDS rounds, case
# order rotated every round:
#   grpc-get      weft.v1.WorkflowService/GetWorkflow over h2c     -c 16 -m 1 and -c 16 -m 32
#   grpc-health   grpc.health.v1.Health/Check over h2c (the Step-1 call, for the ratio)
#   rest-get      GET /workflows/{id} over HTTP/1.1 keep-alive      --h1 -c 16 -m 1, and -m 16 (pipelined)
#   rest-get-h2   GET /workflows/{id} over HTTP/2 (h2c)             -c 16 -m 32
#   create        POST /workflows over HTTP/1.1                     --h1 -c 16, on "full" and "normal"
# Per run: req/s and mean (h2load), p50/p99 (nearest rank over h2load --log-file,
# 2xx only), server CPU per request = (utime+stime from /proc/PID/stat over the
# run) / 2xx responses, response body bytes per request. The table shows medians
# over rounds of the valid runs, then GetWorkflow/Health ratios and the create
# rate with --store-sync full vs normal.
# Validity: h2load counts HTTP 2xx as success, but a gRPC error is HTTP 200 with a
# non-zero grpc-status in the trailers. For the gRPC cases the server's /metrics is
# scraped before and after every run: the delta of grpc_server_handled_total for
# the method must be all grpc_code OK and at least h2load's successes (at most the
# calls it started), and the body bytes per response must match the checked reply
# (a gRPC error is trailers-only, no body). REST cases must have no non-2xx and no
# errored request. Any failed check makes the run invalid: left out of the
# figures, listed with the reason, and the script exits 1.
#
# Environment:
#   WEFT_BIN        weft binary (default .build/release/weft)
#   ROUNDS          rounds (default 3)
#   DURATION        seconds per measured run (default 10)
#   WARMUP          unmeasured seconds per case before round 1 (default 2; 0 skips)
#   CASES           subset of "grpc-get grpc-health rest-get rest-get-h2 create" (default all)
#   GRPC_SETTINGS   CxM pairs for the gRPC cases (default "16x1 16x32")
#   REST_CLIENTS    h2load --h1 -c for rest-get (default 16)
#   REST_PIPELINE   h2load --h1 -m settings for rest-get (default "1 16": one at a time, then 16 pipelined)
#   REST_H2_SETTINGS CxM pairs for rest-get-h2 (default "16x32")
#   CREATE_CLIENTS  h2load --h1 -c for create (default 16)
#   CREATE_N        fixed requests per create run (h2load -n); 0 = run for DURATION s (default 0)
#   CREATE_TIMEOUT  seconds a -n create run may take (default 300)
#   SYNC_MODES      --store-sync modes for create (default "full normal")
#   SCRYPT_LOG_N    --scrypt-log-n (default 10: login is not what is measured)
#   CREDENTIAL      what the calls send as `authorization: Bearer`: "token" (an access
#                   token from login, default) or "key" (a read-scoped API key, Step 7)
#   H2LOAD_THREADS  h2load -t (default 1)
#   WEFT_ARGS       extra arguments appended to `weft serve`
#   OUT_DIR         logs and raw results (default a new /tmp/weft-bench-api.XXXXXX)
#   DATA_ROOT       parent of the servers' data dirs (default OUT_DIR; must not be tmpfs,
#                   or fsync costs nothing and full = normal)
#   KEEP_DATA       1 keeps the data dirs after the run (default 0: removed)
#
# Nothing is pinned: h2load and the server share the machine's cores, so the
# figures include client overhead. Loopback only; every h2load run is bounded by
# -D (or -n) and by `timeout`.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WEFT_BIN=${WEFT_BIN:-.build/release/weft}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CASES=${CASES:-"grpc-get grpc-health rest-get rest-get-h2 create"}
GRPC_SETTINGS=${GRPC_SETTINGS:-"16x1 16x32"}
REST_CLIENTS=${REST_CLIENTS:-16}
REST_PIPELINE=${REST_PIPELINE:-"1 16"}
REST_H2_SETTINGS=${REST_H2_SETTINGS:-"16x32"}
CREATE_CLIENTS=${CREATE_CLIENTS:-16}
CREATE_N=${CREATE_N:-0}
CREATE_TIMEOUT=${CREATE_TIMEOUT:-300}
SYNC_MODES=${SYNC_MODES:-"full normal"}
SCRYPT_LOG_N=${SCRYPT_LOG_N:-10}
H2LOAD_THREADS=${H2LOAD_THREADS:-1}
WEFT_ARGS=${WEFT_ARGS:-}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/weft-bench-api.XXXXXX)}
DATA_ROOT=${DATA_ROOT:-$OUT_DIR}
KEEP_DATA=${KEEP_DATA:-0}
mkdir -p "$OUT_DIR" "$DATA_ROOT"
CLK_TCK=$(getconf CLK_TCK)

log() { echo "[bench-api] $*" >&2; }
die() { echo "[bench-api] error: $*" >&2; exit 1; }

command -v h2load >/dev/null || die "h2load not found (apt-get install nghttp2-client)"
command -v nghttp >/dev/null || die "nghttp not found (apt-get install nghttp2-client)"
command -v python3 >/dev/null || die "python3 not found"
[ -x "$WEFT_BIN" ] || die "no executable at $WEFT_BIN (build with: swift build -c release)"
case "$(stat -f -c %T "$DATA_ROOT")" in
  tmpfs|ramfs) log "warning: $DATA_ROOT is on $(stat -f -c %T "$DATA_ROOT"): fsync is free there, so --store-sync full = normal; set DATA_ROOT" ;;
esac
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- servers
declare -A PID PORT TOKEN WFID GETB
SERVERS=(full)
for m in $SYNC_MODES; do [ "$m" = full ] || SERVERS+=("$m"); done
STARTED=()

cleanup() {
  for s in "${STARTED[@]}"; do p=${PID[$s]:-}; [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for s in "${STARTED[@]}"; do p=${PID[$s]:-}; [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  if [ "$KEEP_DATA" != 1 ]; then
    for s in "${SERVERS[@]}"; do rm -rf "$DATA_ROOT/data-$s"; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$HERE/wait-listening.sh"

# The workflow every run reads / creates: 3 noop tasks.
printf '%s' '{"name":"Nightly invoice sync","description":"Bench workflow: fetch invoices, validate them, post a summary.","tasks":[{"name":"Fetch invoices","action":"noop"},{"name":"Validate invoices","action":"noop","dependsOn":["fetch_invoices"]},{"name":"Post summary","action":"noop","dependsOn":["validate_invoices"]}]}' \
  > "$OUT_DIR/workflow.json"
printf '\0\0\0\0\0' > "$OUT_DIR/empty.grpc"   # gRPC frame: uncompressed, empty HealthCheckRequest

# Starts server $1 (a --store-sync mode) on a fresh or existing data dir, logs in and creates the workflow.
start_server() {
  local s=$1
  mkdir -p "$DATA_ROOT/data-$s"
  # shellcheck disable=SC2086
  "$WEFT_BIN" serve --host 127.0.0.1 --port 0 --data-dir "$DATA_ROOT/data-$s" --store-sync "$s" \
    --scrypt-log-n "$SCRYPT_LOG_N" $WEFT_ARGS > "$OUT_DIR/weft-$s.stdout" 2>> "$OUT_DIR/weft-$s.log" &
  PID[$s]=$!
  STARTED+=("$s")
  PORT[$s]=$(wait_listening "$OUT_DIR/weft-$s.log" "${PID[$s]}") \
    || { cat "$OUT_DIR/weft-$s.log" >&2; die "weft ($s) did not print 'listening on 127.0.0.1:PORT'"; }
  local out
  out=$(timeout 60 python3 - "$HERE" "${PORT[$s]}" "$OUT_DIR/workflow.json" "${CREDENTIAL:-token}" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from seed_workflows import Client, login
port = int(sys.argv[2])
token = login("127.0.0.1", port, "bench-api@bench.weft.test", "bench-password-1", "Bench API")
c = Client("127.0.0.1", port, token)
if sys.argv[4] == "key":
    # An admin key: the create case writes too; its scope check is the same work.
    status, body = c.request("POST", "/api-keys", {"name": "bench", "scopes": ["admin"]})
    if status != 201:
        sys.exit("POST /api-keys: HTTP %d: %r" % (status, body[:300]))
    token = json.loads(body)["secret"]
    c = Client("127.0.0.1", port, token)
status, body = c.request("POST", "/workflows", open(sys.argv[3], "rb").read())
if status != 201:
    sys.exit("POST /workflows: HTTP %d: %r" % (status, body[:300]))
wid = json.loads(body)["id"]
status, body = c.request("GET", "/workflows/" + wid)
if status != 200 or json.loads(body)["id"] != wid or len(json.loads(body)["tasks"]) != 3:
    sys.exit("GET /workflows/%s: HTTP %d: %r" % (wid, status, body[:300]))
print(token, wid)
PY
  ) || die "weft ($s): could not register/login/create the workflow"
  TOKEN[$s]=${out% *}
  WFID[$s]=${out#* }
  # GetWorkflowRequest{workflow_id = 1}: tag 0x0a, length, UTF-8; behind the 5-byte gRPC prefix.
  python3 - "${WFID[$s]}" > "$OUT_DIR/get-$s.grpc" <<'PY'
import struct, sys
wid = sys.argv[1].encode()
assert len(wid) < 128
pb = b"\x0a" + bytes([len(wid)]) + wid
sys.stdout.buffer.write(b"\x00" + struct.pack(">I", len(pb)) + pb)
PY
  log "weft ($s): pid ${PID[$s]}, port ${PORT[$s]}, workflow ${WFID[$s]}"
}

base_url() { echo "http://127.0.0.1:${PORT[$1]}"; }

# One call of each shape by hand: grpc-status 0 and the right body (h2load only sees HTTP status).
check_server() {
  local s=$1 out body url
  url=$(base_url "$s")
  out=$(timeout 10 nghttp -v -d "$OUT_DIR/get-$s.grpc" -H 'content-type: application/grpc' -H 'te: trailers' \
    -H "authorization: Bearer ${TOKEN[$s]}" "$url/weft.v1.WorkflowService/GetWorkflow" 2>&1 | tr -d '\0' || true)
  grep -q 'grpc-status: 0' <<<"$out" || { echo "$out" >&2; die "$s: GetWorkflow did not answer grpc-status 0"; }
  timeout 10 nghttp -d "$OUT_DIR/get-$s.grpc" -H 'content-type: application/grpc' -H 'te: trailers' \
    -H "authorization: Bearer ${TOKEN[$s]}" "$url/weft.v1.WorkflowService/GetWorkflow" > "$OUT_DIR/get-$s.reply"
  python3 - "$OUT_DIR/get-$s.reply" "${WFID[$s]}" <<'PY' || die "$s: unexpected GetWorkflow body"
import struct, sys
b = open(sys.argv[1], "rb").read()
assert len(b) > 5 and b[0] == 0 and struct.unpack(">I", b[1:5])[0] == len(b) - 5, b[:16]
assert sys.argv[2].encode() in b and b.count(b"noop") == 3, b
PY
  GETB[$s]=$(stat -c %s "$OUT_DIR/get-$s.reply")
  body=$(timeout 10 nghttp -d "$OUT_DIR/empty.grpc" -H 'content-type: application/grpc' -H 'te: trailers' \
    "$url/grpc.health.v1.Health/Check" | od -An -tx1 | tr -s ' \n' ' ')
  [ "$body" = " 00 00 00 00 02 08 01 " ] || die "$s: unexpected Health/Check body:$body"
  log "$s: GetWorkflow -> grpc-status 0, ${GETB[$s]}-byte message with 3 tasks; Health/Check -> SERVING"
}

# ---------------------------------------------------------------- helpers
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# scrape SERVER FILE: the server's /metrics into FILE (emptied if the scrape fails: the run cannot be verified)
scrape() {
  timeout 15 python3 "$HERE/h2load_results.py" scrape 127.0.0.1 "${PORT[$1]}" > "$2" \
    || { : > "$2"; log "warning: could not read weft ($1)'s /metrics"; }
}
other_build() { if pgrep -f 'swift-build|swift-frontend|swiftc |clang|cc1' >/dev/null; then echo 1; else echo 0; fi; }

ensure_alive() {
  local s=$1 rc=0
  kill -0 "${PID[$s]}" 2>/dev/null && return 0
  wait "${PID[$s]}" 2>/dev/null || rc=$?
  log "warning: weft ($s) (pid ${PID[$s]}) is gone (exit status $rc); restarting it"
  echo "$s" >> "$OUT_DIR/restarts"
  start_server "$s"
  check_server "$s"
}

# Run list: "case server c m" (case = grpc-get | grpc-health | rest-get | create).
RUNS=()
for c in $CASES; do
  case "$c" in
    grpc-get|grpc-health)
      for st in $GRPC_SETTINGS; do RUNS+=("$c full ${st%x*} ${st#*x}"); done ;;
    rest-get) for m in $REST_PIPELINE; do RUNS+=("rest-get full $REST_CLIENTS $m"); done ;;
    rest-get-h2) for st in $REST_H2_SETTINGS; do RUNS+=("rest-get-h2 full ${st%x*} ${st#*x}"); done ;;
    create) for m in $SYNC_MODES; do RUNS+=("create $m $CREATE_CLIENTS 1"); done ;;
    *) die "unknown case: $c (known: grpc-get grpc-health rest-get rest-get-h2 create)" ;;
  esac
done
[ "${#RUNS[@]}" -gt 0 ] || die "nothing to run"

# h2load_case CASE SERVER C M LIMIT... -- runs h2load for one case; LIMIT is e.g. "-D 10" or "-n 5000".
h2load_case() {
  local cs=$1 s=$2 c=$3 m=$4; shift 4
  local url; url=$(base_url "$s")
  local limit_s=$((DURATION + WARMUP + 60))
  [ "$1" = -n ] && limit_s=$CREATE_TIMEOUT
  case "$cs" in
    grpc-get)
      timeout "$limit_s" h2load -t "$H2LOAD_THREADS" -c "$c" -m "$m" "$@" -d "$OUT_DIR/get-$s.grpc" \
        -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer ${TOKEN[$s]}" \
        "$url/weft.v1.WorkflowService/GetWorkflow" ;;
    grpc-health)
      timeout "$limit_s" h2load -t "$H2LOAD_THREADS" -c "$c" -m "$m" "$@" -d "$OUT_DIR/empty.grpc" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$url/grpc.health.v1.Health/Check" ;;
    rest-get)
      timeout "$limit_s" h2load --h1 -t "$H2LOAD_THREADS" -c "$c" -m "$m" "$@" \
        -H "authorization: Bearer ${TOKEN[$s]}" "$url/workflows/${WFID[$s]}" ;;
    rest-get-h2)
      timeout "$limit_s" h2load -t "$H2LOAD_THREADS" -c "$c" -m "$m" "$@" \
        -H "authorization: Bearer ${TOKEN[$s]}" "$url/workflows/${WFID[$s]}" ;;
    create)
      timeout "$limit_s" h2load --h1 -t "$H2LOAD_THREADS" -c "$c" -m "$m" "$@" -d "$OUT_DIR/workflow.json" \
        -H 'content-type: application/json' -H "authorization: Bearer ${TOKEN[$s]}" "$url/workflows" ;;
  esac
}

limit_args() {  # CASE [seconds] -> h2load limit options
  if [ "$1" = create ] && [ "$CREATE_N" -gt 0 ]; then echo "-n $CREATE_N"; else echo "-D ${2:-$DURATION}"; fi
}

# ---------------------------------------------------------------- start
for s in "${SERVERS[@]}"; do start_server "$s"; done
sleep 1
for s in "${SERVERS[@]}"; do check_server "$s"; done

RESULTS="$OUT_DIR/results.tsv"
printf 'round\tcase\tserver\tc\tm\treqs\tok\tfailed\treq_per_s\tmean_us\tp50_us\tp99_us\tcpu_s\tcpu_us_per_req\tbytes_per_resp\texpect_bytes\trss_kb\tcontended\tgrpc_ok\tgrpc_other\tvalid\twhy\n' > "$RESULTS"

if [ "$WARMUP" -gt 0 ]; then
  for run in "${RUNS[@]}"; do
    read -r cs s c m <<<"$run"
    ensure_alive "$s"
    log "warm-up $cs on $s -c $c -m $m for ${WARMUP}s"
    # shellcheck disable=SC2046
    h2load_case "$cs" "$s" "$c" "$m" -D "$WARMUP" > /dev/null 2>&1 || true
  done
fi

n=${#RUNS[@]}
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    read -r cs s c m <<<"${RUNS[$(( (i + r - 1) % n ))]}"   # rotate the order every round
    tag="r${r}-${cs}-${s}-c${c}m${m}"
    # shellcheck disable=SC2046
    log "round $r: $cs on $s -c $c -m $m $(limit_args "$cs")"
    ensure_alive "$s"
    expect=0
    [ "$cs" = grpc-get ] && expect=${GETB[$s]}
    [ "$cs" = grpc-health ] && expect=7
    busy0=$(other_build)
    scrape "$s" "$OUT_DIR/$tag.before.prom"
    t0=$(cpu_ticks "${PID[$s]}")
    ( while sleep 1; do [ "$(other_build)" = 1 ] && { echo 1 > "$OUT_DIR/.busy"; break; }; done ) &
    sampler=$!
    h2rc=0
    # shellcheck disable=SC2046
    h2load_case "$cs" "$s" "$c" "$m" $(limit_args "$cs") --log-file="$OUT_DIR/$tag.lat" > "$OUT_DIR/$tag.out" 2>&1 \
      || { h2rc=$?; log "h2load exited $h2rc for $tag (see $OUT_DIR/$tag.out)"; }
    kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
    if ! t1=$(cpu_ticks "${PID[$s]}" 2>/dev/null); then
      log "warning: weft ($s) died during $tag; run dropped (see $OUT_DIR/weft-$s.log)"
      rm -f "$OUT_DIR/.busy" "$OUT_DIR/$tag.lat"
      continue
    fi
    scrape "$s" "$OUT_DIR/$tag.after.prom"
    busy1=$(other_build)
    contended=0
    if [ "$busy0" = 1 ] || [ "$busy1" = 1 ] || [ "$(cat "$OUT_DIR/.busy" 2>/dev/null)" = 1 ]; then contended=1; fi
    rm -f "$OUT_DIR/.busy"
    [ "$contended" = 1 ] && log "note: a compiler was running around $tag; its figures are contended"
    PYTHONPATH="$HERE" python3 - "$OUT_DIR/$tag.out" "$OUT_DIR/$tag.lat" "$r" "$cs" "$s" "$c" "$m" "$(( t1 - t0 ))" "$CLK_TCK" \
      "$expect" "$(rss_kb "${PID[$s]}")" "$contended" "$OUT_DIR/$tag.before.prom" "$OUT_DIR/$tag.after.prom" "$h2rc" "$tag" \
      >> "$RESULTS" <<'PY'
import sys
from h2load_results import log_durations, nearest_rank, parse_output, run_verdict, status_note   # PYTHONPATH=$HERE
out, lat, r, cs, s, c, m, ticks, hz, expect, rss, contended, before, after, h2rc, tag = sys.argv[1:]
h = parse_output(open(out, errors="replace").read())
METHOD = {"grpc-get": ("weft.v1.WorkflowService", "GetWorkflow"), "grpc-health": ("grpc.health.v1.Health", "Check")}
read = lambda p: open(p).read() or None
if cs in METHOD:   # every measured call must have ended with grpc-status OK (the server's own count)
    v = run_verdict(h, int(h2rc), read(before), read(after), *METHOD[cs])
    note = status_note(v, h)
else:              # REST: the HTTP status h2load sees is the answer's status
    v = run_verdict(h, int(h2rc))
    note = "REST: HTTP status checked by h2load"

reqps = "" if h["req_per_s"] is None else h["req_per_s"]
total = h["total"]
ok = h["succeeded"]          # completed 2xx responses in the measured period
failed = h["failed"]         # non-2xx + errored (stream/connection errors)
codes2xx = h["codes_2xx"]    # also counts responses cut off at the end of -D
data = h["data_bytes"]
mean = "" if h["mean_us"] is None else h["mean_us"]
durs = log_durations(lat)    # 2xx durations (µs) from --log-file
def pct(q):
    v = nearest_rank(durs, q)
    return "" if v is None else v
cpu_s = int(ticks) / int(hz)
cpu_per = cpu_s * 1e6 / ok if ok else ""
bpr = data / codes2xx if codes2xx else ""
if int(expect) and ok and bpr < 0.9 * int(expect):
    v["valid"] = False
    v["why"].append("%.0f body bytes per response, expected %s (trailers-only gRPC errors counted as HTTP 200)"
                    % (bpr, expect))
print("[bench-api] %s: %s; %s" % (tag, note, "valid" if v["valid"] else "INVALID, left out of the figures: "
                                  + "; ".join(v["why"])), file=sys.stderr)
other = ",".join("%s:%d" % kv for kv in sorted((v["grpc_other"] or {}).items()))
fmt = lambda x: ("%.1f" % x) if isinstance(x, float) else str(x)
print("\t".join(fmt(x) for x in (r, cs, s, c, m, total, ok, failed, reqps, mean,
                                  pct(0.50), pct(0.99), round(cpu_s, 3), cpu_per, bpr, expect, rss, contended,
                                  "" if v["grpc_ok"] is None else v["grpc_ok"], other, 1 if v["valid"] else 0,
                                  "; ".join(v["why"]).replace("\t", " "))))
PY
    rm -f "$OUT_DIR/$tag.lat" "$OUT_DIR/$tag.before.prom" "$OUT_DIR/$tag.after.prom"
  done
done

# ---------------------------------------------------------------- report
report_rc=0
python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$H2LOAD_THREADS" "$CREATE_N" "$WEFT_BIN" <<'PY' || report_rc=$?
import csv, statistics, sys, datetime, platform, os, subprocess
res, rounds, duration, h2t, create_n, weft_bin = sys.argv[1:]
all_rows = list(csv.DictReader(open(res), delimiter="\t"))
rows = [r for r in all_rows if r.get("valid") == "1"]       # invalid runs are left out of every figure
invalid = [r for r in all_rows if r.get("valid") != "1"]
def med(vals):
    v = [float(x) for x in vals if x not in ("", None)]
    return statistics.median(v) if v else None
def f(v, spec):
    return "n/a" if v is None else format(v, spec)
ver = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
LABEL = {
    "grpc-get": ("GetWorkflow", "gRPC h2c"),
    "grpc-health": ("Health/Check", "gRPC h2c"),
    "rest-get": ("GET /workflows/{id}", "HTTP/1.1"),
    "rest-get-h2": ("GET /workflows/{id}", "HTTP/2 h2c"),
    "create": ("POST /workflows", "HTTP/1.1"),
}
ORDER = ["grpc-get", "grpc-health", "rest-get", "rest-get-h2", "create"]
keys = []
for r in all_rows:
    k = (r["case"], r["server"], r["c"], r["m"])
    if k not in keys:
        keys.append(k)
keys.sort(key=lambda k: (ORDER.index(k[0]), k[1] != "full", int(k[2]) * int(k[3])))
M = {}
print()
limit = ("-n %s" % create_n) if create_n != "0" else ("%s s" % duration)
print("Weft API benchmark, %s, %s, %d cores, %s, %s; %s rounds x %s s (create: %s), h2load -t %s; medians over rounds."
      % (datetime.date.today().isoformat(), platform.machine(), os.cpu_count(), os.path.basename(weft_bin), ver,
         rounds, duration, limit, h2t))
print()
print("| call | transport | store-sync | h2load | req/s | mean | p50 | p99 | server CPU / req | body B / resp | failed | runs (contended) |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for k in keys:
    cs, s, c, m = k
    g = [r for r in rows if (r["case"], r["server"], r["c"], r["m"]) == k]
    g_all = [r for r in all_rows if (r["case"], r["server"], r["c"], r["m"]) == k]
    M[k] = {x: med(r[x] for r in g) for x in ("req_per_s", "mean_us", "p50_us", "p99_us", "cpu_us_per_req", "bytes_per_resp")}
    h1 = cs in ("rest-get", "create")
    setting = ("--h1 -c %s%s" % (c, "" if m == "1" else " -m %s" % m)) if h1 else ("-c %s -m %s" % (c, m))
    print("| %s | %s | %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s | %d | %d (%d) |" % (
        LABEL[cs][0], LABEL[cs][1], s, setting,
        f(M[k]["req_per_s"], ".0f"), f(M[k]["mean_us"], ".0f"), f(M[k]["p50_us"], ".0f"), f(M[k]["p99_us"], ".0f"),
        f(M[k]["cpu_us_per_req"], ".1f"), f(M[k]["bytes_per_resp"], ".0f"),
        sum(int(r["failed"] or 0) for r in g_all), len(g), sum(1 for r in g if r["contended"] == "1")))
print()
print("Medians over the valid runs; `runs` counts them, `failed` counts h2load's failed requests over all runs. "
      "gRPC rows: every call's grpc-status checked from the server's /metrics (grpc_server_handled_total delta: "
      "all OK, covering h2load's successes); REST rows: HTTP status.")
if invalid:
    print()
    print("**%d invalid run(s), left out of the figures:**" % len(invalid))
    for r in invalid:
        print("* round %s, %s on %s -c %s -m %s (%s req/s as h2load counted): %s" % (
            r["round"], LABEL[r["case"]][0], r["server"], r["c"], r["m"], r["req_per_s"] or "n/a",
            r.get("why") or "invalid"))
ratio = lambda a, b: None if a is None or b in (None, 0) else a / b
settings = sorted({(k[2], k[3]) for k in keys if k[0] == "grpc-get"}, key=lambda x: int(x[0]) * int(x[1]))
pairs = [(st, ("grpc-get", "full") + st, ("grpc-health", "full") + st) for st in settings]
pairs = [p for p in pairs if p[2] in M]
if pairs:
    print()
    print("| GetWorkflow / Health/Check | req/s | server CPU / req | p50 | p99 |")
    print("|---|---:|---:|---:|---:|")
    for st, g, h in pairs:
        print("| -c %s -m %s | %s | %s | %s | %s |" % (st[0], st[1],
            f(ratio(M[g]["req_per_s"], M[h]["req_per_s"]), ".2f"), f(ratio(M[g]["cpu_us_per_req"], M[h]["cpu_us_per_req"]), ".2f"),
            f(ratio(M[g]["p50_us"], M[h]["p50_us"]), ".2f"), f(ratio(M[g]["p99_us"], M[h]["p99_us"]), ".2f")))
    print()
    print("(ratio > 1 for req/s means GetWorkflow is faster; for CPU and latency, that it costs more.)")
# REST against the same call over gRPC (Step 13's target: server CPU per request within 2×),
# each REST setting against a gRPC one: one request at a time per connection against -m 1,
# pipelined or multiplexed against the most multiplexed gRPC setting.
grpc_gets = sorted([k for k in keys if k[0] == "grpc-get" and k in M], key=lambda k: int(k[3]))
rests = [k for k in keys if k[0] in ("rest-get", "rest-get-h2") and k in M]
if grpc_gets and rests:
    print()
    print("| REST GetWorkflow ÷ gRPC GetWorkflow | REST µs / req | gRPC µs / req (setting) | CPU ratio | target ≤ 2 |")
    print("|---|---:|---:|---:|:---:|")
    for k in rests:
        # One at a time against one at a time; pipelined or multiplexed against the most multiplexed gRPC.
        g = next((x for x in grpc_gets if x[3] == "1"), grpc_gets[0]) if k[3] == "1" else grpc_gets[-1]
        r = ratio(M[k]["cpu_us_per_req"], M[g]["cpu_us_per_req"])
        setting = ("HTTP/1.1 -c %s -m %s" if k[0] == "rest-get" else "HTTP/2 -c %s -m %s") % (k[2], k[3])
        print("| %s | %s | %s (-c %s -m %s) | %s | %s |" % (setting, f(M[k]["cpu_us_per_req"], ".1f"),
            f(M[g]["cpu_us_per_req"], ".1f"), g[2], g[3], f(r, ".2f"), "met" if r is not None and r <= 2 else "**not met**"))
creates = [k for k in keys if k[0] == "create"]
full = next((k for k in creates if k[1] == "full"), None)
if full and len(creates) > 1:
    print()
    print("| POST /workflows | req/s | vs full | server CPU / req | p50 | p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in creates:
        print("| --store-sync %s | %s | %s× | %s µs | %s µs | %s µs |" % (k[1], f(M[k]["req_per_s"], ".0f"),
            f(ratio(M[k]["req_per_s"], M[full]["req_per_s"]), ".2f"), f(M[k]["cpu_us_per_req"], ".1f"),
            f(M[k]["p50_us"], ".0f"), f(M[k]["p99_us"], ".0f")))
print()
restarts = os.path.join(os.path.dirname(res), "restarts")
if os.path.exists(restarts):
    print("Restarted during the run (exited unexpectedly): %s." % ", ".join(sorted(set(open(restarts).read().split()))))
    print()
if any(r["contended"] == "1" for r in rows):
    print("Contended runs: a compiler process was seen during the run; rerun on an idle machine for clean figures.")
    print()
print("Raw results: %s" % res)
if invalid:
    sys.exit(1)
PY
log "raw results and logs in $OUT_DIR"
if [ "$report_rc" != 0 ]; then
  log "invalid runs (see the report above); exit status 1"
  exit 1
fi
