"""gRPC's standard interop test cases against `weft serve --enable-test-services`.

The server serves grpc.testing.TestService and grpc.testing.UnimplementedService
(proto/grpc/testing/{empty,messages,test}.proto, copied from grpc/grpc).  Each
case below follows the client procedure and asserts of the same name in grpc's
doc/interop-test-descriptions.md, written with grpcio clients, and runs over
two transports:

* ``h2c``: plaintext HTTP/2 (prior knowledge), ``--enable-test-services``;
* ``tls``: the same server started with ``--tls-cert``/``--tls-key`` (the CA and
  localhost/127.0.0.1 server certificate of tls_certs.make_certs, made with the
  openssl CLI at test time), the client verifying the chain against that CA
  (ALPN h2).

grpcio does not let a client see the compressed flag of the messages it
receives, nor send a client stream whose messages are compressed differently.
The compression cases therefore also run the exact procedure over a raw HTTP/2
client (``h2``, on the same transport) where they need it: the flag of every
response message (server_compressed_unary / _streaming) and a compressed then
an uncompressed request message on one stream (client_compressed_streaming).
"""

from __future__ import annotations

import gzip
import queue
import socket
import ssl
import threading
import time
import types

import grpc
import pytest

import tls_certs
import weft_helpers as wh

TRANSPORTS = ("h2c", "tls")

# Sizes from interop-test-descriptions.md.
LARGE_REQ = 271828
LARGE_RESP = 314159
REQUEST_SIZES = (27182, 8, 1828, 45904)
RESPONSE_SIZES = (31415, 9, 2653, 58979)
TEST_STATUS_MESSAGE = "test status message"
SPECIAL_STATUS_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")

RPC_TIMEOUT = 15.0  # generous: the suite runs against debug builds too
SOAK_RPC_ITERATIONS = 50
SOAK_CHANNEL_ITERATIONS = 20
SOAK_MAX_LATENCY = 5.0  # per iteration (one large_unary, incl. a new channel for channel_soak)

TEST_SERVICE = "grpc.testing.TestService"


# ---------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """The shared test PKI (tls_certs.py): a CA and a server certificate it
    signed for localhost and 127.0.0.1 (subjectAltName)."""
    certs = tls_certs.make_certs(tmp_path_factory.mktemp("interop-tls"))
    return types.SimpleNamespace(ca=certs.ca_cert, cert=certs.server_cert, key=certs.server_key)


# ---------------------------------------------------------------------------
# Servers, channels, stubs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=TRANSPORTS)
def interop_server(request, tmp_path_factory, protos, tls_files):
    """One `weft serve --enable-test-services` per transport (module scope)."""
    transport = request.param
    args = [wh.TEST_SERVICES_FLAG]
    if transport == "tls":
        args += ["--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)]
    binary = wh.weft_bin()
    if not binary.exists():
        pytest.fail(f"weft binary not found at {binary}; build it (swift build) or set WEFT_BIN", pytrace=False)
    base = tmp_path_factory.mktemp(f"interop-{transport}")
    srv = wh.WeftServer(binary, base / "data", base / "logs", args=args, name=f"grpc-interop-{transport}")
    try:
        srv.start(timeout=30)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    srv.transport = transport
    yield srv
    try:
        wh.finish_servers([srv])
    except wh.ServerExitError as exc:
        pytest.fail(str(exc), pytrace=False)


def open_channel(srv, tls_files, compression=None):
    """A fresh channel (its own connection) for the server's transport."""
    opts = [("grpc.use_local_subchannel_pool", 1)]
    if srv.transport == "tls":
        creds = grpc.ssl_channel_credentials(root_certificates=tls_files.ca.read_bytes())
        opts.append(("grpc.ssl_target_name_override", "localhost"))
        return grpc.secure_channel(srv.target, creds, options=opts, compression=compression)
    return grpc.insecure_channel(srv.target, options=opts, compression=compression)


@pytest.fixture
def channel(interop_server, tls_files):
    ch = open_channel(interop_server, tls_files)
    yield ch
    ch.close()


@pytest.fixture
def gt(protos):
    """The generated grpc.testing modules (empty_pb2, messages_pb2, test_pb2_grpc, ...)."""
    return protos.grpc_testing


@pytest.fixture
def stub(channel, gt):
    return gt.test_pb2_grpc.TestServiceStub(channel)


def zeros(n: int) -> bytes:
    return b"\x00" * n


def large_request(gt, **fields):
    m = gt.messages_pb2
    return m.SimpleRequest(response_size=LARGE_RESP, payload=m.Payload(body=zeros(LARGE_REQ)), **fields)


def assert_large_response(gt, resp, what="response"):
    body = resp.payload.body
    assert len(body) == LARGE_RESP, f"{what}: payload body is {len(body)} bytes, want {LARGE_RESP}"
    assert body == zeros(LARGE_RESP), f"{what}: payload body is not all zeros"
    assert resp.payload.type == gt.messages_pb2.COMPRESSABLE, resp.payload.type


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    """Run a call that must fail; return its RpcError."""
    try:
        result = fn(*args, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, (bytes, str)):
            result = list(result)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"the call succeeded but should have failed: {result!r}"[:500])


class Requests:
    """A request iterator fed from the test thread (for lock-step streams).
    put(None) half-closes; close() also releases grpcio's consumer thread."""

    _END = object()

    def __init__(self):
        self.q: queue.Queue = queue.Queue()

    def put(self, item):
        self.q.put(self._END if item is None else item)

    def close(self):
        self.q.put(self._END)

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is self._END:
                return
            yield item


def md_pairs(md) -> list:
    return [(m.key, m.value) for m in (md or ())]


def assert_channel_still_works(stub, gt, what: str):
    """An EmptyCall on the same channel (its connection) after a cancel or a
    deadline: the server kept the connection usable."""
    try:
        stub.EmptyCall(gt.empty_pb2.Empty(), timeout=RPC_TIMEOUT)
    except grpc.RpcError as exc:
        raise AssertionError(f"EmptyCall after {what} failed: {exc.code()} {exc.details()!r}") from None


# ---------------------------------------------------------------------------
# A raw HTTP/2 gRPC client (to see and set per-message compressed flags)
# ---------------------------------------------------------------------------


def raw_grpc_call(srv, tls_files, method: str, messages: list[bytes], timeout: float = RPC_TIMEOUT,
                  extra_headers=()) -> types.SimpleNamespace:
    """One gRPC call over a new raw HTTP/2 connection (TLS with ALPN h2 for the
    tls transport).  `messages` are complete length-prefixed gRPC messages
    (wh.grpc_message), sent as the flow-control windows allow; the request
    ends after them.  Returns headers, trailers (dicts; a trailers-only
    answer's fields are in both), status, message and the response messages
    as (flag, decompressed payload)."""
    import h2.config
    import h2.connection
    import h2.events

    body = memoryview(b"".join(messages))
    sock = socket.create_connection((srv.host, srv.port), timeout=timeout)
    scheme = "http"
    try:
        if srv.transport == "tls":
            ctx = ssl.create_default_context(cafile=str(tls_files.ca))
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", f"ALPN selected {sock.selected_alpn_protocol()!r}, want h2"
            scheme = "https"
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [
            (":method", "POST"), (":scheme", scheme), (":path", method),
            (":authority", f"localhost:{srv.port}"),
            ("content-type", "application/grpc"), ("te", "trailers"),
            ("grpc-accept-encoding", "gzip"), *extra_headers,
        ], end_stream=not body)
        sent_all = not body

        headers = trailers = None
        data = b""
        ended = False
        deadline = time.monotonic() + timeout
        while not ended:
            # Send what the windows allow; the rest after WINDOW_UPDATEs.
            while not sent_all:
                n = min(len(body), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if n <= 0:
                    break
                chunk, body = bytes(body[:n]), body[n:]
                sent_all = not body
                conn.send_data(sid, chunk, end_stream=sent_all)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            if time.monotonic() > deadline:
                raise AssertionError(f"raw {method}: no end of stream within {timeout}s "
                                     f"(headers={headers}, request sent: {sent_all})")
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"raw {method}: connection closed before the end of the stream "
                                     f"(headers={headers}, {len(data)} bytes of data)")
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ConnectionTerminated):
                    raise AssertionError(f"raw {method}: GOAWAY {int(ev.error_code)} {ev.additional_data!r}")
                if getattr(ev, "stream_id", None) != sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    headers = dict(ev.headers)
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    if ev.flow_controlled_length:
                        conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"raw {method}: stream reset with code {int(ev.error_code)}")
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    finally:
        sock.close()
    final = trailers if trailers is not None else (headers or {})
    status = final.get("grpc-status")
    return types.SimpleNamespace(
        headers=headers or {}, trailers=trailers or {},
        status=int(status) if status is not None else None,
        message=final.get("grpc-message"),
        messages=wh.parse_grpc_messages(data),
    )


# ---------------------------------------------------------------------------
# The interop cases
# ---------------------------------------------------------------------------


def test_empty_unary(stub, gt):
    resp, call = stub.EmptyCall.with_call(gt.empty_pb2.Empty(), timeout=RPC_TIMEOUT)
    assert isinstance(resp, gt.empty_pb2.Empty), type(resp)
    assert resp.ByteSize() == 0
    assert call.code() == grpc.StatusCode.OK


def test_large_unary(stub, gt):
    resp = stub.UnaryCall(large_request(gt), timeout=RPC_TIMEOUT)
    assert_large_response(gt, resp)


def test_client_compressed_unary(stub, gt):
    m = gt.messages_pb2
    # 1. The feature probe: expect_compressed, sent uncompressed -> INVALID_ARGUMENT.
    err = rpc_error(stub.UnaryCall, large_request(gt, expect_compressed=m.BoolValue(value=True)),
                    timeout=RPC_TIMEOUT)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    # 2. The same request, compressed.
    resp = stub.UnaryCall(large_request(gt, expect_compressed=m.BoolValue(value=True)),
                          compression=grpc.Compression.Gzip, timeout=RPC_TIMEOUT)
    assert_large_response(gt, resp, "compressed request")
    # 3. Uncompressed, not expected compressed.
    resp = stub.UnaryCall(large_request(gt, expect_compressed=m.BoolValue(value=False)), timeout=RPC_TIMEOUT)
    assert_large_response(gt, resp, "uncompressed request")


def test_server_compressed_unary(stub, gt, interop_server, tls_files):
    m = gt.messages_pb2
    for compressed in (True, False):
        resp = stub.UnaryCall(large_request(gt, response_compressed=m.BoolValue(value=compressed)),
                              timeout=RPC_TIMEOUT)
        assert_large_response(gt, resp, f"response_compressed={compressed}")
    # The compressed message flag, which grpcio does not show: over raw HTTP/2.
    for compressed in (True, False):
        req = large_request(gt, response_compressed=m.BoolValue(value=compressed))
        r = raw_grpc_call(interop_server, tls_files, f"/{TEST_SERVICE}/UnaryCall",
                          [wh.grpc_message(req.SerializeToString())])
        assert r.status == 0, (r.status, r.message)
        assert len(r.messages) == 1, [f for f, _ in r.messages]
        flag, payload = r.messages[0]
        assert flag == (1 if compressed else 0), \
            f"response_compressed={compressed}: compressed flag {flag} (grpc-encoding {r.headers.get('grpc-encoding')!r})"
        if compressed:
            assert r.headers.get("grpc-encoding") == "gzip", r.headers
        assert_large_response(gt, m.SimpleResponse.FromString(payload), f"raw, response_compressed={compressed}")


def test_client_streaming(stub, gt):
    m = gt.messages_pb2
    reqs = [m.StreamingInputCallRequest(payload=m.Payload(body=zeros(n))) for n in REQUEST_SIZES]
    resp = stub.StreamingInputCall(iter(reqs), timeout=RPC_TIMEOUT)
    assert resp.aggregated_payload_size == 74922, resp


def test_client_compressed_streaming(stub, gt, interop_server, tls_files):
    m = gt.messages_pb2
    # 1. The probe: one uncompressed message that expects compression -> INVALID_ARGUMENT.
    probe = m.StreamingInputCallRequest(expect_compressed=m.BoolValue(value=True), payload=m.Payload(body=zeros(27182)))
    err = rpc_error(stub.StreamingInputCall, iter([probe]), timeout=RPC_TIMEOUT)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())

    first = m.StreamingInputCallRequest(expect_compressed=m.BoolValue(value=True), payload=m.Payload(body=zeros(27182)))
    second = m.StreamingInputCallRequest(expect_compressed=m.BoolValue(value=False), payload=m.Payload(body=zeros(45904)))
    # 2./3. The procedure exactly (first message compressed, second not), over raw HTTP/2:
    # grpcio compresses every message of a call or none.
    r = raw_grpc_call(interop_server, tls_files, f"/{TEST_SERVICE}/StreamingInputCall", [
        wh.grpc_message(gzip.compress(first.SerializeToString()), compressed=True),
        wh.grpc_message(second.SerializeToString(), compressed=False),
    ], extra_headers=[("grpc-encoding", "gzip")])
    assert r.status == 0, (r.status, r.message)
    assert len(r.messages) == 1, r.messages
    assert m.StreamingInputCallResponse.FromString(r.messages[0][1]).aggregated_payload_size == 73086
    # The same stream with grpcio, every message gzip-compressed.
    resp = stub.StreamingInputCall(iter([first, second]), compression=grpc.Compression.Gzip, timeout=RPC_TIMEOUT)
    assert resp.aggregated_payload_size == 73086, resp


def test_server_streaming(stub, gt):
    m = gt.messages_pb2
    req = m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=n) for n in RESPONSE_SIZES])
    call = stub.StreamingOutputCall(req, timeout=RPC_TIMEOUT)
    responses = list(call)
    assert [len(r.payload.body) for r in responses] == list(RESPONSE_SIZES)
    assert all(r.payload.body == zeros(len(r.payload.body)) for r in responses)
    assert call.code() == grpc.StatusCode.OK


def test_server_compressed_streaming(stub, gt, interop_server, tls_files):
    m = gt.messages_pb2
    req = m.StreamingOutputCallRequest(response_parameters=[
        m.ResponseParameters(compressed=m.BoolValue(value=True), size=31415),
        m.ResponseParameters(compressed=m.BoolValue(value=False), size=92653),
    ])
    responses = list(stub.StreamingOutputCall(req, timeout=RPC_TIMEOUT))
    assert [len(r.payload.body) for r in responses] == [31415, 92653]
    assert all(r.payload.body == zeros(len(r.payload.body)) for r in responses)
    # The per-message flags, over raw HTTP/2.
    r = raw_grpc_call(interop_server, tls_files, f"/{TEST_SERVICE}/StreamingOutputCall",
                      [wh.grpc_message(req.SerializeToString())])
    assert r.status == 0, (r.status, r.message)
    assert [f for f, _ in r.messages] == [1, 0], \
        f"compressed flags {[f for f, _ in r.messages]}, want [1, 0] (grpc-encoding {r.headers.get('grpc-encoding')!r})"
    assert r.headers.get("grpc-encoding") == "gzip", r.headers
    sizes = [len(m.StreamingOutputCallResponse.FromString(p).payload.body) for _, p in r.messages]
    assert sizes == [31415, 92653], sizes


def test_ping_pong(stub, gt):
    m = gt.messages_pb2
    reqs = Requests()
    call = stub.FullDuplexCall(iter(reqs), timeout=RPC_TIMEOUT)
    try:
        # Lock-step: each request only after the previous response arrived.
        for req_size, resp_size in zip(REQUEST_SIZES, RESPONSE_SIZES):
            reqs.put(m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=resp_size)],
                                                  payload=m.Payload(body=zeros(req_size))))
            resp = next(call)
            assert len(resp.payload.body) == resp_size, (len(resp.payload.body), resp_size)
            assert resp.payload.body == zeros(resp_size)
        reqs.put(None)
        assert list(call) == []
        assert call.code() == grpc.StatusCode.OK, (call.code(), call.details())
    finally:
        reqs.close()
        call.cancel()


def test_empty_stream(stub, gt):
    call = stub.FullDuplexCall(iter([]), timeout=RPC_TIMEOUT)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK, (call.code(), call.details())


def test_cancel_after_begin(stub, gt):
    release = threading.Event()

    def never_sends():
        release.wait(RPC_TIMEOUT)
        return
        yield  # noqa: unreachable - makes this a generator

    future = stub.StreamingInputCall.future(never_sends(), timeout=RPC_TIMEOUT)
    try:
        assert future.cancel(), f"could not cancel: {future.code() if future.done() else 'not done'}"
        assert future.code() == grpc.StatusCode.CANCELLED, future.code()
    finally:
        release.set()
    assert_channel_still_works(stub, gt, "cancel_after_begin")


def test_cancel_after_first_response(stub, gt):
    m = gt.messages_pb2
    reqs = Requests()
    call = stub.FullDuplexCall(iter(reqs), timeout=RPC_TIMEOUT)
    try:
        reqs.put(m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=31415)],
                                              payload=m.Payload(body=zeros(27182))))
        resp = next(call)
        assert len(resp.payload.body) == 31415
        assert call.cancel()
        assert call.code() == grpc.StatusCode.CANCELLED, call.code()
    finally:
        reqs.close()
    assert_channel_still_works(stub, gt, "cancel_after_first_response")


def test_timeout_on_sleeping_server(stub, gt):
    m = gt.messages_pb2
    reqs = Requests()
    reqs.put(m.StreamingOutputCallRequest(payload=m.Payload(body=zeros(27182))))  # and no half-close
    try:
        err = rpc_error(stub.FullDuplexCall, iter(reqs), timeout=0.001)
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (err.code(), err.details())
    finally:
        reqs.close()
    assert_channel_still_works(stub, gt, "timeout_on_sleeping_server")


def test_custom_metadata(stub, gt):
    m = gt.messages_pb2
    md = (ECHO_INITIAL, ECHO_TRAILING)
    # 1. UnaryCall.
    resp, call = stub.UnaryCall.with_call(large_request(gt), metadata=md, timeout=RPC_TIMEOUT)
    assert_large_response(gt, resp)
    initial, trailing = md_pairs(call.initial_metadata()), md_pairs(call.trailing_metadata())
    assert ECHO_INITIAL in initial, f"UnaryCall initial metadata: {initial}"
    assert ECHO_TRAILING in trailing, f"UnaryCall trailing metadata: {trailing}"
    # 2. FullDuplexCall, then half-close.
    req = m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=LARGE_RESP)],
                                       payload=m.Payload(body=zeros(LARGE_REQ)))
    call = stub.FullDuplexCall(iter([req]), metadata=md, timeout=RPC_TIMEOUT)
    responses = list(call)
    assert [len(r.payload.body) for r in responses] == [LARGE_RESP]
    assert call.code() == grpc.StatusCode.OK, (call.code(), call.details())
    initial, trailing = md_pairs(call.initial_metadata()), md_pairs(call.trailing_metadata())
    assert ECHO_INITIAL in initial, f"FullDuplexCall initial metadata: {initial}"
    assert ECHO_TRAILING in trailing, f"FullDuplexCall trailing metadata: {trailing}"
    # Without the keys nothing is echoed.
    _, call = stub.UnaryCall.with_call(m.SimpleRequest(response_size=1), metadata=(("x-other", "v"),),
                                       timeout=RPC_TIMEOUT)
    echoed = [k for k, _ in md_pairs(call.initial_metadata()) + md_pairs(call.trailing_metadata())
              if k.startswith("x-grpc-test-echo") or k == "x-other"]
    assert echoed == [], echoed


def test_status_code_and_message(stub, gt):
    m = gt.messages_pb2
    status = m.EchoStatus(code=2, message=TEST_STATUS_MESSAGE)
    # 1. UnaryCall.
    err = rpc_error(stub.UnaryCall, m.SimpleRequest(response_status=status), timeout=RPC_TIMEOUT)
    assert err.code() == grpc.StatusCode.UNKNOWN, (err.code(), err.details())
    assert err.details() == TEST_STATUS_MESSAGE, repr(err.details())
    # 2. FullDuplexCall, then half-close.
    err = rpc_error(stub.FullDuplexCall, iter([m.StreamingOutputCallRequest(response_status=status)]),
                    timeout=RPC_TIMEOUT)
    assert err.code() == grpc.StatusCode.UNKNOWN, (err.code(), err.details())
    assert err.details() == TEST_STATUS_MESSAGE, repr(err.details())


def test_special_status_message(stub, gt):
    m = gt.messages_pb2
    err = rpc_error(stub.UnaryCall, m.SimpleRequest(response_status=m.EchoStatus(code=2, message=SPECIAL_STATUS_MESSAGE)),
                    timeout=RPC_TIMEOUT)
    assert err.code() == grpc.StatusCode.UNKNOWN, (err.code(), err.details())
    assert err.details() == SPECIAL_STATUS_MESSAGE, f"{err.details()!r} != {SPECIAL_STATUS_MESSAGE!r}"


def test_unimplemented_method(stub, gt):
    err = rpc_error(stub.UnimplementedCall, gt.empty_pb2.Empty(), timeout=RPC_TIMEOUT)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, (err.code(), err.details())


def test_unimplemented_service(channel, gt):
    stub = gt.test_pb2_grpc.UnimplementedServiceStub(channel)
    err = rpc_error(stub.UnimplementedCall, gt.empty_pb2.Empty(), timeout=RPC_TIMEOUT)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, (err.code(), err.details())


def _soak_iteration(stub, gt) -> float:
    t0 = time.monotonic()
    resp = stub.UnaryCall(large_request(gt), timeout=RPC_TIMEOUT)
    assert_large_response(gt, resp)
    return time.monotonic() - t0


def _check_soak(name: str, results: list) -> None:
    """results: (iteration, latency or None, error or None).  No failure
    allowed (soak_max_failures 0), every iteration within SOAK_MAX_LATENCY."""
    failed = [(i, err) for i, _, err in results if err is not None]
    slow = [(i, round(lat, 3)) for i, lat, err in results if err is None and lat > SOAK_MAX_LATENCY]
    latencies = sorted(lat for _, lat, err in results if err is None)
    summary = (f"{name}: {len(results)} iterations, {len(failed)} failed, {len(slow)} over {SOAK_MAX_LATENCY}s; "
               f"latency max {max(latencies, default=0):.3f}s median "
               f"{latencies[len(latencies) // 2] if latencies else 0:.3f}s")
    assert not failed and not slow, f"{summary}; failed: {failed[:5]}; slow: {slow[:5]}"


def test_rpc_soak(stub, gt):
    results = []
    for i in range(SOAK_RPC_ITERATIONS):
        try:
            results.append((i, _soak_iteration(stub, gt), None))
        except (grpc.RpcError, AssertionError) as exc:
            results.append((i, None, f"{exc.code()} {exc.details()!r}" if isinstance(exc, grpc.RpcError) else str(exc)))
    _check_soak("rpc_soak", results)


def test_channel_soak(interop_server, tls_files, gt):
    results = []
    for i in range(SOAK_CHANNEL_ITERATIONS):
        t0 = time.monotonic()
        ch = open_channel(interop_server, tls_files)  # a new channel (own connection) each time
        try:
            _soak_iteration(gt.test_pb2_grpc.TestServiceStub(ch), gt)
            results.append((i, time.monotonic() - t0, None))
        except (grpc.RpcError, AssertionError) as exc:
            results.append((i, None, f"{exc.code()} {exc.details()!r}" if isinstance(exc, grpc.RpcError) else str(exc)))
        finally:
            ch.close()
    _check_soak("channel_soak", results)


# ---------------------------------------------------------------------------
# Production configuration
# ---------------------------------------------------------------------------


def test_production_server_has_no_interop_services(server_factory, gt):
    """Without --enable-test-services neither interop service exists."""
    srv = server_factory()
    ch = wh.new_channel(srv.target)
    try:
        test = gt.test_pb2_grpc.TestServiceStub(ch)
        calls = {
            "EmptyCall": lambda: test.EmptyCall(gt.empty_pb2.Empty(), timeout=RPC_TIMEOUT),
            "UnaryCall": lambda: test.UnaryCall(gt.messages_pb2.SimpleRequest(response_size=1), timeout=RPC_TIMEOUT),
            "FullDuplexCall": lambda: list(test.FullDuplexCall(iter([]), timeout=RPC_TIMEOUT)),
            "UnimplementedService": lambda: gt.test_pb2_grpc.UnimplementedServiceStub(ch).UnimplementedCall(
                gt.empty_pb2.Empty(), timeout=RPC_TIMEOUT),
        }
        codes = {name: rpc_error(fn).code() for name, fn in calls.items()}
        assert all(c == grpc.StatusCode.UNIMPLEMENTED for c in codes.values()), codes
    finally:
        ch.close()
