"""A real Prometheus scrapes a real `weft serve` under a short, varied load;
then every dashboard panel query (dashboards/*.json) and every alerting rule
of dashboards/alerts.yml is evaluated through Prometheus' HTTP API.

* Prometheus (/usr/bin/prometheus, Debian package `prometheus`) runs on a
  free loopback port with scrape_interval and evaluation_interval 1s, job
  `weft` scraping the server's /metrics, and dashboards/alerts.yml as its
  rule file when that file exists.
* The load runs in ROUNDS rounds PERIOD seconds apart, each doing the same
  things (REST and gRPC calls that succeed and fail, executions that
  complete, fail, retry, time out and get cancelled, http tasks against a
  local http.server, delays, an external task leased for 1 s and abandoned
  so that its lease expires and the next round's poll leases it again,
  health checks, a connection that speaks garbage).  Repeating it matters:
  Prometheus' rate() ignores the sample that creates a series, so a series
  must grow after its first scrape to have a rate.
* The workflow named WORKFLOW runs three executions a round through one
  retried http task: one completes at once, one after a retry, one fails
  after its retry (so it has every per-workflow series: statuses, duration,
  cost, task failures `failed` and `retried`).  Before the rounds it gets a
  workflow budget and the load's user's organization an organization
  budget, both far below what the load spends; the server runs with
  `--budget-interval 1` so the weft_budget_* gauges are set during the run.
* Every panel expression (Grafana variables substituted by
  dashboards/check_dashboards.py: `$__rate_interval` -> 1m, which spans the
  whole run; `$workflow` -> WORKFLOW, every other variable -> `.*`) and
  every alert's `annotations.signal` must return a non-empty result of
  finite values; an alert's `expr` must evaluate (empty is fine).
  Every failing query is listed in one assertion message.
* Every loaded rule is healthy, the weft target is up, and a raw scrape of
  /metrics passes `promtool check metrics` (naming lints included).
* Prometheus (with exemplar storage) scrapes /metrics as OpenMetrics, and the
  latency SLI's buckets carry exemplars: the trace ids of sampled requests
  (the server samples every request), each within its bucket.
* The Prometheus blackbox exporter (Debian `prometheus-blackbox-exporter`)
  probes the server with dashboards/blackbox.yml (HTTP /healthz and the gRPC
  health check) under job `weft-probe`, as dashboards/slo.yaml expects: both
  probes pass while it serves, and fail (the probe SLI moves) once the
  server of the downtime test is killed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
import yaml

import weft_helpers as wh
from test_engine_api import Target, closed_port

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
BLACKBOX = Path("/usr/bin/prometheus-blackbox-exporter")
DASHBOARDS = wh.REPO_ROOT / "dashboards"
ALERTS = DASHBOARDS / "alerts.yml"
ROUNDS = 5
PERIOD = 4.0  # seconds between the starts of two load rounds
MIN_SAMPLES = 20  # scrapes of the weft target before the queries run
QUEUE = "prom-ext"
TIMEOUT = 10
FAST_RETRY = {"initialBackoff": "0.05s", "maxBackoff": "0.1s", "jitter": 0}
# The workflow the dashboards' `$workflow` variable selects (Weft / Workflow;
# also the `workflow` filter of Weft / Cost): its label value is the name.
WORKFLOW = "prom analytics"
DASHBOARD_VARS = {"workflow": WORKFLOW}
# Extra flags of the module's api_server (conftest.py): evaluate budgets every
# second, so the weft_budget_* gauges exist well before the queries.
# Tracing on, every request sampled (towards a closed port: the spans are
# lost, their ids are not): the tracing pipeline's counters exist, and the
# latency SLI's buckets carry exemplars with the requests' trace ids.
API_SERVER_EXTRA_ARGS = ("--budget-interval", "1", "--otel-endpoint", f"http://127.0.0.1:{closed_port()}",
                         "--trace-sampler", "always_on")
# Far below one execution's cost: both budgets are over from the first run.
BUDGET = {"monthlyLimitUsd": 0.000001, "timeZone": "UTC"}
# Metric names in an expression (label names such as grpc_service or
# http_route do not match these prefixes).
_METRIC_RE = re.compile(r"\b(?:weft|grpc_server|http_server|process)_[A-Za-z0-9_:]*")
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')


def _load_check_dashboards():
    spec = importlib.util.spec_from_file_location("check_dashboards", DASHBOARDS / "check_dashboards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------


class Prometheus:
    """One Prometheus process on a free loopback port, scraping `target`."""

    def __init__(self, base: Path, target: str, rule_files=(), blackbox: "Blackbox | None" = None):
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = base / "prometheus.yml"
        self.log_path = base / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "weft", "metrics_path": "/metrics",
                                "static_configs": [{"targets": [target]}]}]
            + (blackbox.scrape_configs(target) if blackbox else []),
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={self.config_path}", f"--storage.tsdb.path={base / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info", "--enable-feature=exemplar-storage"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(base),
            start_new_session=True)

    def wait_ready(self, timeout: float = 30) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        try:
            wh.wait_until(ready, timeout, 0.1, message="prometheus /-/ready")
        except (AssertionError, RuntimeError) as exc:
            pytest.fail(f"{exc}\nprometheus log:\n{self.log_tail()}", pytrace=False)

    def api(self, path: str, **params) -> dict:
        """GET or (with params) POST /api/v1/<path>; the JSON body, also for 4xx/5xx."""
        data = urllib.parse.urlencode(params).encode() if params else None
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}", data=data, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as err:
            try:
                return json.load(err)
            except ValueError:
                return {"status": "error", "errorType": f"http {err.code}", "error": str(err)}

    def query(self, expr: str, at: float) -> dict:
        return self.api("query", query=expr, time=f"{at:.3f}")

    def last_scrape(self) -> float:
        """When the latest scrape of the weft target started (0 if none yet)."""
        body = self.query('timestamp(up{job="weft"})', time.time())
        result = body.get("data", {}).get("result") or [{"value": [0, "0"]}]
        return float(result[0]["value"][1])

    def scrapes(self) -> int:
        """Scrapes of the weft target in the last minute."""
        body = self.query('count_over_time(up{job="weft"}[1m])', time.time())
        result = body.get("data", {}).get("result") or [{"value": [0, "0"]}]
        return int(float(result[0]["value"][1]))

    def log_tail(self, limit: int = 8000) -> str:
        with open(self.log_path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - limit))
            return ("..." if size > limit else "") + f.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class Blackbox:
    """The Prometheus blackbox exporter with dashboards/blackbox.yml on a free
    loopback port: the black-box probes of slo.yaml's `probes` SLI."""

    JOB = "weft-probe"

    def __init__(self, base: Path):
        self.port = closed_port()
        self.log_path = base / "blackbox.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(BLACKBOX), f"--config.file={DASHBOARDS / 'blackbox.yml'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the blackbox exporter exited with code {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/healthy", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wh.wait_until(ready, 20, 0.1, message="the blackbox exporter's /-/healthy")

    def scrape_configs(self, target: str) -> list:
        """One job per module, as dashboards/blackbox.yml's header shows."""
        out = []
        for module, probed in (("weft_http", f"http://{target}/healthz"), ("weft_grpc", target)):
            out.append({
                "job_name": f"{self.JOB}-{module}", "metrics_path": "/probe", "params": {"module": [module]},
                "static_configs": [{"targets": [probed]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__address__"], "target_label": "instance"},
                    {"target_label": "module", "replacement": module},
                    {"target_label": "job", "replacement": self.JOB},
                    {"target_label": "__address__", "replacement": f"127.0.0.1:{self.port}"},
                ]})
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def require_tools() -> None:
    missing = [str(p) for p in (PROMETHEUS, PROMTOOL, BLACKBOX) if not p.exists()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: install the Debian packages `prometheus` and "
                    "`prometheus-blackbox-exporter` (scripts/install-deps.sh test)", pytrace=False)


@pytest.fixture(scope="module")
def prometheus(api_server, tmp_path_factory):
    require_tools()
    base = tmp_path_factory.mktemp("prometheus")
    blackbox = Blackbox(base)
    try:
        blackbox.wait_ready()
        prom = Prometheus(base, api_server.target, [ALERTS] if ALERTS.exists() else [], blackbox)
        try:
            prom.wait_ready()
            yield prom
        finally:
            prom.stop()
    finally:
        blackbox.stop()


@contextlib.contextmanager
def prometheus_log_on_failure(node, prom: Prometheus):
    try:
        yield
    except BaseException:
        node.add_report_section("call", "prometheus log (tail)", prom.log_tail())
        raise


# ---------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------


class Load:
    """The workflows, users and stubs the rounds use; `round()` runs one round."""

    def __init__(self, server, chan, v1, protos, target: Target):
        self.server, self.v1, self.target = server, v1, target
        self.anon = wh.RestClient(server)
        self.user = wh.register_and_login(server, "Prom Load")
        self.md = wh.grpc_auth(self.user)
        self.users = v1.users_pb2_grpc.UserServiceStub(chan)
        self.workflows = v1.workflows_pb2_grpc.WorkflowServiceStub(chan)
        self.executions = v1.executions_pb2_grpc.ExecutionServiceStub(chan)
        self.workers = v1.workers_pb2_grpc.WorkerServiceStub(chan)
        self.health = protos.health_pb2_grpc.HealthStub(chan)
        self.health_req = protos.health_pb2.HealthCheckRequest()
        self.unknown = chan.unary_unary("/weft.v1.NoSuchService/Nothing")
        self.ok = self.create([
            {"key": "a", "name": "A", "action": "noop", "config": {"output": {"n": 1}}},
            {"key": "say", "name": "Say", "action": "log", "config": {"message": "n={{ tasks.a.output.n }}"},
             "dependsOn": ["a"]},
            {"key": "pause", "name": "Pause", "action": "delay", "config": {"duration": "0.2s"}, "dependsOn": ["a"]},
            {"key": "call", "name": "Call", "action": "http", "config": {"url": target.url("/echo/prom")}},
            {"key": "shape", "name": "Shape", "action": "transform", "dependsOn": ["say", "pause", "call"],
             "config": {"output": {"reply": "{{ tasks.call.output.body.reply }}"}}},
        ])
        self.http_fail = self.create([{"key": "down", "name": "Down", "action": "http",
                                       "config": {"url": target.url("/status/503")},
                                       "retry": {"maxAttempts": 2, "retryableErrors": ["http_5xx"], **FAST_RETRY}}])
        self.template_fail = self.create([{"key": "say", "name": "Say", "action": "log",
                                           "config": {"message": "hello {{ input.who }}"}}])
        self.long = self.create([{"key": "sleepy", "name": "Sleepy", "action": "delay",
                                  "config": {"duration": "5s"}}])
        self.ext = self.create([{"key": "job", "name": "Job", "action": "external",
                                 "config": {"queue": QUEUE, "input": {"x": 1}}}])
        # /status/<n> answers n, /flaky/<id> 500 then 200: completed, completed
        # after a retry, failed after a retry (see round()).
        self.analytics = self.create([{"key": "call", "name": "Call", "action": "http",
                                       "config": {"url": target.url("/{{ input.kind }}/{{ input.id }}")},
                                       "retry": {"maxAttempts": 2, "retryableErrors": ["http_5xx"], **FAST_RETRY}}],
                                     name=WORKFLOW)
        # A webhook notification of every failure of WORKFLOW (one a round) to the
        # local target: the notification panels have deliveries.
        r = self.user.rest.post(f"/workflows/{self.analytics}/subscriptions",
                                {"eventType": "failure", "notifyVia": "webhook",
                                 "destination": target.url("/echo/notified")})
        assert r.status == 201, r
        # A schedule that ticks every second: the schedule panels (fire lag) have data.
        self.ticking = self.create([{"key": "a", "name": "A", "action": "noop"}], name="prom ticking")
        r = self.user.rest.post(f"/workflows/{self.ticking}/schedules", {"cron": "* * * * * *"})
        assert r.status == 201, r
        self.started: list[tuple[str, str, str]] = []  # (workflow id, execution id, the status it must end in)
        self.leased: dict[str, str] = {}  # execution id -> first (abandoned) lease token

    def create(self, tasks, name: str | None = None) -> str:
        r = self.user.rest.post("/workflows", {"name": name or f"prom {uuid.uuid4().hex[:8]}", "tasks": tasks})
        assert r.status == 201, r
        return r.json["id"]

    def set_budgets(self) -> None:
        """A budget on the WORKFLOW workflow and one on the user's own
        organization (the one it is admin of, made at registration)."""
        r = self.user.rest.put(f"/workflows/{self.analytics}/budget", BUDGET)
        assert r.status == 200, r
        r = self.user.rest.get("/orgs")
        assert r.status == 200, r
        own = [o["id"] for o in r.json.get("organizations", []) if o.get("role") == "admin"]
        assert own, r.json
        r = self.user.rest.put(f"/orgs/{own[0]}/budget", BUDGET)
        assert r.status == 200, r

    def execute(self, wid: str, **body) -> str:
        r = self.user.rest.post(f"/workflows/{wid}/execute", body)
        assert r.status == 202, r
        return r.json["executionId"]

    def grpc_call(self, fn, req, want=grpc.StatusCode.OK, **kw):
        """Call fn; it must end with status `want` (some calls fail on purpose)."""
        try:
            reply = fn(req, timeout=TIMEOUT, **kw)
        except grpc.RpcError as err:
            assert err.code() == want, (req, f"expected {want}, got {err.code()}: {err.details()}")
            return None
        assert want == grpc.StatusCode.OK, (req, f"expected {want}, got OK")
        return reply

    def round(self, k: int) -> None:
        rest, anon, v1, md = self.user.rest, self.anon, self.v1, self.md
        # Accounts and authentication (registered, bad credentials, missing / malformed tokens).
        wh.register_and_login(self.server, f"Prom Round{k}")
        assert anon.post("/users/login", {"email": self.user.email, "password": "wrong"}).status == 401
        assert anon.get("/workflows").status == 401
        assert anon.get("/workflows", headers={"Authorization": "Bearer not-a-token"}).status == 401
        # REST reads, 4xx and health.
        assert rest.get("/users/me").status == 200
        assert rest.get("/workflows?pageSize=5").status == 200
        assert rest.get("/workflows/wf_nope").status == 404
        assert rest.post("/workflows", {"name": ""}).status == 400
        assert rest.get("/no/such/route").status == 404
        assert wh.http_get(self.server, "/healthz")[0] == 200
        # Workflow writes.
        wid = self.create([{"key": "a", "name": "A", "action": "noop"}])
        assert rest.put(f"/workflows/{wid}", {"name": f"prom renamed {k}",
                                              "tasks": [{"key": "a", "name": "A", "action": "noop"}]}).status == 200
        assert rest.delete(f"/workflows/{wid}").status == 204
        # gRPC: OK, NOT_FOUND, INVALID_ARGUMENT, UNAUTHENTICATED, UNIMPLEMENTED.
        S = grpc.StatusCode
        self.grpc_call(self.health.Check, self.health_req)
        self.grpc_call(self.users.GetCurrentUser, v1.users_pb2.GetCurrentUserRequest(), metadata=md)
        self.grpc_call(self.users.GetCurrentUser, v1.users_pb2.GetCurrentUserRequest(), S.UNAUTHENTICATED)
        self.grpc_call(self.workflows.ListWorkflows, v1.workflows_pb2.ListWorkflowsRequest(page_size=5), metadata=md)
        self.grpc_call(self.workflows.GetWorkflow, v1.workflows_pb2.GetWorkflowRequest(workflow_id="wf_nope"),
                       S.NOT_FOUND, metadata=md)
        self.grpc_call(self.executions.ExecuteWorkflow, v1.executions_pb2.ExecuteWorkflowRequest(),
                       S.INVALID_ARGUMENT, metadata=md)
        self.grpc_call(self.unknown, b"", S.UNIMPLEMENTED)
        # Executions: completed (REST, and gRPC watched to its end), failed after a
        # retry, failed on a template, cancelled, timed out.
        self.started.append((self.ok, self.execute(self.ok), "Completed"))
        started = self.executions.ExecuteWorkflow(v1.executions_pb2.ExecuteWorkflowRequest(workflow_id=self.ok),
                                                  metadata=md, timeout=TIMEOUT)
        events = list(self.executions.WatchExecution(
            v1.executions_pb2.WatchExecutionRequest(workflow_id=self.ok, execution_id=started.execution_id),
            metadata=md, timeout=TIMEOUT))
        assert events, "WatchExecution sent nothing"
        assert events[-1].status == v1.executions_pb2.Execution.Completed, events[-1]
        got = self.grpc_call(self.executions.GetExecution, v1.executions_pb2.GetExecutionRequest(
            workflow_id=self.ok, execution_id=started.execution_id), metadata=md)
        assert got.status == v1.executions_pb2.Execution.Completed, got
        self.started.append((self.http_fail, self.execute(self.http_fail), "Failed"))
        self.started.append((self.template_fail, self.execute(self.template_fail), "Failed"))
        self.started.append((self.long, self.execute(self.long, timeout="0.3s"), "TimedOut"))
        doomed = self.execute(self.long)
        self.started.append((self.long, doomed, "Cancelled"))
        assert rest.post(f"/workflows/{self.long}/executions/{doomed}/cancel", {"reason": "load"}).status == 200
        # The WORKFLOW workflow: completed, completed after a retry, failed after a retry.
        for kind, ident, want in (("status", "200", "Completed"), ("flaky", uuid.uuid4().hex, "Completed"),
                                  ("status", "503", "Failed")):
            eid = self.execute(self.analytics, input={"kind": kind, "id": ident})
            self.started.append((self.analytics, eid, want))
        assert rest.get(f"/workflows/{self.ok}/executions?pageSize=5").status == 200
        assert rest.get(f"/workflows/{self.ok}/executions/{started.execution_id}").status == 200
        assert rest.get(f"/workflows/{self.ok}/executions/{started.execution_id}/logs").status == 200
        self.external_round()
        garbage_connection(self.server)

    def external_round(self) -> None:
        """Lease this round's new external task for 1 s and abandon it; the
        previous round's abandoned task comes back (its lease expired) and is
        completed, after a stale completion with its first token fails."""
        self.execute(self.ext)
        fresh = None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            r = self.user.rest.post(f"/queues/{QUEUE}/poll",
                                    {"workerId": "prom", "wait": "0s" if fresh else "2s", "leaseDuration": "1s"})
            assert r.status == 200, r
            task = r.json.get("task")
            if not task:
                if fresh:
                    return
                continue
            eid = task["executionId"]
            if eid in self.leased:  # leased again after its lease expired
                stale = self.user.rest.post("/workers/complete", {"leaseToken": self.leased.pop(eid)})
                assert stale.status == 400 and stale.json.get("code") == 9, stale  # FAILED_PRECONDITION
                done = self.workers.CompleteTask(v1_complete(self.v1, task["leaseToken"]), metadata=self.md,
                                                 timeout=TIMEOUT)
                assert done == self.v1.workers_pb2.CompleteTaskResponse(), done
                self.started.append((self.ext, eid, "Completed"))
            else:
                r = self.user.rest.post("/workers/heartbeat", {"leaseToken": task["leaseToken"], "leaseDuration": "1s"})
                assert r.status == 200, r
                self.leased[eid] = task["leaseToken"]
                fresh = task
        raise AssertionError(f"no external task on {QUEUE} within {TIMEOUT}s")

    def wait_started_ended(self) -> None:
        pending = list(self.started)

        def all_ended():
            while pending:
                wid, eid, want = pending[0]
                r = self.user.rest.get(f"/workflows/{wid}/executions/{eid}")
                assert r.status == 200, r
                if r.json["status"] not in ("Completed", "Failed", "Cancelled", "TimedOut"):
                    return False
                assert r.json["status"] == want, (f"execution {eid} ended {r.json['status']}, expected {want}", r.json)
                pending.pop(0)
            return True

        wh.wait_until(all_ended, 15, 0.1, message=lambda: f"executions to end: {pending}")


def v1_complete(v1, token: str):
    return v1.workers_pb2.CompleteTaskRequest(lease_token=token, output=wh.proto_struct({"done": True}))


def garbage_connection(server: wh.WeftServer) -> None:
    """A connection that sends neither HTTP/1.1 nor the HTTP/2 preface."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x00\xff garbage that is no protocol at all\r\n\r\n")
        wh.recv_until_closed(sock, 5)


# ---------------------------------------------------------------------------
# Checking query results
# ---------------------------------------------------------------------------


def result_problem(body: dict) -> str | None:
    """Why a /api/v1/query answer is not a non-empty, all-finite result (None if it is)."""
    if body.get("status") != "success":
        return f"error {body.get('errorType')}: {body.get('error')}"
    data = body["data"]
    if data["resultType"] == "scalar":
        series = [({}, data["result"][1])]
    elif data["resultType"] == "vector":
        series = [(s["metric"], s["value"][1]) for s in data["result"]]
    else:
        return f"unexpected resultType {data['resultType']}"
    if not series:
        return "empty result"
    bad = [(m, v) for m, v in series if not math.isfinite(float(v))]
    if bad:
        shown = ", ".join(f"{json.dumps(m, sort_keys=True)}={v}" for m, v in bad[:4])
        more = f" (+{len(bad) - 4} more)" if len(bad) > 4 else ""
        return f"{len(bad)} of {len(series)} series not finite: {shown}{more}"
    return None


def absent_metrics(prom: Prometheus, expr: str, at: float) -> list[str]:
    """Metric names in expr of which Prometheus holds no series at all."""
    names = dict.fromkeys(_METRIC_RE.findall(_STRING_RE.sub('""', expr)))
    out = []
    for name in names:
        body = prom.query(f'count({{__name__="{name}"}})', at)
        if body.get("status") == "success" and not body["data"]["result"]:
            out.append(name)
    return out


def exemplar_problems(prom: Prometheus, since: float) -> list[str]:
    """Prometheus scraped /metrics as OpenMetrics and kept exemplars on the
    latency histograms' buckets (the SLI's, gRPC methods', HTTP routes'):
    trace ids of sampled requests, each inside its bucket's bounds."""
    problems = []
    for histogram, label, want in (("weft_request_duration_seconds", "request_class", {"read", "write"}),
                                   ("grpc_server_handling_seconds", "grpc_method", {"GetCurrentUser", "ListWorkflows"}),
                                   ("http_server_request_duration_seconds", "http_route", {"/workflows"})):
        body = prom.api("query_exemplars", query=f'{histogram}_bucket{{job="weft"}}',
                        start=f"{since:.3f}", end=f"{time.time():.3f}")
        if body.get("status") != "success":
            problems.append(f"query_exemplars {histogram}: {body}")
            continue
        found = [(series["seriesLabels"], e) for series in body["data"] for e in series.get("exemplars", [])]
        for labels, exemplar in found:
            trace_id = exemplar["labels"].get("trace_id", "")
            le = float(labels["le"])
            if not re.fullmatch(r"[0-9a-f]{32}", trace_id) or not 0 < float(exemplar["value"]) <= le:
                problems.append(f"exemplar {exemplar} on {labels}: not a trace id, or a value outside the bucket")
        seen = {labels.get(label) for labels, _ in found}
        if not want <= seen:
            problems.append(f"{histogram}: exemplars for {label} {sorted(v for v in seen if v)}, "
                            f"none for {sorted(want - seen)} (the load calls them, traced)")
    return problems


def dashboard_queries(check_dashboards) -> list[tuple[str, str, str]]:
    """(file, panel title, substituted PromQL) of every panel target."""
    out = []
    seen_uids: dict = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        errors, exprs = check_dashboards.check_dashboard(str(path), seen_uids)
        assert not errors, errors
        out += [(path.name, title, check_dashboards.substitute(expr, DASHBOARD_VARS)) for title, expr in exprs]
    return out


def alert_rules() -> list[dict]:
    if not ALERTS.exists():
        return []
    doc = yaml.safe_load(ALERTS.read_text()) or {}
    return [rule for group in doc.get("groups") or [] for rule in group.get("rules") or [] if "alert" in rule]


def rule_problems(prom: Prometheus) -> list[str]:
    """Unhealthy rules, and groups of alerts.yml that Prometheus did not load."""
    if not ALERTS.exists():
        return []
    want = {g["name"] for g in (yaml.safe_load(ALERTS.read_text()) or {}).get("groups") or []}

    def evaluated():
        body = prom.api("rules")
        assert body.get("status") == "success", body
        groups = body["data"]["groups"]
        if any(r.get("health") == "unknown" for g in groups for r in g["rules"]):
            return None
        return groups

    groups = wh.wait_until(evaluated, 10, 0.2, message="every rule evaluated once")
    problems = [f"rule group {name!r} of {ALERTS.name} not loaded" for name in sorted(want - {g["name"] for g in groups})]
    for g in groups:
        for r in g["rules"]:
            if r.get("health") != "ok" or r.get("lastError"):
                problems.append(f"rule {r.get('name')!r} (group {g['name']!r}): health={r.get('health')} "
                                f"lastError={r.get('lastError')!r}")
    return problems


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------


def test_prometheus_scrapes_weft_and_every_dashboard_and_alert_query_has_data(
        request, api_server, prometheus, chan, v1, protos):
    with prometheus_log_on_failure(request.node, prometheus):
        check_dashboards = _load_check_dashboards()
        queries = dashboard_queries(check_dashboards)
        assert queries, f"no panel queries in {DASHBOARDS}"
        alerts = alert_rules()

        target = Target()
        try:
            load_started = time.time()
            load = Load(api_server, chan, v1, protos, target)
            load.set_budgets()
            t0 = time.monotonic()
            for k in range(ROUNDS):
                time.sleep(max(0.0, t0 + k * PERIOD - time.monotonic()))
                load.round(k)
            load.wait_started_ended()
        finally:
            target.close()
        load_done = time.time()

        # Enough scrapes, the last ones (two at least) after the load.
        wh.wait_until(lambda: prometheus.scrapes() >= MIN_SAMPLES, 40, 0.5,
                      message=f"{MIN_SAMPLES} scrapes of the weft target")
        wh.wait_until(lambda: prometheus.last_scrape() >= load_done + 1.0, 10, 0.2,
                      message="two scrapes of the weft target after the load")

        failures = []
        targets = prometheus.api("targets")["data"]["activeTargets"]
        weft = [t for t in targets if t["labels"].get("job") == "weft"]
        if not weft or any(t["health"] != "up" for t in weft):
            failures.append(f"/api/v1/targets: weft target not up: {weft}")
        probes = [t for t in targets if t["labels"].get("job") == Blackbox.JOB]
        if len(probes) != 2 or any(t["health"] != "up" for t in probes):
            failures.append(f"/api/v1/targets: the two probe targets are not up: {probes}")
        failures += exemplar_problems(prometheus, load_started)
        body = prometheus.query(f'min(probe_success{{job="{Blackbox.JOB}"}})', time.time())
        if result_problem(body) or float(body["data"]["result"][0]["value"][1]) != 1:
            failures.append(f"a probe of the serving Weft failed: {body}")
        failures += rule_problems(prometheus)

        at = time.time()
        checked = []
        for file, title, expr in queries:
            checked.append((f"{file} panel {title!r}", expr, True))
        for rule in alerts:
            name = rule["alert"]
            checked.append((f"{ALERTS.name} alert {name!r} expr", str(rule["expr"]), False))
            signal_expr = (rule.get("annotations") or {}).get("signal")
            if not signal_expr:
                failures.append(f"{ALERTS.name} alert {name!r}: no annotations.signal")
            else:
                checked.append((f"{ALERTS.name} alert {name!r} signal", signal_expr, True))
        for where, expr, must_have_data in checked:
            body = prometheus.query(expr, at)
            problem = result_problem(body)
            if problem and (must_have_data or body.get("status") != "success"):
                missing = absent_metrics(prometheus, expr, at) if problem == "empty result" else []
                if missing:
                    problem += f"; no series at all for {', '.join(missing)}"
                failures.append(f"{where}: {problem}\n    {expr}")

        status, _, body = wh.http_get(api_server, "/metrics")
        assert status == 200
        lint = subprocess.run([str(PROMTOOL), "check", "metrics"], input=body, capture_output=True, timeout=30)
        if lint.returncode != 0:
            failures.append(f"promtool check metrics rc={lint.returncode}:\n"
                            f"{(lint.stdout + lint.stderr).decode(errors='replace')}")

        assert not failures, (f"{len(failures)} of {len(checked) + 3} checks failed "
                              f"(queries at {at:.0f}, $__rate_interval=1m):\n" + "\n".join(failures))


def test_a_server_that_is_down_spends_the_error_budget(tmp_path):
    """A crashed server answers no request, so a request ratio alone would
    spend nothing while it is down.  The availability SLI of
    dashboards/slo.yaml also counts the share of time the target was down
    (1 - up): on a real Prometheus, a server SIGKILLed after a few seconds of
    clean traffic moves `weft:slo_errors_per_request:ratio_rate5m` from 0 to
    the downtime's share within seconds, the black-box probe SLI
    (`weft:slo_probe_failures:ratio_rate5m`) moves too, and the 1 h page's condition holds
    (WeftErrorBudgetBurn1h pending; its `for: 2m` and the firing are tested
    with promtool, dashboards/alerts_test.yml, a 60 s outage).  WeftWatchdog
    fires throughout."""
    require_tools()
    srv = wh.WeftServer(wh.weft_bin(), tmp_path / "data", tmp_path / "logs", args=wh.API_SERVER_ARGS, name="slo-down")
    srv.start(timeout=30)
    blackbox = prom = None
    try:
        blackbox = Blackbox(tmp_path)
        blackbox.wait_ready()
        prom = Prometheus(tmp_path, srv.target, [ALERTS], blackbox)
        prom.wait_ready()
        user = wh.register_and_login(srv, "Down Time")
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert user.rest.get("/workflows").status == 200
            time.sleep(0.1)

        def ratio():
            body = prom.query("weft:slo_errors_per_request:ratio_rate5m", time.time())
            result = body.get("data", {}).get("result") or []
            return float(result[0]["value"][1]) if result else None

        wh.wait_until(lambda: ratio() == 0.0, 20, 0.5, message="a recorded ratio of 0 while the server is up")
        srv.kill()
        wh.wait_until(lambda: (ratio() or 0) > 0.01, 30, 0.5,
                      message=lambda: f"the downtime in weft:slo_errors_per_request:ratio_rate5m (now {ratio()})")

        def probe_failures():
            body = prom.query("weft:slo_probe_failures:ratio_rate5m", time.time())
            result = body.get("data", {}).get("result") or []
            return float(result[0]["value"][1]) if result else None

        # The black-box SLI sees it too: the probes of /healthz and gRPC health fail.
        wh.wait_until(lambda: (probe_failures() or 0) > 0.01, 30, 0.5,
                      message=lambda: f"failed probes in weft:slo_probe_failures:ratio_rate5m (now {probe_failures()})")

        def alert_states():
            body = prom.query("ALERTS", time.time())
            return {(r["metric"]["alertname"], r["metric"]["alertstate"]) for r in body.get("data", {}).get("result", [])}

        wh.wait_until(lambda: ("WeftErrorBudgetBurn1h", "pending") in alert_states()
                      or ("WeftErrorBudgetBurn1h", "firing") in alert_states(), 30, 0.5,
                      message=lambda: f"WeftErrorBudgetBurn1h pending; alerts: {sorted(alert_states())}")
        assert ("WeftWatchdog", "firing") in alert_states(), sorted(alert_states())
    finally:
        if prom:
            prom.stop()
        if blackbox:
            blackbox.stop()
        srv.kill()
