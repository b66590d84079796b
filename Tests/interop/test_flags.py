"""Command-line flags of `weft serve` that change wire behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import socket
import time

import grpc
import pytest

import weft_helpers as wh


def test_default_settings(server_factory):
    srv = server_factory()
    settings = wh.h2_settings_of_server(srv)
    assert settings.get(0x3) == 100, settings  # SETTINGS_MAX_CONCURRENT_STREAMS


def test_max_concurrent_streams_flag(server_factory, protos):
    srv = server_factory(wh.TEST_SERVICES_FLAG, "--max-concurrent-streams", "10")
    settings = wh.h2_settings_of_server(srv)
    assert settings.get(0x3) == 10, settings
    # grpcio honours the limit and queues the rest; all 30 calls still succeed.
    ch = wh.new_channel(srv.target)
    try:
        stub = protos.echo_pb2_grpc.EchoServiceStub(ch)
        futs = [stub.Echo.future(protos.echo_pb2.EchoRequest(message=str(i), delay_ms=100), timeout=20)
                for i in range(30)]
        assert [f.result(timeout=20).message for f in futs] == [str(i) for i in range(30)]
    finally:
        ch.close()


def test_max_receive_message_size_flag(server_factory, protos):
    srv = server_factory(wh.TEST_SERVICES_FLAG, "--max-receive-message-size", "1024")
    ch = wh.new_channel(srv.target)
    try:
        stub = protos.echo_pb2_grpc.EchoServiceStub(ch)
        assert len(stub.Echo(protos.echo_pb2.EchoRequest(payload=b"s" * 500), timeout=5).payload) == 500
        with pytest.raises(grpc.RpcError) as ei:
            stub.Echo(protos.echo_pb2.EchoRequest(payload=b"b" * 2000), timeout=5)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        ch.close()


def test_idle_timeout_closes_idle_http2_connection(server_factory):
    srv = server_factory("--idle-timeout", "1")
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        reader = wh.FrameReader(s)
        wh.raw_handshake(s, reader)
        t0 = time.monotonic()
        goaway, closed = wh.await_goaway_or_close(reader, 5)
        elapsed = time.monotonic() - t0
    assert goaway is not None or closed, "idle HTTP/2 connection neither GOAWAYed nor closed within 5 s"
    assert elapsed >= 0.8, f"closed after {elapsed:.2f}s, before the 1 s idle timeout"
    if goaway is not None:
        assert goaway[1] == wh.NO_ERROR, goaway


def test_idle_timeout_spares_active_calls(server_factory, protos):
    """A connection with a call in flight is not idle."""
    srv = server_factory(wh.TEST_SERVICES_FLAG, "--idle-timeout", "1")
    ch = wh.new_channel(srv.target)
    try:
        stub = protos.echo_pb2_grpc.EchoServiceStub(ch)
        resp = stub.Echo(protos.echo_pb2.EchoRequest(message="long", delay_ms=2500), timeout=10)
        assert resp.message == "long"
    finally:
        ch.close()


def test_json_log_format(server_factory, protos):
    srv = server_factory("--log-format", "json")
    wh.assert_still_serving(srv, protos)
    rc = srv.stop()
    assert rc == 0, rc
    lines = [ln for ln in srv.stderr_text().splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        try:
            doc = json.loads(ln)
        except ValueError:
            pytest.fail(f"non-JSON log line with --log-format json: {ln!r}")
        assert isinstance(doc, dict), ln
    assert any(wh.LISTEN_RE.search(ln) for ln in lines)


@pytest.mark.parametrize("args, env, message", [
    (["--trace-sampler", "bogus"], {}, "--trace-sampler bogus: expected one of always_on"),
    ([], {"OTEL_TRACES_SAMPLER": "nope"}, "OTEL_TRACES_SAMPLER=nope: expected one of"),
    (["--trace-sampler-arg", "1.5"], {}, "--trace-sampler-arg must be in 0...1, got 1.5"),
    ([], {"OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG=half is not a number"),
    (["--otel-endpoint", "ftp://collector"], {}, "--otel-endpoint ftp://collector: expected an http(s) URL"),
    ([], {"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"}, "OTEL_EXPORTER_OTLP_ENDPOINT not a url: expected an http(s) URL"),
])
def test_bad_tracing_settings_stop_the_start(tmp_path, args, env, message):
    res = subprocess.run([str(wh.weft_bin()), "serve", "--port", "0", "--data-dir", str(tmp_path), *args],
                         capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert res.returncode != 0 and message in res.stderr, (res.returncode, res.stderr)
