#!/usr/bin/env python3
"""Step-8 benchmark: 10,000 schedules due in the same minute.

    python3 loadtest/bench-schedules.py                          # 10,000 schedules, seconds spread 0-59
    python3 loadtest/bench-schedules.py --same-second            # all 10,000 at second 0 (the worst case)
    python3 loadtest/bench-schedules.py --schedules 300          # quick check of the script (~3-4 min)

Target: every tick fired, none twice, p99 fire lag under 1 s.

The script starts `$WEFT_BIN serve --host 127.0.0.1 --port 0 --data-dir DIR
--scrypt-log-n 10 --token-ttl 7200 --plan bench:...=0 --default-plan bench
[--store-sync S] [--server-args ...]` on a fresh data dir (OUT_DIR/data, or
DATA_DIR when set). The plan `bench` sets every quota to 0 (no limit:
concurrent_executions, executions_per_day, workflows, schedules,
requests_per_minute), so no tick can be skipped for a quota (the built-in
default plan, enterprise, is unlimited too, but WEFT_PLANS could change it).
A user registers and logs in; then

1. N/100 workflows (a workflow holds at most 100 schedules), one noop task
   each, are created over REST from --threads threads, each on its own
   keep-alive HTTP/1.1 connection;
2. the target minute T is the first whole UTC minute that starts at least
   N / --assumed-rate + --settle seconds from now (the creation estimate plus
   ~2 min of quiet), and N schedules are created the same way:
   schedule i on workflow i // 100 with the six-field cron `S M H * * *`,
   timezone UTC, where M H is T's minute and hour and S = i % 60 (seconds
   spread over the minute: ~N/60 ticks per second), or S = 0 for all with
   --same-second. Its tick is T + S. Every answer must be 201 and its
   `nextRunAt` must be that tick (this proves each schedule was created before
   its tick and that the cron means what the script thinks). The creation rate
   and the per-call latency are reported; creation must end at least
   --min-slack (20) s before T, else the run is invalid (a creation load in the
   minute would distort it; lower --assumed-rate);
3. /metrics is read 5 s before T and polled once a second from then on, until
   weft_schedule_ticks_fired_total has grown by N or T + 60 + --grace (60) s;
   then the script waits (up to --drain-timeout) until weft_executions_in_flight
   is 0 and reads /metrics again;
4. verification from the store, over the API: every workflow's executions
   (GET /workflows/{id}/executions, pageSize=1000, every page) and schedules
   (GET /workflows/{id}/schedules). Per (triggerId, scheduledTime) the count of
   executions must be 1, each schedule must have exactly one execution and it
   at its tick, none may come from an unknown trigger, the total must be N;
   the schedules' firedCount must sum to N and skippedCount/missedCount to 0.

Fire lag = createdAt - scheduledTime of each execution (server timestamps,
millisecond resolution): count, p50/p90/p99/max (nearest rank), also
startedAt - scheduledTime, and the worst tick second. From /metrics (deltas
over the minute): weft_schedule_ticks_fired_total,
weft_schedule_ticks_skipped_total by reason, weft_schedule_ticks_missed_total,
and the weft_schedule_fire_lag_seconds histogram (count, p50/p99 estimated
from its buckets as PromQL histogram_quantile does). Also the server's CPU over
the minute, executions by final status, warning/error lines in its log.

Verdict (strict): PASS only when every schedule fired exactly once at its
tick (N executions, none twice, none missing, none from elsewhere), no tick
was skipped or missed (metrics and schedules), the p99 of createdAt -
scheduledTime is under --max-p99-ms (1000), the run was valid (creation ended
>= --min-slack s before T, every create answered 201 with the expected
nextRunAt) and the server is still running; else FAIL with every reason, exit 1.
Executions that end other than Completed are reported, not judged (a tick
that started an execution fired). A run during which other processes used more
than 0.25 cores or a compiler ran is marked contended.

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import http.client
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "Tests" / "interop"))


from weft_process import load_bench_executions  # noqa: E402

bx = load_bench_executions()
sw = bx.sw
from weft_process import WeftProcess  # noqa: E402
from weft_helpers import parse_metrics, rfc3339_nanos  # noqa: E402

PER_WORKFLOW = 100          # a workflow holds at most 100 schedules
PLAN = "bench:concurrent_executions=0,executions_per_day=0,workflows=0,schedules=0,requests_per_minute=0"
EMAIL, PASSWORD = "bench-schedules@bench.weft.test", "bench-password-1"


def log(msg: str) -> None:
    print(f"[bench-schedules] {msg}", file=sys.stderr, flush=True)


def ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 timestamp."""
    return rfc3339_nanos(text) // 1_000_000


def iso(epoch_s: float) -> str:
    return datetime.datetime.fromtimestamp(epoch_s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_ms(v) -> str:
    return "n/a" if v is None else (f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms")


class Conn:
    """One keep-alive HTTP/1.1 connection. No silent retry: a create that fails in transit
    might have been applied, and a duplicate schedule would fire twice."""

    def __init__(self, port, token=None, timeout=60):
        self.port, self.token, self.timeout = port, token, timeout
        self.c = None

    def request(self, method, path, body=None):
        if self.c is None:
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if self.token:
            headers["authorization"] = "Bearer " + self.token
        try:
            self.c.request(method, path, body=data, headers=headers)
            resp = self.c.getresponse()
            payload = resp.read()
        except Exception:
            self.close()
            raise
        if (resp.getheader("connection") or "").lower() == "close":
            self.close()
        try:
            doc = json.loads(payload) if payload else {}
        except ValueError:
            doc = {"_raw": payload[:300].decode(errors="replace")}
        return resp.status, doc

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        return parse_metrics(r.read().decode())


def parallel(items, threads, port, token, fn, label, progress=True):
    """Runs fn(conn, item) -> (ok, value, error) over items from `threads` threads, each
    with its own connection. Returns (values by index, errors, call latencies s, elapsed s)."""
    items = list(items)
    lock = threading.Lock()
    it = iter(range(len(items)))
    values, errors, lats = [None] * len(items), [], []
    step = max(1, len(items) // 10)
    done = [0]
    stop = threading.Event()

    def worker():
        c = Conn(port, token)
        try:
            while not stop.is_set():
                with lock:
                    i = next(it, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    ok, value, err = fn(c, items[i])
                except Exception as e:  # noqa: BLE001 - reported
                    ok, value, err = False, None, f"{type(e).__name__}: {e}"
                dt = time.perf_counter() - t0
                with lock:
                    lats.append(dt)
                    values[i] = value
                    if not ok:
                        errors.append(f"{label} #{i}: {err}")
                        if len(errors) >= 20:
                            stop.set()
                    done[0] += 1
                    if progress and done[0] % step == 0:
                        log(f"{label}: {done[0]}/{len(items)} ({done[0] / (time.monotonic() - start):.0f}/s)")
        finally:
            c.close()

    start = time.monotonic()
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(min(threads, max(1, len(items))))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return values, errors, sorted(lats), time.monotonic() - start


def all_pages(conn, path, key, page_size):
    out, token = [], ""
    for _ in range(100000):
        q = {"pageSize": page_size}
        if token:
            q["pageToken"] = token
        status, doc = conn.request("GET", f"{path}?{urllib.parse.urlencode(q)}")
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {str(doc)[:300]}")
        out += doc.get(key, [])
        token = doc.get("nextPageToken", "")
        if not token:
            return out
    raise RuntimeError(f"paging {path} never ended")


def check_flags(weft_bin, flags):
    text = subprocess.run([weft_bin, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    missing = [f for f in flags if f not in text]
    if missing:
        raise SystemExit(f"{weft_bin} serve has no {', '.join(missing)}")


def parse_args(argv=None):
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Step-8 benchmark: N schedules due in one minute.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--schedules", "-n", type=int, default=int(env("SCHEDULES", 10000)),
                    help="schedules, all due in the target minute (default 10000)")
    ap.add_argument("--same-second", action="store_true",
                    help="every tick at second 0 of the minute (default: second i %% 60)")
    ap.add_argument("--threads", type=int, default=8, help="creating connections (default 8)")
    ap.add_argument("--assumed-rate", type=float, default=200.0,
                    help="schedules/s assumed when picking the target minute (default 200)")
    ap.add_argument("--settle", type=float, default=120.0,
                    help="seconds of quiet planned between the estimated end of creation and the target "
                         "minute (default 120)")
    ap.add_argument("--min-slack", type=float, default=20.0,
                    help="the run is invalid if creation ends less than this many s before the minute (default 20)")
    ap.add_argument("--grace", type=float, default=60.0,
                    help="seconds after the minute to wait for the last ticks (default 60)")
    ap.add_argument("--drain-timeout", type=float, default=120.0,
                    help="seconds to wait for the executions to finish (default 120)")
    ap.add_argument("--max-p99-ms", type=float, default=1000.0, help="p99 fire lag bound, ms (default 1000)")
    ap.add_argument("--store-sync", choices=("full", "normal"), default=env("SYNC"),
                    help="`serve --store-sync` (default: the server's, full)")
    ap.add_argument("--server-args", default=env("WEFT_ARGS", ""), help="more `serve` arguments, one string")
    ap.add_argument("--keep-data", action="store_true", default=env("KEEP_DATA") == "1",
                    help="keep the data dir (removed at exit otherwise unless DATA_DIR is set)")
    ap.add_argument("--contended-cores", type=float, default=0.25,
                    help="mark the run contended when other processes used more cores than this (default 0.25)")
    ap.add_argument("--json", help="also write every figure to this JSON file")
    a = ap.parse_args(argv)
    if a.schedules < 1 or a.threads < 1 or a.assumed_rate <= 0:
        ap.error("--schedules, --threads and --assumed-rate must be positive")
    return a


def main(argv=None):
    a = parse_args(argv)
    command = shlex.join([sys.executable] + sys.argv)
    envs = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in
                    ("WEFT_BIN", "DATA_DIR", "OUT_DIR", "WEFT_ARGS", "SYNC", "KEEP_DATA") if k in os.environ)
    full_command = (envs + " " if envs else "") + command
    log(f"command: {full_command}")
    weft_bin = os.environ.get("WEFT_BIN", str(REPO / ".build" / "release" / "weft"))
    if not os.access(weft_bin, os.X_OK):
        raise SystemExit(f"no executable at {weft_bin} (swift build -c release, or set WEFT_BIN)")
    check_flags(weft_bin, ["--plan", "--default-plan", "--token-ttl", "--scrypt-log-n"])
    out_dir = os.environ.get("OUT_DIR") or tempfile.mkdtemp(prefix="weft-bench-schedules.", dir="/tmp")
    os.makedirs(out_dir, exist_ok=True)
    data_dir = os.environ.get("DATA_DIR") or os.path.join(out_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    fs = subprocess.run(["stat", "-f", "-c", "%T", data_dir], capture_output=True, text=True).stdout.strip()
    if fs in ("tmpfs", "ramfs"):
        log(f"warning: {data_dir} is on {fs}: fsync is free there; set DATA_DIR to a disk")

    n, per_wf = a.schedules, PER_WORKFLOW
    n_wf = math.ceil(n / per_wf)
    args = ["--scrypt-log-n", "10", "--token-ttl", "7200", "--plan", PLAN, "--default-plan", "bench"]
    if a.store_sync:
        args += ["--store-sync", a.store_sync]
    args += shlex.split(a.server_args)
    rep = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": full_command,
           "weft_bin": weft_bin, "schedules": n, "workflows": n_wf, "same_second": a.same_second,
           "out_dir": out_dir, "reasons": [], "notes": []}
    reasons, notes = rep["reasons"], rep["notes"]
    server = None
    rc = 1
    try:
        server = WeftProcess(weft_bin, data_dir, args, out_dir, "schedules")
        rep["server_command"] = shlex.join(server.cmd)
        log(f"server: {rep['server_command']}  [pid {server.pid}, port {server.port}, log {server.log_path}]")
        port = server.port
        token = sw.login("127.0.0.1", port, EMAIL, PASSWORD, "Bench Schedules")

        # ------------------------------------------------------------ 1. workflows
        def create_wf(c, i):
            status, doc = c.request("POST", "/workflows", {
                "name": f"bench schedules {i}",
                "tasks": [{"key": "a", "name": "noop", "action": "noop"}]})
            return status == 201, doc.get("id"), f"HTTP {status}: {str(doc)[:200]}"

        wids, errs, lats, el = parallel(range(n_wf), a.threads, port, token, create_wf, "workflows",
                                        progress=False)
        if errs:
            raise RuntimeError(f"creating workflows failed: {errs[:3]}")
        rep["workflow_creation"] = {"n": n_wf, "elapsed_s": el, "rate": n_wf / el}
        log(f"{n_wf} workflows in {el:.2f} s ({n_wf / el:.0f}/s)")

        # ------------------------------------------------------------ 2. schedules
        now = time.time()
        target = math.ceil((now + n / a.assumed_rate + a.settle) / 60.0) * 60
        tm = time.gmtime(target)
        rep["target_minute"] = iso(target)
        plan = []
        for i in range(n):
            sec = 0 if a.same_second else i % 60
            plan.append({"i": i, "wid": wids[i // per_wf], "cron": f"{sec} {tm.tm_min} {tm.tm_hour} * * *",
                         "tick_ms": (target + sec) * 1000})
        log(f"target minute {iso(target)} ({target - now:.0f} s from now); creating {n} schedules, "
            f"cron '{'0' if a.same_second else 'i%60'} {tm.tm_min} {tm.tm_hour} * * *' UTC")

        def create_sch(c, p):
            status, doc = c.request("POST", f"/workflows/{p['wid']}/schedules", {
                "cron": p["cron"], "timezone": "UTC", "description": f"bench tick {p['i']}"})
            if status != 201:
                return False, None, f"HTTP {status}: {str(doc)[:200]}"
            nxt = doc.get("nextRunAt")
            if not nxt or ms(nxt) != p["tick_ms"]:
                return False, doc.get("id"), (f"nextRunAt {nxt} is not the tick {iso(p['tick_ms'] / 1000)} "
                                              f"(cron {p['cron']!r})")
            return True, doc["id"], None

        sids, errs, lats, el = parallel(plan, a.threads, port, token, create_sch, "schedules")
        t_create1 = time.time()
        created = sum(1 for s in sids if s)
        rep["schedule_creation"] = {
            "n": n, "created": created, "errors": len(errs), "first_errors": errs[:5], "elapsed_s": el,
            "rate": created / el if el else None, "threads": a.threads,
            "call_p50_ms": bx.pct(lats, 0.5) * 1000 if lats else None,
            "call_p99_ms": bx.pct(lats, 0.99) * 1000 if lats else None,
            "call_max_ms": lats[-1] * 1000 if lats else None,
            "slack_s": target - t_create1}
        sc = rep["schedule_creation"]
        log(f"{created} schedules in {el:.2f} s ({sc['rate']:.0f}/s; call p50 {fmt_ms(sc['call_p50_ms'])}, "
            f"p99 {fmt_ms(sc['call_p99_ms'])}); {sc['slack_s']:.0f} s before the target minute")
        if errs:
            reasons.append(f"invalid run: {len(errs)} schedule creates failed (first: {errs[0]})")
            raise RuntimeError("schedule creation failed")
        if sc["slack_s"] < a.min_slack:
            reasons.append(f"invalid run: creation ended {sc['slack_s']:.1f} s before the target minute "
                           f"(< --min-slack {a.min_slack:g} s); lower --assumed-rate (it was {a.assumed_rate:g}/s)")
        expected = {}   # schedule id -> tick ms
        for p, sid in zip(plan, sids):
            expected[sid] = p["tick_ms"]
        if len(expected) != n:
            reasons.append(f"the server returned {len(expected)} distinct schedule ids for {n} creates")

        # ------------------------------------------------------------ 3. the minute
        wait = target - 5 - time.time()
        if wait > 0:
            log(f"waiting {wait:.0f} s for {iso(target)} - 5 s")
            time.sleep(wait)
        before = scrape(port)
        fired0 = bx.metric_sum(before, "weft_schedule_ticks_fired_total") or 0.0
        watch = bx.CpuWatch(server.pid)
        watch.start()
        timeline = []   # (s after T, fired delta, in flight)
        deadline = target + 60 + a.grace
        all_fired_at = None
        while True:
            time.sleep(1.0)
            m = scrape(port)
            fired = (bx.metric_sum(m, "weft_schedule_ticks_fired_total") or 0.0) - fired0
            inflight = bx.metric_sum(m, "weft_executions_in_flight")
            now = time.time()
            timeline.append((round(now - target, 2), int(fired), None if inflight is None else int(inflight)))
            if fired >= n and all_fired_at is None:
                all_fired_at = now - target
            if (now >= target + 60 and fired >= n) or now >= deadline or not server.alive():
                break
        cpu_minute = watch.stop(0.0)
        rep["timeline"] = timeline
        rep["all_fired_by_poll_s"] = all_fired_at
        # drain
        t_drain = time.time()
        drained = None
        while time.time() - t_drain < a.drain_timeout and server.alive():
            m = scrape(port)
            if (bx.metric_sum(m, "weft_executions_in_flight") or 0) == 0:
                drained = time.time() - t_drain
                break
            time.sleep(0.5)
        rep["drain_s"] = drained
        after = scrape(port)

        mets = {
            "fired": bx.metric_delta(before, after, "weft_schedule_ticks_fired_total"),
            "missed": bx.metric_delta(before, after, "weft_schedule_ticks_missed_total"),
            "skipped": bx.metric_delta(before, after, "weft_schedule_ticks_skipped_total"),
            "skipped_by_reason": {},
            "webhook_or_other_triggers": None,
        }
        for s in after.samples:
            if s.name == "weft_schedule_ticks_skipped_total":
                r = s.labels.get("reason", "")
                d = bx.metric_delta(before, after, "weft_schedule_ticks_skipped_total", reason=r)
                if d:
                    mets["skipped_by_reason"][r] = d
        buckets = bx.histogram_delta(before, after, "weft_schedule_fire_lag_seconds")
        mets["lag_hist_count"] = bx.histogram_count(buckets)
        for q in (0.5, 0.9, 0.99):
            v = bx.histogram_quantile(q, buckets)
            mets[f"lag_hist_p{int(q * 100)}_ms"] = None if v is None else v * 1000
        mets["lag_hist_le_1s"] = next((c for le, c in buckets if abs(le - 1.0) < 1e-9), None)
        rep["metrics"] = mets
        rep["cpu"] = cpu_minute

        # ------------------------------------------------------------ 4. verification
        log("reading every workflow's executions and schedules")
        c = Conn(port, token)
        execs, schedules = [], []
        for wid in wids:
            execs += all_pages(c, f"/workflows/{wid}/executions", "executions", 1000)
            schedules += all_pages(c, f"/workflows/{wid}/schedules", "schedules", 100)
        c.close()
        per_key = collections.Counter()
        per_sid = collections.defaultdict(list)
        unknown, wrong_tick, statuses = [], [], collections.Counter()
        lag_created, lag_started = [], []
        lag_by_sec = collections.defaultdict(list)
        first_created, last_created = None, None
        for e in execs:
            statuses[e.get("status", "?")] += 1
            sid = e.get("triggerId", "")
            if e.get("trigger") != "schedule" or sid not in expected:
                unknown.append(e.get("executionId"))
                continue
            st = ms(e["scheduledTime"]) if e.get("scheduledTime") else None
            per_key[(sid, st)] += 1
            per_sid[sid].append(st)
            if st != expected[sid]:
                wrong_tick.append((sid, e.get("scheduledTime")))
                continue
            cr = ms(e["createdAt"])
            lag_created.append(cr - st)
            if e.get("startedAt"):
                lag_started.append(ms(e["startedAt"]) - st)
            lag_by_sec[(st // 1000) % 60].append(cr - st)
            first_created = cr if first_created is None else min(first_created, cr)
            last_created = cr if last_created is None else max(last_created, cr)
        fired_once = sum(1 for sid in expected if per_sid.get(sid) == [expected[sid]])
        never = sum(1 for sid in expected if not per_sid.get(sid))
        twice = {k: v for k, v in per_key.items() if v > 1}
        extra = sum(v - 1 for v in twice.values())
        lag_created.sort()
        lag_started.sort()
        sched_fired = sum(int(s.get("firedCount", 0) or 0) for s in schedules)
        sched_skipped = sum(int(s.get("skippedCount", 0) or 0) for s in schedules)
        sched_missed = sum(int(s.get("missedCount", 0) or 0) for s in schedules)
        worst = None
        for sec, v in lag_by_sec.items():
            v.sort()
            p = bx.pct(v, 0.99)
            if worst is None or p > worst[2]:
                worst = (sec, len(v), p, v[-1])
        ver = {"executions": len(execs), "fired_once": fired_once, "never": never,
               "duplicate_keys": len(twice), "extra_executions": extra, "wrong_tick": len(wrong_tick),
               "unknown_trigger": len(unknown), "statuses": dict(statuses),
               "schedules_listed": len(schedules), "sched_fired": sched_fired,
               "sched_skipped": sched_skipped, "sched_missed": sched_missed,
               "lag_n": len(lag_created),
               "lag_p50_ms": bx.pct(lag_created, 0.5), "lag_p90_ms": bx.pct(lag_created, 0.9),
               "lag_p99_ms": bx.pct(lag_created, 0.99), "lag_max_ms": lag_created[-1] if lag_created else None,
               "lag_min_ms": lag_created[0] if lag_created else None,
               "started_lag_p50_ms": bx.pct(lag_started, 0.5), "started_lag_p99_ms": bx.pct(lag_started, 0.99),
               "started_lag_max_ms": lag_started[-1] if lag_started else None,
               "first_created_after_T_ms": None if first_created is None else first_created - target * 1000,
               "last_created_after_T_ms": None if last_created is None else last_created - target * 1000,
               "worst_second": worst}
        rep["verification"] = ver

        # ------------------------------------------------------------ verdict
        if ver["executions"] != n:
            reasons.append(f"{ver['executions']} executions for {n} schedules")
        if never:
            reasons.append(f"{never} schedules never fired")
        if twice:
            reasons.append(f"{len(twice)} ticks fired more than once ({extra} extra executions)")
        if wrong_tick:
            reasons.append(f"{len(wrong_tick)} executions at another tick (first {wrong_tick[0]})")
        if unknown:
            reasons.append(f"{len(unknown)} executions not from the benchmark's schedules")
        if sched_fired != n:
            reasons.append(f"schedules' firedCount sums to {sched_fired}, not {n}")
        if sched_skipped or sched_missed:
            reasons.append(f"schedules' skippedCount {sched_skipped}, missedCount {sched_missed}")
        if mets["fired"] != n:
            reasons.append(f"weft_schedule_ticks_fired_total grew by {mets['fired']}, not {n}")
        if mets["skipped"]:
            reasons.append(f"weft_schedule_ticks_skipped_total grew by {mets['skipped']:.0f} "
                           f"{mets['skipped_by_reason']}")
        if mets["missed"]:
            reasons.append(f"weft_schedule_ticks_missed_total grew by {mets['missed']:.0f}")
        if ver["lag_p99_ms"] is None:
            reasons.append("no fire lag measured")
        elif not ver["lag_p99_ms"] < a.max_p99_ms:
            reasons.append(f"fire lag p99 {ver['lag_p99_ms']} ms >= {a.max_p99_ms:g} ms")
        if drained is None:
            notes.append(f"executions did not all finish within {a.drain_timeout:g} s of the last tick")
        bad = {k: v for k, v in statuses.items() if k != "Completed"}
        if bad:
            notes.append(f"executions that did not end Completed: {bad}")
        rc = 0 if not reasons else 1
    except (SystemExit, Exception) as e:  # noqa: BLE001 - report what was measured, then fail
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        msg = str(e) if isinstance(e, (SystemExit, RuntimeError)) else traceback.format_exc()
        if not any(msg in r for r in reasons):
            reasons.append(f"aborted: {msg.strip()}")
        rc = 1
    finally:
        if server is not None:
            died = server.died()
            if died:
                reasons.append(died)
                rc = 1
            nprob, first = server.log_problems()
            rep["server_log_problems"], rep["server_log_first"] = nprob, first
            server.stop()
            rep["server_stop"] = server.exit_note
        if not a.keep_data and not os.environ.get("DATA_DIR"):
            shutil.rmtree(data_dir, ignore_errors=True)

    report(rep, a, rc)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1, default=str)
        print(f"JSON: {a.json}")
    return rc


def report(rep, a, rc):
    n = rep["schedules"]
    print()
    print(f"Weft schedules benchmark, {rep['date']}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{rep['weft_bin']}")
    print(f"Command: {rep['command']}")
    if rep.get("server_command"):
        print(f"Server: {rep['server_command']}")
    if rep.get("target_minute"):
        how = "all at second 0" if rep["same_second"] else "second = i % 60"
        print(f"Schedules: {n} on {rep['workflows']} workflows (<= {PER_WORKFLOW} each), one noop task, "
              f"cron 'S M H * * *' UTC, {how}; target minute {rep['target_minute']}")
    wc, sc = rep.get("workflow_creation"), rep.get("schedule_creation")
    if wc:
        print(f"Creation: {wc['n']} workflows in {wc['elapsed_s']:.2f} s ({wc['rate']:.0f}/s)", end="")
    if sc:
        print(f"; {sc['created']}/{n} schedules in {sc['elapsed_s']:.2f} s = {sc['rate']:.0f} schedules/s "
              f"({sc['threads']} connections; per call p50 {fmt_ms(sc['call_p50_ms'])}, "
              f"p99 {fmt_ms(sc['call_p99_ms'])}, max {fmt_ms(sc['call_max_ms'])}); "
              f"done {sc['slack_s']:.0f} s before the minute")
    elif wc:
        print()
    v = rep.get("verification")
    if v:
        print(f"Fired (store): {v['executions']} executions; schedules fired exactly once at their tick: "
              f"{v['fired_once']}/{n}; never: {v['never']}; ticks fired twice or more: {v['duplicate_keys']} "
              f"({v['extra_executions']} extra); at another tick: {v['wrong_tick']}; from elsewhere: "
              f"{v['unknown_trigger']}")
        print(f"Schedules (API): {v['schedules_listed']} listed; firedCount sum {v['sched_fired']}, "
              f"skippedCount {v['sched_skipped']}, missedCount {v['sched_missed']}")
        print(f"Fire lag createdAt - scheduledTime ({v['lag_n']} executions, 1 ms resolution): "
              f"p50 {fmt_ms(v['lag_p50_ms'])}, p90 {fmt_ms(v['lag_p90_ms'])}, p99 {fmt_ms(v['lag_p99_ms'])}, "
              f"max {fmt_ms(v['lag_max_ms'])} (min {fmt_ms(v['lag_min_ms'])}); startedAt - scheduledTime: "
              f"p50 {fmt_ms(v['started_lag_p50_ms'])}, p99 {fmt_ms(v['started_lag_p99_ms'])}, "
              f"max {fmt_ms(v['started_lag_max_ms'])}")
        if v["worst_second"]:
            sec, cnt, p99, mx = v["worst_second"]
            print(f"Worst tick second: :{sec:02d} ({cnt} ticks) p99 {fmt_ms(p99)}, max {fmt_ms(mx)}; "
                  f"executions created from T+{v['first_created_after_T_ms']} ms to "
                  f"T+{v['last_created_after_T_ms']} ms")
    m = rep.get("metrics")
    if m:
        f = lambda x: "n/a" if x is None else f"{x:.0f}"  # noqa: E731
        print(f"Metrics (deltas over the minute): weft_schedule_ticks_fired_total +{f(m['fired'])}, "
              f"weft_schedule_ticks_skipped_total +{f(m['skipped'])}"
              f"{' ' + str(m['skipped_by_reason']) if m['skipped_by_reason'] else ''}, "
              f"weft_schedule_ticks_missed_total +{f(m['missed'])}; weft_schedule_fire_lag_seconds: "
              f"count +{f(m['lag_hist_count'])}, <= 1 s: {f(m['lag_hist_le_1s'])}, "
              f"p50 ~{fmt_ms(m['lag_hist_p50_ms'])}, p99 ~{fmt_ms(m['lag_hist_p99_ms'])} (bucket estimates)")
    if v:
        print(f"Executions by status: {v['statuses']}; weft_executions_in_flight 0 "
              f"{'not reached' if rep.get('drain_s') is None else '%.1f s after the last poll' % rep['drain_s']}")
    cpu = rep.get("cpu")
    if cpu:
        sc_ = cpu.get("server_cpu_s")
        other = cpu.get("other_cores")
        contended = (other is not None and other > a.contended_cores) or cpu.get("compiler_seen")
        print(f"Server CPU from T-5 s to the last tick: {sc_:.1f} s over {cpu['wall_s']:.0f} s; other load "
              f"{'n/a' if other is None else '%.2f cores' % other}"
              + ("; CONTENDED (a compiler or other processes were running)" if contended else ""))
        if contended:
            rep["notes"].append("contended run: other load on the machine during the minute")
    tl = rep.get("timeline")
    if tl:
        marks = [row for row in tl if row[0] >= 0]
        print("Fired by (s after T: ticks fired, in flight): " + ", ".join(
            f"{t:+.0f}: {fi}/{inf}" for t, fi, inf in marks[:: max(1, len(marks) // 12)]))
    if rep.get("server_log_problems"):
        print(f"Server log: {rep['server_log_problems']} warning/error lines, first: {rep['server_log_first'][:2]}")
    if rep.get("server_stop") and "exit status 0" not in rep["server_stop"]:
        print(f"Server: {rep['server_stop']}")
    for note in rep["notes"]:
        print(f"Note: {note}")
    print(f"Logs: {rep['out_dir']}")
    crit = (f"every one of {n} schedules fired exactly once at its tick, none skipped/missed, "
            f"p99 fire lag < {a.max_p99_ms:g} ms")
    if rc == 0:
        print(f"VERDICT: PASS ({crit})")
    else:
        print(f"VERDICT: FAIL ({crit}): " + "; ".join(rep["reasons"]))


if __name__ == "__main__":
    sys.exit(main())
