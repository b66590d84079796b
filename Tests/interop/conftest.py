"""Fixtures for the Weft interop suite.

* `protos`         (session)  generated stubs, see weft_helpers.generate_protos
* `server`         (module)   one `weft serve` per test module, with the module's
                              SERVER_ARGS (e.g. `SERVER_ARGS = (wh.TEST_SERVICES_FLAG,)`)
* `api_server`     (module)   one `weft serve --scrypt-log-n 10` per module, for weft.v1 API tests,
                              plus the module's API_SERVER_EXTRA_ARGS (default none)
* `server_factory` (function) start servers with extra flags; stopped after the test
* `channel`, `echo`, `health` per-test gRPC channel and stubs against `server`
* `v1`, `chan`, `anon`  (module)   weft.v1 modules, a gRPC channel and an anonymous REST client for `api_server`

Servers run in the production configuration: the Echo test service only
exists on servers started with wh.TEST_SERVICES_FLAG.

Every server is SIGTERMed at teardown and must exit cleanly: code 0 within
its drain timeout (+15 s), not SIGKILLed, no crash report on stderr;
otherwise the teardown fails (pytest reports an error for the test, or for
the module's last test).  A server a test SIGKILLs on purpose is marked
`srv.expect_unclean = True` by that test.

The server binary comes from $WEFT_BIN (default .build/debug/weft); it is never
built here.  When a test fails, the tail of the stderr of every server that was
alive during the test is attached to the report.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import weft_helpers as wh  # noqa: E402


def _start(tmp_path_factory, name: str, args=(), env=None) -> wh.WeftServer:
    binary = wh.weft_bin()
    if not binary.exists():
        pytest.fail(
            f"weft binary not found at {binary}; build it (swift build) or set WEFT_BIN",
            pytrace=False,
        )
    base = tmp_path_factory.mktemp(name)
    srv = wh.WeftServer(binary, base / "data", base / "logs", args=args, name=name, env=env)
    try:
        srv.start(timeout=30)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return srv


def _teardown(*servers: wh.WeftServer) -> None:
    """SIGTERM each server and fail (as a teardown error) unless each exited
    cleanly; see WeftServer.stop_checked."""
    try:
        wh.finish_servers(servers)
    except wh.ServerExitError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def protos():
    return wh.generate_protos()


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, protos):
    """One server per module with the module's SERVER_ARGS (default none:
    the production configuration)."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    srv = _start(tmp_path_factory, name, getattr(request.module, "SERVER_ARGS", ()))
    yield srv
    _teardown(srv)


@pytest.fixture(scope="module")
def api_server(request, tmp_path_factory, protos):
    """One `weft serve` per test module for the weft.v1 API tests, with its
    own data dir and cheap password hashing (--scrypt-log-n 10), plus the
    module's API_SERVER_EXTRA_ARGS."""
    name = "api-" + request.module.__name__.rsplit(".", 1)[-1]
    args = (*wh.API_SERVER_ARGS, *getattr(request.module, "API_SERVER_EXTRA_ARGS", ()))
    # A master key (environment only), so the secret API works here too.
    srv = _start(tmp_path_factory, name, args,
                 env={"WEFT_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()})
    yield srv
    _teardown(srv)


@pytest.fixture(scope="module")
def v1(protos):
    """The generated weft.v1 modules (protos.v1)."""
    return protos.v1


@pytest.fixture(scope="module")
def chan(api_server):
    """A gRPC channel to the module's `api_server`."""
    ch = wh.new_channel(api_server.target)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def anon(api_server):
    """A REST client without a token, for the module's `api_server`."""
    return wh.RestClient(api_server)


@pytest.fixture
def server_factory(request, tmp_path_factory, protos):
    started: list[wh.WeftServer] = []

    def start(*args: str) -> wh.WeftServer:
        name = f"{request.node.name}-{len(started)}"
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]
        srv = _start(tmp_path_factory, name, args)
        started.append(srv)
        return srv

    yield start
    _teardown(*started)


@pytest.fixture
def channel(server):
    ch = wh.new_channel(server.target, isolated=False)
    yield ch
    ch.close()


@pytest.fixture
def echo(channel, protos):
    return protos.echo_pb2_grpc.EchoServiceStub(channel)


@pytest.fixture
def health(channel, protos):
    return protos.health_pb2_grpc.HealthStub(channel)


# ---------------------------------------------------------------------------
# Attach server logs to failing tests
# ---------------------------------------------------------------------------

_T0 = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_T0] = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    t0 = item.stash.get(_T0, 0.0)
    for srv in wh.ALL_SERVERS:
        if srv.stopped_at is not None and srv.stopped_at < t0:
            continue
        rc = srv.proc.poll() if srv.proc is not None else None
        state = "running" if rc is None else f"exited rc={rc}"
        if srv.killed:
            state += " (SIGKILLed)"
        crash = srv.crash_line()
        if crash:
            state += f" CRASHED: {crash[:120]}"
        rep.sections.append(
            (f"weft server '{srv.name}' port={srv.port} [{state}] stderr (tail)", srv.stderr_tail())
        )
        out = srv.stdout_tail()
        if out.strip():
            rep.sections.append((f"weft server '{srv.name}' stdout (tail)", out))
