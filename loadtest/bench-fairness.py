#!/usr/bin/env python3
"""Step-6 fairness benchmark: one organization floods, another's single
executions must still be fast.

    python3 loadtest/bench-fairness.py --flood-rate 3200 [--duration 20] [--store-sync normal]
        [--plan bench:concurrent_executions=256] [--probe-rate 10]

Two accounts register (each gets its own organization) and each creates the
3-task noop workflow of bench-executions.py. Organization A ("flood") submits
ExecuteWorkflow over gRPC on an open-loop schedule at --flood-rate (set it to
twice the sustainable rate that bench-executions.py measured on this build),
split over --procs client processes, exactly as bench-executions.py does.
Meanwhile organization B ("probe") starts one execution at a time, --probe-rate
per second, and for each measures the end-to-end latency a client sees: from
sending ExecuteWorkflow to receiving the Completed state on a WatchExecution
stream it opens right after the call returns (gRPC, one channel). The probe
runs for the same --duration, after --warmup seconds of flood.

Both organizations are on the server's default plan, which the script sets
from --plan (default `bench:concurrent_executions=256`: past 256 running
executions a flood call is refused with RESOURCE_EXHAUSTED / 429 before any
work is done, as the issue asks: "past capacity the server says 429 with
retry-after, never collapses"). --plan none runs with no limits (enterprise).

Verdict (strict): every probe execution Completed, no probe call failed, and
the probe's p99 end-to-end latency < --max-p99-ms (50). The flood's accepted
and refused (RESOURCE_EXHAUSTED) counts and its completions/s are reported.
A probe-only run (no flood) on the same server comes first, for reference.

Loopback only; every call is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Tests" / "interop"))

_spec = importlib.util.spec_from_file_location("bench_executions", HERE / "bench-executions.py")
bx = importlib.util.module_from_spec(_spec)
sys.modules["bench_executions"] = bx
_spec.loader.exec_module(bx)

from weft_process import WeftProcess  # noqa: E402

WORKFLOW = {"name": "fair", "tasks": [{"key": "a", "name": "a", "action": "noop"},
                                      {"key": "b", "name": "b", "action": "noop", "dependsOn": ["a"]},
                                      {"key": "c", "name": "c", "action": "noop", "dependsOn": ["b"]}]}


def rest(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def account(base, name):
    email = f"{name}-{os.getpid()}-{time.time_ns()}@example.com"
    rest(base, "POST", "/users/register", {"email": email, "password": "correct horse", "name": name})
    token = rest(base, "POST", "/users/login", {"email": email, "password": "correct horse"})["token"]
    wf = rest(base, "POST", "/workflows", WORKFLOW, token)
    return token, wf["id"], wf["orgId"]


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


class Probe:
    """Organization B: one execution at a time, end-to-end latency each."""

    def __init__(self, target, token, workflow_id, gen_dir, rate, duration):
        self.target, self.token, self.workflow_id = target, token, workflow_id
        self.gen_dir, self.rate, self.duration = gen_dir, rate, duration
        self.latencies, self.failures, self.statuses = [], [], {}

    def run(self):
        asyncio.run(self._run())

    async def _run(self):
        import grpc
        import grpc.aio
        sys.path.append(self.gen_dir)
        from weft.v1 import executions_pb2 as pb, executions_pb2_grpc as pbg
        md = (("authorization", "Bearer " + self.token),)
        async with grpc.aio.insecure_channel(self.target) as chan:
            await asyncio.wait_for(chan.channel_ready(), 20)
            stub = pbg.ExecutionServiceStub(chan)
            loop = asyncio.get_running_loop()
            start = loop.time()
            i = 0
            while loop.time() - start < self.duration:
                due = start + i / self.rate
                if loop.time() < due:
                    await asyncio.sleep(due - loop.time())
                i += 1
                t0 = time.perf_counter()
                try:
                    resp = await stub.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=self.workflow_id),
                                                      metadata=md, timeout=10)
                    final = None
                    watch = stub.WatchExecution(pb.WatchExecutionRequest(
                        workflow_id=self.workflow_id, execution_id=resp.execution_id), metadata=md, timeout=10)
                    async for event in watch:
                        name = pb.Execution.Status.Name(event.status)
                        if name in ("Completed", "Failed", "Cancelled", "TimedOut"):
                            final = name
                            break
                    watch.cancel()
                    elapsed = time.perf_counter() - t0
                    self.statuses[final or "unfinished"] = self.statuses.get(final or "unfinished", 0) + 1
                    if final == "Completed":
                        self.latencies.append(elapsed)
                except grpc.aio.AioRpcError as e:
                    self.failures.append(f"{e.code().name}: {e.details()}")


def finished_total(text):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("weft_executions_finished_total{") and 'status="Completed"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def metrics_text(base):
    with urllib.request.urlopen(base + "/metrics", timeout=30) as resp:
        return resp.read().decode()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weft-bin", default=os.environ.get("WEFT_BIN", str(HERE.parent / ".build/release/weft")))
    p.add_argument("--flood-rate", type=float, required=True, help="flood executions/s (2 x the sustainable rate)")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of flood before the probe starts")
    p.add_argument("--probe-rate", type=float, default=10.0)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--max-inflight", type=int, default=4000)
    p.add_argument("--store-sync", default="full")
    p.add_argument("--plan", default="bench:concurrent_executions=256", help="the default plan's quotas, or 'none'")
    p.add_argument("--max-p99-ms", type=float, default=50.0)
    p.add_argument("--server-args", default="")
    a = p.parse_args()

    gen_dir = tempfile.mkdtemp(prefix="weft-fair-gen-")
    from weft_helpers import generate_protos
    generate_protos(Path(gen_dir))
    out_dir = tempfile.mkdtemp(prefix="weft-fair-")
    args = ["--scrypt-log-n", "10", "--store-sync", a.store_sync] + a.server_args.split()
    if a.plan != "none":
        name = a.plan.split(":", 1)[0]
        args += ["--plan", a.plan, "--default-plan", name]
    server = WeftProcess(a.weft_bin, os.path.join(out_dir, "data"), args, out_dir, "fair")
    try:
        base = f"http://127.0.0.1:{server.port}"
        target = f"127.0.0.1:{server.port}"
        flood_token, flood_wf, flood_org = account(base, "flood")
        probe_token, probe_wf, probe_org = account(base, "probe")
        assert flood_org != probe_org, "the two accounts share an organization"
        print(f"server {a.weft_bin} sync={a.store_sync} plan={a.plan}; orgs {flood_org} (flood) {probe_org} (probe)")

        alone = Probe(target, probe_token, probe_wf, gen_dir, a.probe_rate, min(5.0, a.duration))
        alone.run()
        print(f"probe alone: {len(alone.latencies)} completed, p50 {pct(alone.latencies, 0.5) * 1000:.1f} ms, "
              f"p99 {pct(alone.latencies, 0.99) * 1000:.1f} ms, max {max(alone.latencies) * 1000:.1f} ms")

        n_total = int(a.flood_rate * (a.duration + a.warmup))
        cfgs = [{"index": i, "procs": a.procs, "n_total": n_total, "rate": a.flood_rate, "target": target,
                 "token": flood_token, "workflow_id": flood_wf, "gen_dir": gen_dir, "channels": 2,
                 "max_inflight": a.max_inflight // a.procs, "call_timeout": 30.0} for i in range(a.procs)]
        probe = Probe(target, probe_token, probe_wf, gen_dir, a.probe_rate, a.duration)
        before = metrics_text(base)
        holder = {}

        def start_probe():
            def later():
                time.sleep(0.3 + a.warmup)
                probe.run()
            holder["t"] = threading.Thread(target=later, daemon=True)
            holder["t"].start()

        t0 = time.time()
        _, results = bx.run_clients("rate", cfgs, timeout=a.duration + a.warmup + 120, on_start=start_probe)
        holder["t"].join(a.duration + 60)
        wall = time.time() - t0
        after = metrics_text(base)
        accepted = sum(r["accepted"] for r in results)
        errors = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        completed = finished_total(after) - finished_total(before)
        print(f"flood: offered {a.flood_rate:.0f}/s for {a.duration + a.warmup:.0f} s ({n_total} calls): accepted {accepted}, "
              f"refused {errors} ; completions (both orgs) {completed / wall:.0f}/s over {wall:.1f} s")
        lat = probe.latencies
        ok = (not probe.failures and probe.statuses.get("Completed", 0) == sum(probe.statuses.values())
              and lat and pct(lat, 0.99) * 1000 < a.max_p99_ms)
        print(f"probe under flood: {len(lat)} completed {probe.statuses}, failures {len(probe.failures)}"
              + (f" (first: {probe.failures[0]})" if probe.failures else "")
              + (f", p50 {pct(lat, 0.5) * 1000:.1f} ms, p90 {pct(lat, 0.9) * 1000:.1f} ms, "
                 f"p99 {pct(lat, 0.99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms" if lat else ""))
        print(f"VERDICT: {'PASS' if ok else 'FAIL'} (every probe execution Completed, p99 end-to-end < {a.max_p99_ms:.0f} ms)")
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
