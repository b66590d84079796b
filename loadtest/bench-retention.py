#!/usr/bin/env python3
"""Retention under load: does deleting old executions and log entries in the
background show in the p99 of the calls and executions that run meanwhile?
(Step 13: "retention ... without pauses visible in p99".)

    python3 loadtest/bench-retention.py                       # 1,000,000 executions, 5,000,000 log entries
    python3 loadtest/bench-retention.py --executions 200000 --logs 1000000 --rate 1000

1. A fresh `weft serve`: one user, a 3-task noop workflow, one execution.
   Stopped. That execution's rows are copied EXECUTIONS times with all their
   times set to 2020 (clone_rows.py), and LOGS log entries dated 2020 are
   written to logs.sqlite (SQL, not measured).
2. `weft serve --execution-retention-days 1 --log-retention-days 1` on that
   store: both retention services start their purge at once. At the same
   moment `weft-loadtest run loadtest/scenarios/execute-3task.yaml --rate
   RATE --duration DURATION` starts (its executions write their own log
   entries, 8 each), and /metrics is read every second for the purged
   counts (weft_executions_purged_total, weft_log_entries_purged_total).
3. When both purges are done, the same run on a fresh server on the same
   store (same flags, nothing left to purge): the baseline.

Prints the run during the purge and the baseline (call p99/p99.9/max,
execution p99, server CPU), how long each purge took and at what rate.
Verdict: PASS when every call and execution of both runs succeeded, both
purges finished, and the p99 during the purge is within 10 % (or 2 ms) of the
baseline's. The store lives under RETENTION_DIR (default /tmp).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clone_rows import clone_execution, template_execution  # noqa: E402
from weft_process import WeftProcess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD = "2020-01-01 00:00:00.000"


def seed(weft: str, work: str, data: str, executions: int, logs: int) -> None:
    _, _, started, _ = template_execution(weft, data, work, "retention")
    assert started["status"] == "Completed", started
    start = time.monotonic()
    if executions > 0:
        clone_execution(os.path.join(data, "weft.sqlite"), started["executionId"], executions, "exe_0", queue=False,
                        finished_at=OLD)
    db = sqlite3.connect(os.path.join(data, "logs.sqlite"))
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
               "INSERT INTO logs (execution_id, sequence, task_id, log_level, message, created_at) "
               "SELECT 'exe_0' || printf('%022d', (n.i + 7) / 8), (n.i - 1) % 8 + 1, NULL, 1, "
               "'task a completed (attempt 1)', ? FROM n", (logs, OLD))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    os.sync()
    print(f"[retention] seeded {executions:,} executions and {logs:,} log entries from 2020 in "
          f"{time.monotonic() - start:.0f} s", flush=True)


def purged(port: int) -> tuple[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    def value(name: str) -> float:
        m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0
    return value("weft_executions_purged_total"), value("weft_log_entries_purged_total")


def run(loadtest: str, port: int, rate: int, duration: int, out: str) -> dict:
    subprocess.run([loadtest, "run", os.path.join(ROOT, "loadtest/scenarios/execute-3task.yaml"),
                    "--target", f"http://127.0.0.1:{port}", "--rate", str(rate), "--duration", str(duration),
                    "--progress", "0", "--quiet", "--out", out], check=False, timeout=duration + 600)
    with open(out) as f:
        return json.load(f)


def row(name: str, report: dict) -> str:
    t, e, s = report["total"], report["executions"], report["server"]
    ok = t["failed"] == 0 and t["refused"] == 0 and t["unanswered"] == 0 and e["unfinished"] == 0 \
        and e["byStatus"].get("Completed", 0) == e["total"]
    lat = t["latencyMs"]
    return (f"| {name} | {t['succeeded']:,} / {t['sent']:,} | {e['byStatus'].get('Completed', 0):,} | "
            f"{lat['p50']:.2f} | {lat['p99']:.2f} | {lat['p999']:.2f} | {lat['max']:.1f} | "
            f"{s['executionP99Ms']:.2f} | {s['cpuCores']:.2f} | {'yes' if ok else 'NO'} |"), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--logs", type=int, default=5_000_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    weft = os.environ.get("WEFT_BIN", os.path.join(ROOT, ".build/release/weft"))
    loadtest = os.environ.get("LOADTEST_BIN", os.path.join(ROOT, ".build/release/weft-loadtest"))
    work = tempfile.mkdtemp(prefix="weft-bench-retention.", dir=os.environ.get("RETENTION_DIR"))
    try:
        data = os.path.join(work, "data")
        seed(weft, work, data, args.executions, args.logs)
        server = WeftProcess(weft, data, ["--execution-retention-days", "1", "--log-retention-days", "1"], work, "run")
        try:
            t0 = time.monotonic()
            done = {"executions": None, "logs": None}
            stop = threading.Event()

            def watch():
                while not stop.is_set():
                    executions, logs = purged(server.port)
                    now = time.monotonic() - t0
                    if done["executions"] is None and executions >= args.executions:
                        done["executions"] = now
                    if done["logs"] is None and logs >= args.logs:
                        done["logs"] = now
                    stop.wait(0.5)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            during = run(loadtest, server.port, args.rate, args.duration, os.path.join(work, "during.json"))
            ran = time.monotonic() - t0
            deadline = time.monotonic() + 1800
            while None in done.values() and time.monotonic() < deadline:
                time.sleep(1)
            stop.set()
            watcher.join()
        finally:
            server.stop()
        # The baseline on a fresh server too (same flags, nothing left to purge),
        # so both runs start as cold.
        server = WeftProcess(weft, data, ["--execution-retention-days", "1", "--log-retention-days", "1"], work, "after")
        try:
            after = run(loadtest, server.port, args.rate, args.duration, os.path.join(work, "after.json"))
        finally:
            server.stop()
        print()
        print(f"{args.executions:,} executions and {args.logs:,} log entries past retention; "
              f"ExecuteWorkflow (3 noop tasks) at {args.rate}/s for {args.duration} s")
        print()
        print("| run | calls OK / sent | executions Completed | call p50 ms | p99 | p99.9 | max | execution p99 (server) ms | server CPU | all OK |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        line_during, ok_during = row("while retention purges", during)
        line_after, ok_after = row("after, fresh server (baseline)", after)
        print(line_during)
        print(line_after)
        print()
        for what, n in (("executions", args.executions), ("logs", args.logs)):
            took = done[what]
            if took is None:
                print(f"{what}: purge NOT finished")
            else:
                print(f"{what}: {n:,} purged in {took:.1f} s ({n / max(took, 1e-9):,.0f}/s); "
                      f"the load ran for the first {ran:.0f} s")
        p99_during, p99_after = during["total"]["latencyMs"]["p99"], after["total"]["latencyMs"]["p99"]
        ok = ok_during and ok_after and None not in done.values() and \
            p99_during <= max(p99_after * 1.10, p99_after + 2.0)
        print(f"\ncall p99 while purging {p99_during:.2f} ms, baseline {p99_after:.2f} ms; "
              f"verdict: {'PASS' if ok else 'FAIL'} (within 10 % or 2 ms, every call and execution OK, purges done)")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
