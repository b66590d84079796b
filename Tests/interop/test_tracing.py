"""OpenTelemetry tracing and JSON logs of `weft serve`, checked end to end.

Each server here exports to an in-process OTLP/HTTP receiver
(otlp_receiver.OTLPReceiver: a fake collector decoding protobuf
ExportTraceServiceRequests).  The servers get OTEL_BSP_SCHEDULE_DELAY=200 so
batches leave every 200 ms; spans are awaited with a deadline, never with fixed
sleeps.  What is checked:

* a REST execute carrying a caller's `traceparent`: the SERVER span continues
  the caller's trace, the execution span hangs off it, one task span per
  attempt off the execution, the http task's CLIENT span off its task span,
  the target receives `traceparent` naming the CLIENT span, store spans sit
  in the same trace, attributes per the spec, resource service.name;
* the same over gRPC (traceparent in metadata, rpc.* attributes);
* malformed traceparent / tracestate: the call succeeds and starts a fresh trace;
* parent-based sampling with ratio 0; configuration from OTEL_* variables;
* JSON logs (--log-format json): parseable, trace_id/span_id on lines logged
  in a span, and no token or password anywhere on stderr;
* a dead and a slow/failing collector never fail requests; the export
  failure and dropped-span counters move.

The receiver itself is tested first, without a server.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import os
import re
import types
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

import weft_helpers as wh
from otlp_receiver import OTLPReceiver, RecordingServer, describe, encode_request
from otlp_receiver import otlp_receiver  # noqa: F401 - a fixture
from test_engine_api import closed_port, create_wf, task_ids, wait_status

SERVICE = f"weft-trace-test-{uuid.uuid4().hex[:8]}"
PASSWORD = f"Tr4ce-pw-{uuid.uuid4().hex[:12]}"  # must never reach a log line
SPAN_WAIT = 10  # seconds to wait for spans that should be in the next batch or two
BASE_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "200"}
HEX32, HEX16 = re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}")
EXECUTE_ROUTE = re.compile(r"/workflows/\{\w+\}/execute")  # the route template, never the concrete id
GRPC_EXECUTE = "weft.v1.ExecutionService/ExecuteWorkflow"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def new_ids() -> tuple[str, str]:
    """A random (trace id, span id) pair in hex, as a caller would make."""
    return os.urandom(16).hex(), os.urandom(8).hex()


def traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


def is_store(span) -> bool:
    return span.attr("db.system.name") == "sqlite"


def is_http_client(span) -> bool:
    """An outbound HTTP span (store spans may be CLIENT spans too)."""
    return span.kind == "CLIENT" and not is_store(span)


def one(spans, what: str, pred, hint: str = ""):
    found = [s for s in spans if pred(s)]
    assert len(found) == 1, (f"expected exactly one {what}, found {len(found)}{hint}:\n{describe(found)}\n"
                             f"all spans:\n{describe(spans)}")
    return found[0]


def assert_attrs(span, expected: dict, context) -> None:
    """Every expected attribute is present with that value and that Python type (int is not str)."""
    wrong = {k: (span.attributes.get(k, "<missing>"), v) for k, v in expected.items()
             if k not in span.attributes or type(span.attributes[k]) is not type(v) or span.attributes[k] != v}
    assert not wrong, (f"span {span.name!r}: attributes (got, want): {wrong}\n"
                       f"  {span.describe()}\nspans of its trace:\n{describe(context)}")


def assert_child(child, parent, context) -> None:
    assert (child.trace_id, child.parent_span_id) == (parent.trace_id, parent.span_id), (
        f"{child.name!r} should be a child of {parent.name!r}:\n  child:  {child.describe()}\n"
        f"  parent: {parent.describe()}\nspans:\n{describe(context)}")


def launch(tmp_path_factory, name: str, *args: str, env=None) -> wh.WeftServer:
    """`weft serve` with the API test flags, `args` and BASE_ENV + `env`."""
    name = re.sub(r"[^\w-]", "_", name)[:60]
    base = tmp_path_factory.mktemp(name)
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", args=[*wh.API_SERVER_ARGS, *args],
                        name=name, env={**BASE_ENV, **(env or {})})
    try:
        srv.start(timeout=30)
        return srv
    except RuntimeError as exc:
        failure = f"{exc}\n(the tracing flags and variables: see the module docstring)"
    pytest.fail(failure, pytrace=False)


def shutdown(*servers: wh.WeftServer) -> None:
    """SIGTERM the servers; fails (the teardown) unless each exits cleanly."""
    wh.finish_servers(servers)


def execute(user: wh.ApiUser, wid: str, headers: dict) -> str:
    r = user.rest.post(f"/workflows/{wid}/execute", {}, headers=headers)
    assert r.status == 202, f"execute with headers {headers}: {r}"
    return r.json["executionId"]


def noop_workflow(user: wh.ApiUser) -> dict:
    return create_wf(user, [{"key": "only", "name": "Only", "action": "noop"}])


def execution_span(spans, eid: str):
    return next((s for s in spans if s.name == "weft.execution" and s.attr("weft.execution.id") == eid), None)


def parent_of(spans, span):
    return next((s for s in spans if span is not None and s.span_id == span.parent_span_id), None)


# ---------------------------------------------------------------------------
# Fixtures: one traced server for the module, started with every flag
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rx():
    with OTLPReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def target():
    """The target of http tasks: records each request with its headers."""
    with RecordingServer() as t:
        yield t


@pytest.fixture(scope="module")
def traced(tmp_path_factory, rx, protos):
    srv = launch(tmp_path_factory, "traced", "--otel-endpoint", rx.endpoint,
                 "--trace-sampler", "parentbased_always_on", "--service-name", SERVICE,
                 "--log-format", "json", "--log-level", "debug")
    yield srv
    shutdown(srv)


@pytest.fixture
def otel_server(tmp_path_factory, request):
    """Start servers for one test: otel_server(*args, env={...})."""
    started = []

    def start(*args, env=None):
        started.append(launch(tmp_path_factory, f"{request.node.name[:50]}-{len(started)}", *args, env=env))
        return started[-1]

    yield start
    shutdown(*started)


@pytest.fixture(scope="module")
def alice(traced):
    return wh.register_and_login(traced, "Alice Trace", password=PASSWORD)


@pytest.fixture(scope="module")
def rest_run(alice, rx, target):
    """Test 1's request: POST /workflows/{id}/execute with the caller's traceparent
    for http (GET on `target`) -> noop; runs to completion.  Then waits (without
    failing) until the trace holds everything test 1 looks for."""
    tid, caller = new_ids()
    path = f"/hello/{uuid.uuid4().hex[:8]}"
    wf = create_wf(alice, [
        {"key": "fetch", "name": "Fetch", "action": "http", "config": {"url": target.url(path)}},
        {"key": "after", "name": "After", "action": "noop", "dependsOn": ["fetch"]},
    ])
    eid = execute(alice, wf["id"], {"traceparent": traceparent(tid, caller), "tracestate": "weft-test=1"})
    done = wait_status(alice, wf["id"], eid)
    assert done["status"] == "Completed", done

    def complete(spans):
        t = [s for s in spans if s.trace_id == tid]
        names = [s.name for s in t]
        return (any(s.kind == "SERVER" for s in t) and "weft.execution" in names and names.count("weft.task") >= 2
                and any(is_http_client(s) for s in t) and any(is_store(s) for s in t))

    try:
        rx.wait_for(complete, SPAN_WAIT)
        note = ""
    except AssertionError as exc:  # the tests below say precisely what is missing
        note = str(exc)
    return types.SimpleNamespace(tid=tid, caller=caller, wf=wf, ids=task_ids(wf), eid=eid, done=done,
                                 target_path=path, url_path=f"/workflows/{wf['id']}/execute", note=note)


def trace_of(rx: OTLPReceiver, run) -> list:
    spans = rx.trace(run.tid)
    detail = run.note or "all spans received:\n" + describe(rx.spans())
    assert spans, f"no span with the caller's trace id {run.tid} (caller span {run.caller}) was exported.\n{detail}"
    return spans


# ---------------------------------------------------------------------------
# 0. The receiver itself
# ---------------------------------------------------------------------------


def _post(url: str, body: bytes, ctype: str, encoding: str | None = None):
    headers = {"Content-Type": ctype, **({"Content-Encoding": encoding} if encoding else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as r:
            return r.status, r.headers.get("content-type"), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type"), exc.read()


def test_receiver_decodes_protobuf_json_gzip_and_simulates_failures():
    tid, root, child = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "aaaaaaaaaaaaaaa1"
    body = encode_request([
        {"trace_id": tid, "span_id": root, "name": "GET /x", "kind": "SERVER", "start_ns": 10, "end_ns": 20,
         "attributes": {"http.response.status_code": 200, "ok": True, "ratio": 0.5, "url.path": "/x"}},
        {"trace_id": tid, "span_id": child, "parent_span_id": root, "name": "db", "kind": "CLIENT"},
    ], resource={"service.name": "hand"})
    with OTLPReceiver() as r:
        status, ctype, reply = _post(r.url("/v1/traces"), body, "application/x-protobuf")
        assert (status, ctype) == (200, "application/x-protobuf"), (status, ctype, reply)
        trace_service_pb2.ExportTraceServiceResponse.FromString(reply)
        got = r.wait_for(lambda spans: spans if len(spans) == 2 else None, 2)
        server, db = got
        assert (server.trace_id, server.span_id, server.parent_span_id, server.kind) == (tid, root, "", "SERVER")
        assert server.attributes == {"http.response.status_code": 200, "ok": True, "ratio": 0.5, "url.path": "/x"}
        assert type(server.attributes["http.response.status_code"]) is int
        assert (server.start_ns, server.end_ns, server.resource, server.status) == (10, 20, {"service.name": "hand"}, "UNSET")
        assert (db.parent_span_id, db.kind, db.name) == (root, "CLIENT", "db")

        # gzip, and OTLP JSON (hex ids, enum numbers, int64 as strings)
        assert _post(r.url("/v1/traces"), gzip.compress(body), "application/x-protobuf", "gzip")[0] == 200
        doc = json.loads(json_format.MessageToJson(trace_service_pb2.ExportTraceServiceRequest.FromString(body)))
        for span in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:
                    span[key] = base64.b64decode(span[key]).hex()
            span["kind"] = 3 if span["name"] == "db" else 2
        status, ctype, reply = _post(r.url("/v1/traces"), json.dumps(doc).encode(), "application/json")
        assert (status, ctype, reply) == (200, "application/json", b"{}")
        assert [(s.span_id, s.parent_span_id, s.kind) for s in r.spans()[2:]] == [
            (root, "", "SERVER"), (child, root, "CLIENT")] * 2

        assert _post(r.url("/v1/traces"), b"\xff\x00junk", "application/x-protobuf")[0] == 400
        assert len(r.errors) == 1, r.errors
        assert _post(r.url("/v1/logs"), body, "application/x-protobuf")[0] == 404
        assert r.batches == 3 and len(r.trace(tid)) == 6
        with pytest.raises(AssertionError, match=r"(?s)timed out.*'GET /x' SERVER trace=5b8e"):
            r.wait_for(lambda spans: False, 0.1)

    with OTLPReceiver(status=503, delay=0.05) as failing:
        assert _post(failing.url("/v1/traces"), body, "application/x-protobuf")[0] == 503
        assert (failing.rejected, failing.spans()) == (1, [])


# ---------------------------------------------------------------------------
# 1. REST: one request, its execution, tasks, outbound HTTP and store spans
# ---------------------------------------------------------------------------


def test_rest_server_span_continues_the_callers_trace(rx, rest_run, traced):
    spans = trace_of(rx, rest_run)
    server = one(spans, f"SERVER span in trace {rest_run.tid}", lambda s: s.kind == "SERVER")
    assert server.parent_span_id == rest_run.caller, (
        f"SERVER span's parent should be the caller's span {rest_run.caller}:\n{describe(spans)}")
    route = server.attr("http.route")
    assert isinstance(route, str) and EXECUTE_ROUTE.fullmatch(route), (
        f"http.route should be the route template like /workflows/{{id}}/execute, got {route!r}\n{describe(spans)}")
    assert server.name == f"POST {route}", server.describe()
    assert_attrs(server, {"http.request.method": "POST", "http.response.status_code": 202,
                          "url.path": rest_run.url_path, "url.scheme": "http", "client.address": "127.0.0.1",
                          "server.address": "127.0.0.1", "server.port": traced.port}, spans)
    # The client's own port: an ephemeral one, not the server's.
    port = server.attr("client.port")
    assert isinstance(port, int) and 0 < port < 65536 and port != traced.port, server.describe()


def test_execution_and_task_spans_hang_off_the_request(rx, rest_run):
    spans = trace_of(rx, rest_run)
    wid, eid = rest_run.wf["id"], rest_run.eid
    server = one(spans, "SERVER span", lambda s: s.kind == "SERVER")
    execution = one(spans, "weft.execution span", lambda s: s.name == "weft.execution")
    assert execution.kind == "INTERNAL", execution.describe()
    assert_child(execution, server, spans)
    assert_attrs(execution, {"weft.workflow.id": wid, "weft.workflow.name": rest_run.wf["name"],
                             "weft.execution.id": eid, "weft.execution.status": "Completed",
                             "weft.execution.cause": "none"}, spans)

    tasks = [s for s in spans if s.name == "weft.task"]
    by_task = {s.attr("weft.task.id"): s for s in tasks}
    assert len(tasks) == 2 and set(by_task) == set(rest_run.ids.values()), (
        f"one weft.task span per attempt (tasks {rest_run.ids}, one attempt each):\n{describe(spans)}")
    for key, action in (("fetch", "http"), ("after", "noop")):
        task = by_task[rest_run.ids[key]]
        assert task.kind == "INTERNAL", task.describe()
        assert_child(task, execution, spans)
        assert_attrs(task, {"weft.workflow.id": wid, "weft.execution.id": eid, "weft.task.type": action,
                            "weft.task.attempt": 1, "weft.task.outcome": "completed"}, spans)
        # (a task span may end a moment after the execution's: its outcome ends both)
        assert execution.start_ns <= task.start_ns <= execution.end_ns, (
            f"task span starts outside its execution span:\n{describe(spans)}")
    assert by_task[rest_run.ids["fetch"]].end_ns <= by_task[rest_run.ids["after"]].start_ns, (
        f"'after' depends on 'fetch'; its span starts after fetch's ended:\n{describe(spans)}")


def test_a_failed_execution_span_names_its_cause(alice, rx):
    """A task's own error (a template reading a field that is not there) fails
    the execution: its span is an error with `weft.execution.cause` task_error,
    the value of the metrics' `cause` label."""
    tid, caller = new_ids()
    wf = create_wf(alice, [{"key": "say", "name": "Say", "action": "log",
                            "config": {"message": "hello {{ input.who.name }}"}}])
    eid = execute(alice, wf["id"], {"traceparent": traceparent(tid, caller)})
    assert wait_status(alice, wf["id"], eid)["status"] == "Failed"
    rx.wait_for(lambda spans: any(s.trace_id == tid and s.name == "weft.execution" for s in spans), SPAN_WAIT)
    spans = rx.trace(tid)
    execution = one(spans, "weft.execution span", lambda s: s.name == "weft.execution")
    assert_attrs(execution, {"weft.execution.status": "Failed", "weft.execution.cause": "task_error"}, spans)
    assert execution.status == "ERROR", execution.describe()


def test_http_task_client_span_and_outgoing_traceparent(rx, rest_run, target):
    spans = trace_of(rx, rest_run)
    fetch = one(spans, "weft.task span of 'fetch'",
                lambda s: s.name == "weft.task" and s.attr("weft.task.id") == rest_run.ids["fetch"])
    received = target.requests_to(rest_run.target_path)
    assert len(received) == 1, received
    sent = received[0]["headers"].get("traceparent")
    client = one(spans, "outbound HTTP CLIENT span", is_http_client, f" (the target got traceparent {sent})")
    assert client.name == "GET", client.describe()
    assert_child(client, fetch, spans)
    assert_attrs(client, {"http.request.method": "GET", "url.full": target.url(rest_run.target_path),
                          "server.address": "127.0.0.1", "server.port": target.port,
                          "http.response.status_code": 200}, spans)
    assert fetch.start_ns <= client.start_ns <= client.end_ns <= fetch.end_ns, describe(spans)
    assert sent == traceparent(rest_run.tid, client.span_id), (
        f"the target should get traceparent 00-<trace>-<CLIENT span id>-01; got headers {received[0]['headers']}\n"
        f"{describe(spans)}")


def test_store_spans_resource_and_a_whole_tree(rx, rest_run):
    spans = trace_of(rx, rest_run)
    server = one(spans, "SERVER span", lambda s: s.kind == "SERVER")
    store = [s for s in spans if is_store(s)]
    assert store, f"no span with db.system.name=sqlite in the trace:\n{describe(spans)}"
    for s in store:
        op = s.attr("db.operation.name")
        assert isinstance(op, str) and op, f"store span without db.operation.name: {s.describe()}"
    assert any(s.parent_span_id == server.span_id for s in store), (
        f"the execute handler's store transaction should be a child of the SERVER span:\n{describe(spans)}")
    known = {s.span_id for s in spans} | {rest_run.caller}
    orphans = [s for s in spans if s.parent_span_id not in known]
    assert not orphans, f"spans whose parent was never exported:\n{describe(orphans)}\ntrace:\n{describe(spans)}"
    assert len({s.span_id for s in spans}) == len(spans), f"duplicate span ids:\n{describe(spans)}"
    instance_ids = {s.resource.get("service.instance.id") for s in spans}
    assert len(instance_ids) == 1, f"one service.instance.id per process, got {instance_ids}"
    (instance_id,) = instance_ids
    assert isinstance(instance_id, str) and re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", instance_id), instance_id
    for s in spans:
        assert s.resource.get("service.name") == SERVICE, f"resource {s.resource} of {s.describe()}"
        assert 0 < s.start_ns <= s.end_ns, s.describe()


# ---------------------------------------------------------------------------
# 2. gRPC
# ---------------------------------------------------------------------------


def grpc_execute(traced, v1, user, wid: str, extra_md=()) -> str:
    ch = wh.new_channel(traced.target)
    try:
        stub = v1.executions_pb2_grpc.ExecutionServiceStub(ch)
        reply = stub.ExecuteWorkflow(v1.executions_pb2.ExecuteWorkflowRequest(workflow_id=wid),
                                     metadata=wh.grpc_auth(user) + tuple(extra_md), timeout=10)
    finally:
        ch.close()
    assert reply.execution_id.startswith("exe_"), reply
    return reply.execution_id


def test_grpc_execute_continues_the_callers_trace(rx, traced, v1, alice):
    tid, caller = new_ids()
    wf = noop_workflow(alice)
    eid = grpc_execute(traced, v1, alice, wf["id"],
                       (("traceparent", traceparent(tid, caller)), ("tracestate", "weft-test=2")))
    spans = rx.wait_for(lambda spans: (lambda t: t if execution_span(t, eid) and any(s.kind == "SERVER" for s in t)
                                       else None)([s for s in spans if s.trace_id == tid]), SPAN_WAIT,
                        f"SERVER and weft.execution spans in the caller's trace {tid}")
    server = one(spans, "SERVER span", lambda s: s.kind == "SERVER")
    assert server.name == GRPC_EXECUTE, server.describe()
    assert server.parent_span_id == caller, f"parent should be the caller's span {caller}:\n{describe(spans)}"
    assert_attrs(server, {"rpc.system": "grpc", "rpc.service": "weft.v1.ExecutionService",
                          "rpc.method": "ExecuteWorkflow", "rpc.grpc.status_code": 0}, spans)
    execution = execution_span(spans, eid)
    assert_child(execution, server, spans)
    assert_attrs(execution, {"weft.workflow.id": wf["id"], "weft.execution.status": "Completed"}, spans)


def test_client_errors_are_not_span_errors_and_say_their_outcome(rx, traced, v1, alice):
    """One classification (RequestOutcome) for spans and SLIs: a NotFound over
    gRPC and a 404 over REST are client errors, so their SERVER spans are not
    errors (OpenTelemetry: 4xx is not a server span's error) and carry
    weft.request.outcome=client_error; a successful call carries none."""
    tid, caller = new_ids()
    r = alice.rest.get("/workflows/wf_00000000000000000000000000", headers={"traceparent": traceparent(tid, caller)})
    assert r.status == 404, r
    ch = wh.new_channel(traced.target)
    try:
        stub = v1.workflows_pb2_grpc.WorkflowServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetWorkflow(v1.workflows_pb2.GetWorkflowRequest(workflow_id="wf_00000000000000000000000001"),
                             metadata=wh.grpc_auth(alice) + (("traceparent", traceparent(tid, caller)),), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        ok = stub.ListWorkflows(v1.workflows_pb2.ListWorkflowsRequest(page_size=1),
                                metadata=wh.grpc_auth(alice) + (("traceparent", traceparent(tid, caller)),), timeout=10)
        assert ok is not None
    finally:
        ch.close()
    spans = rx.wait_for(lambda spans: (lambda t: t if len(t) >= 3 else None)(
        [s for s in spans if s.trace_id == tid and s.kind == "SERVER"]), SPAN_WAIT, f"three SERVER spans in {tid}")
    rest = one(spans, "REST SERVER span", lambda s: s.attr("http.response.status_code") == 404)
    grpc_nf = one(spans, "gRPC NotFound span", lambda s: s.attr("rpc.grpc.status_code") == 5)
    grpc_ok = one(spans, "gRPC OK span", lambda s: s.attr("rpc.grpc.status_code") == 0)
    for span in (rest, grpc_nf):
        assert span.attr("weft.request.outcome") == "client_error", span.describe()
        assert span.status != "ERROR" and span.attr("error.type") is None, span.describe()
    assert grpc_ok.attr("weft.request.outcome") is None and grpc_ok.status != "ERROR", grpc_ok.describe()


# ---------------------------------------------------------------------------
# 3. Malformed trace context
# ---------------------------------------------------------------------------


def malformed_contexts(tid: str, sid: str) -> dict:
    return {
        "garbage": {"traceparent": "00-xyz-bad"},
        "garbage + bad tracestate": {"traceparent": "00-xyz-bad", "tracestate": "=,;;not a=list=="},
        "all-zero trace id": {"traceparent": traceparent("0" * 32, sid)},
        "all-zero parent id": {"traceparent": traceparent(tid, "0" * 16)},
        "short trace id": {"traceparent": traceparent(tid[:30], sid)},
        "long parent id": {"traceparent": traceparent(tid, sid + "ab")},
        "version ff": {"traceparent": "ff" + traceparent(tid, sid)[2:]},
        "non-hex trace id": {"traceparent": traceparent("xy" * 16, sid)},
        "non-hex flags": {"traceparent": traceparent(tid, sid, "zz")},
        "empty": {"traceparent": ""},
        "tracestate only": {"tracestate": "vendor=value"},
        "bad tracestate only": {"tracestate": "!!!"},
    }


def assert_fresh_roots(servers: dict, tid: str, spans) -> None:
    """{variant: SERVER span}: each a root of its own new trace."""
    bad = {v: s.describe() for v, s in servers.items()
           if s.parent_span_id or s.trace_id == tid or not HEX32.fullmatch(s.trace_id) or s.trace_id == "0" * 32}
    assert not bad, "SERVER spans of calls with a malformed trace context must start a new trace:\n" + "\n".join(
        f"  {v}: {d}" for v, d in bad.items()) + f"\nall spans:\n{describe(spans)}"
    traces = [s.trace_id for s in servers.values()]
    assert len(set(traces)) == len(traces), f"each call its own trace:\n{describe(servers.values())}"


def test_malformed_trace_context_is_ignored(rx, traced, v1, alice):
    tid, sid = new_ids()
    rest = {}
    for variant, headers in malformed_contexts(tid, sid).items():
        wf = noop_workflow(alice)  # one workflow per variant: url.path finds its SERVER span
        execute(alice, wf["id"], headers)
        rest[variant] = f"/workflows/{wf['id']}/execute"
    # A valid traceparent with a bad tracestate: W3C lets a receiver drop the
    # tracestate only or the whole context; the call must work either way.
    mixed_wf = noop_workflow(alice)
    execute(alice, mixed_wf["id"], {"traceparent": traceparent(tid, sid), "tracestate": "!!!"})
    wf = noop_workflow(alice)
    grpc_eids = {variant: grpc_execute(traced, v1, alice, wf["id"], (("traceparent", value),))
                 for variant, value in (("garbage", "00-xyz-bad"), ("all-zero trace id", traceparent("0" * 32, sid)),
                                        ("version ff", "ff" + traceparent(tid, sid)[2:]))}

    def rest_server(spans, path):
        return next((s for s in spans if s.kind == "SERVER" and s.attr("url.path") == path), None)

    def found(spans):
        r = {v: rest_server(spans, p) for v, p in rest.items()}
        g = {v: parent_of(spans, execution_span(spans, e)) for v, e in grpc_eids.items()}
        mixed = rest_server(spans, f"/workflows/{mixed_wf['id']}/execute")
        return (r, g, mixed) if mixed and all(r.values()) and all(g.values()) else None

    rest_spans, grpc_spans, mixed = rx.wait_for(
        found, SPAN_WAIT, f"SERVER spans of REST calls to {sorted(rest.values())} and the parents of the "
                          f"weft.execution spans of gRPC executions {sorted(grpc_eids.values())}")
    everything = rx.spans()
    assert_fresh_roots({**rest_spans, **{f"gRPC {v}": s for v, s in grpc_spans.items()}}, tid, everything)
    assert all(s.name == GRPC_EXECUTE for s in grpc_spans.values()), describe(grpc_spans.values())
    assert (mixed.trace_id, mixed.parent_span_id) == (tid, sid) or (
        not mixed.parent_span_id and mixed.trace_id != tid), f"half-adopted context: {mixed.describe()}"


# ---------------------------------------------------------------------------
# 4. Sampling and configuration from the environment
# ---------------------------------------------------------------------------


def test_parent_based_ratio_zero_exports_only_sampled_parents(otel_server, otlp_receiver):
    srv = otel_server("--otel-endpoint", otlp_receiver.endpoint, "--trace-sampler", "parentbased_traceidratio",
                      "--trace-sampler-arg", "0")
    user = wh.register_and_login(srv, "Sam Pling")
    wf = noop_workflow(user)
    unsampled_tid, unsampled_parent = new_ids()
    quiet = [execute(user, wf["id"], {}) for _ in range(5)]
    quiet.append(execute(user, wf["id"], {"traceparent": traceparent(unsampled_tid, unsampled_parent, "00")}))
    # Contexts the tracer's own parser would reject must not become sampled
    # roots (that would let any caller defeat the sampler): a later version,
    # a bad tracestate next to an unsampled parent, garbage.
    later_tid, later_parent = new_ids()
    quiet.append(execute(user, wf["id"], {"traceparent": f"01-{later_tid}-{later_parent}-00-future"}))
    quiet.append(execute(user, wf["id"], {"traceparent": traceparent(*new_ids(), "00"), "tracestate": "@@bad"}))
    quiet.append(execute(user, wf["id"], {"traceparent": "garbage"}))
    for eid in quiet:
        assert wait_status(user, wf["id"], eid)["status"] == "Completed"

    sampled = []
    for headers in ({}, {"tracestate": "@@bad"}, {"version": "01"}):
        tid, caller = new_ids()
        value = traceparent(tid, caller, "01")
        if headers.pop("version", None):
            value = f"01-{tid}-{caller}-01-future"
        eid = execute(user, wf["id"], {"traceparent": value, **headers})
        assert wait_status(user, wf["id"], eid)["status"] == "Completed"
        sampled.append((tid, caller, eid))
    for tid, caller, eid in sampled:
        spans = otlp_receiver.wait_for(lambda spans: (lambda t: t if execution_span(t, eid) else None)(
            [s for s in spans if s.trace_id == tid]), SPAN_WAIT,
            f"the sampled request's trace {tid} (a sampled parent is followed at ratio 0)")
        server = one(spans, "SERVER span", lambda s: s.kind == "SERVER")
        assert server.parent_span_id == caller, describe(spans)
    sampled_tids = {tid for tid, _, _ in sampled}
    # Batches leave in order: whatever the unsampled calls had exported is here by now.
    strays = [s for s in otlp_receiver.spans() if s.trace_id not in sampled_tids]
    assert not strays, f"ratio 0 without a sampled parent exports nothing, yet got:\n{describe(strays)}"


def test_otel_environment_variables_configure_tracing(otel_server, otlp_receiver):
    name = f"{SERVICE}-env"
    srv = otel_server(env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_SERVICE_NAME": name,
                           "OTEL_TRACES_SAMPLER": "always_on"})
    user = wh.register_and_login(srv, "Env Config")
    assert user.rest.get("/users/me").status == 200
    spans = otlp_receiver.wait_for(lambda spans: [s for s in spans if s.kind == "SERVER" and s.attr("url.path") == "/users/me"],
                             SPAN_WAIT, "a SERVER span of GET /users/me (endpoint, sampler from OTEL_* variables)")
    assert all(s.resource.get("service.name") == name for s in otlp_receiver.spans()), describe(otlp_receiver.spans())
    assert spans[0].parent_span_id == "" and spans[0].name == "GET /users/me", describe(spans)


# ---------------------------------------------------------------------------
# 5. JSON logs
# ---------------------------------------------------------------------------

LEVELS = {"trace", "debug", "info", "notice", "warning", "error", "critical"}


def json_lines(srv: wh.WeftServer) -> list[dict]:
    docs = []
    for line in srv.stderr_text().splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            pytest.fail(f"non-JSON line on stderr with --log-format json: {line!r}")
        assert isinstance(doc, dict), line
        docs.append(doc)
    return docs


def test_json_logs_carry_trace_ids_and_no_secrets(rx, traced, alice, rest_run):
    def traced_lines():
        mine = [d for d in json_lines(traced) if d.get("trace_id") == rest_run.tid]
        msgs = {d.get("message") for d in mine}
        return mine if {"request", "execution started", "execution finished"} <= msgs else None

    mine = wh.wait_until(traced_lines, 5, message=lambda: (
        f"log lines with trace_id {rest_run.tid} for 'request', 'execution started' and 'execution finished'; "
        f"lines with that trace id: {[d for d in json_lines(traced) if d.get('trace_id') == rest_run.tid]}"))
    for doc in json_lines(traced):
        assert {"timestamp", "level", "message", "label"} <= set(doc), f"missing keys: {doc}"
        assert doc["timestamp"].endswith(("Z", "+00:00")) and wh.rfc3339_nanos(doc["timestamp"]), doc
        assert doc["level"] in LEVELS and isinstance(doc["message"], str) and doc["label"], doc
        if "trace_id" in doc or "span_id" in doc:
            assert HEX32.fullmatch(str(doc.get("trace_id"))) and HEX16.fullmatch(str(doc.get("span_id"))), doc
    request = [d for d in mine if d["message"] == "request"]
    assert request and all(d["level"] == "debug" for d in request), request
    for msg in ("execution started", "execution finished"):
        lines = [d for d in mine if d["message"] == msg]
        assert any(d.get("execution_id") == rest_run.eid for d in lines), (msg, lines)
    exported = {s.span_id for s in rx.trace(rest_run.tid)}
    unknown = [d for d in mine if d["span_id"] not in exported]
    assert not unknown, (f"log lines name spans that were never exported:\n{unknown}\n"
                         f"spans of the trace:\n{describe(rx.trace(rest_run.tid))}")

    text = traced.stderr_text()
    for secret, what in ((alice.token, "bearer token"), (alice.token.split(".")[-1], "token signature"),
                         (PASSWORD, "password")):
        assert secret not in text, f"the {what} appears on stderr: {[ln for ln in text.splitlines() if secret in ln][:3]}"


# ---------------------------------------------------------------------------
# 6. A dead or slow collector never hurts requests
# ---------------------------------------------------------------------------


def hammer(srv: wh.WeftServer, n: int = 200) -> None:
    user = wh.register_and_login(srv, "Ham Mer")
    wf = noop_workflow(user)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: user.rest.get(f"/workflows/{wf['id']}").status, range(n)))
    assert statuses == [200] * n, f"{n - statuses.count(200)} of {n} requests failed: {sorted(set(statuses))}"


def metric(srv: wh.WeftServer, name: str) -> float:
    return wh.fetch_metrics(srv).total(name)


@pytest.mark.parametrize("collector", ["closed port", "slow 503"])
def test_a_dead_or_slow_collector_never_fails_requests(otel_server, collector):
    """A collector that refuses connections, and one that answers 503 after
    5 s: 200 requests all succeed; export failures are counted, and with
    OTEL_BSP_MAX_QUEUE_SIZE=8 a stuck exporter makes the queue drop spans.
    The exporter gives up after 2 s (its default, 10 s, would only slow the
    test: the HTTP client retries refused connections and 503s until then)."""
    env = {"OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000", "OTEL_BSP_EXPORT_TIMEOUT": "3000"}
    rx = OTLPReceiver(delay=5, status=503) if collector == "slow 503" else None
    try:
        endpoint = rx.endpoint if rx else f"http://127.0.0.1:{closed_port()}"
        srv = otel_server("--otel-endpoint", endpoint, "--trace-sampler", "always_on", env=env)
        hammer(srv)
        wh.wait_until(lambda: metric(srv, "weft_trace_export_failures_total") > 0, 20,
                      message=f"weft_trace_export_failures_total > 0 with a {collector} collector")
        if rx:
            wh.wait_until(lambda: metric(srv, "weft_trace_spans_dropped_total") > 0, 15,
                          message="weft_trace_spans_dropped_total > 0 with OTEL_BSP_MAX_QUEUE_SIZE=8 while the "
                                  "exporter waits on a slow collector")
            assert rx.requests_to("/v1/traces") and not rx.spans(), "the exporter should have reached the collector"
        status, _, body = wh.http_get(srv, "/healthz")
        assert status == 200, (status, body)
    finally:
        if rx:
            rx.close()  # before the server stops: its last flush must not wait 5 s


# ---------------------------------------------------------------------------
# 7. External workers continue the trace; shutdown ends open spans; secrets
#    in OTEL_* variables stay out of the log
# ---------------------------------------------------------------------------


def test_external_worker_gets_the_attempts_trace_context(rx, traced, alice):
    from test_workers import complete, ext, new_queue, poll_task

    queue = new_queue()
    wf = create_wf(alice, [ext("mail", queue, input={"to": "ops@example.com"})])
    tid, caller = new_ids()
    eid = execute(alice, wf["id"], {"traceparent": traceparent(tid, caller)})
    task = poll_task(alice, queue)
    parts = task.get("traceparent", "").split("-")
    assert len(parts) == 4 and parts[1] == tid and parts[3] == "01", task
    r = complete(alice, task["leaseToken"], {"sent": True})
    assert r.status == 200, r
    assert wait_status(alice, wf["id"], eid)["status"] == "Completed"

    def spans_of_attempt(spans):
        mine = [s for s in spans if s.trace_id == tid]
        attempt = [s for s in mine if s.span_id == parts[2]]
        return mine if attempt and execution_span(mine, eid) else None

    mine = rx.wait_for(spans_of_attempt, SPAN_WAIT, f"the external attempt's span {parts[2]} and its execution")
    attempt = one(mine, "the external task span", lambda s: s.span_id == parts[2])
    assert attempt.name == "weft.task", describe(mine)
    assert_attrs(attempt, {"weft.task.type": "external", "weft.task.outcome": "completed", "weft.task.attempt": 1},
                 describe(mine))
    assert_child(attempt, execution_span(mine, eid), describe(mine))


def test_shutdown_ends_open_execution_spans_and_otlp_headers_are_not_logged(otel_server, otlp_receiver, tmp_path):
    secret = f"sekret-{uuid.uuid4().hex}"
    srv = otel_server("--otel-endpoint", otlp_receiver.endpoint, "--trace-sampler", "always_on",
                      env={"OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={secret}"})
    user = wh.register_and_login(srv, "Shutdown Trace")
    wf = create_wf(user, [{"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "1h"}}])
    eid = execute(user, wf["id"], {})
    rc = srv.stop(timeout=20)
    assert rc == 0, f"exit code {rc} after SIGTERM with an execution waiting; crash: {srv.crash_line()}"
    otlp_receiver.wait_for(lambda spans: [s for s in [execution_span(spans, eid)] if s], SPAN_WAIT,
                           "the running execution's span, ended at shutdown")
    spans = otlp_receiver.spans()
    span = execution_span(spans, eid)
    assert span.attr("weft.interrupted") is True and span.attr("weft.execution.status") == "Running", describe(spans)
    # The collector got the header; the log never shows its value.
    assert any(r["headers"].get("x-api-key") == secret for r in otlp_receiver.requests_to("/v1/traces"))
    # swift-otel reports the variable it applied; its value is redacted.
    assert "OTEL_EXPORTER_OTLP_TRACES_HEADERS" in srv.stderr_text() and "<redacted>" in srv.stderr_text()
    assert secret not in srv.stderr_text()


def test_inline_calls_export_server_spans_with_their_parent_and_times(rx, traced, v1, protos, alice):
    """Health/Check runs inline on the event loop and GetWorkflow answers
    from the cache inline (after a first, task-path miss): their spans are
    recorded and shipped in batches, with the caller's parent, attributes
    and real start/end times."""
    wf = noop_workflow(alice)
    calls = []
    ch = wh.new_channel(traced.target)
    try:
        health = protos.health_pb2_grpc.HealthStub(ch)
        workflows = v1.workflows_pb2_grpc.WorkflowServiceStub(ch)
        for method, call in [
            ("grpc.health.v1.Health/Check", lambda md: health.Check(protos.health_pb2.HealthCheckRequest(), metadata=md, timeout=10)),
            ("weft.v1.WorkflowService/GetWorkflow", lambda md: workflows.GetWorkflow(
                v1.workflows_pb2.GetWorkflowRequest(workflow_id=wf["id"]), metadata=wh.grpc_auth(alice) + md, timeout=10)),
            ("weft.v1.WorkflowService/GetWorkflow", lambda md: workflows.GetWorkflow(
                v1.workflows_pb2.GetWorkflowRequest(workflow_id=wf["id"]), metadata=wh.grpc_auth(alice) + md, timeout=10)),
        ]:
            tid, caller = new_ids()
            call((("traceparent", traceparent(tid, caller)),))
            calls.append((method, tid, caller))
    finally:
        ch.close()
    for method, tid, caller in calls:
        spans = rx.wait_for(lambda s: [x for x in s if x.trace_id == tid and x.kind == "SERVER"], SPAN_WAIT,
                            f"the SERVER span of {method} in trace {tid}")
        assert len(spans) == 1, describe(spans)
        span = spans[0]
        assert span.name == method and span.parent_span_id == caller, describe(spans)
        assert_attrs(span, {"rpc.system": "grpc", "rpc.grpc.status_code": 0}, describe(spans))
        assert 0 < span.end_ns - span.start_ns < 5_000_000_000, describe(spans)


# ---------------------------------------------------------------------------
# 8. Schedules and triggers (docs/SCHEDULES.md "Observability"): the
#    weft.schedule.tick, weft.webhook and weft.event.publish spans are the
#    parents of the weft.execution spans of the executions they start.  The
#    module's server samples with parentbased_always_on, so a tick (a root:
#    no request) is sampled too.
# ---------------------------------------------------------------------------


def spans_until_execution(rx: OTLPReceiver, eid: str, pred, what: str):
    """Waits until the execution's span and a span matching `pred` are both
    exported; returns (all spans, execution span)."""
    def found(spans):
        ex = execution_span(spans, eid)
        return (spans, ex) if ex and any(pred(s) for s in spans) else None

    return rx.wait_for(found, SPAN_WAIT, f"the weft.execution span of {eid} and {what}")


def test_schedule_tick_span_parents_the_execution_it_fires(rx, traced, alice):
    wf = noop_workflow(alice)
    wid = wf["id"]
    r = alice.rest.post(f"/workflows/{wid}/schedules", {"cron": "* * * * * *", "overlapPolicy": "allow"})
    assert r.status == 201, r
    sid = r.json["id"]
    try:
        first = wh.wait_until(
            lambda: next(iter(wh.all_pages(alice.rest, f"/workflows/{wid}/executions", "executions")), None), 5,
            interval=0.1, message=f"an execution started by the every-second schedule {sid}")
    finally:
        p = alice.rest.post(f"/workflows/{wid}/schedules/{sid}/pause", {})
        assert p.status == 200 and p.json.get("paused") is True, p
    eid = first["executionId"]
    done = wait_status(alice, wid, eid)
    assert done.get("trigger") == "schedule" and done.get("triggerId") == sid and done.get("scheduledTime"), done
    tick_ns = wh.rfc3339_nanos(done["scheduledTime"])

    def is_tick(s):
        return s.name == "weft.schedule.tick" and s.attr("weft.schedule.id") == sid

    def is_this_tick(s):
        value = s.attr("weft.schedule.tick")
        return is_tick(s) and isinstance(value, str) and wh._RFC3339_RE.match(value) and wh.rfc3339_nanos(value) == tick_ns

    spans, execution = spans_until_execution(
        rx, eid, is_this_tick, f"a weft.schedule.tick span of schedule {sid} for tick {done['scheduledTime']}")
    ticks = [s for s in spans if is_tick(s)]
    tick = one(ticks, f"weft.schedule.tick span of {sid} for its tick {done['scheduledTime']}", is_this_tick)
    assert_attrs(tick, {"weft.schedule.id": sid, "weft.schedule.outcome": "fired"}, ticks)
    assert_child(execution, tick, [s for s in spans if s.trace_id == tick.trace_id] + ticks)
    assert_attrs(execution, {"weft.workflow.id": wid, "weft.execution.status": "Completed"},
                 [s for s in spans if s.trace_id == tick.trace_id])


def test_webhook_span_continues_the_callers_trace_and_parents_the_execution(rx, traced, alice):
    wf = noop_workflow(alice)
    r = alice.rest.post(f"/workflows/{wf['id']}/triggers", {"type": "webhook"})
    assert r.status == 201, r
    hid = r.json["id"]
    tid, caller = new_ids()
    r = wh.RestClient(traced).request("POST", f"/hooks/{hid}", raw=json.dumps({"order": 7}).encode(),
                                      headers={"traceparent": traceparent(tid, caller)})
    assert r.status == 202, r
    eid = r.json["executionId"]
    assert wait_status(alice, wf["id"], eid)["status"] == "Completed"

    def is_hook(s):
        return s.name == "weft.webhook" and s.attr("weft.trigger.id") == hid

    spans, execution = spans_until_execution(rx, eid, is_hook, f"the weft.webhook span of trigger {hid}")
    trace = [s for s in spans if s.trace_id == tid]
    hook = one(trace, f"weft.webhook span of {hid} in the caller's trace {tid}", is_hook,
               f" (weft.webhook spans anywhere: {describe([s for s in spans if is_hook(s)])})")
    assert_attrs(hook, {"weft.trigger.id": hid}, trace)
    assert_child(execution, hook, trace or [execution])


def test_event_publish_span_continues_the_callers_trace_and_parents_the_execution(rx, traced, alice):
    wf = noop_workflow(alice)
    name = f"trace.{uuid.uuid4().hex[:8]}"
    r = alice.rest.post(f"/workflows/{wf['id']}/triggers", {"type": "event", "eventName": name})
    assert r.status == 201, r
    tid, caller = new_ids()
    r = alice.rest.post("/events", {"name": name, "payload": {"n": 1}}, headers={"traceparent": traceparent(tid, caller)})
    assert r.status == 200, r
    started = r.json.get("executionIds", [])
    assert len(started) == 1, r.json
    eid = started[0]
    assert wait_status(alice, wf["id"], eid)["status"] == "Completed"

    def is_publish(s):
        return s.name == "weft.event.publish" and s.attr("weft.event.name") == name

    spans, execution = spans_until_execution(rx, eid, is_publish, f"the weft.event.publish span of {name!r}")
    trace = [s for s in spans if s.trace_id == tid]
    publish = one(trace, f"weft.event.publish span of {name!r} in the caller's trace {tid}", is_publish,
                  f" (weft.event.publish spans anywhere: {describe([s for s in spans if is_publish(s)])})")
    assert_attrs(publish, {"weft.event.name": name}, trace)
    assert_child(execution, publish, trace or [execution])


# ---------------------------------------------------------------------------
# 9. Notifications (docs/NOTIFICATIONS.md "Observability"): each delivery is
#    a CLIENT span weft.notification.deliver in the trace of the execution
#    whose event it reports (the outbox row keeps the execution's context).
# ---------------------------------------------------------------------------


def test_notification_delivery_span_joins_the_executions_trace(rx, traced, alice, target):
    wf = noop_workflow(alice)
    path = f"/notify/{uuid.uuid4().hex[:8]}"
    r = alice.rest.post(f"/workflows/{wf['id']}/subscriptions",
                        {"events": ["execution.completed"], "notifyVia": "webhook", "destination": target.url(path)})
    assert r.status == 201, r
    tid, caller = new_ids()
    eid = execute(alice, wf["id"], {"traceparent": traceparent(tid, caller)})
    assert wait_status(alice, wf["id"], eid)["status"] == "Completed"
    wh.wait_until(lambda: target.requests_to(path), SPAN_WAIT, message=f"the webhook notification of {eid} at {path}")
    delivery_id = target.requests_to(path)[0]["headers"]["x-weft-delivery-id"]

    def is_delivery(s):
        return s.name == "weft.notification.deliver" and s.attr("weft.execution.id") == eid

    spans, execution = spans_until_execution(rx, eid, is_delivery, f"the weft.notification.deliver span of {eid}")
    delivery = one([s for s in spans if is_delivery(s)], f"weft.notification.deliver span of {eid}", is_delivery)
    assert delivery.trace_id == execution.trace_id == tid, (delivery.trace_id, execution.trace_id, tid)
    assert delivery.kind == "CLIENT", delivery.kind
    assert_attrs(delivery, {"weft.notification.event": "execution.completed", "weft.notification.channel": "webhook",
                            "weft.notification.delivery_id": delivery_id, "weft.notification.outcome": "delivered",
                            "weft.workflow.id": wf["id"]}, [delivery])


def test_provisioned_log_links_find_the_trace_id_of_real_log_lines(traced, rest_run, rx):
    """dashboards/provisioning/datasources/prometheus.yml links logs to traces
    with a derived field whose regex must find the trace id in Weft's own
    JSON lines, and points exemplars and logs at the provisioned traces data
    source: checked against this module's traced server's stderr."""
    import yaml
    doc = yaml.safe_load((wh.REPO_ROOT / "dashboards/provisioning/datasources/prometheus.yml").read_text())
    sources = {d["uid"]: d for d in doc["datasources"]}
    assert sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"] == [{"name": "trace_id", "datasourceUid": "traces"}]
    assert sources["traces"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "logs"
    (field,) = sources["logs"]["jsonData"]["derivedFields"]
    assert field["datasourceUid"] == "traces"
    pattern = re.compile(field["matcherRegex"])
    lines = [line for line in traced.stderr_text().splitlines() if rest_run.tid in line]
    assert lines, f"no log line with trace id {rest_run.tid}"
    for line in lines:
        m = pattern.search(line)
        assert m and m.group(1) == rest_run.tid, line

