#!/usr/bin/env python3
"""Step-4 benchmark: the cost of observability (metrics always on, tracing off / 1 % / 100 %).

    python3 loadtest/bench-tracing.py                        # everything, ~10 min on 2 cores
    python3 loadtest/bench-tracing.py --rounds 1 --h2load-duration 3 --exec-n 1000 \\
        --stall-duration 8 --metrics-workflows 200 --metrics-gets 50      # quick check of the script
    python3 loadtest/bench-tracing.py --phases rounds        # only the overhead rounds
    python3 loadtest/bench-tracing.py --phases stall,metrics --json /tmp/tracing.json

Modes, each measured on a fresh `weft serve` (fresh data dir), rotated every round:

  off     no --otel-endpoint: tracing off (metrics are always on)
  ratio1  --otel-endpoint SINK --trace-sampler parentbased_traceidratio --trace-sampler-arg 0.01
  full    --otel-endpoint SINK --trace-sampler always_on

SINK is an OTLP/HTTP collector stand-in run by this script: a threaded HTTP/1.1
server that reads each POST body, counts requests and bytes, and answers 200
with an empty ExportTraceServiceResponse (0 bytes, application/x-protobuf)
without decoding anything, so it is not the bottleneck.

Per server (phase "rounds"):

  1. Health/Check: h2load with bench-health.sh's request shape (-c 16 -m 32,
     2 s warm-up, 8 s measured): req/s, p50/p99 (nearest rank over
     --log-file, 2xx), server CPU per call = utime+stime delta / succeeded.
     h2load counts HTTP 200 as success, and a gRPC error is HTTP 200 too, so
     /metrics is scraped before and after the measured run: the delta of
     grpc_server_handled_total{Health/Check} must be all grpc_code OK and cover
     h2load's successes (h2load_results.run_verdict), and h2load must report no
     failure; otherwise the measurement is invalid;
  2. executions: a closed-loop burst of N (6,000) ExecuteWorkflow calls of the
     3-noop-task workflow of bench-executions.py (its client processes, grpc.aio,
     --procs x --exec-concurrency calls in flight), then the drain: throughput =
     completed / (last completedAt - first createdAt) (server timestamps), server
     CPU per execution = CPU from the start to the drain / completed. Invalid
     unless all N calls were accepted (no error) and every execution was listed,
     drained and ended Completed.

Invalid measurements are left out of the medians and ratios (their figures show
as n/a), listed with the reason, and the script exits 1.

Each CPU window ends --settle s (OTEL_BSP_SCHEDULE_DELAY + 0.5 s) after the
load, so the exporter's last batch is counted in it. Ratios (mode / off of the
same round) per round and their median; the target is "within 10 %" for ratio1.

Phase "stall": an exporter that cannot keep up. Four fresh servers, one after
the other: off; always_on with the healthy sink (full); always_on with a sink
answering every POST after --stall-delay (5) s with 503 (slow503); always_on
with a collector port that refuses connections (closed); default
OTEL_BSP_MAX_QUEUE_SIZE. On each: h2load Health/Check for --stall-duration
(30) s and, at the same time, executions at --stall-rate/s (bench-executions.py's
open-loop run_step); VmRSS every 2 s. The stalled ones are then watched for
--stall-observe (40) s without load: swift-otel reports drops only when its
next batch starts, which waits for the stalled export. Reported:
weft_trace_spans_dropped_total and weft_trace_export_failures_total (at the end
of the load and later), RSS start/max/end, Health/Check req/s, p50, p99 against
off and full, and how long the server takes to exit after SIGTERM.

Phase "metrics": on a ratio1 server, --metrics-workflows (1,000) workflows with
distinct names, spread over --metrics-orgs (10) organizations (one user each),
created over REST and executed once each, then GET /metrics --metrics-gets
(300) times in a row on one keep-alive connection: p50/p99/max (client-side,
request sent to last body byte), body size, series lines. Target < 5 ms p99
(Step 14; Step 4's was 10 ms).

Needs h2load (nghttp2-client) and grpcio/grpcio-tools (Tests/interop/requirements.txt).
Loopback only; every run is bounded.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import http.client
import http.server
import importlib.util
import json
import os
import platform
import re
import random
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _load_bench_executions():
    """bench-executions.py as module `bench_executions` (registered in sys.modules at import time,
    so spawned client processes, which re-run this file's top level, find its functions)."""
    name = "bench_executions"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "bench-executions.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


bx = _load_bench_executions()
sw = bx.sw
pct, fmt, metric_sum, proc_status_kb = bx.pct, bx.fmt, bx.metric_sum, bx.proc_status_kb
from weft_process import WeftProcess, cpu_ticks  # noqa: E402 (on sys.path via bench-executions)
import h2load_results  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ("off", "ratio1", "full")
TARGET_RATIO = 0.10
METRICS_TARGET_MS = 5.0  # p99; Step 14 (Step 4's target was 10 ms)
HEALTH_PATH = "/grpc.health.v1.Health/Check"


def log(msg: str) -> None:
    print(f"[bench-tracing] {msg}", file=sys.stderr, flush=True)


def loadavg():
    return tuple(round(x, 2) for x in os.getloadavg())


# ------------------------------------------------------------------ the OTLP sink

class Sink:
    """OTLP/HTTP collector stand-in: counts POSTs and bytes, never decodes.

    delay/status simulate a stalled collector; closed=True binds a port and never listens
    (connections are refused)."""

    def __init__(self, delay=0.0, status=200, closed=False):
        self.delay, self.status, self.closed = delay, status, closed
        self.lock = threading.Lock()
        self.requests = self.bytes = self.non200 = 0
        self.busy_s = 0.0  # time spent handling POSTs (reading the body to sending the answer), minus any delay
        self.stopping = threading.Event()
        self.httpd = None
        if closed:
            self._sock = socket.socket()
            self._sock.bind(("127.0.0.1", 0))  # bound, not listening: connect() is refused
            self.port = self._sock.getsockname()[1]
            return
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                t0 = time.perf_counter()
                n = int(self.headers.get("content-length") or 0)
                remaining = n
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                waited = 0.0
                if owner.delay:
                    w0 = time.perf_counter()
                    owner.stopping.wait(owner.delay)
                    waited = time.perf_counter() - w0
                status = owner.status
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                with owner.lock:
                    owner.requests += 1
                    owner.bytes += n
                    owner.non200 += status != 200
                    owner.busy_s += time.perf_counter() - t0 - waited

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, name="otlp-sink", daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def counts(self):
        with self.lock:
            return {"requests": self.requests, "bytes": self.bytes, "non200": self.non200, "busy_s": self.busy_s}

    def close(self):
        self.stopping.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
        else:
            self._sock.close()


def count_delta(c0, c1):
    return {k: c1[k] - c0[k] for k in c0}


# ------------------------------------------------------------------ servers

class Bench:
    """Shared state: options, output dir, generated stubs, servers started."""

    def __init__(self, a):
        self.a = a
        self.weft_bin = os.environ.get("WEFT_BIN", str(REPO / ".build" / "release" / "weft"))
        self.out_dir = os.environ.get("OUT_DIR") or tempfile.mkdtemp(prefix="weft-bench-tracing.", dir="/tmp")
        os.makedirs(self.out_dir, exist_ok=True)
        self.gen_dir = os.path.join(self.out_dir, "gen")
        self.grpc_file = a.grpc_file = os.path.join(self.out_dir, "empty.grpc")
        with open(self.grpc_file, "wb") as f:
            f.write(b"\0\0\0\0\0")  # gRPC frame: uncompressed, 0-byte HealthCheckRequest
        self.servers = []
        self.seq = 0
        # Arguments for bench-executions.py's run_step (its defaults, our client settings).
        self.ea = bx.parse_args(["--procs", str(a.procs), "--rates", "1", "--drain-timeout", str(a.drain_timeout),
                                 "--contended-cores", str(a.contended_cores)])

    def mode_args(self, mode, sink):
        if mode == "off":
            return []
        if mode == "ratio1":
            return ["--otel-endpoint", sink.endpoint, "--trace-sampler", "parentbased_traceidratio",
                    "--trace-sampler-arg", str(self.a.ratio)]
        if mode == "full":
            return ["--otel-endpoint", sink.endpoint, "--trace-sampler", "always_on"]
        raise ValueError(mode)

    def start(self, name, args):
        """Starts `weft serve` on a fresh data dir, logs in, checks Health/Check; returns a bx.Target."""
        self.seq += 1
        data_dir = os.path.join(self.a.data_root or self.out_dir, f"data-{self.seq:02d}-{name}")
        os.makedirs(data_dir, exist_ok=True)
        args = ["--scrypt-log-n", os.environ.get("SCRYPT_LOG_N", "10")] + args + shlex.split(self.a.server_args)
        s = WeftProcess(self.weft_bin, data_dir, args, self.out_dir, f"{self.seq:02d}-{name}")
        s.data_dir = data_dir
        self.servers.append(s)
        log(f"server {name}: {shlex.join(s.cmd)}  [pid {s.pid}, port {s.port}]")
        check_health(s.port)
        token = sw.login("127.0.0.1", s.port, "bench-tracing@bench.weft.test", "bench-password-1", "Bench Tracing")
        t = bx.Target("127.0.0.1", s.port, token, s.pid, self.gen_dir, server=s)
        t.server_cmd = shlex.join(s.cmd)
        return t

    def stop(self, t):
        """SIGTERM (SIGKILL after --stop-timeout s); notes how long the exit took."""
        died = t.server.died()
        problems = t.server.log_problems()
        t0 = time.monotonic()
        t.server.stop(timeout=self.a.stop_timeout)
        stop_s = time.monotonic() - t0
        if not self.a.keep_data:
            shutil.rmtree(t.server.data_dir, ignore_errors=True)
        return {"died": died, "log_problems": problems[0], "log_problem_lines": problems[1],
                "stop": t.server.exit_note, "stop_s": round(stop_s, 1), "command": t.server_cmd}

    def cleanup(self):
        for s in self.servers:
            if s.alive():
                s.stop()
            if not self.a.keep_data:
                shutil.rmtree(s.data_dir, ignore_errors=True)


def check_health(port):
    """One Health/Check by hand: h2load only sees HTTP 200, so a gRPC error would look fine."""
    import grpc
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        resp = ch.unary_unary(HEALTH_PATH)(b"", timeout=10)  # raw bytes in and out
    finally:
        ch.close()
    if resp != b"\x08\x01":
        raise SystemExit(f"Health/Check on port {port}: unexpected response {resp!r} (want SERVING = 08 01)")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def server_cpu_s(pid):
    t = cpu_ticks(pid)
    return None if t is None else t / CLK_TCK


def sleep_settle(t, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end and t.server.alive():
        time.sleep(0.1)


# ------------------------------------------------------------------ Health/Check with h2load

def h2load_cmd(a, port, duration, lat_path=None):
    cmd = ["h2load", "-t", "1", "-D", str(duration), "-c", str(a.h2load_c), "-m", str(a.h2load_m)]
    if lat_path:
        cmd.append(f"--log-file={lat_path}")
    return cmd + ["-d", a.grpc_file, "-H", "content-type: application/grpc", "-H", "te: trailers",
                  f"http://127.0.0.1:{port}{HEALTH_PATH}"]


def parse_h2load(text, lat_path):
    """req/s, counts and h2load's mean from its output; p50/p99 (µs, nearest rank, 2xx) from --log-file."""
    r = h2load_results.parse_output(text)
    durs = h2load_results.log_durations(lat_path)
    r.update({"p50_us": pct(durs, 0.5), "p99_us": pct(durs, 0.99), "logged": len(durs)})
    return r


HEALTH_FIGURES = ("req_per_s", "mean_us", "p50_us", "p99_us", "cpu_us_per_call")
EXEC_FIGURES = ("exec_per_s", "cpu_ms_per_exec", "lat_p50_ms", "lat_p99_ms")


def invalidate(r, why, keys):
    """Marks a measurement invalid: its figures move to r["unverified"] and read None, so every median, ratio
    and table leaves them out."""
    r["valid"] = False
    r["invalid"] = "; ".join(why)
    r["unverified"] = {k: r.get(k) for k in keys}
    for k in keys:
        r[k] = None


def run_health(b, t, tag, duration, settle, warmup=0.0):
    """Warm-up, then one measured h2load run; the CPU window runs to `settle` s after it. The gRPC status of
    the measured calls is checked from /metrics scraped just before and after (h2load sees only HTTP 200)."""
    a = b.a
    if warmup > 0:
        subprocess.run(h2load_cmd(a, t.port, warmup), capture_output=True, timeout=warmup + 60)
    lat = os.path.join(b.out_dir, f"{tag}.lat")
    watch = bx.CpuWatch(t.pid)
    m0 = t.scrape()
    ch0, la0 = children_cpu_s(), loadavg()
    watch.start()
    p = subprocess.run(h2load_cmd(a, t.port, duration, lat), capture_output=True, text=True, timeout=duration + 120)
    h2load_cpu = children_cpu_s() - ch0
    sleep_settle(t, settle)
    cpu = watch.stop(h2load_cpu)
    m1 = t.scrape()
    with open(os.path.join(b.out_dir, f"{tag}.out"), "w") as f:
        f.write(p.stdout + p.stderr)
    r = parse_h2load(p.stdout, lat)
    try:
        os.remove(lat)  # tens of MB; the figures are kept
    except OSError:
        pass
    if p.returncode != 0:
        log(f"warning: h2load exited {p.returncode} for {tag} (see {b.out_dir}/{tag}.out)")
    r.update({"server_cpu_s": cpu["server_cpu_s"], "h2load_cpu_s": h2load_cpu, "other_cores": cpu["other_cores"],
              "compiler_seen": cpu["compiler_seen"], "loadavg": la0,
              "contended": cpu["compiler_seen"] or (cpu["other_cores"] or 0) > a.contended_cores})
    r["cpu_us_per_call"] = (cpu["server_cpu_s"] * 1e6 / r["succeeded"]) if r["succeeded"] and cpu["server_cpu_s"] is not None else None
    v = h2load_results.run_verdict(r, p.returncode, m0, m1, "grpc.health.v1.Health", "Check")
    r.update(valid=v["valid"], invalid=None, grpc_ok=v["grpc_ok"], grpc_other=v["grpc_other"],
             grpc_status=h2load_results.status_note(v, r))
    log(f"{tag}: {fmt(r['req_per_s'], '.0f')} req/s, p50/p99 {fmt(r['p50_us'], 'd')}/{fmt(r['p99_us'], 'd')} µs, "
        f"CPU/call {fmt(r['cpu_us_per_call'], '.2f')} µs, failed {r['failed']}, other load "
        f"{fmt(r['other_cores'], '.2f')} cores, loadavg {la0[0]}; {r['grpc_status']}")
    if not v["valid"]:
        invalidate(r, v["why"], HEALTH_FIGURES)
        log(f"{tag}: INVALID, left out of the figures: {r['invalid']}")
    return r


# ------------------------------------------------------------------ executions: closed-loop burst

def drain(t, wf, timeout):
    """Waits until no execution of `wf` is Pending or Running; True when drained."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and t.server.alive():
        try:
            if t.open_count(wf) == 0:
                return True
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            log(f"warning: drain check: {e!r}")
        time.sleep(0.2)
    return False


def run_burst(b, t, tag, n, settle):
    """N ExecuteWorkflow calls, closed loop (procs x concurrency in flight), then the drain."""
    a = b.a
    E = t.pb.Execution
    wf = t.create_workflow(f"bench-tracing {tag}")
    procs = max(1, min(a.procs, n))
    per = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
    cfgs = [{"index": k, "n": per[k], "target": t.target, "token": t.token, "workflow_id": wf, "gen_dir": b.gen_dir,
             "channels": 1, "concurrency": a.exec_concurrency, "call_timeout": 30.0} for k in range(procs)]
    watch = bx.CpuWatch(t.pid)
    la0 = loadavg()
    start_at, results = bx.run_clients("hold", cfgs, timeout=a.drain_timeout + 600, on_start=watch.start)
    accepted = sum(x["accepted"] for x in results)
    drained = drain(t, wf, a.drain_timeout)
    sleep_settle(t, settle)
    cpu = watch.stop(sum(x["cpu_s"] for x in results))
    execs = t.list_all(wf) if t.server.alive() else []
    done = [(bx.ts_ms(e.created_at), bx.ts_ms(e.completed_at)) for e in execs
            if e.status == E.Completed and e.HasField("completed_at")]
    r = {"n": n, "accepted": accepted, "errors": dict(sum((collections.Counter(x["errors"]) for x in results),
                                                          collections.Counter())),
         "completed": len(done), "not_completed": len(execs) - len(done), "drained": drained,
         "server_cpu_s": cpu["server_cpu_s"], "other_cores": cpu["other_cores"], "compiler_seen": cpu["compiler_seen"],
         "loadavg": la0, "client_cpu_s": sum(x["cpu_s"] for x in results),
         "submit_s": max(x["end"] for x in results) - start_at,
         "contended": cpu["compiler_seen"] or (cpu["other_cores"] or 0) > a.contended_cores}
    if done:
        span_s = (max(c for _, c in done) - min(s for s, _ in done)) / 1000
        lat = sorted(c - s for s, c in done)
        r.update({"span_s": span_s, "exec_per_s": len(done) / span_s if span_s > 0 else None,
                  "lat_p50_ms": pct(lat, 0.5), "lat_p99_ms": pct(lat, 0.99)})
    else:
        r.update({"span_s": None, "exec_per_s": None, "lat_p50_ms": None, "lat_p99_ms": None})
    r["cpu_ms_per_exec"] = (cpu["server_cpu_s"] * 1e3 / len(done)) if done and cpu["server_cpu_s"] else None
    r["statuses"] = dict(collections.Counter(E.Status.Name(e.status) for e in execs))
    log(f"{tag}: {len(done)}/{n} completed in {fmt(r['span_s'], '.2f')} s = {fmt(r['exec_per_s'], '.0f')}/s, "
        f"CPU/exec {fmt(r['cpu_ms_per_exec'], '.3f')} ms, errors {r['errors'] or 0}, other load "
        f"{fmt(r['other_cores'], '.2f')} cores, loadavg {la0[0]}")
    # Valid only if every call was accepted and every execution ran to Completed.
    why = []
    if r["errors"] or accepted < n:
        why.append(f"{accepted}/{n} calls accepted" + (f", errors {r['errors']}" if r["errors"] else ""))
    if not drained:
        why.append(f"not drained within {a.drain_timeout:g} s")
    if len(execs) < accepted:
        why.append(f"{len(execs)} of {accepted} accepted executions listed")
    bad = {k: v for k, v in r["statuses"].items() if k != "Completed"}
    if bad:
        why.append("not Completed: " + ", ".join(f"{k} {v}" for k, v in sorted(bad.items())))
    if not done:
        why.append("no completed execution")
    r["valid"], r["invalid"] = not why, None
    if why:
        invalidate(r, why, EXEC_FIGURES)
        log(f"{tag}: INVALID, left out of the figures: {r['invalid']}")
    return r


# ------------------------------------------------------------------ quiet machine

def busy_cores(seconds=2.0):
    m0, t0 = bx.machine_busy_ticks(), time.monotonic()
    time.sleep(seconds)
    m1 = bx.machine_busy_ticks()
    return None if m0 is None or m1 is None else (m1 - m0) / CLK_TCK / (time.monotonic() - t0)


def wait_quiet(a, what):
    """Waits (up to --quiet-timeout) until other processes use less than --quiet-cores."""
    deadline = time.monotonic() + a.quiet_timeout
    while True:
        busy = busy_cores()
        if busy is None or busy <= a.quiet_cores:
            return busy
        if time.monotonic() > deadline:
            log(f"note: machine still busy ({busy:.2f} cores) before {what}; going on (figures marked contended)")
            return busy
        log(f"machine busy ({busy:.2f} cores used by others, loadavg {loadavg()[0]}) before {what}; waiting 15 s")
        time.sleep(15)


# ------------------------------------------------------------------ phases

def phase_rounds(b, report):
    a = b.a
    sink = Sink()
    report["rounds"] = []
    try:
        for rnd in range(1, a.rounds + 1):
            order = list(a.modes[(rnd - 1) % len(a.modes):]) + list(a.modes[:(rnd - 1) % len(a.modes)])
            for mode in order:
                wait_quiet(a, f"round {rnd} {mode}")
                t = b.start(f"r{rnd}-{mode}", b.mode_args(mode, sink))
                row = {"round": rnd, "mode": mode}
                try:
                    m0, c0 = t.scrape(), sink.counts()
                    row["health"] = run_health(b, t, f"r{rnd}-{mode}-health", a.h2load_duration, a.settle,
                                               warmup=a.h2load_warmup)
                    m1, c1 = t.scrape(), sink.counts()
                    row["exec"] = run_burst(b, t, f"r{rnd}-{mode}-exec", a.exec_n, a.settle)
                    m2, c2 = t.scrape(), sink.counts()
                    for key, (ma, mb, ca, cb) in (("health", (m0, m1, c0, c1)), ("exec", (m1, m2, c1, c2))):
                        row[key]["sink"] = count_delta(ca, cb)
                        row[key]["dropped"] = bx.metric_delta(ma, mb, "weft_trace_spans_dropped_total")
                        row[key]["export_failures"] = bx.metric_delta(ma, mb, "weft_trace_export_failures_total")
                    row["rss_mb"] = (proc_status_kb(t.pid, "VmRSS") or 0) / 1024
                finally:
                    row["server"] = b.stop(t)
                report["rounds"].append(row)
                if row["server"]["died"]:
                    raise SystemExit(f"server r{rnd}-{mode}: {row['server']['died']}")
    finally:
        sink.close()


def rss_sampler(pid, interval, out, stop):
    t0 = time.monotonic()
    while not stop.is_set():
        kb = proc_status_kb(pid, "VmRSS")
        if kb is not None:
            out.append((round(time.monotonic() - t0, 1), kb / 1024))
        stop.wait(interval)


STALL_KINDS = ("off", "full", "slow503", "closed")


def phase_stall(b, report):
    """Health/Check + executions for --stall-duration s on: off, full (a healthy sink), and always_on servers
    whose collector is stalled (slow503) or down (closed); then, for the stalled ones, --stall-observe s
    without load, watching the drop/failure counters (swift-otel reports them at its next batch)."""
    a = b.a
    st = report["stall"] = {"kinds": a.stall_kinds, "delay_s": a.stall_delay, "status": a.stall_status, "runs": {},
                            "otel_env": {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}}
    for kind in a.stall_kinds:
        sink = (None if kind == "off" else Sink() if kind == "full" else Sink(closed=True) if kind == "closed"
                else Sink(delay=a.stall_delay, status=a.stall_status))
        wait_quiet(a, f"stall {kind}")
        args = [] if sink is None else ["--otel-endpoint", sink.endpoint, "--trace-sampler", "always_on"]
        t = b.start(f"stall-{kind}", args)
        r = {"kind": kind}
        try:
            subprocess.run(h2load_cmd(a, t.port, a.h2load_warmup), capture_output=True, timeout=60)
            samples, stop = [], threading.Event()
            sampler = threading.Thread(target=rss_sampler, args=(t.pid, 2.0, samples, stop), daemon=True)
            m0, c0 = t.scrape(), sink.counts() if sink else None
            sampler.start()
            result = {}

            def health():
                result["health"] = run_health(b, t, f"stall-{kind}-health", a.stall_duration, 0.0)
            h = threading.Thread(target=health, daemon=True)
            h.start()
            # Executions alongside: open loop at --stall-rate/s (bench-executions.py's run step; its client
            # processes take ~1 s to start, so it runs 2 s shorter than h2load).
            ex = bx.run_step(t, b.ea, b.gen_dir, f"stall-{kind}", a.stall_rate, max(1, a.stall_duration - 2))
            h.join(a.stall_duration + 180)
            load_end, n_load = time.monotonic(), len(samples)
            m1 = t.scrape()
            r["at_load_end"] = {"dropped": metric_sum(m1, "weft_trace_spans_dropped_total"),
                                "export_failures": metric_sum(m1, "weft_trace_export_failures_total")}
            observed = []
            if kind in ("slow503", "closed"):
                while time.monotonic() - load_end < a.stall_observe and t.server.alive():
                    time.sleep(2.0)
                    m = t.scrape()
                    observed.append((round(time.monotonic() - load_end, 1),
                                     metric_sum(m, "weft_trace_spans_dropped_total"),
                                     metric_sum(m, "weft_trace_export_failures_total")))
            else:
                time.sleep(2.0)
            stop.set()
            sampler.join(5)
            m2 = t.scrape()
            first = next((o[0] for o in observed if (o[1] or 0) > (r["at_load_end"]["dropped"] or 0)), None)
            r.update({"health": result.get("health"),
                      "exec": {k: ex.get(k) for k in ("rate", "accepted", "completed_per_s", "lat_p50_ms",
                                                      "lat_p99_ms", "ack_p50_ms", "ack_p99_ms", "verdict",
                                                      "server_cpu_us_per_exec")},
                      "rss_samples": samples,
                      "rss_start_mb": samples[0][1] if samples else None,
                      "rss_max_mb": max(x[1] for x in samples) if samples else None,
                      "rss_load_end_mb": samples[n_load - 1][1] if n_load else None,
                      "rss_end_mb": samples[-1][1] if samples else None,
                      "observed": observed, "observe_s": round(time.monotonic() - load_end, 1),
                      "dropped_more_after_s": first,
                      "dropped": metric_sum(m2, "weft_trace_spans_dropped_total"),
                      "export_failures": metric_sum(m2, "weft_trace_export_failures_total"),
                      "sink": count_delta(c0, sink.counts()) if sink else None})
            log(f"stall {kind}: RSS {fmt(r['rss_start_mb'], '.1f')} -> max {fmt(r['rss_max_mb'], '.1f')} -> "
                f"{fmt(r['rss_end_mb'], '.1f')} MB; at load end dropped {fmt(r['at_load_end']['dropped'], '.0f')}, "
                f"failures {fmt(r['at_load_end']['export_failures'], '.0f')}; after {r['observe_s']:g} s dropped "
                f"{fmt(r['dropped'], '.0f')}, failures {fmt(r['export_failures'], '.0f')}; sink {r['sink']}")
        finally:
            r["server"] = b.stop(t)
            if sink:
                sink.close()
        st["runs"][kind] = r


# What Prometheus sends for OpenMetrics (its default scrape protocols).
METRICS_ACCEPT = {
    "text": {},
    "openmetrics": {"Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"},
}


def phase_metrics(b, report):
    a = b.a
    sink = Sink()
    wait_quiet(a, "metrics")
    t = b.start("metrics", b.mode_args("ratio1", sink))
    r = {"workflows": a.metrics_workflows, "gets": a.metrics_gets, "organizations": a.metrics_orgs}
    try:
        n = a.metrics_workflows
        # One user per organization (each registration makes its own): the
        # workflows are spread over them, as on a server with tenants.
        tokens = [t.token] + [sw.login("127.0.0.1", t.port, f"metrics-org-{k}@bench.weft.test", "bench-password-1",
                                       f"Metrics Org {k}") for k in range(1, max(1, a.metrics_orgs))]
        rng = random.Random(4)
        words = ["invoice", "payroll", "ledger", "churn", "backup", "digest", "refund", "quota", "audit", "sync"]
        names = [f"{rng.choice(words)} {rng.choice(words)} #{i:04d}" for i in range(n)]
        body = lambda name: {"name": name, "tasks": [{"key": "a", "name": "a", "action": "noop"},
                                                    {"key": "b", "name": "b", "action": "noop", "dependsOn": ["a"]},
                                                    {"key": "c", "name": "c", "action": "noop", "dependsOn": ["b"]}]}
        errors, lock = [], threading.Lock()
        nxt = iter(range(n))

        def worker():
            clients = [sw.Client("127.0.0.1", t.port, token, timeout=60) for token in tokens]
            try:
                while True:
                    with lock:
                        i = next(nxt, None)
                    if i is None or len(errors) > 10:
                        return
                    c = clients[i % len(clients)]
                    st, payload = c.request("POST", "/workflows", body(names[i]))
                    if st != 201:
                        errors.append(f"POST /workflows: HTTP {st}: {payload[:200]!r}")
                        continue
                    wf = json.loads(payload)["id"]
                    st, payload = c.request("POST", f"/workflows/{wf}/execute", {})
                    if st != 202:
                        errors.append(f"POST /workflows/{wf}/execute: HTTP {st}: {payload[:200]!r}")
            finally:
                for c in clients:
                    c.close()
        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.metrics_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)
        if errors:
            raise SystemExit(f"metrics phase: {len(errors)} errors, first: {errors[0]}")
        r["create_execute_s"] = time.monotonic() - t0
        log(f"metrics: {n} workflows created and executed in {r['create_execute_s']:.1f} s; waiting for them to finish")
        deadline, finished = time.monotonic() + a.drain_timeout, 0
        while time.monotonic() < deadline:
            finished = metric_sum(t.scrape(), "weft_executions_finished_total") or 0
            if finished >= n:
                break
            time.sleep(0.5)
        r["finished"] = finished
        if finished < n:
            log(f"warning: only {finished:.0f}/{n} executions finished")
        time.sleep(1.0)
        conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=30)
        durs, sizes, text = [], [], ""
        cpu0 = None
        try:
            for i in range(a.metrics_warmup + a.metrics_gets):
                if i == a.metrics_warmup:
                    cpu0, la0 = server_cpu_s(t.pid), loadavg()
                t1 = time.perf_counter()
                conn.request("GET", "/metrics", headers=METRICS_ACCEPT[a.metrics_format])
                resp = conn.getresponse()
                data = resp.read()
                dt = time.perf_counter() - t1
                if resp.status != 200:
                    raise SystemExit(f"GET /metrics: HTTP {resp.status}")
                if i >= a.metrics_warmup:
                    durs.append(dt * 1e3)
                    sizes.append(len(data))
                text = data
        finally:
            conn.close()
        cpu1 = server_cpu_s(t.pid)
        text = text.decode(errors="replace")
        r["format"] = a.metrics_format
        r["exemplars"] = len(re.findall(r" # \{trace_id=", text))
        # The text parser reads OpenMetrics too once the exemplars are cut off.
        m = bx.parse_metrics(re.sub(r" # \{.*$", "", text, flags=re.M))
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        wf_labels = {s.labels["workflow"] for s in m.samples if "workflow" in s.labels}
        durs.sort()
        r.update({"p50_ms": pct(durs, 0.5), "p99_ms": pct(durs, 0.99), "max_ms": durs[-1] if durs else None,
                  "mean_ms": statistics.mean(durs) if durs else None, "bytes": statistics.median(sizes) if sizes else None,
                  "series": len(lines), "families": len(m.types), "workflow_labels": len(wf_labels),
                  "server_cpu_ms_per_get": ((cpu1 - cpu0) * 1e3 / len(durs)) if durs and cpu0 is not None else None,
                  "loadavg": la0 if durs else loadavg()})
        # The target is about 1,000 workflows' worth of series: a run where not all of them finished did not render them.
        r["ok"] = r["p99_ms"] is not None and r["p99_ms"] < METRICS_TARGET_MS and finished >= n
        if finished < n:
            r["invalid"] = f"only {finished:.0f}/{n} executions finished before the measurement"
        log(f"metrics: GET /metrics x{len(durs)}: p50 {fmt(r['p50_ms'], '.2f')} ms, p99 {fmt(r['p99_ms'], '.2f')} ms, "
            f"max {fmt(r['max_ms'], '.2f')} ms, {fmt(r['bytes'], '.0f')} bytes, {r['series']} series, "
            f"{r['workflow_labels']} workflow label values")
    finally:
        r["server"] = b.stop(t)
        sink.close()
    report["metrics"] = r


# ------------------------------------------------------------------ report

def med(vals):
    v = [x for x in vals if x is not None]
    return statistics.median(v) if v else None


def ratio(x, y):
    return None if x is None or not y else x / y


RATIO_KEYS = (("health", "req_per_s", "Health/Check req/s"), ("health", "cpu_us_per_call", "CPU/call"),
              ("exec", "exec_per_s", "executions/s"), ("exec", "cpu_ms_per_exec", "CPU/execution"))


def clean_median(items, value, contended):
    """Median of value(x) over the items not contended (over all of them when every one is); (median, n used).
    Items whose value is None (an invalid measurement) are left out first."""
    items = [x for x in items if value(x) is not None]
    clean = [x for x in items if not contended(x)]
    use = clean or list(items)
    return med(value(x) for x in use), len(use)


def compute_ratios(rounds, modes):
    """{mode: {"rounds": [{round, key: ratio, key_contended}], "median": {key: ratio}, "n": {key: pairs used}}}
    for each traced mode vs off. A pair is contended when either run is; the median leaves those out."""
    out = {}
    by = {(r["round"], r["mode"]): r for r in rounds}
    for mode in modes:
        if mode == "off":
            continue
        per = []
        for rnd in sorted({r["round"] for r in rounds}):
            x, base = by.get((rnd, mode)), by.get((rnd, "off"))
            if not x or not base:
                continue
            row = {"round": rnd}
            for sect, key, _ in RATIO_KEYS:
                row[key] = ratio(x.get(sect, {}).get(key), base.get(sect, {}).get(key))
                row[key + "_contended"] = bool(x.get(sect, {}).get("contended") or base.get(sect, {}).get("contended"))
            per.append(row)
        meds = {key: clean_median(per, lambda p: p[key], lambda p: p[key + "_contended"]) for _, key, _ in RATIO_KEYS}
        out[mode] = {"rounds": per, "median": {k: v[0] for k, v in meds.items()}, "n": {k: v[1] for k, v in meds.items()}}
    return out


def pct_off(r):
    return "n/a" if r is None else f"{r:.3f} ({100 * (r - 1):+.1f} %)"


def print_report(report, a):
    print()
    print(f"Weft observability benchmark, {report['date']}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{report['weft_bin']}; load average at start {report['loadavg_start']}.")
    print()
    print(f"Command: {report['command']}")
    rounds = report.get("rounds") or []
    if rounds:
        print()
        print(f"Rounds: {a.rounds}, modes rotated per round, a fresh server per mode and round. Health/Check: h2load -t 1 "
              f"-c {a.h2load_c} -m {a.h2load_m}, {a.h2load_warmup:g} s warm-up + {a.h2load_duration:g} s. Executions: "
              f"{a.exec_n} ExecuteWorkflow calls of a -> b -> c (noop), {a.procs} processes x {a.exec_concurrency} in "
              f"flight, then drained; CPU windows end {a.settle:g} s after the load. Medians over rounds.")
        print()
        print("| mode | Health/Check req/s | p50 | p99 | CPU/call | executions/s | CPU/execution | exec p50/p99 "
              "| exporter POSTs (MB, sink ms/POST) | spans dropped | export failures | runs (contended) | loadavg (1 min) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for mode in a.modes:
            g = [r for r in rounds if r["mode"] == mode]
            if not g:
                continue
            H = lambda k: clean_median(g, lambda r: r["health"].get(k), lambda r: r["health"]["contended"])[0]
            X = lambda k: clean_median(g, lambda r: r["exec"].get(k), lambda r: r["exec"]["contended"])[0]
            posts = sum(r[s]["sink"]["requests"] for r in g for s in ("health", "exec")) / len(g)
            mb = sum(r[s]["sink"]["bytes"] for r in g for s in ("health", "exec")) / len(g) / 1e6
            busy = sum(r[s]["sink"]["busy_s"] for r in g for s in ("health", "exec")) / len(g)
            dropped = [sum((r[s].get("dropped") or 0) for s in ("health", "exec")) for r in g]
            fails = [sum((r[s].get("export_failures") or 0) for s in ("health", "exec")) for r in g]
            cont = sum(1 for r in g if r["health"]["contended"] or r["exec"]["contended"])
            print("| %s | %s | %s µs | %s µs | %s µs | %s | %s ms | %s / %s ms | %s (%s) | %s | %s | %d (%d) | %s |" % (
                mode, fmt(H("req_per_s"), ",.0f"), fmt(H("p50_us"), ".0f"), fmt(H("p99_us"), ".0f"),
                fmt(H("cpu_us_per_call"), ".2f"), fmt(X("exec_per_s"), ",.0f"), fmt(X("cpu_ms_per_exec"), ".3f"),
                fmt(X("lat_p50_ms"), ".0f"), fmt(X("lat_p99_ms"), ".0f"),
                f"{posts:,.0f}" if mode != "off" else "—",
                f"{mb:.1f}, {1e3 * busy / posts:.2f}" if mode != "off" and posts else "—",
                f"{med(dropped):,.0f}" if mode != "off" else "—", f"{med(fails):,.0f}" if mode != "off" else "—",
                len(g), cont, "/".join(str(r["health"]["loadavg"][0]) for r in g)))
        print()
        print("Per round (mode / off of the same round; req/s and executions/s: higher is better, CPU: lower):")
        print()
        ratios = report["ratios"]
        print("| mode | round | " + " | ".join(lbl for _, _, lbl in RATIO_KEYS) + " |")
        print("|---|---|" + "---:|" * len(RATIO_KEYS))
        for mode, d in ratios.items():
            for p in d["rounds"]:
                print(f"| {mode} | {p['round']} | " + " | ".join(
                    pct_off(p[k]) + (" (contended)" if p.get(k + "_contended") else "") for _, k, _ in RATIO_KEYS) + " |")
            print(f"| **{mode}** | **median** | " + " | ".join(f"**{pct_off(d['median'][k])}**" for _, k, _ in RATIO_KEYS) + " |")
        print()
        for mode, d in ratios.items():
            mm = d["median"]
            worst = [mm["req_per_s"], mm["exec_per_s"]]
            cpus = [mm["cpu_us_per_call"], mm["cpu_ms_per_exec"]]
            verdict = lambda vals, good: ("**n/a** (no valid pair of runs)" if any(x is None for x in vals)
                                          else "within" if all(good(x) for x in vals) else "**not within**")
            target = " (target: within 10 %)" if mode == "ratio1" else ""
            print(f"* {mode}{target}: Health/Check throughput {pct_off(mm['req_per_s'])}, execution throughput "
                  f"{pct_off(mm['exec_per_s'])} -> {verdict(worst, lambda x: x >= 1 - TARGET_RATIO)} 10 %; CPU per call "
                  f"{pct_off(mm['cpu_us_per_call'])}, per execution {pct_off(mm['cpu_ms_per_exec'])} -> "
                  f"{verdict(cpus, lambda x: x <= 1 + TARGET_RATIO)} 10 %; pairs used: "
                  f"{d['n']['req_per_s']} (Health/Check), {d['n']['exec_per_s']} (executions).")
        bad = [(r, sect) for r in rounds for sect in ("health", "exec") if r.get(sect, {}).get("valid") is False]
        if bad:
            print(f"* **{len(bad)} invalid measurement(s), left out of the medians and ratios:**")
            for r, sect in bad:
                print(f"  * round {r['round']} {r['mode']}, {'Health/Check' if sect == 'health' else 'executions'}: "
                      f"{r[sect]['invalid']}")
        checked = [r["health"].get("grpc_status") for r in rounds if r["health"].get("grpc_status")]
        if checked:
            print("* gRPC status of the Health/Check calls: checked for every run from /metrics "
                  "(grpc_server_handled_total delta by grpc_code); a run counts only if every call ended OK and "
                  "the OK count covers h2load's successes.")
        if any(r["health"]["contended"] or r["exec"]["contended"] for r in rounds):
            print("* Contended: other processes used more than "
                  f"{a.contended_cores} cores during some measurements (marked above); medians leave them out "
                  "when uncontended ones exist.")
    st = report.get("stall")
    if st and st.get("runs"):
        runs = st["runs"]
        print()
        print(f"Exporter that cannot keep up: h2load Health/Check {a.stall_duration:g} s with executions at "
              f"{a.stall_rate}/s alongside, one fresh server each; off = no tracing; the others --trace-sampler "
              f"always_on with the collector healthy (full), answering {st['status']} after {st['delay_s']:g} s "
              f"(slow503) or refusing connections (closed); OTEL_BSP_* {st['otel_env'] or 'defaults'}. The stalled "
              f"ones are then watched without load for up to {a.stall_observe:g} s; VmRSS every 2 s.")
        print()
        print("| server | Health/Check req/s | p50 | p99 | failed | executions/s (p50/p99) | RSS start / max / end of load "
              "/ end | spans dropped at end of load → later | export failures → later | collector POSTs "
              "| exit after SIGTERM | loadavg |")
        print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
        for kind in STALL_KINDS:
            r = runs.get(kind)
            if not r:
                continue
            h, e, le = r.get("health") or {}, r["exec"], r["at_load_end"]
            later = (lambda k0, k1: f"{fmt(le[k0], ',.0f')} → {fmt(r[k1], ',.0f')}"
                     + (f" ({r['observe_s']:g} s)" if r["observed"] else ""))
            print("| %s | %s | %s µs | %s µs | %s | %s (%s / %s ms) | %s / %s / %s / %s MB | %s | %s | %s | %s | %s |" % (
                kind, fmt(h.get("req_per_s"), ",.0f"), fmt(h.get("p50_us"), ".0f"), fmt(h.get("p99_us"), ".0f"),
                h.get("failed", "n/a"), fmt(e.get("completed_per_s"), ".0f"), fmt(e.get("lat_p50_ms"), "d"),
                fmt(e.get("lat_p99_ms"), "d"), fmt(r["rss_start_mb"], ".1f"), fmt(r["rss_max_mb"], ".1f"),
                fmt(r["rss_load_end_mb"], ".1f"), fmt(r["rss_end_mb"], ".1f"),
                "—" if kind == "off" else later("dropped", "dropped"),
                "—" if kind == "off" else later("export_failures", "export_failures"),
                "—" if not r["sink"] else f"{r['sink']['requests']:,}",
                f"{r['server']['stop_s']:g} s" + (" (killed)" if "killed" in (r["server"]["stop"] or "") else ""),
                (h.get("loadavg") or ("n/a",))[0]))
        print()
        for kind in STALL_KINDS:
            r = runs.get(kind) or {}
            if (r.get("health") or {}).get("valid") is False:
                print(f"* **{kind}: Health/Check measurement invalid** (figures n/a): {r['health']['invalid']}")
            ev = (r.get("exec") or {}).get("verdict")
            if ev and ev != "sustained":
                print(f"* {kind}: executions at {a.stall_rate}/s not sustained: {ev}")
        base = {k: (runs.get(k) or {}).get("health") for k in ("off", "full")}
        for kind in ("full", "slow503", "closed"):
            hs = (runs.get(kind) or {}).get("health")
            if not hs:
                continue
            if hs.get("req_per_s") is None:
                continue
            vs = [f"vs {k}: req/s {pct_off(ratio(hs['req_per_s'], hb['req_per_s']))}, p50 "
                  f"{pct_off(ratio(hs['p50_us'], hb['p50_us']))}, p99 {pct_off(ratio(hs['p99_us'], hb['p99_us']))}"
                  for k, hb in base.items() if hb and k != kind]
            r = runs[kind]
            print(f"* {kind}: " + "; ".join(vs) + f"; RSS start → end {fmt(r['rss_end_mb'] - r['rss_start_mb'], '+.1f')} MB"
                  + (f"; the drop counter first grew {r['dropped_more_after_s']:g} s after the load"
                     if r.get("dropped_more_after_s") is not None else "") + ".")
    mt = report.get("metrics")
    if mt and mt.get("p50_ms") is not None:
        print()
        print(f"/metrics ({mt.get('format', 'text')}; {mt.get('exemplars', 0)} exemplars) with {mt['workflows']:,} workflows over {mt.get('organizations', 1)} organizations (distinct names, each executed once; "
              f"{fmt(mt.get('finished'), '.0f')} finished), {mt['gets']} sequential GETs on one keep-alive connection:")
        print()
        print("| p50 | p99 | max | mean | body | series lines | metric families | workflow label values "
              "| server CPU / render | p99 < 5 ms |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
        print("| %s ms | %s ms | %s ms | %s ms | %s KB | %d | %d | %d | %s ms | %s |" % (
            fmt(mt["p50_ms"], ".2f"), fmt(mt["p99_ms"], ".2f"), fmt(mt["max_ms"], ".2f"), fmt(mt["mean_ms"], ".2f"),
            fmt(mt["bytes"] / 1000, ".1f"), mt["series"], mt["families"], mt["workflow_labels"],
            fmt(mt["server_cpu_ms_per_get"], ".2f"), ("yes" if mt["ok"] else "**no**") + (
                "" if mt["workflows"] >= 1000 else f" ({mt['workflows']:,} workflows, not the target's 1,000)")))
        if mt.get("invalid"):
            print()
            print(f"Not a valid measurement of the target: {mt['invalid']}.")
    print()
    for s in report.get("server_notes", []):
        print(f"Server note: {s}")
    if report.get("failure"):
        print(f"FAILED: {report['failure'].strip()}")
    print(f"Logs: {report['out_dir']}")


# ------------------------------------------------------------------ main

def parse_args(argv=None):
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Step-4 benchmark: observability overhead.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--phases", default="rounds,stall,metrics", help="comma list of rounds, stall, metrics")
    g = ap.add_argument_group("rounds")
    g.add_argument("--rounds", type=int, default=int(env("ROUNDS", 3)), help="rounds (default 3)")
    g.add_argument("--modes", default="off,ratio1,full", help="modes to run (default off,ratio1,full)")
    g.add_argument("--ratio", type=float, default=0.01, help="ratio1's --trace-sampler-arg (default 0.01)")
    g.add_argument("--h2load-c", type=int, default=16)
    g.add_argument("--h2load-m", type=int, default=32)
    g.add_argument("--h2load-duration", type=int, default=8, help="measured h2load seconds (default 8)")
    g.add_argument("--h2load-warmup", type=int, default=2, help="unmeasured h2load seconds first (default 2)")
    g.add_argument("--exec-n", type=int, default=6000, help="executions per burst (default 6000)")
    g.add_argument("--exec-concurrency", type=int, default=32, help="calls in flight per client process (default 32)")
    g.add_argument("--procs", type=int, default=int(env("PROCS", os.cpu_count() or 2)), help="client processes")
    g.add_argument("--settle", type=float, default=None,
                   help="seconds after the load still counted in the CPU window "
                        "(default OTEL_BSP_SCHEDULE_DELAY + 0.5 s = 5.5)")
    g = ap.add_argument_group("stalled exporter")
    g.add_argument("--stall-kinds", default="off,full,slow503,closed",
                   help="servers of the stall phase, from off, full, slow503, closed (default all, in this order)")
    g.add_argument("--stall-delay", type=float, default=5.0, help="seconds before the stalled sink answers (default 5)")
    g.add_argument("--stall-status", type=int, default=503)
    g.add_argument("--stall-duration", type=int, default=30, help="seconds of load (default 30)")
    g.add_argument("--stall-rate", type=int, default=200, help="executions/s alongside h2load (default 200)")
    g.add_argument("--stall-observe", type=float, default=40.0,
                   help="seconds without load watching a stalled server's counters (default 40)")
    g = ap.add_argument_group("/metrics")
    g.add_argument("--metrics-workflows", type=int, default=1000)
    g.add_argument("--metrics-orgs", type=int, default=10, help="organizations the workflows are spread over (default 10)")
    g.add_argument("--metrics-gets", type=int, default=300)
    g.add_argument("--metrics-warmup", type=int, default=10, help="unmeasured GETs first (default 10)")
    g.add_argument("--metrics-threads", type=int, default=4, help="REST connections creating workflows (default 4)")
    g.add_argument("--metrics-format", choices=("text", "openmetrics"), default="text",
                   help="ask /metrics for the text format 0.0.4 or for OpenMetrics with exemplars, as Prometheus does (default text)")
    g = ap.add_argument_group("general")
    g.add_argument("--drain-timeout", type=float, default=180.0)
    g.add_argument("--stop-timeout", type=float, default=60.0, help="SIGKILL a server this long after SIGTERM (default 60)")
    g.add_argument("--contended-cores", type=float, default=0.25,
                   help="mark a measurement contended above this many cores of other load (default 0.25)")
    g.add_argument("--quiet-cores", type=float, default=0.5,
                   help="before each server, wait while others use more than this many cores (default 0.5)")
    g.add_argument("--quiet-timeout", type=float, default=300.0, help="bound of that wait, s (default 300)")
    g.add_argument("--server-args", default=env("WEFT_ARGS", ""), help="more `serve` arguments, one string")
    g.add_argument("--data-root", default=env("DATA_ROOT"), help="parent of the data dirs (default OUT_DIR)")
    g.add_argument("--keep-data", action="store_true", default=env("KEEP_DATA") == "1")
    g.add_argument("--json", help="also write every figure to this JSON file")
    g.add_argument("--report", metavar="JSON", help="print the report of an earlier --json file again, run nothing")
    a = ap.parse_args(argv)
    a.phase_list = [p.strip() for p in a.phases.split(",") if p.strip()]
    bad = [p for p in a.phase_list if p not in ("rounds", "stall", "metrics")]
    if bad:
        ap.error(f"unknown phase(s): {bad}")
    a.modes = tuple(m.strip() for m in a.modes.split(",") if m.strip())
    a.stall_kinds = tuple(k.strip() for k in a.stall_kinds.split(",") if k.strip())
    if any(k not in STALL_KINDS for k in a.stall_kinds):
        ap.error(f"--stall-kinds: from {STALL_KINDS}")
    if any(m not in MODES for m in a.modes) or "off" not in a.modes:
        ap.error(f"--modes: from {MODES}, including off")
    if a.settle is None:
        a.settle = float(env("OTEL_BSP_SCHEDULE_DELAY", 5000)) / 1000 + 0.5
    return a


def reprint(path):
    """The report of a saved --json file, with this version's medians and tables."""
    with open(path) as f:
        report = json.load(f)
    a = argparse.Namespace(**report["options"])
    a.modes = tuple(a.modes)
    report["loadavg_start"] = tuple(report["loadavg_start"])
    if report.get("rounds"):
        report["ratios"] = compute_ratios(report["rounds"], a.modes)
    print_report(report, a)
    return 0


def main(argv=None):
    a = parse_args(argv)
    if a.report:
        return reprint(a.report)
    b = Bench(a)
    command = shlex.join([sys.executable] + sys.argv)
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items()
                    if k in ("WEFT_BIN", "OUT_DIR", "WEFT_ARGS", "DATA_ROOT", "KEEP_DATA", "ROUNDS", "PROCS")
                    or k.startswith("OTEL_"))
    log(f"command: {(envs + ' ') if envs else ''}{command}")
    if not os.access(b.weft_bin, os.X_OK):
        raise SystemExit(f"no executable at {b.weft_bin} (swift build -c release, or set WEFT_BIN)")
    if not shutil.which("h2load"):
        raise SystemExit("h2load not found (apt-get install -y nghttp2-client)")
    bx.check_flags(b.weft_bin, ["--otel-endpoint", "--trace-sampler", "--trace-sampler-arg"])
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    from weft_helpers import generate_protos
    generate_protos(Path(b.gen_dir))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": ((envs + " ") if envs else "") + command, "weft_bin": b.weft_bin, "out_dir": b.out_dir,
              "loadavg_start": loadavg(), "cores": os.cpu_count(), "options": vars(a)}
    rc = 0
    t_start = time.monotonic()
    try:
        if "rounds" in a.phase_list:
            phase_rounds(b, report)
            report["ratios"] = compute_ratios(report["rounds"], a.modes)
        if "stall" in a.phase_list:
            phase_stall(b, report)
        if "metrics" in a.phase_list:
            phase_metrics(b, report)
    except (SystemExit, Exception) as e:  # noqa: BLE001 - report what was measured, then fail
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        report["failure"] = str(e) if isinstance(e, SystemExit) else traceback.format_exc()
        if report.get("rounds") and "ratios" not in report:
            report["ratios"] = compute_ratios(report["rounds"], a.modes)
        rc = 1
    finally:
        b.cleanup()
    report["elapsed_s"] = round(time.monotonic() - t_start, 1)
    report["loadavg_end"] = loadavg()
    notes = []
    for srv in [r["server"] for r in report.get("rounds", [])] + \
            [r["server"] for r in (report.get("stall") or {}).get("runs", {}).values()] + \
            ([report["metrics"]["server"]] if report.get("metrics", {}).get("server") else []):
        if srv.get("died"):
            notes.append(f"{srv['command']}: {srv['died']}")
            rc = 1
        elif srv.get("stop") and "exit status 0" not in srv["stop"]:
            notes.append(f"{srv['command']}: {srv['stop']}")
        if srv.get("log_problems"):
            notes.append(f"{srv['log_problems']} warning/error lines, first: {srv['log_problem_lines'][0]}")
    report["server_notes"] = notes
    invalid = [1 for r in report.get("rounds", []) for sect in ("health", "exec") if r.get(sect, {}).get("valid") is False]
    invalid += [1 for r in (report.get("stall") or {}).get("runs", {}).values() if (r.get("health") or {}).get("valid") is False]
    invalid += [1] if (report.get("metrics") or {}).get("invalid") else []
    if invalid:
        rc = 1
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    print_report(report, a)
    print(f"Elapsed {report['elapsed_s']:.0f} s; load average at the end {report['loadavg_end']}."
          + (f" JSON: {a.json}" if a.json else "")
          + (f" {len(invalid)} invalid measurement(s): exit status 1." if invalid else ""))
    return rc


if __name__ == "__main__":
    sys.exit(main())
