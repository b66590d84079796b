"""Transport limits and http-task limits that the README and docs/ENGINE.md
promise, on real `weft serve` processes:

* HTTP/2 (h2c, prior knowledge, driven by the `h2` state machine): the
  server's SETTINGS follow --max-concurrent-streams and
  --max-header-list-size (and the 1 MiB initial window of RPCServerConfig);
  streams beyond the limit are refused while the allowed ones complete; a
  header list over the limit is RESOURCE_EXHAUSTED; the server never sends
  more DATA than the client's stream or connection window and goes on after
  WINDOW_UPDATE.
* HTTP/1.1 pipelining with request bodies (responses in order, each matching
  its request), and a 413 over --max-receive-message-size closing the
  connection with nothing answered after it.
* http tasks against a local server: redirects followed (to the final
  response) or not (the 302 is the outcome), the redirect limit and cycles,
  the 10 MiB response cap, and retry backoff growing to its cap.
"""

from __future__ import annotations

import json
import select
import socket
import time

import pytest

import flags_support as fs
import weft_helpers as wh

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
EMPTY_CHECK = wh.grpc_message(b"")  # HealthCheckRequest(service="")


@pytest.fixture(scope="module")
def target():
    t = fs.Target()
    yield t
    t.close()


@pytest.fixture(scope="module")
def owner(api_server):
    return wh.register_and_login(api_server, "Limits Owner")


# ---------------------------------------------------------------------------
# HTTP/2: SETTINGS, stream limit, header list limit
# ---------------------------------------------------------------------------

MAX_STREAMS = 3
MAX_HEADER_LIST = 2048


@pytest.fixture(scope="module")
def limited(tmp_path_factory, protos):
    """A server with a small stream limit and header list limit."""
    base = tmp_path_factory.mktemp("h2-limits")
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", name="h2-limits",
                        args=("--max-concurrent-streams", str(MAX_STREAMS),
                              "--max-header-list-size", str(MAX_HEADER_LIST)))
    srv.start(timeout=30)
    yield srv
    wh.finish_servers([srv])


def test_h2_settings_follow_the_flags(limited, api_server):
    settings = wh.h2_settings_of_server(limited)
    assert settings.get(0x3) == MAX_STREAMS, settings  # SETTINGS_MAX_CONCURRENT_STREAMS
    assert settings.get(0x6) == MAX_HEADER_LIST, settings  # SETTINGS_MAX_HEADER_LIST_SIZE
    # SETTINGS_INITIAL_WINDOW_SIZE: RPCServerConfig.initialWindowSize, 1 MiB.
    assert settings.get(0x4) == 1024 * 1024, settings
    # A server without the flags advertises the documented defaults.
    defaults = wh.h2_settings_of_server(api_server)
    assert (defaults.get(0x3), defaults.get(0x4), defaults.get(0x6)) == (100, 1024 * 1024, 16384), defaults


def test_h2_header_list_over_the_flag_is_resource_exhausted(limited):
    with wh.H2Client(limited) as c:
        c.handshake()
        big = c.wait_stream(c.start_call(HEALTH_CHECK, EMPTY_CHECK, extra_headers=[("x-pad", "a" * 3000)]), 5)
        assert not big.timed_out, big
        assert big.grpc_status() == 8, big  # RESOURCE_EXHAUSTED
        assert str(MAX_HEADER_LIST) in (big.grpc_message_text() or ""), big
        # Under the limit on the same connection: served.
        small = c.wait_stream(c.start_call(HEALTH_CHECK, EMPTY_CHECK, extra_headers=[("x-pad", "a" * 1500)]), 5)
        assert small.grpc_status() == 0, small


def test_h2_streams_over_the_limit_are_refused_and_the_others_complete(limited):
    """HEADERS for 2 x limit streams sent before the client has acknowledged
    the server's SETTINGS (the race SETTINGS_MAX_CONCURRENT_STREAMS meets in
    practice): the streams past the limit get RST_STREAM REFUSED_STREAM (safe
    to retry), the first `limit` ones run to completion, and the connection
    stays usable."""
    with wh.H2Client(limited) as c:
        # No pump yet: h2 has not seen the server's limit, so it sends them all.
        sids = [c.start_call(HEALTH_CHECK, None, end_stream=False) for _ in range(2 * MAX_STREAMS)]
        allowed, excess = sids[:MAX_STREAMS], sids[MAX_STREAMS:]
        wh.wait_until(lambda: c.pump(0.1) and all(c.results[s].reset_code is not None for s in excess), 5,
                      message=lambda: f"RST_STREAM for the excess streams: {[c.results[s] for s in sids]}")
        for sid in excess:
            assert c.results[sid].reset_code in (wh.REFUSED_STREAM, wh.PROTOCOL_ERROR), c.results[sid]
            assert c.results[sid].headers is None, c.results[sid]
        for sid in allowed:
            assert c.results[sid].reset_code is None, c.results[sid]
            c.send_data(sid, EMPTY_CHECK, end_stream=True)
        for sid in allowed:
            r = c.wait_stream(sid, 5)
            assert r.ended and r.grpc_status() == 0, r
        assert c.goaway is None and not c.closed
        # Capacity is back: a new stream on the same connection is served.
        r = c.wait_stream(c.start_call(HEALTH_CHECK, EMPTY_CHECK), 5)
        assert r.grpc_status() == 0, r


def test_h2_stream_over_an_acknowledged_limit_is_not_served(limited, protos):
    """Once the client has acknowledged the limit, a stream past it is a
    protocol violation: nghttp2 answers with GOAWAY(PROTOCOL_ERROR) whose
    last stream id excludes it (or RST_STREAM); it is never served, and the
    server goes on serving new connections."""
    from h2.settings import SettingCodes

    with wh.H2Client(limited) as c:
        c.handshake()
        wh.wait_until(lambda: c.pump(0.05) and c.conn.remote_settings.max_concurrent_streams == MAX_STREAMS, 5)
        # Make h2 ignore the server's limit, as a misbehaving client would.
        c.conn.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
        c.conn.remote_settings.acknowledge()
        sids = [c.start_call(HEALTH_CHECK, None, end_stream=False) for _ in range(MAX_STREAMS + 1)]
        over = sids[-1]

        def refused():
            c.pump(0.1)
            r = c.results[over]
            return r.reset_code is not None or (c.goaway is not None and over > c.goaway[1]) or c.closed

        wh.wait_until(refused, 5, message=lambda: f"stream {over} refused: {c.results[over]} goaway={c.goaway}")
        r = c.results[over]
        assert r.headers is None and r.data == b"", r
        if r.reset_code is not None:
            assert r.reset_code in (wh.REFUSED_STREAM, wh.PROTOCOL_ERROR), r
        elif c.goaway is not None:
            assert c.goaway[0] == wh.PROTOCOL_ERROR, c.goaway
    wh.assert_still_serving(limited, protos)


# ---------------------------------------------------------------------------
# HTTP/2 flow control: the server obeys the client's windows
# ---------------------------------------------------------------------------


class WindowClient:
    """h2c client that never acknowledges DATA by itself: the windows it
    grants are exactly the initial ones plus explicit WINDOW_UPDATEs."""

    def __init__(self, server, stream_window: int):
        import h2.config
        import h2.connection
        from h2.settings import SettingCodes

        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: stream_window})
        self.sock.sendall(self.conn.data_to_send())
        self.authority = server.target
        self.received: dict[int, int] = {}
        self.bodies: dict[int, bytes] = {}
        self.headers: dict[int, list] = {}
        self.ended: set[int] = set()
        self.frames: list[tuple[int, int]] = []  # (stream, bytes) of each DATA frame
        self.granted_conn = 65535  # RFC 9113 initial connection window

    def get(self, path: str) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":path", path),
                                     (":authority", self.authority)], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        self.received[sid] = 0
        self.bodies[sid] = b""
        return sid

    def pump(self, timeout: float) -> bool:
        import h2.events

        readable, _, _ = select.select([self.sock], [], [], timeout)
        if readable:
            data = self.sock.recv(65536)
            assert data, "server closed the connection"
            for ev in self.conn.receive_data(data):  # h2 raises FlowControlError on an overrun too
                if isinstance(ev, h2.events.DataReceived):
                    self.received[ev.stream_id] += ev.flow_controlled_length
                    self.bodies[ev.stream_id] += ev.data
                    self.frames.append((ev.stream_id, ev.flow_controlled_length))
                elif isinstance(ev, h2.events.ResponseReceived):
                    self.headers[ev.stream_id] = list(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.add(ev.stream_id)
                elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise AssertionError(f"unexpected {ev}")
            out = self.conn.data_to_send()  # SETTINGS ACK, PING ACK; never WINDOW_UPDATE
            if out:
                self.sock.sendall(out)
        return True

    def quiet(self, seconds: float):
        """Reads for `seconds` (no DATA is expected meanwhile)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(max(0.0, min(0.05, end - time.monotonic())))

    def grant(self, sid: int | None, n: int):
        self.conn.increment_flow_control_window(n, stream_id=sid)
        if sid is None:
            self.granted_conn += n
        self.sock.sendall(self.conn.data_to_send())

    def close(self):
        self.sock.close()


def test_h2_server_stops_at_the_client_stream_window_and_resumes(api_server):
    status, _, expected = wh.http_get(api_server, "/openapi.json")
    assert status == 200 and len(expected) > 20 * 4096, len(expected)
    window = 4096
    c = WindowClient(api_server, stream_window=window)
    try:
        sid = c.get("/openapi.json")
        wh.wait_until(lambda: c.pump(0.05) and c.received[sid] >= window, 5,
                      message=lambda: f"the first {window} bytes; got {c.received[sid]}")
        c.quiet(0.5)
        assert c.received[sid] == window, f"server sent {c.received[sid]} bytes into a {window}-byte window"
        assert sid not in c.ended
        assert dict(c.headers[sid]).get(":status") == "200", c.headers
        granted = window
        while sid not in c.ended:
            step = 16384
            c.grant(sid, step)
            c.grant(None, step)
            granted += step
            wh.wait_until(lambda: c.pump(0.05) and (c.received[sid] >= min(granted, len(expected))), 5,
                          message=lambda: f"data up to {granted}; got {c.received[sid]}")
            assert c.received[sid] <= granted, (c.received[sid], granted)
            if c.received[sid] == len(expected):
                wh.wait_until(lambda: c.pump(0.05) and sid in c.ended, 5, message="END_STREAM")
        assert c.bodies[sid] == expected
    finally:
        c.close()


def test_h2_server_stops_at_the_connection_window(api_server):
    """Stream windows of 1 MiB but the connection window left at 65,535:
    two large responses together stop at 65,535 bytes, and go on as the
    connection window is raised."""
    status, _, expected = wh.http_get(api_server, "/openapi.json")
    assert status == 200 and len(expected) > 65535, len(expected)
    c = WindowClient(api_server, stream_window=1024 * 1024)
    try:
        a, b = c.get("/openapi.json"), c.get("/openapi.json")
        total = lambda: c.received[a] + c.received[b]  # noqa: E731
        wh.wait_until(lambda: c.pump(0.05) and total() >= 65535, 5,
                      message=lambda: f"the first 65535 bytes; got {total()}")
        c.quiet(0.5)
        assert total() == 65535, f"server sent {total()} bytes into a 65535-byte connection window"
        c.grant(None, 2 * len(expected))
        wh.wait_until(lambda: c.pump(0.05) and {a, b} <= c.ended, 10,
                      message=lambda: f"both responses after WINDOW_UPDATE; got {c.received}")
        assert c.bodies[a] == expected and c.bodies[b] == expected
    finally:
        c.close()


# ---------------------------------------------------------------------------
# HTTP/1.1 pipelining with bodies, and 413
# ---------------------------------------------------------------------------


def _post(path: str, body, headers: dict | None = None) -> bytes:
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nHost: weft\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{extra}\r\n").encode() + data


def _get(path: str, headers: dict | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: weft\r\n{extra}\r\n".encode()


def _responses(data: bytes) -> tuple[list[tuple[int, dict, bytes]], bytes]:
    """Complete responses at the start of `data` (content-length framed), and what follows them."""
    out, pos = [], 0
    while True:
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return out, data[pos:]
        lines = data[pos:head_end].decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        end = head_end + 4 + int(headers.get("content-length", "0"))
        if end > len(data):
            return out, data[pos:]
        out.append((status, headers, data[head_end + 4:end]))
        pos = end


def test_http1_pipelined_requests_with_bodies_answer_in_order(api_server, owner):
    other = wh.register_and_login(api_server, "Limits Other")
    tag = fs.uid()
    reqs = [
        _post("/users/login", {"email": owner.email, "password": owner.password}),
        _get("/healthz"),
        _post("/users/login", {"email": other.email, "password": other.password}),
        _post("/users/login", {"email": owner.email, "password": "not the password"}),
        _get(f"/nope-{tag}"),
        _post("/workflows", {"name": f"pipelined {tag}", "tasks": [{"key": "n", "name": "N", "action": "noop"}]},
              {"Authorization": f"Bearer {owner.token}"}),
        _post("/users/login", {"email": other.email, "password": other.password}, {"Connection": "close"}),
    ]
    with socket.create_connection((api_server.host, api_server.port), timeout=10) as s:
        s.sendall(b"".join(reqs))  # one send: all of it pipelined
        data, closed = wh.recv_until_closed(s, 15)
    responses, rest = _responses(data)
    assert closed, f"connection not closed after 'Connection: close'; got {len(responses)} responses"
    assert rest == b"", rest[:200]
    assert [st for st, _, _ in responses] == [200, 200, 200, 401, 404, 201, 200], responses
    bodies = [json.loads(b) for _, _, b in responses]
    assert bodies[0]["user"]["email"] == owner.email, bodies[0]
    assert bodies[1]["status"] == "SERVING", bodies[1]
    assert bodies[2]["user"]["email"] == other.email, bodies[2]
    assert bodies[3]["code"] == 16, bodies[3]
    assert f"/nope-{tag}" in bodies[4]["message"], bodies[4]
    assert bodies[5]["name"] == f"pipelined {tag}", bodies[5]
    assert bodies[6]["user"]["email"] == other.email, bodies[6]
    assert responses[6][1].get("connection") == "close", responses[6][1]
    # The workflow made in the middle of the pipeline exists.
    r = owner.rest.get(f"/workflows/{bodies[5]['id']}")
    assert r.status == 200 and r.json["name"] == f"pipelined {tag}", r


@pytest.mark.parametrize("body_size", [2000, 300_000])
def test_http1_413_closes_the_connection_and_answers_nothing_after_it(server_factory, body_size):
    srv = server_factory(*wh.API_SERVER_ARGS, "--max-receive-message-size", "1024")
    big = _post("/users/login", {"email": "a" * body_size, "password": "x"})
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        try:
            s.sendall(_get("/healthz") + big + _get("/healthz") + _post("/users/login", {"email": "b", "password": "c"}))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close while the rest of the body is in flight
        data, closed = wh.recv_until_closed(s, 10)
    responses, rest = _responses(data)
    assert closed, "connection still open 10 s after the 413"
    assert [st for st, _, _ in responses] == [200, 413], (responses, rest[:200])
    assert rest == b"", f"bytes after the 413: {rest[:200]!r}"
    _, headers, body = responses[1]
    assert headers.get("connection") == "close", headers
    err = json.loads(body)
    assert err["code"] == 8 and "1024" in err["message"], err
    # The server itself is fine.
    status, _, _ = wh.http_get(srv, "/healthz")
    assert status == 200


# ---------------------------------------------------------------------------
# http tasks: redirects, the response cap, backoff to its cap
# ---------------------------------------------------------------------------


def _http_task(config: dict, retry: dict | None = None) -> list:
    return [{"key": "call", "name": "Call", "action": "http", "config": config,
             "retry": retry or {"maxAttempts": 1}}]


@pytest.mark.parametrize("hops", [1, 5])
def test_http_task_follows_redirects_to_the_final_response(owner, target, hops):
    """followRedirects true: the 302s are followed, up to 5 of them (each
    hop checked by the egress guard), and the output is the final response."""
    tag = fs.uid()
    config = {"url": target.url(f"/redirect/{hops}/{tag}"), "followRedirects": True}
    wf = fs.create_wf(owner, _http_task(config))
    done = fs.run(owner, wf["id"])
    assert done["status"] == "Completed", done
    out = fs.by_key(done)["call"]["output"]
    assert out["status"] == 200, out
    assert out["body"] == {"final": True, "tag": tag}, out
    assert out["headers"].get("x-final") == "yes", out["headers"]
    for n in range(hops, -1, -1):
        assert len(target.arrivals(f"/redirect/{n}/{tag}")) == 1, n


@pytest.mark.parametrize("follow", [False, None])
def test_http_task_not_following_a_302_fails_as_http_3xx_or_returns_it(owner, target, follow):
    # Redirects are off by default. Default expectedStatus (2xx): the 302
    # fails the attempt with kind http_3xx, which the retry policy matches
    # (so a second attempt runs).
    tag = fs.uid()
    config = {"url": target.url(f"/redirect/1/{tag}")}
    if follow is not None:
        config["followRedirects"] = follow
    wf = fs.create_wf(owner, _http_task(
        config,
        {"maxAttempts": 2, "initialBackoff": "0.05s", "jitter": 0, "retryableErrors": ["http_3xx"]}))
    done = fs.run(owner, wf["id"])
    assert done["status"] == "Failed", done
    task = fs.by_key(done)["call"]
    assert task["attempt"] == 2, task
    assert "302" in task["error"], task
    assert len(target.arrivals(f"/redirect/1/{tag}")) == 2
    assert target.arrivals(f"/redirect/0/{tag}") == [], "the redirect was followed"
    logs = fs.all_logs(owner, wf["id"], done["executionId"])
    assert any("(http_3xx)" in e["message"] for e in logs), [e["message"] for e in logs]

    # expectedStatus [302]: the redirect itself is the output.
    tag = fs.uid()
    wf = fs.create_wf(owner, _http_task(
        {"url": target.url(f"/redirect/1/{tag}"), "followRedirects": False, "expectedStatus": [302]}))
    done = fs.run(owner, wf["id"])
    assert done["status"] == "Completed", done
    out = fs.by_key(done)["call"]["output"]
    assert out["status"] == 302, out
    assert out["headers"].get("location") == f"/redirect/0/{tag}", out["headers"]
    assert target.arrivals(f"/redirect/0/{tag}") == [], "the redirect was followed"


def test_http_task_redirect_limit_and_cycle_fail_the_attempt(owner, target):
    # Six redirects in a row: the sixth is past the limit of 5.
    tag = fs.uid()
    wf = fs.create_wf(owner, _http_task({"url": target.url(f"/redirect/6/{tag}"), "followRedirects": True}))
    done = fs.run(owner, wf["id"])
    assert done["status"] == "Failed", done
    task = fs.by_key(done)["call"]
    assert "redirect" in task["error"].lower(), task
    assert [len(target.arrivals(f"/redirect/{n}/{tag}")) for n in range(6, -1, -1)] == [1, 1, 1, 1, 1, 1, 0]

    # A cycle (a -> b -> a) stops at the limit too.
    tag = fs.uid()
    wf = fs.create_wf(owner, _http_task({"url": target.url(f"/loop/a/{tag}"), "followRedirects": True}))
    done = fs.run(owner, wf["id"])
    assert done["status"] == "Failed", done
    task = fs.by_key(done)["call"]
    assert "redirect" in task["error"].lower(), task
    hits = len(target.arrivals(f"/loop/a/{tag}")) + len(target.arrivals(f"/loop/b/{tag}"))
    assert 2 <= hits <= 6, hits


CAP = 1024 * 1024  # --egress-max-response-bytes (default)


def test_http_task_response_cap(owner, target):
    """A body of exactly the cap (1 MiB) is the output; one byte more fails
    the attempt with kind response_too_large (retried when the policy names
    that kind), and is never truncated into an output."""
    tag = fs.uid()
    wf = fs.create_wf(owner, _http_task({"url": target.url(f"/bytes/{CAP}/{tag}")}))
    done = fs.run(owner, wf["id"], timeout=60)
    assert done["status"] == "Completed", {k: v for k, v in done.items() if k != "tasks"}
    out = fs.by_key(done)["call"]["output"]
    assert out["status"] == 200 and len(out["body"]) == CAP and set(out["body"]) == {"x"}, \
        (out["status"], len(out["body"]))

    tag = fs.uid()
    wf = fs.create_wf(owner, _http_task(
        {"url": target.url(f"/bytes/{CAP + 1}/{tag}")},
        {"maxAttempts": 2, "initialBackoff": "0.05s", "jitter": 0, "retryableErrors": ["response_too_large"]}))
    done = fs.run(owner, wf["id"], timeout=60)
    assert done["status"] == "Failed", done
    task = fs.by_key(done)["call"]
    assert task["attempt"] == 2, task
    assert "output" not in task or not task["output"], task
    assert f"larger than {CAP} bytes" in task["error"], task
    assert len(target.arrivals(f"/bytes/{CAP + 1}/{tag}")) == 2
    logs = fs.all_logs(owner, wf["id"], done["executionId"])
    assert any("(response_too_large)" in e["message"] for e in logs), [e["message"] for e in logs]


def test_retry_backoff_grows_then_stops_at_max_backoff(owner, target):
    """503 five times with initialBackoff 0.1 s, multiplier 3, maxBackoff
    0.3 s, no jitter: the backoffs are 0.1, 0.3 (0.3), 0.3 (0.9 capped),
    0.3 (2.7 capped). The gaps between requests seen by the target are a
    backoff plus the engine's overhead, so they are checked with a generous
    margin: the first is the shortest, the others sit on the 0.3 s plateau
    (an uncapped third gap would be 0.9 s)."""
    tag = fs.uid()
    path = f"/fail503/{tag}"
    wf = fs.create_wf(owner, _http_task(
        {"url": target.url(path)},
        {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "0.3s", "backoffMultiplier": 3, "jitter": 0,
         "retryableErrors": ["http_5xx"]}))
    done = fs.run(owner, wf["id"])
    assert done["status"] == "Failed", done
    assert fs.by_key(done)["call"]["attempt"] == 5, done
    times = target.arrivals(path)
    assert len(times) == 5, times
    gaps = [b - a for a, b in zip(times, times[1:])]
    slack = 0.35  # engine overhead allowed on top of a backoff
    assert 0.1 - 0.02 <= gaps[0] < 0.3, gaps
    for gap in gaps[1:]:
        assert 0.3 - 0.02 <= gap <= 0.3 + slack, gaps
    assert gaps[0] < min(gaps[1:]), gaps
    assert max(gaps[1:]) - min(gaps[1:]) < slack, f"no plateau at maxBackoff: {gaps}"
