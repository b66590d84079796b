#!/usr/bin/env python3
"""Restart with a large backlog: how long until a restarted `weft serve`
serves, with N unfinished executions in its store (Step 13's target: within
2 s with 1,000,000).

    python3 loadtest/bench-restart.py                      # 1,000,000 unfinished
    python3 loadtest/bench-restart.py --unfinished 100000 --drain

1. A server with --workers 0 (nothing runs) on a fresh data directory: one
   user, a 3-task noop workflow, one execution started over REST (it stays
   Running with task a Queued: its queue item is in the store). Stopped.
2. That execution's rows (the execution, its three task rows, its queue
   item) are copied N-1 times in SQL (python's sqlite3, one transaction), so
   the store holds N unfinished executions exactly as the engine writes
   them. Seeding is not what is measured.
3. `weft serve` (default flags: in-process workers) is started on that
   directory and timed from exec to (a) "listening on" in its log, (b) the
   first 200 from /healthz, (c) the first answered authenticated REST call
   (GET /workflows/{id}), and (d) the engine's "resumed N unfinished
   executions" log line. With --drain it then waits until every
   execution completed and reports the rate (no client load meanwhile).

Prints the figures; exits 1 if the server did not serve within --max-serve
seconds (default 2) or (with --drain) an execution did not complete.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clone_rows import clone_execution, http_json as http, template_execution  # noqa: E402
from weft_process import WeftProcess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unfinished", type=int, default=1_000_000)
    parser.add_argument("--max-serve", type=float, default=2.0, help="seconds to serving, the target")
    parser.add_argument("--drain", action="store_true", help="then wait until every execution completed")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    weft = os.environ.get("WEFT_BIN", os.path.join(ROOT, ".build/release/weft"))
    work = tempfile.mkdtemp(prefix="weft-bench-restart.")
    data = os.path.join(work, "data")

    status, wf, started, token = template_execution(weft, data, work, "restart", ["--workers", "0"])
    assert status == 202 and started["status"] == "Running", started
    seed_start = time.monotonic()
    clone_execution(os.path.join(data, "weft.sqlite"), started["executionId"], args.unfinished - 1, "exe_bench", queue=True)
    seeded = time.monotonic() - seed_start
    size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if f.startswith("weft.sqlite"))
    print(f"[restart] seeded {args.unfinished:,} unfinished executions in {seeded:.1f} s; store {size / 2**20:.0f} MiB")

    t0 = time.monotonic()
    server = WeftProcess(weft, data, ["--scrypt-log-n", "10"], work, "restart")
    listening = time.monotonic() - t0
    healthy = api = None
    deadline = t0 + 120
    while time.monotonic() < deadline and (healthy is None or api is None):
        try:
            if healthy is None and http(server.port, "GET", "/healthz", timeout=1)[0] == 200:
                healthy = time.monotonic() - t0
            if api is None and http(server.port, "GET", f"/workflows/{wf['id']}", token, timeout=1)[0] == 200:
                api = time.monotonic() - t0
        except Exception:
            time.sleep(0.01)
    resumed = None
    while time.monotonic() < deadline and resumed is None:
        m = re.search(r"resumed (\d+) unfinished executions", server.text())
        if m:
            resumed = time.monotonic() - t0
            found = int(m.group(1))
        else:
            time.sleep(0.02)
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{server.pid}/status").read()).group(1)) // 1024
    print(f"[restart] listening after {listening:.2f} s, /healthz 200 after {healthy or -1:.2f} s, "
          f"GET /workflows/{{id}} 200 after {api or -1:.2f} s; engine resumed "
          f"{found if resumed else '?'} unfinished after {resumed or -1:.2f} s; RSS {rss} MB")
    ok = api is not None and api <= args.max_serve
    if args.drain:
        db = sqlite3.connect(f"file:{os.path.join(data, 'weft.sqlite')}?mode=ro", uri=True)
        drained = None
        while time.monotonic() < t0 + 3600:
            left = db.execute("SELECT COUNT(*) FROM workflow_executions WHERE status IN ('Pending', 'Running')").fetchone()[0]
            if left == 0:
                drained = time.monotonic() - t0
                break
            time.sleep(1)
        failed = db.execute("SELECT COUNT(*) FROM workflow_executions WHERE status <> 'Completed'").fetchone()[0]
        print(f"[restart] drained after {drained or -1:.1f} s ({args.unfinished / drained if drained else 0:,.0f} executions/s), "
              f"not Completed: {failed}")
        ok = ok and drained is not None and failed == 0
    count, lines = server.log_problems()
    server.stop()
    if count:
        print(f"[restart] {count} warning/error lines in the server log, the first: " + " | ".join(lines))
    print(f"[restart] verdict: {'PASS' if ok else 'FAIL'} (serving within {args.max_serve} s"
          f"{', every execution completed' if args.drain else ''})")
    if not args.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
