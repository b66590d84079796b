"""The egress guard and the size and time caps of task attempts, on real
`weft serve` processes with real HTTP listeners:

* Denied destinations (a server with the guard's defaults: no
  --egress-allow): loopback in every spelling the C resolver accepts
  (`127.0.0.1`, `localhost`, `2130706433`, `0177.0.0.1`, `0x7f.0.0.1`,
  `127.1`, `0`), `[::1]`, IPv4-mapped / -compatible / NAT64 / 6to4 /
  Teredo IPv6, the cloud metadata address, RFC 1918, CGNAT, unspecified,
  ULA, link-local, multicast, broadcast, reserved, and the server's own
  port.  Each fails its only attempt as `egress_denied` (never retried, even
  under `retryableErrors: ["any"]`), names what the address is, counts
  `weft_egress_denied_total{reason}` once, and a listener on the target
  address proves no connection was ever made.
* Redirects (a server allowing only 127.0.0.2/32): a 302 from an allowed
  host to 127.0.0.1 (or `localhost`, `[::1]`, `2130706433`) is denied at
  that hop and never reaches the listener there; a chain of allowed hops
  completes, with Authorization and Cookie dropped on the cross-origin hop;
  without followRedirects the 302 is not followed; the allowlist re-opens
  exactly the block it names.
* Headers a task may not set (Host, framing, hop-by-hop): the save is
  refused (REST 400 / gRPC INVALID_ARGUMENT, naming the header) and nothing
  is stored, on create and on update.
* Size caps: the issue's expansion bomb (15 transforms each doubling the one
  before) stops at the 1 MiB template cap with `output_too_large`, the
  execution stays small and the server healthy; --max-task-output-bytes and
  --max-execution-bytes fail the attempt that passes them.
* --max-attempt-timeout caps an http task that never gets an answer, with
  and without the task's own (longer) timeout.
* A bad --egress-allow entry (flag or WEFT_EGRESS_ALLOW) stops the start.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import grpc
import pytest

import flags_support as fs
import weft_helpers as wh

DENIED_METRIC = "weft_egress_denied_total"
# Retries everything the policy can name: a denial must still end the task
# after its first attempt.
RETRY_ANY = {"maxAttempts": 3, "initialBackoff": "0.05s", "jitter": 0, "retryableErrors": ["any"]}
TEMPLATE_CAP = 1048576  # --max-template-bytes default


# ---------------------------------------------------------------------------
# A recording listener
# ---------------------------------------------------------------------------


class Listener:
    """A threaded HTTP/1.1 server on one address (IPv4 or IPv6) that records
    every TCP connection it accepts (before any request is read) and every
    request (method, path, lower-case headers).  It answers from `routes`
    (exact path -> (status, headers, body)); any other path gets 200 JSON
    {"reached": path}."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.lock = threading.Lock()
        self.accepted: list[tuple] = []
        self.requests: list[dict] = []
        self.routes: dict[str, tuple] = {}
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                path = urllib.parse.urlsplit(self.path).path
                with listener.lock:
                    listener.requests.append({
                        "method": self.command, "path": path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    })
                    route = listener.routes.get(path)
                status, headers, body = route or (200, {"Content-Type": "application/json"},
                                                  json.dumps({"reached": path}).encode())
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

            def verify_request(self, request, client_address):
                with listener.lock:
                    listener.accepted.append(client_address)
                return True

        self.httpd = Server((host, port), Handler)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def route(self, path: str, status: int = 200, headers: dict | None = None, body: bytes | dict = b""):
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        with self.lock:
            self.routes[path] = (status, dict(headers or {}), body)

    def redirect(self, path: str, location: str, status: int = 302):
        self.route(path, status, {"Location": location})

    def connections(self) -> int:
        with self.lock:
            return len(self.accepted)

    def hits(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Sink:
    """Listeners on 127.0.0.1:P and, where the host has IPv6, [::1]:P (one
    port P): whatever spelling of loopback a task uses, a connection that
    gets through lands here and is counted."""

    def __init__(self):
        self.listeners: list[Listener] = []
        ipv6 = _has_ipv6_loopback()
        for _ in range(20):
            v4 = Listener("127.0.0.1")
            if not ipv6:
                self.listeners = [v4]
                break
            try:
                v6 = Listener("::1", v4.port)
            except OSError:  # that port is taken on ::1: try another
                v4.close()
                continue
            self.listeners = [v4, v6]
            break
        assert self.listeners, "no port free on both 127.0.0.1 and ::1"
        self.port = self.listeners[0].port

    def connections(self) -> int:
        return sum(lst.connections() for lst in self.listeners)

    def requests(self) -> list[dict]:
        return [r for lst in self.listeners for r in lst.requests]

    def close(self):
        for lst in self.listeners:
            lst.close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Servers and small helpers
# ---------------------------------------------------------------------------


def _start(tmp_path_factory, name: str, *args: str, allow_loopback: bool = True) -> wh.WeftServer:
    base = tmp_path_factory.mktemp(name)
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", args=(*wh.API_SERVER_ARGS, *args), name=name)
    srv.egress_allow_loopback = allow_loopback
    srv.start(timeout=30)
    return srv


def _http_task(config: dict, retry: dict | None = None, key: str = "call", **extra) -> dict:
    return {"key": key, "name": key.title(), "action": "http", "config": config,
            "retry": retry or {"maxAttempts": 1}, **extra}


def _denials(srv: wh.WeftServer) -> dict:
    m = wh.fetch_metrics(srv)
    return {s.labels.get("reason"): s.value for s in m.select(DENIED_METRIC)}


def _delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
            if after.get(k, 0) != before.get(k, 0)}


def _log_text(user, wid, eid) -> list[str]:
    return [e["message"] for e in fs.all_logs(user, wid, eid)]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """Every default: no --egress-allow (the guard's own list), default caps."""
    srv = _start(tmp_path_factory, "egress-defaults", allow_loopback=False)
    assert not any(a.startswith("--egress-allow") for a in srv.command), srv.command
    assert "WEFT_EGRESS_ALLOW" not in srv._child_env(), "WEFT_EGRESS_ALLOW set in the test environment"
    yield srv
    wh.finish_servers([srv])


@pytest.fixture(scope="module")
def owner(guarded):
    return wh.register_and_login(guarded, "Egress Owner")


@pytest.fixture(scope="module")
def sink():
    s = Sink()
    # The listeners count what reaches them (else "nothing arrived" proves nothing).
    for lst in s.listeners:
        with urllib.request.urlopen(lst.url("/self-check"), timeout=5) as resp:
            assert resp.status == 200
    assert s.connections() == len(s.listeners), s.requests()
    yield s
    s.close()


# ---------------------------------------------------------------------------
# 1. Denied destinations
# ---------------------------------------------------------------------------

# A name the server resolves itself (localhost may also resolve to ::1).
RESOLVES_LOOPBACK = r"resolves to (127\.0\.0\.1|::1), which is loopback"
# (id, URL with {p} for the sink's port, metric reason, pattern the error must match)
DENIED = [
    ("loopback", "http://127.0.0.1:{p}/x", "loopback", r"127\.0\.0\.1 is loopback"),
    ("localhost", "http://localhost:{p}/x", "loopback", r"localhost " + RESOLVES_LOOPBACK),
    ("LOCALHOST", "http://LOCALHOST:{p}/x", "loopback", r"(?i)localhost " + RESOLVES_LOOPBACK),
    ("decimal", "http://2130706433:{p}/x", "loopback", r"2130706433 " + RESOLVES_LOOPBACK),
    ("octal", "http://0177.0.0.1:{p}/x", "loopback", r"0177\.0\.0\.1 " + RESOLVES_LOOPBACK),
    ("hex", "http://0x7f.0.0.1:{p}/x", "loopback", r"0x7f\.0\.0\.1 " + RESOLVES_LOOPBACK),
    ("short", "http://127.1:{p}/x", "loopback", r"127\.1 " + RESOLVES_LOOPBACK),
    ("hex-whole", "http://0x7f000001:{p}/x", "loopback", r"0x7f000001 " + RESOLVES_LOOPBACK),
    ("octal-whole", "http://017700000001:{p}/x", "loopback", r"017700000001 " + RESOLVES_LOOPBACK),
    ("zero-padded", "http://127.000.000.001:{p}/x", "loopback", r"127\.000\.000\.001 " + RESOLVES_LOOPBACK),
    ("percent-encoded", "http://%31%32%37.0.0.1:{p}/x", "loopback", r"127\.0\.0\.1 is loopback"),
    ("userinfo", "http://user:pw@127.0.0.1:{p}/x", "loopback", r"127\.0\.0\.1 is loopback"),
    ("zero", "http://0:{p}/x", "unspecified", r"\b0 resolves to 0\.0\.0\.0, which is unspecified"),
    ("ipv6-loopback", "http://[::1]:{p}/x", "loopback", r"::1 is loopback"),
    ("ipv6-loopback-long", "http://[0:0:0:0:0:0:0:1]:{p}/x", "loopback", r"::1 is loopback"),
    ("ipv4-mapped", "http://[::ffff:127.0.0.1]:{p}/x", "embedded_ipv4", r"::ffff:127\.0\.0\.1 is IPv4-mapped IPv6"),
    ("ipv4-mapped-hex", "http://[::ffff:7f00:1]:{p}/x", "embedded_ipv4", r"is IPv4-mapped IPv6"),
    ("ipv4-compatible", "http://[::127.0.0.1]:{p}/x", "embedded_ipv4", r"is IPv4-compatible IPv6"),
    ("nat64", "http://[64:ff9b::7f00:1]:{p}/x", "embedded_ipv4", r"is NAT64"),
    ("6to4", "http://[2002:7f00:1::1]:{p}/x", "embedded_ipv4", r"is 6to4"),
    ("teredo", "http://[2001::1]/", "embedded_ipv4", r"is Teredo"),
    ("metadata", "http://169.254.169.254/latest/meta-data/", "link_local", r"169\.254\.169\.254 is link-local"),
    ("rfc1918-10", "http://10.0.0.1/", "private", r"10\.0\.0\.1 is private \(RFC 1918\)"),
    ("rfc1918-172", "http://172.16.0.1/", "private", r"172\.16\.0\.1 is private \(RFC 1918\)"),
    ("rfc1918-192", "http://192.168.1.1/", "private", r"192\.168\.1\.1 is private \(RFC 1918\)"),
    ("unspecified", "http://0.0.0.0:{p}/x", "unspecified", r"0\.0\.0\.0 is unspecified"),
    ("ipv6-unspecified", "http://[::]:{p}/x", "unspecified", r":: is unspecified"),
    ("cgnat", "http://100.64.0.1/", "cgnat", r"100\.64\.0\.1 is shared address space \(CGNAT\)"),
    ("ula", "http://[fd00::1]/", "private", r"fd00::1 is unique local \(ULA\)"),
    ("ipv6-link-local", "http://[fe80::1]/", "link_local", r"fe80::1 is link-local"),
    ("multicast", "http://224.0.0.1/", "multicast", r"224\.0\.0\.1 is multicast"),
    ("broadcast", "http://255.255.255.255/", "broadcast", r"255\.255\.255\.255 is broadcast"),
    ("reserved", "http://240.0.0.1/", "reserved", r"240\.0\.0\.1 is reserved"),
]


def _assert_denied(user, srv, url: str, reason: str, pattern: str, sink: Sink | None = None):
    """Runs one http task to `url` under RETRY_ANY and checks the denial."""
    before = _denials(srv)
    seen = sink.connections() if sink else 0
    wf = fs.create_wf(user, [_http_task({"url": url}, RETRY_ANY)])
    done = fs.run(user, wf["id"])
    task = fs.by_key(done)["call"]
    assert done["status"] == "Failed", done
    assert task["status"] == "Failed", task
    assert task["attempt"] == 1, f"a denial was retried: {task}"
    err = task.get("error", "")
    assert err.startswith("egress_denied: "), task
    assert re.search(pattern, err), (pattern, err)
    assert not task.get("output"), task
    if sink:
        assert sink.connections() == seen, f"{url} reached the listener: {sink.requests()}"
    logs = _log_text(user, wf["id"], done["executionId"])
    assert any("failed on attempt 1 (egress_denied)" in m for m in logs), logs
    assert not any("retrying" in m for m in logs), logs
    assert _delta(before, _denials(srv)) == {reason: 1}, (before, _denials(srv))
    return task


@pytest.mark.parametrize("url, reason, pattern", [d[1:] for d in DENIED], ids=[d[0] for d in DENIED])
def test_denied_destination_fails_once_and_nothing_arrives(guarded, owner, sink, url, reason, pattern):
    url = url.format(p=sink.port)
    task = _assert_denied(owner, guarded, url, reason, pattern, sink)
    # The error names the request it refused, without the URL's user info.
    assert "(GET http://" in task["error"] and "pw@" not in task["error"], task


# Spellings that the URL parser or the resolver turn into something else
# (or nothing): whatever the outcome, nothing may reach the listener.
ODD = [
    ("trailing-dot", "http://127.0.0.1.:{p}/odd"),
    ("localhost-trailing-dot", "http://localhost.:{p}/odd"),
    ("zone-id", "http://[::1%25lo]:{p}/odd"),
    ("fullwidth-dots", "http://127\u30020\u30020\u30021:{p}/odd"),
    ("circled-letter", "http://\u24dbocalhost:{p}/odd"),
    ("fragment-at", "http://127.0.0.1:{p}#@example.com/odd"),
]


@pytest.mark.parametrize("url", [o[1] for o in ODD], ids=[o[0] for o in ODD])
def test_odd_spellings_never_reach_loopback(guarded, owner, sink, url):
    url = url.format(p=sink.port)
    seen = sink.connections()
    r = owner.rest.post("/workflows", {"name": f"odd {fs.uid()}", "tasks": [_http_task({"url": url})]})
    if r.status == 400:
        return  # refused at the save: fine, nothing ran
    assert r.status == 201, r
    done = fs.run(owner, r.json["id"])
    assert done["status"] == "Failed", done
    assert sink.connections() == seen, f"{url!r} reached the listener: {sink.requests()}"


def test_the_servers_own_port_is_denied(guarded, owner):
    for url, pattern in [
        (f"http://127.0.0.1:{guarded.port}/metrics", r"127\.0\.0\.1 is loopback"),
        (f"http://localhost:{guarded.port}/healthz", r"localhost resolves to (127\.0\.0\.1|::1), which is loopback"),
        (f"http://[::ffff:127.0.0.1]:{guarded.port}/metrics", r"IPv4-mapped IPv6"),
    ]:
        reason = "embedded_ipv4" if "ffff" in url else "loopback"
        _assert_denied(owner, guarded, url, reason, pattern)


def test_denial_through_a_template_url(guarded, owner, sink):
    """A URL built from the input at run time is checked like a literal one."""
    before = _denials(guarded)
    seen = sink.connections()
    wf = fs.create_wf(owner, [_http_task({"url": "http://{{input.host}}:{{input.port}}/t"}, RETRY_ANY)])
    done = fs.run(owner, wf["id"], input={"host": "2130706433", "port": sink.port})
    task = fs.by_key(done)["call"]
    assert done["status"] == "Failed" and task["attempt"] == 1, done
    assert task["error"].startswith("egress_denied: 2130706433 resolves to 127.0.0.1, which is loopback"), task
    assert sink.connections() == seen, sink.requests()
    assert _delta(before, _denials(guarded)) == {"loopback": 1}


# ---------------------------------------------------------------------------
# 2. Redirects: every hop is checked
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def allow2(tmp_path_factory):
    """A server whose allowlist is 127.0.0.2/32 and nothing else (Linux routes
    all of 127/8 to lo, so listeners can bind 127.0.0.2)."""
    srv = _start(tmp_path_factory, "egress-allow-127-0-0-2", "--egress-allow", "127.0.0.2/32")
    assert srv.command.count("--egress-allow") == 1 and "127.0.0.1/32" not in srv.command, srv.command
    yield srv
    wh.finish_servers([srv])


@pytest.fixture(scope="module")
def owner2(allow2):
    return wh.register_and_login(allow2, "Redirect Owner")


@pytest.fixture(scope="module")
def hop():
    lst = Listener("127.0.0.2")
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def hop_other_port():
    lst = Listener("127.0.0.2")
    yield lst
    lst.close()


def test_allowlist_reopens_exactly_its_block(allow2, owner2, hop, sink):
    tag = fs.uid()
    hop.route(f"/ok/{tag}", 200, body={"ok": tag})
    wf = fs.create_wf(owner2, [_http_task({"url": hop.url(f"/ok/{tag}")})])
    done = fs.run(owner2, wf["id"])
    assert done["status"] == "Completed", done
    assert fs.by_key(done)["call"]["output"]["body"] == {"ok": tag}
    assert len(hop.hits(f"/ok/{tag}")) == 1
    # 127.0.0.1 is still loopback on this server.
    _assert_denied(owner2, allow2, f"http://127.0.0.1:{sink.port}/direct/{tag}", "loopback",
                   r"127\.0\.0\.1 is loopback", sink)


@pytest.mark.parametrize("dest, pattern", [
    ("http://127.0.0.1:{p}/secret/{tag}",
     r"^egress_denied: 127\.0\.0\.1 is loopback \(GET http://127\.0\.0\.1:{p}/secret/{tag}\)"),
    ("http://localhost:{p}/secret/{tag}", r"^egress_denied: localhost " + RESOLVES_LOOPBACK),
    ("http://[::1]:{p}/secret/{tag}", r"^egress_denied: ::1 is loopback"),
    ("http://2130706433:{p}/secret/{tag}", r"^egress_denied: 2130706433 " + RESOLVES_LOOPBACK),
], ids=["127.0.0.1", "localhost", "ipv6", "decimal"])
def test_redirect_to_loopback_is_denied_at_that_hop(allow2, owner2, hop, sink, dest, pattern):
    tag = fs.uid()
    dest = dest.format(p=sink.port, tag=tag)
    hop.redirect(f"/to-secret/{tag}", dest)
    before = _denials(allow2)
    seen = sink.connections()
    wf = fs.create_wf(owner2, [_http_task({"url": hop.url(f"/to-secret/{tag}"), "followRedirects": True}, RETRY_ANY)])
    done = fs.run(owner2, wf["id"])
    task = fs.by_key(done)["call"]
    assert done["status"] == "Failed", done
    assert task["attempt"] == 1, task
    assert re.search(pattern.format(p=sink.port, tag=tag), task["error"]), task["error"]
    assert len(hop.hits(f"/to-secret/{tag}")) == 1, hop.requests
    assert sink.connections() == seen, f"the redirect reached 127.0.0.1: {sink.requests()}"
    assert _delta(before, _denials(allow2)) == {"loopback": 1}
    logs = _log_text(owner2, wf["id"], done["executionId"])
    assert any("following to" in m for m in logs), logs
    assert any("(egress_denied)" in m for m in logs), logs


def test_redirect_chain_within_the_allowlist_completes_and_drops_credentials_cross_origin(
        allow2, owner2, hop, hop_other_port):
    """127.0.0.2:Q/a -> (relative) 127.0.0.2:Q/b -> (absolute, other port)
    127.0.0.2:Q2/c: every hop re-checked and allowed; Authorization and
    Cookie reach the same-origin hops only."""
    tag = fs.uid()
    a, b, c = f"/chain/a/{tag}", f"/chain/b/{tag}", f"/chain/c/{tag}"
    hop.redirect(a, b)
    hop.redirect(b, hop_other_port.url(c), status=307)
    hop_other_port.route(c, 200, headers={"X-Final": "yes"}, body={"final": True, "tag": tag})
    before = _denials(allow2)
    headers = {"Authorization": "Bearer s3cret", "Cookie": "session=abc", "X-Keep": "kept"}
    wf = fs.create_wf(owner2, [_http_task({"url": hop.url(a), "followRedirects": True, "headers": headers})])
    done = fs.run(owner2, wf["id"])
    assert done["status"] == "Completed", done
    out = fs.by_key(done)["call"]["output"]
    assert out["status"] == 200 and out["body"] == {"final": True, "tag": tag}, out
    assert out["headers"].get("x-final") == "yes", out["headers"]
    for lst, path in [(hop, a), (hop, b), (hop_other_port, c)]:
        assert len(lst.hits(path)) == 1, (path, lst.requests)
    for path in (a, b):
        seen = hop.hits(path)[0]["headers"]
        assert seen.get("authorization") == "Bearer s3cret" and seen.get("cookie") == "session=abc", (path, seen)
    final = hop_other_port.hits(c)[0]["headers"]
    assert "authorization" not in final and "cookie" not in final, f"credentials sent cross-origin: {final}"
    assert final.get("x-keep") == "kept", final
    assert _delta(before, _denials(allow2)) == {}


def test_redirect_not_followed_by_default(allow2, owner2, hop, sink):
    tag = fs.uid()
    dest = f"http://127.0.0.1:{sink.port}/secret/{tag}"
    hop.redirect(f"/nofollow/{tag}", dest)
    seen = sink.connections()
    # Default expectedStatus (2xx): the 302 is the failure, not a denial.
    wf = fs.create_wf(owner2, [_http_task({"url": hop.url(f"/nofollow/{tag}")})])
    done = fs.run(owner2, wf["id"])
    task = fs.by_key(done)["call"]
    assert done["status"] == "Failed", done
    assert "returned 302" in task["error"] and "egress_denied" not in task["error"], task
    # expectedStatus [302]: the redirect itself is the output.
    wf = fs.create_wf(owner2, [_http_task({"url": hop.url(f"/nofollow/{tag}"), "expectedStatus": [302]})])
    done = fs.run(owner2, wf["id"])
    assert done["status"] == "Completed", done
    out = fs.by_key(done)["call"]["output"]
    assert out["status"] == 302 and out["headers"].get("location") == dest, out
    assert len(hop.hits(f"/nofollow/{tag}")) == 2
    assert sink.connections() == seen, sink.requests()


# ---------------------------------------------------------------------------
# 3. Headers a task may not set
# ---------------------------------------------------------------------------

FORBIDDEN = ["Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "TE",
             "Trailer", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization", "HOST", "transfer-encoding"]


@pytest.mark.parametrize("header", FORBIDDEN)
def test_forbidden_header_refuses_the_save(guarded, owner, header):
    name = f"hdr {fs.uid()}"
    task = _http_task({"url": "https://example.com/", "headers": {"X-Fine": "1", header: "evil"}})
    r = owner.rest.post("/workflows", {"name": name, "tasks": [task]})
    assert r.status == 400, r
    assert r.json["code"] == 3, r.json  # INVALID_ARGUMENT
    assert f"config.headers.{header} cannot be set" in r.json["message"], r.json
    listed = owner.rest.get("/workflows?" + urllib.parse.urlencode({"namePrefix": name}))
    assert listed.status == 200 and listed.json.get("workflows", []) == [], listed


def test_forbidden_header_refuses_an_update_and_over_grpc(guarded, owner, protos):
    wf = fs.create_wf(owner, [_http_task({"url": "https://example.com/", "headers": {"X-Fine": "1"}})])
    r = owner.rest.put(f"/workflows/{wf['id']}", {
        "name": wf["name"], "tasks": [_http_task({"url": "https://example.com/", "headers": {"Host": "evil"}})]})
    assert r.status == 400 and "config.headers.Host" in r.json["message"], r
    now = owner.rest.get(f"/workflows/{wf['id']}").json
    assert wf["version"] == 1 and now["version"] == 1, (now, wf)
    assert now["tasks"][0]["config"]["headers"] == {"X-Fine": "1"}, now["tasks"]

    v1 = protos.v1
    task = v1.tasks_pb2.Task(name="Call", key="call", action="http")
    task.config.update({"url": "https://example.com/", "headers": {"Transfer-Encoding": "chunked"}})
    ch = wh.new_channel(guarded.target)
    try:
        stub = v1.workflows_pb2_grpc.WorkflowServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateWorkflow(v1.workflows_pb2.CreateWorkflowRequest(name=f"grpc {fs.uid()}", tasks=[task]),
                                metadata=wh.grpc_auth(owner), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
        assert "config.headers.Transfer-Encoding" in info.value.details(), info.value.details()
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# 4. Size caps
# ---------------------------------------------------------------------------


def test_expansion_bomb_stops_at_the_template_cap(guarded, owner):
    """The issue's scenario: 15 transforms, each the one before twice, from a
    1 KiB seed (unbounded: 16 MiB at the last one, and far more with wider
    fan-in).  Task k's output is 2^(k-1) KiB; t11 would build
    2 x 512 KiB (+ the quotes and the key), past the 1 MiB template cap."""
    tasks = [{"key": "t1", "name": "T1", "action": "transform", "config": {"output": "{{input.seed}}"},
              "retry": RETRY_ANY}]
    for k in range(2, 16):
        tasks.append({"key": f"t{k}", "name": f"T{k}", "action": "transform", "dependsOn": [f"t{k - 1}"],
                      "config": {"output": f"{{{{tasks.t{k - 1}.output}}}}{{{{tasks.t{k - 1}.output}}}}"},
                      "retry": RETRY_ANY})
    wf = fs.create_wf(owner, tasks)
    t0 = time.monotonic()
    done = fs.run(owner, wf["id"], timeout=45, input={"seed": "s" * 1024})
    took = time.monotonic() - t0
    assert done["status"] == "Failed", {k: v for k, v in done.items() if k != "tasks"}
    tasks_by = fs.by_key(done)
    for k in range(1, 11):
        t = tasks_by[f"t{k}"]
        assert t["status"] == "Completed", (k, {x: y for x, y in t.items() if x != "output"})
        assert len(t["output"]["value"]) == 1024 * 2 ** (k - 1), (k, len(t["output"]["value"]))
    bad = tasks_by["t11"]
    assert bad["status"] == "Failed" and bad["attempt"] == 1, {x: y for x, y in bad.items() if x != "output"}
    assert "output_too_large" in bad["error"] and str(TEMPLATE_CAP) in bad["error"], bad["error"]
    assert not bad.get("output"), "a failed task kept an output"
    for k in range(12, 16):
        assert tasks_by[f"t{k}"]["status"] not in ("Completed", "Running"), tasks_by[f"t{k}"]
        assert not tasks_by[f"t{k}"].get("output")
    r = owner.rest.get(f"/workflows/{wf['id']}/executions/{done['executionId']}")
    assert r.status == 200 and len(r.body) < 4_000_000, len(r.body)
    logs = _log_text(owner, wf["id"], done["executionId"])
    assert any("t11 failed on attempt 1 (output_too_large)" in m for m in logs), logs
    status, _, body = wh.http_get(guarded, "/healthz")
    assert status == 200, (status, body)
    assert guarded.running()
    assert guarded.rss_kb() < 1024 * 1024, f"RSS {guarded.rss_kb()} kB after the bomb"
    assert took < 40, took


TASK_CAP, EXEC_CAP = 4096, 8192


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    srv = _start(tmp_path_factory, "egress-caps", "--max-task-output-bytes", str(TASK_CAP),
                 "--max-execution-bytes", str(EXEC_CAP))
    yield srv
    wh.finish_servers([srv])


@pytest.fixture(scope="module")
def capped_owner(capped):
    return wh.register_and_login(capped, "Caps Owner")


def _transform(key: str, output, depends=()) -> dict:
    return {"key": key, "name": key.title(), "action": "transform", "config": {"output": output},
            "dependsOn": list(depends), "retry": RETRY_ANY}


def test_task_output_cap(capped, capped_owner):
    # `fits` runs first: a failed task cancels the execution's others.
    wf = fs.create_wf(capped_owner, [_transform("fits", "z" * 3000), _transform("big", "y" * 5000, ["fits"])])
    done = fs.run(capped_owner, wf["id"])
    tasks = fs.by_key(done)
    assert done["status"] == "Failed", done
    assert tasks["fits"]["status"] == "Completed" and tasks["fits"]["output"]["value"] == "z" * 3000, tasks["fits"]
    big = tasks["big"]
    assert big["status"] == "Failed" and big["attempt"] == 1, big
    assert "output_too_large" in big["error"] and str(TASK_CAP) in big["error"], big["error"]
    assert "task's output" in big["error"], big["error"]
    assert not big.get("output"), big


def test_execution_bytes_cap(capped, capped_owner):
    """Three outputs of 3,000 bytes in a chain: the first two fit in 8,192
    bytes, the third would pass the cap and fails."""
    chain = [_transform("a", "a" * 3000), _transform("b", "b" * 3000, ["a"]), _transform("c", "c" * 3000, ["b"])]
    wf = fs.create_wf(capped_owner, chain)
    done = fs.run(capped_owner, wf["id"])
    tasks = fs.by_key(done)
    assert done["status"] == "Failed", done
    assert tasks["a"]["status"] == "Completed" and tasks["b"]["status"] == "Completed", tasks
    c = tasks["c"]
    assert c["status"] == "Failed" and c["attempt"] == 1, c
    assert "output_too_large" in c["error"] and str(EXEC_CAP) in c["error"], c["error"]
    assert "execution" in c["error"], c["error"]
    assert not c.get("output"), c


# ---------------------------------------------------------------------------
# 5. --max-attempt-timeout
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    srv = _start(tmp_path_factory, "egress-short", "--max-attempt-timeout", "1")
    yield srv
    wh.finish_servers([srv])


@pytest.fixture(scope="module")
def holder():
    t = fs.Target()
    yield t
    t.close()


def test_max_attempt_timeout_caps_an_unanswered_http_task(short, holder):
    """/hold never answers (until released): the http task's default 30 s and
    a task's own 60 s timeout are both cut to the server's 1 s (two
    executions, run side by side)."""
    user = wh.register_and_login(short, "Short Owner")
    runs = {}
    t0 = time.monotonic()
    try:
        for key, extra in (("plain", {}), ("own", {"timeout": "60s"})):
            tag = fs.uid()
            wf = fs.create_wf(user, [_http_task({"url": holder.url(f"/hold/{tag}")}, **extra)])
            runs[key] = (tag, wf["id"], fs.execute(user, wf["id"]))
        done = {key: fs.wait_status(user, wid, eid, timeout=25) for key, (_, wid, eid) in runs.items()}
        took = time.monotonic() - t0
    finally:
        holder.release_all()
    assert took < 15, f"took {took:.1f}s with --max-attempt-timeout 1"
    for key, (tag, wid, eid) in runs.items():
        assert done[key]["status"] == "Failed", done[key]
        t = fs.by_key(done[key])["call"]
        assert t["status"] == "Failed" and t["attempt"] == 1, t
        assert re.search(r"timed out|timeout", t["error"], re.I), t["error"]
        assert len(holder.arrivals(f"/hold/{tag}")) == 1, f"the request of {key} never reached the target"
        logs = _log_text(user, wid, eid)
        assert any("task call failed on attempt 1 (timeout)" in m for m in logs), logs


# ---------------------------------------------------------------------------
# 6. Bad allowlist entries stop the start
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, env, entry", [
    (["--egress-allow", "10.0.0.0/33"], {}, "10.0.0.0/33"),
    (["--egress-allow", "127.0.0.2/32", "--egress-allow", "::1/129"], {}, "::1/129"),
    ([], {"WEFT_EGRESS_ALLOW": "10.0.0.0/8,300.1.2.3/8"}, "300.1.2.3/8"),
], ids=["v4-prefix", "v6-prefix", "env"])
def test_bad_egress_allow_entry_stops_the_start(tmp_path, args, env, entry):
    cmd = [str(wh.weft_bin()), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path), *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"weft serve {args} {env} did not exit (it started): {exc.stderr}")
    assert res.returncode != 0, (res.returncode, res.stderr)
    assert entry in res.stderr and "egress-allow" in res.stderr.lower().replace("_", "-"), res.stderr
    assert "listening on" not in res.stderr, res.stderr
