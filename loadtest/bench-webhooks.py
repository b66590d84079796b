#!/usr/bin/env python3
"""Step-8 benchmark: webhook trigger to execution accepted.

    python3 loadtest/bench-webhooks.py                             # phase A 20 s, then phase B 20 s at 50 %
    python3 loadtest/bench-webhooks.py --signed                    # an HMAC-signed trigger (Python client)
    python3 loadtest/bench-webhooks.py --sustainable-rate 1400     # skip phase A, take this rate
    python3 loadtest/bench-webhooks.py --exec-duration 3 --duration 3 --warmup 1   # quick check

Target: POST /hooks/{id} answered 202 with p99 under 10 ms at 50 % of the
sustainable execute rate.

The script starts `$WEFT_BIN serve --host 127.0.0.1 --port 0 --data-dir DIR
--scrypt-log-n 10 --token-ttl 7200 --plan bench:...=0 --default-plan bench
[--store-sync S] [--server-args ...]` on a fresh data dir (OUT_DIR/data, or
DATA_DIR when set; the plan `bench` limits nothing, so no quota refuses a
request), registers and logs in a user and creates one workflow with one noop
task. Then:

**Phase A, the sustainable execute rate.** `h2load --h1 -t 1 -c C -D D`
(--exec-connections 32, --exec-duration 20) sends POST
/workflows/{id}/execute (`{"input": {}}`, bearer token) in a closed loop on C
keep-alive connections. /metrics is read before and after the load and polled
once a second during it (weft_executions_in_flight). Reported: accepted/s (202
answers / D), completed/s during the load (weft_executions_finished_total
delta / D), the in-flight count over the run, and how long the backlog took to
drain after the load. When it drains within --drain-max (5) s the engine kept
up and the sustainable rate is the accepted rate; otherwise acceptance outran
completion and the sustainable rate is the completion rate during the load
(the report says which). Every answer must be 202. This is a closed-loop
maximum over REST with a one-task workflow; bench-executions.py's knee (open
loop, gRPC, three tasks) is another figure: pass it with --sustainable-rate to
use it instead.

**Phase B, webhook latency.** A webhook trigger is created on the workflow
(unsigned; with --signed a 32-byte secret, default X-Weft-Signature /
X-Weft-Timestamp headers; the server then also gets `--secrets-key-file
OUT_DIR/master.key`, a fresh random master key, since trigger secrets are
sealed with it). The phase waits until phase A's executions are
done, then sends POST /hooks/{id} at a fixed arrival rate R = --fraction
(0.5) x the sustainable rate, open loop, for --warmup (2) s unmeasured and
then --duration (20) s measured. The arrivals are spread over
K = ceil(R / --conn-rate) keep-alive connections (--conn-rate 20/s each, so a
connection's next request is due 50 ms after its last one); connection k sends
at t0 + (k + jK) / R, j = 0, 1, ...: uniform spacing, R/s in total.

Two clients (--client, default auto):

* `h2load` (default for an unsigned trigger): `h2load --h1 -c K --rps R/K
  -r 1 --rate-period P -n R*D -d BODY -H 'content-type: application/json'
  --log-file L URL` (the connections are opened P = 1000/R ms apart, so the
  K per-connection schedules interleave). Its `--rps` timer is drift-free
  (it submits round(elapsed x rps) requests per tick), so the offered rate is
  exact; each request is timed from its submission to the end of its answer.
  h2load cannot send a request on an HTTP/1.1 connection that is still waiting
  for an answer: a request due while its connection is busy is sent when the
  answer arrives, and its wait would be missing from the figures (coordinated
  omission). That only happens to requests behind one slower than the
  connection's interval (50 ms, five times the target), and it is corrected
  as HdrHistogram's recordValueWithExpectedInterval does: a sample v above
  the interval I adds v - I, v - 2I, ... (> 0) as samples of the requests that
  waited behind it. The verdict uses the corrected figures (equal to the raw
  ones when no request took longer than I). `--proto h2` uses one HTTP/2
  connection per client with up to 100 streams (no waiting at all below 100
  in flight; webhook senders use HTTP/1.1, hence the default). h2load is C and
  single-threaded (~0.1 core at 1,000 req/s), so it distorts less than a Python
  client on a 2-core machine;
* `python` (required for --signed: every request needs its own timestamp and
  HMAC-SHA256 signature, which h2load cannot vary): --procs processes (no
  shared interpreter lock), each running its share of the K connections as
  threads with http.client; each request's body is `{"seq": i}` (unique, so no
  signature repeats: a repeat would be a 409 replay), signed just before it is
  sent, and timed from its *scheduled* send time (a late send counts as
  latency: no coordinated omission, but the client's own delays count too;
  the send lag p99 is printed to show them).

Reported for phase B: requests, statuses (non-202 count), transport errors,
latency p50/p90/p99/p99.9/max (nearest rank; corrected and raw for h2load),
the achieved arrival rate, the server's weft_webhook_requests_total by
outcome, weft_trigger_executions_total{trigger="webhook"}, in flight during
the run, drain time, the executions by final status and the server's CPU.

Verdict (strict): PASS only if phase A answered every execute 202, every
measured webhook request got 202 (no other status, no transport error), the
server counted each as accepted, the achieved rate is within 5 % of R, the p99
is under --max-p99-ms (10) and the server is still running; else FAIL with
every reason, exit 1. A run with other load on the machine (> 0.25 cores, or a
compiler) is marked contended.

Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import hmac
import http.client
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "Tests" / "interop"))


from weft_process import load_bench_executions  # noqa: E402

bx = load_bench_executions()
sw = bx.sw
from weft_process import WeftProcess, cpu_ticks  # noqa: E402
from weft_helpers import parse_metrics  # noqa: E402
import h2load_results  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PLAN = "bench:concurrent_executions=0,executions_per_day=0,workflows=0,schedules=0,requests_per_minute=0"
EMAIL, PASSWORD = "bench-webhooks@bench.weft.test", "bench-password-1"
RATE_TOLERANCE = 0.05


def log(msg: str) -> None:
    print(f"[bench-webhooks] {msg}", file=sys.stderr, flush=True)


def rest(port, method, path, body=None, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = "Bearer " + token
        c.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else {})
    finally:
        c.close()


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        return parse_metrics(r.read().decode())


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Poller:
    """Reads /metrics once a second in a thread: (s since start, in flight, finished total)."""

    def __init__(self, port):
        self.port, self.rows, self.stop_evt = port, [], threading.Event()
        self.t0 = time.monotonic()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop_evt.wait(1.0):
            try:
                m = scrape(self.port)
            except OSError:
                continue
            self.rows.append((round(time.monotonic() - self.t0, 1),
                              int(bx.metric_sum(m, "weft_executions_in_flight") or 0),
                              int(bx.metric_sum(m, "weft_executions_finished_total") or 0)))

    def stop(self):
        self.stop_evt.set()
        self.th.join(5)
        return self.rows


def wait_drained(port, server, timeout):
    """Seconds until weft_executions_in_flight is 0 (None on timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and server.alive():
        if (bx.metric_sum(scrape(port), "weft_executions_in_flight") or 0) == 0:
            return time.monotonic() - t0
        time.sleep(0.25)
    return None


def status_counts(text):
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    return dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, m.groups()))) if m else {}


def pcts(sorted_vals):
    p = h2load_results.nearest_rank
    if not sorted_vals:
        return {"n": 0}
    return {"n": len(sorted_vals), "p50": p(sorted_vals, 0.5), "p90": p(sorted_vals, 0.9),
            "p99": p(sorted_vals, 0.99), "p999": p(sorted_vals, 0.999), "max": sorted_vals[-1]}


def fmt_lat(d, unit=1000.0):
    """Percentiles (µs values) as ms."""
    if not d or not d.get("n"):
        return "no samples"
    return ", ".join(f"{k} {d[k] / unit:.2f} ms" for k in ("p50", "p90", "p99", "p999", "max"))


def corrected(durs_us, interval_us):
    """HdrHistogram's recordValueWithExpectedInterval: every sample v > I also stands for the
    requests that waited behind it, v - I, v - 2I, ... (> 0). Sorted."""
    out = list(durs_us)
    if interval_us > 0:
        for v in durs_us:
            w = v - interval_us
            while w > 0:
                out.append(w)
                w -= interval_us
    out.sort()
    return out


# ---------------------------------------------------------------- phase A

def phase_a(a, port, token, wid, out_dir, server):
    body = os.path.join(out_dir, "execute.json")
    with open(body, "w") as f:
        f.write('{"input": {}}')
    url = f"http://127.0.0.1:{port}/workflows/{wid}/execute"
    cmd = ["h2load", "--h1", "-t", "1", "-c", str(a.exec_connections), "-D", f"{a.exec_duration:g}",
           "-d", body, "-H", "content-type: application/json", "-H", f"authorization: Bearer {token}", url]
    shown = shlex.join(cmd).replace(token, "$TOKEN")
    log(f"phase A: {shown}")
    before = scrape(port)
    poll = Poller(port)
    c0, ch0 = cpu_ticks(server.pid), children_cpu()
    watch = bx.CpuWatch(server.pid)
    watch.start()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.exec_duration + 120)
    end = scrape(port)
    cpu = watch.stop(children_cpu() - ch0)
    c1 = cpu_ticks(server.pid)
    drain = wait_drained(port, server, a.drain_timeout)
    rows = poll.stop()
    after = scrape(port)
    with open(os.path.join(out_dir, "phase-a.h2load.out"), "w") as f:
        f.write(r.stdout + r.stderr)
    h = h2load_results.parse_output(r.stdout)
    started = bx.metric_delta(before, end, "weft_executions_started_total") or 0
    finished_end = bx.metric_delta(before, end, "weft_executions_finished_total") or 0
    finished = bx.metric_delta(before, after, "weft_executions_finished_total") or 0
    completed = bx.metric_delta(before, after, "weft_executions_finished_total", status="Completed") or 0
    inflight_end = int(bx.metric_sum(end, "weft_executions_in_flight") or 0)
    res = {"command": shown, "h2load_rc": r.returncode, "summary_found": h["summary_found"],
           "codes": status_counts(r.stdout), "succeeded": h["succeeded"], "failed": h["failed"],
           "errored": h["errored"], "started_total": h["started"], "done": h["done"],
           "accepted_per_s": h["codes_2xx"] / a.exec_duration, "server_started": started,
           "completed_during_per_s": finished_end / a.exec_duration, "inflight_end": inflight_end,
           "inflight_max": max((x[1] for x in rows), default=None), "inflight_rows": rows,
           "drain_s": drain, "finished": finished, "completed": completed,
           "server_cpu_s": None if c0 is None or c1 is None else (c1 - c0) / CLK_TCK, "cpu": cpu,
           "mean_ms": None if h["mean_us"] is None else h["mean_us"] / 1000}
    if drain is not None and drain <= a.drain_max:
        res["sustainable"], res["basis"] = res["accepted_per_s"], "accepted (the backlog drained within " \
                                                                  f"{a.drain_max:g} s)"
    else:
        res["sustainable"], res["basis"] = res["completed_during_per_s"], (
            f"completed during the load (acceptance outran completion: {inflight_end} in flight at the end, "
            f"drained in {'>' + format(a.drain_timeout, 'g') if drain is None else format(drain, '.1f')} s)")
    res["valid_reasons"] = []
    if r.returncode != 0 or not h["summary_found"]:
        res["valid_reasons"].append(f"h2load exited {r.returncode} without a summary: {r.stderr.strip()[:200]}")
    if h["failed"] or h["errored"] or any(v for k, v in res["codes"].items() if k != "2xx"):
        res["valid_reasons"].append(f"phase A: not every execute answered 202 (status codes {res['codes']}, "
                                    f"failed {h['failed']}, errored {h['errored']})")
    if h["codes_2xx"] == 0:
        res["valid_reasons"].append("phase A: no execute accepted")
    return res


# ---------------------------------------------------------------- phase B clients

def h2load_run(a, port, hook, rate, n, conns, out_dir, name):
    body = os.path.join(out_dir, "hook.json")
    with open(body, "w") as f:
        f.write('{"source": "bench-webhooks", "event": "ping"}')
    lat = os.path.join(out_dir, f"{name}.lat")
    period_ms = max(1, int(round(1000.0 / rate)))
    proto = ["--h1"] if a.proto == "h1" else ["-m", "100"]
    cmd = ["h2load"] + proto + ["-t", "1", "-c", str(conns), "-n", str(n), "--rps", f"{rate / conns:.6g}",
                                "-r", "1", "--rate-period", f"{period_ms}ms", "-d", body,
                                "-H", "content-type: application/json", "--log-file", lat,
                                f"http://127.0.0.1:{port}/hooks/{hook}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=n / rate + 120)
    with open(os.path.join(out_dir, f"{name}.h2load.out"), "w") as f:
        f.write(r.stdout + r.stderr)
    rows = []
    with open(lat) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) >= 3:
                rows.append((int(p[0]), int(p[1]), int(p[2])))   # start µs (wall), status, duration µs
    h = h2load_results.parse_output(r.stdout)
    return {"cmd": shlex.join(cmd), "rc": r.returncode, "summary": h, "codes": status_counts(r.stdout),
            "rows": rows, "stderr": r.stderr.strip()[:300]}


def py_worker(port, hook, secret, conns, rate, n, t0, out_q):
    """This process's connections (list of indexes k of K); sends request i = k + jK at t0 + i/R.
    Puts [(i, status, latency µs from the scheduled time, send lag µs)], errors."""
    K = conns[1]
    mine = conns[0]
    results, errors = [], collections.Counter()
    lock = threading.Lock()

    def conn_loop(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local = []
        for i in range(k, n, K):
            due = t0 + i / rate
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            sent = time.monotonic()
            body = json.dumps({"seq": i}, separators=(",", ":")).encode()
            headers = {"content-type": "application/json"}
            if secret:
                ts = str(int(time.time()))
                sig = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
                headers["X-Weft-Timestamp"] = ts
                headers["X-Weft-Signature"] = "sha256=" + sig
            try:
                c.request("POST", f"/hooks/{hook}", body=body, headers=headers)
                resp = c.getresponse()
                resp.read()
                end = time.monotonic()
                local.append((i, resp.status, int((end - due) * 1e6), int((sent - due) * 1e6)))
                if (resp.getheader("connection") or "").lower() == "close":
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            except (OSError, http.client.HTTPException) as e:
                end = time.monotonic()
                local.append((i, -1, int((end - due) * 1e6), int((sent - due) * 1e6)))
                with lock:
                    errors[type(e).__name__] += 1
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.close()
        with lock:
            results.extend(local)

    ts = [threading.Thread(target=conn_loop, args=(k,), daemon=True) for k in mine]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out_q.put((results, dict(errors)))


def python_run(a, port, hook, secret, rate, n, conns):
    procs_n = max(1, min(a.procs, conns))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    t0 = time.monotonic() + 0.5 + 0.05 * procs_n
    procs = []
    for p in range(procs_n):
        mine = list(range(p, conns, procs_n))
        pr = ctx.Process(target=py_worker, args=(port, hook, secret, (mine, conns), rate, n, t0, q), daemon=True)
        pr.start()
        procs.append(pr)
    rows, errors = [], collections.Counter()
    for _ in procs:
        r, e = q.get(timeout=n / rate + 120)
        rows += r
        errors.update(e)
    for pr in procs:
        pr.join(10)
    return {"rows": rows, "errors": dict(errors), "procs": procs_n, "t0": t0}


def phase_b(a, port, hook, secret, rate, out_dir, server):
    conns = max(1, math.ceil(rate / a.conn_rate))
    interval_us = conns / rate * 1e6
    client = a.client if a.client != "auto" else ("python" if a.signed else "h2load")
    res = {"rate": rate, "connections": conns, "interval_ms": interval_us / 1000, "client": client,
           "proto": a.proto if client == "h2load" else "h1", "reasons": [], "notes": []}
    nw, n = int(round(rate * a.warmup)), int(round(rate * a.duration))

    def run(count, name):
        if client == "h2load":
            return h2load_run(a, port, hook, rate, count, conns, out_dir, name)
        return python_run(a, port, hook, secret, rate, count, conns)

    if nw > 0:
        log(f"phase B warm-up: {nw} requests at {rate:.0f}/s over {conns} connections ({client})")
        run(nw, "phase-b-warmup")
        wait_drained(port, server, a.drain_timeout)
    log(f"phase B: {n} requests at {rate:.0f}/s over {conns} connections ({client}, {res['proto']})")
    before = scrape(port)
    poll = Poller(port)
    ch0 = children_cpu()
    watch = bx.CpuWatch(server.pid)
    watch.start()
    c0 = cpu_ticks(server.pid)
    out = run(n, "phase-b")
    c1 = cpu_ticks(server.pid)
    cpu = watch.stop(children_cpu() - ch0)
    drain = wait_drained(port, server, a.drain_timeout)
    rows_inflight = poll.stop()
    after = scrape(port)
    res.update(cpu=cpu, server_cpu_s=None if c0 is None or c1 is None else (c1 - c0) / CLK_TCK,
               client_cpu_s=children_cpu() - ch0, drain_s=drain,
               inflight_max=max((x[1] for x in rows_inflight), default=None))
    rows = out["rows"]
    statuses = collections.Counter(r[1] for r in rows)
    res["statuses"] = {str(k): v for k, v in sorted(statuses.items())}
    res["n_planned"], res["n_answered"] = n, len(rows)
    ok = sorted(r[2] for r in rows if r[1] == 202)
    if client == "h2load":
        res["command"] = out["cmd"]
        h = out["summary"]
        starts = sorted(r[0] for r in rows)
        res["achieved_rate"] = (len(starts) - 1) / ((starts[-1] - starts[0]) / 1e6) if len(starts) > 1 else None
        res["raw"] = pcts(ok)
        if a.proto == "h1":
            cor = corrected(ok, interval_us)
            res["corrected"] = pcts(cor)
            res["corrected_added"] = len(cor) - len(ok)
        else:
            res["corrected"], res["corrected_added"] = res["raw"], 0
            if ok and ok[-1] > 100 * interval_us:
                res["notes"].append("a request took longer than 100 connection intervals: with -m 100 later "
                                    "ones may have waited for a stream (not corrected)")
        res["judged"] = res["corrected"]
        if out["rc"] != 0 or not h["summary_found"]:
            res["reasons"].append(f"h2load exited {out['rc']} without a summary: {out['stderr']}")
        if h["errored"] or h["timeout"]:
            res["reasons"].append(f"h2load: {h['errored']} errored, {h['timeout']} timed out")
        res["transport_errors"] = statuses.get(-1, 0)
        res["send_lag"] = None
    else:
        res["command"] = (f"python client: {out['procs']} processes x threads, {conns} http.client keep-alive "
                          f"connections, uniform schedule" + (", HMAC-SHA256 signed" if secret else ""))
        lat = ok
        res["raw"] = res["corrected"] = res["judged"] = pcts(lat)
        res["corrected_added"] = 0
        lags = sorted(r[3] for r in rows)
        res["send_lag"] = pcts(lags)
        res["transport_errors"] = sum(out["errors"].values())
        res["transport_error_kinds"] = out["errors"]
        # arrival rate from the scheduled times actually sent (send = due + lag)
        sends = sorted(r[0] / rate * 1e6 + r[3] for r in rows)
        res["achieved_rate"] = (len(sends) - 1) / ((sends[-1] - sends[0]) / 1e6) if len(sends) > 1 else None
        if lags and res["send_lag"]["p99"] > 5000:
            res["notes"].append(f"the Python client sent late (send lag p99 {res['send_lag']['p99'] / 1000:.1f} ms): "
                                "it is part of the latency; it was short of CPU")
    # the server's view
    outcomes = {}
    for s in after.samples:
        if s.name == "weft_webhook_requests_total":
            o = s.labels.get("outcome", "")
            d = bx.metric_delta(before, after, "weft_webhook_requests_total", outcome=o)
            if d:
                outcomes[o] = int(d)
    res["server_outcomes"] = outcomes
    res["trigger_executions"] = bx.metric_delta(before, after, "weft_trigger_executions_total", trigger="webhook")
    res["finished"] = {}
    for s in after.samples:
        if s.name == "weft_executions_finished_total":
            st = s.labels.get("status", "")
            d = bx.metric_delta(before, after, "weft_executions_finished_total", status=st)
            if d:
                res["finished"][st] = res["finished"].get(st, 0) + int(d)
    # verdict of the phase
    non202 = {k: v for k, v in statuses.items() if k != 202}
    if non202:
        res["reasons"].append(f"{sum(non202.values())} requests not answered 202 (statuses {non202}; "
                              f"-1 = transport error)")
    if len(rows) != n:
        res["reasons"].append(f"{len(rows)} answers for {n} requests sent")
    if outcomes.get("accepted", 0) != len(ok):
        res["reasons"].append(f"the server counted {outcomes.get('accepted', 0)} accepted deliveries, the client "
                              f"{len(ok)} 202 answers")
    ar = res.get("achieved_rate")
    if ar is None or abs(ar - rate) > RATE_TOLERANCE * rate:
        res["reasons"].append(f"achieved rate {'n/a' if ar is None else '%.0f/s' % ar} is not within "
                              f"{RATE_TOLERANCE * 100:.0f} % of {rate:.0f}/s")
    p99 = res["judged"].get("p99")
    if p99 is None:
        res["reasons"].append("no latency measured")
    elif not p99 / 1000 < a.max_p99_ms:
        res["reasons"].append(f"p99 {p99 / 1000:.2f} ms >= {a.max_p99_ms:g} ms"
                              + (" (corrected for requests that waited behind slow ones)"
                                 if res["corrected_added"] else ""))
    if drain is None:
        res["notes"].append(f"the webhook executions did not all finish within {a.drain_timeout:g} s")
    bad = {k: v for k, v in res["finished"].items() if k != "Completed"}
    if bad:
        res["notes"].append(f"executions that did not end Completed: {bad}")
    return res


# ---------------------------------------------------------------- main

def check_flags(weft_bin, flags):
    text = subprocess.run([weft_bin, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    missing = [f for f in flags if f not in text]
    if missing:
        raise SystemExit(f"{weft_bin} serve has no {', '.join(missing)}")


def parse_args(argv=None):
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Step-8 benchmark: webhook delivery latency at half the execute rate.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    g = ap.add_argument_group("phase A (sustainable execute rate)")
    g.add_argument("--exec-connections", type=int, default=32, help="closed-loop connections (default 32)")
    g.add_argument("--exec-duration", type=float, default=20.0, help="seconds (default 20)")
    g.add_argument("--drain-max", type=float, default=5.0,
                   help="the accepted rate counts as sustainable if the backlog drains within this many s "
                        "(default 5); else the completion rate during the load is taken")
    g.add_argument("--sustainable-rate", type=float, default=None,
                   help="skip phase A and take this executions/s as the sustainable rate")
    g = ap.add_argument_group("phase B (webhooks)")
    g.add_argument("--fraction", type=float, default=0.5, help="webhook rate as a fraction of the sustainable "
                                                               "rate (default 0.5)")
    g.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    g.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first, same rate (default 2)")
    g.add_argument("--conn-rate", type=float, default=20.0,
                   help="requests/s per connection; connections = ceil(rate / this) (default 20)")
    g.add_argument("--signed", action="store_true", help="an HMAC-signed trigger; each request signed")
    g.add_argument("--client", choices=("auto", "h2load", "python"), default="auto",
                   help="auto: h2load unsigned, python signed")
    g.add_argument("--proto", choices=("h1", "h2"), default="h1", help="h2load's protocol (default h1)")
    g.add_argument("--procs", type=int, default=os.cpu_count() or 2, help="python client processes")
    g.add_argument("--max-p99-ms", type=float, default=10.0, help="p99 bound, ms (default 10)")
    g = ap.add_argument_group("server")
    g.add_argument("--drain-timeout", type=float, default=120.0, help="bound of every wait for executions to finish")
    g.add_argument("--store-sync", choices=("full", "normal"), default=env("SYNC"),
                   help="`serve --store-sync` (default: the server's, full)")
    g.add_argument("--server-args", default=env("WEFT_ARGS", ""), help="more `serve` arguments, one string")
    g.add_argument("--keep-data", action="store_true", default=env("KEEP_DATA") == "1")
    g.add_argument("--contended-cores", type=float, default=0.25)
    g.add_argument("--json", help="also write every figure to this JSON file")
    a = ap.parse_args(argv)
    if a.signed and a.client == "h2load":
        ap.error("--signed needs the python client (h2load cannot sign each request)")
    if a.fraction <= 0 or a.duration <= 0 or a.conn_rate <= 0 or a.exec_duration <= 0:
        ap.error("--fraction, --duration, --conn-rate and --exec-duration must be positive")
    return a


def contended(cpu, a):
    if not cpu:
        return False
    o = cpu.get("other_cores")
    return bool(cpu.get("compiler_seen") or (o is not None and o > a.contended_cores))


def main(argv=None):
    a = parse_args(argv)
    command = shlex.join([sys.executable] + sys.argv)
    envs = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in
                    ("WEFT_BIN", "DATA_DIR", "OUT_DIR", "WEFT_ARGS", "SYNC", "KEEP_DATA") if k in os.environ)
    full_command = (envs + " " if envs else "") + command
    log(f"command: {full_command}")
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found (apt-get install nghttp2-client)")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    weft_bin = os.environ.get("WEFT_BIN", str(REPO / ".build" / "release" / "weft"))
    if not os.access(weft_bin, os.X_OK):
        raise SystemExit(f"no executable at {weft_bin} (swift build -c release, or set WEFT_BIN)")
    check_flags(weft_bin, ["--plan", "--default-plan", "--token-ttl", "--scrypt-log-n"])
    out_dir = os.environ.get("OUT_DIR") or tempfile.mkdtemp(prefix="weft-bench-webhooks.", dir="/tmp")
    os.makedirs(out_dir, exist_ok=True)
    data_dir = os.environ.get("DATA_DIR") or os.path.join(out_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    args = ["--scrypt-log-n", "10", "--token-ttl", "7200", "--plan", PLAN, "--default-plan", "bench"]
    if a.store_sync:
        args += ["--store-sync", a.store_sync]
    if a.signed:
        # signed triggers keep their secret sealed: the server needs a master key (docs/SECURITY.md)
        key_file = os.path.join(out_dir, "master.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        args += ["--secrets-key-file", key_file]
    args += shlex.split(a.server_args)
    rep = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": full_command,
           "weft_bin": weft_bin, "out_dir": out_dir, "reasons": [], "notes": []}
    reasons, notes = rep["reasons"], rep["notes"]
    server, rc = None, 1
    try:
        server = WeftProcess(weft_bin, data_dir, args, out_dir, "webhooks")
        rep["server_command"] = shlex.join(server.cmd)
        log(f"server: {rep['server_command']}  [pid {server.pid}, port {server.port}, log {server.log_path}]")
        port = server.port
        token = sw.login("127.0.0.1", port, EMAIL, PASSWORD, "Bench Webhooks")
        st, wf = rest(port, "POST", "/workflows", {"name": "bench webhooks",
                                                   "tasks": [{"key": "a", "name": "noop", "action": "noop"}]}, token)
        if st != 201:
            raise RuntimeError(f"create workflow: HTTP {st}: {wf}")
        wid = wf["id"]

        if a.sustainable_rate:
            sustainable, basis = a.sustainable_rate, "given (--sustainable-rate)"
        else:
            pa = phase_a(a, port, token, wid, out_dir, server)
            rep["phase_a"] = pa
            reasons += pa["valid_reasons"]
            sustainable, basis = pa["sustainable"], pa["basis"]
            log(f"phase A: accepted {pa['accepted_per_s']:.0f}/s, completed {pa['completed_during_per_s']:.0f}/s "
                f"during the load; drained in {'n/a' if pa['drain_s'] is None else '%.1f' % pa['drain_s']} s "
                f"-> sustainable {sustainable:.0f}/s")
        rep["sustainable"], rep["sustainable_basis"] = sustainable, basis
        if not sustainable or sustainable <= 0:
            raise RuntimeError("no sustainable rate")

        secret = secrets.token_hex(16) if a.signed else ""
        body = {"type": "webhook", "description": "bench-webhooks"}
        if secret:
            body["signatureSecret"] = secret
        st, trig = rest(port, "POST", f"/workflows/{wid}/triggers", body, token)
        if st != 201:
            raise RuntimeError(f"create trigger: HTTP {st}: {trig}")
        rep["trigger"] = {"id": trig["id"], "signed": trig.get("signed", False)}
        if bool(trig.get("signed")) != a.signed:
            reasons.append(f"the trigger's signed is {trig.get('signed')}, expected {a.signed}")
        drained = wait_drained(port, server, a.drain_timeout)
        if drained is None:
            notes.append("phase A's executions had not finished when phase B started")
        rate = a.fraction * sustainable
        pb = phase_b(a, port, trig["id"], secret, rate, out_dir, server)
        rep["phase_b"] = pb
        reasons += pb["reasons"]
        notes += pb["notes"]
        rc = 0 if not reasons else 1
    except (SystemExit, Exception) as e:  # noqa: BLE001 - report what was measured, then fail
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        msg = str(e) if isinstance(e, (SystemExit, RuntimeError)) else traceback.format_exc()
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
        for ph in ("phase_a", "phase_b"):
            rep.get(ph, {}).pop("rows", None)
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1, default=str)
        print(f"JSON: {a.json}")
    return rc


def report(rep, a, rc):
    print()
    print(f"Weft webhooks benchmark, {rep['date']}, {platform.machine()}, {os.cpu_count()} cores, {rep['weft_bin']}")
    print(f"Command: {rep['command']}")
    if rep.get("server_command"):
        print(f"Server: {rep['server_command']}")
    pa = rep.get("phase_a")
    if pa:
        print()
        print(f"Phase A (execute, closed loop, {a.exec_connections} connections, {a.exec_duration:g} s): {pa['command']}")
        print(f"  accepted {pa['accepted_per_s']:.0f}/s (status codes {pa['codes']}, mean {pa['mean_ms'] or 0:.1f} ms); "
              f"completed during the load {pa['completed_during_per_s']:.0f}/s; in flight max "
              f"{pa['inflight_max']}, at the end {pa['inflight_end']}; drained "
              f"{'n/a' if pa['drain_s'] is None else 'in %.1f s' % pa['drain_s']}; "
              f"{pa['completed']:.0f}/{pa['finished']:.0f} finished Completed; server CPU "
              f"{pa['server_cpu_s'] or 0:.1f} s" + ("; CONTENDED" if contended(pa["cpu"], a) else ""))
        rows = pa["inflight_rows"]
        if rows:
            print("  in flight by second: " + ", ".join(str(r[1]) for r in rows[:: max(1, len(rows) // 15)]))
    if rep.get("sustainable"):
        print(f"Sustainable execute rate: {rep['sustainable']:.0f}/s, {rep['sustainable_basis']}")
    pb = rep.get("phase_b")
    if pb:
        print()
        print(f"Phase B (POST /hooks/{{id}}, {'signed' if rep['trigger']['signed'] else 'unsigned'}, open loop at "
              f"{a.fraction:g} x {rep['sustainable']:.0f} = {pb['rate']:.0f}/s, {pb['connections']} connections, "
              f"{pb['interval_ms']:.0f} ms apart each, {a.duration:g} s after {a.warmup:g} s warm-up):")
        print(f"  {pb['command']}")
        ar = pb.get("achieved_rate")
        print(f"  {pb['n_answered']}/{pb['n_planned']} answered, statuses {pb['statuses']}"
              + (f", transport errors {pb['transport_errors']}" if pb.get("transport_errors") else "")
              + f"; achieved arrival rate {'n/a' if ar is None else '%.0f/s' % ar}")
        if pb["client"] == "h2load":
            print(f"  latency (submission to answer, 202s): {fmt_lat(pb['raw'])}")
            if pb["corrected_added"]:
                print(f"  corrected for waits behind slower requests (+{pb['corrected_added']} samples): "
                      f"{fmt_lat(pb['corrected'])}")
            else:
                print(f"  no request took longer than its connection's interval ({pb['interval_ms']:.0f} ms): "
                      "nothing waited for a busy connection, no correction needed")
        else:
            print(f"  latency (scheduled send time to answer, 202s): {fmt_lat(pb['raw'])}")
            print(f"  client send lag (sent - scheduled): {fmt_lat(pb['send_lag'])}")
        print(f"  server: weft_webhook_requests_total {pb['server_outcomes']}, "
              f"weft_trigger_executions_total{{trigger=webhook}} +{pb['trigger_executions'] or 0:.0f}; "
              f"executions finished {pb['finished']}; in flight max {pb['inflight_max']}; drained "
              f"{'n/a' if pb['drain_s'] is None else 'in %.1f s' % pb['drain_s']}")
        cpu = pb["cpu"]
        print(f"  CPU: server {pb['server_cpu_s'] or 0:.1f} s, client {pb['client_cpu_s']:.1f} s over "
              f"{cpu['wall_s']:.1f} s; other load "
              f"{'n/a' if cpu.get('other_cores') is None else '%.2f cores' % cpu['other_cores']}"
              + ("; CONTENDED (a compiler or other processes were running)" if contended(cpu, a) else ""))
        if contended(cpu, a):
            rep["notes"].append("contended run: other load on the machine during phase B")
    print()
    if rep.get("server_log_problems"):
        print(f"Server log: {rep['server_log_problems']} warning/error lines, first: {rep['server_log_first'][:2]}")
    if rep.get("server_stop") and "exit status 0" not in rep["server_stop"]:
        print(f"Server: {rep['server_stop']}")
    for note in rep["notes"]:
        print(f"Note: {note}")
    print(f"Logs: {rep['out_dir']}")
    crit = (f"every webhook answered 202, p99 < {a.max_p99_ms:g} ms at {a.fraction:g} x the sustainable "
            f"execute rate, rate within {RATE_TOLERANCE * 100:.0f} %")
    if rc == 0:
        print(f"VERDICT: PASS ({crit})")
    else:
        print(f"VERDICT: FAIL ({crit}): " + "; ".join(rep["reasons"]))


if __name__ == "__main__":
    sys.exit(main())
