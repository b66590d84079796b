"""grpc's own Ruby interop client against `weft serve --enable-test-services`.

Debian's `ruby-grpc` package (1.51.1 on bookworm; installed by
`scripts/install-deps.sh test`) ships grpc's standard interop client,
`src/ruby/pb/test/client.rb`, unchanged from grpc/grpc.  This module runs it
as a subprocess, one process per test case, against a real server:

* ``h2c``: plaintext HTTP/2, ``--use_tls=false``;
* ``tls``: the server started with grpc's own test certificate
  (``src/ruby/spec/testdata/server1.pem``/``server1.key``, bundled with
  ruby-grpc, for ``*.test.google.fr``), the client run the way grpc's interop
  matrix runs it: ``--use_tls=true --use_test_ca=true
  --server_host_override=foo.test.google.fr`` (it verifies the chain against
  the bundled ``ca.pem``).

A case passes when the client exits with status 0 within CASE_TIMEOUT,
prints its final ``"OK: <case>"`` line, and its output shows no failure: no
assertion or uncaught-exception text, no ERROR/FATAL log line, and no logged
exception but those grpc-ruby logs (at WARN) for the very status the case
provokes and rescues (EXPECTED_LOGGED_ERRORS).  Every case the client
knows runs, except those that need Google credentials (OAuth/JWT/GCE: see
AUTH_CASES) and ``all`` (every case in one process, those included).  ``test_client_case_list`` asks the
client for its case list (``--help``), so a newer ruby-grpc with other cases
fails here until CASES is updated.

The client is required, not optional: if ruby or ruby-grpc is missing, every
test fails with the command that installs them.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import time
import types
from pathlib import Path

import pytest

import weft_helpers as wh

TRANSPORTS = ("h2c", "tls")

# The client's cases that run against a plain test server, in the order of
# grpc's doc/interop-test-descriptions.md.
CASES = (
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
    "custom_metadata",
    "status_code_and_message",
    "unimplemented_method",
    "unimplemented_service",
)
# Cases that need Google credentials (service account key, GCE metadata
# server, OAuth scope) and so cannot run against a local server.
AUTH_CASES = (
    "service_account_creds",
    "jwt_token_creds",
    "compute_engine_creds",
    "oauth2_auth_token",
    "per_rpc_creds",
)
# Runs every case of the client in one process, AUTH_CASES included.
META_CASES = ("all",)

CASE_TIMEOUT = 60.0  # seconds per client process
TLS_HOST_OVERRIDE = "foo.test.google.fr"  # in server1.pem's subjectAltName (*.test.google.fr)
INSTALL_HINT = "install it with `scripts/install-deps.sh test` (Debian packages ruby, ruby-grpc)"

# grpc-ruby's bidi_call.rb logs, at WARN and with a backtrace, every error
# status a streaming call ends with before it raises it to the caller -- also
# the status a case provokes on purpose and then rescues.  Those are the only
# exceptions a passing case may log: the expected status, and the
# GRPC::Core::CallError of the client's own read/write loop running into the
# call it cancelled or that ran out of time.  Any other logged exception,
# any ERROR/FATAL log line and any assertion message is a failure.
EXPECTED_LOGGED_ERRORS = {
    "cancel_after_begin": {"GRPC::Cancelled", "GRPC::Core::CallError"},
    "cancel_after_first_response": {"GRPC::Cancelled", "GRPC::Core::CallError"},
    "timeout_on_sleeping_server": {"GRPC::DeadlineExceeded", "GRPC::Core::CallError"},
    "status_code_and_message": {"GRPC::Unknown"},
    "unimplemented_method": {"GRPC::Unimplemented"},
    "unimplemented_service": {"GRPC::Unimplemented"},
    # the probe (a compressed-expecting message sent uncompressed) must fail
    "client_compressed_unary": {"GRPC::InvalidArgument"},
    "client_compressed_streaming": {"GRPC::InvalidArgument"},
}
# Ruby Logger lines: "W, [2026-01-01T00:00:00.000000 #123]  WARN -- : text".
_LOG_LINE_RE = re.compile(r"^([DIWEFA]), \[[^\]]*\]\s+\w+ -- : ?(.*)$")
_EXCEPTION_SUFFIX_RE = re.compile(r"\(((?:[A-Z]\w*::)*[A-Z]\w*)\)\s*$")
# The client's own failure messages (AssertionError, `fail '...'`), and an
# uncaught exception's "file:line:in `method': message (Class)" + "from" lines.
_FAILURE_TEXT_RE = re.compile(
    r"AssertionError|Should have raised|NOT RUN|^\S+:\d+:in `.*\((?:\w+::)*\w+\)\s*$|^\s+from \S+:\d+:in `",
    re.M)


def output_problems(case: str, out: str, err: str) -> list[str]:
    """What in the client's output shows a failure, beyond its exit status."""
    problems = []
    allowed = EXPECTED_LOGGED_ERRORS.get(case, set())
    for name, text in (("stdout", out), ("stderr", err)):
        for line in text.splitlines():
            log = _LOG_LINE_RE.match(line)
            if log:
                level, msg = log.groups()
                exc = _EXCEPTION_SUFFIX_RE.search(msg)
                if level in "EFA":
                    problems.append(f"{name}: an ERROR/FATAL log line: {line.strip()}")
                elif exc and exc.group(1) not in allowed:
                    problems.append(f"{name}: logged exception {exc.group(1)} "
                                    f"(allowed for {case}: {sorted(allowed) or 'none'}): {line.strip()}")
        for m in _FAILURE_TEXT_RE.finditer(text):
            problems.append(f"{name}: failure text: {m.group(0).strip()}")
    return problems


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _locate_client():
    """(client, error): the installed Ruby interop client, or why there is none."""
    ruby = shutil.which("ruby")
    if ruby is None:
        return None, f"ruby is not installed (no `ruby` on PATH); {INSTALL_HINT}"
    gem_dir = None
    res = subprocess.run([ruby, "-e", 'print Gem::Specification.find_by_name("grpc").gem_dir'],
                         capture_output=True, text=True, timeout=30)
    if res.returncode == 0 and res.stdout.strip():
        gem_dir = Path(res.stdout.strip())
    else:  # Debian's rubygems-integration layout, should rubygems not know the gem
        found = sorted(glob.glob("/usr/lib/*/rubygems-integration/*/gems/grpc-*/"))
        gem_dir = Path(found[-1]) if found else None
    if gem_dir is None:
        return None, (f"the Ruby grpc gem is not installed ({ruby} -e 'Gem::Specification.find_by_name(\"grpc\")' "
                      f"failed: {res.stderr.strip()[-300:]}); {INSTALL_HINT}")
    src = gem_dir / "src" / "ruby"
    client = src / "pb" / "test" / "client.rb"
    testdata = src / "spec" / "testdata"
    missing = [p for p in (client, testdata / "ca.pem", testdata / "server1.pem", testdata / "server1.key")
               if not p.is_file()]
    if missing:
        return None, (f"the Ruby grpc gem at {gem_dir} has no interop client / test certificates "
                      f"(missing: {', '.join(map(str, missing))}); {INSTALL_HINT}")
    return types.SimpleNamespace(ruby=ruby, client=client, gem_dir=gem_dir, ca=testdata / "ca.pem",
                                 cert=testdata / "server1.pem", key=testdata / "server1.key"), None


def require_client():
    """The Ruby interop client; fails the calling test (not a skip) if absent."""
    client, error = _locate_client()
    if client is None:
        pytest.fail(f"grpc's Ruby interop client is required: {error}", pytrace=False)
    return client


def client_env() -> dict:
    """The environment of a client process: no proxy (grpc core honours
    grpc_proxy/https_proxy/http_proxy) and no roots override."""
    env = dict(os.environ)
    for name in ("grpc_proxy", "https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY",
                 "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "GRPC_TRACE"):
        env.pop(name, None)
    return env


def run_client(client, srv, case: str, cwd: Path) -> tuple[int | None, str, str, float]:
    """Runs one case; returns (exit status or None on timeout, stdout, stderr, seconds)."""
    args = [client.ruby, str(client.client), f"--server_host={srv.host}", f"--server_port={srv.port}",
            f"--test_case={case}"]
    if srv.transport == "tls":
        args += ["--use_tls=true", "--use_test_ca=true", f"--server_host_override={TLS_HOST_OVERRIDE}"]
    else:
        args += ["--use_tls=false"]
    t0 = time.monotonic()
    try:
        res = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=CASE_TIMEOUT,
                             cwd=str(cwd), env=client_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        return None, text(exc.stdout), text(exc.stderr), time.monotonic() - t0
    return res.returncode, res.stdout, res.stderr, time.monotonic() - t0


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=TRANSPORTS)
def interop_server(request, tmp_path_factory):
    """One `weft serve --enable-test-services` per transport (module scope);
    TLS with grpc's test certificate server1 bundled with ruby-grpc."""
    transport = request.param
    client, _ = _locate_client()
    if client is None:
        # No client (and no server1 certificate to serve): no server either;
        # each test then FAILS in require_client() with the install hint.
        yield None
        return
    args = [wh.TEST_SERVICES_FLAG]
    if transport == "tls":
        args += ["--tls-cert", str(client.cert), "--tls-key", str(client.key)]
    binary = wh.weft_bin()
    if not binary.exists():
        pytest.fail(f"weft binary not found at {binary}; build it (swift build) or set WEFT_BIN", pytrace=False)
    base = tmp_path_factory.mktemp(f"ruby-interop-{transport}")
    srv = wh.WeftServer(binary, base / "data", base / "logs", args=args, name=f"grpc-interop-ruby-{transport}")
    try:
        srv.start(timeout=30)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    srv.transport = transport
    srv.client_dir = base / "client"
    srv.client_dir.mkdir()
    yield srv
    try:
        wh.finish_servers([srv])
    except wh.ServerExitError as exc:
        pytest.fail(str(exc), pytrace=False)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_client_case_list():
    """The client knows exactly CASES + AUTH_CASES + META_CASES (asked with
    --help, which lists the --test_case values)."""
    client = require_client()
    res = subprocess.run([client.ruby, str(client.client), "--help"], capture_output=True, text=True,
                         timeout=CASE_TIMEOUT, env=client_env(), stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"client --help exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    m = re.search(r"--test_case CODE.*?\(([a-z0-9_,\s]+)\)", res.stdout, re.S)
    assert m, f"no test case list in the client's --help:\n{res.stdout}"
    known = {c.strip() for c in m.group(1).split(",") if c.strip()}
    expected = set(CASES) | set(AUTH_CASES) | set(META_CASES)
    assert known == expected, (
        f"the Ruby client ({client.client}) knows other cases than this module lists: "
        f"new={sorted(known - expected)} gone={sorted(expected - known)}")


@pytest.mark.parametrize("case", CASES)
def test_ruby_interop_client(interop_server, case):
    client = require_client()
    srv = interop_server
    rc, out, err, took = run_client(client, srv, case, srv.client_dir)
    report = (f"ruby client, case {case} over {srv.transport} (port {srv.port}), exit "
              f"{'TIMEOUT after %.0fs' % CASE_TIMEOUT if rc is None else rc} in {took:.1f}s\n"
              f"--- stdout ---\n{out[-6000:]}\n--- stderr ---\n{err[-6000:]}")
    assert rc is not None, "the client did not finish: " + report
    assert rc == 0, report
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    assert lines and lines[-1] == f'"OK: {case}"', "no final OK line: " + report
    problems = output_problems(case, out, err)
    assert not problems, "failure in the client's output:\n  " + "\n  ".join(problems) + "\n" + report
    assert srv.running(), "the server exited during the case: " + report
