#!/usr/bin/env python3
"""Step-9 benchmark: notifications of failing executions, and the engine's knee with notifications.

    python3 loadtest/bench-notifications.py                          # phase A at 1,000/s for 20 s, then phase B
    python3 loadtest/bench-notifications.py --skip-knee              # phase A only
    python3 loadtest/bench-notifications.py --skip-delivery --knee-rates "1200 1400 1600"   # phase B only
    python3 loadtest/bench-notifications.py --destinations 25        # 25 workflows, each its own receiver port
    python3 loadtest/bench-notifications.py --quick                  # quick check of the script (debug build)

Target (Step 9): 1,000 failing executions per second with a webhook
subscription: every notification delivered, event-to-delivery p99 under 1 s,
and the executions/s knee of the engine lowered by under 10 %.

**Phase A, delivery.** A fresh server, `$WEFT_BIN serve --host 127.0.0.1
--port 0 --data-dir DIR --scrypt-log-n 10 --token-ttl 7200 --plan bench:...=0
--default-plan bench --egress-allow 127.0.0.1/32 --secrets-key-file
OUT_DIR/master.key [--store-sync S] [--server-args ...]` (the plan `bench`
limits nothing; the egress allowance lets deliveries reach the loopback
receiver; the master key seals the integration's signing secret). A receiver
(the *sink*: one Python process, asyncio, raw HTTP/1.1 parsing, keep-alive)
answers every POST `200` at once and records its receive time (time.time(),
when the request's last byte arrived), headers and body. The script creates
--destinations (1) workflows of one task that fails at once

    {"key": "boom", "action": "transform", "config": {"output": "{{ input.missing.deep }}"},
     "retry": {"maxAttempts": 1}}

each with a `webhook` integration (URL http://127.0.0.1:PORT/hook/K on a sink
port of its own, a random 32-byte signingSecret; --unsigned: a plain
`destination` instead) and a subscription to `execution.failed` through it.
Then ExecuteWorkflow over gRPC (grpc.aio, --procs client processes, as
bench-executions.py) at a fixed open-loop rate R (--rate, 1000/s): execution i
is due at t0 + i/R, on workflow i mod --destinations, for --warmup (2) s
unmeasured and --duration (20) s measured. Each call's send lag is recorded;
a client behind its schedule did not offer R. Afterwards the script waits
(--delivery-timeout, 120 s after the last submission) until nothing is in
flight and the sink has every failed execution's notification, or until the
outbox is empty, then reads every execution (ListExecutions) and every
delivery of each subscription by state (`GET .../deliveries?state=...`).

Event-to-delivery latency = sink receive time - `data.at` (the event's time,
RFC 3339 with milliseconds, the server's clock = this machine's) of the first
receipt of each notification of an execution scheduled in the measured
window; a notification that never arrived counts as infinitely late (it is
not left out). p50/p90/p99/p99.9/max, nearest rank. Also the server's own
`weft_notification_delivery_seconds{channel="webhook"}` (event to delivery)
p50/p99 from the bucket deltas (PromQL histogram_quantile interpolation, as
bench-executions.py), `deliveredAt - createdAt` of the delivered rows, the
outbox backlog (weft_outbox_pending, weft_outbox_oldest_age_seconds) second
by second, repeats (a delivery id received twice), retries (X-Weft-Attempt >
1), and with a signed integration every signature checked
(HMAC-SHA256 of "<X-Weft-Timestamp>.<body>").

Verdict A (strict): PASS only if the rate was offered (every call accepted,
the client on schedule: not more than max(100 ms, 5 intervals) late while
sending past the end of the schedule, achieved rate within 5 % of R), every
accepted execution ended Failed, every one's notification reached the sink
(unique delivery ids = failed executions, none missing, none for an unknown
execution, every signature valid), the API lists every delivery `delivered`
(none pending, dead or skipped), the p99 is under --max-p99-ms (1000) and the
server still runs.

The server's delivery policy limits each destination (URL host:port) to 50
deliveries a second (burst 100; docs/NOTIFICATIONS.md). With one destination a
rate above that cannot be delivered in time whatever the rest does; the report
says so. --destinations N spreads the executions over N workflows, each with
its own subscription and receiver port (N destinations), e.g. 25 for 1,000/s.

**Phase B, the knee.** bench-executions.py's ramp (3-task noop workflow,
gRPC, its strict sustained criteria) is run as a subprocess over --knee-rates
(--knee-duration s per step, no 10 %/50 % runs): once plain and once with
`--notify-webhook http://127.0.0.1:PORT/knee` (every workflow it creates gets
a webhook subscription to execution.completed at a sink of this script: every
execution writes and sends a notification). --knee-rounds N runs N pairs,
alternating the order, and takes each variant's median. The knee is the
highest sustained step. For the notified ramp the sink's receipts per step are
printed (notifications received / executions completed, latency). Verdict B:
PASS if the knee with notifications is at least (1 - --max-knee-drop) = 90 %
of the plain knee. The ramp's step size bounds what can be seen: with steps
more than 10 % apart one step lower fails it.

Both phases print the exact commands, every figure and a strict
`VERDICT: PASS|FAIL (criteria): reasons` line; exit 1 on FAIL. A run is marked
contended when other processes used more than 0.25 cores or a compiler ran.
Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import datetime
import hashlib
import hmac
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "Tests" / "interop"))

from weft_process import load_bench_executions  # noqa: E402

bx = load_bench_executions()
sw = bx.sw
from weft_process import WeftProcess  # noqa: E402
from weft_helpers import parse_metrics  # noqa: E402

PLAN = "bench:concurrent_executions=0,executions_per_day=0,workflows=0,schedules=0,requests_per_minute=0"
EMAIL, PASSWORD = "bench-notifications@bench.weft.test", "bench-password-1"
RATE_TOLERANCE = 0.05
DESTINATION_RATE = 200.0  # docs/NOTIFICATIONS.md: the default of --notification-rate (per receiver; burst 400)
FAILING_TASKS = [{"key": "boom", "name": "Boom", "action": "transform",
                  "config": {"output": "{{ input.missing.deep }}"}, "retry": {"maxAttempts": 1}}]
DEFAULT_KNEE_RATES = "1000 1100 1200 1300 1400 1500 1600 1700 1800"
QUICK = {"rate": 100.0, "duration": 3.0, "warmup": 1.0, "delivery_timeout": 60.0,
         "knee_rates": "50 100", "knee_duration": 3.0}


def log(msg: str) -> None:
    print(f"[bench-notify] {msg}", file=sys.stderr, flush=True)


# ============================================================== the sink (receiver)

RESP = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
RESP_CLOSE = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def _header(low_head: bytes, name: bytes):
    """Value of header `name` (lower case, with the colon) in a lower-cased head, or None."""
    i = low_head.find(b"\r\n" + name)
    if i < 0:
        return None
    j = low_head.find(b"\r\n", i + 2)
    return low_head[i + 2 + len(name): j if j >= 0 else len(low_head)].strip()


def _chunked(buf, start):
    """(body, end offset) of a complete chunked body at buf[start:], or None."""
    pos, parts = start, []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0].strip() or b"0", 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # no trailers: "0\r\n\r\n"
            return (b"".join(parts), end + 4) if end >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos:pos + size]))
        pos += size + 2


class _SinkState:
    def __init__(self):
        self.records = []          # (receive time, port, head bytes, body bytes)
        self.ids = set()
        self.bad = 0               # requests that could not be parsed


class _HookProtocol(asyncio.Protocol):
    def __init__(self, state, port):
        self.state, self.port, self.buf, self.tr = state, port, bytearray(), None

    def connection_made(self, transport):
        self.tr = transport

    def data_received(self, data):
        now = time.time()
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 1 << 16:
                    self.state.bad += 1
                    self.tr.close()
                return
            head = bytes(buf[:end])
            low = head.lower()
            cl = _header(low, b"content-length:")
            try:
                if cl is not None:
                    n = int(cl)
                    if len(buf) < end + 4 + n:
                        return
                    body = bytes(buf[end + 4:end + 4 + n])
                    del buf[:end + 4 + n]
                elif (_header(low, b"transfer-encoding:") or b"").endswith(b"chunked"):
                    got = _chunked(buf, end + 4)
                    if got is None:
                        return
                    body, stop = got
                    del buf[:stop]
                else:
                    body = b""
                    del buf[:end + 4]
            except ValueError:
                self.state.bad += 1
                self.tr.close()
                return
            st = self.state
            st.records.append((now, self.port, head, body))
            dlv = _header(low, b"x-weft-delivery-id:")
            if dlv:
                st.ids.add(dlv)
            if _header(low, b"connection:") == b"close":
                self.tr.write(RESP_CLOSE)
                self.tr.close()
                return
            self.tr.write(RESP)


def sink_main(conn, nports):
    """The sink process: `nports` listening sockets on 127.0.0.1; commands over `conn`."""
    async def run():
        loop = asyncio.get_running_loop()
        state = _SinkState()
        servers, ports = [], []
        for _ in range(nports):
            holder = {}
            srv = await loop.create_server(lambda h=holder: _HookProtocol(state, h["port"]), "127.0.0.1", 0,
                                           backlog=4096, reuse_address=True)
            holder["port"] = srv.sockets[0].getsockname()[1]
            servers.append(srv)
            ports.append(holder["port"])
        conn.send(("ports", ports))
        done = loop.create_future()

        def on_command():
            try:
                cmd = conn.recv()
            except (EOFError, OSError):
                if not done.done():
                    done.set_result(None)
                return
            if cmd == "count":
                conn.send((len(state.records), len(state.ids), time.process_time()))
            elif cmd == "dump":
                conn.send({"records": state.records, "bad": state.bad, "cpu_s": time.process_time()})
            elif cmd == "stop":
                conn.send("stopped")
                if not done.done():
                    done.set_result(None)

        loop.add_reader(conn.fileno(), on_command)
        await done
        for srv in servers:
            srv.close()

    try:
        asyncio.run(run())
    except BaseException:  # noqa: BLE001 - reported to the parent
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass


class Sink:
    """The receiver, in its own process (its timing does not share this process's interpreter)."""

    def __init__(self, nports=1):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=sink_main, args=(child, nports), daemon=True)
        self.proc.start()
        self.lock = threading.Lock()
        if not self.conn.poll(30):
            raise SystemExit("the sink process did not start within 30 s")
        msg = self.conn.recv()
        if msg[0] != "ports":
            raise SystemExit(f"the sink process failed: {msg[1]}")
        self.ports = msg[1]
        self.pid = self.proc.pid

    def _ask(self, cmd, timeout=60):
        with self.lock:
            self.conn.send(cmd)
            if not self.conn.poll(timeout):
                raise SystemExit(f"the sink did not answer {cmd!r} within {timeout} s")
            return self.conn.recv()

    def count(self):
        """(requests received, unique delivery ids, sink CPU s)."""
        return self._ask("count")

    def dump(self):
        return self._ask("dump", timeout=300)

    def stop(self):
        if self.proc.is_alive():
            try:
                self._ask("stop", timeout=10)
            except (SystemExit, OSError, EOFError):
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)


def parse_records(records):
    """Sink records -> [{t, port, headers (lower-case names), body, json}]."""
    out = []
    for t, port, head, body in records:
        lines = head.split(b"\r\n")
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            hdrs[k.strip().lower().decode(errors="replace")] = v.strip().decode(errors="replace")
        try:
            js = json.loads(body)
        except ValueError:
            js = None
        out.append({"t": t, "port": port, "line": lines[0].decode(errors="replace"), "headers": hdrs,
                    "body": body, "json": js})
    return out


def rfc3339(s):
    """Epoch seconds of an RFC 3339 timestamp ('...Z' or an offset), None if absent or bad."""
    if not s:
        return None
    try:
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ============================================================== the client (ExecuteWorkflow, open loop)

def client_entry(cfg, q, conn):
    """A spawned client process: grpc.aio, its share of the schedule."""
    try:
        sys.path.append(cfg["gen_dir"])
        from weft.v1 import executions_pb2, executions_pb2_grpc
        res = asyncio.run(_client(cfg, q, conn, executions_pb2, executions_pb2_grpc))
        q.put(("result", cfg["index"], res))
    except BaseException:  # noqa: BLE001 - reported to the parent
        q.put(("error", cfg["index"], traceback.format_exc()))


async def _client(cfg, q, conn, pb, pbg):
    import grpc
    import grpc.aio

    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20)]
    chans = [grpc.aio.insecure_channel(cfg["target"], options=opts) for _ in range(cfg["channels"])]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in chans)), 20)
        stubs = [pbg.ExecutionServiceStub(c) for c in chans]
        md = (("authorization", "Bearer " + cfg["token"]),)
        reqs = [pb.ExecuteWorkflowRequest(workflow_id=w) for w in cfg["workflows"]]
        loop = asyncio.get_running_loop()
        q.put(("ready", cfg["index"], None))
        start_at = await loop.run_in_executor(None, conn.recv)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        return await _rate_loop(cfg, stubs, md, reqs, start_at, grpc, loop)
    finally:
        for c in chans:
            await c.close()


async def _rate_loop(cfg, stubs, md, reqs, start_at, grpc, loop):
    """Execution i (of this process: i = index, index + procs, ...) at start + i/R on workflow i mod W,
    whatever happened to the earlier calls; each call's send lag is recorded."""
    base = loop.time() + (start_at - time.time())
    interval = 1.0 / cfg["rate"]
    mine = range(cfg["index"], cfg["n_total"], cfg["procs"])
    lags, ids, errors = array.array("d"), [], collections.Counter()
    st = {"inflight": 0, "first_error": None, "first_send": None, "last_send": None, "max_inflight": 0}
    wake, pending, timeout, W = asyncio.Event(), set(), cfg["call_timeout"], len(reqs)

    async def one(i, t_sched):
        t0 = loop.time()
        lags.append(t0 - t_sched)
        now = time.time()
        st["first_send"] = st["first_send"] or now
        st["last_send"] = now
        try:
            resp = await stubs[i % len(stubs)].ExecuteWorkflow(reqs[i % W], metadata=md, timeout=timeout)
            ids.append((i, resp.execution_id))
        except grpc.aio.AioRpcError as e:
            errors[e.code().name] += 1
            st["first_error"] = st["first_error"] or f"{e.code().name}: {e.details()}"
        except Exception as e:  # noqa: BLE001
            errors[type(e).__name__] += 1
            st["first_error"] = st["first_error"] or repr(e)
        finally:
            st["inflight"] -= 1
            wake.set()

    cpu0, wall0 = time.process_time(), time.time()
    j, n = 0, len(mine)
    while j < n:
        t_sched = base + mine[j] * interval
        now = loop.time()
        if now < t_sched:
            await asyncio.sleep(t_sched - now)
            continue
        if st["inflight"] >= cfg["max_inflight"]:
            wake.clear()
            await wake.wait()
            continue
        st["inflight"] += 1
        st["max_inflight"] = max(st["max_inflight"], st["inflight"])
        t = asyncio.ensure_future(one(mine[j], t_sched))
        pending.add(t)
        t.add_done_callback(pending.discard)
        j += 1
        if j % 32 == 0:
            await asyncio.sleep(0)
    if pending:
        await asyncio.wait(list(pending), timeout=timeout + 10)
    return {"scheduled": n, "accepted": len(ids), "errors": dict(errors), "first_error": st["first_error"],
            "lags": lags.tolist(), "ids": ids, "first_send": st["first_send"], "last_send": st["last_send"],
            "cpu_s": time.process_time() - cpu0, "wall_s": time.time() - wall0,
            "max_inflight": st["max_inflight"], "unfinished": len(pending)}


def run_clients(cfgs, timeout, on_start=None):
    """Spawns one process per cfg, starts them together once all are connected; (start_at, results)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs, pipes = [], []
    for cfg in cfgs:
        parent_end, child_end = ctx.Pipe()
        p = ctx.Process(target=client_entry, args=(cfg, q, child_end), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent_end)
    results = {}
    try:
        ready, deadline = 0, time.monotonic() + 60
        while ready < len(cfgs):
            try:
                tag, idx, payload = q.get(timeout=0.5)
            except Exception:  # noqa: BLE001 - queue.Empty
                if any(p.exitcode is not None for p in procs) and q.empty():
                    raise SystemExit("a client process exited before connecting")
                if time.monotonic() > deadline:
                    raise SystemExit("client processes did not connect within 60 s")
                continue
            if tag == "error":
                raise SystemExit(f"client process {idx} failed:\n{payload}")
            ready += tag == "ready"
        if on_start:
            on_start()
        start_at = time.time() + 0.3
        for pe in pipes:
            pe.send(start_at)
        deadline = time.monotonic() + timeout
        while len(results) < len(cfgs):
            try:
                tag, idx, payload = q.get(timeout=1.0)
            except Exception:  # noqa: BLE001 - queue.Empty
                dead = [k for k, p in enumerate(procs) if p.exitcode is not None and k not in results]
                if dead:
                    time.sleep(1.0)
                    if q.empty():
                        raise SystemExit(f"client process(es) {dead} exited without a result")
                if time.monotonic() > deadline:
                    raise SystemExit(f"client processes did not finish within {timeout:.0f} s")
                continue
            if tag == "error":
                raise SystemExit(f"client process {idx} failed:\n{payload}")
            if tag == "result":
                results[idx] = payload
        return start_at, [results[i] for i in sorted(results)]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)


# ============================================================== server helpers

def rest(port, token, method, path, body=None, timeout=120):
    c = sw.Client("127.0.0.1", port, token, timeout=timeout)
    try:
        status, payload = c.request(method, path, body)
        return status, (json.loads(payload) if payload else {})
    finally:
        c.close()


def scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            return parse_metrics(r.read().decode())
    except (OSError, ValueError) as e:
        log(f"warning: GET /metrics failed: {e!r}")
        return None


def list_deliveries(port, token, wid, sid, state):
    """Every delivery of a subscription in `state` (all pages of 1,000)."""
    out, page_token = [], ""
    for _ in range(100_000):
        q = {"pageSize": 1000, "state": state}
        if page_token:
            q["pageToken"] = page_token
        st, body = rest(port, token, "GET", f"/workflows/{wid}/subscriptions/{sid}/deliveries?"
                        + urllib.parse.urlencode(q))
        if st != 200:
            raise RuntimeError(f"GET deliveries?state={state}: HTTP {st}: {str(body)[:300]}")
        out += body.get("deliveries", [])
        page_token = body.get("nextPageToken", "")
        if not page_token or not body.get("deliveries"):
            return out
    return out


def pcts(vals):
    """Nearest-rank percentiles of a list (sorted here), inf allowed."""
    v = sorted(vals)
    if not v:
        return {"n": 0}
    p = bx.pct
    return {"n": len(v), "p50": p(v, 0.5), "p90": p(v, 0.9), "p99": p(v, 0.99), "p999": p(v, 0.999), "max": v[-1]}


def fmt_ms(x):
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "never"
    return f"{x * 1000:,.0f} ms" if x >= 1 else f"{x * 1000:.1f} ms"


def fmt_p(d):
    if not d or not d.get("n"):
        return "no samples"
    return ", ".join(f"{k} {fmt_ms(d[k])}" for k in ("p50", "p90", "p99", "p999", "max") if k in d)


def contended(cpu, a):
    if not cpu:
        return False
    o = cpu.get("other_cores")
    return bool(cpu.get("compiler_seen") or (o is not None and o > a.contended_cores))


class Poller:
    """Once a second: executions in flight, outbox backlog, delivered total, sink receipts."""

    def __init__(self, port, sink):
        self.port, self.sink, self.rows, self.stop_evt = port, sink, [], threading.Event()
        self.t0 = time.monotonic()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def sample(self):
        m = scrape(self.port)
        try:
            n, uniq, _ = self.sink.count()
        except (SystemExit, OSError, EOFError):
            n = uniq = None
        row = {"t": round(time.monotonic() - self.t0, 1), "sink": uniq, "sink_requests": n}
        if m is not None:
            row.update(in_flight=int(bx.metric_sum(m, "weft_executions_in_flight") or 0),
                       outbox_pending=bx.metric_sum(m, "weft_outbox_pending"),
                       oldest_age=bx.metric_sum(m, "weft_outbox_oldest_age_seconds"),
                       delivered=bx.metric_sum(m, "weft_notifications_delivered_total", channel="webhook"),
                       finished=bx.metric_sum(m, "weft_executions_finished_total"))
        return row

    def run(self):
        while not self.stop_evt.wait(1.0):
            self.rows.append(self.sample())

    def stop(self):
        self.stop_evt.set()
        self.th.join(10)
        return self.rows


# ============================================================== phase A: delivery

def setup_destinations(a, port, token, sink_ports):
    """N failing workflows, each with an integration (or a plain destination) and a subscription."""
    dests = []
    for k, sport in enumerate(sink_ports):
        st, wf = rest(port, token, "POST", "/workflows", {"name": f"bench-notifications fails {k}",
                                                          "description": "fails at once (template error)",
                                                          "tasks": FAILING_TASKS})
        if st != 201:
            raise RuntimeError(f"create workflow: HTTP {st}: {wf}")
        url = f"http://127.0.0.1:{sport}/hook/{k}"
        secret = None
        sub = {"events": ["execution.failed"], "notifyVia": "webhook"}
        if a.baseline:
            # The engine's baseline: the subscription exists (the index is
            # consulted on every commit) but its filter never matches, so no
            # row is written and nothing is delivered.
            sub["filter"] = 'event.trigger == "never"'
        if a.unsigned:
            sub["destination"] = url
            integration = None
        else:
            secret = secrets.token_hex(32)
            st, integ = rest(port, token, "POST", f"/workflows/{wf['id']}/integrations",
                             {"type": "webhook", "name": f"bench sink {k}", "webhookUrl": url,
                              "config": {"signingSecret": secret}})
            if st != 201:
                raise RuntimeError(f"create integration: HTTP {st}: {integ}")
            integration = integ["id"]
            sub["integrationId"] = integration
        st, s = rest(port, token, "POST", f"/workflows/{wf['id']}/subscriptions", sub)
        if st != 201:
            raise RuntimeError(f"create subscription: HTTP {st}: {s}")
        dests.append({"workflow_id": wf["id"], "subscription_id": s["id"], "integration_id": integration,
                      "url": url, "port": sport, "secret": secret})
    return dests


def phase_delivery(a, weft_bin, out_dir, rep):
    res = {"reasons": [], "notes": []}
    rep["delivery"] = res
    reasons, notes = res["reasons"], res["notes"]
    data_dir = os.environ.get("DATA_DIR") or os.path.join(out_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    key_file = os.path.join(out_dir, "master.key")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    args = ["--scrypt-log-n", "10", "--token-ttl", "7200", "--plan", PLAN, "--default-plan", "bench",
            "--egress-allow", "127.0.0.1/32", "--secrets-key-file", key_file]
    if a.store_sync:
        args += ["--store-sync", a.store_sync]
    args += shlex.split(a.server_args)
    sink = server = None
    try:
        sink = Sink(a.destinations)
        res["sink_ports"] = sink.ports
        server = WeftProcess(weft_bin, data_dir, args, out_dir, "notifications")
        res["server_command"] = shlex.join(server.cmd)
        log(f"phase A server: {res['server_command']}  [pid {server.pid}, port {server.port}, log {server.log_path}]")
        port = server.port
        token = sw.login("127.0.0.1", port, EMAIL, PASSWORD, "Bench Notifications")
        dests = setup_destinations(a, port, token, sink.ports)
        res["destinations"] = [{k: v for k, v in d.items() if k != "secret"} for d in dests]
        target = bx.Target("127.0.0.1", port, token, server.pid, a.gen_dir, server=server)
        per_dest = a.rate / a.destinations
        if per_dest > DESTINATION_RATE and "--notification-rate" not in a.server_args:
            notes.append(f"{per_dest:.0f} notifications/s per destination is above the server's default "
                         f"per-receiver rate limit ({DESTINATION_RATE:.0f}/s, burst 400; docs/NOTIFICATIONS.md): "
                         f"deliveries cannot keep up at this rate with {a.destinations} destination(s); pass "
                         f"--server-args '--notification-rate N --notification-burst N'"
                         + (f" or --destinations {math.ceil(a.rate / (0.8 * DESTINATION_RATE))}"
                            if a.destinations == 1 else ""))
            log("note: " + notes[-1])

        n_total = max(1, int(round(a.rate * (a.warmup + a.duration))))
        n_warm = int(round(a.rate * a.warmup))
        procs = max(1, min(a.procs, n_total))
        wids = [d["workflow_id"] for d in dests]
        cfgs = [{"index": k, "procs": procs, "rate": float(a.rate), "n_total": n_total, "target": f"127.0.0.1:{port}",
                 "token": token, "workflows": wids, "gen_dir": a.gen_dir, "channels": 1,
                 "max_inflight": 5000, "call_timeout": 30.0} for k in range(procs)]
        log(f"phase A: {a.rate:g} failing executions/s for {a.warmup:g} + {a.duration:g} s ({n_total} executions, "
            f"{n_warm} in the warm-up) on {len(wids)} workflow(s), {procs} client processes")
        m0 = scrape(port)
        watch = bx.CpuWatch(server.pid)
        sink_cpu0 = sink.count()[2]
        poll = Poller(port, sink)
        start_at, results = run_clients(cfgs, timeout=(a.warmup + a.duration) * 3 + 120, on_start=watch.start)
        t_sent = time.monotonic()
        accepted = sum(r["accepted"] for r in results)
        log(f"phase A: {accepted}/{n_total} accepted; waiting for executions and notifications "
            f"(at most {a.delivery_timeout:g} s)")

        # Wait: nothing in flight and every execution's notification at the sink; or the outbox empty
        # (a notification that is dead, or an execution that did not fail, sends nothing more).
        finished, quiet_since, last_log = None, None, 0.0
        while time.monotonic() - t_sent < a.delivery_timeout:
            if not server.alive():
                break
            row = poll.sample()
            inflight = row.get("in_flight")
            if inflight == 0 and (row.get("sink") or 0) >= accepted:
                finished = "all"
                break
            if inflight == 0 and row.get("outbox_pending") == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 4.5:  # weft_outbox_pending is sampled every 2 s
                    finished = "outbox empty"
                    break
            else:
                quiet_since = None
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                log(f"  in flight {inflight}, outbox pending {row.get('outbox_pending')}, "
                    f"sink {row.get('sink')}/{accepted}")
            time.sleep(0.5)
        res["wait_s"] = time.monotonic() - t_sent
        res["wait_end"] = finished or ("server died" if not server.alive() else "timeout")
        rows = poll.stop()
        m1 = scrape(port)
        dump = sink.dump()
        sink_cpu = dump["cpu_s"] - sink_cpu0
        cpu = watch.stop(sum(r["cpu_s"] for r in results) + sink_cpu)
        res.update(cpu=cpu, rows=rows, sink_cpu_s=sink_cpu, sink_unparsed=dump["bad"])

        # ------------------------------------------------------------ the client: offered rate
        lags = sorted(x for r in results for x in r["lags"])
        firsts = [r["first_send"] for r in results if r["first_send"]]
        lasts = [r["last_send"] for r in results if r["last_send"]]
        span = (max(lasts) - min(firsts)) if firsts and lasts else None
        errors = dict(sum((collections.Counter(r["errors"]) for r in results), collections.Counter()))
        total_s = a.warmup + a.duration
        res.update({
            "scheduled": n_total, "warmup_executions": n_warm, "accepted": accepted, "errors": errors,
            "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
            "unfinished_calls": sum(r["unfinished"] for r in results),
            "send_lag_p50_ms": bx.pct(lags, 0.5) * 1e3 if lags else None,
            "send_lag_p99_ms": bx.pct(lags, 0.99) * 1e3 if lags else None,
            "send_lag_max_ms": lags[-1] * 1e3 if lags else None,
            "send_span_s": span,
            "offered_per_s": (len(lags) - 1) / span if span and len(lags) > 1 else None,
            "client_cpu_s": sum(r["cpu_s"] for r in results),
            "client_cpu_pct_per_proc": [round(100 * r["cpu_s"] / r["wall_s"]) for r in results if r["wall_s"] > 0],
        })
        res["client_behind"] = bool(lags) and (res["send_lag_max_ms"] > max(100.0, 5e3 / a.rate)
                                               and (span or 0) > total_s * 1.02 + 0.05)

        # ------------------------------------------------------------ the executions, from the server
        E = target.pb.Execution
        statuses, exec_wf, failed_ids = collections.Counter(), {}, set()
        sched_of = {eid: i for r in results for i, eid in r["ids"]}
        for wid in wids:
            for e in target.list_all(wid):
                if e.execution_id not in sched_of:
                    continue  # not one of ours (none expected)
                name = E.Status.Name(e.status)
                statuses[name] += 1
                exec_wf[e.execution_id] = wid
                if e.status == E.Failed:
                    failed_ids.add(e.execution_id)
        res["statuses"] = dict(statuses)
        res["listed"] = len(exec_wf)
        res["not_listed"] = len(set(sched_of) - set(exec_wf))

        # ------------------------------------------------------------ the deliveries, from the API
        by_state = collections.Counter()
        api_lat, api_ids = [], set()
        for d in dests:
            for state in ("delivered", "pending", "dead", "skipped"):
                rows_ = list_deliveries(port, token, d["workflow_id"], d["subscription_id"], state)
                by_state[state] += len(rows_)
                if state == "delivered":
                    for x in rows_:
                        api_ids.add(x["id"])
                        c, dl = rfc3339(x.get("createdAt")), rfc3339(x.get("deliveredAt"))
                        if c is not None and dl is not None:
                            api_lat.append(dl - c)
                elif rows_ and state in ("dead", "pending") and "api_example" not in res:
                    x = rows_[0]
                    res["api_example"] = {"state": state, "id": x.get("id"), "attempts": x.get("attempts"),
                                          "lastError": x.get("lastError")}
        res["api_states"] = dict(by_state)
        res["api_delivered_latency"] = pcts(api_lat)

        # ------------------------------------------------------------ the sink
        recs = parse_records(dump["records"])
        secrets_by_port = {d["port"]: d["secret"] for d in dests}
        first = {}                       # delivery id -> first record
        repeats, retries, bad_sig, unsigned, no_json = 0, 0, 0, 0, 0
        for r in recs:
            h = r["headers"]
            dlv = h.get("x-weft-delivery-id")
            if r["json"] is None or not dlv:
                no_json += 1
                continue
            try:
                if int(h.get("x-weft-attempt", "1")) > 1:
                    retries += 1
            except ValueError:
                pass
            secret = secrets_by_port.get(r["port"])
            if secret:
                sig, ts = h.get("x-weft-signature", ""), h.get("x-weft-timestamp", "")
                want = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + r["body"], hashlib.sha256).hexdigest()
                if not sig:
                    unsigned += 1
                elif not hmac.compare_digest(want, sig):
                    bad_sig += 1
            if dlv in first:
                repeats += 1
            else:
                first[dlv] = r
        notified = {}                    # execution id -> first receipt
        wrong_event, unknown_exec = 0, 0
        for dlv, r in first.items():
            js = r["json"]
            eid = js.get("executionId")
            if js.get("event") != "execution.failed":
                wrong_event += 1
            if eid not in sched_of:
                unknown_exec += 1
                continue
            if eid not in notified or r["t"] < notified[eid]["t"]:
                notified[eid] = r
        per_exec_dupes = len(first) - unknown_exec - len(notified)  # two delivery ids for one execution
        missing = sorted(failed_ids - set(notified))
        not_failed_notified = sum(1 for e in notified if e not in failed_ids)
        res.update({
            "sink_requests": len(recs), "sink_unique": len(first), "sink_repeats": repeats,
            "sink_retries": retries, "sink_bad_signatures": bad_sig, "sink_unsigned": unsigned if not a.unsigned else 0,
            "sink_unparsable": no_json, "sink_wrong_event": wrong_event, "sink_unknown_execution": unknown_exec,
            "sink_second_id_same_execution": per_exec_dupes, "failed": len(failed_ids),
            "missing": len(missing), "missing_examples": missing[:5],
            "notified_not_failed": not_failed_notified,
            "api_ids_not_at_sink": len(api_ids - set(first)),
        })

        # ------------------------------------------------------------ latency (event -> receipt)
        def latencies(pred):
            out, no_at = [], 0
            for eid in failed_ids:
                if not pred(sched_of[eid]):
                    continue
                r = notified.get(eid)
                if r is None:
                    out.append(math.inf)
                    continue
                at = rfc3339((r["json"].get("data") or {}).get("at"))
                if at is None:
                    no_at += 1
                    continue
                out.append(r["t"] - at)
            return out, no_at
        measured, no_at = latencies(lambda i: i >= n_warm)
        everything, _ = latencies(lambda i: True)
        res["latency"] = pcts(measured)
        res["latency_all"] = pcts(everything)
        res["latency_no_at"] = no_at
        ats = [rfc3339((r["json"].get("data") or {}).get("at")) for r in notified.values()]
        res["at_has_ms"] = any(("." in ((r["json"].get("data") or {}).get("at") or "")) for r in notified.values())
        # receipts per second of the run, from the sink
        if notified:
            t_first = min(r["t"] for r in notified.values())
            per_s = collections.Counter(int(r["t"] - start_at) for r in notified.values())
            res["receipts_per_s"] = [per_s.get(s, 0) for s in range(0, max(per_s) + 1)]
            res["last_receipt_after_last_send_s"] = max(r["t"] for r in notified.values()) - (max(lasts) if lasts else t_first)
        ats = [x for x in ats if x is not None]
        if ats:
            res["events_span_s"] = max(ats) - min(ats)

        # ------------------------------------------------------------ the server's view
        dh = bx.histogram_delta(m0, m1, "weft_notification_delivery_seconds", channel="webhook")
        res.update({
            "server_delivery_n": bx.histogram_count(dh),
            "server_delivery_p50_s": bx.histogram_quantile(0.5, dh),
            "server_delivery_p99_s": bx.histogram_quantile(0.99, dh),
            "server_delivered": bx.metric_delta(m0, m1, "weft_notifications_delivered_total", channel="webhook"),
            "server_queued": bx.metric_delta(m0, m1, "weft_notifications_queued_total", channel="webhook"),
            "server_attempts_failed": bx.metric_delta(m0, m1, "weft_notification_attempts_failed_total"),
            "server_dead": bx.metric_delta(m0, m1, "weft_notifications_dead_lettered_total"),
            "server_finished": bx.metric_delta(m0, m1, "weft_executions_finished_total"),
            "server_failed": bx.metric_delta(m0, m1, "weft_executions_finished_total", status="Failed"),
            "outbox_pending_max": max((r.get("outbox_pending") or 0 for r in rows), default=None),
            "outbox_oldest_max_s": max((r.get("oldest_age") or 0 for r in rows), default=None),
            "in_flight_max": max((r.get("in_flight") or 0 for r in rows), default=None),
        })
        res["server_cpu_s"] = cpu.get("server_cpu_s")
        res["server_cpu_us_per_exec"] = (res["server_cpu_s"] * 1e6 / accepted) if res["server_cpu_s"] and accepted else None
        res["contended"] = contended(cpu, a)
        nprob, firstp = server.log_problems()
        res["server_log_problems"], res["server_log_first"] = nprob, firstp

        # ------------------------------------------------------------ verdict A
        if accepted != n_total or errors or res["unfinished_calls"]:
            reasons.append(f"not every execute accepted: {accepted}/{n_total}"
                           + (f", errors {errors} (first: {res['first_error']})" if errors else "")
                           + (f", {res['unfinished_calls']} unanswered" if res["unfinished_calls"] else ""))
        if res["client_behind"]:
            reasons.append(f"the client fell behind its schedule (send lag max {res['send_lag_max_ms']:.0f} ms, sent "
                           f"over {span:.2f} s for {total_s:g} s): rate {a.rate:g}/s was not offered")
        off = res["offered_per_s"]
        if off is None or abs(off - a.rate) > RATE_TOLERANCE * a.rate:
            reasons.append(f"offered rate {'n/a' if off is None else '%.0f/s' % off} is not within "
                           f"{RATE_TOLERANCE * 100:.0f} % of {a.rate:g}/s")
        bad = {k: v for k, v in statuses.items() if k != "Failed"}
        if bad or res["not_listed"]:
            reasons.append("not every execution Failed: " + ", ".join(f"{k} {v}" for k, v in sorted(bad.items()))
                           + (f", {res['not_listed']} not found" if res["not_listed"] else ""))
        if missing:
            reasons.append(f"{len(missing)} of {len(failed_ids)} failed executions' notifications never reached the "
                           f"sink (waited {res['wait_s']:.0f} s: {res['wait_end']})")
        if len(first) - unknown_exec != len(failed_ids) or not_failed_notified:
            reasons.append(f"unique notifications {len(first)} != failed executions {len(failed_ids)}"
                           + (f" ({unknown_exec} for unknown executions)" if unknown_exec else "")
                           + (f" ({not_failed_notified} for executions that did not fail)" if not_failed_notified else ""))
        if bad_sig or res["sink_unsigned"]:
            reasons.append(f"signatures: {bad_sig} wrong, {res['sink_unsigned']} missing")
        if no_json or wrong_event:
            reasons.append(f"{no_json} requests without a JSON body or delivery id, {wrong_event} with another event")
        if by_state.get("delivered", 0) != len(failed_ids) or any(
                by_state.get(s, 0) for s in ("pending", "dead", "skipped")):
            reasons.append(f"the API lists deliveries {dict(by_state)} (expected {len(failed_ids)} delivered, "
                           f"none pending, dead or skipped)")
        p99 = res["latency"].get("p99")
        if p99 is None:
            reasons.append("no latency measured")
        elif not p99 * 1000 < a.max_p99_ms:
            reasons.append(f"event-to-delivery p99 {fmt_ms(p99)} >= {a.max_p99_ms:g} ms")
        if no_at:
            reasons.append(f"{no_at} notifications without a readable data.at")
    except (SystemExit, Exception) as e:  # noqa: BLE001
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        reasons.append("aborted: " + (str(e) if isinstance(e, (SystemExit, RuntimeError)) else traceback.format_exc()).strip())
    finally:
        if sink is not None:
            sink.stop()
        if server is not None:
            died = server.died()
            if died:
                reasons.append(died)
            server.stop()
            res["server_stop"] = server.exit_note
        if not a.keep_data and not os.environ.get("DATA_DIR"):
            shutil.rmtree(data_dir, ignore_errors=True)
    return res


# ============================================================== phase B: the knee

def knee_run(a, weft_bin, out, url=None):
    """One bench-executions.py ramp; its report (JSON) and the command."""
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.json"
    cmd = [sys.executable, str(HERE / "bench-executions.py"), "--rates", a.knee_rates,
           "--duration", f"{a.knee_duration:g}", "--low-pct", "0", "--mid-pct", "0", "--json", str(report)]
    if a.store_sync:
        cmd += ["--store-sync", a.store_sync]
    if a.server_args:
        cmd += ["--server-args", a.server_args]
    if url:
        cmd += ["--notify-webhook", url]
    env = {**os.environ, "WEFT_BIN": weft_bin, "OUT_DIR": str(out / "logs")}
    env.pop("DATA_DIR", None)
    shown = f"WEFT_BIN={shlex.quote(weft_bin)} " + shlex.join(cmd)
    log(f"phase B: {shown}")
    timeout = 60 * (len(a.knee_rates.split()) + 2) * max(1, a.knee_duration / 10) + 300
    t0 = time.monotonic()
    with open(out / "run.log", "w") as f:
        try:
            rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[bench-notify] timed out after {timeout:.0f} s\n")
            rc = 124
    res = {"command": shown, "rc": rc, "log": str(out / "run.log"), "wall_s": time.monotonic() - t0,
           "notify": bool(url)}
    if not report.exists():
        res["error"] = f"no report (exit {rc}); see {out / 'run.log'}"
        return res
    data = json.loads(report.read_text())
    s = data.get("summary", {})
    res["knee"] = s.get("max_rate")
    res["first_fail_rate"], res["first_fail_reason"] = s.get("first_fail_rate"), s.get("first_fail_reason")
    res["client_limited"] = s.get("client_limited")
    res["steps"] = [{k: r.get(k) for k in ("rate", "sustained", "verdict", "accepted", "completed_per_s",
                                           "lat_p50_ms", "lat_p99_ms", "server_cpu_us_per_exec", "statuses",
                                           "workflow_id", "subscription_id", "contended", "other_cores",
                                           "drain_s")} for r in data.get("runs", [])]
    res["top_of_rates"] = res["knee"] is not None and res["first_fail_rate"] is None
    if res["knee"] is not None:
        row = next((r for r in res["steps"] if r["sustained"] and float(r["rate"]) == float(res["knee"])), None)
        res["cpu_us_at_knee"] = row and row["server_cpu_us_per_exec"]
    if rc != 0 and res["knee"] is None:
        res["error"] = f"bench-executions.py exited {rc}: {data.get('failure') or s.get('first_fail_reason')}"
    res["failure"] = data.get("failure")
    return res


def knee_notifications(run, records):
    """Per step of a notified ramp: notifications received for its workflow and their latency."""
    by_wf = collections.defaultdict(list)
    ids = set()
    for r in records:
        js = r["json"]
        if js is None:
            continue
        dlv = r["headers"].get("x-weft-delivery-id")
        if dlv in ids:
            continue
        ids.add(dlv)
        at = rfc3339((js.get("data") or {}).get("at"))
        by_wf[js.get("workflowId")].append(None if at is None else r["t"] - at)
    out = []
    for st in run.get("steps", []):
        lat = [x for x in by_wf.get(st["workflow_id"], []) if x is not None]
        completed = (st.get("statuses") or {}).get("Completed", 0)
        out.append({"rate": st["rate"], "completed": completed, "received": len(by_wf.get(st["workflow_id"], [])),
                    "latency": pcts(lat)})
    return out


def phase_knee(a, weft_bin, out_dir, rep):
    res = {"reasons": [], "notes": [], "runs": []}
    rep["knee"] = res
    sink = None
    try:
        sink = Sink(1)
        url = f"http://127.0.0.1:{sink.ports[0]}/knee"
        res["url"] = url
        for i in range(a.knee_rounds):
            order = ("plain", "notify") if i % 2 == 0 else ("notify", "plain")
            for variant in order:
                r = knee_run(a, weft_bin, Path(out_dir) / f"knee-{i + 1}-{variant}",
                             url if variant == "notify" else None)
                r["variant"], r["round"] = variant, i + 1
                res["runs"].append(r)
                log(f"phase B round {i + 1} {variant}: knee {r.get('knee')}/s"
                    + (f", next step: {r['first_fail_reason']}" if r.get("first_fail_reason") else "")
                    + (f" ({r['error']})" if r.get("error") else ""))
        dump = sink.dump()
        recs = parse_records(dump["records"])
        for r in res["runs"]:
            if r["variant"] == "notify":
                r["notifications"] = knee_notifications(r, recs)
    except (SystemExit, Exception) as e:  # noqa: BLE001
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        res["reasons"].append("aborted: " + (str(e) if isinstance(e, (SystemExit, RuntimeError))
                                             else traceback.format_exc()).strip())
    finally:
        if sink is not None:
            sink.stop()
    for r in res["runs"]:
        if r.get("error"):
            res["reasons"].append(f"{r['variant']} ramp (round {r['round']}): {r['error']}")
    knees = {v: [r.get("knee") for r in res["runs"] if r["variant"] == v] for v in ("plain", "notify")}
    med = {v: (statistics.median([k or 0 for k in ks]) if ks else None) for v, ks in knees.items()}
    res["knees"], res["median"] = knees, med
    if med["plain"]:
        res["ratio"] = (med["notify"] or 0) / med["plain"]
        if res["ratio"] < 1 - a.max_knee_drop:
            res["reasons"].append(f"knee with notifications {med['notify'] or 0:g}/s is {res['ratio'] * 100:.1f} % of "
                                  f"the plain knee {med['plain']:g}/s (< {100 * (1 - a.max_knee_drop):g} %)")
    elif res["runs"]:
        res["ratio"] = None
        res["reasons"].append("the plain ramp sustained none of --knee-rates: no knee to compare with (lower the rates)")
    if any(r.get("top_of_rates") and r["variant"] == "plain" for r in res["runs"]):
        res["notes"].append("the plain ramp sustained the top of --knee-rates: its knee may be higher (add rates)")
    if any(r.get("client_limited") for r in res["runs"]):
        res["notes"].append("a ramp's failing step had the client behind its schedule: the limit found may be the client's")
    if any(st.get("contended") for r in res["runs"] for st in r.get("steps", [])):
        res["notes"].append("some ramp steps were contended (other load on the machine)")
    behind = [(n["received"], n["completed"]) for r in res["runs"] for n in r.get("notifications", [])]
    if any(got < want for got, want in behind):
        res["notes"].append(
            f"the notified ramps delivered {sum(g for g, _ in behind)} of {sum(w for _, w in behind)} notifications "
            f"before their server stopped: one destination takes at most --notification-rate deliveries/s (the "
            "server's per-destination rate limit), so above that the rest waited in the outbox")
    rates = sorted(float(x) for x in a.knee_rates.split())
    gaps = [lo / hi for lo, hi in zip(rates, rates[1:])]
    if gaps and min(gaps) < 1 - a.max_knee_drop:
        res["notes"].append(f"--knee-rates has steps more than {100 * a.max_knee_drop:g} % apart: a knee one step "
                            "lower fails the verdict even if the true drop is smaller")
    return res


# ============================================================== report

def print_delivery(d, a):
    try:
        _print_delivery(d, a)
    except (KeyError, TypeError) as e:  # an aborted phase has only some figures
        print(f"  (incomplete: {e!r})")


def _print_delivery(d, a):
    print()
    print(f"Phase A: {a.rate:g} failing executions/s, {a.warmup:g} s warm-up + {a.duration:g} s measured, "
          f"{a.destinations} destination(s) ({'unsigned' if a.unsigned else 'signed'} webhooks), {a.procs} client "
          f"processes (gRPC ExecuteWorkflow, open loop)")
    if d.get("server_command"):
        print(f"  server: {d['server_command']}")
    if "latency" not in d:
        return
    print(f"  executions: {d['accepted']}/{d['scheduled']} accepted"
          + (f", errors {d['errors']} (first: {d['first_error']})" if d["errors"] else "")
          + f"; offered {d['offered_per_s'] or 0:.0f}/s; send lag p50/p99/max "
          f"{d['send_lag_p50_ms'] or 0:.1f}/{d['send_lag_p99_ms'] or 0:.1f}/{d['send_lag_max_ms'] or 0:.1f} ms"
          + ("; CLIENT BEHIND" if d["client_behind"] else ""))
    print(f"  by final status (API): {d['statuses']}; {d['failed']} failed"
          + (f", {d['not_listed']} not found" if d["not_listed"] else ""))
    print(f"  sink: {d['sink_requests']} requests, {d['sink_unique']} unique delivery ids, {d['sink_repeats']} repeats "
          f"(same id again), {d['sink_retries']} retries (X-Weft-Attempt > 1)"
          + ("" if a.unsigned else f", signatures: {d['sink_bad_signatures']} wrong, {d['sink_unsigned']} missing")
          + f"; missing {d['missing']} of {d['failed']} failed executions"
          + (f" (e.g. {', '.join(d['missing_examples'])})" if d["missing"] else "")
          + (f"; {d['sink_unknown_execution']} for unknown executions" if d["sink_unknown_execution"] else "")
          + (f"; {d['sink_second_id_same_execution']} extra ids for one execution" if d["sink_second_id_same_execution"] else ""))
    print(f"  deliveries listed by the API: {d['api_states']}"
          + (f"; e.g. {d['api_example']}" if d.get("api_example") else ""))
    print(f"  waited {d['wait_s']:.1f} s after the last submission ({d['wait_end']}); last notification "
          f"{d.get('last_receipt_after_last_send_s', 0):.2f} s after the last submission")
    print(f"  event-to-delivery (sink receive time - data.at), measured window, n={d['latency'].get('n', 0)}: "
          f"**{fmt_p(d['latency'])}**")
    print(f"  all executions (warm-up included), n={d['latency_all'].get('n', 0)}: {fmt_p(d['latency_all'])}")
    print(f"  server: weft_notification_delivery_seconds{{webhook}} n={d['server_delivery_n'] or 0:.0f} p50 "
          f"{fmt_ms(d['server_delivery_p50_s'])} p99 {fmt_ms(d['server_delivery_p99_s'])} (bucket interpolation); "
          f"API deliveredAt - createdAt: {fmt_p(d['api_delivered_latency'])}")
    print(f"  server counters: queued +{d['server_queued'] or 0:.0f}, delivered +{d['server_delivered'] or 0:.0f}, "
          f"failed attempts +{d['server_attempts_failed'] or 0:.0f}, dead +{d['server_dead'] or 0:.0f}; executions "
          f"finished +{d['server_finished'] or 0:.0f} (Failed +{d['server_failed'] or 0:.0f}); in flight max "
          f"{d['in_flight_max']}; outbox pending max {d['outbox_pending_max'] or 0:.0f}, oldest age max "
          f"{d['outbox_oldest_max_s'] or 0:.1f} s")
    rows = d.get("rows") or []
    if rows:
        step = max(1, len(rows) // 20)
        print("  by second (t: in flight / outbox pending / sink unique): " + ", ".join(
            f"{r['t']:.0f}: {r.get('in_flight', '?')}/{'?' if r.get('outbox_pending') is None else int(r['outbox_pending'])}"
            f"/{r.get('sink')}" for r in rows[::step]))
    if d.get("receipts_per_s"):
        rps = d["receipts_per_s"]
        print("  notifications received per second (from the start): " + " ".join(str(x) for x in rps[:60])
              + (" …" if len(rps) > 60 else ""))
    cpu = d["cpu"]
    print(f"  CPU: server {d['server_cpu_s'] or 0:.1f} s ({d['server_cpu_us_per_exec'] or 0:.0f} µs per execution), "
          f"clients {d['client_cpu_s']:.1f} s ({'/'.join(str(x) for x in d['client_cpu_pct_per_proc'])} % per process), "
          f"sink {d['sink_cpu_s']:.1f} s, over {cpu['wall_s']:.1f} s; other load "
          f"{'n/a' if cpu.get('other_cores') is None else '%.2f cores' % cpu['other_cores']}"
          + ("; CONTENDED" if d["contended"] else ""))
    if d.get("server_log_problems"):
        print(f"  server log: {d['server_log_problems']} warning/error lines, first: {d['server_log_first'][:2]}")


def print_knee(k, a):
    print()
    print(f"Phase B: the executions/s knee (bench-executions.py ramp, 3-task noop, rates {a.knee_rates}, "
          f"{a.knee_duration:g} s per step), plain and with a webhook notification per execution ({k.get('url')})")
    print()
    print("| round | variant | knee | next step | server CPU/exec at the knee | wall |")
    print("|---:|---|---:|---|---:|---:|")
    for r in k["runs"]:
        print(f"| {r['round']} | {r['variant']} | {'none' if r.get('knee') is None else format(r['knee'], 'g') + '/s'} | "
              f"{(str(r['first_fail_rate']) + '/s: ' + r['first_fail_reason']) if r.get('first_fail_rate') else ('top of the rates' if r.get('top_of_rates') else (r.get('error') or 'n/a'))} | "
              f"{'n/a' if not r.get('cpu_us_at_knee') else '%.0f µs' % r['cpu_us_at_knee']} | {r['wall_s']:.0f} s |")
    for r in k["runs"]:
        print(f"  {r['variant']} (round {r['round']}): {r['command']}")
    for r in k["runs"]:
        if r.get("notifications"):
            print(f"  notifications of the {r['variant']} ramp (round {r['round']}), per step: " + "; ".join(
                f"{n['rate']}/s: {n['received']}/{n['completed']} received, p50/p99 "
                f"{fmt_ms(n['latency'].get('p50'))}/{fmt_ms(n['latency'].get('p99'))}" for n in r["notifications"]))
    med = k.get("median") or {}
    if med.get("plain"):
        print(f"Knee: plain {med['plain']:g}/s, with notifications {med.get('notify') or 0:g}/s -> "
              f"**{100 * (k.get('ratio') or 0):.1f} %** (target >= {100 * (1 - a.max_knee_drop):g} %)"
              + (f"; medians of {a.knee_rounds} rounds" if a.knee_rounds > 1 else ""))


def report(rep, a, rc):
    print()
    print(f"Weft notifications benchmark, {rep['date']}, {platform.machine()}, {os.cpu_count()} cores, {rep['weft_bin']}")
    print(f"Command: {rep['command']}")
    d, k = rep.get("delivery"), rep.get("knee")
    if d:
        print_delivery(d, a)
    if k:
        print_knee(k, a)
    print()
    for ph in (d, k):
        if ph:
            if ph.get("server_stop") and "exit status 0" not in ph["server_stop"]:
                print(f"Server: {ph['server_stop']}")
            for n in ph.get("notes", []):
                print(f"Note: {n}")
    print(f"Logs: {rep['out_dir']}")
    if d:
        crit = (f"{a.rate:g}/s offered, every failed execution notified, API: all delivered, p99 < {a.max_p99_ms:g} ms")
        print(f"Phase A: {'PASS' if not d['reasons'] else 'FAIL'} ({crit})"
              + ("" if not d["reasons"] else ": " + "; ".join(d["reasons"])))
    if k:
        crit = f"knee with notifications >= {100 * (1 - a.max_knee_drop):g} % of the plain knee"
        print(f"Phase B: {'PASS' if not k['reasons'] else 'FAIL'} ({crit})"
              + ("" if not k["reasons"] else ": " + "; ".join(k["reasons"])))
    reasons = (d or {}).get("reasons", []) + (k or {}).get("reasons", [])
    crit = " and ".join(x for x in (
        f"phase A: {a.rate:g}/s, every notification delivered, p99 < {a.max_p99_ms:g} ms" if d else "",
        f"phase B: knee lowered by < {100 * a.max_knee_drop:g} %" if k else "") if x)
    if rc == 0:
        print(f"VERDICT: PASS ({crit})")
    else:
        print(f"VERDICT: FAIL ({crit}): " + "; ".join(reasons))


# ============================================================== self-test

def self_test():
    assert _header(b"post / http/1.1\r\ncontent-length: 12\r\nx-a: b", b"content-length:") == b"12"
    assert _header(b"post / http/1.1\r\nx-a: b", b"content-length:") is None
    assert _chunked(bytearray(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\nNEXT"), 0) == (b"hello world", 30)
    assert _chunked(bytearray(b"5\r\nhel"), 0) is None
    assert rfc3339("2026-12-05T09:12:33.135Z") == datetime.datetime(2026, 12, 5, 9, 12, 33, 135000,
                                                                     tzinfo=datetime.timezone.utc).timestamp()
    assert rfc3339("") is None and rfc3339("junk") is None
    p = pcts([3, 1, 2, math.inf])
    assert p["p50"] == 2 and math.isinf(p["p99"]) and p["n"] == 4
    # The sink over real sockets: content-length, chunked, keep-alive with two requests in one packet, close.
    import socket
    sink = Sink(2)
    try:
        body = json.dumps({"deliveryId": "dlv_1", "executionId": "exe_1", "event": "execution.failed",
                           "data": {"at": "2026-12-05T09:12:33.135Z"}}).encode()
        req = lambda dlv, extra=b"": (b"POST /hook/0 HTTP/1.1\r\nHost: x\r\nX-Weft-Delivery-Id: " + dlv
                                      + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra
                                      + b"\r\n" + body)
        with socket.create_connection(("127.0.0.1", sink.ports[0])) as c:
            c.sendall(req(b"dlv_1") + req(b"dlv_2"))          # two in one packet (keep-alive)
            got = b""
            while got.count(b"200 OK") < 2:
                got += c.recv(4096)
            chunked = (b"POST /hook/1 HTTP/1.1\r\nX-Weft-Delivery-Id: dlv_3\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + format(len(body), "x").encode() + b"\r\n" + body + b"\r\n0\r\n\r\n")
            c.sendall(chunked[:30])
            time.sleep(0.05)
            c.sendall(chunked[30:])
            while got.count(b"200 OK") < 3:
                got += c.recv(4096)
        with socket.create_connection(("127.0.0.1", sink.ports[1])) as c:
            c.sendall(req(b"dlv_1", b"Connection: close\r\n"))
            got = b""
            while True:
                x = c.recv(4096)
                if not x:
                    break
                got += x
            assert b"connection: close" in got, got
        n, uniq, _ = sink.count()
        assert (n, uniq) == (4, 3), (n, uniq)
        recs = parse_records(sink.dump()["records"])
        assert [r["headers"]["x-weft-delivery-id"] for r in recs] == ["dlv_1", "dlv_2", "dlv_3", "dlv_1"]
        assert all(r["json"]["executionId"] == "exe_1" for r in recs) and recs[3]["port"] == sink.ports[1]
    finally:
        sink.stop()
    print("self-test: header and chunked parsing, RFC 3339, percentiles, the sink over sockets OK")
    return 0


# ============================================================== main

def parse_args(argv=None):
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Step-9 benchmark: notifications of failing executions; the knee with "
                                             "notifications.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    g = ap.add_argument_group("phase A (delivery)")
    g.add_argument("--rate", type=float, default=None, help="failing executions per second (default 1000)")
    g.add_argument("--duration", type=float, default=None, help="measured seconds (default 20)")
    g.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first, same rate (default 2)")
    g.add_argument("--destinations", type=int, default=1,
                   help="workflows, each with its own subscription and receiver port; executions go round-robin "
                        "(default 1)")
    g.add_argument("--baseline", action="store_true",
                   help="the same load with a subscription whose filter never matches (no notifications): "
                        "the engine's own figures to compare with (the verdict fails: nothing is delivered)")
    g.add_argument("--unsigned", action="store_true",
                   help="subscriptions with a plain destination URL instead of a signed webhook integration")
    g.add_argument("--delivery-timeout", type=float, default=None,
                   help="seconds after the last submission to wait for every notification (default 120)")
    g.add_argument("--max-p99-ms", type=float, default=1000.0, help="event-to-delivery p99 bound, ms (default 1000)")
    g.add_argument("--procs", type=int, default=int(env("PROCS", os.cpu_count() or 2)),
                   help="client processes (default: cores)")
    g = ap.add_argument_group("phase B (knee)")
    g.add_argument("--knee-rates", default=None, help=f'bench-executions.py --rates (default "{DEFAULT_KNEE_RATES}")')
    g.add_argument("--knee-duration", type=float, default=None, help="seconds per ramp step (default 10)")
    g.add_argument("--knee-rounds", type=int, default=1,
                   help="pairs of ramps (plain, notified), the order alternating; medians (default 1)")
    g.add_argument("--max-knee-drop", type=float, default=0.10,
                   help="the knee with notifications must be >= (1 - this) x the plain one (default 0.10)")
    g = ap.add_argument_group("what to run")
    g.add_argument("--skip-delivery", action="store_true", help="no phase A")
    g.add_argument("--skip-knee", action="store_true", help="no phase B")
    g.add_argument("--quick", action="store_true",
                   help="check the script: rate 100/s, 1 + 3 s, knee rates \"50 100\" of 3 s (options given win)")
    g = ap.add_argument_group("server")
    g.add_argument("--store-sync", choices=("full", "normal"), default=env("SYNC"),
                   help="`serve --store-sync` (default: the server's, full)")
    g.add_argument("--server-args", default=env("WEFT_ARGS", ""), help="more `serve` arguments, one string "
                                                                        "(both phases)")
    g.add_argument("--keep-data", action="store_true", default=env("KEEP_DATA") == "1")
    g.add_argument("--contended-cores", type=float, default=0.25)
    g.add_argument("--json", help="also write every figure to this JSON file")
    g.add_argument("--self-test", action="store_true", help="check the sink and the parsing, no server")
    a = ap.parse_args(argv)
    defaults = {"rate": 1000.0, "duration": 20.0, "warmup": 2.0, "delivery_timeout": 120.0,
                "knee_rates": DEFAULT_KNEE_RATES, "knee_duration": 10.0}
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, QUICK[k] if a.quick else v)
    if a.rate <= 0 or a.duration <= 0 or a.warmup < 0 or a.destinations < 1 or a.knee_rounds < 1:
        ap.error("--rate, --duration, --destinations and --knee-rounds must be positive, --warmup >= 0")
    try:
        if any(float(x) <= 0 for x in a.knee_rates.replace(",", " ").split()) or not a.knee_rates.split():
            raise ValueError
    except ValueError:
        ap.error(f"--knee-rates: not positive numbers: {a.knee_rates!r}")
    a.knee_rates = " ".join(a.knee_rates.replace(",", " ").split())
    if a.skip_delivery and a.skip_knee:
        ap.error("--skip-delivery and --skip-knee: nothing to run")
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.self_test:
        return self_test()
    command = shlex.join([sys.executable] + sys.argv)
    envs = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in
                    ("WEFT_BIN", "DATA_DIR", "OUT_DIR", "WEFT_ARGS", "SYNC", "KEEP_DATA", "PROCS") if k in os.environ)
    full_command = (envs + " " if envs else "") + command
    log(f"command: {full_command}")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    weft_bin = os.environ.get("WEFT_BIN", str(REPO / ".build" / "release" / "weft"))
    if not os.access(weft_bin, os.X_OK):
        raise SystemExit(f"no executable at {weft_bin} (swift build -c release, or set WEFT_BIN)")
    help_text = subprocess.run([weft_bin, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    missing = [f for f in ("--plan", "--default-plan", "--egress-allow", "--secrets-key-file") if f not in help_text]
    if missing:
        raise SystemExit(f"{weft_bin} serve has no {', '.join(missing)}")
    out_dir = os.environ.get("OUT_DIR") or tempfile.mkdtemp(prefix="weft-bench-notifications.", dir="/tmp")
    os.makedirs(out_dir, exist_ok=True)
    a.gen_dir = os.path.join(out_dir, "gen")
    from weft_helpers import generate_protos
    generate_protos(Path(a.gen_dir))
    rep = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": full_command,
           "weft_bin": weft_bin, "out_dir": out_dir}
    if not a.skip_delivery:
        phase_delivery(a, weft_bin, out_dir, rep)
    if not a.skip_knee:
        phase_knee(a, weft_bin, out_dir, rep)
    rc = 1 if any(rep.get(ph, {}).get("reasons") for ph in ("delivery", "knee")) else 0
    report(rep, a, rc)
    if a.json:
        if rep.get("delivery"):
            rep["delivery"].pop("rows", None)
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1, default=str)
        print(f"JSON: {a.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
