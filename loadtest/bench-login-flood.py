#!/usr/bin/env python3
"""Step-7 benchmark: a flood of wrong-password logins must not slow down
everyone else.

    python3 loadtest/bench-login-flood.py [--duration 20] [--clients 8] [--probe-rate 50]
        [--scenarios default,unlimited] [--spread-addresses] [--max-p99-ms 20]

For each scenario the script starts a fresh release server (`$WEFT_BIN`, default
.build/release/weft; production password hashing, i.e. the default scrypt
cost), registers a user and logs it in. Then:

1. **baseline**: one probe client sends `GET /users/me` with that user's token
   at --probe-rate per second (open loop) for --baseline seconds, on one
   keep-alive HTTP/1.1 connection opened for the phase;
2. **flood**: --clients processes send `POST /users/login` with a wrong
   password as fast as they can (each on its own keep-alive connection), for
   the registered email or a random unknown one (half each), while the probe
   measures `GET /users/me` as in the baseline for --duration seconds.

Latency is measured from each request's *scheduled* send time to the last
byte of its response (no coordinated omission: a stalled server shows as
latency, not as fewer samples). Reported per phase: p50/p90/p99/max of
/users/me, its statuses; the flood's responses by status (401 wrong password,
429 limited or hash queue full, ...), logins/s; the server's CPU; deltas of
`weft_login_limited_total`, `weft_password_hash_rejected_total` and
`weft_rate_limited_total{class="auth"}`.

Scenarios (a server each):

* `default`: the server's defaults (5 failures per account, 20 per address,
  auth rate limit 20/s burst 40): most of the flood is refused before hashing;
* `unlimited`: `--login-failures-per-account/--login-failures-per-address`
  1e9 and `--rate-limit auth=off`: every login reaches the hashing pool, which
  stays saturated (its bounded queue answers the rest 429).

`--spread-addresses` sends flood client i from 127.0.0.(10+i) (all loopback),
as if from 8 attackers, so per-address limits apply per client.

Verdict (strict): PASS if in every flood phase /users/me p99 < --max-p99-ms
(20), every probe answer was 200, no response of either client was a 5xx,
no request failed at the transport level and the server is still running;
else FAIL (exit 1). The baseline is printed for reference only.

Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from weft_process import WeftProcess, cpu_ticks  # noqa: E402

PASSWORD = "correct horse battery staple"
UNLIMITED = ["--login-failures-per-account", "1000000", "--login-failures-per-address", "1000000",
             "--rate-limit", "auth=off"]
SCENARIOS = {"default": [], "unlimited": UNLIMITED}
NEEDED_FLAGS = ["--login-failures-per-account", "--login-failures-per-address", "--rate-limit",
                "--password-hash-threads"]


def pct(values, q):
    """Nearest-rank percentile (nan if empty)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, -(-int(q * len(s) * 1000) // 1000) - 1))]


def rest(port, method, path, body=None, token=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = "Bearer " + token
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), (json.loads(data) if data else {})
    finally:
        conn.close()


def metrics_text(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        return resp.read().decode()


def metric_sum(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        lab = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(lab.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# ---------------------------------------------------------------------------
# The flood (separate processes: no shared interpreter lock with the probe)
# ---------------------------------------------------------------------------


def flood_worker(index, port, email, source, ready_q, start_evt, deadline, out_q):
    """Wrong-password logins as fast as possible until `deadline.value` (time.time()),
    set by the parent before `start_evt`."""
    rng = random.Random(index * 7919 + os.getpid())
    statuses: dict = {}
    errors: dict = {}
    conn = None
    ready_q.put(index)
    start_evt.wait(120)
    deadline_at = deadline.value
    sent = 0
    while time.time() < deadline_at:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                              source_address=(source, 0) if source else None)
        who = email if rng.random() < 0.5 else f"nobody-{uuid.uuid4().hex[:12]}@example.com"
        body = json.dumps({"email": who, "password": f"wrong-{rng.random()}"}).encode()
        try:
            conn.request("POST", "/users/login", body=body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            if (resp.getheader("connection") or "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            key = type(exc).__name__
            errors[key] = errors.get(key, 0) + 1
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
            conn = None
            time.sleep(0.01)
        sent += 1
    if conn is not None:
        conn.close()
    out_q.put({"index": index, "statuses": statuses, "errors": errors, "sent": sent})


# ---------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------


class Probe:
    """GET /users/me at `rate`/s, open loop, on one keep-alive connection."""

    def __init__(self, port, token, rate, duration):
        self.port, self.token, self.rate, self.duration = port, token, rate, duration
        self.latencies: list = []
        self.statuses: dict = {}
        self.errors: dict = {}
        self.reconnects = 0

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"authorization": "Bearer " + self.token}
        start = time.perf_counter()
        n = int(self.rate * self.duration)
        for i in range(n):
            due = start + i / self.rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            try:
                conn.request("GET", "/users/me", headers=headers)
                resp = conn.getresponse()
                resp.read()
                end = time.perf_counter()
                self.latencies.append(end - due)  # from the scheduled send time
                self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
                if (resp.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    self.reconnects += 1
            except (OSError, http.client.HTTPException) as exc:
                key = type(exc).__name__
                self.errors[key] = self.errors.get(key, 0) + 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.reconnects += 1
        conn.close()

    def line(self, label):
        lat = [x * 1000 for x in self.latencies]
        if not lat:
            return f"{label}: no answers; errors {self.errors}"
        return (f"{label}: {len(lat)} GET /users/me, statuses {dict(sorted(self.statuses.items()))}"
                + (f", transport errors {self.errors}" if self.errors else "")
                + f"; p50 {pct(lat, 0.5):.2f} ms, p90 {pct(lat, 0.9):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, "
                  f"max {max(lat):.2f} ms")


# ---------------------------------------------------------------------------


def check_flags(weft_bin):
    help_text = subprocess.run([weft_bin, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    missing = [f for f in NEEDED_FLAGS if f not in help_text]
    if missing:
        raise SystemExit(f"{weft_bin} does not know {', '.join(missing)} (not a Step-7 build?)")


def setup_user(port):
    email = f"flood-target-{os.getpid()}-{time.time_ns()}@example.com"
    status, _, body = rest(port, "POST", "/users/register", {"email": email, "password": PASSWORD, "name": "Target"})
    if status != 201:
        raise SystemExit(f"register: {status} {body}")
    for _ in range(50):
        status, headers, body = rest(port, "POST", "/users/login", {"email": email, "password": PASSWORD})
        if status == 200:
            return email, body["token"]
        time.sleep(0.2)
    raise SystemExit(f"login: {status} {body}")


def run_scenario(a, name, extra, out_dir):
    args = a.server_args.split() + extra
    server = WeftProcess(a.weft_bin, os.path.join(out_dir, f"data-{name}"), args, out_dir, name)
    result = {"scenario": name, "args": args}
    try:
        port = server.port
        email, token = setup_user(port)
        print(f"\n== scenario {name}: {' '.join(server.cmd)}")

        base = Probe(port, token, a.probe_rate, a.baseline)
        base.run()
        print("  " + base.line("baseline (no flood)"))
        result["baseline"] = base

        before = metrics_text(port)
        ctx = mp.get_context("spawn")
        start_evt = ctx.Event()
        ready_q, out_q = ctx.Queue(), ctx.Queue()
        deadline = ctx.Value("d", 0.0)
        flood_for = a.duration + 1.0
        procs = []
        for i in range(a.clients):
            source = f"127.0.0.{10 + i}" if a.spread_addresses else None
            p = ctx.Process(target=flood_worker, args=(i, port, email, source, ready_q, start_evt, deadline, out_q),
                            daemon=True)
            p.start()
            procs.append(p)
        for _ in procs:  # every flood process is up and waiting
            ready_q.get(timeout=120)
        deadline_at = time.time() + flood_for
        deadline.value = deadline_at
        start_evt.set()
        t0 = time.time()
        c0 = cpu_ticks(server.pid)
        time.sleep(0.5)  # let the flood reach full speed
        probe = Probe(port, token, a.probe_rate, min(a.duration, max(1.0, deadline_at - time.time() - 0.5)))
        probe.run()
        floods = [out_q.get(timeout=a.duration + 60) for _ in procs]
        for p in procs:
            p.join(10)
        wall = time.time() - t0
        c1 = cpu_ticks(server.pid)
        after = metrics_text(port)
        statuses, errors = {}, {}
        for f in floods:
            for k, v in f["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
            for k, v in f["errors"].items():
                errors[k] = errors.get(k, 0) + v
        total = sum(statuses.values())
        hz = os.sysconf("SC_CLK_TCK")
        cpu = (c1 - c0) / hz if c0 is not None and c1 is not None else float("nan")
        print("  " + probe.line("under flood"))
        print(f"  flood: {a.clients} clients{' from 127.0.0.10+' if a.spread_addresses else ''}, {total} logins in "
              f"{wall:.1f} s ({total / wall:.0f}/s), by status {dict(sorted(statuses.items()))}"
              + (f", transport errors {errors}" if errors else ""))
        d = lambda n, **lab: metric_sum(after, n, **lab) - metric_sum(before, n, **lab)  # noqa: E731
        print(f"  server: CPU {cpu:.1f} s over {wall:.1f} s ({cpu / wall * 100:.0f} % of one core); "
              f"weft_login_limited_total +{d('weft_login_limited_total'):.0f}, "
              f"weft_password_hash_rejected_total +{d('weft_password_hash_rejected_total'):.0f}, "
              f"weft_rate_limited_total{{class=auth}} +{d('weft_rate_limited_total', **{'class': 'auth'}):.0f}")
        n_problems, first = server.log_problems()
        if n_problems:
            print(f"  server log: {n_problems} warning/error lines, first: {first[:2]}")
        died = server.died()
        lat = [x * 1000 for x in probe.latencies]
        p99 = pct(lat, 0.99)
        reasons = []
        if not lat:
            reasons.append("no probe answers")
        elif not p99 < a.max_p99_ms:
            reasons.append(f"/users/me p99 {p99:.2f} ms >= {a.max_p99_ms:.0f} ms")
        if any(k != 200 for k in probe.statuses):
            reasons.append(f"probe statuses {probe.statuses}")
        five = {k: v for k, v in statuses.items() if k >= 500}
        if five:
            reasons.append(f"flood got 5xx {five}")
        if probe.errors or errors:
            reasons.append(f"transport errors (probe {probe.errors}, flood {errors})")
        if died:
            reasons.append(died)
        if total == 0:
            reasons.append("the flood sent nothing")
        result.update(probe=probe, statuses=statuses, reasons=reasons)
        print(f"  {name}: {'PASS' if not reasons else 'FAIL: ' + '; '.join(reasons)}")
        return result
    finally:
        server.stop()
        if server.exit_note:
            print(f"  server {name}: {server.exit_note}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weft-bin", default=os.environ.get("WEFT_BIN", str(HERE.parent / ".build/release/weft")))
    p.add_argument("--duration", type=float, default=20.0, help="seconds of flood (probe inside it)")
    p.add_argument("--baseline", type=float, default=5.0, help="seconds of probe alone first")
    p.add_argument("--clients", type=int, default=8, help="flood processes")
    p.add_argument("--probe-rate", type=float, default=50.0, help="GET /users/me per second")
    p.add_argument("--scenarios", default="default,unlimited", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    p.add_argument("--spread-addresses", action="store_true", help="flood client i from 127.0.0.(10+i)")
    p.add_argument("--max-p99-ms", type=float, default=20.0)
    p.add_argument("--server-args", default="", help="more `weft serve` arguments (both scenarios)")
    a = p.parse_args()
    names = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not names:
        p.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    if not Path(a.weft_bin).exists():
        raise SystemExit(f"no weft binary at {a.weft_bin} (swift build -c release, or set WEFT_BIN)")
    check_flags(a.weft_bin)
    out_dir = tempfile.mkdtemp(prefix="weft-login-flood-")
    build = "release" if "/release/" in a.weft_bin else ("DEBUG" if "/debug/" in a.weft_bin else "?")
    print(f"weft {a.weft_bin} ({build} build), {os.cpu_count()} cores; {a.clients} flood clients x {a.duration:.0f} s, "
          f"probe {a.probe_rate:.0f}/s; logs in {out_dir}")
    if build == "DEBUG":
        print("note: a debug build: the figures are not the Step-7 verdict")
    results = [run_scenario(a, name, SCENARIOS[name], out_dir) for name in names]
    ok = all(not r["reasons"] for r in results)
    print()
    for r in results:
        lat = [x * 1000 for x in r["probe"].latencies]
        blat = [x * 1000 for x in r["baseline"].latencies]
        print(f"{r['scenario']:>9}: /users/me p99 {pct(blat, 0.99):.2f} ms alone -> {pct(lat, 0.99):.2f} ms under flood; "
              f"logins {dict(sorted(r['statuses'].items()))}")
    print(f"VERDICT: {'PASS' if ok else 'FAIL'} (every flood phase: /users/me p99 < {a.max_p99_ms:.0f} ms, "
          f"all 200, no 5xx, no transport errors, server alive)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
