"""Plain-HTTP routes on the gRPC port: /healthz, /metrics, 404s, 415s."""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import subprocess

import grpc
import pytest

import weft_helpers as wh


def _curl(*args, timeout=10):
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed")
    return subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True, text=True, timeout=timeout)


def test_healthz_json(server):
    status, headers, body = wh.http_get(server, "/healthz")
    assert status == 200, body
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    assert doc["status"] == "SERVING", doc


def test_healthz_over_http2_prior_knowledge(server):
    res = _curl("--http2-prior-knowledge", "-w", "\n%{http_code} %{http_version}", f"{server.base_url}/healthz")
    assert res.returncode == 0, res.stderr
    body, _, tail = res.stdout.rpartition("\n")
    assert tail == "200 2", res.stdout
    assert json.loads(body)["status"] == "SERVING"


def test_http1_keep_alive(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        socks = []
        for path, expected in [("/healthz", 200), ("/metrics", 200), ("/healthz", 200)]:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected, (path, resp.status)
            assert (resp.getheader("connection") or "").lower() != "close", resp.getheaders()
            assert conn.sock is not None, "server closed the keep-alive connection"
            socks.append(conn.sock)
        # http.client silently reconnects if the server closed; same socket
        # object means one TCP connection served all three requests.
        assert socks[0] is socks[1] is socks[2]
    finally:
        conn.close()


def test_unknown_path_404_json(server):
    status, headers, body = wh.http_get(server, "/definitely/not/here")
    assert status == 404
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    assert "code" in doc and "message" in doc, doc
    assert isinstance(doc["message"], str) and doc["message"], doc


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_non_grpc_request_to_grpc_path_is_415(server, content_type):
    res = _curl(
        "-o", "/dev/null", "-w", "%{http_code}", "--http2-prior-knowledge",
        "-X", "POST", "-H", f"content-type: {content_type}", "--data", "{}",
        f"{server.base_url}/grpc.health.v1.Health/Check",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "415", res.stdout


def test_grpc_proto_content_type_accepted(server, protos):
    """`application/grpc+proto` is a valid gRPC content-type."""
    body = wh.grpc_message(protos.health_pb2.HealthCheckRequest(service="").SerializeToString())
    with wh.H2Client(server) as c:
        hdrs = [(k, "application/grpc+proto" if k == "content-type" else v)
                for k, v in c.grpc_headers("/grpc.health.v1.Health/Check")]
        sid = c.start_call("", body, headers=hdrs)
        r = c.wait_stream(sid)
    assert r.header(":status") == "200", r
    assert r.grpc_status() == 0, r
    (flag, msg), = wh.parse_grpc_messages(r.data)
    assert protos.health_pb2.HealthCheckResponse.FromString(msg).status == protos.health_pb2.HealthCheckResponse.SERVING


# ---------------------------------------------------------------------------
# /metrics
# ---------------------------------------------------------------------------

EXPECTED_TYPES = {
    "grpc_server_started_total": "counter",
    "grpc_server_handled_total": "counter",
    "grpc_server_handling_seconds": "histogram",
    "grpc_server_msg_received_total": "counter",
    "grpc_server_msg_sent_total": "counter",
    "weft_grpc_server_received_bytes_total": "counter",
    "weft_grpc_server_sent_bytes_total": "counter",
    "weft_http_server_connections": "gauge",
    "weft_http_server_connections_accepted_total": "counter",
    "weft_http2_server_streams_active": "gauge",
    "http_server_request_duration_seconds": "histogram",
}

HEALTH = wh.HEALTH_SERVICE
ECHO = wh.ECHO_SERVICE
# The metric tests drive all four call shapes through the Echo test service.
SERVER_ARGS = (wh.TEST_SERVICES_FLAG,)


def _grpc_traffic(server, protos):
    ch = wh.new_channel(server.target)
    try:
        h = protos.health_pb2_grpc.HealthStub(ch)
        e = protos.echo_pb2_grpc.EchoServiceStub(ch)
        for _ in range(3):
            h.Check(protos.health_pb2.HealthCheckRequest(service=""), timeout=5)
        with pytest.raises(grpc.RpcError):
            h.Check(protos.health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert len(list(e.Stream(protos.echo_pb2.StreamRequest(count=3), timeout=5))) == 3
        assert e.Collect(iter([protos.echo_pb2.EchoRequest(message=m) for m in "abcd"]), timeout=5).message == "abcd"
        assert len(list(e.Chat(iter([protos.echo_pb2.EchoRequest(message="x")] * 2), timeout=5))) == 2
        with pytest.raises(grpc.RpcError):
            e.Echo(protos.echo_pb2.EchoRequest(fail_with_code=5), timeout=5)
    finally:
        ch.close()
    # Let the server record the last calls (metrics may be updated after the
    # trailers are written).
    wh.wait_until(lambda: wh.fetch_metrics(server).total(
        "grpc_server_handled_total", grpc_method="Echo", grpc_code="NotFound") >= 1, 3,
        message="Echo NotFound to be counted")


def test_metrics_content(server, protos):
    before = wh.fetch_metrics(server)
    _grpc_traffic(server, protos)
    assert wh.http_get(server, "/healthz")[0] == 200
    healthz = dict(http_request_method="GET", http_route="/healthz", http_response_status_code="200")
    healthz_before = before.total("http_server_request_duration_seconds_count", **healthz)
    got = {}

    def scrape():
        status, headers, body = wh.http_get(server, "/metrics")
        assert status == 200
        got["headers"], got["m"] = headers, wh.parse_metrics(body.decode())
        # Metrics may be recorded just after a response is written; wait for
        # the last /healthz GET to show up before comparing exact deltas.
        return got["m"].total("http_server_request_duration_seconds_count", **healthz) > healthz_before

    try:
        wh.wait_until(scrape, 3, message="the /healthz GET in http_server_request_duration_seconds")
    except AssertionError as exc:
        series = [s.labels for s in got["m"].select("http_server_request_duration_seconds_count")] if got else None
        raise AssertionError(f"{exc}; series present: {series}") from None
    m = got["m"]
    ctype = got["headers"].get("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype

    for name, typ in EXPECTED_TYPES.items():
        assert m.type_of(name) == typ, f"{name}: TYPE {m.type_of(name)!r}, expected {typ}"

    def delta(name, **labels):
        return m.total(name, **labels) - before.total(name, **labels)

    check = dict(grpc_type="unary", grpc_service=HEALTH, grpc_method="Check")
    assert delta("grpc_server_started_total", **check) == 4
    assert delta("grpc_server_handled_total", grpc_code="OK", **check) == 3
    assert delta("grpc_server_handled_total", grpc_code="NotFound", **check) == 1
    assert delta("grpc_server_handling_seconds_count", **check) == 4
    assert delta("grpc_server_msg_received_total", **check) == 4
    assert delta("grpc_server_msg_sent_total", **check) == 3
    assert delta("grpc_server_handled_total", grpc_type="unary", grpc_service=ECHO, grpc_method="Echo",
                 grpc_code="NotFound") == 1
    assert delta("grpc_server_handled_total", grpc_type="server_stream", grpc_service=ECHO,
                 grpc_method="Stream", grpc_code="OK") == 1
    assert delta("grpc_server_msg_sent_total", grpc_method="Stream") == 3
    assert delta("grpc_server_handled_total", grpc_type="client_stream", grpc_service=ECHO,
                 grpc_method="Collect", grpc_code="OK") == 1
    assert delta("grpc_server_msg_received_total", grpc_method="Collect") == 4
    assert delta("grpc_server_handled_total", grpc_type="bidi_stream", grpc_service=ECHO,
                 grpc_method="Chat", grpc_code="OK") == 1
    assert delta("weft_grpc_server_received_bytes_total") > 0
    assert delta("weft_grpc_server_sent_bytes_total") > 0

    # Histogram sanity: the +Inf bucket equals _count for every Check series.
    for s in m.select("grpc_server_handling_seconds_count", grpc_method="Check"):
        inf = [b for b in m.select("grpc_server_handling_seconds_bucket", **s.labels) if b.labels.get("le") == "+Inf"]
        assert len(inf) == 1 and inf[0].value == s.value, (s, inf)

    # This very connection is open.
    assert m.total("weft_http_server_connections") >= 1
    assert m.total("weft_http_server_connections_accepted_total") >= 1


def test_metrics_promtool(server, protos):
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed")
    _grpc_traffic(server, protos)
    status, _, body = wh.http_get(server, "/metrics")
    assert status == 200
    text = body.decode()
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"promtool rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    assert any(
        s.labels.get("grpc_code") == "OK" and s.labels.get("grpc_method") == "Check"
        for s in wh.parse_metrics(text).select("grpc_server_handled_total")
    )


def test_metrics_no_unbounded_route_labels(server):
    """Unknown paths must not become label values (cardinality explosion)."""
    token = secrets.token_hex(8)
    for i in range(20):
        status, _, _ = wh.http_get(server, f"/nope-{token}-{i}")
        assert status == 404
    m = wh.fetch_metrics(server)
    leaked = [v for v in m.label_values() if token in v]
    assert not leaked, leaked


def test_http1_pipelining_answers_in_order(server):
    """Three requests written back to back before reading anything: the
    responses come back complete and in request order on the same connection."""
    import socket
    import time

    reqs = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for path in ("/healthz", "/nope", "/healthz")
    )
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(reqs)
        data = b""
        deadline = time.monotonic() + 5
        while len(_responses(data)) < 3:
            assert time.monotonic() < deadline, f"incomplete pipelined responses: {data!r}"
            chunk = s.recv(65536)
            assert chunk, f"connection closed early: {data!r}"
            data += chunk
    assert [status for status, _ in _responses(data)] == [200, 404, 200], data


def _read_until_closed(s, timeout=5) -> bytes:
    import time

    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"connection still open after {timeout} s: {data!r}")


def test_http1_unparsable_request_is_400_after_the_pipelined_answers_and_closes(server):
    """A request the parser cannot read gets a 400 with no body and the
    connection closes; the requests pipelined before it are answered first,
    in order."""
    import socket

    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nNOT A REQUEST\x00\r\n\r\n")
        data = _read_until_closed(s)
    got = _responses(data)
    assert [status for status, _ in got] == [200, 404, 400], data
    assert got[2][1] == b"", data
    assert b"connection: close" in data.lower().split(b"400 bad request", 1)[1], data


def test_http1_0_closes_unless_keep_alive_is_asked(server):
    """HTTP/1.0: the response says HTTP/1.0 and the connection closes after
    it; with `Connection: keep-alive` the response says so and the
    connection serves the next request."""
    import socket

    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        data = _read_until_closed(s)
    assert data.startswith(b"HTTP/1.0 200 "), data
    assert [status for status, _ in _responses(data)] == [200], data

    with socket.create_connection((server.host, server.port), timeout=5) as s:
        one = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        s.sendall(one)
        data = b""
        while len(_responses(data)) < 1:
            chunk = s.recv(65536)
            assert chunk, f"closed after a keep-alive HTTP/1.0 request: {data!r}"
            data += chunk
        assert b"connection: keep-alive" in data.lower(), data
        s.sendall(b"GET /nope HTTP/1.0\r\n\r\n")
        data += _read_until_closed(s)
    assert [status for status, _ in _responses(data)] == [200, 404], data


def test_http1_head_has_the_length_and_no_body(server):
    """HEAD: the GET's content-length, no body; the next request on the same
    connection is read from the right place."""
    import socket
    import time

    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = _read_until_closed(s)
    head_end = data.find(b"\r\n\r\n")
    head = data[:head_end].decode("latin-1").lower()
    length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
    assert length > 0, head
    rest = data[head_end + 4:]
    assert rest.startswith(b"HTTP/1.1 200 "), data
    assert [status for status, _ in _responses(rest)] == [200], data
    assert len(_responses(rest)[0][1]) == length, data


def test_http1_204_has_no_length_and_no_body(server):
    """A 204 (DELETE of a workflow) carries no content-length (RFC 9110
    8.6) and no body: the next response on the connection follows at once."""
    import socket

    user = wh.register_and_login(server, "No Content")
    r = user.rest.post("/workflows", {"name": "to delete", "tasks": []})
    assert r.status == 201, r
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall((f"DELETE /workflows/{r.json['id']} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user.token}\r\n\r\n"
                   "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode())
        data = _read_until_closed(s)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 "), data
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower(), head
    assert rest.startswith(b"HTTP/1.1 200 "), data


def test_http1_bad_bytes_after_a_closing_response_get_no_second_answer(server):
    """After a response that closes the connection, unparsable bytes the
    client already sent are not answered (one request, one response)."""
    import socket

    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nNOT A REQUEST\x00\r\n\r\n")
        data = _read_until_closed(s)
    assert [status for status, _ in _responses(data)] == [200], data
    assert b"400" not in data.split(b"\r\n", 1)[0] and data.count(b"HTTP/1.1 ") == 1, data


def _responses(data: bytes) -> list[tuple[int, bytes]]:
    """The complete responses at the start of `data` (framed by content-length)."""
    out, pos = [], 0
    while True:
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return out
        lines = data[pos:head_end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        end = head_end + 4 + length
        if end > len(data):
            return out
        out.append((status, data[head_end + 4:end]))
        pos = end


def test_process_metrics_match_the_process(server, protos):
    """process_* (read from /proc at scrape time) agree with what the kernel
    says about the server process, and the CPU counter only goes up."""
    import os
    import time

    first = wh.fetch_metrics(server)
    _grpc_traffic(server, protos)
    second = wh.fetch_metrics(server)
    rss = second.total("process_resident_memory_bytes")
    kernel_rss = server.rss_kb() * 1024
    assert 0.5 * kernel_rss <= rss <= 2 * kernel_rss, (rss, kernel_rss)
    started = second.total("process_start_time_seconds")
    assert time.time() - 3600 < started <= time.time(), started
    fds = len(os.listdir(f"/proc/{server.pid}/fd"))
    open_fds = second.total("process_open_fds")
    assert 0 < open_fds <= second.total("process_max_fds"), open_fds
    assert abs(open_fds - fds) <= 20, (open_fds, fds)
    assert second.total("process_cpu_seconds_total") >= first.total("process_cpu_seconds_total") > 0
    assert second.type_of("process_cpu_seconds_total") == "counter"
    build = second.select("weft_build_info")
    assert len(build) == 1 and build[0].value == 1 and build[0].labels.get("version"), build
    # Without WEFT_REVISION in its environment (test_sli.py sets one).
    assert build[0].labels.get("revision") == "unknown", build
