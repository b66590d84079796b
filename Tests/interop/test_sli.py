"""The service-level indicators of a real server (docs/METRICS.md, "Service
levels"): `weft_requests_total{transport, request_class, outcome}` counts user
requests only, classified once (RequestOutcome) over gRPC and REST alike, and
`weft_request_duration_seconds{transport, request_class}` times the
successful ones.

* Every series exists from the start at 0 (2 transports x 6 classes x 4
  outcomes; durations for the four timed classes), so rules need no
  `or vector(0)`.
* Health checks (gRPC and /healthz), /metrics, reflection and a gRPC method
  that does not exist are not counted.
* Reads, writes, auth calls, streams: the class each lands in, over both
  transports; a REST 404 and an unauthenticated call are client errors, an
  unknown REST path is `other`.
* A body that does not decode moves `weft_rest_request_decode_errors_total`.
(Overload refusals are checked in test_admission.py, span outcomes in
test_tracing.py.)
"""

from __future__ import annotations

import uuid

import grpc
import pytest

import weft_helpers as wh

REQUESTS = "weft_requests_total"
DURATION = "weft_request_duration_seconds"
CLASSES = ("read", "write", "execute", "auth", "stream", "other")
TIMED = ("read", "write", "execute", "auth")
OUTCOMES = ("ok", "client_error", "overload", "server_error")


def counts(server) -> dict:
    m = wh.fetch_metrics(server)
    return {(s.labels["transport"], s.labels["request_class"], s.labels["outcome"]): s.value for s in m.select(REQUESTS)}


def delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


@pytest.fixture(scope="module")
def user(api_server):
    return wh.register_and_login(api_server, "Sli User")


def test_every_sli_series_exists_from_the_start(server_factory):
    srv = server_factory()
    m = wh.fetch_metrics(srv)
    assert m.type_of(REQUESTS) == "counter"
    got = {(s.labels["transport"], s.labels["request_class"], s.labels["outcome"]): s.value for s in m.select(REQUESTS)}
    want = {(t, c, o) for t in ("grpc", "http") for c in CLASSES for o in OUTCOMES}
    assert set(got) == want, sorted(set(got) ^ want)
    assert all(v == 0 for v in got.values()), {k: v for k, v in got.items() if v}
    assert m.type_of(DURATION) == "histogram"
    timed = {(s.labels["transport"], s.labels["request_class"]) for s in m.select(DURATION + "_count")}
    assert timed == {(t, c) for t in ("grpc", "http") for c in TIMED}, timed
    # The latency thresholds of dashboards/slo.yaml are bucket bounds.
    bounds = {s.labels["le"] for s in m.select(DURATION + "_bucket", transport="grpc", request_class="read")}
    assert {"0.25", "0.5", "1.0"} <= bounds, sorted(bounds)


def test_health_metrics_reflection_and_unknown_methods_are_not_user_requests(api_server, protos, user):
    before = counts(api_server)
    assert wh.http_get(api_server, "/healthz")[0] == 200
    assert wh.http_get(api_server, "/metrics")[0] == 200
    ch = wh.new_channel(api_server.target)
    try:
        health = protos.health_pb2_grpc.HealthStub(ch)
        assert health.Check(protos.health_pb2.HealthCheckRequest(), timeout=5).status == 1
        unknown = ch.unary_unary("/weft.v1.NoSuchService/Nothing", request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            unknown(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        ch.close()
    assert delta(before, counts(api_server)) == {}


def test_requests_land_in_their_class_and_outcome(api_server, v1, user):
    wf = user.rest.post("/workflows", {"name": f"sli {uuid.uuid4().hex[:8]}", "tasks": [{"key": "a", "name": "A", "action": "noop"}]})
    assert wf.status == 201, wf
    wid = wf.json["id"]
    before = counts(api_server)
    m0 = wh.fetch_metrics(api_server)
    assert user.rest.get(f"/workflows/{wid}").status == 200                      # http read ok
    assert user.rest.get("/workflows/wf_00000000000000000000000000").status == 404  # http read client_error
    assert wh.http_get(api_server, f"/workflows/{wid}")[0] == 401                  # unauthenticated: client_error
    assert wh.http_get(api_server, "/no/such/path")[0] == 404                      # other
    ch = wh.new_channel(api_server.target)
    try:
        stub = v1.workflows_pb2_grpc.WorkflowServiceStub(ch)
        got = stub.GetWorkflow(v1.workflows_pb2.GetWorkflowRequest(workflow_id=wid), metadata=wh.grpc_auth(user),
                               timeout=5)
        assert got.id == wid                                                       # grpc read ok
        with pytest.raises(grpc.RpcError) as err:                                  # grpc write client_error
            stub.CreateWorkflow(v1.workflows_pb2.CreateWorkflowRequest(name=""), metadata=wh.grpc_auth(user), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        ch.close()
    moved = delta(before, counts(api_server))
    assert moved == {
        ("http", "read", "ok"): 1,
        ("http", "read", "client_error"): 2,
        ("http", "other", "client_error"): 1,
        ("grpc", "read", "ok"): 1,
        ("grpc", "write", "client_error"): 1,
    }, moved
    m1 = wh.fetch_metrics(api_server)
    for transport in ("http", "grpc"):
        # Only the successful read was timed.
        assert (m1.total(DURATION + "_count", transport=transport, request_class="read")
                - m0.total(DURATION + "_count", transport=transport, request_class="read")) == 1, transport


def test_logins_are_auth_and_a_body_that_does_not_decode_is_counted(api_server, user):
    before = counts(api_server)
    m0 = wh.fetch_metrics(api_server)
    # Not JSON; JSON whose field has the wrong type (the router names the field).
    r = user.rest.request("POST", "/workflows", raw=b'{"name": ', headers={"content-type": "application/json"})
    assert r.status == 400, r
    r = user.rest.post("/workflows", {"name": 5, "tasks": []})
    assert r.status == 400 and "name: expected a string" in r.json["message"], r
    wh.register_and_login(api_server, "Sli Second")
    moved = delta(before, counts(api_server))
    assert moved.get(("http", "write", "client_error")) == 2, moved
    # Registration and login are the auth class, not reads or writes.
    assert moved.get(("http", "auth", "ok"), 0) >= 2, moved
    assert not any(k[1] == "auth" and k[2] != "ok" for k in moved), moved
    m1 = wh.fetch_metrics(api_server)
    assert m1.total("weft_rest_request_decode_errors_total") - m0.total("weft_rest_request_decode_errors_total") == 2


@pytest.mark.parametrize("value, label", [("3f2a9c1d0b7e", "3f2a9c1d0b7e"), ("has space", "unknown"), ("", "unknown")])
def test_build_info_names_the_revision_from_the_environment(tmp_path, value, label):
    """weft_build_info{revision} comes from WEFT_REVISION (scripts/run.sh sets
    it from git); a value that is no plain token, or none, is "unknown"."""
    srv = wh.WeftServer(wh.weft_bin(), tmp_path / "data", tmp_path / "logs", name="revision",
                        env={"WEFT_REVISION": value})
    srv.start(timeout=30)
    try:
        build = wh.fetch_metrics(srv).select("weft_build_info")
        assert [b.labels.get("revision") for b in build] == [label], build
    finally:
        srv.stop_checked()


def test_a_wrong_method_is_the_callers_error_and_dashboard_files_are_not_counted(api_server, user):
    before = counts(api_server)
    r = user.rest.request("PATCH", "/workflows")
    assert r.status == 405, r                                   # a route, not that method: other, client_error
    status, _, _ = wh.http_get(api_server, "/")                 # the dashboard's page (the router's fallback)
    assert status == 200
    assert delta(before, counts(api_server)) == {("http", "other", "client_error"): 1}
