"""The web dashboard's serving and its cookie session, against a real
`weft serve`: files from web/ with content types, ETags, gzip and the
security headers over HTTP/1.1 and HTTP/2 (curl); the cookie session
(httpOnly cookies, no tokens in the body, a CSRF header on writes) next to
bearer tokens; gRPC never takes the cookie.  The dashboard itself is
tested in a real browser in Tests/web/."""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import subprocess
from http.cookies import SimpleCookie
from pathlib import Path

import grpc
import pytest

import weft_helpers as wh

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
API_SERVER_EXTRA_ARGS = ("--web-dir", str(WEB), "--trace-viewer-url", "http://traces.example/trace/{traceId}?x=1&y=2")
PASSWORD = "correct horse battery"


def raw(server, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheaders(), data
    finally:
        conn.close()


def header(headers, name):
    values = [v for k, v in headers if k.lower() == name]
    return values[0] if values else None


def cookies_of(headers) -> dict:
    jar = {}
    for k, v in headers:
        if k.lower() == "set-cookie":
            c = SimpleCookie()
            c.load(v)
            for name, morsel in c.items():
                jar[name] = (morsel.value, v)
    return jar


@pytest.mark.parametrize("path,ctype", [
    ("/", "text/html; charset=utf-8"),
    ("/js/app.js", "text/javascript; charset=utf-8"),
    ("/css/app.css", "text/css; charset=utf-8"),
    ("/manifest.webmanifest", "application/manifest+json"),
    ("/icons/icon-192.png", "image/png"),
    ("/icons/icon.svg", "image/svg+xml"),
])
def test_files_have_their_content_type_and_security_headers(api_server, path, ctype):
    status, headers, body = raw(api_server, "GET", path)
    assert status == 200, body[:200]
    assert header(headers, "content-type") == ctype
    csp = header(headers, "content-security-policy")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert header(headers, "x-content-type-options") == "nosniff"
    assert header(headers, "etag").startswith('W/"')
    on_disk = (WEB / ("index.html" if path == "/" else path.lstrip("/"))).read_bytes()
    if path != "/":
        assert body == on_disk


def test_index_carries_the_trace_viewer_template_escaped(api_server):
    _, _, body = raw(api_server, "GET", "/")
    assert b'content="http://traces.example/trace/{traceId}?x=1&amp;y=2"' in body
    assert b"{{TRACE_URL}}" not in body


def test_etag_revalidation_and_gzip(api_server):
    status, headers, plain = raw(api_server, "GET", "/js/app.js")
    etag = header(headers, "etag")
    status, headers304, body = raw(api_server, "GET", "/js/app.js", {"If-None-Match": etag})
    assert status == 304 and body == b""
    assert header(headers304, "etag") == etag
    status, _, _ = raw(api_server, "GET", "/js/app.js", {"If-None-Match": '"stale"'})
    assert status == 200
    status, gz_headers, packed = raw(api_server, "GET", "/js/app.js", {"Accept-Encoding": "gzip, br"})
    assert header(gz_headers, "content-encoding") == "gzip"
    assert header(gz_headers, "vary") == "accept-encoding"
    assert gzip.decompress(packed) == plain and len(packed) < len(plain)


def test_head_has_no_body_and_unknown_files_are_json_404(api_server):
    status, headers, body = raw(api_server, "HEAD", "/css/app.css")
    assert status == 200 and body == b""
    status, _, body = raw(api_server, "GET", "/js/nope.js")
    assert status == 404 and json.loads(body)["code"] == 5
    status, _, body = raw(api_server, "GET", "/js/../../README.md")
    assert status == 404
    # The API keeps its paths: the dashboard adds none.
    status, _, body = raw(api_server, "GET", "/workflows")
    assert status == 401


def test_served_over_http2_with_gzip(api_server):
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed")
    res = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "--compressed", "-D", "-", "-o", "/dev/null",
         f"{api_server.base_url}/js/ui.js"], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    head = res.stdout.lower()
    assert head.startswith("http/2 200"), head
    assert "content-encoding: gzip" in head and "content-security-policy:" in head


def login_cookie(server, email):
    status, headers, body = raw(
        server, "POST", "/users/login",
        {"Content-Type": "application/json", "X-Weft-Session": "cookie"},
        json.dumps({"email": email, "password": PASSWORD}))
    assert status == 200, body
    return cookies_of(headers), json.loads(body)


def cookie_header(jar, *names):
    return "; ".join(f"{n}={jar[n][0]}" for n in names)


def test_cookie_login_sets_httponly_strict_cookies_and_no_tokens(api_server):
    u = wh.register_and_login(api_server, name="Cookie User", password=PASSWORD)
    jar, body = login_cookie(api_server, u.email)
    assert body["token"] == "" and body["refreshToken"] == "", "tokens stay out of scripts' reach"
    assert body["user"]["id"] == u.id
    session, refresh, csrf = jar["weft_session"][1], jar["weft_refresh"][1], jar["weft_csrf"][1]
    for text in (session, refresh):
        assert "HttpOnly" in text and "SameSite=Strict" in text
    assert "Path=/users/refresh" in refresh
    assert "HttpOnly" not in csrf and "SameSite=Strict" in csrf
    assert "Secure" not in session, "plaintext listener: no Secure flag"
    # A plain login (no x-weft-session) still returns tokens and sets nothing.
    status, headers, raw_body = raw(api_server, "POST", "/users/login", {"Content-Type": "application/json"},
                                    json.dumps({"email": u.email, "password": PASSWORD}))
    assert status == 200 and json.loads(raw_body)["token"] and not cookies_of(headers)


def test_cookie_session_reads_freely_and_writes_only_with_csrf(api_server):
    u = wh.register_and_login(api_server, name="Csrf User", password=PASSWORD)
    jar, _ = login_cookie(api_server, u.email)
    cookie = cookie_header(jar, "weft_session", "weft_csrf")
    status, _, body = raw(api_server, "GET", "/users/me", {"Cookie": cookie})
    assert status == 200 and json.loads(body)["id"] == u.id
    wf = json.dumps({"name": "csrf", "tasks": [{"key": "a", "name": "a", "action": "noop"}]})
    status, _, body = raw(api_server, "POST", "/workflows", {"Cookie": cookie, "Content-Type": "application/json"}, wf)
    assert status == 403 and "x-weft-csrf" in json.loads(body)["message"]
    status, _, body = raw(api_server, "POST", "/workflows",
                          {"Cookie": cookie, "Content-Type": "application/json", "X-Weft-Csrf": "AAAA"}, wf)
    assert status == 403
    # Another session's CSRF token does not fit this one.
    jar2, _ = login_cookie(api_server, u.email)
    status, _, body = raw(api_server, "POST", "/workflows",
                          {"Cookie": cookie, "Content-Type": "application/json", "X-Weft-Csrf": jar2["weft_csrf"][0]}, wf)
    assert status == 403
    status, _, body = raw(api_server, "POST", "/workflows",
                          {"Cookie": cookie, "Content-Type": "application/json", "X-Weft-Csrf": jar["weft_csrf"][0]}, wf)
    assert status == 201, body
    # Nothing was created by the refused calls.
    names = [w["name"] for w in wh.all_pages(u.rest, "/workflows", "workflows")]
    assert names == ["csrf"]


def test_bearer_wins_over_cookie_and_api_keys_never_ride_in_the_cookie(api_server):
    a = wh.register_and_login(api_server, name="Bearer A", password=PASSWORD)
    b = wh.register_and_login(api_server, name="Bearer B", password=PASSWORD)
    jar, _ = login_cookie(api_server, a.email)
    status, _, body = raw(api_server, "GET", "/users/me",
                          {"Cookie": cookie_header(jar, "weft_session"), "Authorization": f"Bearer {b.token}"})
    assert status == 200 and json.loads(body)["id"] == b.id
    key = b.rest.post("/api-keys", {"name": "k", "scopes": ["read"]})
    assert key.status in (200, 201), key
    secret = key.json.get("secret") or key.json.get("key")
    status, _, body = raw(api_server, "GET", "/users/me", {"Cookie": f"weft_session={secret}"})
    assert status == 401


def test_cookie_refresh_rotates_and_logout_clears(api_server):
    u = wh.register_and_login(api_server, name="Refresh User", password=PASSWORD)
    jar, _ = login_cookie(api_server, u.email)
    status, headers, body = raw(api_server, "POST", "/users/refresh",
                                {"Cookie": cookie_header(jar, "weft_refresh"), "Content-Type": "application/json",
                                 "X-Weft-Session": "cookie"}, "{}")
    assert status == 200, body
    rotated = cookies_of(headers)
    assert rotated["weft_refresh"][0] != jar["weft_refresh"][0]
    assert json.loads(body)["refreshToken"] == ""
    # The old refresh cookie is spent: reusing it revokes the session.
    status, _, body = raw(api_server, "POST", "/users/refresh",
                          {"Cookie": cookie_header(jar, "weft_refresh"), "Content-Type": "application/json",
                           "X-Weft-Session": "cookie"}, "{}")
    assert status == 401
    jar, _ = login_cookie(api_server, u.email)
    status, headers, body = raw(api_server, "POST", "/users/logout",
                                {"Cookie": cookie_header(jar, "weft_session", "weft_csrf"), "Content-Type": "application/json",
                                 "X-Weft-Csrf": jar["weft_csrf"][0]}, "{}")
    assert status == 200, body
    cleared = cookies_of(headers)
    assert all("Max-Age=0" in cleared[n][1] for n in ("weft_session", "weft_refresh", "weft_csrf"))
    status, _, _ = raw(api_server, "GET", "/users/me", {"Cookie": cookie_header(jar, "weft_session")})
    assert status == 401


def test_grpc_ignores_the_cookie(api_server, chan, v1):
    u = wh.register_and_login(api_server, name="Grpc Cookie", password=PASSWORD)
    jar, _ = login_cookie(api_server, u.email)
    call = v1.users_pb2_grpc.UserServiceStub(chan).GetCurrentUser
    with pytest.raises(grpc.RpcError) as err:
        call(v1.users_pb2.GetCurrentUserRequest(), metadata=(("cookie", cookie_header(jar, "weft_session")),), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_web_dir_none_and_bad_flags(server_factory, tmp_path):
    off = server_factory("--web-dir", "none")
    status, _, _ = raw(off, "GET", "/")
    assert status == 404
    for args, needle in [(("--web-dir", str(tmp_path)), "index.html"),
                         (("--trace-viewer-url", "ftp://x/{traceId}"), "trace-viewer-url"),
                         (("--trace-viewer-url", "http://x/trace"), "{traceId}")]:
        res = subprocess.run([str(wh.weft_bin()), "serve", "--port", "0", "--data-dir", str(tmp_path / "d"), *args],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode != 0 and needle in res.stderr, (args, res.stderr[-500:])


def test_every_write_method_needs_csrf(api_server):
    u = wh.register_and_login(api_server, name="Methods User", password=PASSWORD)
    wf = u.rest.post("/workflows", {"name": "m", "tasks": [{"key": "a", "name": "a", "action": "noop"}]}).json
    jar, _ = login_cookie(api_server, u.email)
    cookie = cookie_header(jar, "weft_session", "weft_csrf")
    body = json.dumps({"name": "renamed", "tasks": wf["tasks"]})
    for method in ("PUT", "DELETE"):
        status, _, answer = raw(api_server, method, f"/workflows/{wf['id']}",
                                {"Cookie": cookie, "Content-Type": "application/json"}, body if method == "PUT" else None)
        assert status == 403, (method, answer)
    status, _, _ = raw(api_server, "HEAD", f"/workflows/{wf['id']}", {"Cookie": cookie})
    assert status == 200, "reads need no CSRF token"
    assert u.rest.get(f"/workflows/{wf['id']}").json["name"] == "m", "nothing changed"


def test_a_failed_cookie_refresh_expires_the_cookies(api_server):
    u = wh.register_and_login(api_server, name="Ended User", password=PASSWORD)
    jar, _ = login_cookie(api_server, u.email)
    # Log every session out (the bearer session does it): the cookie session ends too.
    assert u.rest.post("/users/logout", {"allSessions": True}).status == 200
    status, headers, body = raw(api_server, "POST", "/users/refresh",
                                {"Cookie": cookie_header(jar, "weft_refresh"), "Content-Type": "application/json",
                                 "X-Weft-Session": "cookie"}, "{}")
    assert status == 401, body
    cleared = cookies_of(headers)
    assert all("Max-Age=0" in cleared[n][1] for n in ("weft_session", "weft_refresh", "weft_csrf")), headers


def test_secure_cookies_behind_a_tls_proxy(server_factory):
    srv = server_factory("--scrypt-log-n", "10", "--public-url", "https://weft.example.com")
    u = wh.register_and_login(srv, name="Proxy User", password=PASSWORD)
    jar, _ = login_cookie(srv, u.email)
    assert all("; Secure" in jar[n][1] for n in ("weft_session", "weft_refresh", "weft_csrf")), jar


def test_a_symlinked_web_dir_and_http2_304(server_factory, tmp_path):
    link = tmp_path / "web-link"
    link.symlink_to(WEB)
    srv = server_factory("--web-dir", str(link))
    status, headers, _ = raw(srv, "GET", "/js/app.js")
    assert status == 200
    etag = header(headers, "etag")
    res = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null", "-H", f"If-None-Match: {etag}",
                          f"{srv.base_url}/js/app.js"], capture_output=True, text=True, timeout=10)
    head = res.stdout.lower()
    assert head.startswith("http/2 304"), head
    assert "content-length" not in head, "a 304 carries no length"
