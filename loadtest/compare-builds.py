#!/usr/bin/env python3
"""Before/after benchmark of two weft builds in one run on one machine.

A refactoring must not make Weft slower. This runs the same benchmarks on two
binaries, alternating them (A B, then B A, ...) so that drift of the machine
(other tenants of a VM, thermal state) hits both alike, and prints the medians
and the ratio new/base of each figure (the verdict is on the ratio of the
medians; the median of the per-pair ratios and each build's best run are
printed next to it, because on a shared VM the spread between runs of one
binary can exceed the difference being measured):

* Health/Check at h2load -c 16 -m 32 (bench-health.sh): req/s and server CPU
  per call;
* GetWorkflow at h2load -c 16 -m 32 (bench-api.sh, case grpc-get): req/s and
  server CPU per request;
* the executions/s knee of bench-executions.py (the highest sustained rate of
  --rates, with its strict verdict: every call accepted, every execution
  Completed, p50 <= 0.25 s, p99 <= 1 s) and the server CPU per execution at
  that rate.

Every sub-run uses the scripts' own validity checks; an invalid run is left
out of the medians and reported. Loopback only; each sub-run is bounded.

    python3 loadtest/compare-builds.py --base /tmp/weft-base/weft --new .build/release/weft \\
        [--pairs 5] [--duration 10] [--exec-pairs 2] [--rates "800 1000 1200 1400"] [--store-sync normal]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def tsv_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def run(cmd: list[str], env: dict, timeout: float, log: Path) -> int:
    with open(log, "w") as out:
        try:
            return subprocess.run(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\n[compare] timed out after {timeout:.0f} s\n")
            return 124


def h2load_run(script: str, env: dict, timeout: float, out: Path, cpu_column: str, case: str | None = None) -> dict | None:
    """One run of an h2load benchmark script: its valid row's req/s and CPU per call, or None."""
    out.mkdir(parents=True)
    rc = run([str(HERE / script)], {**env, "ROUNDS": "1", "WARMUP": "2", "OUT_DIR": str(out)}, timeout, out / "run.log")
    results = out / "results.tsv"
    rows = [r for r in tsv_rows(results) if r["valid"] == "1" and (case is None or r["case"] == case)] \
        if results.exists() else []
    if rc != 0 or not rows:
        return None
    return {"req_per_s": float(rows[0]["req_per_s"]), "cpu_us": float(rows[0][cpu_column])}


def health(binary: str, a, out: Path) -> dict | None:
    env = {"WEFT_BIN": binary, "SERVERS": "weft", "DURATION": str(int(a.duration)), "SETTINGS": "16x32", "IDLE_CONNS": "0"}
    return h2load_run("bench-health.sh", env, a.duration * 3 + 120, out, "cpu_us_per_call")


def get_workflow(binary: str, a, out: Path, credential: str = "token") -> dict | None:
    env = {"WEFT_BIN": binary, "DURATION": str(int(a.duration)), "CASES": "grpc-get", "GRPC_SETTINGS": "16x32",
           "CREDENTIAL": credential}
    return h2load_run("bench-api.sh", env, a.duration * 3 + 180, out, "cpu_us_per_req", case="grpc-get")


def executions(binary: str, a, out: Path) -> dict | None:
    out.mkdir(parents=True)
    report = out / "report.json"
    cmd = [sys.executable, str(HERE / "bench-executions.py"), "--rates", a.rates, "--duration", str(a.duration),
           "--low-pct", "0", "--mid-pct", "0", "--json", str(report)]
    if a.store_sync:
        cmd += ["--store-sync", a.store_sync]
    env = {"WEFT_BIN": binary, "OUT_DIR": str(out / "logs")}
    rc = run(cmd, env, 60 * (len(a.rates.split()) + 2) * max(1, a.duration / 10) + 300, out / "run.log")
    if not report.exists():
        return None
    data = json.loads(report.read_text())
    best = data["summary"].get("max_rate")
    if rc != 0 or best is None:
        return {"knee": 0.0, "cpu_us": None, "first_fail": data["summary"].get("first_fail_reason")}
    row = next(r for r in data["runs"] if r.get("sustained") and float(r["rate"]) == float(best))
    return {"knee": float(best), "cpu_us": row.get("server_cpu_us_per_exec"),
            "first_fail": data["summary"].get("first_fail_reason")}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the weft binary before the change")
    ap.add_argument("--new", required=True, help="the weft binary after the change")
    ap.add_argument("--pairs", type=int, default=5, help="alternating pairs of Health/Check and GetWorkflow runs")
    ap.add_argument("--exec-pairs", type=int, default=2, help="alternating pairs of execution ramps (0 skips)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run or ramp step")
    ap.add_argument("--rates", default="600 800 1000 1200 1400 1600", help="bench-executions.py --rates")
    ap.add_argument("--store-sync", choices=("full", "normal"), default=None,
                    help="bench-executions.py --store-sync (default: the server's default)")
    ap.add_argument("--skip", default="", help="space-separated subset of 'health api executions' to skip")
    ap.add_argument("--new-credential", choices=("token", "key"), default="token",
                    help="what the new build's GetWorkflow calls send: an access token or an API key (Step 7)")
    ap.add_argument("--out", default=None, help="logs and raw results (default a new /tmp/weft-compare.XXXXXX)")
    a = ap.parse_args()
    for b in (a.base, a.new):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"not an executable: {b}")
    out = Path(a.out or tempfile.mkdtemp(prefix="weft-compare."))
    out.mkdir(parents=True, exist_ok=True)
    if a.out and any(out.iterdir()):
        raise SystemExit(f"--out {out} is not empty: results of runs would mix; name a new or empty directory")
    skip = set(a.skip.split())
    builds = {"base": a.base, "new": a.new}
    results: dict[str, dict[str, list]] = {k: {"base": [], "new": []} for k in ("health", "api", "executions")}
    invalid: list[str] = []

    def order(i):
        return ("base", "new") if i % 2 == 0 else ("new", "base")

    for i in range(a.pairs):
        for name in order(i):
            for kind, fn in (("health", health), ("api", get_workflow)):
                if kind in skip:
                    continue
                where = out / f"{kind}-{i + 1}-{name}"
                print(f"[compare] pair {i + 1}/{a.pairs}: {kind} on {name}", flush=True)
                if kind == "api":
                    r = fn(builds[name], a, where, a.new_credential if name == "new" else "token")
                else:
                    r = fn(builds[name], a, where)
                if r is None:
                    invalid.append(f"{kind} pair {i + 1} {name}: invalid or failed run (see {where}/run.log)")
                results[kind][name].append(r)
    if "executions" not in skip:
        for i in range(a.exec_pairs):
            for name in order(i):
                where = out / f"executions-{i + 1}-{name}"
                print(f"[compare] pair {i + 1}/{a.exec_pairs}: executions ramp on {name}", flush=True)
                r = executions(builds[name], a, where)
                if r is None:
                    invalid.append(f"executions pair {i + 1} {name}: no report (see {where}/run.log)")
                results["executions"][name].append(r)

    def fig(kind, name, key):
        return median([r[key] for r in results[kind][name] if r and r[key] is not None])

    def paired(kind, key):
        # new/base within each pair (the two runs minutes apart), then the median.
        rs = [n[key] / b[key] for b, n in zip(results[kind]["base"], results[kind]["new"])
              if b and n and b[key] and n[key] is not None]
        return median(rs)

    def best(kind, name, key, higher_is_better):
        vs = [r[key] for r in results[kind][name] if r and r[key] is not None]
        return (max(vs) if higher_is_better else min(vs)) if vs else None

    lines = ["", f"Before/after, alternating pairs, medians. base = {a.base}, new = {a.new}", "",
             "| figure | base | new | new / base | median of pair ratios | best run base, new | runs (base, new) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []

    def row(label, kind, key, unit, higher_is_better, fmt="{:.0f}"):
        b, n = fig(kind, "base", key), fig(kind, "new", key)
        counts = (sum(1 for r in results[kind]["base"] if r), sum(1 for r in results[kind]["new"] if r))
        if b is None or n is None or b == 0:
            lines.append(f"| {label} | {b} | {n} | n/a | n/a | n/a | {counts} |")
            return
        ratio = n / b
        pr = paired(kind, key)
        bb, bn = best(kind, "base", key, higher_is_better), best(kind, "new", key, higher_is_better)
        lines.append(f"| {label} | {fmt.format(b)}{unit} | {fmt.format(n)}{unit} | {ratio:.3f} | "
                     f"{'n/a' if pr is None else f'{pr:.3f}'} | {fmt.format(bb)}, {fmt.format(bn)}{unit} | "
                     f"{counts[0]}, {counts[1]} |")
        ok = ratio >= 0.95 if higher_is_better else ratio <= 1.05
        verdicts.append((label, ok, ratio))

    if "health" not in skip:
        row("Health/Check req/s (-c 16 -m 32)", "health", "req_per_s", "", True)
        row("Health/Check server CPU per call", "health", "cpu_us", " µs", False, "{:.2f}")
    if "api" not in skip:
        row("GetWorkflow req/s (-c 16 -m 32)", "api", "req_per_s", "", True)
        row("GetWorkflow server CPU per request", "api", "cpu_us", " µs", False, "{:.2f}")
    if "executions" not in skip and a.exec_pairs:
        row(f"executions/s knee (rates {a.rates})", "executions", "knee", "", True)
        row("server CPU per execution at the knee", "executions", "cpu_us", " µs", False)
        for name in ("base", "new"):
            for r in results["executions"][name]:
                if r:
                    lines.append(f"  - {name}: knee {r['knee']:.0f}/s; next step failed: {r.get('first_fail') or 'none (top of --rates)'}")
    print("\n".join(lines))
    print()
    for label, ok, ratio in verdicts:
        print(f"{'within 5 % or better' if ok else 'WORSE than 5 %'}: {label} ({ratio:.3f})")
    for line in invalid:
        print(f"invalid: {line}")
    print(f"Logs: {out}")
    return 0 if all(ok for _, ok, _ in verdicts) and not invalid else 1


if __name__ == "__main__":
    sys.exit(main())
