"""A bounded h2load run against Health/Check; every answer must be grpc-status 0."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import weft_helpers as wh

N = 20000

CHECK = dict(grpc_service=wh.HEALTH_SERVICE, grpc_method="Check")


def test_h2load_health_check(server, tmp_path):
    if shutil.which("h2load") is None:
        pytest.fail("h2load (nghttp2-client) is not installed")
    req = tmp_path / "empty-health-check.bin"
    req.write_bytes(b"\x00\x00\x00\x00\x00")  # uncompressed, 0-byte HealthCheckRequest

    before = wh.fetch_metrics(server)
    cmd = [
        "h2load", "-n", str(N), "-c", "4", "-m", "16",
        "-d", str(req),
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        f"{server.base_url}/grpc.health.v1.Health/Check",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored", out)
    assert m, out
    total, started, done, succeeded, failed, errored = map(int, m.groups())
    assert f"{N} succeeded, 0 failed, 0 errored" in out, out
    assert (total, done, succeeded) == (N, N, N), out
    codes = re.search(r"status codes: (\d+) 2xx", out)
    assert codes and int(codes.group(1)) == N, out

    # h2load only sees HTTP status 200; the gRPC outcome is in the trailers,
    # which the server's own metrics count.
    def ok_delta(mm):
        return mm.total("grpc_server_handled_total", grpc_code="OK", **CHECK) - before.total(
            "grpc_server_handled_total", grpc_code="OK", **CHECK)

    scraped = {}

    def counted():  # metrics may lag the last trailers slightly
        scraped["m"] = wh.fetch_metrics(server)
        return ok_delta(scraped["m"]) >= N

    wh.wait_until(counted, 5, 0.1, message=lambda: (
        f"grpc_server_handled_total{{grpc_code=OK,Check}} to grow by {N}; it grew by {ok_delta(scraped['m'])}"))
    after = scraped["m"]
    codes_after = {s.labels.get("grpc_code") for s in after.select("grpc_server_handled_total", **CHECK)}
    for code in codes_after - {"OK"}:
        d = after.total("grpc_server_handled_total", grpc_code=code, **CHECK) - before.total(
            "grpc_server_handled_total", grpc_code=code, **CHECK)
        assert d == 0, f"{d} Check calls ended with {code} during the h2load run"
    started_delta = after.total("grpc_server_started_total", **CHECK) - before.total(
        "grpc_server_started_total", **CHECK)
    assert started_delta >= N
