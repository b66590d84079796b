"""Sessions (Step 7): access and refresh tokens on real servers, REST and gRPC.

* login returns a short-lived access token (JWT HS256 with a `kid`) and an
  opaque refresh token; a refresh token is no access token;
* refresh rotates the refresh token; presenting a rotated-away refresh token
  again is answered 401 and revokes the whole family (the newest refresh token
  and the session's access tokens stop working; other sessions keep going);
  eight concurrent refreshes of one token: exactly one wins;
* logout revokes the caller's session only, `allSessions` every session;
* a password change answers a fresh session and revokes every earlier one;
  a wrong current password is 401, a short new one 400;
* expired (`--token-ttl 1`), tampered, unknown-`kid` and garbage tokens are
  401 with distinct messages that echo nothing of the token;
* `weft auth rotate-key` + SIGHUP: old tokens still verify, new logins carry
  the new kid, `weft auth list-keys` lists them with their role; once a key
  falls out of the newest three, its tokens are 401.

The module's server runs with `--rate-limit auth=off` and a high per-address
failure limit: these tests log in, refresh and fail on purpose far more often
per second than a person does, and the limits themselves are tested in
test_login_limits.py.  Nothing here waits on a clock except the token expiry
(a 1 s token, then 2 s of sleep).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import time

import grpc
import pytest

import weft_helpers as wh

TIMEOUT = 10
PASSWORD = "correct horse battery"
ARGS = (*wh.API_SERVER_ARGS, "--rate-limit", "auth=off", "--login-failures-per-address", "100000")


# ---------------------------------------------------------------------------
# Servers and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sess(tmp_path_factory, protos):
    base = tmp_path_factory.mktemp("sessions")
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", args=ARGS, name="sessions")
    try:
        srv.start(timeout=30)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield srv
    try:
        wh.finish_servers([srv])
    except wh.ServerExitError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def user(sess):
    return wh.register_and_login(sess, "Sess User")


def b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64e(data) -> str:
    if not isinstance(data, bytes):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_parts(token: str) -> tuple[dict, dict]:
    """(header, claims) of a JWT, unverified."""
    parts = token.split(".")
    assert len(parts) == 3, f"not a JWT: {token[:40]}..."
    return json.loads(b64d(parts[0])), json.loads(b64d(parts[1]))


def kid_of(token: str) -> str:
    header, _ = jwt_parts(token)
    assert isinstance(header.get("kid"), str) and header["kid"], header
    return header["kid"]


def forge(header: dict, claims: dict, key: bytes) -> str:
    signing_input = f"{b64e(header)}.{b64e(claims)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64e(sig)}"


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    body = r.json
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    for fragment in fragments:
        assert fragment.lower() in body["message"].lower(), (fragment, body)
    return body


def assert_401(r: wh.RestResponse) -> dict:
    return assert_error(r, 401, 16)


class Session:
    """One login's tokens (the latest of its refresh chain)."""

    def __init__(self, server, body: dict):
        self.server = server
        self.body = body
        self.access = body["token"]
        self.refresh_token = body["refreshToken"]

    @property
    def rest(self) -> wh.RestClient:
        return wh.RestClient(self.server, self.access)


def login(server, email, password=PASSWORD) -> wh.RestResponse:
    return wh.RestClient(server).post("/users/login", {"email": email, "password": password})


def new_session(server, u: wh.ApiUser, password=PASSWORD) -> Session:
    r = login(server, u.email, password)
    assert r.status == 200, r
    return Session(server, r.json)


def refresh(server, refresh_token) -> wh.RestResponse:
    # No authorization header: a refresh token is all it takes.
    return wh.RestClient(server).post("/users/refresh", {"refreshToken": refresh_token})


def me(server, token) -> wh.RestResponse:
    return wh.RestClient(server, token).get("/users/me")


def assert_works(server, token, user_id):
    r = me(server, token)
    assert r.status == 200, r
    assert r.json["id"] == user_id, r.json


def assert_revoked_access(server, token):
    assert_401(me(server, token))


def assert_dead_refresh(server, refresh_token):
    assert_401(refresh(server, refresh_token))


def assert_login_shape(body: dict, user_id: str, token_ttl: float = 900,
                       refresh_ttl: float = 30 * 86400):
    for key in ("token", "expiresAt", "refreshToken", "refreshExpiresAt", "user"):
        assert key in body, (key, body)
    assert body["user"]["id"] == user_id, body
    assert isinstance(body["refreshToken"], str) and len(body["refreshToken"]) >= 20, body
    assert body["refreshToken"] != body["token"], body
    header, claims = jwt_parts(body["token"])
    assert header.get("alg") == "HS256", header
    assert isinstance(header.get("kid"), str) and header["kid"], header
    now = time.time()
    access_left = wh.rfc3339_nanos(body["expiresAt"]) / 1e9 - now
    refresh_left = wh.rfc3339_nanos(body["refreshExpiresAt"]) / 1e9 - now
    assert token_ttl - 120 < access_left <= token_ttl + 5, (access_left, body["expiresAt"])
    assert refresh_ttl - 120 < refresh_left <= refresh_ttl + 5, (refresh_left, body["refreshExpiresAt"])
    if "exp" in claims:
        assert abs(claims["exp"] - wh.rfc3339_nanos(body["expiresAt"]) / 1e9) < 1.01, (claims, body["expiresAt"])


def assert_logout_body(body: dict, sessions: int):
    """`{}` (the spec), or with the count of sessions it ended (the proto's
    LogoutResponse.revoked_sessions)."""
    assert set(body) <= {"revokedSessions"}, body
    if "revokedSessions" in body:
        assert body["revokedSessions"] == sessions, body


def weft_cli(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([str(wh.weft_bin()), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# gRPC -----------------------------------------------------------------------


def user_service(protos):
    return protos.v1.users_pb2.DESCRIPTOR.services_by_name["UserService"]


def need_grpc_methods(protos, *names):
    missing = [n for n in names if n not in user_service(protos).methods_by_name]
    if missing:
        pytest.skip(f"proto/weft/v1/users.proto has no UserService.{', '.join(missing)} yet")


def grpc_request(protos, method: str, **fields):
    pb = protos.v1.users_pb2
    desc = user_service(protos).methods_by_name[method].input_type
    return getattr(pb, desc.name)(**fields)


def grpc_users(protos, server):
    ch = wh.new_channel(server.target)
    return ch, protos.v1.users_pb2_grpc.UserServiceStub(ch)


def bearer(token) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def grpc_code(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=TIMEOUT, **kwargs)
    return info.value


# ---------------------------------------------------------------------------
# Login
# ---------------------------------------------------------------------------


def test_login_returns_access_and_refresh_tokens(sess, user):
    r = login(sess, user.email)
    assert r.status == 200, r
    body = r.json
    assert_login_shape(body, user.id)
    assert body["user"]["email"] == user.email
    assert_works(sess, body["token"], user.id)
    # The refresh token is no access token, and an access token no refresh token.
    assert_401(me(sess, body["refreshToken"]))
    assert_401(refresh(sess, body["token"]))
    # Two logins are two sessions with different tokens.
    other = login(sess, user.email)
    assert other.status == 200, other
    assert other.json["refreshToken"] != body["refreshToken"]
    assert other.json["token"] != body["token"]


def test_grpc_login_returns_a_refresh_token(sess, user, protos):
    pb = protos.v1.users_pb2
    if "refresh_token" not in pb.LoginResponse.DESCRIPTOR.fields_by_name:
        pytest.skip("proto/weft/v1/users.proto: LoginResponse has no refresh_token yet")
    ch, stub = grpc_users(protos, sess)
    try:
        resp = stub.Login(pb.LoginRequest(email=user.email, password=PASSWORD), timeout=TIMEOUT)
        assert resp.token and resp.refresh_token and resp.refresh_token != resp.token, resp
        assert resp.user.id == user.id
        assert resp.refresh_expires_at.seconds - time.time() > 29 * 86400, resp.refresh_expires_at
        got = stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=bearer(resp.token), timeout=TIMEOUT)
        assert got.id == user.id
        # The refresh token of a gRPC login works over REST.
        r = refresh(sess, resp.refresh_token)
        assert r.status == 200, r
        assert_login_shape(r.json, user.id)
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# Refresh: rotation and reuse detection
# ---------------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(sess, user):
    s = new_session(sess, user)
    r = refresh(sess, s.refresh_token)
    assert r.status == 200, r
    body = r.json
    assert_login_shape(body, user.id)
    assert body["refreshToken"] != s.refresh_token, "the refresh token must rotate"
    # A new access token of the same session (tokens carry no iat/jti to stay short: one
    # issued in the same second as the last may be byte-identical, which is harmless).
    assert jwt_parts(body["token"])[1]["sid"] == jwt_parts(s.access)[1]["sid"]
    assert_works(sess, body["token"], user.id)
    # The new refresh token works once more; the chain goes on.
    r2 = refresh(sess, body["refreshToken"])
    assert r2.status == 200, r2
    assert r2.json["refreshToken"] not in (body["refreshToken"], s.refresh_token)
    assert_works(sess, r2.json["token"], user.id)


@pytest.mark.parametrize("generations_back", [1, 2], ids=["previous", "two-back"])
def test_reusing_a_rotated_refresh_token_revokes_the_family(sess, user, generations_back):
    s = new_session(sess, user)
    chain = [(s.access, s.refresh_token)]
    for _ in range(2):
        r = refresh(sess, chain[-1][1])
        assert r.status == 200, r
        chain.append((r.json["token"], r.json["refreshToken"]))
    bystander = new_session(sess, user)  # another login of the same user: another family
    newest_access, newest_refresh = chain[-1]
    assert_works(sess, newest_access, user.id)

    stale = chain[-1 - generations_back][1]
    err = assert_401(refresh(sess, stale))
    assert stale not in err["message"]
    # The whole family is gone: the newest refresh token, and every access token of the session.
    assert_dead_refresh(sess, newest_refresh)
    for access, _ in chain:
        assert_revoked_access(sess, access)
    # The other session is untouched.
    assert_works(sess, bystander.access, user.id)
    r = refresh(sess, bystander.refresh_token)
    assert r.status == 200, r
    assert_works(sess, r.json["token"], user.id)


def test_concurrent_refreshes_of_one_token_only_one_wins(sess, user):
    s = new_session(sess, user)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: refresh(sess, s.refresh_token), range(8)))
    statuses = sorted(r.status for r in results)
    assert statuses == [200] + [401] * 7, results
    winner = next(r for r in results if r.status == 200).json
    # The losers presented a used token: reuse, so the family (the winner's tokens too) is revoked.
    assert_dead_refresh(sess, winner["refreshToken"])
    assert_revoked_access(sess, winner["token"])
    assert_revoked_access(sess, s.access)


@pytest.mark.parametrize("value", ["garbage", "", "x" * 300, "eyJhbGciOiJIUzI1NiJ9.e30.sig"],
                         ids=["garbage", "empty", "long", "jwt-shaped"])
def test_bad_refresh_tokens_are_refused(sess, value):
    r = refresh(sess, value)
    # An empty token may be refused as a missing field (400) or as an invalid token (401).
    if value == "":
        assert r.status in (400, 401), r
        assert r.json.get("code") in (3, 16), r.json
    else:
        assert_401(r)
        assert value not in r.json["message"] or len(value) < 8


def test_refresh_body_must_be_json_with_the_field(sess):
    r = wh.RestClient(sess).post("/users/refresh", {"refreshToken": 42})
    assert_error(r, 400, 3, "refreshToken")


# ---------------------------------------------------------------------------
# Logout
# ---------------------------------------------------------------------------


def test_logout_revokes_this_session_only(sess, user):
    s1 = new_session(sess, user)
    r = refresh(sess, s1.refresh_token)  # a refreshed session: two access tokens, one live refresh token
    assert r.status == 200, r
    s1_access2, s1_refresh2 = r.json["token"], r.json["refreshToken"]
    s2 = new_session(sess, user)

    out = wh.RestClient(sess, s1_access2).post("/users/logout", {})
    assert out.status == 200, out
    assert_logout_body(out.json, 1)

    for access in (s1.access, s1_access2):
        assert_revoked_access(sess, access)
    assert_dead_refresh(sess, s1_refresh2)
    assert_dead_refresh(sess, s1.refresh_token)
    # Logging out again with the revoked token: 401.
    assert_401(wh.RestClient(sess, s1_access2).post("/users/logout", {}))
    # The other session goes on.
    assert_works(sess, s2.access, user.id)
    r = refresh(sess, s2.refresh_token)
    assert r.status == 200, r
    # The account itself is fine: a new login works.
    assert_works(sess, new_session(sess, user).access, user.id)


def test_logout_needs_a_token(sess):
    assert_401(wh.RestClient(sess).post("/users/logout", {}))
    assert_401(wh.RestClient(sess, "garbage").post("/users/logout", {}))


def test_logout_all_sessions_revokes_every_session(sess, user):
    stranger = wh.register_and_login(sess, "Other User")
    sessions = [new_session(sess, user) for _ in range(3)]
    r = refresh(sess, sessions[2].refresh_token)
    assert r.status == 200, r
    extra_access, latest_refresh = r.json["token"], r.json["refreshToken"]

    out = wh.RestClient(sess, sessions[0].access).post("/users/logout", {"allSessions": True})
    assert out.status == 200, out
    assert_logout_body(out.json, 4)  # the fixture's login and the three above

    for s in sessions:
        assert_revoked_access(sess, s.access)
    assert_revoked_access(sess, extra_access)
    assert_revoked_access(sess, user.token)  # the fixture's own login
    for token in (sessions[0].refresh_token, sessions[1].refresh_token, latest_refresh):
        assert_dead_refresh(sess, token)
    # Another user is not affected; the user can log in again.
    assert_works(sess, stranger.token, stranger.id)
    fresh = new_session(sess, user)
    assert_works(sess, fresh.access, user.id)
    assert refresh(sess, fresh.refresh_token).status == 200


def test_grpc_refresh_and_logout(sess, user, protos):
    need_grpc_methods(protos, "Refresh", "Logout")
    pb = protos.v1.users_pb2
    ch, stub = grpc_users(protos, sess)
    try:
        first = stub.Login(pb.LoginRequest(email=user.email, password=PASSWORD), timeout=TIMEOUT)
        rotated = stub.Refresh(grpc_request(protos, "Refresh", refresh_token=first.refresh_token), timeout=TIMEOUT)
        assert rotated.refresh_token and rotated.refresh_token != first.refresh_token, rotated
        assert rotated.user.id == user.id
        got = stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=bearer(rotated.token), timeout=TIMEOUT)
        assert got.id == user.id
        # Reuse of the rotated-away token: UNAUTHENTICATED, and the family is revoked.
        err = grpc_code(stub.Refresh, grpc_request(protos, "Refresh", refresh_token=first.refresh_token))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
        err = grpc_code(stub.Refresh, grpc_request(protos, "Refresh", refresh_token=rotated.refresh_token))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
        err = grpc_code(stub.GetCurrentUser, pb.GetCurrentUserRequest(), metadata=bearer(rotated.token))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err

        # Logout over gRPC revokes that session only.
        a = stub.Login(pb.LoginRequest(email=user.email, password=PASSWORD), timeout=TIMEOUT)
        b = stub.Login(pb.LoginRequest(email=user.email, password=PASSWORD), timeout=TIMEOUT)
        stub.Logout(grpc_request(protos, "Logout"), metadata=bearer(a.token), timeout=TIMEOUT)
        err = grpc_code(stub.GetCurrentUser, pb.GetCurrentUserRequest(), metadata=bearer(a.token))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
        assert_dead_refresh(sess, a.refresh_token)  # revoked over gRPC, refused over REST
        got = stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=bearer(b.token), timeout=TIMEOUT)
        assert got.id == user.id
        # allSessions over gRPC.
        stub.Logout(grpc_request(protos, "Logout", all_sessions=True), metadata=bearer(b.token), timeout=TIMEOUT)
        assert_revoked_access(sess, user.token)
        err = grpc_code(stub.Logout, grpc_request(protos, "Logout"), metadata=bearer(b.token))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# Password change
# ---------------------------------------------------------------------------


def test_password_change_returns_a_new_session_and_revokes_the_others(sess, user):
    s1 = new_session(sess, user)
    s2 = new_session(sess, user)
    r = refresh(sess, s2.refresh_token)
    assert r.status == 200, r
    s2_access2, s2_refresh2 = r.json["token"], r.json["refreshToken"]
    new_password = "a brand new passphrase"

    r = s1.rest.post("/users/me/password", {"currentPassword": PASSWORD, "newPassword": new_password})
    assert r.status == 200, r
    body = r.json
    assert_login_shape(body, user.id)
    assert_works(sess, body["token"], user.id)

    # Every earlier session is revoked, the caller's own included.
    for access in (user.token, s1.access, s2.access, s2_access2):
        assert_revoked_access(sess, access)
    for token in (s1.refresh_token, s2_refresh2):
        assert_dead_refresh(sess, token)
    # The new session's refresh token works (and rotates).
    r = refresh(sess, body["refreshToken"])
    assert r.status == 200, r
    assert_works(sess, r.json["token"], user.id)
    # Only the new password logs in.
    assert_401(login(sess, user.email, PASSWORD))
    assert login(sess, user.email, new_password).status == 200


def test_password_change_with_a_wrong_current_password_is_401(sess, user):
    s = new_session(sess, user)
    r = s.rest.post("/users/me/password", {"currentPassword": "not the password", "newPassword": "whatever123"})
    assert_401(r)
    # Nothing changed: the session still works, the old password still logs in.
    assert_works(sess, s.access, user.id)
    assert refresh(sess, s.refresh_token).status == 200
    assert login(sess, user.email, PASSWORD).status == 200
    assert_401(login(sess, user.email, "whatever123"))


def test_password_change_rejects_a_short_new_password_and_needs_a_token(sess, user):
    s = new_session(sess, user)
    err = assert_error(s.rest.post("/users/me/password", {"currentPassword": PASSWORD, "newPassword": "short"}),
                       400, 3)
    assert "password" in err["message"].lower(), err
    assert_works(sess, s.access, user.id)
    assert login(sess, user.email, PASSWORD).status == 200
    assert_401(wh.RestClient(sess).post("/users/me/password",
                                         {"currentPassword": PASSWORD, "newPassword": "long enough 123"}))


def test_grpc_change_password(sess, user, protos):
    need_grpc_methods(protos, "ChangePassword")
    pb = protos.v1.users_pb2
    ch, stub = grpc_users(protos, sess)
    try:
        s = new_session(sess, user)
        err = grpc_code(stub.ChangePassword,
                        grpc_request(protos, "ChangePassword", current_password="wrong one!",
                                     new_password="something new 1"), metadata=bearer(s.access))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
        err = grpc_code(stub.ChangePassword,
                        grpc_request(protos, "ChangePassword", current_password=PASSWORD, new_password="short"),
                        metadata=bearer(s.access))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        resp = stub.ChangePassword(grpc_request(protos, "ChangePassword", current_password=PASSWORD,
                                                new_password="something new 1"),
                                   metadata=bearer(s.access), timeout=TIMEOUT)
        assert resp.token and resp.refresh_token, resp
        got = stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=bearer(resp.token), timeout=TIMEOUT)
        assert got.id == user.id
        assert_revoked_access(sess, s.access)
        assert_dead_refresh(sess, s.refresh_token)
        assert login(sess, user.email, "something new 1").status == 200
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# Bad tokens: expired, tampered, unknown kid, garbage
# ---------------------------------------------------------------------------


def bad_token_variants(token: str) -> dict:
    header_b64, payload_b64, sig_b64 = token.split(".")
    header, claims = jwt_parts(token)
    tampered_claims = {**claims, "sub": "usr_" + "0" * 26}
    flipped = sig_b64[:-6] + ("A" if sig_b64[-6] != "A" else "B") + sig_b64[-5:]
    return {
        "tampered-payload": f"{header_b64}.{b64e(tampered_claims)}.{sig_b64}",
        "tampered-signature": f"{header_b64}.{payload_b64}.{flipped}",
        "unknown-kid": forge({**header, "kid": "nope"}, claims, os.urandom(32)),
        "garbage": "garbage-" + os.urandom(12).hex(),
    }


def assert_safe_message(message: str, token: str):
    assert len(message) < 200, message
    for part in [token, *token.split(".")]:
        if len(part) >= 8:
            assert part not in message, f"the message echoes the token: {message!r}"
    for leak in ("Optional(", "Error(", ".swift", "\n", "HMAC key", "secret"):
        assert leak not in message, f"the message leaks internals ({leak}): {message!r}"


def test_bad_tokens_are_401_with_distinct_safe_messages(sess, user, server_factory, protos):
    # Expiry: a server whose access tokens live 1 s (refresh tokens: at least 60 s, the flag's minimum).
    short = server_factory(*ARGS, "--token-ttl", "1", "--refresh-token-ttl", "60")
    short_user = wh.register_and_login(short, "Short Lived")
    body = login(short, short_user.email).json
    header, claims = jwt_parts(body["token"])
    assert abs(claims["exp"] - time.time() - 1) <= 2, claims  # a 1-second lifetime (exp in whole seconds)
    refresh_left = (wh.rfc3339_nanos(body["refreshExpiresAt"]) - wh.rfc3339_nanos(body["expiresAt"])) / 1e9
    assert 58 <= refresh_left <= 60, body  # 60 s vs 1 s (whole seconds) from the same instant
    time.sleep(2.0)  # the time under test: the access token has run out
    expired = assert_401(me(short, body["token"]))
    assert "expired" in expired["message"].lower(), expired
    assert_safe_message(expired["message"], body["token"])
    # The refresh token outlives it: the session goes on with a new access token
    # (not used here: it lives at most a second).
    r = refresh(short, body["refreshToken"])
    assert r.status == 200, r
    assert r.json["user"]["id"] == short_user.id and r.json["token"] != body["token"], r.json

    messages = {"expired": expired["message"]}
    variants = bad_token_variants(user.token)
    for kind, token in variants.items():
        err = assert_401(me(sess, token))
        assert_safe_message(err["message"], token)
        # Also on a write and over gRPC.
        assert_401(wh.RestClient(sess, token).post("/workflows", {"name": "x"}))
        ch, stub = grpc_users(protos, sess)
        try:
            e = grpc_code(stub.GetCurrentUser, protos.v1.users_pb2.GetCurrentUserRequest(), metadata=bearer(token))
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED, (kind, e)
            assert_safe_message(e.details() or "", token)
        finally:
            ch.close()
        messages[kind] = err["message"]
    # A revoked session's token (logged out).
    s = new_session(sess, user)
    assert wh.RestClient(sess, s.access).post("/users/logout", {}).status == 200
    revoked = assert_401(me(sess, s.access))
    assert_safe_message(revoked["message"], s.access)
    messages["revoked"] = revoked["message"]
    # Each class says what is wrong (expired: refresh; unknown key; revoked:
    # log in again); a tampered token and garbage are both just "not valid"
    # (telling them apart would help nobody but a forger).
    distinct = {k: messages[k] for k in ("expired", "tampered-signature", "unknown-kid", "revoked")}
    assert len(set(distinct.values())) == len(distinct), f"messages are not distinct: {distinct}"
    assert messages["garbage"] not in (messages["expired"], messages["unknown-kid"], messages["revoked"]), messages
    # The real token still works.
    assert_works(sess, user.token, user.id)


# ---------------------------------------------------------------------------
# Signing keys: rotate-key, list-keys, SIGHUP
# ---------------------------------------------------------------------------


def list_keys(data_dir) -> str:
    res = weft_cli("auth", "list-keys", "--data-dir", data_dir)
    assert res.returncode == 0, f"weft auth list-keys exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def rotate_key(data_dir) -> str:
    res = weft_cli("auth", "rotate-key", "--data-dir", data_dir)
    assert res.returncode == 0, f"weft auth rotate-key exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


def kid_re(kid: str) -> re.Pattern:
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(kid)}(?![A-Za-z0-9_])")


def names_kid(listing: str, kid: str) -> bool:
    return bool(kid_re(kid).search(listing))


def key_line(listing: str, kid: str) -> str:
    lines = [ln for ln in listing.splitlines() if kid_re(kid).search(ln)]
    assert len(lines) == 1, f"expected one line naming {kid} in:\n{listing}"
    return lines[0]


def role_words(line: str, kid: str) -> set:
    """The words of a list-keys line besides its kid and its timestamp: its role."""
    return set(re.findall(r"[A-Za-z][A-Za-z_-]+", kid_re(kid).sub(" ", line)))


def test_rotate_key_then_sighup(server_factory):
    srv = server_factory(*ARGS)
    u = wh.register_and_login(srv, "Key Rotator")
    t1 = u.token
    k1 = kid_of(t1)

    listing = list_keys(srv.data_dir)
    signer_role = role_words(key_line(listing, k1), k1)
    assert signer_role, listing

    def login_with_new_kid(previous: set):
        def attempt():
            body = login(srv, u.email).json
            return body["token"] if kid_of(body["token"]) not in previous else None
        return wh.wait_until(attempt, 15, 0.2, message=f"a login signed with a key other than {previous}")

    rotate_key(srv.data_dir)
    srv.send_signal(signal.SIGHUP)
    t2 = login_with_new_kid({k1})
    k2 = kid_of(t2)
    listing = list_keys(srv.data_dir)
    assert role_words(key_line(listing, k2), k2) == signer_role, f"{k2} should be the signer now:\n{listing}"
    assert role_words(key_line(listing, k1), k1) != signer_role, f"{k1} should be verify-only now:\n{listing}"
    # Tokens signed before the rotation still verify; new ones too.
    assert_works(srv, t1, u.id)
    assert_works(srv, t2, u.id)
    assert srv.running()

    rotate_key(srv.data_dir)
    srv.send_signal(signal.SIGHUP)
    t3 = login_with_new_kid({k1, k2})
    k3 = kid_of(t3)
    for token in (t1, t2, t3):
        assert_works(srv, token, u.id)

    # Two more: k1 and k2 fall out of the newest three and their tokens stop verifying.
    rotate_key(srv.data_dir)
    rotate_key(srv.data_dir)
    listing = list_keys(srv.data_dir)
    for kid in (k1, k2):
        assert not names_kid(listing, kid), f"{kid} should have been dropped (newest 3 kept):\n{listing}"
    assert names_kid(listing, k3), listing
    srv.send_signal(signal.SIGHUP)
    t5 = login_with_new_kid({k1, k2, k3})
    k5 = kid_of(t5)
    assert names_kid(listing, k5), listing
    assert role_words(key_line(listing, k5), k5) == signer_role, listing
    assert len({k1, k2, k3, k5}) == 4
    wh.wait_until(lambda: me(srv, t1).status == 401, 10, 0.1, message="the token of a dropped key to be refused")
    for token in (t1, t2):
        assert_401(me(srv, token))
    for token in (t3, t5):
        assert_works(srv, token, u.id)
    assert srv.running()


def test_list_keys_on_a_fresh_server_names_the_signing_key(server_factory):
    srv = server_factory(*ARGS)
    u = wh.register_and_login(srv, "Key Lister")
    kid = kid_of(u.token)
    listing = list_keys(srv.data_dir)
    line = key_line(listing, kid)
    assert re.search(r"\d{4}-\d{2}-\d{2}", line), f"no creation date in {line!r}"
    assert role_words(line, kid), f"no role in {line!r}"
    # No key material is printed: nothing that looks like a long secret besides the kid.
    for token in re.findall(r"[A-Za-z0-9+/=_-]{32,}", listing):
        assert token == kid or kid in token, f"list-keys prints something secret-looking: {token!r}"
