"""TLS on the main port, mutual TLS, certificate reload, and the admin
listener / metrics protection, against real `weft serve` processes with real
clients: curl (HTTP/2 over ALPN and HTTP/1.1), grpcio with
`ssl_channel_credentials`, Python `ssl`/`http.client`, `openssl s_client`,
h2load and a real Prometheus.

The PKI comes from tls_certs.make_certs (openssl CLI): a CA, a server
certificate for localhost / 127.0.0.1, a second one (reload), an expired one,
a client certificate CN=worker-1, an expired one and one from an untrusted CA.

Servers bind 127.0.0.1 only, except the bind check of
`--host 0.0.0.0 --insecure-plaintext`, which is stopped as soon as it listens.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import types
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml

import tls_certs
import weft_helpers as wh

MAIN_LISTEN_RE = re.compile(r"(?<!admin )listening on ([0-9.]+):(\d+)")
ADMIN_LISTEN_RE = re.compile(r"admin listening on ([0-9.]+):(\d+)")
PLAINTEXT_REFUSAL = b"this port speaks TLS: use https://"
H2_REFUSAL = b"this port speaks TLS"
METRICS_TOKEN = "scrape-6f1d2c9e4b7a"
PASSWORD = "correct horse battery"
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


class TLSServer(wh.WeftServer):
    """A WeftServer that also knows its admin listener.

    The base class takes the first `listening on HOST:PORT` of the log, which
    may be the admin listener's `admin listening on ...` line; start() then
    reads the main listener from the line not preceded by "admin"."""

    admin_host: str | None = None
    admin_port: int | None = None

    @property
    def wants_admin(self) -> bool:
        return any(a == "--admin-listen" or a.startswith("--admin-listen=") for a in self.args) \
            or "WEFT_ADMIN_LISTEN" in self.env

    def start(self, timeout: float = 30.0) -> "TLSServer":
        super().start(timeout)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"weft exited with code {self.proc.returncode} while starting:\n"
                                   f"{self.stderr_tail()}")
            text = self.stderr_text()
            main, admin = MAIN_LISTEN_RE.search(text), ADMIN_LISTEN_RE.search(text)
            return (main, admin) if main and (admin or not self.wants_admin) else None

        main, admin = wh.wait_until(listening, timeout, message=lambda: (
            f"'listening on' (and 'admin listening on' for --admin-listen) in the log of {self.name}:\n"
            f"{self.stderr_tail(3000)}"))
        self.host, self.port = main.group(1), int(main.group(2))
        if admin:
            self.admin_host, self.admin_port = admin.group(1), int(admin.group(2))
        return self

    @property
    def admin(self):
        """host/port/target of the admin listener (for wh.http_get, wh.fetch_metrics)."""
        assert self.admin_port is not None, f"{self.name} has no admin listener"
        return types.SimpleNamespace(host=self.admin_host, port=self.admin_port,
                                     target=f"{self.admin_host}:{self.admin_port}",
                                     base_url=f"http://{self.admin_host}:{self.admin_port}")


def _launch(tmp_path_factory, name: str, args=(), env=None) -> TLSServer:
    binary = wh.weft_bin()
    if not binary.exists():
        pytest.fail(f"weft binary not found at {binary}; build it (swift build) or set WEFT_BIN", pytrace=False)
    base = tmp_path_factory.mktemp(name)
    srv = TLSServer(binary, base / "data", base / "logs", args=[str(a) for a in args], name=name, env=env)
    try:
        srv.start(timeout=30)
    except (RuntimeError, AssertionError) as exc:
        srv.kill()
        pytest.fail(str(exc), pytrace=False)
    return srv


def _finish(*servers) -> None:
    try:
        wh.finish_servers(servers)
    except wh.ServerExitError as exc:
        pytest.fail(str(exc), pytrace=False)


def tls_args(cert: Path, key: Path, client_ca: Path | None = None, require: bool = False) -> list:
    args = ["--tls-cert", cert, "--tls-key", key]
    if client_ca is not None:
        args += ["--tls-client-ca", client_ca]
    if require:
        args.append("--tls-require-client-cert")
    return args


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command line tool is not installed", pytrace=False)
    return tls_certs.make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certs, protos):
    """TLS with an optional client certificate (--tls-client-ca, not required)
    and an admin listener."""
    srv = _launch(tmp_path_factory, "tls-main", [
        *tls_args(certs.server_cert, certs.server_key, certs.ca_cert),
        "--admin-listen", "127.0.0.1:0", *wh.API_SERVER_ARGS])
    yield srv
    _finish(srv)


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, certs, protos):
    """TLS that requires a client certificate signed by the test CA."""
    srv = _launch(tmp_path_factory, "tls-mtls", [
        *tls_args(certs.server_cert, certs.server_key, certs.ca_cert, require=True),
        "--admin-listen", "127.0.0.1:0", *wh.API_SERVER_ARGS])
    yield srv
    _finish(srv)


@pytest.fixture
def launch(request, tmp_path_factory, protos):
    """Start servers for one test; each must exit cleanly at teardown."""
    started: list[TLSServer] = []

    def start(*args, env=None) -> TLSServer:
        name = f"{request.node.name}-{len(started)}"
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]
        srv = _launch(tmp_path_factory, name, args, env=env)
        started.append(srv)
        return srv

    yield start
    _finish(*started)


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------


@dataclass
class CurlResult:
    rc: int
    status: int
    version: str
    body: str
    stderr: str

    def __repr__(self):
        return f"<curl rc={self.rc} status={self.status} http={self.version} body={self.body[:300]!r} " \
               f"stderr={self.stderr[-600:]!r}>"


def curl(*args, timeout: float = 30) -> CurlResult:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed")
    res = subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code} %{http_version}",
                          *map(str, args)], capture_output=True, text=True, timeout=timeout)
    body, _, tail = res.stdout.rpartition("\n")
    code, _, version = tail.partition(" ")
    return CurlResult(res.returncode, int(code) if code.isdigit() else -1, version, body, res.stderr)


def curl_tls(srv, certs, path: str, *args, client=None, proto: str = "--http2", ca: Path | None = None) -> CurlResult:
    """curl https://localhost:PORT/path verifying against the test CA
    (localhost resolved to 127.0.0.1); client = (cert, key) for mutual TLS."""
    opts = ["--resolve", f"localhost:{srv.port}:127.0.0.1", "--cacert", ca or certs.ca_cert, proto]
    if client:
        opts += ["--cert", client[0], "--key", client[1]]
    return curl(*opts, *args, f"https://localhost:{srv.port}{path}")


def client_pair(certs, which: str = "client") -> tuple[Path, Path]:
    return getattr(certs, f"{which}_cert"), getattr(certs, f"{which}_key")


def tls_context(certs, client=None, alpn=("http/1.1",)) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    if client:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def https(srv, ctx: ssl.SSLContext, method: str, path: str, body=None, token: str | None = None,
          headers=None, timeout: float = 10) -> wh.RestResponse:
    """One HTTP/1.1-over-TLS request to 127.0.0.1:PORT (IP SAN), new connection."""
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=timeout, context=ctx)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        merged: dict = {}
        for k, v in resp.getheaders():
            k = k.lower()
            merged[k] = f"{merged[k]}, {v}" if k in merged else v
        return wh.RestResponse(resp.status, merged, payload)
    finally:
        conn.close()


def tls_channel(srv, certs, client=None, override: str | None = "localhost", ca: Path | None = None):
    """A grpcio channel over TLS on its own connection; `override` is the
    name checked against the certificate (None: the target's IP, 127.0.0.1)."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=Path(ca or certs.ca_cert).read_bytes(),
        private_key=Path(client[1]).read_bytes() if client else None,
        certificate_chain=Path(client[0]).read_bytes() if client else None)
    opts = [("grpc.use_local_subchannel_pool", 1)]
    if override:
        opts.append(("grpc.ssl_target_name_override", override))
    return grpc.secure_channel(f"127.0.0.1:{srv.port}", creds, options=opts)


def tls_health(srv, certs, protos, client=None, timeout: float = 5, **kw):
    """Health/Check over a new TLS connection; the serving status."""
    ch = tls_channel(srv, certs, client, **kw)
    try:
        stub = protos.health_pb2_grpc.HealthStub(ch)
        return stub.Check(protos.health_pb2.HealthCheckRequest(service=""), timeout=timeout).status
    finally:
        ch.close()


def tls_health_error(srv, certs, protos, client=None, timeout: float = 5, **kw) -> grpc.RpcError:
    """Health/Check over TLS that must fail; the error."""
    with pytest.raises(grpc.RpcError) as err:
        tls_health(srv, certs, protos, client, timeout=timeout, **kw)
    return err.value


def assert_tls_serving(srv, certs, protos, client=None):
    """A fresh TLS connection gets SERVING and the process is alive."""
    assert tls_health(srv, certs, protos, client) == protos.health_pb2.HealthCheckResponse.SERVING
    assert srv.running(), f"server process died (rc={srv.proc.poll()})"


def admin_metrics(srv) -> wh.Metrics:
    return wh.fetch_metrics(srv.admin)


def handshakes(m: wh.Metrics, result: str) -> float:
    return m.total("weft_tls_handshakes_total", result=result)


def tls_register_and_login(srv, ctx, name: str):
    email = wh.unique_email(name.split()[0].lower())
    r = https(srv, ctx, "POST", "/users/register", {"email": email, "password": PASSWORD, "name": name})
    assert r.status == 201, r
    user = r.json
    r = https(srv, ctx, "POST", "/users/login", {"email": email, "password": PASSWORD})
    assert r.status == 200, r
    return types.SimpleNamespace(id=user["id"], email=email, token=r.json["token"])


def served_serial(srv, certs) -> str:
    return tls_certs.serial_of(tls_certs.served_certificate("127.0.0.1", srv.port, certs.ca_cert))


def s_client_session(srv, *args) -> tuple[bool, str, str]:
    """openssl s_client to the server with `args`; (handshake done, output, ALPN)."""
    res = tls_certs.s_client("127.0.0.1", srv.port, *args)
    out = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    done = res.returncode == 0 and "Cipher is (NONE)" not in out and re.search(r"Cipher is \S+", out) is not None
    alpn = re.search(r"ALPN protocol: (\S+)", out)
    return done, out, alpn.group(1) if alpn else ""


def install_files(pairs) -> None:
    """Atomically replace each destination with a copy of its source."""
    for src, dst in pairs:
        tmp = Path(dst).with_name(Path(dst).name + ".new")
        shutil.copy(src, tmp)
        os.replace(tmp, dst)


def wait_metric(srv, name: str, at_least: float, timeout: float = 10, **labels) -> wh.Metrics:
    got = {}

    def grown():
        got["m"] = admin_metrics(srv)
        return got["m"] if got["m"].total(name, **labels) >= at_least else None

    return wh.wait_until(grown, timeout, 0.1, message=lambda: (
        f"{name}{labels} >= {at_least} (now {got['m'].total(name, **labels) if got else '?'})"))


# ---------------------------------------------------------------------------
# HTTP/2 and HTTP/1.1 over TLS on one port (curl)
# ---------------------------------------------------------------------------


def test_curl_https_healthz_negotiates_h2(tls_server, certs):
    r = curl_tls(tls_server, certs, "/healthz")
    assert r.rc == 0 and (r.status, r.version) == (200, "2"), r
    assert json.loads(r.body)["status"] == "SERVING", r
    assert "tls: on" in tls_server.stderr_text(), tls_server.stderr_tail(3000)


def test_curl_https_http11_on_the_same_port(tls_server, certs):
    r = curl_tls(tls_server, certs, "/healthz", proto="--http1.1")
    assert r.rc == 0 and (r.status, r.version) == (200, "1.1"), r
    assert json.loads(r.body)["status"] == "SERVING", r


@pytest.mark.parametrize("proto,version", [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_rest_register_login_me_over_tls(tls_server, certs, proto, version):
    email = wh.unique_email("curl")
    json_post = ("-X", "POST", "-H", "content-type: application/json")
    r = curl_tls(tls_server, certs, "/users/register", *json_post, "--data-binary",
                 json.dumps({"email": email, "password": PASSWORD, "name": "Curl User"}), proto=proto)
    assert r.rc == 0 and (r.status, r.version) == (201, version), r
    user = json.loads(r.body)
    r = curl_tls(tls_server, certs, "/users/login", *json_post, "--data-binary",
                 json.dumps({"email": email, "password": PASSWORD}), proto=proto)
    assert r.rc == 0 and (r.status, r.version) == (200, version), r
    token = json.loads(r.body)["token"]
    r = curl_tls(tls_server, certs, "/users/me", "-H", f"authorization: Bearer {token}", proto=proto)
    assert r.rc == 0 and (r.status, r.version) == (200, version), r
    me = json.loads(r.body)
    assert (me["id"], me["email"]) == (user["id"], email), me
    r = curl_tls(tls_server, certs, "/users/me", proto=proto)
    assert r.rc == 0 and r.status == 401, r


def test_curl_refuses_a_server_it_does_not_trust(tls_server, certs):
    """The server's chain only verifies against the test CA: with another CA
    curl refuses it (so the successful calls above really verified it)."""
    r = curl_tls(tls_server, certs, "/healthz", ca=certs.untrusted_ca_cert)
    assert r.rc == 60 and r.status == 0, r
    assert tls_server.running()


# ---------------------------------------------------------------------------
# gRPC over TLS (grpcio)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("override", ["localhost", None], ids=["dns-san", "ip-san"])
def test_grpcio_health_over_tls(tls_server, certs, protos, override):
    before = handshakes(admin_metrics(tls_server), "ok")
    assert tls_health(tls_server, certs, protos, override=override) == protos.health_pb2.HealthCheckResponse.SERVING
    wait_metric(tls_server, "weft_tls_handshakes_total", before + 1, result="ok")


def test_grpcio_weft_api_over_tls(tls_server, certs, protos):
    users = protos.v1.users_pb2
    email = wh.unique_email("grpc")
    ch = tls_channel(tls_server, certs)
    try:
        stub = protos.v1.users_pb2_grpc.UserServiceStub(ch)
        created = stub.Register(users.RegisterRequest(email=email, password=PASSWORD, name="Grpc Tls"), timeout=10)
        login = stub.Login(users.LoginRequest(email=email, password=PASSWORD), timeout=10)
        assert login.token, login
        me = stub.GetCurrentUser(users.GetCurrentUserRequest(), timeout=10,
                                 metadata=(("authorization", f"Bearer {login.token}"),))
        assert (me.id, me.email) == (created.id, email), me
        with pytest.raises(grpc.RpcError) as err:
            stub.GetCurrentUser(users.GetCurrentUserRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value
    finally:
        ch.close()
    # The REST side sees the same account (one server, two protocols, one TLS port).
    r = https(tls_server, tls_context(certs), "GET", "/users/me", token=login.token)
    assert r.status == 200 and r.json["id"] == created.id, r


def test_tls_metrics_on_the_admin_listener(tls_server, certs, protos):
    assert_tls_serving(tls_server, certs, protos)
    m = admin_metrics(tls_server)
    assert m.type_of("weft_tls_handshakes_total") == "counter", m.types.get("weft_tls_handshakes")
    assert handshakes(m, "ok") >= 1
    assert m.type_of("weft_tls_certificate_expiry_seconds") == "gauge"
    expiry = m.total("weft_tls_certificate_expiry_seconds")
    assert abs(expiry - tls_certs.not_after_of(certs.server_cert)) <= 1, expiry
    assert m.type_of("weft_tls_reloads_total") == "counter" or not m.select("weft_tls_reloads_total"), m.types


# ---------------------------------------------------------------------------
# ALPN, protocol versions, sniffing without ALPN (openssl s_client, ssl)
# ---------------------------------------------------------------------------


def test_alpn_h2_and_http11_with_s_client(tls_server, certs):
    for offered, expected in [("h2", "h2"), ("http/1.1", "http/1.1"), ("h2,http/1.1", "h2")]:
        done, out, alpn = s_client_session(tls_server, "-alpn", offered, "-servername", "localhost",
                                           "-CAfile", certs.ca_cert, "-verify_return_error")
        assert done, out
        assert alpn == expected, (offered, out)
        assert "Verify return code: 0 (ok)" in out, out


def test_tls_versions_12_and_13_accepted_11_refused(tls_server, certs, tmp_path):
    before = handshakes(admin_metrics(tls_server), "failed")
    for flag, proto in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")]:
        done, out, _ = s_client_session(tls_server, flag, "-servername", "localhost", "-CAfile", certs.ca_cert,
                                        "-verify_return_error")
        assert done, out
        # "New, TLSv1.3, Cipher is ..." names the negotiated protocol; the
        # SSL-Session block ("Protocol  : TLSv1.3") is printed only when a TLS 1.3
        # session ticket arrived before s_client quit, which is a race.
        assert re.search(rf"(Protocol\s*: |New, ){re.escape(proto)}\b", out), out
    # TLS 1.1 needs security level 0 on OpenSSL 3 clients (SHA-1); the same
    # client flags complete a TLS 1.1 handshake with an `openssl s_server`
    # that allows it, so the refusal below is the server's.
    tls11 = ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
    _control_tls11_handshake(certs, tls11, tmp_path)
    done, out, _ = s_client_session(tls_server, *tls11, "-servername", "localhost")
    assert not done, f"TLS 1.1 handshake completed:\n{out}"
    wait_metric(tls_server, "weft_tls_handshakes_total", before + 1, result="failed")
    assert curl_tls(tls_server, certs, "/healthz").status == 200


def _control_tls11_handshake(certs, client_args, tmp_path):
    from test_engine_api import closed_port

    port = closed_port()
    log = open(tmp_path / "s_server.log", "wb")
    proc = subprocess.Popen([tls_certs.openssl_bin(), "s_server", "-www", "-accept", f"127.0.0.1:{port}",
                             "-cert", str(certs.server_cert), "-key", str(certs.server_key),
                             "-cipher", "DEFAULT@SECLEVEL=0"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        def up():
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wh.wait_until(up, 10, message="openssl s_server listening")
        srv = types.SimpleNamespace(port=port)
        done, out, _ = s_client_session(srv, *client_args)
        assert done and re.search(r"Protocol\s*: TLSv1\.1\b", out), \
            f"this openssl client cannot do TLS 1.1 even with a server that allows it:\n{out}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_without_alpn_the_server_sniffs_http1_and_h2(tls_server, certs):
    # HTTP/1.1 over TLS without ALPN.
    r = https(tls_server, tls_context(certs, alpn=()), "GET", "/healthz")
    assert r.status == 200 and r.json["status"] == "SERVING", r
    # The HTTP/2 preface over TLS without ALPN: the server answers with its SETTINGS.
    ctx = tls_context(certs, alpn=())
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() is None
            settings = wh.raw_handshake(s, wh.FrameReader(s))
            assert isinstance(settings, dict)
    # And with ALPN the negotiated protocol is what Python asked for.
    for offered, expected in [(["h2"], "h2"), (["http/1.1"], "http/1.1")]:
        with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
            with tls_context(certs, alpn=offered).wrap_socket(raw, server_hostname="localhost") as s:
                assert s.selected_alpn_protocol() == expected


# ---------------------------------------------------------------------------
# Plaintext clients on the TLS port
# ---------------------------------------------------------------------------


def test_plaintext_http1_on_tls_port_gets_400(tls_server, certs, protos):
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data, closed = wh.recv_until_closed(s, 5)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    head, _, body = data.partition(b"\r\n\r\n")
    assert PLAINTEXT_REFUSAL in body, data
    assert closed, f"connection left open after the 400: {data!r}"
    r = curl(f"http://127.0.0.1:{tls_server.port}/healthz")
    assert r.status == 400 and PLAINTEXT_REFUSAL.decode() in r.body, r
    assert_tls_serving(tls_server, certs, protos)


def test_h2c_prior_knowledge_on_tls_port_gets_goaway(tls_server, certs, protos):
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as s:
        s.sendall(wh.PREFACE + wh.raw_frame(wh.FRAME_SETTINGS, 0, 0))
        reader = wh.FrameReader(s)
        goaway, closed, frames = None, False, []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                fr = reader.next_frame(deadline - time.monotonic())
            except socket.timeout:
                break
            if fr is None:
                closed = True
                break
            frames.append(fr[0])
            if fr[0] == wh.FRAME_GOAWAY:
                goaway = wh.goaway_info(fr[3])
    assert goaway is not None, f"no GOAWAY; frames={frames} closed={closed}"
    _, code, debug = goaway
    assert code == wh.PROTOCOL_ERROR, goaway
    assert H2_REFUSAL in debug, goaway
    assert closed, f"connection left open after the GOAWAY (frames {frames})"
    assert_tls_serving(tls_server, certs, protos)


def test_grpc_h2c_client_on_tls_port_fails_fast(tls_server, certs, protos):
    """A plaintext (h2c) grpcio client gets a connection-level failure
    (UNAVAILABLE), not a call left waiting for its deadline while grpcio
    reconnects again and again (each refused connection counts as a failed
    handshake)."""
    failed_before = handshakes(admin_metrics(tls_server), "failed")
    ch = wh.new_channel(tls_server.target)
    t0 = time.monotonic()
    try:
        with pytest.raises(grpc.RpcError) as err:
            protos.health_pb2_grpc.HealthStub(ch).Check(protos.health_pb2.HealthCheckRequest(service=""), timeout=8)
    finally:
        ch.close()
    took = time.monotonic() - t0
    refused = handshakes(admin_metrics(tls_server), "failed") - failed_before
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, (
        err.value.code(), err.value.details(), f"{took:.1f}s", f"{refused:.0f} connections refused")
    assert refused <= 5, f"one failing call made {refused:.0f} plaintext connections (a reconnect storm)"
    assert_tls_serving(tls_server, certs, protos)


# ---------------------------------------------------------------------------
# Mutual TLS
# ---------------------------------------------------------------------------


def test_optional_client_cert(tls_server, certs, protos):
    """--tls-client-ca without --tls-require-client-cert: with or without a
    valid client certificate works; a bad one fails the handshake."""
    serving = protos.health_pb2.HealthCheckResponse.SERVING
    assert tls_health(tls_server, certs, protos) == serving
    assert tls_health(tls_server, certs, protos, client_pair(certs)) == serving
    r = curl_tls(tls_server, certs, "/healthz", client=client_pair(certs))
    assert (r.rc, r.status) == (0, 200), r
    for bad in ("untrusted_client", "expired_client"):
        r = curl_tls(tls_server, certs, "/healthz", client=client_pair(certs, bad))
        assert r.rc != 0 and r.status == 0, (bad, r)
        err = tls_health_error(tls_server, certs, protos, client_pair(certs, bad))
        assert err.code() == grpc.StatusCode.UNAVAILABLE, (bad, err)
    assert_tls_serving(tls_server, certs, protos)


def test_mtls_client_cert_works(mtls_server, certs, protos):
    client = client_pair(certs)
    assert tls_health(mtls_server, certs, protos, client) == protos.health_pb2.HealthCheckResponse.SERVING
    r = curl_tls(mtls_server, certs, "/healthz", client=client)
    assert r.rc == 0 and (r.status, r.version) == (200, "2"), r
    r = https(mtls_server, tls_context(certs, client), "GET", "/healthz")
    assert r.status == 200, r


def test_mtls_without_client_cert_fails_handshake(mtls_server, certs, protos):
    before = handshakes(admin_metrics(mtls_server), "failed")
    r = curl_tls(mtls_server, certs, "/healthz")
    assert r.rc != 0 and r.status == 0, r
    err = tls_health_error(mtls_server, certs, protos)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(mtls_server, tls_context(certs), "GET", "/healthz")
    wait_metric(mtls_server, "weft_tls_handshakes_total", before + 3, result="failed")
    assert_tls_serving(mtls_server, certs, protos, client_pair(certs))


@pytest.mark.parametrize("which", ["untrusted_client", "expired_client"])
def test_mtls_bad_client_cert_refused(mtls_server, certs, protos, which):
    before = handshakes(admin_metrics(mtls_server), "failed")
    bad = client_pair(certs, which)
    r = curl_tls(mtls_server, certs, "/healthz", client=bad)
    assert r.rc != 0 and r.status == 0, r
    err = tls_health_error(mtls_server, certs, protos, bad)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(mtls_server, tls_context(certs, bad), "GET", "/healthz")
    wait_metric(mtls_server, "weft_tls_handshakes_total", before + 3, result="failed")
    assert_tls_serving(mtls_server, certs, protos, client_pair(certs))


def test_mtls_client_cert_cn_authenticates_as_api_key(mtls_server, certs, protos):
    """A verified client certificate (CN=worker-1) with no authorization
    header acts as the API key whose clientCertCn is worker-1."""
    client = client_pair(certs)
    ctx = tls_context(certs, client)
    owner = tls_register_and_login(mtls_server, ctx, "Cert Owner")
    other = tls_register_and_login(mtls_server, ctx, "Other User")
    # No key maps the CN yet: the certificate alone authenticates nobody.
    assert https(mtls_server, ctx, "GET", "/users/me").status == 401
    # A name is bound only by a call made with that certificate (no claiming another's workers).
    r = https(mtls_server, ctx, "POST", "/api-keys", {"name": "claim", "scopes": ["read"],
                                                     "clientCertCn": "payments-worker"}, token=owner.token)
    assert r.status == 403 and "client certificate" in r.json["message"], r

    r = https(mtls_server, ctx, "POST", "/api-keys", {"name": "worker-1 certificate", "scopes": ["read"],
                                                     "clientCertCn": certs.client_cn}, token=owner.token)
    assert r.status == 201, r
    key = r.json["apiKey"]
    assert key.get("clientCertCn") == certs.client_cn, r.json
    assert r.json.get("secret", "").startswith("wk_"), r.json

    # REST over HTTP/1.1 and HTTP/2, no authorization header.
    r = https(mtls_server, ctx, "GET", "/users/me")
    assert r.status == 200 and r.json["id"] == owner.id, r
    c = curl_tls(mtls_server, certs, "/users/me", client=client)
    assert c.rc == 0 and (c.status, c.version) == (200, "2") and json.loads(c.body)["id"] == owner.id, c
    # gRPC, no metadata.
    users = protos.v1.users_pb2
    ch = tls_channel(mtls_server, certs, client)
    try:
        stub = protos.v1.users_pb2_grpc.UserServiceStub(ch)
        me = stub.GetCurrentUser(users.GetCurrentUserRequest(), timeout=10)
        assert me.id == owner.id, me
        # An authorization header wins over the certificate.
        me = stub.GetCurrentUser(users.GetCurrentUserRequest(), timeout=10,
                                 metadata=(("authorization", f"Bearer {other.token}"),))
        assert me.id == other.id, me
    finally:
        ch.close()
    # The key's scope applies: read only.
    r = https(mtls_server, ctx, "POST", "/workflows",
              {"name": "by certificate", "tasks": [{"key": "a", "name": "A", "action": "noop"}]})
    assert r.status == 403, r
    # Revoked: the certificate authenticates nobody again.
    r = https(mtls_server, ctx, "DELETE", f"/api-keys/{key['id']}", token=owner.token)
    # 200 `{}` (the spec) or 204 without a body (the REST bridge's answer to every other DELETE).
    assert (r.status, r.body.strip()) in ((200, b"{}"), (204, b"")), r
    r = https(mtls_server, ctx, "GET", "/users/me")
    assert r.status == 401, r


# ---------------------------------------------------------------------------
# A server with an expired certificate
# ---------------------------------------------------------------------------


def test_expired_server_certificate_is_refused_by_clients(launch, certs, protos):
    srv = launch(*tls_args(certs.expired_server_cert, certs.expired_server_key), "--admin-listen", "127.0.0.1:0")
    before = handshakes(admin_metrics(srv), "failed")
    r = curl_tls(srv, certs, "/healthz")
    assert r.rc == 60 and "certificate has expired" in r.stderr, r
    err = tls_health_error(srv, certs, protos)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    assert "certificate has expired" in (err.details() or ""), err.details()
    with pytest.raises(ssl.SSLCertVerificationError) as exc:
        https(srv, tls_context(certs), "GET", "/healthz")
    assert "certificate has expired" in str(exc.value), exc.value
    wait_metric(srv, "weft_tls_handshakes_total", before + 1, result="failed")
    # The server is fine: a client that does not verify gets its answer.
    r = curl("-k", "--http2", f"https://127.0.0.1:{srv.port}/healthz")
    assert (r.rc, r.status, r.version) == (0, 200, "2"), r
    m = admin_metrics(srv)
    assert abs(m.total("weft_tls_certificate_expiry_seconds") - tls_certs.not_after_of(certs.expired_server_cert)) <= 1
    assert m.total("weft_tls_certificate_expiry_seconds") < time.time()
    assert srv.running()


# ---------------------------------------------------------------------------
# h2load over TLS
# ---------------------------------------------------------------------------


def _h2load(url: str, req: Path, *args) -> list[str]:
    if shutil.which("h2load") is None:
        pytest.fail("h2load (nghttp2-client) is not installed")
    return ["h2load", *map(str, args), "-d", str(req), "-H", "content-type: application/grpc",
            "-H", "te: trailers", url]


def _h2load_counts(out: str) -> dict:
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    assert m, out
    return dict(zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"), map(int, m.groups())))


def test_h2load_over_tls(tls_server, tmp_path):
    n = 2000
    req = tmp_path / "empty-health-check.bin"
    req.write_bytes(b"\x00\x00\x00\x00\x00")
    check = dict(grpc_service=wh.HEALTH_SERVICE, grpc_method="Check")
    before = admin_metrics(tls_server)
    res = subprocess.run(_h2load(f"https://127.0.0.1:{tls_server.port}{HEALTH_CHECK}", req,
                                 "-n", n, "-c", 4, "-m", 8), capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Application protocol: h2" in out, out
    assert re.search(r"TLS Protocol: TLSv1\.[23]", out), out
    c = _h2load_counts(out)
    assert (c["total"], c["done"], c["succeeded"], c["failed"], c["errored"], c["timeout"]) == (n, n, n, 0, 0, 0), out
    codes = re.search(r"status codes: (\d+) 2xx", out)
    assert codes and int(codes.group(1)) == n, out
    after = wait_metric(tls_server, "grpc_server_handled_total",
                        before.total("grpc_server_handled_total", grpc_code="OK", **check) + n, grpc_code="OK", **check)
    for code in {s.labels.get("grpc_code") for s in after.select("grpc_server_handled_total", **check)} - {"OK"}:
        assert after.total("grpc_server_handled_total", grpc_code=code, **check) == \
            before.total("grpc_server_handled_total", grpc_code=code, **check), code
    assert handshakes(after, "ok") - handshakes(before, "ok") >= 4


# ---------------------------------------------------------------------------
# SIGHUP reload
# ---------------------------------------------------------------------------


class CallLoop(threading.Thread):
    """Calls fn() until stopped; counts successes (with times) and errors."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.stop_flag = threading.Event()
        self.ok_times: list[float] = []
        self.errors: list[str] = []

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.fn()
                self.ok_times.append(time.monotonic())
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.errors.append(f"{time.monotonic():.3f} {exc!r}"[:500])
                time.sleep(0.05)

    def stop(self):
        self.stop_flag.set()
        self.join(15)


def _reload_server(launch, certs, tmp_path, *extra):
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "tls.crt", live / "tls.key"
    install_files([(certs.server_cert, cert), (certs.server_key, key)])
    srv = launch(*tls_args(cert, key), "--admin-listen", "127.0.0.1:0", *extra)
    return srv, cert, key


def test_sighup_reload_under_load(launch, certs, protos, tmp_path):
    srv, cert, key = _reload_server(launch, certs, tmp_path)
    old_serial, new_serial = tls_certs.serial_of(certs.server_cert), tls_certs.serial_of(certs.server2_cert)
    assert old_serial != new_serial
    assert served_serial(srv, certs) == old_serial
    reloads_before = admin_metrics(srv).total("weft_tls_reloads_total", result="ok")
    serving = protos.health_pb2.HealthCheckResponse.SERVING

    # A keep-alive HTTP/1.1 connection opened before the reload.
    old_der = ssl.PEM_cert_to_DER_cert(certs.server_cert.read_text())
    keep = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=10, context=tls_context(certs))
    keep.request("GET", "/healthz")
    assert keep.getresponse().read() and keep.sock.getpeercert(binary_form=True) == old_der
    keep_sock = keep.sock

    # Load: h2load on 4 long-lived connections, gRPC on one long-lived
    # channel, and gRPC on a new connection per call.
    req = tmp_path / "empty-health-check.bin"
    req.write_bytes(b"\x00\x00\x00\x00\x00")
    h2 = subprocess.Popen(_h2load(f"https://127.0.0.1:{srv.port}{HEALTH_CHECK}", req, "-D", 6, "-c", 4, "-m", 8),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    persistent = tls_channel(srv, certs)
    stub = protos.health_pb2_grpc.HealthStub(persistent)

    def on_persistent():
        assert stub.Check(protos.health_pb2.HealthCheckRequest(service=""), timeout=5).status == serving

    def on_new_connection():
        assert tls_health(srv, certs, protos) == serving

    loops = [CallLoop(on_persistent), CallLoop(on_new_connection)]
    for loop in loops:
        loop.start()
    try:
        time.sleep(1.5)  # load running on the old certificate
        install_files([(certs.server2_cert, cert), (certs.server2_key, key)])
        reloaded_at = time.monotonic()
        srv.send_signal(signal.SIGHUP)
        after = wait_metric(srv, "weft_tls_reloads_total", reloads_before + 1, result="ok")
        assert served_serial(srv, certs) == new_serial
        assert abs(after.total("weft_tls_certificate_expiry_seconds")
                   - tls_certs.not_after_of(certs.server2_cert)) <= 1
        out, _ = h2.communicate(timeout=60)
    finally:
        for loop in loops:
            loop.stop()
        persistent.close()
        if h2.poll() is None:
            h2.kill()
            h2.wait(10)
    for name, loop in zip(("persistent channel", "new connection per call"), loops):
        assert not loop.errors, f"{name}: {len(loop.errors)} failed calls: {loop.errors[:5]}"
        assert any(t < reloaded_at for t in loop.ok_times), f"{name}: no call before the reload"
        assert sum(t > reloaded_at + 0.5 for t in loop.ok_times) >= 3, f"{name}: too few calls after the reload"
    assert h2.returncode == 0, out
    c = _h2load_counts(out)
    assert c["total"] > 0 and c["total"] == c["done"] == c["succeeded"], out
    assert (c["failed"], c["errored"], c["timeout"]) == (0, 0, 0), out
    # The connection from before the reload still works, on the old certificate.
    keep.request("GET", "/healthz")
    assert keep.getresponse().status == 200
    assert keep.sock is keep_sock and keep.sock.getpeercert(binary_form=True) == old_der
    keep.close()
    m = admin_metrics(srv)
    assert m.total("weft_tls_reloads_total", result="ok") == reloads_before + 1
    assert m.total("weft_tls_reloads_total", result="failed") == 0


def test_sighup_with_bad_files_keeps_the_old_certificate(launch, certs, protos, tmp_path):
    srv, cert, key = _reload_server(launch, certs, tmp_path)
    old_serial = tls_certs.serial_of(certs.server_cert)
    m0 = admin_metrics(srv)
    ok0, failed0 = (m0.total("weft_tls_reloads_total", result=r) for r in ("ok", "failed"))

    # 1. Garbage in the certificate file.
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    log_mark = len(srv.stderr_text())
    srv.send_signal(signal.SIGHUP)
    wait_metric(srv, "weft_tls_reloads_total", failed0 + 1, result="failed")
    assert str(cert) in srv.stderr_text()[log_mark:], srv.stderr_text()[log_mark:]
    assert served_serial(srv, certs) == old_serial
    assert_tls_serving(srv, certs, protos)

    # 2. A key that does not match the certificate.
    install_files([(certs.server2_cert, cert), (certs.server_key, key)])
    srv.send_signal(signal.SIGHUP)
    wait_metric(srv, "weft_tls_reloads_total", failed0 + 2, result="failed")
    assert served_serial(srv, certs) == old_serial
    assert_tls_serving(srv, certs, protos)

    # 3. A good pair again: reloaded.
    install_files([(certs.server2_cert, cert), (certs.server2_key, key)])
    srv.send_signal(signal.SIGHUP)
    wait_metric(srv, "weft_tls_reloads_total", ok0 + 1, result="ok")
    assert served_serial(srv, certs) == tls_certs.serial_of(certs.server2_cert)
    assert_tls_serving(srv, certs, protos)
    assert admin_metrics(srv).total("weft_tls_reloads_total", result="failed") == failed0 + 2


def test_sighup_reloads_the_client_ca(launch, certs, protos, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    ca = live / "client-ca.pem"
    install_files([(certs.ca_cert, ca)])
    srv = launch(*tls_args(certs.server_cert, certs.server_key, ca, require=True), "--admin-listen", "127.0.0.1:0")
    good, other = client_pair(certs), client_pair(certs, "untrusted_client")
    assert_tls_serving(srv, certs, protos, good)
    assert tls_health_error(srv, certs, protos, other).code() == grpc.StatusCode.UNAVAILABLE
    ok0 = admin_metrics(srv).total("weft_tls_reloads_total", result="ok")
    install_files([(certs.untrusted_ca_cert, ca)])
    srv.send_signal(signal.SIGHUP)
    wait_metric(srv, "weft_tls_reloads_total", ok0 + 1, result="ok")
    assert_tls_serving(srv, certs, protos, other)
    assert tls_health_error(srv, certs, protos, good).code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------------------
# Plaintext on a non-loopback address
# ---------------------------------------------------------------------------


def _serve_cmd(data_dir: Path, *args) -> list[str]:
    return [str(wh.weft_bin()), "serve", "--port", "0", "--data-dir", str(data_dir), *map(str, args)]


def test_non_loopback_plaintext_refused(tmp_path):
    if not wh.weft_bin().exists():
        pytest.fail(f"weft binary not found at {wh.weft_bin()}", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")}
    proc = subprocess.Popen(_serve_cmd(tmp_path / "data", "--host", "0.0.0.0"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"`weft serve --host 0.0.0.0` without TLS kept running:\n{err.decode(errors='replace')[-3000:]}")
    text = (out + err).decode(errors="replace")
    assert proc.returncode != 0, text
    assert "--insecure-plaintext" in text, text
    assert not MAIN_LISTEN_RE.search(text), text


def test_non_loopback_plaintext_with_insecure_flag_starts(tmp_path):
    """Bind check only: the server is stopped as soon as it listens."""
    if not wh.weft_bin().exists():
        pytest.fail(f"weft binary not found at {wh.weft_bin()}", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")}
    err_path = tmp_path / "stderr.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(_serve_cmd(tmp_path / "data", "--host", "0.0.0.0", "--insecure-plaintext"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)
        try:
            def listening():
                if proc.poll() is not None:
                    raise RuntimeError(f"exited with {proc.returncode}:\n{err_path.read_text(errors='replace')}")
                return MAIN_LISTEN_RE.search(err_path.read_text(errors="replace"))

            m = wh.wait_until(listening, 30, message="'listening on 0.0.0.0:PORT'")
            assert m.group(1) == "0.0.0.0", m.group(0)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                rc = "killed"
    assert rc == 0, f"rc={rc}\n{err_path.read_text(errors='replace')[-3000:]}"


# ---------------------------------------------------------------------------
# Admin listener and metrics protection
# ---------------------------------------------------------------------------


def test_admin_listener_serves_metrics_and_health(launch, protos):
    srv = launch("--admin-listen", "127.0.0.1:0")
    assert srv.admin_port and srv.admin_port != srv.port
    status, headers, body = wh.http_get(srv.admin, "/metrics")
    assert status == 200, body[:300]
    assert headers.get("content-type", "").startswith("text/plain"), headers
    m = wh.parse_metrics(body.decode())
    assert m.select("weft_build_info"), "no weft_build_info on the admin listener"
    status, _, body = wh.http_get(srv.admin, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "SERVING", body
    # h2c on the admin listener: curl with prior knowledge and gRPC health.
    r = curl("--http2-prior-knowledge", f"{srv.admin.base_url}/healthz")
    assert (r.rc, r.status, r.version) == (0, 200, "2"), r
    ch = wh.new_channel(srv.admin.target)
    try:
        resp = protos.health_pb2_grpc.HealthStub(ch).Check(protos.health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert resp.status == protos.health_pb2.HealthCheckResponse.SERVING
    finally:
        ch.close()
    # /metrics moved off the main listener.
    status, _, body = wh.http_get(srv, "/metrics")
    assert status == 404, (status, body[:300])
    # The admin scrape passes promtool.
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} missing: install the Debian package `prometheus`")
    text = wh.http_get(srv.admin, "/metrics")[2].decode()
    res = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"promtool rc={res.returncode}\n{res.stdout}\n{res.stderr}"


def test_tls_main_listener_metrics_404_with_admin(tls_server, certs):
    r = curl_tls(tls_server, certs, "/metrics")
    assert r.rc == 0 and r.status == 404, r
    status, _, body = wh.http_get(tls_server.admin, "/metrics")
    assert status == 200 and b"weft_tls_handshakes_total" in body


def test_tls_main_listener_metrics_closed_by_default(launch, certs):
    srv = launch(*tls_args(certs.server_cert, certs.server_key))
    r = curl_tls(srv, certs, "/metrics")
    assert r.rc == 0 and r.status == 401, r
    r = curl_tls(srv, certs, "/healthz")
    assert r.rc == 0 and r.status == 200, r


def _check_metrics_token(get):
    """get(headers) -> (status, headers, body) of main /metrics."""
    status, headers, _ = get({})
    assert status == 401, status
    assert headers.get("www-authenticate", "").lower().startswith("bearer"), headers
    status, _, _ = get({"authorization": "Bearer wrong-token"})
    assert status == 401, status
    status, _, _ = get({"authorization": "Basic " + METRICS_TOKEN})
    assert status == 401, status
    status, headers, body = get({"authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200, (status, body[:300])
    assert wh.parse_metrics(body.decode()).select("weft_build_info")


def _plain_get(srv):
    def get(headers):
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        try:
            conn.request("GET", "/metrics", headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()
    return get


@pytest.mark.parametrize("how", ["flag", "env"])
def test_metrics_token_on_plaintext_main_listener(launch, how):
    srv = launch("--metrics-token", METRICS_TOKEN) if how == "flag" else \
        launch(env={"WEFT_METRICS_TOKEN": METRICS_TOKEN})
    _check_metrics_token(_plain_get(srv))


def test_metrics_token_over_tls(launch, certs):
    srv = launch(*tls_args(certs.server_cert, certs.server_key), "--metrics-token", METRICS_TOKEN)
    ctx = tls_context(certs)

    def get(headers):
        r = https(srv, ctx, "GET", "/metrics", headers=headers)
        return r.status, r.headers, r.body

    _check_metrics_token(get)
    r = curl_tls(srv, certs, "/metrics", "-H", f"authorization: Bearer {METRICS_TOKEN}")
    assert (r.rc, r.status, r.version) == (0, 200, "2"), r


def _reflection_services(target: str) -> list[str]:
    from grpc_reflection.v1alpha import reflection_pb2 as alpha

    ch = wh.new_channel(target)
    try:
        call = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                request_serializer=alpha.ServerReflectionRequest.SerializeToString,
                                response_deserializer=alpha.ServerReflectionResponse.FromString)
        replies = list(call(iter([alpha.ServerReflectionRequest(list_services="")]), timeout=10))
        return [s.name for s in replies[0].list_services_response.service]
    finally:
        ch.close()


def test_reflection_on_the_admin_listener(launch):
    srv = launch("--admin-listen", "127.0.0.1:0", "--reflection", "admin")
    services = _reflection_services(srv.admin.target)
    assert "grpc.health.v1.Health" in services and "weft.v1.UserService" in services, services
    with pytest.raises(grpc.RpcError) as err:
        _reflection_services(srv.target)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, err.value


def test_reflection_off(launch):
    srv = launch("--reflection", "off")
    with pytest.raises(grpc.RpcError) as err:
        _reflection_services(srv.target)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, err.value


# ---------------------------------------------------------------------------
# A real Prometheus scraping over TLS with a bearer token, and the admin listener
# ---------------------------------------------------------------------------


def test_prometheus_scrapes_tls_with_bearer_token_and_admin(launch, tls_server, certs, tmp_path):
    from test_engine_api import closed_port

    missing = [str(p) for p in (PROMETHEUS,) if not p.exists()]
    if missing:
        pytest.fail(f"{missing[0]} missing: install the Debian package `prometheus`", pytrace=False)
    srv = launch(*tls_args(certs.server_cert, certs.server_key), "--metrics-token", METRICS_TOKEN)
    token_file = tmp_path / "weft-metrics-token"
    token_file.write_text(METRICS_TOKEN)
    token_file.chmod(0o600)
    tls_config = {"ca_file": str(certs.ca_cert), "server_name": "localhost"}
    jobs = {
        "weft-tls-token": {"scheme": "https", "tls_config": tls_config,
                           "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                           "static_configs": [{"targets": [srv.target]}]},
        "weft-tls-no-token": {"scheme": "https", "tls_config": tls_config,
                              "static_configs": [{"targets": [srv.target]}]},
        "weft-admin": {"static_configs": [{"targets": [tls_server.admin.target]}]},
    }
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": name, "metrics_path": "/metrics", **job} for name, job in jobs.items()]}
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    res = subprocess.run([str(PROMTOOL), "check", "config", str(config_path)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log:
        prom = subprocess.Popen([str(PROMETHEUS), f"--config.file={config_path}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path),
                                start_new_session=True)
        try:
            def api(path):
                with urllib.request.urlopen(f"{url}{path}", timeout=5) as r:
                    return json.load(r)

            def targets():
                if prom.poll() is not None:
                    raise RuntimeError(f"prometheus exited with {prom.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    active = api("/api/v1/targets")["data"]["activeTargets"]
                except urllib.error.URLError:
                    return None
                by_job = {t["labels"]["job"]: t for t in active}
                if set(by_job) != set(jobs) or any(t["health"] == "unknown" for t in by_job.values()):
                    return None
                return by_job

            by_job = wh.wait_until(targets, 30, 0.2, message="prometheus scraping all three targets")
            state = {job: (t["health"], t.get("lastError")) for job, t in by_job.items()}
            assert by_job["weft-tls-token"]["health"] == "up", state
            assert by_job["weft-admin"]["health"] == "up", state
            assert by_job["weft-tls-no-token"]["health"] == "down", state
            assert "401" in by_job["weft-tls-no-token"]["lastError"], state

            def expiry():
                body = api("/api/v1/query?query=weft_tls_certificate_expiry_seconds%7Bjob%3D%22weft-tls-token%22%7D")
                return body["data"]["result"]

            result = wh.wait_until(expiry, 15, 0.2, message="weft_tls_certificate_expiry_seconds scraped over TLS")
            assert abs(float(result[0]["value"][1]) - tls_certs.not_after_of(certs.server_cert)) <= 1, result
        finally:
            prom.terminate()
            try:
                prom.wait(15)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(10)
