"""Graceful shutdown (SIGTERM / SIGINT) and the drain deadline. One server per test."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time

import grpc

import weft_helpers as wh


class WatchRecorder(threading.Thread):
    """Consumes a Health/Watch stream in the background, with timestamps."""

    def __init__(self, call, not_serving: int):
        super().__init__(daemon=True)
        self.call = call
        self.not_serving = not_serving
        self.statuses: list[int] = []
        self.ended = threading.Event()
        self.end_code = None
        self.reacted_at = None  # first NOT_SERVING or end of stream

    def run(self):
        try:
            for resp in self.call:
                self.statuses.append(resp.status)
                if resp.status == self.not_serving and self.reacted_at is None:
                    self.reacted_at = time.monotonic()
            self.end_code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            self.end_code = exc.code()
        finally:
            if self.reacted_at is None:
                self.reacted_at = time.monotonic()
            self.ended.set()


class GoawayWatcher(threading.Thread):
    """Keeps an idle raw HTTP/2 connection alive (answers PINGs/SETTINGS via
    h2) and records when a GOAWAY arrives."""

    def __init__(self, client: wh.H2Client):
        super().__init__(daemon=True)
        self.client = client
        self.goaway_at = None
        self.error = None
        self.stop_flag = threading.Event()

    def run(self):
        try:
            while not self.stop_flag.is_set() and not self.client.closed:
                self.client.pump(0.1)
                if self.client.goaway is not None and self.goaway_at is None:
                    self.goaway_at = time.monotonic()
                    return
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _refused(server) -> bool:
    try:
        s = socket.create_connection((server.host, server.port), timeout=1)
    except (ConnectionRefusedError, OSError):
        return True
    s.close()
    return False


def test_graceful_shutdown(server_factory, protos):
    srv = server_factory(wh.TEST_SERVICES_FLAG)
    pb = protos.echo_pb2
    hpb = protos.health_pb2
    ch = wh.new_channel(srv.target)
    watch_ch = wh.new_channel(srv.target)
    http1 = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    h2 = wh.H2Client(srv)
    goaway = GoawayWatcher(h2)
    try:
        stub = protos.echo_pb2_grpc.EchoServiceStub(ch)
        watch = WatchRecorder(protos.health_pb2_grpc.HealthStub(watch_ch).Watch(
            hpb.HealthCheckRequest(service=""), timeout=30), hpb.HealthCheckResponse.NOT_SERVING)
        watch.start()
        wh.wait_until(lambda: watch.statuses, 5, message="the first Watch status")
        assert watch.statuses[0] == hpb.HealthCheckResponse.SERVING

        # An idle keep-alive HTTP/1.1 connection and an idle HTTP/2 connection.
        http1.request("GET", "/healthz")
        r = http1.getresponse()
        r.read()
        assert r.status == 200
        h2.handshake()
        goaway.start()

        idle = wh.get_stats(stub, protos).active_handlers
        t_start = time.monotonic()
        done_at: list[float] = []
        futs = [stub.Echo.future(pb.EchoRequest(message=f"drain-{i}", delay_ms=1500), timeout=15)
                for i in range(5)]
        for f in futs:
            f.add_done_callback(lambda _f: done_at.append(time.monotonic()))
        # Make sure all five are really in flight before the signal.
        wh.wait_until(lambda: wh.get_stats(stub, protos).active_handlers >= idle + 5, 3,
                      message="5 in-flight Echo handlers")
        time.sleep(max(0.0, 0.3 - (time.monotonic() - t_start)))
        t_sig = time.monotonic()
        srv.send_signal(signal.SIGTERM)

        # /healthz on the already-open HTTP/1.1 connection, right away and then
        # every 100 ms: 200 is fine only until the signal is processed; then
        # 503 NOT_SERVING or a closed connection.  Each attempt must be
        # answered (or the connection closed) within 1 s -- a request that
        # races the signal must not hang until the process exits.
        http1.sock.settimeout(1.0)
        outcome = None
        attempts = []
        while outcome is None and time.monotonic() - t_sig < 2:
            t_req = time.monotonic()
            try:
                http1.request("GET", "/healthz")
                resp = http1.getresponse()
                body = resp.read()
            except (socket.timeout, TimeoutError):
                raise AssertionError(
                    f"/healthz sent {t_req - t_sig:.3f}s after SIGTERM: no answer and no close within 1 s "
                    f"(earlier attempts: {attempts}); server crash: {srv.crash_line()}") from None
            except (http.client.HTTPException, ConnectionError, OSError) as exc:
                outcome = f"closed ({type(exc).__name__})"
                break
            attempts.append(resp.status)
            if resp.status != 200:
                assert resp.status == 503, (resp.status, body)
                assert json.loads(body)["status"] == "NOT_SERVING", body
                outcome = "503"
            else:
                time.sleep(0.1)
        assert outcome is not None, f"/healthz still 200 two seconds after SIGTERM: {attempts}"
        http1.close()

        # The idle HTTP/2 connection got a GOAWAY (NO_ERROR) while draining.
        goaway.join(3)
        assert goaway.error is None, goaway.error
        assert h2.goaway is not None, f"no GOAWAY on an idle HTTP/2 connection after SIGTERM (closed={h2.closed})"
        assert h2.goaway[0] == wh.NO_ERROR, h2.goaway
        h2.close()

        # Health went NOT_SERVING: the Watch stream reports it (or ends) ...
        wh.wait_until(lambda: watch.reacted_at is not None, 3,
                      message=lambda: f"Watch to see NOT_SERVING or end; statuses={watch.statuses}")
        if not watch.ended.is_set():
            assert watch.statuses[-1] == hpb.HealthCheckResponse.NOT_SERVING, watch.statuses
        # A Watch is an endless call; whether the server ends it on shutdown or
        # waits for the drain deadline is not specified, so stop watching here
        # (that keeps the exit-time check below about the Echo calls).
        watch.call.cancel()

        # All in-flight calls complete normally.
        results = [f.result(timeout=10) for f in futs]
        assert [r.message for r in results] == [f"drain-{i}" for i in range(5)]
        # ... and the Watch/GOAWAY reactions came while the drain was going on,
        # not only when the process exited after the calls.
        first_done = min(done_at)
        assert watch.reacted_at < first_done, (
            f"Watch reacted {watch.reacted_at - t_sig:.2f}s after SIGTERM, calls finished at {first_done - t_sig:.2f}s")
        assert goaway.goaway_at is not None and goaway.goaway_at < first_done, (
            f"GOAWAY at {goaway.goaway_at and goaway.goaway_at - t_sig}, calls finished at {first_done - t_sig:.2f}s")

        # New connections are refused after a moment.
        wh.wait_until(lambda: _refused(srv), max(0.5, 10 - (time.monotonic() - t_sig)), interval=0.1,
                      message="new connections to be refused")
        rc = srv.wait(max(0.5, 10 - (time.monotonic() - t_sig)))
        assert rc is not None, "server still running 10 s after SIGTERM"
        assert rc == 0, rc
    finally:
        goaway.stop_flag.set()
        http1.close()
        h2.close()
        ch.close()
        watch_ch.close()


def test_watch_sees_not_serving_on_sigterm(server_factory, protos):
    """The Watch part of the graceful-shutdown test on its own: an open
    Health/Watch subscriber must see NOT_SERVING (or its stream end) right
    after SIGTERM, and the server must still exit cleanly."""
    srv = server_factory(wh.TEST_SERVICES_FLAG)
    hpb = protos.health_pb2
    ch = wh.new_channel(srv.target)
    try:
        watch = WatchRecorder(protos.health_pb2_grpc.HealthStub(ch).Watch(
            hpb.HealthCheckRequest(service=wh.ECHO_SERVICE), timeout=30), hpb.HealthCheckResponse.NOT_SERVING)
        watch.start()
        wh.wait_until(lambda: watch.statuses, 5, message="the first Watch status")
        assert watch.statuses == [hpb.HealthCheckResponse.SERVING]
        t_sig = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        wh.wait_until(lambda: watch.reacted_at is not None, 3,
                      message=lambda: f"Watch to see NOT_SERVING or end; statuses={watch.statuses} "
                                      f"server crash: {srv.crash_line()}")
        if not watch.ended.is_set():
            assert watch.statuses[-1] == hpb.HealthCheckResponse.NOT_SERVING, watch.statuses
        assert watch.reacted_at - t_sig < 1.0, (
            f"Watch reacted only after {watch.reacted_at - t_sig:.2f}s (statuses={watch.statuses}, "
            f"end={watch.end_code}); server crash: {srv.crash_line()}")
        watch.call.cancel()
        rc = srv.wait(10)
        assert rc == 0, f"rc={rc}; server crash: {srv.crash_line()}"
    finally:
        ch.close()


def test_drain_deadline(server_factory, protos):
    """In-flight calls longer than --drain-timeout are cut off; exit code still 0."""
    srv = server_factory(wh.TEST_SERVICES_FLAG, "--drain-timeout", "1")
    ch = wh.new_channel(srv.target)
    try:
        stub = protos.echo_pb2_grpc.EchoServiceStub(ch)
        idle = wh.get_stats(stub, protos).active_handlers
        fut = stub.Echo.future(protos.echo_pb2.EchoRequest(message="too-slow", delay_ms=20000), timeout=30)
        wh.wait_until(lambda: wh.get_stats(stub, protos).active_handlers >= idle + 1, 3,
                      message="the slow handler to run")
        t_sig = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(8)
        elapsed = time.monotonic() - t_sig
        assert rc is not None, "server did not exit within 8 s with --drain-timeout 1"
        assert rc == 0, rc
        assert elapsed >= 0.8, f"exited after {elapsed:.2f}s, before the 1 s drain deadline"
        exc = fut.exception(timeout=5)
        assert exc is not None, "a 20 s call succeeded although the drain deadline was 1 s"
        assert exc.code() != grpc.StatusCode.OK
    finally:
        ch.close()


def test_sigint_is_graceful(server_factory, protos):
    srv = server_factory()
    wh.assert_still_serving(srv, protos)
    srv.send_signal(signal.SIGINT)
    rc = srv.wait(10)
    assert rc == 0, rc


def test_sigterm_with_idle_connections_exits_quickly(server_factory, protos):
    """Idle connections (gRPC channel, raw HTTP/2, HTTP/1.1 keep-alive) must
    not hold up shutdown: nothing is in flight, so exit promptly (the default
    drain deadline is 30 s)."""
    srv = server_factory()
    ch = wh.new_channel(srv.target)
    http1 = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    h2 = wh.H2Client(srv)
    try:
        protos.health_pb2_grpc.HealthStub(ch).Check(protos.health_pb2.HealthCheckRequest(), timeout=5)
        http1.request("GET", "/healthz")
        http1.getresponse().read()
        h2.handshake()
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(10)
        elapsed = time.monotonic() - t0
        assert rc == 0, rc
        assert elapsed < 5, f"exit took {elapsed:.1f}s with only idle connections open"
    finally:
        ch.close()
        http1.close()
        h2.close()
