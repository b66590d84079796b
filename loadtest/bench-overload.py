#!/usr/bin/env python3
"""Step-11 benchmark: no collapse past the knee (admission control).

    python3 loadtest/bench-overload.py                       # knee search, then 1.5x and 3x for 30 s
    python3 loadtest/bench-overload.py --knee 1700           # skip the search
    python3 loadtest/bench-overload.py --base-bin /tmp/old/weft   # the same runs on another build (no verdict)

1. The knee: `weft-loadtest knee loadtest/scenarios/execute-3task.yaml` (3
   noop tasks a->b->c, ExecuteWorkflow over gRPC, open loop) over --rates on
   a fresh server: the highest offered rate within SLO (every call
   accepted, every execution Completed, completions/arrivals >= 0.95,
   createdAt->completedAt p99 <= --knee-p99-ms). Its chart is written next
   to the report.
2. Overload: the same scenario offered at 1.5x and 3x the knee for
   --duration seconds (a fresh server each). Target, per run:
     * completed executions/s (stored timestamps, over the run's window) >=
       90 % of the knee;
     * every accepted execution completes (none Failed, none left unfinished);
     * every refused call is RESOURCE_EXHAUSTED and carries retry-after;
       no other error;
     * p99 createdAt->completedAt of the accepted executions < 1 s.
3. A closed-loop REST flood as in the issue (`h2load -c 16 -m 32` of
   POST /workflows/{id}/execute for --flood-seconds): executions completed
   per second by the server's own counter (weft_executions_finished_total)
   against the knee; every answer 202 or 429.

Prints a table and PASS/FAIL per target; exits 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from weft_process import WeftProcess  # noqa: E402

SCENARIO = os.path.join(HERE, "scenarios", "execute-3task.yaml")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, timeout):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)


def metric_sum(text, name, **match):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
        if not m or m.group(1) != name:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(labels.get(k) == v for k, v in match.items()):
            total += float(m.group(3))
    return total


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def rest(port, method, path, body=None, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json",
                                          **({"authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def start(a, out, name):
    return WeftProcess(a.weft_bin, os.path.join(out, f"data-{name}"), [], out, name)


def find_knee(a, out):
    srv = start(a, out, "knee")
    try:
        res = run([a.loadtest_bin, "knee", SCENARIO, "--target", f"http://127.0.0.1:{srv.port}", "--rates", a.rates,
                   "--duration", a.knee_duration, "--max-p99-ms", a.knee_p99_ms, "--progress", "0",
                   "--keep-going", "1", "--out", out], timeout=3600)
        print(res.stdout)
        if res.returncode not in (0, 1):
            sys.exit(f"knee search failed: {res.stderr[-2000:]}")
        report = json.load(open(os.path.join(out, "knee-execute-3task.json")))
        return report["knee"], report
    finally:
        srv.stop()


def overload_run(a, out, rate, label):
    srv = start(a, out, label)
    try:
        path = os.path.join(out, f"overload-{label}.json")
        res = run([a.loadtest_bin, "run", SCENARIO, "--target", f"http://127.0.0.1:{srv.port}", "--rate", rate,
                   "--duration", a.duration, "--warmup", "2", "--progress", "5", "--out", path], timeout=3600)
        print(res.stdout)
        if res.returncode != 0:
            sys.exit(f"overload run failed: {res.stderr[-2000:]}")
        died = srv.died()
        return json.load(open(path)), died
    finally:
        srv.stop()


def flood(a, out, knee):
    srv = start(a, out, "flood")
    try:
        port = srv.port
        email = "flood@loadtest.invalid"
        rest(port, "POST", "/users/register", {"email": email, "password": "flood-password-1", "name": "flood"})
        token = rest(port, "POST", "/users/login", {"email": email, "password": "flood-password-1"})["token"]
        wf = rest(port, "POST", "/workflows", {"name": "flood", "tasks": [
            {"key": "a", "name": "a", "action": "noop"},
            {"key": "b", "name": "b", "action": "noop", "dependsOn": ["a"]},
            {"key": "c", "name": "c", "action": "noop", "dependsOn": ["b"]}]}, token)["id"]
        body = os.path.join(out, "flood-body.json")
        open(body, "w").write('{"input": {}}')
        before = scrape(port)
        t0 = time.monotonic()
        res = run(["h2load", "-c", "16", "-m", "32", "-D", a.flood_seconds, "-d", body,
                   "-H", f"authorization: Bearer {token}", "-H", "content-type: application/json",
                   f"http://127.0.0.1:{port}/workflows/{wf}/execute"], timeout=600)
        seconds = time.monotonic() - t0
        after = scrape(port)
        # Executions accepted during the flood finish after it: wait for them.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and metric_sum(scrape(port), "weft_executions_in_flight") > 0:
            time.sleep(0.5)
        drained = scrape(port)
        m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", res.stdout)
        codes = tuple(int(x) for x in m.groups()) if m else None
        finished = metric_sum(after, "weft_executions_finished_total") - metric_sum(before, "weft_executions_finished_total")
        started = metric_sum(after, "weft_executions_started_total") - metric_sum(before, "weft_executions_started_total")
        refused = (metric_sum(after, "weft_admission_rejections_total")
                   - metric_sum(before, "weft_admission_rejections_total"))
        completed_total = (metric_sum(drained, "weft_executions_finished_total", status="Completed")
                           - metric_sum(before, "weft_executions_finished_total", status="Completed"))
        started_total = (metric_sum(drained, "weft_executions_started_total")
                         - metric_sum(before, "weft_executions_started_total"))
        return {"seconds": seconds, "codes": codes, "accepted_per_s": started / seconds,
                "completed_per_s": finished / seconds, "refused": refused,
                "all_completed": completed_total == started_total, "started": started_total,
                "completed": completed_total, "h2load_tail": res.stdout[-600:]}
    finally:
        srv.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weft-bin", default=os.environ.get("WEFT_BIN", os.path.join(ROOT, ".build/release/weft")))
    p.add_argument("--loadtest-bin", default=os.environ.get("LOADTEST_BIN", os.path.join(ROOT, ".build/release/weft-loadtest")))
    p.add_argument("--knee", type=float, help="skip the search: this is the knee (executions/s)")
    p.add_argument("--rates", default="1000 1250 1500 1750 2000 2250", help="knee search steps")
    p.add_argument("--knee-duration", default="15")
    p.add_argument("--knee-p99-ms", default="1000")
    p.add_argument("--duration", default="30", help="seconds of each overload run")
    p.add_argument("--multipliers", default="1.5 3")
    p.add_argument("--flood-seconds", default="15")
    p.add_argument("--out", default=tempfile.mkdtemp(prefix="weft-overload-"))
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log(f"output in {a.out}; 2 cores shared by the server and weft-loadtest")

    if a.knee:
        knee = a.knee
    else:
        knee, _ = find_knee(a, a.out)
        if not knee:
            sys.exit("no step of the knee search was within SLO")
    log(f"knee: {knee:.0f} executions/s offered")

    rows, failures = [], []
    for mult in (float(x) for x in a.multipliers.split()):
        rate = round(knee * mult)
        report, died = overload_run(a, a.out, str(rate), f"{mult}x")
        total, ex = report["total"], report["executions"]
        refused, failed = total["refused"], total["failed"] + total["unanswered"]
        not_completed = ex["total"] - ex["byStatus"].get("Completed", 0)
        checks = {
            "throughput >= 90% of knee": ex["completedPerSecond"] >= 0.9 * knee,
            "every accepted execution completed": not_completed == 0 and ex["unfinished"] == 0,
            "refusals carry retry-after": total["refusalsWithRetryAfter"] == refused,
            "no error but refusals": failed == 0,
            "accepted p99 < 1 s": ex["latencyMs"]["p99"] < 1000,
            "server alive": died is None,
        }
        rows.append((mult, rate, total["sentPerSecond"], total["throughputPerSecond"], refused, ex["completedPerSecond"],
                     ex["completedPerSecond"] / knee, ex["latencyMs"]["p50"], ex["latencyMs"]["p99"], not_completed,
                     total["retryAfterMaxSeconds"], checks))
        failures += [f"{mult}x: {name}" for name, ok in checks.items() if not ok]

    print(f"\nknee {knee:.0f}/s; overload runs of {a.duration} s (execute-3task, gRPC, open loop)")
    print(f"{'offered':>9} {'sent/s':>8} {'accepted/s':>10} {'refused':>8} {'completed/s':>11} {'of knee':>8} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'not done':>8} {'retry-after max':>15}  verdict")
    for (mult, rate, sent, accepted, refused, completed, share, p50, p99, nd, ra, checks) in rows:
        verdict = "PASS" if all(checks.values()) else "FAIL: " + ", ".join(k for k, ok in checks.items() if not ok)
        print(f"{mult:>4}x {rate:>4} {sent:>8.0f} {accepted:>10.0f} {refused:>8} {completed:>11.1f} {share:>8.2f} "
              f"{p50:>8.1f} {p99:>8.1f} {nd:>8} {ra:>15.0f}  {verdict}")

    f = flood(a, a.out, knee)
    ok = f["completed_per_s"] >= 0.9 * knee and f["all_completed"] and f["codes"] and f["codes"][3] == 0
    print(f"\nREST flood (h2load -c 16 -m 32 -D {a.flood_seconds}, POST /workflows/{{id}}/execute): "
          f"accepted {f['accepted_per_s']:.0f}/s, completed {f['completed_per_s']:.0f}/s "
          f"({f['completed_per_s'] / knee:.2f} of the knee), refused {f['refused']:.0f}, status codes {f['codes']}, "
          f"all accepted completed: {f['all_completed']} ({f['completed']:.0f}/{f['started']:.0f})  "
          f"{'PASS' if ok else 'FAIL'}")
    if not ok:
        failures.append("REST flood")
    print("\nverdict: " + ("PASS" if not failures else "FAIL (" + "; ".join(failures) + ")"))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
