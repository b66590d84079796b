"""Logins that cannot stall the server, and request rate limits (Step 7).

* failed logins per account: the first 5 (`--login-failures-per-account`) are
  401, then 429 / RESOURCE_EXHAUSTED with `retry-after` (whole seconds) that
  grows on repeated failures; a correct password is refused too while limited
  (limited attempts are refused before any hashing); a successful login clears
  the count; REST and gRPC share it;
* per client address (`--login-failures-per-address 10`, different unknown
  emails): the 11th is 429, also for a registered account with its right
  password, while another loopback address (127.0.0.2) is not limited;
* unknown and known emails get the same status, message and retry-after;
* passwords over 1024 bytes at login: 400 / INVALID_ARGUMENT;
* the bounded hash queue (`--password-hash-threads 1 --password-hash-queue 1`,
  the default scrypt cost): 16 concurrent logins get some 429 with
  `retry-after` (gRPC: RESOURCE_EXHAUSTED, retry-after in the metadata) and
  never a 5xx; the others succeed;
* `--rate-limit read=5/s:5`: a burst of GET /users/me gets 429 after the 5th,
  never more successes than the bucket allows, `weft_rate_limited_total
  {class="read"}` counts it; gRPC answers RESOURCE_EXHAUSTED with retry-after;
  writes are another class;
* the default `auth` limit (20/s, burst 40) per address, on /users/refresh.

Requests are sent from 127.0.0.1 unless a test binds another loopback source
address.  Token-bucket checks compare counts with what the bucket can have
allowed over the measured time (an upper bound), never a speed.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import threading
import time
import uuid

import grpc
import pytest

import weft_helpers as wh

TIMEOUT = 10
PASSWORD = "correct horse battery"
LIMIT = 5  # the default --login-failures-per-account
# Per-account tests: the address limit and the auth rate limit out of the way.
ACCT_ARGS = (*wh.API_SERVER_ARGS, "--login-failures-per-address", "100000", "--rate-limit", "auth=off")


# ---------------------------------------------------------------------------
# Servers and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acct(tmp_path_factory, protos):
    base = tmp_path_factory.mktemp("login-limits")
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", args=ACCT_ARGS, name="login-limits")
    try:
        srv.start(timeout=30)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield srv
    try:
        wh.finish_servers([srv])
    except wh.ServerExitError as exc:
        pytest.fail(str(exc), pytrace=False)


def request(server, method, path, body=None, token=None, source="127.0.0.1", raw=None) -> wh.RestResponse:
    """One request on a fresh connection from loopback address `source`."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30, source_address=(source, 0))
    try:
        headers = {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        return wh.RestResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
    finally:
        conn.close()


def login(server, email, password, source="127.0.0.1") -> wh.RestResponse:
    return request(server, "POST", "/users/login", {"email": email, "password": password}, source=source)


def register(server, name="Limit User", password=PASSWORD) -> wh.ApiUser:
    email = wh.unique_email(name.split()[0].lower())
    r = request(server, "POST", "/users/register", {"email": email, "password": password, "name": name})
    assert r.status == 201, r
    return wh.ApiUser(r.json["id"], email, password, name, "", r.json, wh.RestClient(server))


def retry_after(value) -> int:
    assert value is not None and re.fullmatch(r"[0-9]+", str(value).strip()), f"retry-after {value!r}"
    assert int(value) >= 1, f"retry-after {value!r}"
    return int(value)


def assert_401(r):
    assert r.status == 401, r
    assert r.json.get("code") == 16, r.json
    return r.json


def assert_429(r) -> int:
    assert r.status == 429, r
    assert r.json.get("code") == 8, r.json  # RESOURCE_EXHAUSTED
    assert r.json.get("message"), r.json
    return retry_after(r.header("retry-after"))


def unknown_email() -> str:
    return wh.unique_email("ghost")


def metadata_value(err: grpc.RpcError, name: str):
    for md in (err.trailing_metadata() or (), err.initial_metadata() or ()):
        for key, value in md:
            if key == name:
                return value
    return None


def grpc_users(protos, server):
    ch = wh.new_channel(server.target)
    return ch, protos.v1.users_pb2_grpc.UserServiceStub(ch), protos.v1.users_pb2


def grpc_err(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=TIMEOUT, **kwargs)
    return info.value


# ---------------------------------------------------------------------------
# Failed logins per account
# ---------------------------------------------------------------------------


def test_failed_logins_per_account_are_limited(acct):
    u = register(acct)
    first = None
    for i in range(LIMIT):
        body = assert_401(login(acct, u.email, f"wrong password {i}"))
        first = first or body["message"]
        assert body["message"] == first, body
    after = assert_429(login(acct, u.email, "wrong again"))
    # Limited attempts are refused before the password is even looked at: the right one too.
    assert_429(login(acct, u.email, PASSWORD))
    assert after <= 15 * 60, after
    # Another account is not affected.
    v = register(acct, "Vera Unaffected")
    assert login(acct, v.email, PASSWORD).status == 200
    assert_401(login(acct, v.email, "nope nope"))


def test_retry_after_grows_with_repeated_failures(acct):
    u = register(acct)
    for i in range(LIMIT):
        assert_401(login(acct, u.email, f"wrong {i}"))
    seen = [assert_429(login(acct, u.email, f"again {i}")) for i in range(4)]
    if seen[-1] > seen[0]:
        return  # every refused attempt counts: the wait grew right away
    # Otherwise the lock must grow once it has run out and the next attempt fails.
    wait = seen[-1]
    assert wait <= 65, f"retry-after did not grow over 4 refused attempts ({seen}) and is too long to wait out"
    time.sleep(wait + 0.5)  # the time under test: the lock runs out
    r = login(acct, u.email, "wrong after the lock")
    assert r.status in (401, 429), r
    grown = assert_429(login(acct, u.email, "and again")) if r.status == 401 else assert_429(r)
    assert grown > seen[0] and grown >= 2 * seen[0] - 1, f"retry-after after further failures {grown}, first {seen}"


def test_a_successful_login_clears_the_count(acct):
    u = register(acct)
    for i in range(LIMIT - 1):
        assert_401(login(acct, u.email, f"wrong {i}"))
    assert login(acct, u.email, PASSWORD).status == 200
    # The count starts again: LIMIT more failures are 401, only the next one is limited.
    for i in range(LIMIT):
        assert_401(login(acct, u.email, f"wrong again {i}"))
    assert_429(login(acct, u.email, "one too many"))


def test_unknown_and_known_emails_are_answered_alike(acct):
    known = register(acct)
    unknown = unknown_email()
    for i in range(LIMIT + 2):
        rk = login(acct, known.email, f"wrong {i}")
        ru = login(acct, unknown, f"wrong {i}")
        assert rk.status == ru.status, (i, rk, ru)
        assert rk.json == ru.json, (i, rk.json, ru.json)
        assert set(rk.headers) - {"date"} == set(ru.headers) - {"date"}, (rk.headers, ru.headers)
        if rk.status == 429:
            assert abs(assert_429(rk) - assert_429(ru)) <= 1, (rk.headers, ru.headers)
        else:
            assert i < LIMIT, (i, rk)
            assert_401(rk)
    assert rk.status == 429


def test_grpc_login_limit_is_resource_exhausted_and_shared_with_rest(acct, protos):
    u = register(acct)
    ch, stub, pb = grpc_users(protos, acct)
    try:
        for i in range(LIMIT):
            err = grpc_err(stub.Login, pb.LoginRequest(email=u.email, password=f"wrong {i}"))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
        err = grpc_err(stub.Login, pb.LoginRequest(email=u.email, password="wrong"))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        retry_after(metadata_value(err, "retry-after"))
        # The count is the account's, whatever the transport.
        assert_429(login(acct, u.email, PASSWORD))
        # REST failures count for gRPC logins too.
        v = register(acct)
        for i in range(LIMIT):
            assert_401(login(acct, v.email, f"wrong {i}"))
        err = grpc_err(stub.Login, pb.LoginRequest(email=v.email, password=PASSWORD))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# Oversized passwords
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["x" * 1025, "é" * 513, "x" * 100_000], ids=["1025-ascii", "1026-bytes-utf8", "100k"])
def test_password_over_1024_bytes_is_400(acct, protos, password):
    known = register(acct)
    for email in (known.email, unknown_email()):
        r = login(acct, email, password)
        assert r.status == 400, r
        assert r.json.get("code") == 3, r.json
        assert "password" in r.json["message"].lower(), r.json
    ch, stub, pb = grpc_users(protos, acct)
    try:
        err = grpc_err(stub.Login, pb.LoginRequest(email=known.email, password=password))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    finally:
        ch.close()
    assert login(acct, known.email, PASSWORD).status == 200


def test_password_of_exactly_1024_bytes_is_checked(acct):
    u = register(acct, password="p" * 1024)
    assert login(acct, u.email, "p" * 1024).status == 200
    assert_401(login(acct, u.email, "q" * 1024))


# ---------------------------------------------------------------------------
# Failed logins per address
# ---------------------------------------------------------------------------


def test_failed_logins_per_address_are_limited(server_factory):
    srv = server_factory(*wh.API_SERVER_ARGS, "--login-failures-per-account", "1000",
                         "--login-failures-per-address", "10")
    u = register(srv)
    for i in range(10):
        assert_401(login(srv, unknown_email(), f"wrong {i}"))
    assert_429(login(srv, unknown_email(), "one too many"))
    # Refused before hashing: even a registered account with its right password.
    assert_429(login(srv, u.email, PASSWORD))
    # Another client address is not limited (127.0.0.2 is loopback too).
    r = login(srv, u.email, PASSWORD, source="127.0.0.2")
    assert r.status == 200, r
    assert_401(login(srv, unknown_email(), "wrong", source="127.0.0.2"))
    # The limited address can still do everything else.
    token = r.json["token"]
    me = request(srv, "GET", "/users/me", token=token)
    assert me.status == 200 and me.json["id"] == u.id, me


# ---------------------------------------------------------------------------
# The bounded password-hash queue
# ---------------------------------------------------------------------------


def _fire_together(n, fn):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(10)
        return fn(i)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_password_hash_queue_is_bounded(server_factory, protos):
    # The default scrypt cost (no --scrypt-log-n 10): hashing takes long enough for a queue to form.
    srv = server_factory("--password-hash-threads", "1", "--password-hash-queue", "1",
                         "--login-failures-per-account", "1000", "--login-failures-per-address", "1000",
                         "--rate-limit", "auth=off")
    u = register(srv)

    results = _fire_together(16, lambda i: login(srv, u.email, PASSWORD))
    statuses = sorted(r.status for r in results)
    assert all(s < 500 for s in statuses), results
    assert set(statuses) <= {200, 429}, results
    assert statuses.count(429) >= 1, f"16 concurrent logins with a queue of 1: none refused: {statuses}"
    assert statuses.count(200) >= 1, f"every login refused: {statuses}"
    for r in results:
        if r.status == 429:
            assert_429(r)
        else:
            assert r.json["user"]["id"] == u.id
    # The queue drains: a login later succeeds.
    wh.wait_until(lambda: login(srv, u.email, PASSWORD).status == 200, 30, 0.5, message="a login after the burst")

    # gRPC: RESOURCE_EXHAUSTED with retry-after in the metadata.
    ch, stub, pb = grpc_users(protos, srv)
    try:
        def grpc_login(i):
            try:
                stub.Login(pb.LoginRequest(email=u.email, password=PASSWORD), timeout=60)
                return ("OK", None)
            except grpc.RpcError as err:
                return (err.code().name, metadata_value(err, "retry-after"))

        ch_ready = grpc.channel_ready_future(ch)
        ch_ready.result(timeout=10)
        outcomes = _fire_together(16, grpc_login)
        codes = sorted(c for c, _ in outcomes)
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, outcomes
        assert "RESOURCE_EXHAUSTED" in codes and "OK" in codes, outcomes
        for code, ra in outcomes:
            if code == "RESOURCE_EXHAUSTED":
                retry_after(ra)
    finally:
        ch.close()
    assert srv.running()


# ---------------------------------------------------------------------------
# Request rate limits
# ---------------------------------------------------------------------------


class KeepAlive:
    """One keep-alive HTTP/1.1 connection that reconnects when the server closes it."""

    def __init__(self, server, source="127.0.0.1"):
        self.server, self.source = server, source
        self.conn = None

    def request(self, method, path, body=None, token=None) -> wh.RestResponse:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30,
                                                       source_address=(self.source, 0))
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return wh.RestResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()


def metrics_of(server) -> wh.Metrics:
    def scrape():
        status, _, body = wh.http_get(server, "/metrics")
        return wh.parse_metrics(body.decode()) if status == 200 else None
    return wh.wait_until(scrape, 10, 0.2, message="/metrics")


def test_read_rate_limit(server_factory, protos):
    srv = server_factory(*wh.API_SERVER_ARGS, "--rate-limit", "read=5/s:5")
    u = wh.register_and_login(srv, "Reed Reader")
    conn = KeepAlive(srv)
    try:
        results = []
        t0 = time.monotonic()
        while len(results) < 60 and sum(r.status == 429 for r in results) < 3:
            results.append(conn.request("GET", "/users/me", token=u.token))
        elapsed = time.monotonic() - t0
        statuses = [r.status for r in results]
        assert set(statuses) <= {200, 429}, results
        assert statuses[:5] == [200] * 5, f"the burst of 5 was not honoured: {statuses}"
        assert 429 in statuses, statuses
        allowed = 5 + 5 * elapsed + 1
        assert statuses.count(200) <= allowed, f"{statuses.count(200)} reads passed in {elapsed:.2f}s: {statuses}"
        for r in results:
            if r.status == 429:
                assert_429(r)
        # Writes are another class (off by default): still fine right now.
        w = conn.request("POST", "/workflows", {"name": "written while reads are limited", "tasks": []}, u.token)
        assert w.status == 201, w
    finally:
        conn.close()

    m = metrics_of(srv)
    assert m.total("weft_rate_limited_total", **{"class": "read"}) > 0, m.select("weft_rate_limited_total")
    scopes = {s.labels.get("scope") for s in m.select("weft_rate_limited_total", **{"class": "read"}) if s.value > 0}
    assert scopes and scopes <= {"key", "user", "address"}, scopes

    # gRPC: once the bucket has refilled, a burst of GetCurrentUser ends in RESOURCE_EXHAUSTED + retry-after.
    wh.wait_until(lambda: request(srv, "GET", "/users/me", token=u.token).status == 200, 10, 0.3,
                  message="the read bucket to refill")
    ch, stub, pb = grpc_users(protos, srv)
    try:
        md = (("authorization", f"Bearer {u.token}"),)
        err = None
        ok = 0
        for _ in range(60):
            try:
                stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=md, timeout=TIMEOUT)
                ok += 1
            except grpc.RpcError as e:
                err = e
                break
        assert err is not None, f"{ok} GetCurrentUser calls in a row, none limited"
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        retry_after(metadata_value(err, "retry-after"))
    finally:
        ch.close()


def test_auth_rate_limit_per_address_by_default(server_factory):
    srv = server_factory(*wh.API_SERVER_ARGS)
    u = wh.register_and_login(srv, "Ada Auth")
    lock = threading.Lock()
    results: list[wh.RestResponse] = []
    stop = threading.Event()

    def hammer(i):
        conn = KeepAlive(srv)
        try:
            while not stop.is_set():
                r = conn.request("POST", "/users/refresh", {"refreshToken": f"garbage-{uuid.uuid4().hex}"})
                with lock:
                    results.append(r)
                    if sum(x.status == 429 for x in results) >= 20 or len(results) >= 1500:
                        stop.set()
        finally:
            conn.close()

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(hammer, range(8)))
    elapsed = time.monotonic() - t0
    statuses = [r.status for r in results]
    assert set(statuses) <= {401, 429}, sorted(set(statuses))
    assert 429 in statuses, f"{len(statuses)} refresh calls in {elapsed:.2f}s, none limited"
    passed = statuses.count(401)
    assert passed <= 40 + 20 * elapsed + 8, f"{passed} auth calls passed in {elapsed:.2f}s (20/s, burst 40)"
    for r in results:
        if r.status == 429:
            assert_429(r)
    # Per address: 127.0.0.2 is not limited; other classes are not either.
    r = request(srv, "POST", "/users/refresh", {"refreshToken": "garbage"}, source="127.0.0.2")
    assert_401(r)
    me = request(srv, "GET", "/users/me", token=u.token)
    assert me.status == 200, me
    m = metrics_of(srv)
    assert m.total("weft_rate_limited_total", **{"class": "auth", "scope": "address"}) > 0, \
        m.select("weft_rate_limited_total")
