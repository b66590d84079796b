"""Admission control (docs/OVERLOAD.md) on real servers: new executions are
refused with RESOURCE_EXHAUSTED / HTTP 429 and `retry-after` while the engine
is past its knee; reads, cancels and worker calls never are.

* The in-flight cap, on the module's `api_server` started with
  `--max-executions-in-flight 2` and both wait signals off
  (`--admission-task-wait 0 --admission-commit-wait 0`, so that a loaded
  machine cannot add refusals of its own): two executions parked in a 30 s
  delay fill it; then gRPC ExecuteWorkflow (RESOURCE_EXHAUSTED, an integer
  `retry-after` >= 1 in the trailers, a message naming the cap and the flag),
  REST execute (429, `Retry-After`, a google.rpc.Status body), a webhook
  (429 `overloaded`) and events (REST 429, gRPC RESOURCE_EXHAUSTED) are
  refused, while GetWorkflow, ListExecutions, GetExecution and
  CancelExecution answer (REST and gRPC); a cancel gives the place back at
  once.  A refused call leaves nothing behind: no execution row, no trigger
  firing, and its idempotency key, webhook idempotency header or event id
  starts a new execution once there is room (and deduplicates after that).
  `weft_admission_rejections_total{reason,source}` (all nine series present
  at 0 on a fresh server) and `weft_webhook_requests_total{outcome=
  "overloaded"}` move by exactly the refusals made (the module's tests run
  one after another on the module's server).
* Flags: bad values of the three flags stop the start (exit 64) naming the
  flag or variable; `WEFT_MAX_EXECUTIONS_IN_FLIGHT` sets the cap and the flag
  wins over it; 0 turns each of them off.  Executions left in flight by a
  stopped process count against the cap of the next one at once.
* The standing-queue signal (CoDel): `--workers 1 --admission-task-wait 1`
  with http tasks on a local sink that answers after 0.5 s.  Executions are
  submitted until one is refused with `task_queue_wait` (bounded); the
  refusal carries `retry-after`, `weft_admission_shedding` reads 1 at some
  scrape (with the task queue's shortest wait above the 1 ms target), and
  once the backlog has run, executions are admitted again.  No assertion is
  on a duration: the only timing the test relies on is that one slot taking
  0.5 s per task keeps a queue standing (items waiting far more than 1 ms,
  leased at most ~0.5 s apart, less than the 1 s after which admission
  control forgets a quiet queue).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
import types
import uuid

import grpc
import pytest

import flags_support as fs
import weft_helpers as wh

TIMEOUT = 10
RESOURCE_EXHAUSTED = 8
USAGE_ERROR = 64  # EX_USAGE: swift-argument-parser's exit code for a bad option value
CAP = 2
FLAG = "--max-executions-in-flight"
REASONS = ("task_queue_wait", "commit_queue_wait", "executions_in_flight")
SOURCES = ("api", "webhook", "event")
REJECTIONS = "weft_admission_rejections_total"
LONG_DELAY = [{"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "30s"}}]
NOOP = [{"key": "a", "name": "A", "action": "noop"}]

# The module's api_server (conftest): a cap of 2, the wait signals off.
API_SERVER_EXTRA_ARGS = (FLAG, str(CAP), "--admission-task-wait", "0", "--admission-commit-wait", "0")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def uid() -> str:
    return uuid.uuid4().hex[:8]


def retry_after(value) -> int:
    """A retry-after value: whole seconds, at least 1."""
    assert value is not None and re.fullmatch(r"[0-9]+", str(value)), f"retry-after {value!r}"
    assert int(value) >= 1, f"retry-after {value!r}"
    return int(value)


def trailer(err: grpc.RpcError, name: str):
    for key, value in err.trailing_metadata() or ():
        if key == name:
            return value
    return None


def assert_429(r: wh.RestResponse, *fragments: str) -> dict:
    """A 429 with Retry-After and a google.rpc.Status-shaped JSON body."""
    assert r.status == 429, r
    retry_after(r.header("retry-after"))
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    body = r.json
    assert isinstance(body, dict) and set(body) <= {"code", "message", "details"}, body
    assert body.get("code") == RESOURCE_EXHAUSTED, body
    assert isinstance(body.get("details", []), list), body
    assert isinstance(body.get("message"), str) and body["message"], body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body)
    return body


def assert_exhausted(err: grpc.RpcError, *fragments: str) -> int:
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
    for fragment in fragments:
        assert fragment in (err.details() or ""), (fragment, err.details())
    return retry_after(trailer(err, "retry-after"))


def cap_fragments(cap: int = CAP) -> tuple:
    """What the in-flight refusal names: the cap and the flag."""
    return (f"its limit is {cap}", FLAG)


def grpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=TIMEOUT, **kwargs)
    return info.value


def stubs(protos, server):
    ch = wh.new_channel(server.target)
    v1 = protos.v1
    return types.SimpleNamespace(
        channel=ch,
        pb=v1.executions_pb2,
        wpb=v1.workflows_pb2,
        tpb=v1.triggers_pb2,
        workflows=v1.workflows_pb2_grpc.WorkflowServiceStub(ch),
        executions=v1.executions_pb2_grpc.ExecutionServiceStub(ch),
        events=v1.triggers_pb2_grpc.EventServiceStub(ch),
    )


def executions(user: wh.ApiUser, wid: str) -> list:
    return wh.all_pages(user.rest, f"/workflows/{wid}/executions", "executions", pageSize=1000)


def execution_ids(user: wh.ApiUser, wid: str) -> set:
    return {e["executionId"] for e in executions(user, wid)}


def execute(user: wh.ApiUser, wid: str, **body) -> wh.RestResponse:
    return user.rest.post(f"/workflows/{wid}/execute", body)


def started(r: wh.RestResponse) -> str:
    assert r.status == 202, r
    return r.json["executionId"]


def cancel(user: wh.ApiUser, wid: str, eid: str) -> None:
    r = user.rest.post(f"/workflows/{wid}/executions/{eid}/cancel", {"reason": "test cleanup"})
    assert r.status == 200 or (r.status == 400 and r.json.get("code") == 9), r  # 9: it had already ended


def hook(server, tid: str, body: dict, headers=None) -> wh.RestResponse:
    """POST /hooks/<tid> with no credentials."""
    return wh.RestClient(server).request("POST", f"/hooks/{tid}", raw=json.dumps(body).encode(),
                                         headers=headers or {})


def rejections(m: wh.Metrics) -> dict:
    return {(r, s): m.total(REJECTIONS, reason=r, source=s) for r in REASONS for s in SOURCES}


def in_flight(server) -> float:
    return fs.metric(server, "weft_executions_in_flight")


def trigger_fired(user: wh.ApiUser, wid: str, tid: str) -> int:
    r = user.rest.get(f"/workflows/{wid}/triggers/{tid}")
    assert r.status == 200, r
    return int(r.json.get("firedCount", "0"))


class Capacity:
    """Fills the module server's cap with executions parked in a 30 s delay;
    cancels whatever is still running at the end and waits until nothing is
    in flight (so the next test starts from an empty server)."""

    def __init__(self, server, user: wh.ApiUser, wid: str):
        self.server, self.user, self.wid = server, user, wid
        self.ids: list[str] = []

    def fill(self, n: int = CAP) -> list[str]:
        for _ in range(n):
            self.ids.append(started(execute(self.user, self.wid)))
        return self.ids

    def track(self, eid: str) -> str:
        self.ids.append(eid)
        return eid

    def close(self):
        for eid in self.ids:
            cancel(self.user, self.wid, eid)
        wh.wait_until(lambda: in_flight(self.server) == 0, TIMEOUT,
                      message=lambda: f"no execution in flight (gauge {in_flight(self.server)})")


@pytest.fixture(scope="module")
def owner(api_server):
    return wh.register_and_login(api_server, "Ada Admission")


@pytest.fixture(scope="module")
def parked(owner):
    """A workflow that stays in flight for 30 s, with a webhook trigger (with
    an idempotency header) and an event trigger."""
    wf = fs.create_wf(owner, LONG_DELAY, name=f"admission parked {uid()}")
    r = owner.rest.post(f"/workflows/{wf['id']}/triggers", {"type": "webhook", "idempotencyHeader": "Idempotency-Key"})
    assert r.status == 201, r
    hook_t = r.json
    event = f"admission.{uid()}"
    r = owner.rest.post(f"/workflows/{wf['id']}/triggers", {"type": "event", "eventName": event})
    assert r.status == 201, r
    return types.SimpleNamespace(wf=wf, wid=wf["id"], hook=hook_t["id"], event=event, event_trigger=r.json["id"])


@pytest.fixture
def capacity(api_server, owner, parked):
    c = Capacity(api_server, owner, parked.wid)
    yield c
    c.close()


# ---------------------------------------------------------------------------
# Metrics on a fresh server
# ---------------------------------------------------------------------------


def test_a_fresh_server_exports_every_admission_series_at_zero(api_server, owner):
    """First in the module: nothing has been refused yet.  (`owner` only makes
    sure registration, which starts no execution, is not what is counted.)"""
    m = wh.fetch_metrics(api_server)
    assert m.type_of(REJECTIONS) == "counter", m.types.get("weft_admission_rejections")
    got = rejections(m)
    for (reason, source), value in got.items():
        assert m.select(REJECTIONS, reason=reason, source=source), f"no series {reason}/{source}"
        assert value == 0, (reason, source, value)
    assert len(m.select(REJECTIONS)) == len(REASONS) * len(SOURCES), m.select(REJECTIONS)
    assert {s.labels["queue"] for s in m.select("weft_admission_shortest_wait_seconds")} == {"task", "commit"}
    assert m.type_of("weft_admission_shortest_wait_seconds") == "gauge"
    assert m.type_of("weft_admission_shedding") == "gauge"
    assert [s.value for s in m.select("weft_admission_shedding")] == [0], m.select("weft_admission_shedding")
    assert m.select("weft_webhook_requests_total", outcome="overloaded"), "no overloaded webhook series"
    assert m.total("weft_webhook_requests_total", outcome="overloaded") == 0
    assert m.total("weft_executions_in_flight") == 0


# ---------------------------------------------------------------------------
# The in-flight cap
# ---------------------------------------------------------------------------


def test_the_in_flight_cap_refuses_new_executions_but_not_reads_or_cancels(api_server, protos, owner, parked, capacity):
    wid = parked.wid
    before = wh.fetch_metrics(api_server)
    g = stubs(protos, api_server)
    md = wh.grpc_auth(owner)
    try:
        running = capacity.fill()
        assert len(running) == CAP and len(set(running)) == CAP
        listed_before = execution_ids(owner, wid)
        assert set(running) <= listed_before

        # Refused: gRPC execute (with an idempotency key), REST execute.
        err = grpc_error(g.executions.ExecuteWorkflow,
                         g.pb.ExecuteWorkflowRequest(workflow_id=wid, idempotency_key="refused-grpc"), metadata=md)
        assert_exhausted(err, *cap_fragments())
        assert "executions in flight" in err.details(), err.details()
        r = execute(owner, wid, idempotencyKey="refused-rest", input={"n": 3})
        assert_429(r, *cap_fragments())
        # Neither left anything: the list is what it was.
        assert execution_ids(owner, wid) == listed_before

        # Reads answer while refusing (REST and gRPC).
        wf = g.workflows.GetWorkflow(g.wpb.GetWorkflowRequest(workflow_id=wid), metadata=md, timeout=TIMEOUT)
        assert wf.id == wid
        assert owner.rest.get(f"/workflows/{wid}").status == 200
        page = g.executions.ListExecutions(g.pb.ListExecutionsRequest(workflow_id=wid, page_size=100),
                                           metadata=md, timeout=TIMEOUT)
        assert {e.execution_id for e in page.executions} == listed_before
        for eid in running:
            e = g.executions.GetExecution(g.pb.GetExecutionRequest(workflow_id=wid, execution_id=eid),
                                          metadata=md, timeout=TIMEOUT)
            assert e.execution_id == eid and e.status == g.pb.Execution.Running, e
            assert fs.get_exec(owner, wid, eid)["status"] == "Running"

        # A cancel is never refused, and gives its place back at once: the
        # engine counts the execution out in the same step that ends it.
        out = g.executions.CancelExecution(
            g.pb.CancelExecutionRequest(workflow_id=wid, execution_id=running[0], reason="make room"),
            metadata=md, timeout=TIMEOUT)
        assert out.execution_id == running[0], out
        fs.wait_status(owner, wid, running[0], statuses={"Cancelled"}, timeout=TIMEOUT)

        # The refused keys start new executions now (no half state) ...
        again = g.executions.ExecuteWorkflow(g.pb.ExecuteWorkflowRequest(workflow_id=wid, idempotency_key="refused-grpc"),
                                             metadata=md, timeout=TIMEOUT)
        capacity.track(again.execution_id)
        assert again.execution_id not in listed_before, again
        e = fs.get_exec(owner, wid, again.execution_id)
        assert e.get("idempotencyKey") == "refused-grpc" and e["status"] in ("Pending", "Running"), e

        # ... and the cap counts it: full again.
        err = grpc_error(g.executions.ExecuteWorkflow, g.pb.ExecuteWorkflowRequest(workflow_id=wid), metadata=md)
        assert_exhausted(err, *cap_fragments())

        cancel(owner, wid, running[1])
        fs.wait_status(owner, wid, running[1], statuses={"Cancelled"}, timeout=TIMEOUT)
        rest_again = capacity.track(started(execute(owner, wid, idempotencyKey="refused-rest", input={"n": 3})))
        assert rest_again not in listed_before
        e = fs.get_exec(owner, wid, rest_again)
        assert e.get("idempotencyKey") == "refused-rest" and e.get("input") == {"n": 3}, e

        # Once there is room, the keys deduplicate (they name the executions
        # started above, not some execution of the refused calls).
        cancel(owner, wid, again.execution_id)
        assert started(execute(owner, wid, idempotencyKey="refused-rest", input={"n": 3})) == rest_again
        dup = g.executions.ExecuteWorkflow(g.pb.ExecuteWorkflowRequest(workflow_id=wid, idempotency_key="refused-grpc"),
                                           metadata=md, timeout=TIMEOUT)
        assert dup.execution_id == again.execution_id
        # Every execution of the workflow is one a call was told about.
        assert execution_ids(owner, wid) == listed_before | {again.execution_id, rest_again}
    finally:
        g.channel.close()

    after = wh.fetch_metrics(api_server)
    delta = {k: after_v - rejections(before)[k] for k, after_v in rejections(after).items()}
    assert delta == {**{k: 0 for k in delta}, ("executions_in_flight", "api"): 3}, delta
    assert after.total("weft_webhook_requests_total", outcome="overloaded") == \
        before.total("weft_webhook_requests_total", outcome="overloaded")


def test_webhooks_and_events_are_refused_and_leave_nothing_behind(api_server, protos, owner, parked, capacity):
    wid = parked.wid
    before = wh.fetch_metrics(api_server)
    fired_before = trigger_fired(owner, wid, parked.hook)
    event_fired_before = trigger_fired(owner, wid, parked.event_trigger)
    g = stubs(protos, api_server)
    md = wh.grpc_auth(owner)
    hook_key = f"delivery-{uid()}"
    event_id = f"evt-{uid()}"
    try:
        running = capacity.fill()
        listed_before = execution_ids(owner, wid)

        # A webhook: 429 with Retry-After, before the trigger is even read.
        r = hook(api_server, parked.hook, {"order": 1}, headers={"Idempotency-Key": hook_key})
        assert_429(r, *cap_fragments())
        # Events: REST 429, gRPC RESOURCE_EXHAUSTED; the same event id both times.
        r = owner.rest.post("/events", {"name": parked.event, "payload": {"amount": 1}, "eventId": event_id})
        assert_429(r, *cap_fragments())
        err = grpc_error(g.events.PublishEvent,
                         g.tpb.PublishEventRequest(name=parked.event, payload=wh.proto_struct({"amount": 1}),
                                                   event_id=event_id),
                         metadata=md)
        assert_exhausted(err, *cap_fragments())

        # Nothing was started, nothing remembered (firings: checked at the end).
        assert execution_ids(owner, wid) == listed_before

        mid = wh.fetch_metrics(api_server)
        assert mid.total("weft_webhook_requests_total", outcome="overloaded") == \
            before.total("weft_webhook_requests_total", outcome="overloaded") + 1
        assert mid.total("weft_webhook_requests_total", outcome="accepted") == \
            before.total("weft_webhook_requests_total", outcome="accepted")
        assert mid.total("weft_trigger_executions_total", trigger="webhook") == \
            before.total("weft_trigger_executions_total", trigger="webhook")
        assert mid.total("weft_events_published_total") == before.total("weft_events_published_total")

        # Room for one: the refused delivery's idempotency header starts a new execution.
        cancel(owner, wid, running[0])
        fs.wait_status(owner, wid, running[0], statuses={"Cancelled"}, timeout=TIMEOUT)
        r = hook(api_server, parked.hook, {"order": 1}, headers={"Idempotency-Key": hook_key})
        assert r.status == 202, r
        delivered = capacity.track(r.json["executionId"])
        assert delivered not in listed_before and not r.json.get("duplicate", False), r.json
        e = fs.get_exec(owner, wid, delivered)
        assert e["trigger"] == "webhook" and e.get("input") == {"order": 1}, e

        # Room for one more: the refused event id starts its workflow now.
        cancel(owner, wid, running[1])
        fs.wait_status(owner, wid, running[1], statuses={"Cancelled"}, timeout=TIMEOUT)
        out = g.events.PublishEvent(
            g.tpb.PublishEventRequest(name=parked.event, payload=wh.proto_struct({"amount": 1}), event_id=event_id),
            metadata=md, timeout=TIMEOUT)
        assert not out.duplicate and len(out.execution_ids) == 1, out
        published = capacity.track(out.execution_ids[0])
        assert published not in listed_before | {delivered}
        assert fs.get_exec(owner, wid, published)["trigger"] == "event"

        # With room again, both deduplicate to what they started.
        for eid in (delivered, published):
            cancel(owner, wid, eid)
        r = hook(api_server, parked.hook, {"order": 1}, headers={"Idempotency-Key": hook_key})
        assert r.status == 202 and r.json["executionId"] == delivered and r.json.get("duplicate") is True, r
        r = owner.rest.post("/events", {"name": parked.event, "payload": {"amount": 1}, "eventId": event_id})
        assert r.status == 200 and r.json.get("duplicate") is True and r.json["executionIds"] == [published], r
        assert execution_ids(owner, wid) == listed_before | {delivered, published}
        # firedCount is written in batches (at most a second behind): once the
        # accepted calls show, the refused ones are not among them.
        wh.wait_until(lambda: trigger_fired(owner, wid, parked.hook) > fired_before
                      and trigger_fired(owner, wid, parked.event_trigger) > event_fired_before, 5, interval=0.1,
                      message="firedCount of both triggers to move")
        assert trigger_fired(owner, wid, parked.hook) == fired_before + 1
        assert trigger_fired(owner, wid, parked.event_trigger) == event_fired_before + 1
    finally:
        g.channel.close()

    after = wh.fetch_metrics(api_server)
    delta = {k: after_v - rejections(before)[k] for k, after_v in rejections(after).items()}
    assert delta == {**{k: 0 for k in delta}, ("executions_in_flight", "webhook"): 1,
                     ("executions_in_flight", "event"): 2}, delta


def test_the_api_and_webhook_refusals_are_counted_by_source(api_server, owner, parked, capacity):
    """The metrics the brief names, from one scrape after refusals over each
    source (the module's earlier tests add to the same counters)."""
    capacity.fill()
    assert_429(execute(owner, parked.wid))
    assert_429(hook(api_server, parked.hook, {}))
    m = wh.fetch_metrics(api_server)
    assert m.total(REJECTIONS, reason="executions_in_flight", source="api") >= 1
    assert m.total(REJECTIONS, reason="executions_in_flight", source="webhook") >= 1
    assert m.total("weft_webhook_requests_total", outcome="overloaded") >= 1
    # The wait signals are off on this server: they never refused anything.
    for reason in ("task_queue_wait", "commit_queue_wait"):
        assert m.total(REJECTIONS, reason=reason) == 0, reason
    assert m.total("weft_executions_in_flight") == CAP


def test_refusals_are_overload_in_the_availability_sli(api_server, protos, owner, parked, capacity):
    """Admission control's refusals are one thing over every transport: the
    SLI counter `weft_requests_total` counts each as `overload` (spending the
    availability budget), not as a client error, whether it went out as gRPC
    RESOURCE_EXHAUSTED or REST 429 (docs/METRICS.md, Service levels)."""
    capacity.fill()
    g = stubs(protos, api_server)
    md = wh.grpc_auth(owner)

    def sli(m, transport, outcome):
        return m.total("weft_requests_total", transport=transport, request_class="execute", outcome=outcome)

    before = wh.fetch_metrics(api_server)
    err = grpc_error(g.executions.ExecuteWorkflow, g.pb.ExecuteWorkflowRequest(workflow_id=parked.wid), metadata=md)
    assert_exhausted(err, *cap_fragments())
    assert_429(execute(owner, parked.wid), *cap_fragments())
    assert_429(hook(api_server, parked.hook, {}))
    after = wh.fetch_metrics(api_server)
    assert sli(after, "grpc", "overload") - sli(before, "grpc", "overload") == 1
    # The REST execute and the webhook delivery.
    assert sli(after, "http", "overload") - sli(before, "http", "overload") == 2
    for transport in ("grpc", "http"):
        for outcome in ("client_error", "server_error"):
            assert sli(after, transport, outcome) == sli(before, transport, outcome), (transport, outcome)


# ---------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, env, message", [
    ([f"{FLAG}=-1"], {}, f"{FLAG} must be in 0...100000000, got -1"),
    ([FLAG, "-1"], {}, f"Missing value for '{FLAG} "),
    ([FLAG, "abc"], {}, f"The value 'abc' is invalid for '{FLAG}"),
    ([], {"WEFT_MAX_EXECUTIONS_IN_FLIGHT": "abc"}, "WEFT_MAX_EXECUTIONS_IN_FLIGHT=abc is not a whole number"),
    ([], {"WEFT_MAX_EXECUTIONS_IN_FLIGHT": "-3"}, "WEFT_MAX_EXECUTIONS_IN_FLIGHT must be in 0...100000000, got -3"),
    (["--admission-task-wait=-5"], {}, "--admission-task-wait must be in 0...3600000, got -5"),
    (["--admission-task-wait", "soon"], {}, "The value 'soon' is invalid for '--admission-task-wait"),
    (["--admission-commit-wait", "4000000"], {}, "--admission-commit-wait must be in 0...3600000, got 4000000"),
    ([], {"WEFT_ADMISSION_COMMIT_WAIT": "x"}, "WEFT_ADMISSION_COMMIT_WAIT=x is not a whole number"),
])
def test_bad_admission_flag_values_stop_the_start(tmp_path, args, env, message):
    res = subprocess.run([str(wh.weft_bin()), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *args],
                         capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert res.returncode == USAGE_ERROR, (res.returncode, res.stderr)
    assert message in res.stderr, res.stderr
    assert "listening on" not in res.stderr, res.stderr


def _server(tmp_path, name: str, *args: str, env=None) -> wh.WeftServer:
    srv = wh.WeftServer(wh.weft_bin(), tmp_path / name / "data", tmp_path / name / "logs",
                        args=(*wh.API_SERVER_ARGS, *args), name=name, env=env)
    srv.start(timeout=30)
    return srv


def _fill_until_refused(srv: wh.WeftServer, limit: int) -> tuple[wh.ApiUser, str, list[str], wh.RestResponse]:
    """Starts parked executions until one is refused (at most limit + 1 calls)."""
    user = wh.register_and_login(srv, "Flag Tester")
    wid = fs.create_wf(user, LONG_DELAY)["id"]
    ids = []
    for _ in range(limit + 1):
        r = execute(user, wid)
        if r.status != 202:
            return user, wid, ids, r
        ids.append(r.json["executionId"])
    return user, wid, ids, r


def test_the_cap_from_the_environment_and_the_flag_over_it(tmp_path):
    servers = []
    try:
        env_only = _server(tmp_path, "cap-env", env={"WEFT_MAX_EXECUTIONS_IN_FLIGHT": "2"})
        servers.append(env_only)
        user, wid, ids, refused = _fill_until_refused(env_only, 2)
        assert len(ids) == 2, ids
        assert_429(refused, *cap_fragments(2))
        for eid in ids:
            cancel(user, wid, eid)

        flag_wins = _server(tmp_path, "cap-flag", FLAG, "3", env={"WEFT_MAX_EXECUTIONS_IN_FLIGHT": "1"})
        servers.append(flag_wins)
        user, wid, ids, refused = _fill_until_refused(flag_wins, 3)
        assert len(ids) == 3, ids
        assert_429(refused, *cap_fragments(3))
        for eid in ids:
            cancel(user, wid, eid)
    finally:
        wh.finish_servers(servers)


def test_the_cap_counts_executions_recovered_after_a_restart(tmp_path):
    """Executions left in flight by the previous process count at once."""
    r = fs.Restartable(tmp_path, "cap-restart")
    try:
        first = r.start(FLAG, "2")
        user = wh.register_and_login(first, "Rita Restart")
        wid = fs.create_wf(user, LONG_DELAY)["id"]
        ids = [started(execute(user, wid)) for _ in range(2)]
        assert_429(execute(user, wid), *cap_fragments(2))
        r.stop_clean(first)

        second = r.start(FLAG, "2")
        user = fs.on(user, second)
        assert {fs.get_exec(user, wid, eid)["status"] for eid in ids} == {"Running"}
        assert fs.metric(second, "weft_executions_in_flight") == 2
        assert_429(execute(user, wid), *cap_fragments(2))
        cancel(user, wid, ids[0])
        ids.append(started(execute(user, wid)))
        assert_429(execute(user, wid), *cap_fragments(2))
        for eid in ids:
            cancel(user, wid, eid)
        assert len(execution_ids(user, wid)) == 3
    finally:
        r.teardown()


def test_zero_turns_every_signal_off(tmp_path):
    srv = _server(tmp_path, "zero", FLAG, "0", "--admission-task-wait", "0", "--admission-commit-wait", "0")
    try:
        user = wh.register_and_login(srv, "Zero Limits")
        wid = fs.create_wf(user, LONG_DELAY)["id"]
        ids = [started(execute(user, wid)) for _ in range(5)]
        assert fs.run(user, fs.create_wf(user, NOOP)["id"])["status"] == "Completed"
        for eid in ids:
            cancel(user, wid, eid)
        m = wh.fetch_metrics(srv)
        assert m.total(REJECTIONS) == 0
    finally:
        wh.finish_servers([srv])


def test_the_default_cap_is_high_and_named_in_the_help():
    res = subprocess.run([str(wh.weft_bin()), "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    for flag, variable, default in ((FLAG, "WEFT_MAX_EXECUTIONS_IN_FLIGHT", "200000"),
                                    ("--admission-task-wait", "WEFT_ADMISSION_TASK_WAIT", "25"),
                                    ("--admission-commit-wait", "WEFT_ADMISSION_COMMIT_WAIT", "100")):
        assert flag in text, flag
        at = text.index(flag + " <")
        assert f"[env: {variable}] (default: {default})" in text[at:at + 600], (flag, text[at:at + 600])


# ---------------------------------------------------------------------------
# The standing-queue signal
# ---------------------------------------------------------------------------

SINK_DELAY = 0.5


class SlowSink:
    """A threaded HTTP/1.1 server on 127.0.0.1 that answers every request
    with 200 {"ok": true} after SINK_DELAY seconds, counting them."""

    def __init__(self, delay: float = SINK_DELAY):
        self.lock = threading.Lock()
        self.count = 0
        self.stopping = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                sink.stopping.wait(delay)
                with sink.lock:
                    sink.count += 1
                data = b'{"ok": true}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def sink():
    s = SlowSink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory, protos):
    """One slot, a 1 ms task-wait target, the commit signal off (so that a
    slow disk cannot be what refuses), the default cap."""
    base = tmp_path_factory.mktemp("admission-queue")
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", name="admission-queue",
                        args=(*wh.API_SERVER_ARGS, "--workers", "1", "--admission-task-wait", "1",
                              "--admission-commit-wait", "0"))
    srv.start(timeout=30)
    yield srv
    wh.finish_servers([srv])


def test_a_standing_ready_queue_sheds_new_executions_until_it_drains(queue_server, sink):
    srv = queue_server
    user = wh.register_and_login(srv, "Quinn Queue")
    wid = fs.create_wf(user, [{"key": "call", "name": "Call", "action": "http",
                               "config": {"url": sink.url("/slow")}}])["id"]
    before = wh.fetch_metrics(srv)
    assert before.total("weft_admission_shedding") == 0
    admitted: list[str] = []
    refusals: list[wh.RestResponse] = []
    seen = {"shedding": False, "task_wait": 0.0}

    def scrape():
        m = wh.fetch_metrics(srv)
        if m.total("weft_admission_shedding") == 1:
            seen["shedding"] = True
            # The sampler reads both from one snapshot: a congested task
            # window's shortest wait is above the 1 ms target.
            seen["task_wait"] = max(seen["task_wait"], m.total("weft_admission_shortest_wait_seconds", queue="task"))
        return m

    # A burst: one slot, 0.5 s a task; the queue cannot drain.
    for _ in range(12):
        r = execute(user, wid)
        if r.status == 429:
            refusals.append(r)
            break
        admitted.append(started(r))

    def refused():
        assert len(admitted) <= 60, f"{len(admitted)} executions admitted, none refused"
        scrape()
        r = execute(user, wid)
        if r.status == 429:
            refusals.append(r)
            return r
        admitted.append(started(r))
        return None

    if not refusals:
        wh.wait_until(refused, 15, interval=0.2,
                      message=lambda: f"a task_queue_wait refusal; admitted {len(admitted)}, sink answered "
                                      f"{sink.count}, admission metrics "
                                      f"{[(s.labels, s.value) for s in wh.fetch_metrics(srv).samples if 'admission' in s.name]}")
    first = refusals[0]
    body = assert_429(first, "ready queue")
    assert "the server is at capacity" in body["message"], body
    # While shedding, reads answer (the listing is what was admitted).
    assert execution_ids(user, wid) == set(admitted)

    # The sampled gauge shows it (sampled once a second; the backlog
    # stands for several seconds more).
    wh.wait_until(lambda: scrape() and seen["shedding"], 10, interval=0.1,
                  message="weft_admission_shedding 1 at some scrape")
    assert seen["task_wait"] > 0.001, seen

    # The backlog runs: every admitted execution completes.
    def all_done():
        statuses = [e["status"] for e in executions(user, wid)]
        assert "Failed" not in statuses and "TimedOut" not in statuses, statuses
        return len(statuses) == len(admitted) and all(s == "Completed" for s in statuses)

    wh.wait_until(all_done, 30 + len(admitted) * SINK_DELAY * 3, interval=0.25,
                  message=lambda: f"{len(admitted)} executions to complete; sink answered {sink.count}")

    # A drained queue is no backlog: executions are admitted again.
    late_refusals = []

    def admitted_again():
        r = execute(user, wid)
        if r.status == 429:
            late_refusals.append(r)
            return None
        return started(r)

    eid = wh.wait_until(admitted_again, 5, interval=0.1,
                        message=lambda: f"an execution admitted after the drain; refused: {late_refusals[-1:]}")
    assert fs.wait_status(user, wid, eid, timeout=TIMEOUT)["status"] == "Completed"
    after = wh.fetch_metrics(srv)
    refused_total = len(refusals) + len(late_refusals)
    assert after.total(REJECTIONS, reason="task_queue_wait", source="api") - \
        before.total(REJECTIONS, reason="task_queue_wait", source="api") == refused_total
    assert after.total(REJECTIONS, reason="commit_queue_wait") == 0
    assert after.total(REJECTIONS, reason="executions_in_flight") == 0
