#!/usr/bin/env python3
"""Step-3 engine benchmark: executions of a 3-task sequential noop workflow.

    python3 loadtest/bench-executions.py                          # ramp, then 10 % and 50 % runs
    python3 loadtest/bench-executions.py --rates "100 200" --duration 3    # quick check
    python3 loadtest/bench-executions.py --max-rate 1000          # no ramp: 10 %/50 % of 1000/s
    python3 loadtest/bench-executions.py --hold 100000            # memory with 100,000 queued executions
    python3 loadtest/bench-executions.py --target 127.0.0.1:8080 --token T [--pid PID]   # a running server
    python3 loadtest/bench-executions.py --self-test              # quantile math only, no server

Rate mode (the default). Every run creates its own workflow over REST,

    {"tasks": [{"key": "a", "action": "noop"},
               {"key": "b", "action": "noop", "dependsOn": ["a"]},
               {"key": "c", "action": "noop", "dependsOn": ["b"]}]}

and submits weft.v1.ExecutionService/ExecuteWorkflow over gRPC (grpcio, stubs
generated from proto/ as Tests/interop does) on a fixed open-loop schedule:
execution i is due at start + i/R, whatever happened to the earlier calls.
The schedule is split round-robin over --procs client processes (grpc.aio, one
HTTP/2 connection each), so the Python client is not one interpreter lock.
Each call's send lag (actual start - scheduled start) is recorded; a client
that falls behind its schedule is reported, as it did not offer rate R.

After the D seconds of submissions the run waits until no execution of its
workflow is Pending or Running (--drain-timeout), then reads every execution
with ListExecutions (GetExecution for any the listing missed) and computes,
from the server's own createdAt/completedAt (millisecond precision):

  * accepted/s        accepted ExecuteWorkflow calls / D;
  * completed/s       executions whose completedAt falls in the measurement
                      window / its length; tasks/s = 3 x that. The window is
                      [first createdAt + --warmup, last createdAt]: the ramp-up
                      (no completions yet) is left out;
  * compl/arrivals    completions / creations in that window: < 1 - 5 % means
                      the backlog grew;
  * backlog at end    executions created but not completed at the last createdAt;
  * latency           createdAt -> completedAt of the Completed executions
                      created in the window: p50/p90/p99/max, nearest rank;
  * server side       /metrics is scraped before the run and after the drain;
                      p50/p99 of weft_execution_duration_seconds and p99 of
                      weft_task_wait_seconds from the bucket deltas, linearly
                      interpolated within a bucket as PromQL histogram_quantile.

Ramp: the runs step R through --rates and stop at the first one that is not
sustained. A step is sustained only when all of these hold (the verdict names
every one that fails, with its figure):

  * calls       every scheduled ExecuteWorkflow call accepted: no gRPC error,
                none unanswered;
  * executions  every accepted execution found and Completed: 0 Failed,
                0 TimedOut, 0 Cancelled, 0 still Pending/Running after the
                drain (--drain-timeout); the server alive;
  * throughput  completions >= 95 % of arrivals in the window
                (--backlog-threshold 0.05; a shortfall of <= 2 is ignored);
  * schedule    the client kept its schedule (not more than 100 ms / 5
                intervals late while sending past the end of the schedule);
  * latency     createdAt -> completedAt p50 <= --max-p50 (0.25 s) and
                p99 <= --max-p99 (1 s).

The highest sustained R is the result; the report states the bounds used. Then
one run at 10 % of it (median latency, target < 10 ms) and one at 50 % (task
wait p99, target < 5 ms); a target counts as met only if that run was itself
sustained.

Hold mode (--hold N). The server is started with --workers 0, so nothing runs;
N executions are submitted as fast as the client can (closed loop, --procs x
--hold-concurrency calls in flight), then the server's VmRSS (/proc/PID/status)
and weft_queue_depth{queue="builtin",state="ready"} are read. Target: RSS < 500 MB,
met only if all N executions were accepted (no call failed).
--hold alone skips the rate runs; add --also-rates for both (each on its own server).

--notify-webhook URL (bench-notifications.py's knee with notifications): each
workflow the script creates also gets a webhook subscription to its
execution.completed events at URL (unsigned, a plain destination), so every
execution writes and sends one notification; the server it starts gets
--egress-allow 127.0.0.1/32 so a receiver on loopback is allowed. Without the
option nothing of this happens.

The script starts `$WEFT_BIN serve --host 127.0.0.1 --port 0 --data-dir DIR
--scrypt-log-n 10 [--store-sync S] [--workers N] [--server-args ...]` on a
temporary data dir (DATA_DIR to choose one) unless --target names a running
server. Loopback only; every call and wait is bounded.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import datetime
import http.client
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "Tests" / "interop"))
import seed_workflows as sw  # noqa: E402
from weft_process import WeftProcess, cpu_ticks  # noqa: E402
from weft_helpers import parse_metrics  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_RATES = "250 500 750 1000 1500 2000 2500 3000 4000 5000"
TASKS_PER_EXECUTION = 3
LOW_TARGET_MS = 10.0
MID_TASK_WAIT_TARGET_MS = 5.0   # docs/BENCHMARKS.md: task wait p99 under 5 ms at half the sustained rate
HOLD_RSS_TARGET_MB = 500.0


def log(msg: str) -> None:
    print(f"[bench-exec] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ statistics

def pct(sorted_vals, q):
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


def histogram_buckets(metrics, name, **match):
    """Cumulative buckets of histogram `name`, summed over the series whose labels
    include `match` (PromQL `sum by (le)`): sorted [(le, count)]; {} if absent."""
    acc = collections.defaultdict(float)
    for s in metrics.samples if metrics is not None else ():
        if s.name != name + "_bucket" or "le" not in s.labels:
            continue
        if any(s.labels.get(k) != v for k, v in match.items()):
            continue
        acc[float(s.labels["le"])] += s.value
    return sorted(acc.items())


def histogram_delta(before, after, name, **match):
    """Bucket counts of `after` minus `before` (a series absent before counts as 0)."""
    b = dict(histogram_buckets(before, name, **match))
    return [(le, c - b.get(le, 0.0)) for le, c in histogram_buckets(after, name, **match)]


def histogram_quantile(q, buckets):
    """PromQL histogram_quantile over cumulative [(le, count)] sorted by le, +Inf last.

    The rank q * total falls in the first bucket whose cumulative count reaches it;
    the result is interpolated linearly between that bucket's lower bound (the
    previous le, 0 for the first bucket) and its le. A rank in the +Inf bucket
    answers the highest finite bound. None when there are no observations."""
    if not buckets or math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not math.isinf(buckets[-1][0]):
        return None  # no +Inf bucket: not a valid histogram
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0] if len(buckets) >= 2 else None
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start = 0.0 if b == 0 else buckets[b - 1][0]
    below = 0.0 if b == 0 else buckets[b - 1][1]
    end, count = buckets[b][0], buckets[b][1] - below
    if count <= 0:
        return end
    return start + (end - start) * (rank - below) / count


def histogram_count(buckets):
    return buckets[-1][1] if buckets else None


def metric_sum(metrics, name, **match):
    if metrics is None:
        return None
    vals = [s.value for s in metrics.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items())]
    return sum(vals) if vals else None


def metric_delta(before, after, name, **match):
    a, b = metric_sum(after, name, **match), metric_sum(before, name, **match)
    if a is None:
        return None
    return a - (b or 0.0)


# ------------------------------------------------------------------ process helpers

def proc_status_kb(pid, field):
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def other_build():
    """A compiler is running right now (state R or D: a sleeping driver or a zombie does not count)."""
    r = subprocess.run(["pgrep", "-f", "swift-build|swift-frontend|swiftc |clang|cc1"], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("R", "D"):
                    return True
        except (OSError, IndexError):
            pass
    return False


def machine_busy_ticks():
    """Busy jiffies of all CPUs (user+nice+system+irq+softirq+steal) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    except (OSError, ValueError, IndexError):
        return None


class CpuWatch:
    """CPU used by the server, by this script and by everything else on the machine over an interval.

    `other_cores` = (all busy CPU - server - client processes - this process) / wall time: other
    load (a compiler, a test suite) competing with the run; > --contended-cores marks it contended."""

    def __init__(self, pid):
        self.pid = pid

    def start(self):
        self.t0, self.m0, self.s0, self.p0 = time.monotonic(), machine_busy_ticks(), cpu_ticks(self.pid), time.process_time()
        self.compiler0 = other_build()

    def stop(self, client_cpu_s):
        wall = time.monotonic() - self.t0
        m1, s1, p1 = machine_busy_ticks(), cpu_ticks(self.pid), time.process_time()
        out = {"wall_s": wall, "compiler_seen": self.compiler0 or other_build(),
               "server_cpu_s": None if self.s0 is None or s1 is None else (s1 - self.s0) / CLK_TCK}
        if self.m0 is not None and m1 is not None and wall > 0:
            busy = (m1 - self.m0) / CLK_TCK
            other = busy - (out["server_cpu_s"] or 0) - client_cpu_s - (p1 - self.p0)
            out["machine_busy_cores"] = busy / wall
            out["other_cores"] = max(0.0, other) / wall
        else:
            out["machine_busy_cores"] = out["other_cores"] = None
        return out


def dir_size_mb(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total / 1e6


Server = WeftProcess


# ------------------------------------------------------------------ client processes

def client_entry(kind, cfg, q, conn):
    """Runs in a spawned process: one grpc.aio channel (or more), a fixed schedule."""
    try:
        sys.path.append(cfg["gen_dir"])
        from weft.v1 import executions_pb2, executions_pb2_grpc
        res = asyncio.run(_client_async(kind, cfg, q, conn, executions_pb2, executions_pb2_grpc))
        q.put(("result", cfg["index"], res))
    except BaseException:  # noqa: BLE001 - reported to the parent
        q.put(("error", cfg["index"], traceback.format_exc()))


async def _client_async(kind, cfg, q, conn, pb, pbg):
    import grpc
    import grpc.aio

    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20)]
    chans = [grpc.aio.insecure_channel(cfg["target"], options=opts) for _ in range(cfg["channels"])]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in chans)), 20)
        stubs = [pbg.ExecutionServiceStub(c) for c in chans]
        md = (("authorization", "Bearer " + cfg["token"]),)
        req = pb.ExecuteWorkflowRequest(workflow_id=cfg["workflow_id"])
        loop = asyncio.get_running_loop()
        q.put(("ready", cfg["index"], None))
        start_at = await loop.run_in_executor(None, conn.recv)  # wall-clock start, same for every process
        await asyncio.sleep(max(0.0, start_at - time.time()))
        if kind == "rate":
            return await _rate_loop(cfg, stubs, md, req, start_at, grpc)
        return await _hold_loop(cfg, stubs, md, req, q, grpc)
    finally:
        for c in chans:
            await c.close()


async def _rate_loop(cfg, stubs, md, req, start_at, grpc):
    loop = asyncio.get_running_loop()
    base = loop.time() + (start_at - time.time())
    interval = 1.0 / cfg["rate"]
    mine = range(cfg["index"], cfg["n_total"], cfg["procs"])
    lags, acks = array.array("d"), array.array("d")
    ids, errors = [], collections.Counter()
    state = {"inflight": 0, "first_error": None, "first_send": None, "last_send": None, "max_inflight_seen": 0}
    wake = asyncio.Event()
    pending = set()
    timeout = cfg["call_timeout"]

    async def one(stub, t_sched):
        t0 = loop.time()
        lags.append(t0 - t_sched)
        if state["first_send"] is None:
            state["first_send"] = time.time()
        state["last_send"] = time.time()
        try:
            resp = await stub.ExecuteWorkflow(req, metadata=md, timeout=timeout)
            acks.append(loop.time() - t0)
            ids.append(resp.execution_id)
        except grpc.aio.AioRpcError as e:
            errors[e.code().name] += 1
            state["first_error"] = state["first_error"] or f"{e.code().name}: {e.details()}"
        except Exception as e:  # noqa: BLE001
            errors[type(e).__name__] += 1
            state["first_error"] = state["first_error"] or repr(e)
        finally:
            state["inflight"] -= 1
            wake.set()

    cpu0, wall0 = time.process_time(), time.time()
    j, n = 0, len(mine)
    while j < n:
        t_sched = base + mine[j] * interval
        now = loop.time()
        if now < t_sched:
            await asyncio.sleep(t_sched - now)
            continue
        if state["inflight"] >= cfg["max_inflight"]:
            wake.clear()
            await wake.wait()
            continue
        state["inflight"] += 1
        state["max_inflight_seen"] = max(state["max_inflight_seen"], state["inflight"])
        t = asyncio.ensure_future(one(stubs[j % len(stubs)], t_sched))
        pending.add(t)
        t.add_done_callback(pending.discard)
        j += 1
        if j % 32 == 0:
            await asyncio.sleep(0)  # let the calls just created start
    send_done = time.time()
    if pending:
        await asyncio.wait(list(pending), timeout=timeout + 10)
    return {"scheduled": n, "accepted": len(ids), "errors": dict(errors), "first_error": state["first_error"],
            "lags": lags.tolist(), "acks": acks.tolist(), "ids": ids,
            "first_send": state["first_send"], "last_send": state["last_send"], "send_done": send_done,
            "cpu_s": time.process_time() - cpu0, "wall_s": time.time() - wall0,
            "max_inflight": state["max_inflight_seen"], "unfinished": len(pending)}


async def _hold_loop(cfg, stubs, md, req, q, grpc):
    loop = asyncio.get_running_loop()
    acks, errors = array.array("d"), collections.Counter()
    state = {"next": 0, "accepted": 0, "first_error": None, "stop": False}
    n, step = cfg["n"], max(1, cfg["n"] // 5)

    async def worker(stub):
        while state["next"] < n and not state["stop"]:
            state["next"] += 1
            t0 = loop.time()
            try:
                await stub.ExecuteWorkflow(req, metadata=md, timeout=cfg["call_timeout"])
                acks.append(loop.time() - t0)
                state["accepted"] += 1
                if state["accepted"] % step == 0:
                    q.put(("progress", cfg["index"], state["accepted"]))
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] += 1
                state["first_error"] = state["first_error"] or f"{e.code().name}: {e.details()}"
                if sum(errors.values()) >= 1000 and sum(errors.values()) > state["accepted"]:
                    state["stop"] = True

    cpu0, t0 = time.process_time(), time.time()
    await asyncio.gather(*(worker(stubs[w % len(stubs)]) for w in range(cfg["concurrency"])))
    return {"requested": n, "accepted": state["accepted"], "errors": dict(errors), "first_error": state["first_error"],
            "acks": acks.tolist(), "start": t0, "end": time.time(), "cpu_s": time.process_time() - cpu0,
            "stopped_on_errors": state["stop"]}


def run_clients(kind, cfgs, timeout, progress_total=None, on_start=None):
    """Spawns one process per cfg, starts them together; returns (start_at, results).
    `on_start` is called once every process is connected, just before the start."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs, pipes = [], []
    for cfg in cfgs:
        parent_end, child_end = ctx.Pipe()
        p = ctx.Process(target=client_entry, args=(kind, cfg, q, child_end), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent_end)
    results, errors = {}, []
    try:
        ready, deadline = 0, time.monotonic() + 60
        while ready < len(cfgs):
            try:
                tag, idx, payload = q.get(timeout=0.5)
            except Exception:  # noqa: BLE001 - queue.Empty
                dead = [k for k, p in enumerate(procs) if p.exitcode is not None]
                if dead:
                    time.sleep(0.5)  # a last message may still be in the pipe
                    if q.empty():
                        raise SystemExit(f"client process(es) {dead} exited (status "
                                         f"{[procs[k].exitcode for k in dead]}) before connecting")
                if time.monotonic() > deadline:
                    raise SystemExit("client processes did not connect within 60 s")
                continue
            if tag == "ready":
                ready += 1
            elif tag == "error":
                raise SystemExit(f"client process {idx} failed:\n{payload}")
        if on_start:
            on_start()
        start_at = time.time() + 0.3
        for pe in pipes:
            pe.send(start_at)
        deadline = time.monotonic() + timeout
        progress = collections.defaultdict(int)
        while len(results) + len(errors) < len(cfgs):
            try:
                tag, idx, payload = q.get(timeout=1.0)
            except Exception:  # noqa: BLE001 - queue.Empty
                dead = [k for k, p in enumerate(procs) if p.exitcode is not None and k not in results]
                if dead:
                    time.sleep(1.0)
                    if q.empty():
                        raise SystemExit(f"client process(es) {dead} exited (status "
                                         f"{[procs[k].exitcode for k in dead]}) without a result")
                if time.monotonic() > deadline:
                    raise SystemExit(f"client processes did not finish within {timeout:.0f} s")
                continue
            if tag == "result":
                results[idx] = payload
            elif tag == "error":
                errors.append(f"client process {idx} failed:\n{payload}")
            elif tag == "progress" and progress_total:
                progress[idx] = payload
                log(f"  {sum(progress.values())}/{progress_total} accepted")
        if errors:
            raise SystemExit("\n".join(errors))
        return start_at, [results[i] for i in sorted(results)]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)


# ------------------------------------------------------------------ the server side of a run

class Target:
    """The server under test: REST + gRPC on one port, /metrics, optional pid."""

    def __init__(self, host, port, token, pid, gen_dir, server=None, grpc_target=None):
        import grpc
        sys.path.append(gen_dir)
        from weft.v1 import executions_pb2, executions_pb2_grpc
        self.host, self.port, self.token, self.pid, self.server = host, port, token, pid, server
        self.grpc_target = grpc_target or f"{host}:{port}"  # the same port unless a test says otherwise
        self.pb = executions_pb2
        self.channel = grpc.insecure_channel(self.grpc_target, options=[
            ("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 256 << 20)])
        self.stub = executions_pb2_grpc.ExecutionServiceStub(self.channel)
        self.md = (("authorization", "Bearer " + token),)
        self.status_filter_ok = None  # whether ListExecutions honours `status`

    @property
    def target(self):
        return self.grpc_target

    def rest(self):
        return sw.Client(self.host, self.port, self.token, timeout=60)

    def create_workflow(self, name):
        body = {"name": name, "description": "bench-executions: 3 sequential noop tasks",
                "tasks": [{"key": "a", "name": "a", "action": "noop"},
                          {"key": "b", "name": "b", "action": "noop", "dependsOn": ["a"]},
                          {"key": "c", "name": "c", "action": "noop", "dependsOn": ["b"]}]}
        c = self.rest()
        try:
            status, payload = c.request("POST", "/workflows", body)
        finally:
            c.close()
        if status != 201:
            raise SystemExit(f"POST /workflows: HTTP {status}: {payload[:300]!r}")
        return json.loads(payload)["id"]

    def subscribe_webhook(self, wf, url):
        """--notify-webhook: a webhook subscription (unsigned, plain destination) to the
        workflow's execution.completed events; returns its id."""
        body = {"events": ["execution.completed"], "notifyVia": "webhook", "destination": url}
        c = self.rest()
        try:
            status, payload = c.request("POST", f"/workflows/{wf}/subscriptions", body)
        finally:
            c.close()
        if status != 201:
            raise SystemExit(f"POST /workflows/{wf}/subscriptions: HTTP {status}: {payload[:300]!r}")
        return json.loads(payload)["id"]

    def scrape(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                log(f"warning: GET /metrics: HTTP {resp.status}")
                return None
            return parse_metrics(body.decode(errors="replace"))
        except (OSError, http.client.HTTPException, ValueError) as e:
            log(f"warning: GET /metrics failed: {e!r}")
            return None
        finally:
            conn.close()

    def list_page(self, wf, status=0, page_size=1000, token=""):
        return self.stub.ListExecutions(self.pb.ListExecutionsRequest(
            workflow_id=wf, page_size=page_size, page_token=token, status=status), metadata=self.md, timeout=120)

    def list_all(self, wf):
        out, token, pages = [], "", 0
        while True:
            r = self.list_page(wf, token=token)
            out.extend(r.executions)
            pages += 1
            token = r.next_page_token
            if not token or not r.executions or pages > 100_000:
                return out

    def open_count(self, wf):
        """Executions of `wf` still Pending or Running: 0, or a positive lower bound."""
        E = self.pb.Execution
        if self.status_filter_ok is not False:
            found = 0
            for st in (E.Pending, E.Running):
                r = self.list_page(wf, status=st, page_size=1)
                if r.executions and r.executions[0].status != st:
                    self.status_filter_ok = False
                    log("note: ListExecutions ignores its status filter; the drain check lists everything")
                    break
                found += len(r.executions)
            else:
                self.status_filter_ok = True
                return found
        return sum(1 for e in self.list_all(wf) if e.status in (E.Pending, E.Running))

    def get(self, wf, eid):
        return self.stub.GetExecution(self.pb.GetExecutionRequest(workflow_id=wf, execution_id=eid),
                                      metadata=self.md, timeout=30)


def ts_ms(ts):
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def run_step(t, a, gen_dir, phase, rate, duration):
    """One open-loop run at `rate` executions/s for `duration` s on a fresh workflow."""
    E = t.pb.Execution
    wf = t.create_workflow(f"bench-exec {phase} {rate}/s {datetime.datetime.now().strftime('%H:%M:%S')}")
    subscription = t.subscribe_webhook(wf, a.notify_webhook) if a.notify_webhook else None
    n_total = max(1, int(round(rate * duration)))
    procs = max(1, min(a.procs, n_total))
    log(f"{phase}: {rate}/s for {duration:g} s ({n_total} executions, {procs} client processes), workflow {wf}")
    cfgs = [{"index": k, "procs": procs, "rate": float(rate), "n_total": n_total, "target": t.target,
             "token": t.token, "workflow_id": wf, "gen_dir": gen_dir, "channels": a.channels,
             "max_inflight": a.max_inflight, "call_timeout": a.call_timeout} for k in range(procs)]
    m0 = t.scrape()
    log_off = t.server.log_offset() if t.server else 0
    watch = CpuWatch(t.pid)
    start_at, results = run_clients("rate", cfgs, timeout=duration * 3 + a.call_timeout + 120, on_start=watch.start)

    # Drain: nothing of this workflow Pending or Running.
    accepted = sum(r["accepted"] for r in results)
    t_drain0 = time.monotonic()
    drained, still_open, drain_errors = accepted == 0, None, 0
    while not drained:
        if t.server and not t.server.alive():
            break
        try:
            still_open = t.open_count(wf)
        except Exception as e:  # noqa: BLE001
            drain_errors += 1
            if drain_errors == 1:
                log("warning: drain check failed: " + (f"{e.code().name}: {e.details()}" if hasattr(e, "code") else repr(e)))
            still_open = None
        if still_open == 0:
            drained = True
            break
        if time.monotonic() - t_drain0 > a.drain_timeout:
            break
        time.sleep(0.2)
    drain_s = time.monotonic() - t_drain0
    cpu = watch.stop(sum(x["cpu_s"] for x in results))
    busy = cpu["compiler_seen"] or (cpu["other_cores"] or 0) > a.contended_cores
    m1 = t.scrape()
    rss_kb = proc_status_kb(t.pid, "VmRSS")
    died = t.server.died() if t.server else None
    problems = t.server.log_problems(log_off) if t.server else (0, [])

    # Every execution of the run, from the server.
    execs, listed_missing, list_error = {}, 0, None
    if not died:
        try:
            for e in t.list_all(wf):
                execs[e.execution_id] = e
        except Exception as ex:  # noqa: BLE001
            list_error = f"ListExecutions failed: {ex.code().name + ': ' + ex.details() if hasattr(ex, 'code') else repr(ex)}"
            log(f"warning: {list_error}")
        ids = [i for r in results for i in r["ids"]]
        missing = [i for i in ids if i not in execs]
        listed_missing = len(missing)
        if missing and not list_error:
            log(f"note: ListExecutions returned {len(execs)} of {len(ids)} accepted executions; "
                f"reading {min(len(missing), 20000)} with GetExecution")
            for eid in missing[:20000]:
                try:
                    execs[eid] = t.get(wf, eid)
                except Exception as ex:  # noqa: BLE001
                    log(f"warning: GetExecution {eid}: {ex!r}")
                    break
    statuses = collections.Counter(E.Status.Name(e.status) for e in execs.values())
    created = [ts_ms(e.created_at) for e in execs.values() if e.HasField("created_at")]
    r = {"phase": phase, "rate": rate, "duration_s": duration, "workflow_id": wf, "procs": procs,
         "scheduled": n_total, "accepted": accepted,
         "errors": dict(sum((collections.Counter(x["errors"]) for x in results), collections.Counter())),
         "first_error": next((x["first_error"] for x in results if x["first_error"]), None),
         "unfinished_calls": sum(x["unfinished"] for x in results),
         "statuses": dict(statuses), "listed": len(execs), "listing_missed": listed_missing, "list_error": list_error,
         "drained": drained, "drain_s": round(drain_s, 2), "still_open": still_open,
         "server_died": died, "log_problems": problems[0], "log_problem_lines": problems[1],
         "contended": busy, "other_cores": cpu["other_cores"], "machine_busy_cores": cpu["machine_busy_cores"],
         "compiler_seen": cpu["compiler_seen"], "rss_mb": None if rss_kb is None else rss_kb / 1024}
    r["accepted_per_s"] = None  # set below, once the send span is known
    if subscription:
        r["notify_webhook"], r["subscription_id"] = a.notify_webhook, subscription

    # Client side: send lag, ExecuteWorkflow latency, CPU.
    lags = sorted(x for res in results for x in res["lags"])
    acks = sorted(x for res in results for x in res["acks"])
    firsts = [x["first_send"] for x in results if x["first_send"]]
    lasts = [x["last_send"] for x in results if x["last_send"]]
    span = (max(lasts) - min(firsts)) if firsts and lasts else None
    r.update({
        "send_lag_p50_ms": None if not lags else pct(lags, 0.5) * 1e3,
        "send_lag_p99_ms": None if not lags else pct(lags, 0.99) * 1e3,
        "send_lag_max_ms": None if not lags else lags[-1] * 1e3,
        "send_span_s": span, "offered_per_s": (len(lags) - 1) / span if span and len(lags) > 1 else None,
        "ack_p50_ms": None if not acks else pct(acks, 0.5) * 1e3,
        "ack_p99_ms": None if not acks else pct(acks, 0.99) * 1e3,
        "client_cpu_s": sum(x["cpu_s"] for x in results),
        "client_cpu_pct_per_proc": [round(100 * x["cpu_s"] / x["wall_s"], 0) for x in results if x["wall_s"] > 0],
        "max_inflight_per_proc": max(x["max_inflight"] for x in results),
    })
    # Accepted calls per second of the schedule, or of the actual sending when it took longer.
    r["accepted_per_s"] = accepted / max(duration, (span or 0) + 1.0 / rate)
    # The client is behind when its lag keeps growing: more than 100 ms (or 5 intervals) late at the end.
    r["client_behind"] = bool(lags) and (r["send_lag_max_ms"] > max(100.0, 5e3 / rate) and
                                         (span or 0) > duration * 1.02 + 0.05)

    # Server timestamps: window, throughput, backlog, latency.
    r.update({"window_s": None, "completed_per_s": None, "tasks_per_s": None, "completion_ratio": None,
              "backlog_at_end": None, "lat_n": 0, "lat_p50_ms": None, "lat_p90_ms": None, "lat_p99_ms": None,
              "lat_max_ms": None, "lat_mean_ms": None})
    if created:
        t0, t_end = min(created), max(created)
        warm = int(min(a.warmup, duration / 4) * 1000)
        w0 = t0 + warm if t_end - (t0 + warm) >= 500 else t0
        window_ms = max(1, t_end - w0)
        done = [(ts_ms(e.created_at), ts_ms(e.completed_at)) for e in execs.values()
                if e.status == E.Completed and e.HasField("completed_at")]
        arrivals = sum(1 for c in created if w0 <= c <= t_end)
        completions = sum(1 for _, d in done if w0 <= d <= t_end)
        lat = sorted(d - c for c, d in done if c >= w0)
        r.update({
            "window_s": window_ms / 1000, "window_start_offset_s": (w0 - t0) / 1000,
            "completed_per_s": completions / (window_ms / 1000),
            "arrivals_per_s": arrivals / (window_ms / 1000),
            "completion_ratio": completions / arrivals if arrivals else None,
            "arrivals": arrivals, "completions": completions,
            "backlog_at_end": sum(1 for e in execs.values() if ts_ms(e.created_at) <= t_end and not (
                e.HasField("completed_at") and ts_ms(e.completed_at) <= t_end)),
            "lat_n": len(lat), "lat_p50_ms": pct(lat, 0.5), "lat_p90_ms": pct(lat, 0.9),
            "lat_p99_ms": pct(lat, 0.99), "lat_max_ms": lat[-1] if lat else None,
            "lat_mean_ms": sum(lat) / len(lat) if lat else None,
        })
        if r["completed_per_s"] is not None:
            r["tasks_per_s"] = r["completed_per_s"] * TASKS_PER_EXECUTION

    # Server side: histograms over the run (scraped before it and after the drain).
    ed = histogram_delta(m0, m1, "weft_execution_duration_seconds")
    tw = histogram_delta(m0, m1, "weft_task_wait_seconds")
    td = histogram_delta(m0, m1, "weft_task_duration_seconds")
    ms = lambda v: None if v is None else v * 1e3
    r.update({
        "server_exec_n": histogram_count(ed), "server_exec_p50_ms": ms(histogram_quantile(0.5, ed)),
        "server_exec_p99_ms": ms(histogram_quantile(0.99, ed)),
        "task_wait_n": histogram_count(tw), "task_wait_p50_ms": ms(histogram_quantile(0.5, tw)),
        "task_wait_p99_ms": ms(histogram_quantile(0.99, tw)),
        "task_duration_p99_ms": ms(histogram_quantile(0.99, td)),
        # The group commit that makes a task durable (decided -> queued); task
        # wait counts from the end of it (queued -> started).
        "commit_p99_ms": ms(histogram_quantile(0.99, histogram_delta(
            m0, m1, "weft_store_transaction_duration_seconds", operation="apply_transitions"))),
        "finished_total_delta": metric_delta(m0, m1, "weft_executions_finished_total"),
        "started_total_delta": metric_delta(m0, m1, "weft_executions_started_total"),
        "task_retries_delta": metric_delta(m0, m1, "weft_task_retries_total"),
        "lease_expiries_delta": metric_delta(m0, m1, "weft_lease_expiries_total"),
        "commit_batch_p50": histogram_quantile(0.5, histogram_delta(m0, m1, "weft_engine_commit_batch_size")),
        "in_flight_after": metric_sum(m1, "weft_executions_in_flight"),
        "queue_ready_after": metric_sum(m1, "weft_queue_depth", state="ready"),
        "metrics_scraped": m0 is not None and m1 is not None,
    })
    r["server_cpu_s"] = cpu["server_cpu_s"]
    r["server_cpu_us_per_exec"] = (r["server_cpu_s"] * 1e6 / accepted) if r["server_cpu_s"] and accepted else None
    r["server_cpu_cores"] = (r["server_cpu_s"] / cpu["wall_s"]) if r["server_cpu_s"] and cpu["wall_s"] else None

    # Verdict: sustained only when every criterion holds; each one that fails is named with its figure.
    r["criteria"] = crit = step_criteria(r, a, n_total, accepted, statuses, drained, still_open, died, list_error,
                                         sum(1 for i in (i for x in results for i in x["ids"]) if i not in execs))
    why = [c["why"] for c in crit if not c["ok"]]
    r["sustained"] = not why
    r["verdict"] = "sustained" if not why else "; ".join(why)
    line = (f"{phase} {rate}/s: accepted {accepted}/{n_total}"
            + (f", errors {r['errors']} (first: {r['first_error']})" if r["errors"] else "")
            + f", completed/s {fmt(r['completed_per_s'], '.0f')}, ratio {fmt(r['completion_ratio'], '.3f')}"
            + f", p50/p99 {fmt(r['lat_p50_ms'], '.0f')}/{fmt(r['lat_p99_ms'], '.0f')} ms"
            + f", lag p99 {fmt(r['send_lag_p99_ms'], '.1f')} ms, drain {drain_s:.1f} s, server "
            + f"{fmt(r['server_cpu_cores'], '.2f')} cores, other load {fmt(r['other_cores'], '.2f')} cores -> {r['verdict']}")
    log(line)
    log(f"  criteria: " + ", ".join(f"{c['name']} {'ok' if c['ok'] else 'FAILED'}" for c in r["criteria"]))
    if problems[0]:
        log(f"  server log: {problems[0]} warning/error lines since the run started, first: {problems[1][0]}")
    return r


def fmt(v, spec, unit=""):
    return "n/a" if v is None else format(v, spec) + unit


def bounds_text(a):
    """The sustained criteria with the bounds in use, for the report."""
    return (f"every call accepted, every execution Completed (none Failed, TimedOut, Cancelled or still open after "
            f"the drain), completions >= {100 * (1 - a.backlog_threshold):g} % of arrivals, the client on schedule, "
            f"latency p50 <= {a.max_p50 * 1000:g} ms and p99 <= {a.max_p99 * 1000:g} ms")


def step_criteria(r, a, n_total, accepted, statuses, drained, still_open, died, list_error, unaccounted):
    """The criteria of a sustained step: [{"name", "ok", "why"}], all of which must hold.

    * calls: every scheduled ExecuteWorkflow call accepted (no gRPC error, none left unanswered);
    * executions: every accepted execution found and Completed (0 Failed / TimedOut / Cancelled),
      none Pending or Running after the drain, the server alive and listing them;
    * throughput: completions >= (1 - --backlog-threshold) x arrivals in the window (a shortfall of
      2 executions or fewer is ignored: 1 ms timestamps at a window edge);
    * schedule: the client kept its schedule (not behind: see client_behind);
    * latency: createdAt -> completedAt p50 <= --max-p50 and p99 <= --max-p99 (Completed executions
      created in the window; no completed execution fails it)."""
    crit = []

    def add(name, ok, why):
        crit.append({"name": name, "ok": bool(ok), "why": None if ok else why})

    errs = sum(r["errors"].values())
    unfinished = r.get("unfinished_calls") or 0
    add("calls", accepted == n_total and not errs and not unfinished,
        f"calls: accepted {accepted}/{n_total}"
        + (f", errors {dict(sorted(r['errors'].items()))} (first: {r['first_error']})" if errs else "")
        + (f", {unfinished} unanswered" if unfinished else ""))
    bad = {k: v for k, v in statuses.items() if k != "Completed"}
    ex_why = []
    if died:
        ex_why.append(died)
    if list_error:
        ex_why.append(list_error)
    if not drained and not died:
        ex_why.append(f"not drained after {a.drain_timeout:g} s ("
                      + (f"{still_open}+ Pending/Running)" if still_open is not None else "the drain check failed)"))
    if bad:
        ex_why.append("not Completed: " + ", ".join(f"{k} {v}" for k, v in sorted(bad.items())))
    if unaccounted and not died and not list_error:
        ex_why.append(f"{unaccounted} accepted executions not found")
    add("executions", not ex_why, "executions: " + "; ".join(ex_why))
    shortfall = (r["arrivals"] - r["completions"]) if r.get("arrivals") is not None else 0
    add("throughput", not (r["completion_ratio"] is not None and r["completion_ratio"] < 1 - a.backlog_threshold
                           and shortfall > 2),
        f"throughput: completions {100 * (r['completion_ratio'] or 0):.1f} % of arrivals "
        f"(< {100 * (1 - a.backlog_threshold):g} %, {shortfall} behind)")
    add("schedule", not r["client_behind"],
        f"client behind schedule (send lag max {fmt(r['send_lag_max_ms'], '.0f')} ms, sent over "
        f"{fmt(r['send_span_s'], '.2f')} s for a {r['duration_s']:g} s schedule)")
    p50, p99 = r["lat_p50_ms"], r["lat_p99_ms"]
    lat_why = []
    if r["lat_n"] == 0:
        lat_why.append("no completed execution in the window")
    else:
        if p50 > a.max_p50 * 1000:
            lat_why.append(f"p50 {p50} ms > {a.max_p50 * 1000:g} ms")
        if p99 > a.max_p99 * 1000:
            lat_why.append(f"p99 {p99} ms > {a.max_p99 * 1000:g} ms")
    add("latency", not lat_why, "latency: " + ", ".join(lat_why))
    return crit


# ------------------------------------------------------------------ hold mode

def run_hold(t, a, gen_dir):
    wf = t.create_workflow(f"bench-exec hold {a.hold}")
    if a.notify_webhook:
        t.subscribe_webhook(wf, a.notify_webhook)
    m0 = t.scrape()
    rss0, hwm0 = proc_status_kb(t.pid, "VmRSS"), proc_status_kb(t.pid, "VmHWM")
    procs = max(1, min(a.procs, a.hold))
    per = [a.hold // procs + (1 if k < a.hold % procs else 0) for k in range(procs)]
    cfgs = [{"index": k, "n": per[k], "target": t.target, "token": t.token, "workflow_id": wf, "gen_dir": gen_dir,
             "channels": a.channels, "concurrency": a.hold_concurrency, "call_timeout": a.call_timeout}
            for k in range(procs)]
    log(f"hold: submitting {a.hold} executions of workflow {wf} ({procs} processes x {a.hold_concurrency} in flight)")
    log_off = t.server.log_offset() if t.server else 0
    watch = CpuWatch(t.pid)
    start_at, results = run_clients("hold", cfgs, timeout=a.hold_timeout, progress_total=a.hold, on_start=watch.start)
    end = max(x["end"] for x in results)
    cpu = watch.stop(sum(x["cpu_s"] for x in results))
    accepted = sum(x["accepted"] for x in results)
    log(f"hold: {accepted} accepted in {end - start_at:.1f} s; settling {a.hold_settle:g} s")
    time.sleep(a.hold_settle)
    rss1, hwm1 = proc_status_kb(t.pid, "VmRSS"), proc_status_kb(t.pid, "VmHWM")
    m1 = t.scrape()
    acks = sorted(x for res in results for x in res["acks"])
    died = t.server.died() if t.server else None
    problems = t.server.log_problems(log_off) if t.server else (0, [])
    depth = {st: metric_sum(m1, "weft_queue_depth", queue="builtin", state=st) for st in ("ready", "delayed", "leased")}
    mb = lambda kb: None if kb is None else kb / 1024
    r = {"requested": a.hold, "accepted": accepted, "workflow_id": wf,
         "errors": dict(sum((collections.Counter(x["errors"]) for x in results), collections.Counter())),
         "first_error": next((x["first_error"] for x in results if x["first_error"]), None),
         "submit_s": end - start_at, "submit_per_s": accepted / (end - start_at) if end > start_at else None,
         "ack_p50_ms": None if not acks else pct(acks, 0.5) * 1e3, "ack_p99_ms": None if not acks else pct(acks, 0.99) * 1e3,
         "rss_before_mb": mb(rss0), "rss_after_mb": mb(rss1), "hwm_before_mb": mb(hwm0), "hwm_mb": mb(hwm1),
         "rss_per_execution_kb": (rss1 - rss0) / accepted if rss0 and rss1 and accepted else None,
         "queue_ready": depth["ready"], "queue_delayed": depth["delayed"], "queue_leased": depth["leased"],
         "in_flight": metric_sum(m1, "weft_executions_in_flight"),
         "started_delta": metric_delta(m0, m1, "weft_executions_started_total"),
         "tasks_run": histogram_count(histogram_delta(m0, m1, "weft_task_duration_seconds")),
         "workers": {st: metric_sum(m1, "weft_workers", state=st) for st in ("busy", "idle")},
         "server_cpu_s": cpu["server_cpu_s"], "other_cores": cpu["other_cores"],
         "client_cpu_s": sum(x["cpu_s"] for x in results),
         "data_dir_mb": dir_size_mb(t.server.data_dir) if t.server else None,
         "server_died": died, "log_problems": problems[0], "log_problem_lines": problems[1],
         "contended": cpu["compiler_seen"] or (cpu["other_cores"] or 0) > a.contended_cores}
    # The target is RSS with N executions queued: a hold where calls failed held fewer, so it cannot meet it.
    r["hold_incomplete"] = None
    if accepted < a.hold or r["errors"] or died:
        r["hold_incomplete"] = (died + "; " if died else "") + f"{accepted}/{a.hold} executions accepted" + (
            f", errors {r['errors']} (first: {r['first_error']})" if r["errors"] else "")
    r["rss_ok"] = (r["rss_after_mb"] is not None and r["rss_after_mb"] < HOLD_RSS_TARGET_MB
                   and not r["hold_incomplete"])
    if r["queue_ready"] is not None and accepted and r["queue_ready"] != accepted:
        log(f"note: ready queue depth {r['queue_ready']:.0f} != {accepted} accepted executions")
    log(f"hold: RSS {fmt(r['rss_before_mb'], '.0f')} -> {fmt(r['rss_after_mb'], '.0f')} MB, "
        f"ready queue {fmt(r['queue_ready'], '.0f')}")
    return r


# ------------------------------------------------------------------ report

def print_rate_report(rows, summary, a):
    print()
    print("| run | rate/s | sent | accepted/s | errors | completed/s | tasks/s | compl/arr | backlog at end "
          "| p50 | p90 | p99 | max | ExecuteWorkflow p50/p99 | send lag p99/max | server exec p50/p99 "
          "| task wait p99 | server CPU/exec | client CPU/proc | verdict |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print("| %s | %s | %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s ms | %s / %s ms | %s / %s ms "
              "| %s | %s | %s | %s |" % (
                  r["phase"], r["rate"], r["scheduled"], fmt(r["accepted_per_s"], ".0f"),
                  sum(r["errors"].values()), fmt(r["completed_per_s"], ".0f"), fmt(r["tasks_per_s"], ".0f"),
                  fmt(r["completion_ratio"], ".3f"), fmt(r["backlog_at_end"], "d"),
                  fmt(r["lat_p50_ms"], "d", " ms"), fmt(r["lat_p90_ms"], "d", " ms"), fmt(r["lat_p99_ms"], "d", " ms"),
                  fmt(r["lat_max_ms"], "d", " ms"), fmt(r["ack_p50_ms"], ".1f"), fmt(r["ack_p99_ms"], ".1f"),
                  fmt(r["send_lag_p99_ms"], ".1f"), fmt(r["send_lag_max_ms"], ".1f"),
                  fmt(r["server_exec_p50_ms"], ".1f"), fmt(r["server_exec_p99_ms"], ".1f"),
                  fmt(r["task_wait_p99_ms"], ".2f", " ms"), fmt(r["server_cpu_us_per_exec"], ".0f", " µs"),
                  "/".join("%.0f" % x for x in r["client_cpu_pct_per_proc"]) + " %",
                  r["verdict"] + ((" (contended: other load %s cores%s)" % (
                      fmt(r["other_cores"], ".2f"), ", compiler running" if r["compiler_seen"] else ""))
                      if r["contended"] else "")))
    print()
    print("Latency = createdAt -> completedAt (server timestamps, 1 ms resolution) of the executions created in the "
          "window [first createdAt + warm-up, last createdAt]; completed/s and compl/arr over the same window. "
          "Server exec / task wait: weft_execution_duration_seconds / weft_task_wait_seconds bucket deltas over the "
          "run, histogram_quantile interpolation (bucket-bounded).")
    print()
    s = summary
    bounds = f"sustained = {bounds_text(a)}"
    if s.get("max_rate") is not None:
        src = "from --max-rate, not measured" if s.get("max_rate_given") else "highest sustained ramp step"
        print(f"* Max sustained rate: **{s['max_rate']} executions/s** ({src}; {bounds}) = "
              f"{TASKS_PER_EXECUTION * s['max_rate']} task executions/s"
              + (f"; measured completion throughput there {fmt(s.get('max_completed_per_s'), '.0f')} executions/s = "
                 f"{fmt(s.get('max_tasks_per_s'), '.0f')} tasks/s" if s.get("max_completed_per_s") else "")
              + (f"; first failing step {s['first_fail_rate']}/s: {s['first_fail_reason']}" if s.get("first_fail_rate")
                 else "; no step failed (the ramp ended)" if not s.get("max_rate_given") else ""))
    else:
        print(f"* Max sustained rate: none of the ramp steps was sustained ({bounds})"
              + (f"; first step {s['first_fail_rate']}/s: {s['first_fail_reason']}." if s.get("first_fail_rate") else "."))
    if s.get("client_limited"):
        print("* Note: the client fell behind its schedule at the failing step: the limit found may be the client's.")
    # A target is met only by a run that was itself sustained (all calls accepted, all executions Completed, ...).
    met = lambda row, ok: ("yes" if ok else "**no**") if row["sustained"] else f"**no** (run not sustained: {row['verdict']})"
    if s.get("low"):
        lo = s["low"]
        print(f"* At {lo['phase']} ({lo['rate']}/s): median latency **{fmt(lo['lat_p50_ms'], 'd', ' ms')}** "
              f"(target < {LOW_TARGET_MS:g} ms: "
              f"{met(lo, lo['lat_p50_ms'] is not None and lo['lat_p50_ms'] < LOW_TARGET_MS)}), "
              f"p99 {fmt(lo['lat_p99_ms'], 'd', ' ms')}; server-side p50/p99 {fmt(lo['server_exec_p50_ms'], '.2f')}/"
              f"{fmt(lo['server_exec_p99_ms'], '.2f')} ms")
    if s.get("mid"):
        mi = s["mid"]
        print(f"* At {mi['phase']} ({mi['rate']}/s): task wait p99 **{fmt(mi['task_wait_p99_ms'], '.2f', ' ms')}** "
              f"(target < {MID_TASK_WAIT_TARGET_MS:g} ms: "
              f"{met(mi, mi['task_wait_p99_ms'] is not None and mi['task_wait_p99_ms'] < MID_TASK_WAIT_TARGET_MS)}; "
              f"weft_task_wait_seconds, queued -> started, {fmt(mi['task_wait_n'], '.0f')} observations; "
              f"p50 {fmt(mi['task_wait_p50_ms'], '.2f', ' ms')}; the group commit before it, decided -> queued: "
              f"p99 {fmt(mi.get('commit_p99_ms'), '.2f', ' ms')}); "
              f"latency p50/p99 {fmt(mi['lat_p50_ms'], 'd')}/{fmt(mi['lat_p99_ms'], 'd')} ms; server-side p50/p99 "
              f"{fmt(mi['server_exec_p50_ms'], '.2f')}/{fmt(mi['server_exec_p99_ms'], '.2f')} ms")
    if any(r["contended"] for r in rows):
        print("* Contended: other processes (a compiler, tests) used CPU during some runs (see the verdicts); "
              "rerun on an idle machine for clean figures.")


def print_hold_report(h):
    print()
    print("| held executions | accepted | errors | submit time | submit/s | RSS before | RSS after | VmHWM "
          "| RSS/execution | ready | delayed | leased | in flight | tasks run | data dir | RSS < 500 MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    print("| %d | %d | %d | %.1f s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        h["requested"], h["accepted"], sum(h["errors"].values()), h["submit_s"], fmt(h["submit_per_s"], ".0f"),
        fmt(h["rss_before_mb"], ".0f", " MB"), fmt(h["rss_after_mb"], ".0f", " MB"), fmt(h["hwm_mb"], ".0f", " MB"),
        fmt(h["rss_per_execution_kb"], ".2f", " KB"), fmt(h["queue_ready"], ".0f"), fmt(h["queue_delayed"], ".0f"),
        fmt(h["queue_leased"], ".0f"), fmt(h["in_flight"], ".0f"), fmt(h["tasks_run"], ".0f"),
        fmt(h["data_dir_mb"], ".0f", " MB"), "yes" if h["rss_ok"] else "**no**"))
    if h.get("hold_incomplete"):
        print()
        print(f"Not a measurement of the target: {h['hold_incomplete']}.")
    print()
    print("Queue depth = weft_queue_depth{queue=\"builtin\",state=...} after the submissions; RSS = VmRSS of the "
          "server; tasks run = observations of weft_task_duration_seconds during the hold (0 expected with --workers 0).")


# ------------------------------------------------------------------ self-test

SAMPLE_BEFORE = """\
# TYPE weft_task_wait_seconds histogram
weft_task_wait_seconds_bucket{type="noop",le="0.001"} 5
weft_task_wait_seconds_bucket{type="noop",le="0.005"} 10
weft_task_wait_seconds_bucket{type="noop",le="0.01"} 10
weft_task_wait_seconds_bucket{type="noop",le="0.05"} 10
weft_task_wait_seconds_bucket{type="noop",le="+Inf"} 10
weft_task_wait_seconds_sum{type="noop"} 0.01
weft_task_wait_seconds_count{type="noop"} 10
weft_queue_depth{queue="builtin",state="ready"} 3
"""
SAMPLE_AFTER = """\
# TYPE weft_task_wait_seconds histogram
weft_task_wait_seconds_bucket{type="noop",le="0.001"} 10
weft_task_wait_seconds_bucket{type="noop",le="0.005"} 50
weft_task_wait_seconds_bucket{type="noop",le="0.01"} 60
weft_task_wait_seconds_bucket{type="noop",le="0.05"} 69
weft_task_wait_seconds_bucket{type="noop",le="+Inf"} 70
weft_task_wait_seconds_sum{type="noop"} 0.5
weft_task_wait_seconds_count{type="noop"} 70
weft_task_wait_seconds_bucket{type="http",le="0.001"} 0
weft_task_wait_seconds_bucket{type="http",le="0.005"} 20
weft_task_wait_seconds_bucket{type="http",le="0.01"} 30
weft_task_wait_seconds_bucket{type="http",le="0.05"} 40
weft_task_wait_seconds_bucket{type="http",le="+Inf"} 40
weft_task_wait_seconds_sum{type="http"} 0.5
weft_task_wait_seconds_count{type="http"} 40
weft_queue_depth{queue="builtin",state="ready"} 7
weft_queue_depth{queue="builtin",state="leased"} 2
"""


def self_test():
    close = lambda x, y: x is not None and abs(x - y) < 1e-12
    b = [(0.001, 10.0), (0.005, 60.0), (0.01, 90.0), (0.05, 99.0), (math.inf, 100.0)]
    assert close(histogram_quantile(0.5, b), 0.001 + 0.004 * 40 / 50), histogram_quantile(0.5, b)
    assert close(histogram_quantile(0.99, b), 0.05)           # rank 99 = top of (0.01, 0.05]
    assert close(histogram_quantile(0.995, b), 0.05)          # in +Inf: highest finite bound
    assert close(histogram_quantile(0.05, b), 0.0005)         # first bucket from 0
    assert close(histogram_quantile(0.9, b), 0.01)
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None
    m0, m1 = parse_metrics(SAMPLE_BEFORE), parse_metrics(SAMPLE_AFTER)
    d = histogram_delta(m0, m1, "weft_task_wait_seconds", type="noop")
    assert d == [(0.001, 5.0), (0.005, 40.0), (0.01, 50.0), (0.05, 59.0), (math.inf, 60.0)], d
    # noop delta: rank 0.99*60 = 59.4 -> +Inf bucket -> 0.05; 0.5 -> 30 in (0.001, 0.005]: 0.001 + 0.004*25/35
    assert close(histogram_quantile(0.5, d), 0.001 + 0.004 * 25 / 35)
    assert close(histogram_quantile(0.99, d), 0.05)
    # Both types (the http series is new: absent before = 0).
    d2 = histogram_delta(m0, m1, "weft_task_wait_seconds")
    assert d2 == [(0.001, 5.0), (0.005, 60.0), (0.01, 80.0), (0.05, 99.0), (math.inf, 100.0)], d2
    assert close(histogram_quantile(0.9, d2), 0.01 + 0.04 * 10 / 19)
    assert metric_sum(m1, "weft_queue_depth", queue="builtin", state="ready") == 7
    assert metric_delta(m0, m1, "weft_queue_depth", state="ready") == 4
    assert metric_sum(m1, "weft_queue_depth", state="delayed") is None
    assert pct([1, 2, 3, 4], 0.5) == 2 and pct([1, 2, 3, 4], 0.99) == 4 and pct([], 0.5) is None
    # The sustained verdict: every criterion must hold, each failure is named.
    a = parse_args(["--rates", "100"])
    assert (a.max_p50, a.max_p99, a.backlog_threshold) == (0.25, 1.0, 0.05)
    good = {"errors": {}, "first_error": None, "unfinished_calls": 0, "arrivals": 800, "completions": 800,
            "completion_ratio": 1.0, "client_behind": False, "send_lag_max_ms": 3.0, "send_span_s": 10.0,
            "duration_s": 10, "lat_n": 800, "lat_p50_ms": 20, "lat_p99_ms": 900}
    crit = lambda r, **kw: step_criteria(dict(good, **r), a, **dict(
        dict(n_total=1000, accepted=1000, statuses={"Completed": 1000}, drained=True, still_open=0, died=None,
             list_error=None, unaccounted=0), **kw))
    failed = lambda c: [x["name"] for x in c if not x["ok"]]
    assert failed(crit({})) == []
    assert failed(crit({"lat_p99_ms": 1001})) == ["latency"]
    assert "p99 1001 ms > 1000 ms" in crit({"lat_p99_ms": 1001})[-1]["why"]
    assert failed(crit({"lat_p50_ms": 251})) == ["latency"]
    assert failed(crit({}, statuses={"Completed": 999, "Failed": 1})) == ["executions"]
    assert failed(crit({}, statuses={"Completed": 999, "TimedOut": 1})) == ["executions"]
    assert failed(crit({}, drained=False, still_open=3, statuses={"Completed": 997, "Running": 3})) == ["executions"]
    assert failed(crit({"errors": {"UNAVAILABLE": 1}}, accepted=999)) == ["calls"]        # 1 rejected call fails it
    assert failed(crit({"completion_ratio": 0.9, "completions": 720})) == ["throughput"]
    assert failed(crit({"completion_ratio": 0.9, "arrivals": 20, "completions": 18})) == []  # shortfall <= 2
    assert failed(crit({"client_behind": True})) == ["schedule"]
    assert failed(crit({"lat_n": 0, "lat_p50_ms": None, "lat_p99_ms": None})) == ["latency"]
    print("self-test: histogram_quantile, bucket deltas, metric sums, percentiles, sustained criteria OK")
    return 0


# ------------------------------------------------------------------ main

def parse_args(argv=None):
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Step-3 engine benchmark: ExecuteWorkflow rate, latency, memory.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    g = ap.add_argument_group("rate runs")
    g.add_argument("--rates", default=env("RATES", DEFAULT_RATES),
                   help=f'ramp steps, executions/s (default "{DEFAULT_RATES}")')
    g.add_argument("--duration", type=float, default=float(env("DURATION", 10)), help="seconds per step (default 10)")
    g.add_argument("--warmup", type=float, default=float(env("WARMUP", 2)),
                   help="seconds at the start of each run left out of throughput and latency (default 2, "
                        "at most a quarter of the run)")
    g.add_argument("--max-rate", type=float, default=None, help="skip the ramp: take this as the max sustained rate")
    g.add_argument("--no-ramp-stop", action="store_true", help="run every ramp step, even after one fails")
    g.add_argument("--low-pct", type=float, default=10.0, help="latency run at this %% of the max (default 10; 0 skips)")
    g.add_argument("--mid-pct", type=float, default=50.0, help="task-wait run at this %% of the max (default 50; 0 skips)")
    g.add_argument("--low-duration", type=float, default=None, help="seconds of the 10 %% run (default --duration)")
    g.add_argument("--mid-duration", type=float, default=None, help="seconds of the 50 %% run (default --duration)")
    g.add_argument("--backlog-threshold", type=float, default=0.05,
                   help="a step fails when completions fall below (1 - this) x arrivals (default 0.05)")
    g.add_argument("--max-p50", type=float, default=0.25,
                   help="a step fails when latency p50 (createdAt -> completedAt) exceeds this, s (default 0.25)")
    g.add_argument("--max-p99", type=float, default=1.0,
                   help="a step fails when latency p99 (createdAt -> completedAt) exceeds this, s (default 1)")
    g.add_argument("--drain-timeout", type=float, default=float(env("DRAIN_TIMEOUT", 180)),
                   help="seconds to wait after a run for its executions to finish (default 180)")
    g = ap.add_argument_group("hold run")
    g.add_argument("--hold", type=int, default=0, metavar="N",
                   help="hold test: start the server with --workers 0, submit N executions, read RSS and queue depth")
    g.add_argument("--also-rates", action="store_true", help="with --hold: run the rate runs first (own server)")
    g.add_argument("--hold-concurrency", type=int, default=64, help="calls in flight per client process (default 64)")
    g.add_argument("--hold-settle", type=float, default=2.0, help="seconds between the last call and the reading")
    g.add_argument("--hold-timeout", type=float, default=1800, help="bound of the submissions, s (default 1800)")
    g = ap.add_argument_group("client")
    g.add_argument("--procs", type=int, default=int(env("PROCS", os.cpu_count() or 2)),
                   help="client processes (default: cores)")
    g.add_argument("--channels", type=int, default=1, help="gRPC channels (connections) per process (default 1)")
    g.add_argument("--max-inflight", type=int, default=5000, help="calls in flight per process before it waits")
    g.add_argument("--call-timeout", type=float, default=30.0, help="deadline of one ExecuteWorkflow call, s")
    g.add_argument("--contended-cores", type=float, default=0.25,
                   help="mark a run contended when other processes used more than this many cores (default 0.25)")
    g = ap.add_argument_group("server")
    g.add_argument("--target", help="host:port of a running server (default: start WEFT_BIN)")
    g.add_argument("--token", help="bearer token for --target (default: register/log in a bench user)")
    g.add_argument("--pid", type=int, default=0, help="pid of the --target server (RSS, CPU)")
    g.add_argument("--workers", type=int, default=None, help="`serve --workers N` for the rate runs (default: unset)")
    g.add_argument("--store-sync", choices=("full", "normal"), default=env("SYNC"),
                   help="`serve --store-sync` (default: unset = the server's default, full)")
    g.add_argument("--server-args", default=env("WEFT_ARGS", ""), help="more `serve` arguments, one string")
    g.add_argument("--notify-webhook", metavar="URL", default=None,
                   help="after creating each workflow, subscribe a webhook at URL (plain destination, unsigned) to "
                        "its execution.completed events, so every execution sends a notification; a started "
                        "server also gets --egress-allow 127.0.0.1/32 (a receiver on loopback)")
    g.add_argument("--keep-data", action="store_true", default=env("KEEP_DATA") == "1",
                   help="keep the temporary data dirs")
    g = ap.add_argument_group("output")
    g.add_argument("--json", help="also write all figures to this JSON file")
    g.add_argument("--self-test", action="store_true", help="check the quantile math and exit")
    a = ap.parse_args(argv)
    try:
        a.rate_list = [float(x) if "." in x else int(x) for x in a.rates.replace(",", " ").split()]
    except ValueError:
        ap.error(f"--rates: not numbers: {a.rates!r}")
    if not a.rate_list and a.max_rate is None and not a.hold:
        ap.error("no --rates")
    if any(r <= 0 for r in a.rate_list) or a.duration <= 0:
        ap.error("rates and --duration must be positive")
    if a.max_p50 <= 0 or a.max_p99 <= 0 or a.max_p50 > a.max_p99:
        ap.error("--max-p50 and --max-p99 must be positive, p50 <= p99")
    if a.target and not re.match(r"^[^:]+:\d+$", a.target):
        ap.error("--target must be host:port")
    if a.token and not a.target:
        ap.error("--token needs --target")
    a.do_rates = not a.hold or a.also_rates
    return a


def check_flags(weft_bin, flags):
    """Fails early when the binary has no such `serve` flag."""
    try:
        text = subprocess.run([weft_bin, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SystemExit(f"{weft_bin} serve --help: {e}")
    missing = [f for f in (x.split("=", 1)[0] for x in flags) if f not in text]
    if missing:
        raise SystemExit(f"{weft_bin} serve has no {', '.join(missing)} (is it the Step-3 build?)")


def main(argv=None):
    a = parse_args(argv)
    if a.self_test:
        return self_test()
    command = shlex.join([sys.executable] + sys.argv)
    envs = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in
                    ("WEFT_BIN", "DATA_DIR", "OUT_DIR", "WEFT_ARGS", "SYNC", "KEEP_DATA") if k in os.environ)
    log(f"command: {(envs + ' ') if envs else ''}{command}")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass

    weft_bin = os.environ.get("WEFT_BIN", str(REPO / ".build" / "release" / "weft"))
    out_dir = os.environ.get("OUT_DIR") or tempfile.mkdtemp(prefix="weft-bench-exec.", dir="/tmp")
    os.makedirs(out_dir, exist_ok=True)
    gen_dir = os.path.join(out_dir, "gen")
    from weft_helpers import generate_protos
    generate_protos(Path(gen_dir))
    servers, data_dirs = [], []

    def cleanup():
        for s in servers:
            if s.alive():
                s.stop()
        if not a.keep_data and not os.environ.get("DATA_DIR"):
            for d in data_dirs:
                shutil.rmtree(d, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def start(name, extra):
        """Starts a server (or attaches to --target), logs in; returns a Target."""
        if a.target:
            host, port = a.target.rsplit(":", 1)
            port = int(port)
            token = a.token or sw.login(host, port, "bench-exec@bench.weft.test", "bench-password-1", "Bench Exec")
            return Target(host, port, token, a.pid, gen_dir)
        if not os.access(weft_bin, os.X_OK):
            raise SystemExit(f"no executable at {weft_bin} (swift build -c release, or set WEFT_BIN / use --target)")
        base = os.environ.get("DATA_DIR")
        data_dir = os.path.join(base, name) if base else os.path.join(out_dir, f"data-{name}")
        os.makedirs(data_dir, exist_ok=True)
        data_dirs.append(data_dir)
        fs = subprocess.run(["stat", "-f", "-c", "%T", data_dir], capture_output=True, text=True).stdout.strip()
        if fs in ("tmpfs", "ramfs"):
            log(f"warning: {data_dir} is on {fs}: fsync is free there; set DATA_DIR to a disk")
        args = ["--scrypt-log-n", os.environ.get("SCRYPT_LOG_N", "10")]
        if a.store_sync:
            args += ["--store-sync", a.store_sync]
        args += extra + shlex.split(a.server_args)
        if a.notify_webhook:
            args += ["--egress-allow", "127.0.0.1/32"]
        check_flags(weft_bin, [x for x in args if x.startswith("--")])
        s = Server(weft_bin, data_dir, args, out_dir, name)
        s.data_dir = data_dir
        servers.append(s)
        log(f"server ({name}): {shlex.join(s.cmd)}  [pid {s.pid}, port {s.port}, log {s.log_path}]")
        token = sw.login("127.0.0.1", s.port, "bench-exec@bench.weft.test", "bench-password-1", "Bench Exec")
        t = Target("127.0.0.1", s.port, token, s.pid, gen_dir, server=s)
        t.server_cmd = shlex.join(s.cmd)
        return t

    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": command, "env": envs,
              "machine": platform.machine(), "cores": os.cpu_count(), "weft_bin": None if a.target else weft_bin,
              "target": a.target, "out_dir": out_dir, "runs": [], "summary": {}, "hold": None, "servers": []}
    rc, failure = 0, None
    try:
        if a.do_rates:
            extra = ["--workers", str(a.workers)] if a.workers is not None else []
            t = start("rates", extra)
            report["servers"].append({"name": "rates", "command": getattr(t, "server_cmd", None)})
            rows, s = report["runs"], report["summary"]
            best, best_row = None, None
            if a.max_rate is not None:
                best, s["max_rate_given"] = a.max_rate, True
            else:
                for rate in a.rate_list:
                    row = run_step(t, a, gen_dir, "ramp", rate, a.duration)
                    rows.append(row)
                    if row["server_died"]:
                        rc = 1
                        break
                    if row["sustained"]:
                        best, best_row = rate, row
                    elif "first_fail_rate" not in s:
                        s["first_fail_rate"], s["first_fail_reason"] = rate, row["verdict"]
                        s["client_limited"] = row["client_behind"]
                        if not a.no_ramp_stop:
                            break
            s["max_rate"] = best
            if best_row:
                s["max_completed_per_s"] = best_row["completed_per_s"]
                s["max_tasks_per_s"] = best_row["tasks_per_s"]
            if best and not (t.server and t.server.died()):
                for key, p, dur in (("low", a.low_pct, a.low_duration), ("mid", a.mid_pct, a.mid_duration)):
                    if p <= 0:
                        continue
                    rate = max(1, int(round(best * p / 100)))
                    row = run_step(t, a, gen_dir, f"{p:g} %", rate, dur or a.duration)
                    rows.append(row)
                    s[key] = row
                    if row["server_died"]:
                        rc = 1
                        break
            if t.server:
                report["servers"][-1].update(log_problems=t.server.log_problems()[0], died=t.server.died())
                t.server.stop()
                report["servers"][-1]["stop"] = t.server.exit_note
                log(f"server (rates): {t.server.exit_note}")
        if a.hold:
            if a.target:
                log("note: --hold with --target: the server must have been started with --workers 0")
            t = start("hold", ["--workers", "0"])
            report["servers"].append({"name": "hold", "command": getattr(t, "server_cmd", None)})
            report["hold"] = run_hold(t, a, gen_dir)
            if report["hold"]["server_died"]:
                rc = 1
            if t.server:
                report["servers"][-1].update(log_problems=t.server.log_problems()[0], died=t.server.died())
                t.server.stop()
                report["servers"][-1]["stop"] = t.server.exit_note
                log(f"server (hold): {t.server.exit_note}")
    except (SystemExit, Exception) as e:  # noqa: BLE001 - report what was measured, then fail
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        failure = str(e) if isinstance(e, SystemExit) else traceback.format_exc()
        report["failure"] = failure
        rc = 1
        for sv, srv in zip(report["servers"], servers):
            sv.setdefault("died", srv.died())
    finally:
        cleanup()

    # ---------------------------------------------------------------- figures
    print()
    print(f"Weft engine benchmark, {report['date']}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{'server ' + a.target if a.target else os.path.relpath(weft_bin, REPO) if weft_bin.startswith(str(REPO)) else weft_bin}; "
          f"workflow a -> b -> c (noop); {a.procs} client processes (grpc.aio), {a.duration:g} s per step.")
    if a.notify_webhook:
        print(f"Every workflow has a webhook subscription to execution.completed: {a.notify_webhook} "
              "(each execution sends a notification).")
    print()
    print(f"Command: {(envs + ' ') if envs else ''}{command}")
    for sv in report["servers"]:
        if sv.get("command"):
            print(f"Server ({sv['name']}): {sv['command']}")
    if report["runs"]:
        print_rate_report(report["runs"], report["summary"], a)
    if report["hold"]:
        print_hold_report(report["hold"])
    print()
    for sv in report["servers"]:
        notes = []
        if sv.get("died"):
            notes.append(sv["died"])
        if sv.get("log_problems"):
            notes.append(f"{sv['log_problems']} warning/error lines in its log")
        if sv.get("stop") and "exit status 0" not in sv["stop"]:
            notes.append(sv["stop"])
        if notes:
            print(f"Server ({sv['name']}): " + "; ".join(notes) + ".")
            rc = rc or 1 if sv.get("died") else rc
    if failure:
        print(f"FAILED: {failure.strip()}")
    print(f"Logs: {out_dir}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"JSON: {a.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
