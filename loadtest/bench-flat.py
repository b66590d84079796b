#!/usr/bin/env python3
"""Cost as data grows: the executions knee on an empty store and on one
holding N finished executions and/or M workflows (Step 13's target: within
10 % with 10,000,000 executions and with 1,000,000 workflows).

    python3 loadtest/bench-flat.py                              # 10,000,000 stored executions
    python3 loadtest/bench-flat.py --executions 1000000 --rates "2000 3000 3500"
    python3 loadtest/bench-flat.py --executions 1 --workflows 1000000

1. A fresh `weft serve` (default flags): one user, a 3-task noop workflow,
   one execution (it completes in its first commit). Stopped.
2. That execution's rows (the execution and its three task rows) are copied
   N-1 times in SQL (python's sqlite3, one transaction; seeding is not
   measured), so the store holds N finished executions as the engine writes
   them (ids in time order, as the engine's are). With --workflows M, the
   workflow's rows (workflow, tasks, version, search entry) are copied M-1
   times the same way.
3. For the seeded store and for an empty one, a fresh server runs
   `weft-loadtest knee loadtest/scenarios/execute-3task.yaml --rates RATES
   --max-p99-ms 50 --keep-going 1 --duration DURATION`; the knee, and the p99
   and server CPU at each rate, are compared.

Prints both tables and the ratios; exits 1 when the seeded knee is more than
10 % below the empty one's (a knee moves by whole steps of --rates: compare
with steps of 10 % or less).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clone_rows import clone_execution, clone_workflow, template_execution  # noqa: E402
from weft_process import WeftProcess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seed(weft: str, work: str, data: str, n: int, workflows: int) -> None:
    _, wf, started, _ = template_execution(weft, data, work, "flat")
    assert started["status"] == "Completed", started
    start = time.monotonic()
    # Older than the template, in time order: ids sort before it, as earlier executions' would.
    if n > 1:
        clone_execution(os.path.join(data, "weft.sqlite"), started["executionId"], n - 1, "exe_0", queue=False)
    if workflows > 1:
        clone_workflow(os.path.join(data, "weft.sqlite"), wf["id"], workflows - 1, "wf_0")
    os.sync()   # the seed's writeback would otherwise stall the first knee's fsyncs
    size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if f.startswith("weft.sqlite"))
    print(f"[flat] seeded {n:,} finished executions and {max(workflows, 1):,} workflows in "
          f"{time.monotonic() - start:.0f} s; store {size / 2**30:.1f} GiB", flush=True)


STEP_RE = re.compile(r"^(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(.*)$")


def knee(weft: str, loadtest: str, work: str, data: str, name: str, rates: str, duration: int) -> dict:
    server = WeftProcess(weft, data, [], work, name)
    try:
        out = subprocess.run(
            [loadtest, "knee", os.path.join(ROOT, "loadtest/scenarios/execute-3task.yaml"),
             "--target", f"http://127.0.0.1:{server.port}", "--rates", rates, "--max-p99-ms", "50",
             "--keep-going", "1", "--duration", str(duration), "--progress", "0",
             "--out", os.path.join(work, f"knee-{name}")],
            capture_output=True, text=True, timeout=3600).stdout
    finally:
        server.stop()
    steps = {}
    for line in out.splitlines():
        m = STEP_RE.match(line.strip())
        if m:
            steps[int(m.group(1))] = {"completed": float(m.group(2)), "p50": float(m.group(3)),
                                      "p99": float(m.group(4)), "cpu": float(m.group(5)),
                                      "within": m.group(7).strip().startswith("within")}
    k = re.search(r"knee: (\d+)/s", out)
    # Every step within SLO: the knee is at least the highest rate.
    value = int(k.group(1)) if k else (max(steps) if steps and all(x["within"] for x in steps.values()) else 0)
    print(f"[flat] {name}: knee {value}/s{'' if k else ' (every step within: at least)'}", flush=True)
    return {"knee": value, "steps": steps, "raw": out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=10_000_000)
    parser.add_argument("--workflows", type=int, default=1, help="stored workflows (default 1)")
    parser.add_argument("--rates", default="2000 2500 3000 3500 4000")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    weft = os.environ.get("WEFT_BIN", os.path.join(ROOT, ".build/release/weft"))
    loadtest = os.environ.get("LOADTEST_BIN", os.path.join(ROOT, ".build/release/weft-loadtest"))
    work = tempfile.mkdtemp(prefix="weft-bench-flat.", dir=os.environ.get("FLAT_DIR"))
    try:
        seeded_dir = os.path.join(work, "seeded")
        seed(weft, work, seeded_dir, args.executions, args.workflows)
        empty = knee(weft, loadtest, work, os.path.join(work, "empty"), "empty", args.rates, args.duration)
        seeded = knee(weft, loadtest, work, seeded_dir, "seeded", args.rates, args.duration)
        print()
        stored = f"{args.executions:,} executions, {args.workflows:,} workflows"
        print(f"| offered/s | empty: p50 / p99 ms, CPU | {stored} stored: p50 / p99 ms, CPU | p99 ratio | CPU ratio |")
        print("|---:|---|---|---:|---:|")
        for rate in sorted(set(empty["steps"]) | set(seeded["steps"])):
            e, s = empty["steps"].get(rate), seeded["steps"].get(rate)
            cell = lambda x: "—" if x is None else (f"{x['p50']:.1f} / {x['p99']:.1f}, {x['cpu']:.2f}"
                                                   + ("" if x["within"] else " (breach)"))
            ratio = lambda a, b: "—" if not a or not b or not b else f"{a / b:.2f}"
            print(f"| {rate:,} | {cell(e)} | {cell(s)} | {ratio(s and s['p99'], e and e['p99'])} | "
                  f"{ratio(s and s['cpu'], e and e['cpu'])} |")
        ok = empty["knee"] > 0 and seeded["knee"] >= 0.9 * empty["knee"]
        print(f"\nknee: empty {empty['knee']}/s, with {stored} stored {seeded['knee']}/s; "
              f"verdict: {'PASS' if ok else 'FAIL'} (within 10 %)")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
