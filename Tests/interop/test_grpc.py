"""gRPC behaviour with real grpcio clients against one shared server."""

from __future__ import annotations

import base64
import gzip
import json
import queue
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2 as std_health_pb2
from grpc_health.v1 import health_pb2_grpc as std_health_pb2_grpc

import weft_helpers as wh

MiB = 1024 * 1024
# The Echo test service is the subject of most tests here.
SERVER_ARGS = (wh.TEST_SERVICES_FLAG,)


# ---------------------------------------------------------------------------
# 1. Health
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stubs", ["generated", "grpc_health"])
def test_health_check(channel, protos, stubs):
    if stubs == "generated":
        pb2, stub = protos.health_pb2, protos.health_pb2_grpc.HealthStub(channel)
    else:
        pb2, stub = std_health_pb2, std_health_pb2_grpc.HealthStub(channel)

    assert stub.Check(pb2.HealthCheckRequest(service=""), timeout=5).status == pb2.HealthCheckResponse.SERVING
    assert (
        stub.Check(pb2.HealthCheckRequest(service=wh.ECHO_SERVICE), timeout=5).status
        == pb2.HealthCheckResponse.SERVING
    )
    with pytest.raises(grpc.RpcError) as ei:
        stub.Check(pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND, ei.value


@pytest.mark.parametrize("stubs", ["generated", "grpc_health"])
def test_health_watch_serving_first(channel, protos, stubs):
    if stubs == "generated":
        pb2, stub = protos.health_pb2, protos.health_pb2_grpc.HealthStub(channel)
    else:
        pb2, stub = std_health_pb2, std_health_pb2_grpc.HealthStub(channel)
    call = stub.Watch(pb2.HealthCheckRequest(service=""), timeout=10)
    try:
        first = next(call)
        assert first.status == pb2.HealthCheckResponse.SERVING
    finally:
        call.cancel()


def test_health_watch_unknown_service_stays_open(health, protos):
    pb2 = protos.health_pb2
    call = health.Watch(pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    try:
        first = next(call)
        assert first.status == pb2.HealthCheckResponse.SERVICE_UNKNOWN
        time.sleep(0.5)
        # The stream must still be open (not finished with a status).
        assert call.is_active(), f"Watch for an unknown service ended: {call.code()} {call.details()}"
    finally:
        call.cancel()


# ---------------------------------------------------------------------------
# 2. The four call shapes
# ---------------------------------------------------------------------------


def test_echo_unary(echo, protos):
    req = protos.echo_pb2.EchoRequest(message="hello weft", payload=b"\x00\x01\x02\xff")
    resp = echo.Echo(req, timeout=5)
    assert resp.message == "hello weft"
    assert resp.payload == b"\x00\x01\x02\xff"
    assert resp.request_encoding == "identity"


def test_echo_fail_with_code(echo, protos):
    with pytest.raises(grpc.RpcError) as ei:
        echo.Echo(protos.echo_pb2.EchoRequest(fail_with_code=5, error_message="nope: on purpose"), timeout=5)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert ei.value.details() == "nope: on purpose"


def test_server_streaming_order(echo, protos):
    req = protos.echo_pb2.StreamRequest(message="s", count=50, payload_size=16)
    responses = list(echo.Stream(req, timeout=10))
    assert len(responses) == 50
    indices = [r.index for r in responses]
    # The proto does not say whether `index` is 0- or 1-based; accept either,
    # but it must be consecutive and in order.
    assert indices in (list(range(50)), list(range(1, 51))), indices
    assert all(len(r.payload) == 16 for r in responses), [len(r.payload) for r in responses]


def test_client_streaming_collect(echo, protos):
    parts = ["a", "bc", "def", "", "ghij"]
    reqs = iter([protos.echo_pb2.EchoRequest(message=p) for p in parts])
    resp = echo.Collect(reqs, timeout=10)
    assert resp.message == "abcdefghij"


def test_bidi_chat_answers_each_message_as_it_arrives(echo, protos):
    q: queue.Queue = queue.Queue()

    def requests():
        while True:
            item = q.get()
            if item is None:
                return
            yield item

    call = echo.Chat(requests(), timeout=10)
    try:
        # Lock-step: the next request is only sent after the previous answer
        # arrived, so a server that buffers until half-close times out here.
        for i in range(10):
            q.put(protos.echo_pb2.EchoRequest(message=f"chat-{i}"))
            resp = next(call)
            assert resp.message == f"chat-{i}"
        q.put(None)
        rest = list(call)
        assert rest == []
        assert call.code() == grpc.StatusCode.OK
    finally:
        q.put(None)
        call.cancel()


# ---------------------------------------------------------------------------
# 3. Metadata round trip
# ---------------------------------------------------------------------------


def test_metadata_round_trip(echo, protos):
    md = [("x-echo-foo", "bar"), ("x-echo-bin-bin", b"\x00\x01\xff"), ("x-other", "not-echoed")]
    resp, call = echo.Echo.with_call(protos.echo_pb2.EchoRequest(message="md"), metadata=md, timeout=5)
    initial = [(m.key, m.value) for m in call.initial_metadata()]
    trailing = [(m.key, m.value) for m in call.trailing_metadata()]

    assert ("x-echo-foo", "bar") in initial, initial
    assert ("x-echo-bin-bin", b"\x00\x01\xff") in initial, initial
    assert not any(k == "x-other" for k, _ in initial), initial
    # ASCII keys: `<key>-trailer`.  Binary keys: `<key>-trailer` would drop the
    # -bin suffix (and binary values must live in -bin keys), so the rule used
    # here is "-bin" -> "-trailer-bin".
    assert ("x-echo-foo-trailer", "bar") in trailing, trailing
    assert ("x-echo-bin-trailer-bin", b"\x00\x01\xff") in trailing, trailing

    rm = dict(resp.request_metadata)
    assert rm.get("x-echo-foo") == "bar", rm
    assert rm.get("x-other") == "not-echoed", rm
    # -bin values are base64 in request_metadata; accept padded or unpadded.
    b = rm.get("x-echo-bin-bin")
    assert b is not None, rm
    assert base64.b64decode(b + "=" * (-len(b) % 4)) == b"\x00\x01\xff", b
    # Reserved gRPC / HTTP/2 headers must not be reported.
    for k in rm:
        assert not k.startswith(":"), rm
        assert not k.startswith("grpc-"), rm
        assert k not in ("content-type", "te"), rm


# ---------------------------------------------------------------------------
# 4./5. Deadlines and cancellation
# ---------------------------------------------------------------------------


def _stats(echo, protos):
    return wh.get_stats(echo, protos)


def _stats_msg(echo, protos, what):
    return lambda: f"{what}; Stats now: {str(_stats(echo, protos)).strip().replace(chr(10), ', ')}"


def _idle_active(echo, protos) -> int:
    """active_handlers when nothing else runs.

    Whether Stats counts its own running handler is not specified, so the
    idle value may be 0 or 1; wait (up to 5 s) for leftovers of earlier tests.
    """
    seen = []

    def idle():
        seen.append(_stats(echo, protos).active_handlers)
        return seen[-1] in (0, 1)

    wh.wait_until(idle, 5, message=lambda: f"active_handlers to settle at 0 (or 1), seen {seen[-5:]}")
    return seen[-1]


def test_deadline_exceeded(echo, protos):
    idle = _idle_active(echo, protos)
    before = _stats(echo, protos).cancelled_handlers
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        echo.Echo(protos.echo_pb2.EchoRequest(message="slow", delay_ms=5000), timeout=0.3)
    elapsed = time.monotonic() - t0
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0, elapsed
    wh.wait_until(
        lambda: _stats(echo, protos).cancelled_handlers >= before + 1, 4,
        message=_stats_msg(echo, protos, f"cancelled_handlers > {before} after a deadline"),
    )
    wh.wait_until(lambda: _stats(echo, protos).active_handlers == idle, 4,
                  message=_stats_msg(echo, protos, f"active_handlers == {idle}"))


def test_deadline_enforced_by_server(server, protos):
    """Without any client-side cancellation the server itself must stop the
    handler once grpc-timeout passes: either trailers with grpc-status 4
    (DEADLINE_EXCEEDED) or RST_STREAM -- never a successful answer after 5 s."""
    body = wh.grpc_message(protos.echo_pb2.EchoRequest(message="slow", delay_ms=5000).SerializeToString())
    with wh.H2Client(server) as c:
        t0 = time.monotonic()
        sid = c.start_call(f"/{wh.ECHO_SERVICE}/Echo", body, extra_headers=[("grpc-timeout", "300m")])
        r = c.wait_stream(sid, timeout=4)
        elapsed = time.monotonic() - t0
    assert not r.timed_out, f"no end of stream within 4 s: {r}"
    assert r.grpc_status() == 4 or r.reset_code is not None, r
    assert elapsed < 3.0, elapsed


def test_largest_grpc_timeout_is_a_long_deadline_not_a_crash(server, channel, protos):
    """grpc-timeout allows 8 digits of hours (99999999H, ~11,000 years): more
    nanoseconds than an Int64 holds. The call runs (the deadline is capped),
    and the server goes on serving."""
    body = wh.grpc_message(protos.echo_pb2.EchoRequest(message="far").SerializeToString())
    with wh.H2Client(server) as c:
        sid = c.start_call(f"/{wh.ECHO_SERVICE}/Echo", body, extra_headers=[("grpc-timeout", "99999999H")])
        r = c.wait_stream(sid, timeout=5)
    assert not r.timed_out and r.grpc_status() == 0, r
    assert server.running(), server.stderr_tail(2000)
    stub = protos.health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(protos.health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == protos.health_pb2.HealthCheckResponse.SERVING


def test_cancellation_unary(echo, protos):
    idle = _idle_active(echo, protos)
    before = _stats(echo, protos).cancelled_handlers
    fut = echo.Echo.future(protos.echo_pb2.EchoRequest(message="to-cancel", delay_ms=10000), timeout=30)
    wh.wait_until(lambda: _stats(echo, protos).active_handlers == idle + 1, 3,
                  message=_stats_msg(echo, protos, f"active_handlers == {idle + 1} (delayed handler running)"))
    assert fut.cancel()
    assert fut.cancelled()
    wh.wait_until(
        lambda: (lambda s: s.cancelled_handlers >= before + 1 and s.active_handlers == idle)(_stats(echo, protos)),
        5, message=_stats_msg(echo, protos, f"cancelled_handlers > {before} and active_handlers == {idle}"),
    )


def test_cancellation_server_streaming(echo, protos):
    idle = _idle_active(echo, protos)
    before = _stats(echo, protos).cancelled_handlers
    call = echo.Stream(protos.echo_pb2.StreamRequest(message="s", count=1000, interval_ms=50), timeout=30)
    got = [next(call) for _ in range(3)]
    assert len(got) == 3
    call.cancel()
    wh.wait_until(
        lambda: (lambda s: s.cancelled_handlers >= before + 1 and s.active_handlers == idle)(_stats(echo, protos)),
        5, message=_stats_msg(echo, protos, f"cancelled_handlers > {before} and active_handlers == {idle}"),
    )


# ---------------------------------------------------------------------------
# 6. Compression
# ---------------------------------------------------------------------------


def test_gzip_round_trip(server, protos):
    ch = wh.new_channel(server.target, compression=grpc.Compression.Gzip)
    try:
        stub = protos.echo_pb2_grpc.EchoServiceStub(ch)
        payload = b"weft-compress-" * (100 * 1024 // 14 + 1)
        payload = payload[: 100 * 1024]
        resp = stub.Echo(protos.echo_pb2.EchoRequest(message="gz", payload=payload), timeout=10)
        assert resp.payload == payload
        assert resp.request_encoding == "gzip"
        assert resp.response_encoding == "gzip"
    finally:
        ch.close()


def test_identity_without_compression(echo, protos):
    resp = echo.Echo(protos.echo_pb2.EchoRequest(message="plain", payload=b"x" * 1000), timeout=5)
    assert resp.request_encoding == "identity"
    assert resp.response_encoding == "identity"


def _echo_raw(server, protos, body: bytes, headers):
    with wh.H2Client(server) as c:
        sid = c.start_call(f"/{wh.ECHO_SERVICE}/Echo", body, extra_headers=headers)
        return c.wait_stream(sid, timeout=5)


def test_gzip_on_the_wire(server, protos):
    """The response really is gzip-compressed (flag 1 + grpc-encoding: gzip)
    when the request was gzip and the client accepts gzip."""
    payload = b"z" * 50000
    msg = protos.echo_pb2.EchoRequest(message="wire", payload=payload).SerializeToString()
    r = _echo_raw(server, protos, wh.grpc_message(gzip.compress(msg), compressed=True),
                  [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")])
    assert r.grpc_status() == 0, r
    assert r.header("grpc-encoding") == "gzip", r.headers
    frames = wh.parse_grpc_messages(r.data)
    assert len(frames) == 1
    flag, decoded = frames[0]
    assert flag == 1, "response message not compressed"
    assert len(r.data) < 5000, f"response not actually compressed: {len(r.data)} bytes on the wire"
    resp = protos.echo_pb2.EchoResponse.FromString(decoded)
    assert resp.payload == payload and resp.request_encoding == "gzip" and resp.response_encoding == "gzip"


def test_gzip_request_identity_only_client(server, protos):
    """The client accepts only identity: the response must not be compressed."""
    msg = protos.echo_pb2.EchoRequest(message="wire", payload=b"q" * 1000).SerializeToString()
    r = _echo_raw(server, protos, wh.grpc_message(gzip.compress(msg), compressed=True),
                  [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "identity")])
    assert r.grpc_status() == 0, r
    assert r.header("grpc-encoding") in (None, "identity"), r.headers
    (flag, decoded), = wh.parse_grpc_messages(r.data)
    assert flag == 0
    resp = protos.echo_pb2.EchoResponse.FromString(decoded)
    assert resp.request_encoding == "gzip" and resp.response_encoding == "identity"


def test_unsupported_request_encoding_is_unimplemented(server, protos):
    """gRPC compression spec: a message compressed with an algorithm the server
    does not support -> UNIMPLEMENTED, with grpc-accept-encoding in the answer."""
    msg = protos.echo_pb2.EchoRequest(message="x").SerializeToString()
    r = _echo_raw(server, protos, wh.grpc_message(msg, compressed=True), [("grpc-encoding", "weft-nonexistent")])
    assert r.grpc_status() == 12, r
    accept = [v for k, v in (r.headers or []) + (r.trailers or []) if k == "grpc-accept-encoding"]
    assert accept and "gzip" in accept[0], (r.headers, r.trailers)


# ---------------------------------------------------------------------------
# 7. Message size limit (default 4 MiB)
# ---------------------------------------------------------------------------


@pytest.fixture
def big_channel(server):
    ch = wh.new_channel(
        server.target,
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    yield ch
    ch.close()


def test_message_over_limit_is_resource_exhausted(big_channel, protos):
    stub = protos.echo_pb2_grpc.EchoServiceStub(big_channel)
    with pytest.raises(grpc.RpcError) as ei:
        stub.Echo(protos.echo_pb2.EchoRequest(payload=b"\x01" * (5 * MiB)), timeout=20)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
    # ... and the connection/server are still fine afterwards.
    assert stub.Echo(protos.echo_pb2.EchoRequest(message="after"), timeout=5).message == "after"


def test_message_under_limit_succeeds(big_channel, protos):
    stub = protos.echo_pb2_grpc.EchoServiceStub(big_channel)
    payload = bytes(range(256)) * (3 * MiB // 256)
    resp = stub.Echo(protos.echo_pb2.EchoRequest(payload=payload), timeout=20)
    assert resp.payload == payload


def test_message_limit_boundary(big_channel, protos):
    """A request message of exactly 4194304 bytes is accepted, one more is not
    ("larger" than the limit is rejected).  fail_with_code=ALREADY_EXISTS
    keeps the answer small, so a server-side *send* limit cannot interfere:
    ALREADY_EXISTS proves the handler ran, RESOURCE_EXHAUSTED that it did not."""
    stub = protos.echo_pb2_grpc.EchoServiceStub(big_channel)
    limit = 4 * MiB
    n = limit - 7  # payload tag (1) + 4-byte varint length + fail_with_code field (2)
    exact = protos.echo_pb2.EchoRequest(payload=b"e" * n, fail_with_code=6)
    assert exact.ByteSize() == limit
    with pytest.raises(grpc.RpcError) as ei:
        stub.Echo(exact, timeout=20)
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS, ei.value
    over = protos.echo_pb2.EchoRequest(payload=b"e" * (n + 1), fail_with_code=6)
    assert over.ByteSize() == limit + 1
    with pytest.raises(grpc.RpcError) as ei:
        stub.Echo(over, timeout=20)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value


# ---------------------------------------------------------------------------
# 8. Unknown methods / services
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [f"/{wh.ECHO_SERVICE}/Nope", "/no.such.Service/Method"])
def test_unimplemented(channel, path):
    call = channel.unary_unary(path)  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as ei:
        call(b"", timeout=5)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, ei.value


def test_production_server_has_no_echo_service(server_factory, protos):
    """Without --enable-test-services (the production configuration) the Echo
    test service does not exist: every call shape is UNIMPLEMENTED, health
    does not know the service, /healthz does not list it."""
    srv = server_factory()
    assert not srv.test_services
    pb = protos.echo_pb2
    ch = wh.new_channel(srv.target)
    try:
        stub = protos.echo_pb2_grpc.EchoServiceStub(ch)
        calls = [
            lambda: stub.Echo(pb.EchoRequest(message="x"), timeout=5),
            lambda: stub.Stats(pb.StatsRequest(), timeout=5),
            lambda: list(stub.Stream(pb.StreamRequest(message="s", count=3), timeout=5)),
            lambda: stub.Collect(iter([pb.EchoRequest(message="a")]), timeout=5),
            lambda: list(stub.Chat(iter([pb.EchoRequest(message="a")]), timeout=5)),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as ei:
                call()
            assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, ei.value
        health = protos.health_pb2_grpc.HealthStub(ch)
        hpb = protos.health_pb2
        with pytest.raises(grpc.RpcError) as ei:
            health.Check(hpb.HealthCheckRequest(service=wh.ECHO_SERVICE), timeout=5)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND, ei.value
        assert health.Check(hpb.HealthCheckRequest(service=""), timeout=5).status == hpb.HealthCheckResponse.SERVING
    finally:
        ch.close()
    status, _, body = wh.http_get(srv, "/healthz")
    assert status == 200, body
    services = json.loads(body)["services"]
    assert wh.ECHO_SERVICE not in services and services.get(wh.HEALTH_SERVICE) == "SERVING", services


# ---------------------------------------------------------------------------
# 10. Concurrency
# ---------------------------------------------------------------------------


def test_many_concurrent_streams_one_connection(server, protos):
    ch = wh.new_channel(server.target)
    try:
        stub = protos.echo_pb2_grpc.EchoServiceStub(ch)
        t0 = time.monotonic()
        futs = [
            stub.Echo.future(protos.echo_pb2.EchoRequest(message=f"c{i}", delay_ms=50), timeout=30)
            for i in range(200)
        ]
        results = [f.result(timeout=30) for f in futs]
        assert [r.message for r in results] == [f"c{i}" for i in range(200)]
        # 200 calls of 50 ms over <=100 concurrent streams: ~0.1 s ideal.
        assert time.monotonic() - t0 < 15
    finally:
        ch.close()


def _connections(server):
    m = wh.fetch_metrics(server)
    return m.total("weft_http_server_connections_accepted_total"), m.total("weft_http_server_connections")


def test_many_connections(server, protos):
    accepted_before, open_before = _connections(server)
    channels = [wh.new_channel(server.target) for _ in range(50)]
    try:
        def work(i):
            stub = protos.echo_pb2_grpc.EchoServiceStub(channels[i])
            for j in range(20):
                r = stub.Echo(protos.echo_pb2.EchoRequest(message=f"{i}-{j}"), timeout=10)
                assert r.message == f"{i}-{j}"
            return i

        with ThreadPoolExecutor(max_workers=50) as pool:
            assert sorted(pool.map(work, range(50))) == list(range(50))
        accepted_after, open_during = _connections(server)
        assert accepted_after - accepted_before >= 50, (accepted_before, accepted_after)
        assert open_during - open_before >= 50, (open_before, open_during)
    finally:
        for ch in channels:
            ch.close()
    # The connections gauge must come back down once the clients are gone.
    wh.wait_until(lambda: _connections(server)[1] <= open_before, 10,
                  message="weft_http_server_connections to return to its previous value")
