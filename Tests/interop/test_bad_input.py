"""Hostile and malformed input.  After each case the server must still answer
a Health Check on a fresh connection (checked by the autouse fixture)."""

from __future__ import annotations

import socket
import time

import pytest

import weft_helpers as wh

ECHO_PATH = f"/{wh.ECHO_SERVICE}/Echo"
CHECK_PATH = "/grpc.health.v1.Health/Check"
# Malformed calls go to the Echo test service; its Stats count the handlers.
SERVER_ARGS = (wh.TEST_SERVICES_FLAG,)


@pytest.fixture(autouse=True)
def still_serving_afterwards(server, protos):
    wh.assert_still_serving(server, protos)  # precondition: healthy before
    yield
    wh.assert_still_serving(server, protos)


def _health_check_on(c: wh.H2Client, protos) -> wh.StreamResult:
    body = wh.grpc_message(protos.health_pb2.HealthCheckRequest(service="").SerializeToString())
    sid = c.start_call(CHECK_PATH, body)
    return c.wait_stream(sid, timeout=5)


def _streams_active(server) -> float:
    return wh.fetch_metrics(server).total("weft_http2_server_streams_active")


# ---------------------------------------------------------------------------
# (a) Not HTTP at all
# ---------------------------------------------------------------------------

GARBAGE = {
    "tls-client-hello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) + b"garbage" * 10,
    "garbage-line": b"GARBAGE\r\n\r\n",
    "binary-zeros": b"\x00" * 64,
    "bad-h2-preface": b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_instead_of_preface(server, name):
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        try:
            s.sendall(GARBAGE[name])
        except OSError:
            pass  # already closed on us: fine
        data, closed = wh.recv_until_closed(s, timeout=5)
    assert closed, f"connection still open 5 s after {name!r}; got {data[:200]!r}"
    # Acceptable answers before the close: nothing, an HTTP/1.x 400, or (for
    # something that starts like the HTTP/2 preface) HTTP/2 frames such as
    # SETTINGS + GOAWAY(PROTOCOL_ERROR).
    if data:
        if data.startswith(b"HTTP/1."):
            # "PRI * HTTP/2.0" handed to an HTTP/1 parser may fairly be 505.
            allowed = (b"400", b"505") if name == "bad-h2-preface" else (b"400",)
            assert data.split(b" ", 2)[1] in allowed, data[:200]
        else:
            assert name == "bad-h2-preface", data[:200]
            ftype = data[3]
            assert ftype in (wh.FRAME_SETTINGS, wh.FRAME_GOAWAY), data[:200]


def test_oversized_http1_header(server):
    """1 MiB header line: 400/413/431 (or a plain close), bounded in time."""
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        try:
            s.sendall(req)
        except OSError:
            pass
        data, closed = wh.recv_until_closed(s, timeout=5)
    if data:
        assert data.startswith(b"HTTP/1."), data[:200]
        assert data.split(b" ", 2)[1] in (b"400", b"413", b"431"), data[:200]
    else:
        assert closed, "no answer and no close within 5 s"


# ---------------------------------------------------------------------------
# (b)/(c) Malformed gRPC framing on a valid HTTP/2 stream
# ---------------------------------------------------------------------------

BAD_BODIES = {
    # 3 of the 5 prefix bytes, then END_STREAM.
    "truncated-prefix": b"\x00\x00\x00",
    # Announces 100 bytes, delivers 10, then END_STREAM.
    "short-message": b"\x00\x00\x00\x00\x64" + b"0123456789",
    # Compressed flag without a grpc-encoding header (spec: INTERNAL).
    "compressed-flag-without-encoding": b"\x01\x00\x00\x00\x03abc",
    # A complete frame whose payload is not a valid EchoRequest.
    "invalid-protobuf": b"\x00\x00\x00\x00\x03\xff\xff\xff",
    # Unary call with no request message at all.
    "no-message": b"",
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_malformed_grpc_body(server, protos, name):
    """The exact code is implementation-defined (INTERNAL is what grpc-go and
    the compression spec use; some servers say INVALID_ARGUMENT), so any
    non-zero grpc-status is accepted -- but it must be a proper gRPC status
    (trailers), and the connection must stay usable."""
    with wh.H2Client(server) as c:
        body = BAD_BODIES[name]
        sid = c.start_call(ECHO_PATH, body if body else None, end_stream=True)
        r = c.wait_stream(sid, timeout=5)
        assert not r.timed_out, r
        assert r.header(":status") == "200", r
        st = r.grpc_status()
        assert st is not None and st != 0, r
        ok = _health_check_on(c, protos)
        assert ok.grpc_status() == 0, ok


def test_length_prefix_over_limit_fails_fast(server):
    """Announce a 100 MiB message and send 3 bytes: RESOURCE_EXHAUSTED right
    away, without waiting for (or reading) the rest."""
    with wh.H2Client(server) as c:
        prefix = b"\x00" + (100 * 1024 * 1024).to_bytes(4, "big")
        t0 = time.monotonic()
        sid = c.start_call(ECHO_PATH, prefix + b"abc", end_stream=False)
        r = c.wait_stream(sid, timeout=5)
        assert not r.timed_out, f"no answer within 5 s: {r}"
        assert r.grpc_status() == 8, r
        assert time.monotonic() - t0 < 3


def test_unknown_frame_type_is_ignored(server, protos):
    """RFC 9113 4.1: unknown frame types MUST be ignored."""
    with wh.H2Client(server) as c:
        c.handshake()
        c.sock.sendall(wh.raw_frame(0xFA, 0, 0, b"weft-unknown-frame"))
        r = _health_check_on(c, protos)
        assert r.grpc_status() == 0, r


# ---------------------------------------------------------------------------
# (d) Invalid HPACK
# ---------------------------------------------------------------------------


def test_invalid_hpack_is_connection_error(server):
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        reader = wh.FrameReader(s)
        wh.raw_handshake(s, reader)
        # 0xff...: an indexed field whose integer never terminates.
        s.sendall(wh.raw_frame(wh.FRAME_HEADERS, wh.FLAG_END_HEADERS | wh.FLAG_END_STREAM, 1, b"\xff" * 5))
        goaway, closed = wh.await_goaway_or_close(reader, 5)
    # RFC 9113 4.3: a field block decoding error is a connection error of
    # type COMPRESSION_ERROR.  A bare close is tolerated (the brief allows it).
    if goaway is not None:
        assert goaway[1] == wh.COMPRESSION_ERROR, f"GOAWAY code {goaway[1]}, expected COMPRESSION_ERROR"
    else:
        assert closed, "invalid HPACK: neither GOAWAY nor close within 5 s"


# ---------------------------------------------------------------------------
# (e) HEADERS flood beyond SETTINGS_MAX_CONCURRENT_STREAMS
# ---------------------------------------------------------------------------


def _h2_conn():
    import h2.config
    import h2.connection

    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.data_to_send()  # we write our own preface/SETTINGS (raw_handshake)
    return conn


def _headers(server, path):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", server.target),
            ("content-type", "application/grpc"), ("te", "trailers")]


def test_headers_flood_is_refused(server):
    streams_before = _streams_active(server)
    s = socket.create_connection((server.host, server.port), timeout=5)
    bg = None
    try:
        reader = wh.FrameReader(s)
        settings = wh.raw_handshake(s, reader)
        assert settings.get(0x3) == 100, f"SETTINGS_MAX_CONCURRENT_STREAMS={settings.get(0x3)}"
        bg = wh.BackgroundFrameReader(s, reader)
        bg.start()
        conn = _h2_conn()  # knows nothing about the server limit, so it will exceed it
        hdrs = _headers(server, ECHO_PATH)
        n = 1000
        try:
            for i in range(n):
                conn.send_headers(conn.get_next_available_stream_id(), hdrs, end_stream=False)
                if i % 50 == 49:
                    s.sendall(conn.data_to_send())
            s.sendall(conn.data_to_send())
        except OSError:
            pass  # server hung up on the flood: acceptable

        def refused_enough():
            with bg.lock:
                refused = sum(1 for c in bg.rst_codes.values() if c in (wh.REFUSED_STREAM, wh.PROTOCOL_ERROR))
                return refused >= n - 100 or bg.goaways or bg.closed.is_set()

        # RFC 9113 5.1.2: streams over the limit get RST_STREAM with
        # PROTOCOL_ERROR or REFUSED_STREAM; a GOAWAY/close is also acceptable.
        wh.wait_until(refused_enough, 10, message=lambda: bg.summary())
        with bg.lock:
            accepted = [sid for sid in range(1, 2 * n, 2) if sid not in bg.rst_codes]
        if not (bg.goaways or bg.closed.is_set()):
            assert len(accepted) <= 100, f"{len(accepted)} streams were not refused; {bg.summary()}"
    finally:
        if bg is not None:
            bg.stop()
        s.close()
    # No leaked streams once the connection is gone.
    wh.wait_until(lambda: _streams_active(server) <= streams_before, 5,
                  message="weft_http2_server_streams_active to drop back")


# ---------------------------------------------------------------------------
# (f) Rapid reset (CVE-2023-44487)
# ---------------------------------------------------------------------------


def test_rapid_reset_flood(server):
    streams_before = _streams_active(server)
    s = socket.create_connection((server.host, server.port), timeout=5)
    bg = None
    try:
        reader = wh.FrameReader(s)
        wh.raw_handshake(s, reader)
        bg = wh.BackgroundFrameReader(s, reader)
        bg.start()
        conn = _h2_conn()
        hdrs = _headers(server, CHECK_PATH)
        sent = 0
        try:
            for i in range(5000):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, hdrs, end_stream=False)
                conn.reset_stream(sid, error_code=wh.CANCEL)
                sent += 1
                if i % 100 == 99:
                    s.sendall(conn.data_to_send())
                    if bg.goaways or bg.closed.is_set():
                        break
            s.sendall(conn.data_to_send())
        except OSError:
            pass  # connection closed by the server: that is a valid mitigation
        # Mitigation expected: GOAWAY (ENHANCE_YOUR_CALM, or another code such
        # as INTERNAL_ERROR which nghttp2's rate limiter uses) or a close.
        wh.wait_until(lambda: bg.goaways or bg.closed.is_set(), 5,
                      message=lambda: f"GOAWAY/close after {sent} rapid resets; {bg.summary()}")
    finally:
        if bg is not None:
            bg.stop()
        s.close()
    wh.wait_until(lambda: _streams_active(server) <= streams_before, 5,
                  message="weft_http2_server_streams_active to drop back")


# ---------------------------------------------------------------------------
# CONTINUATION flood (CVE-2024-27316 family)
# ---------------------------------------------------------------------------


def test_continuation_flood(server):
    """HEADERS without END_HEADERS followed by endless CONTINUATION frames.
    The server must cut the connection off (GOAWAY or close) instead of
    buffering without bound; we stop after 16 MiB."""
    import hpack

    rss_before = server.rss_kb()
    s = socket.create_connection((server.host, server.port), timeout=5)
    bg = None
    try:
        reader = wh.FrameReader(s)
        wh.raw_handshake(s, reader)
        bg = wh.BackgroundFrameReader(s, reader)
        bg.start()
        block = hpack.Encoder().encode(_headers(server, ECHO_PATH))
        field = b"\x00\x05x-pad\x64" + b"a" * 100  # literal without indexing, 108 bytes
        fragment = field * (16000 // len(field))
        sent = 0
        try:
            s.sendall(wh.raw_frame(wh.FRAME_HEADERS, 0, 1, block))
            while sent < 16 * 1024 * 1024 and not (bg.goaways or bg.closed.is_set()):
                s.sendall(wh.raw_frame(wh.FRAME_CONTINUATION, 0, 1, fragment))
                sent += len(fragment)
        except OSError:
            pass
        wh.wait_until(lambda: bg.goaways or bg.closed.is_set(), 5,
                      message=lambda: f"GOAWAY/close after {sent} bytes of CONTINUATION; {bg.summary()}")
    finally:
        if bg is not None:
            bg.stop()
        s.close()
    growth_mb = (server.rss_kb() - rss_before) / 1024
    assert growth_mb < 100, f"RSS grew by {growth_mb:.0f} MB"


# ---------------------------------------------------------------------------
# (g) A client that never reads
# ---------------------------------------------------------------------------


def test_slow_reader_does_not_balloon_memory(server, protos):
    """32 server-streaming calls of 100000 x 10 kB each (1 GB per call) on
    a connection whose HTTP/2 windows are wide open (2^31-1) but whose socket is
    never read: only TCP back-pressure limits the server.  Memory must stay
    bounded and other clients must still be served."""
    from h2.settings import SettingCodes

    n_calls = 32
    ch = wh.new_channel(server.target)
    echo = protos.echo_pb2_grpc.EchoServiceStub(ch)
    try:
        stats0 = wh.get_stats(echo, protos)
        rss0 = server.rss_kb()
        c = wh.H2Client(server, rcvbuf=16384,
                        local_settings={SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1},
                        connection_window=2**31 - 1 - 65535)
        try:
            body = wh.grpc_message(protos.echo_pb2.StreamRequest(
                message="flood", count=100000, payload_size=10000).SerializeToString())
            for _ in range(n_calls):
                c.start_call(f"/{wh.ECHO_SERVICE}/Stream", body)
            peak = rss0
            t_end = time.monotonic() + 5
            served = False
            while time.monotonic() < t_end:
                peak = max(peak, server.rss_kb())
                if not served:
                    wh.assert_still_serving(server, protos, timeout=3)
                    served = True
                time.sleep(0.2)
            peak = max(peak, server.rss_kb())
            growth_mb = (peak - rss0) / 1024
            assert growth_mb < 200, f"RSS grew by {growth_mb:.0f} MB (from {rss0 // 1024} MB)"
            assert served
        finally:
            c.close()
        # Closing the connection cancels the blocked handlers.
        def settled():
            st = wh.get_stats(echo, protos)
            return st.active_handlers <= stats0.active_handlers and \
                st.cancelled_handlers >= stats0.cancelled_handlers + n_calls
        wh.wait_until(settled, 10, message=lambda: f"handlers cancelled after close: {wh.get_stats(echo, protos)}")
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# PING flood (CVE-2019-9512): PINGs sent without ever reading the ACKs
# ---------------------------------------------------------------------------


def test_ping_flood_is_bounded(server):
    rss0 = server.rss_kb()
    s = socket.create_connection((server.host, server.port), timeout=5)
    try:
        reader = wh.FrameReader(s)
        wh.raw_handshake(s, reader)
        ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"\x01" * 8  # PING, stream 0
        burst = ping * 1000
        s.settimeout(2.0)
        sent = 0
        stopped = None  # how the server defended itself
        deadline = time.monotonic() + 20
        peak = rss0
        while time.monotonic() < deadline and sent < 500_000:
            try:
                s.sendall(burst)
                sent += 1000
            except socket.timeout:
                stopped = "server stopped reading"  # backpressure: it will not queue more ACKs
                break
            except OSError:
                stopped = "server closed the connection"
                break
            if sent % 50_000 == 0:
                peak = max(peak, server.rss_kb())
        peak = max(peak, server.rss_kb())
        # 500,000 unread PING ACKs would be ~8.5 MB of frames queued by a naive
        # server; either defence (close, or no more reading) must come first.
        assert stopped is not None, f"server read and acknowledged {sent} PINGs nobody read"
        assert peak - rss0 < 100 * 1024, f"RSS grew by {(peak - rss0) / 1024:.1f} MiB during a PING flood"
    finally:
        s.close()
