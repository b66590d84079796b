#!/usr/bin/env bash
# Step-1 benchmark: unary grpc.health.v1.Health/Check over h2c, measured with h2load.
#
# Servers (each started once, on 127.0.0.1, port chosen by the OS or by this script):
#   weft          $WEFT_BIN serve --host 127.0.0.1 --port 0 --data-dir TMP
#   nghttpd       nghttpd --no-tls -d DIR PORT, GET of a 2-byte static file (the
#                 HTTP/2 floor: no gRPC framing, no handler)
#   grpc-swift-2  the peer built by loadtest/peers/grpc-swift-2/build.sh, if built
# Settings: "-c 16 -m 32" and "-c 1 -m 1", DURATION seconds each, ROUNDS rounds;
# the server order is rotated every round so no server always runs first/last.
# Per run: req/s and mean latency (h2load), p50/p99 (from h2load --log-file),
# server CPU per call = (utime+stime from /proc/PID/stat over the run) /
# succeeded requests, VmRSS after the run. The table shows medians over rounds
# of the valid runs only.
# h2load counts HTTP 2xx as success, but a gRPC error is HTTP 200 with a non-zero
# grpc-status in the trailers. So Weft's /metrics is scraped before and after every
# run: the delta of grpc_server_handled_total{Health/Check} must be all grpc_code
# OK, and at least h2load's successes (at most the calls it started). A run that
# fails this, or in which h2load saw any failure, is invalid: left out of the
# medians, listed with the reason, and the script exits 1. The grpc-swift-2 peer
# has no /metrics (its status is checked once by hand, not per run) and nghttpd
# serves a static file (no gRPC status at all); the report says so.
# Before the load runs: idle RSS of every server and the RSS added by
# IDLE_CONNS idle HTTP/2 connections (loadtest/idle_conns.py).
#
# Environment:
#   WEFT_BIN      weft binary (default .build/release/weft)
#   ROUNDS        rounds (default 3)
#   DURATION      seconds per measured run (default 10)
#   WARMUP        seconds of unmeasured h2load per server and setting before round 1 (default 2)
#   SERVERS       subset/order of "weft nghttpd grpc-swift-2" (default all that are available)
#   SETTINGS      space-separated CxM pairs (default "16x32 1x1")
#   PEER_BIN      grpc-swift-2 peer binary (default /tmp/weft-peer-grpc-swift-2/.build/release/WeftHealthPeer)
#   NGHTTPD_WORKERS  nghttpd --workers (default 1, nghttpd's own default)
#   H2LOAD_THREADS   h2load -t (default 1)
#   IDLE_CONNS    idle connections for the RSS test, 0 to skip (default 1000)
#   WEFT_ARGS     extra arguments appended to `weft serve`
#   OUT_DIR       where logs and raw results go (default a new /tmp/weft-bench.XXXXXX)
#
# Nothing is pinned: h2load and the server share the machine's cores (2 here),
# so absolute figures include client overhead; compare servers, not machines.
# Loopback only; every h2load run is bounded by -D and by `timeout`.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WEFT_BIN=${WEFT_BIN:-.build/release/weft}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SETTINGS=${SETTINGS:-"16x32 1x1"}
PEER_BIN=${PEER_BIN:-/tmp/weft-peer-grpc-swift-2/.build/release/WeftHealthPeer}
NGHTTPD_WORKERS=${NGHTTPD_WORKERS:-1}
H2LOAD_THREADS=${H2LOAD_THREADS:-1}
IDLE_CONNS=${IDLE_CONNS:-1000}
WEFT_ARGS=${WEFT_ARGS:-}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/weft-bench.XXXXXX)}
mkdir -p "$OUT_DIR"
CLK_TCK=$(getconf CLK_TCK)

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

command -v h2load >/dev/null || die "h2load not found (apt-get install nghttp2-client)"
command -v python3 >/dev/null || die "python3 not found"

# Let servers and h2load hold many sockets (the idle-connection test needs >1000).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- servers
declare -A PID PORT URL KIND STATUS
STARTED=()

cleanup() {
  for s in "${STARTED[@]}"; do
    p=${PID[$s]:-}
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for s in "${STARTED[@]}"; do
    p=${PID[$s]:-}
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$HERE/wait-listening.sh"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

printf '\0\0\0\0\0' > "$OUT_DIR/empty.grpc"   # gRPC frame: uncompressed, 0-byte HealthCheckRequest
mkdir -p "$OUT_DIR/htdocs"
printf 'ok' > "$OUT_DIR/htdocs/ok.txt"          # 2-byte static file for nghttpd

start_weft() {
  [ -x "$WEFT_BIN" ] || { log "skipping weft: no executable at $WEFT_BIN (build with: swift build -c release)"; return 1; }
  mkdir -p "$OUT_DIR/weft-data"
  # shellcheck disable=SC2086
  "$WEFT_BIN" serve --host 127.0.0.1 --port 0 --data-dir "$OUT_DIR/weft-data" $WEFT_ARGS \
    > "$OUT_DIR/weft.stdout" 2> "$OUT_DIR/weft.log" &
  PID[weft]=$!
  STARTED+=(weft)
  PORT[weft]=$(wait_listening "$OUT_DIR/weft.log" "${PID[weft]}") \
    || { cat "$OUT_DIR/weft.log" >&2; die "weft did not print 'listening on 127.0.0.1:PORT'"; }
  URL[weft]="http://127.0.0.1:${PORT[weft]}/grpc.health.v1.Health/Check"
  KIND[weft]=grpc
  STATUS[weft]=metrics   # gRPC status of every measured call verified from its /metrics
}

start_nghttpd() {
  if ! command -v nghttpd >/dev/null; then
    log "nghttpd not found; installing nghttp2-server"
    { apt-get install -y -qq nghttp2-server || { apt-get update -qq && apt-get install -y -qq nghttp2-server; }; } >&2 \
      || { log "skipping nghttpd: could not install nghttp2-server"; return 1; }
  fi
  local port
  port=$(free_port)
  nghttpd --no-tls --workers="$NGHTTPD_WORKERS" -d "$OUT_DIR/htdocs" "$port" \
    > "$OUT_DIR/nghttpd.log" 2>&1 &
  PID[nghttpd]=$!
  STARTED+=(nghttpd)
  for _ in $(seq 1 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null && break
    kill -0 "${PID[nghttpd]}" 2>/dev/null || { cat "$OUT_DIR/nghttpd.log" >&2; die "nghttpd exited"; }
    sleep 0.1
  done
  PORT[nghttpd]=$port
  URL[nghttpd]="http://127.0.0.1:$port/ok.txt"
  KIND[nghttpd]=static
  STATUS[nghttpd]=static  # a static file: HTTP status only, there is no gRPC status
}

start_peer() {
  [ -x "$PEER_BIN" ] || { log "skipping grpc-swift-2: no peer at $PEER_BIN (build: loadtest/peers/grpc-swift-2/build.sh)"; return 1; }
  "$PEER_BIN" --host 127.0.0.1 --port 0 > "$OUT_DIR/grpc-swift-2.stdout" 2> "$OUT_DIR/grpc-swift-2.log" &
  PID[grpc-swift-2]=$!
  STARTED+=(grpc-swift-2)
  PORT[grpc-swift-2]=$(wait_listening "$OUT_DIR/grpc-swift-2.log" "${PID[grpc-swift-2]}") \
    || { cat "$OUT_DIR/grpc-swift-2.log" >&2; die "grpc-swift-2 peer did not report its port"; }
  URL[grpc-swift-2]="http://127.0.0.1:${PORT[grpc-swift-2]}/grpc.health.v1.Health/Check"
  KIND[grpc-swift-2]=grpc
  STATUS[grpc-swift-2]=none  # no /metrics: gRPC status checked once by hand (check_grpc), not per run
}

# h2load with the right request shape for the server. Args: server, then h2load options.
run_h2load() {
  local s=$1; shift
  if [ "${KIND[$s]}" = grpc ]; then
    timeout $((DURATION + WARMUP + 60)) h2load -t "$H2LOAD_THREADS" "$@" -d "$OUT_DIR/empty.grpc" \
      -H 'content-type: application/grpc' -H 'te: trailers' "${URL[$s]}"
  else
    timeout $((DURATION + WARMUP + 60)) h2load -t "$H2LOAD_THREADS" "$@" "${URL[$s]}"
  fi
}

# gRPC servers must answer grpc-status 0 with HealthCheckResponse{SERVING} (00 00 00 00 02 08 01);
# h2load only sees the HTTP status, so check one call by hand first.
check_grpc() {
  local s=$1 out body
  command -v nghttp >/dev/null || { log "nghttp not found; cannot check $s's grpc-status"; return 0; }
  out=$(timeout 10 nghttp -v -d "$OUT_DIR/empty.grpc" -H 'content-type: application/grpc' -H 'te: trailers' "${URL[$s]}" 2>&1 | tr -d '\0' || true)
  grep -q 'grpc-status: 0' <<<"$out" || { echo "$out" >&2; die "$s: Health/Check did not answer grpc-status 0"; }
  body=$(timeout 10 nghttp -d "$OUT_DIR/empty.grpc" -H 'content-type: application/grpc' -H 'te: trailers' "${URL[$s]}" | od -An -tx1 | tr -s ' \n' ' ')
  [ "$body" = " 00 00 00 00 02 08 01 " ] || die "$s: unexpected Health/Check body:$body"
  log "$s: Health/Check -> grpc-status 0, SERVING"
}

cpu_ticks() {  # utime+stime of a process, in clock ticks (fields 14, 15 of /proc/PID/stat)
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# scrape SERVER FILE: Weft's /metrics into FILE (emptied when the server has none or the scrape fails)
scrape() {
  : > "$2"
  [ "${STATUS[$1]}" = metrics ] || return 0
  timeout 15 python3 "$HERE/h2load_results.py" scrape 127.0.0.1 "${PORT[$1]}" > "$2" \
    || { : > "$2"; log "warning: could not read $1's /metrics; its run cannot be verified"; }
}
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# 1 if a Swift/C compiler is running (the machine's 2 cores are shared with builds).
other_build() { if pgrep -f 'swift-build|swift-frontend|swiftc |clang|cc1' >/dev/null; then echo 1; else echo 0; fi; }

start_server() {
  case "$1" in
    weft) start_weft ;;
    nghttpd) start_nghttpd ;;
    grpc-swift-2) start_peer ;;
    *) die "unknown server: $1" ;;
  esac
}

# A server that exited (crash, or killed by something else on the machine) is restarted once
# per run so the remaining runs still happen; the log says so and its RSS restarts from scratch.
ensure_alive() {
  local s=$1 rc=0
  kill -0 "${PID[$s]}" 2>/dev/null && return 0
  wait "${PID[$s]}" 2>/dev/null || rc=$?
  log "warning: $s (pid ${PID[$s]}) is gone (exit status $rc); restarting it"
  echo "$s" >> "$OUT_DIR/restarts"
  start_server "$s" || die "could not restart $s"
  sleep 1
  if [ "${KIND[$s]}" = grpc ]; then check_grpc "$s"; fi
}

# ---------------------------------------------------------------- start
WANT=${SERVERS:-"weft nghttpd grpc-swift-2"}
ACTIVE=()
for s in $WANT; do
  if start_server "$s"; then ACTIVE+=("$s"); fi
done
[ "${#ACTIVE[@]}" -gt 0 ] || die "no server to benchmark"
sleep 1
for s in "${ACTIVE[@]}"; do
  log "$s: pid ${PID[$s]}, ${URL[$s]}"
  if [ "${KIND[$s]}" = grpc ]; then check_grpc "$s"; fi
done

RESULTS="$OUT_DIR/results.tsv"
IDLE="$OUT_DIR/idle.tsv"
printf 'round\tserver\tc\tm\treqs\tsucceeded\tfailed\treq_per_s\tmean_us\tp50_us\tp99_us\tcpu_s\tcpu_us_per_call\trss_kb\thwm_kb\tcontended\tstatus_check\tgrpc_ok\tgrpc_other\tvalid\twhy\n' > "$RESULTS"
printf 'server\tidle_rss_kb\tconns\testablished\trss_open_kb\tadded_kb\tbytes_per_conn\tvalid\twhy\n' > "$IDLE"

# ---------------------------------------------------------------- idle memory
for s in "${ACTIVE[@]}"; do
  ensure_alive "$s"
  idle=$(rss_kb "${PID[$s]}")
  if [ "$IDLE_CONNS" -gt 0 ]; then
    log "$s: idle RSS ${idle} kB; opening $IDLE_CONNS idle h2c connections"
    irc=0
    timeout 120 python3 "$HERE/idle_conns.py" --host 127.0.0.1 --port "${PORT[$s]}" --pid "${PID[$s]}" \
      -n "$IDLE_CONNS" --hold 3 --json > "$OUT_DIR/idle-$s.json" \
      || { irc=$?; log "$s: idle_conns.py reported a failure (exit $irc, see $OUT_DIR/idle-$s.json)"; }
    python3 - "$OUT_DIR/idle-$s.json" "$s" "$idle" "$irc" >> "$IDLE" <<'PY'
import json, sys
path, server, idle, rc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
try:
    d = json.load(open(path))
except Exception:
    d = {}
g = lambda k: d.get(k, "")
# idle_conns.py exits 1 when not every connection completed the handshake and stayed open until RSS was read.
why = "; ".join(d.get("problems") or []) or ("" if rc == 0 else "idle_conns.py exit status %d" % rc)
print("\t".join(str(x) for x in (server, idle, g("connections_requested"), g("connections_established"),
                                 g("rss_open_kb"), g("rss_added_kb"), g("rss_added_bytes_per_connection"),
                                 0 if why else 1, why)))
PY
  else
    printf '%s\t%s\t0\t\t\t\t\t1\t\n' "$s" "$idle" >> "$IDLE"
  fi
done

# ---------------------------------------------------------------- warm-up
if [ "$WARMUP" -gt 0 ]; then
  for setting in $SETTINGS; do
    c=${setting%x*}; m=${setting#*x}
    for s in "${ACTIVE[@]}"; do
      ensure_alive "$s"
      log "warm-up $s -c $c -m $m for ${WARMUP}s"
      run_h2load "$s" -D "$WARMUP" -c "$c" -m "$m" > /dev/null 2>&1 || true
    done
  done
fi

# ---------------------------------------------------------------- rounds
n=${#ACTIVE[@]}
for r in $(seq 1 "$ROUNDS"); do
  for setting in $SETTINGS; do
    c=${setting%x*}; m=${setting#*x}
    for i in $(seq 0 $((n - 1))); do
      s=${ACTIVE[$(( (i + r - 1) % n ))]}   # rotate the order every round
      tag="r${r}-${s}-c${c}m${m}"
      log "round $r: $s -c $c -m $m -D $DURATION"
      ensure_alive "$s"
      busy0=$(other_build)
      scrape "$s" "$OUT_DIR/$tag.before.prom"
      t0=$(cpu_ticks "${PID[$s]}")
      ( for _ in $(seq 1 "$DURATION"); do sleep 1; [ "$(other_build)" = 1 ] && { echo 1 > "$OUT_DIR/.busy"; break; }; done ) &
      sampler=$!
      h2rc=0
      run_h2load "$s" -D "$DURATION" -c "$c" -m "$m" --log-file="$OUT_DIR/$tag.lat" > "$OUT_DIR/$tag.out" 2>&1 \
        || { h2rc=$?; log "h2load exited $h2rc for $tag (see $OUT_DIR/$tag.out)"; }
      kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
      if ! t1=$(cpu_ticks "${PID[$s]}" 2>/dev/null); then
        log "warning: $s died during $tag; run dropped (see $OUT_DIR/$s.log)"
        rm -f "$OUT_DIR/.busy" "$OUT_DIR/$tag.lat"
        continue
      fi
      scrape "$s" "$OUT_DIR/$tag.after.prom"
      busy1=$(other_build)
      contended=0
      if [ "$busy0" = 1 ] || [ "$busy1" = 1 ] || [ "$(cat "$OUT_DIR/.busy" 2>/dev/null)" = 1 ]; then contended=1; fi
      rm -f "$OUT_DIR/.busy"
      [ "$contended" = 1 ] && log "note: a compiler was running around $tag; its figures are contended"
      PYTHONPATH="$HERE" python3 - "$OUT_DIR/$tag.out" "$OUT_DIR/$tag.lat" "$r" "$s" "$c" "$m" \
        "$(( t1 - t0 ))" "$CLK_TCK" "$(rss_kb "${PID[$s]}")" "$(hwm_kb "${PID[$s]}")" "$contended" \
        "${STATUS[$s]}" "$OUT_DIR/$tag.before.prom" "$OUT_DIR/$tag.after.prom" "$h2rc" "$tag" >> "$RESULTS" <<'PY'
import sys
from h2load_results import log_durations, nearest_rank, parse_output, run_verdict, status_note   # PYTHONPATH=$HERE
out, lat, r, s, c, m, ticks, hz, rss, hwm, contended, check, before, after, h2rc, tag = sys.argv[1:]
h = parse_output(open(out, errors="replace").read())
read = lambda p: open(p).read() or None
if check == "metrics":   # weft: every measured Health/Check must have ended with grpc-status OK
    v = run_verdict(h, int(h2rc), read(before), read(after), "grpc.health.v1.Health", "Check")
    note = status_note(v, h)
else:                    # h2load's HTTP status only
    v = run_verdict(h, int(h2rc))
    note = ("gRPC status not verified (no /metrics)" if check == "none"
            else "static file: HTTP status only, no gRPC status")
print("[bench] %s: %s; %s" % (tag, note, "valid" if v["valid"] else "INVALID, left out of the figures: " + "; ".join(v["why"])),
      file=sys.stderr)
other = ",".join("%s:%d" % kv for kv in sorted((v["grpc_other"] or {}).items()))
reqps = "" if h["req_per_s"] is None else h["req_per_s"]
total, succ, failed = h["total"], h["succeeded"], h["failed"]
mean = "" if h["mean_us"] is None else h["mean_us"]
durs = log_durations(lat)   # 2xx durations (µs) from --log-file
def pct(q):
    v = nearest_rank(durs, q)
    return "" if v is None else v
cpu_s = int(ticks) / int(hz)
cpu_per = cpu_s * 1e6 / succ if succ else ""
fmt = lambda v: ("%.1f" % v) if isinstance(v, float) else str(v)
# CPU with the precision its ticks give (1/CLK_TCK s over a run of ~10^6 calls).
cpu_per = "" if cpu_per == "" else "%.3f" % cpu_per
print("\t".join(fmt(x) for x in (r, s, c, m, total, succ, failed, reqps, mean, pct(0.50), pct(0.99),
                                  "%.2f" % cpu_s, cpu_per, rss, hwm, contended, check,
                                  "" if v["grpc_ok"] is None else v["grpc_ok"], other,
                                  1 if v["valid"] else 0, "; ".join(v["why"]).replace("\t", " "))))
PY
      rm -f "$OUT_DIR/$tag.lat" "$OUT_DIR/$tag.before.prom" "$OUT_DIR/$tag.after.prom"   # the summary row is kept
    done
  done
done

# ---------------------------------------------------------------- report
report_rc=0
python3 - "$RESULTS" "$IDLE" "$ROUNDS" "$DURATION" "$H2LOAD_THREADS" "$NGHTTPD_WORKERS" <<'PY' || report_rc=$?
import csv, statistics, sys, datetime, platform, os, subprocess
res, idle, rounds, duration, h2t, ngw = sys.argv[1:]
all_rows = list(csv.DictReader(open(res), delimiter="\t"))
rows = [r for r in all_rows if r.get("valid") == "1"]       # invalid runs are left out of every figure
invalid = [r for r in all_rows if r.get("valid") != "1"]
def med(vals):
    v = [float(x) for x in vals if x not in ("", None)]
    return statistics.median(v) if v else None
def f(v, spec):
    return "n/a" if v is None else format(v, spec)
ver = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
print()
print("Weft Health/Check benchmark, %s, %s, %d cores, %s; %s rounds x %s s, h2load -t %s, nghttpd --workers %s; medians over rounds."
      % (datetime.date.today().isoformat(), platform.machine(), os.cpu_count(), ver, rounds, duration, h2t, ngw))
print()
print("| server | h2load | req/s | mean | p50 | p99 | server CPU / call | RSS after run | failed | runs (contended) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
keys = []
for r in all_rows:
    k = (r["c"], r["m"], r["server"])
    if k not in keys:
        keys.append(k)
keys.sort(key=lambda k: (-int(k[0]) * int(k[1]), k[2]))
for c, m, s in keys:
    g = [r for r in rows if (r["c"], r["m"], r["server"]) == (c, m, s)]
    g_all = [r for r in all_rows if (r["c"], r["m"], r["server"]) == (c, m, s)]
    print("| %s | -c %s -m %s | %s | %s µs | %s µs | %s µs | %s µs | %s MiB | %d | %d (%d) |" % (
        s, c, m,
        f(med(r["req_per_s"] for r in g), ".0f"),
        f(med(r["mean_us"] for r in g), ".0f"),
        f(med(r["p50_us"] for r in g), ".0f"),
        f(med(r["p99_us"] for r in g), ".0f"),
        f(med(r["cpu_us_per_call"] for r in g), ".2f"),
        f(None if med(r["rss_kb"] for r in g) is None else med(r["rss_kb"] for r in g) / 1024, ".1f"),
        sum(int(r["failed"] or 0) for r in g_all), len(g), sum(1 for r in g if r.get("contended") == "1")))
print()
print("Medians over the valid runs; `runs` counts them, `failed` counts h2load's failed requests over all runs.")
# The step's target compares servers within a run: weft's server CPU per
# call over nghttpd's, round by round (both valid in the same round).
for c, m in sorted({(k[0], k[1]) for k in keys}, key=lambda cm: -int(cm[0]) * int(cm[1])):
    per_round = {}
    for r in rows:
        if (r["c"], r["m"]) == (c, m) and r["server"] in ("weft", "nghttpd") and r["cpu_us_per_call"]:
            per_round.setdefault(r["round"], {})[r["server"]] = float(r["cpu_us_per_call"])
    ratios = [v["weft"] / v["nghttpd"] for _, v in sorted(per_round.items()) if "weft" in v and "nghttpd" in v]
    if ratios:
        print()
        print("weft / nghttpd server CPU per call, -c %s -m %s, by round: %s; median **%.2f**" % (
            c, m, ", ".join("%.2f" % x for x in ratios), statistics.median(ratios)))
if invalid:
    print()
    print("**%d invalid run(s), left out of the figures above:**" % len(invalid))
    for r in invalid:
        print("* round %s, %s -c %s -m %s (%s req/s as h2load counted): %s" % (
            r["round"], r["server"], r["c"], r["m"], r["req_per_s"] or "n/a", r.get("why") or "invalid"))
checks = {}
for r in all_rows:
    checks.setdefault(r["server"], r.get("status_check", ""))
print()
for s, chk in checks.items():
    if chk == "metrics":
        print("* gRPC status, %s: checked for every run from its /metrics (delta of grpc_server_handled_total for "
              "Health/Check by grpc_code); a run counts only if every call ended OK and the OK count covers h2load's "
              "successes." % s)
    elif chk == "none":
        print("* gRPC status, %s: **not verified** per run (no /metrics); one call was checked by hand before the "
              "runs (grpc-status 0, SERVING). Its figures count HTTP 200 responses." % s)
    elif chk == "static":
        print("* gRPC status, %s: none — it serves a static file; its figures count HTTP 2xx responses." % s)
irows = list(csv.DictReader(open(idle), delimiter="\t"))
bad_idle = [r for r in irows if r.get("valid") == "0"]
if irows:
    print()
    print("| server | idle RSS | RSS with idle h2c conns | added | per connection |")
    print("|---|---:|---:|---:|---:|")
    for r in irows:
        ok = r.get("valid") != "0"
        kb = lambda k: "n/a" if not r.get(k) else "%.1f MiB" % (float(r[k]) / 1024)
        conns = r.get("conns") or "0"
        est = r.get("established") or "0"
        print("| %s | %s | %s (%s/%s) | %s | %s |" % (
            r["server"], kb("idle_rss_kb"), kb("rss_open_kb"), est, conns, kb("added_kb") if ok else "**invalid**",
            (("%.1f KiB" % (float(r["bytes_per_conn"]) / 1024)) if r.get("bytes_per_conn") else "n/a") if ok
            else "**invalid**"))
    for r in bad_idle:
        print()
        print("Idle-connection test of %s invalid: %s." % (r["server"], r.get("why") or "idle_conns.py failed"))
print()
restarts = os.path.join(os.path.dirname(res), "restarts")
if os.path.exists(restarts):
    print("Restarted during the run (exited unexpectedly): %s." % ", ".join(sorted(set(open(restarts).read().split()))))
    print()
if any(r.get("contended") == "1" for r in rows):
    print("Contended runs: a compiler process was seen during the run; rerun on an idle machine for clean figures.")
    print()
print("Raw results: %s" % res)
if invalid or bad_idle:
    sys.exit(1)
PY
log "raw results and logs in $OUT_DIR"
if [ "$report_rc" != 0 ]; then
  log "invalid runs (see the report above); exit status 1"
  exit 1
fi
