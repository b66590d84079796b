"""Live REST streams (WatchExecution, TailLogs) and the per-user stream cap,
on a real server started with `--max-streams-per-user 2`.

* HTTP/1.1, read from a raw socket with arrival times: `GET …/watch` answers
  200 `application/x-ndjson` with chunked transfer; the first line (the
  current state) arrives within 1 s while the execution still waits in a 2 s
  delay, the events of the tasks after it arrive when they happen (not
  before the delay ended), and the response ends (last chunk) when the
  execution ends.  The same for `GET …/logs/tail` (a log line written before
  the delay arrives before it ends) and for server-sent events (`Accept:
  text/event-stream`: `data: {...}` events).
* HTTP/2 (h2c, the `h2` state machine): DATA frames arrive as events happen
  and END_STREAM follows the end of the execution.
* A watch ends when its execution is cancelled.
* The cap: with two streams of one user open (REST, gRPC, watch or tail
  alike), a third is refused, 429 with `retry-after` (REST) or
  RESOURCE_EXHAUSTED (gRPC); another user is not affected.  A client that
  goes away -- an HTTP/1.1 socket closed, an HTTP/2 stream reset, a gRPC
  call cancelled -- gives its place back within a few seconds (polled),
  while the watched execution keeps running.
* Errors before the first message (unknown execution or workflow, a
  stranger, no token, a bad argument) are ordinary JSON error responses
  (404 / 401 / 400), not streams, for NDJSON and SSE clients alike, and they
  hold no place.
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import grpc
import pytest

import flags_support as fs
import weft_helpers as wh

CAP = 2
TIMEOUT = 10
DELAY = 2.0  # seconds the live executions wait in their middle task
LIVE = [
    {"key": "hello", "name": "Hello", "action": "log", "config": {"message": "first words"}},
    {"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": f"{DELAY}s"}, "dependsOn": ["hello"]},
    {"key": "bye", "name": "Bye", "action": "log", "config": {"message": "last words", "level": "Warning"},
     "dependsOn": ["wait"]},
]
LONG = [{"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "60s"}}]


# ---------------------------------------------------------------------------
# A raw HTTP/1.1 streaming client
# ---------------------------------------------------------------------------


class Http1Stream:
    """One GET on its own socket; the body is read as it arrives.

    `head()` reads the status line and headers; `next_unit(sep)` returns the
    next piece of the body ending in `sep` (b"\\n" for NDJSON, b"\\n\\n" for
    SSE) with the time its last byte arrived, or None at the end of the body
    (the last chunk of a chunked body, or content-length bytes)."""

    def __init__(self, server: wh.WeftServer, path: str, token: str | None, accept: str | None = None, sock=None):
        # `sock`: a connection a finished response left open (keep-alive).
        self.sock = sock or socket.create_connection((server.host, server.port), timeout=TIMEOUT)
        lines = [f"GET {path} HTTP/1.1", f"Host: {server.target}"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if accept:
            lines.append(f"Accept: {accept}")
        self.sent_at = time.monotonic()
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.raw = b""  # received, not yet parsed
        self.body = b""  # decoded body, not yet handed out
        self.arrivals: list[tuple[int, float]] = []  # (decoded body length so far, time)
        self.taken = 0  # decoded bytes handed out
        self.status = None
        self.headers: dict = {}
        self.ended = False
        self.closed = False
        self.chunked = False
        self.remaining = None  # content-length bytes left

    def _recv(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, ConnectionAbortedError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        return True

    def head(self, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            if not self._recv(deadline):
                raise AssertionError(f"no response head within {timeout}s (closed={self.closed}): {self.raw[:300]!r}")
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        if not self.chunked:
            self.remaining = int(self.headers.get("content-length", "0"))
        self._parse()
        return self.status, self.headers

    def _parse(self):
        now = time.monotonic()
        grew = False
        while not self.ended:
            if self.chunked:
                if b"\r\n" not in self.raw:
                    break
                size_line, rest = self.raw.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    if b"\r\n" not in rest:
                        break
                    self.ended = True
                    self.raw = rest.split(b"\r\n", 1)[1]
                    break
                if len(rest) < size + 2:
                    break
                self.body += rest[:size]
                self.raw = rest[size + 2:]
                grew = True
            else:
                take = self.raw[: self.remaining]
                self.body += take
                self.raw = self.raw[len(take):]
                self.remaining -= len(take)
                grew = grew or bool(take)
                if self.remaining == 0:
                    self.ended = True
                break
        if grew:
            self.arrivals.append((self.taken + len(self.body), now))

    def _arrival(self, end: int) -> float:
        return next(t for n, t in self.arrivals if n >= end)

    def next_unit(self, sep: bytes = b"\n", timeout: float = TIMEOUT):
        """(bytes, arrival time) of the next `sep`-terminated unit, or None at the end."""
        deadline = time.monotonic() + timeout
        while sep not in self.body:
            if self.ended:
                assert not self.body.strip(), f"body ended inside a unit: {self.body!r}"
                return None
            if not self._recv(deadline):
                if self.closed:
                    raise AssertionError(f"connection closed inside the body: {self.body!r}")
                raise AssertionError(f"nothing more within {timeout}s; body so far {self.body!r}")
            self._parse()
        unit, self.body = self.body.split(sep, 1)
        self.taken += len(unit) + len(sep)
        return unit, self._arrival(self.taken)

    def read_body(self, timeout: float = TIMEOUT) -> bytes:
        """The rest of the body, whole (for error responses)."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            if not self._recv(deadline):
                raise AssertionError(f"body not complete within {timeout}s (closed={self.closed}): {self.body!r}")
            self._parse()
        body, self.body = self.body, b""
        return body

    def read_all(self, sep=b"\n", timeout: float = TIMEOUT) -> list:
        out = []
        while True:
            got = self.next_unit(sep, timeout)
            if got is None:
                return out
            out.append(got)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ndjson_events(units) -> list:
    return [(json.loads(u), t) for u, t in units]


def sse_events(units) -> list:
    out = []
    for unit, t in units:
        lines = unit.decode().split("\n")
        data = [ln[len("data: "):] for ln in lines if ln.startswith("data: ")]
        assert data and all(not ln or ln.startswith(("data: ", "event: ", ":", "id: ")) for ln in lines), unit
        out.append((json.loads("\n".join(data)), t))
    return out


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory, protos):
    base = tmp_path_factory.mktemp("streams")
    s = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs",
                      args=(*wh.API_SERVER_ARGS, "--max-streams-per-user", str(CAP)), name="streams")
    s.start(timeout=30)
    yield s
    wh.finish_servers([s])


def user(srv, name="Stream User") -> wh.ApiUser:
    """A fresh user per test: the cap is per user."""
    return wh.register_and_login(srv, f"{name} {uuid.uuid4().hex[:6]}")


def watch_path(wid, eid) -> str:
    return f"/workflows/{wid}/executions/{eid}/watch"


def tail_path(wid, eid) -> str:
    return f"/workflows/{wid}/executions/{eid}/logs/tail"


def start(u: wh.ApiUser, tasks) -> tuple[str, str, float]:
    wf = fs.create_wf(u, tasks)
    t = time.monotonic()  # before the execute: nothing of it can have happened earlier
    return wf["id"], fs.execute(u, wf["id"]), t


def cancel(u, wid, eid):
    r = u.rest.post(f"/workflows/{wid}/executions/{eid}/cancel", {"reason": "test cleanup"})
    assert r.status == 200 or (r.status == 400 and r.json.get("code") == 9), r


def task_status(event: dict, key: str):
    task = event.get("task") or {}
    return task.get("status") if task.get("taskKey") == key else None


def assert_live(events: list, t_exec: float, sent_at: float, what: str):
    """events: [(event JSON, arrival)] of a watch of a LIVE execution."""
    assert events, f"{what}: no events"
    first_at = events[0][1]
    assert first_at - sent_at < 1.0, (f"{what}: the first event (the current state) took {first_at - sent_at:.2f}s; "
                                      f"it must not wait for the execution ({DELAY}s delay)")
    assert first_at < t_exec + DELAY - 0.2, f"{what}: the first event came after the delay ended"
    assert events[0][0]["status"] == "Running", events[0]
    done = [t for e, t in events if task_status(e, "wait") == "Completed"]
    assert done, f"{what}: no event says 'wait' completed: {[e for e, _ in events]}"
    assert done[0] >= t_exec + DELAY - 0.05, (f"{what}: 'wait' completed {done[0] - t_exec:.2f}s after the execute, "
                                              f"before its {DELAY}s delay ended?")
    early = [e for e, t in events if t < t_exec + DELAY - 0.2]
    late = [e for e, t in events if t >= t_exec + DELAY - 0.05]
    assert early and late, f"{what}: the events did not arrive spread over time (buffered until the end?)"
    assert any(task_status(e, "bye") == "Completed" for e in late), f"{what}: {late}"
    assert events[-1][0]["status"] == "Completed", events[-1]
    seqs = [int(e["sequence"]) for e, _ in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs


def test_head_of_a_live_stream_is_its_head_only_and_the_connection_stays_in_step(srv):
    """HEAD on a watch route over HTTP/1.1: the GET's status and headers, no
    chunk of the body, and the next request on the same connection is
    answered as itself."""
    u = user(srv)
    wid, eid, _ = start(u, LIVE)
    with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as s:
        s.sendall((f"HEAD {watch_path(wid, eid)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {u.token}\r\n\r\n"
                   f"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode())
        data = b""
        deadline = time.monotonic() + DELAY + 10
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:300]
    assert b"chunked" in head.lower(), head
    # The very next bytes are the /healthz response: no chunk of the watch.
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:300]
    assert b'"SERVING"' in rest, rest[:300]


def test_head_of_a_live_stream_over_http2_is_its_head_only(srv):
    """HEAD on a watch route over HTTP/2: the GET's status and headers, the
    stream ended with them (no DATA frame), at once."""
    import h2.config
    import h2.connection
    import h2.events

    u = user(srv)
    wid, eid, _ = start(u, LIVE)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as s:
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "HEAD"), (":scheme", "http"), (":authority", srv.target),
                              (":path", watch_path(wid, eid)), ("authorization", f"Bearer {u.token}")], end_stream=True)
        s.sendall(conn.data_to_send())
        status, data, ended = None, b"", False
        deadline = time.monotonic() + DELAY + 5
        while not ended and time.monotonic() < deadline:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[":status"]
                    ended = event.stream_ended is not None
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            s.sendall(conn.data_to_send())
    assert status == "200" and ended, (status, ended)
    assert data == b"", data[:200]


def assert_json_error(status, headers, body: bytes, want_status: int, want_code: int):
    assert status == want_status, (status, headers, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert "chunked" not in headers.get("transfer-encoding", ""), headers
    doc = json.loads(body)
    assert doc.get("code") == want_code and doc.get("message"), doc
    return doc


def retry_after(value) -> int:
    assert value is not None and str(value).isdigit() and int(value) >= 1, f"retry-after {value!r}"
    return int(value)


# ---------------------------------------------------------------------------
# Live over HTTP/1.1: NDJSON, SSE, tail
# ---------------------------------------------------------------------------


def test_watch_ndjson_arrives_as_it_happens_and_ends_with_the_execution(srv):
    u = user(srv)
    wid, eid, t_exec = start(u, LIVE)
    s = Http1Stream(srv, watch_path(wid, eid), u.token)
    try:
        status, headers = s.head()
        assert status == 200, (status, headers, s.raw[:300])
        assert headers.get("content-type", "").startswith("application/x-ndjson"), headers
        assert "chunked" in headers.get("transfer-encoding", ""), headers
        events = ndjson_events(s.read_all(b"\n", timeout=DELAY + 8))
        ended_at = time.monotonic()
        # A properly ended chunked response leaves the connection usable.
        assert not s.raw and not s.closed, (s.raw, s.closed)
        again = Http1Stream(srv, f"/workflows/{wid}/executions/{eid}", u.token, sock=s.sock)
        status, _ = again.head()
        assert status == 200 and json.loads(again.read_body())["status"] == "Completed"
    finally:
        s.close()
    assert_live(events, t_exec, s.sent_at, "NDJSON watch")
    assert ended_at - events[-1][1] < 1.0, "the response did not end with the execution"


def test_watch_as_server_sent_events(srv):
    u = user(srv)
    wid, eid, t_exec = start(u, LIVE)
    s = Http1Stream(srv, watch_path(wid, eid), u.token, accept="text/event-stream")
    try:
        status, headers = s.head()
        assert status == 200, (status, headers)
        assert headers.get("content-type", "").startswith("text/event-stream"), headers
        assert "no-cache" in headers.get("cache-control", ""), headers
        events = sse_events(s.read_all(b"\n\n", timeout=DELAY + 8))
    finally:
        s.close()
    assert_live(events, t_exec, s.sent_at, "SSE watch")


def test_tail_logs_arrive_as_they_are_written(srv):
    u = user(srv)
    wid, eid, t_exec = start(u, LIVE)
    for accept, sep, parse in ((None, b"\n", ndjson_events), ("text/event-stream", b"\n\n", sse_events)):
        if accept:  # the second pass watches a fresh execution
            wid, eid, t_exec = start(u, LIVE)
        s = Http1Stream(srv, tail_path(wid, eid), u.token, accept=accept)
        try:
            status, headers = s.head()
            assert status == 200, (status, headers)
            want = "text/event-stream" if accept else "application/x-ndjson"
            assert headers.get("content-type", "").startswith(want), headers
            entries = parse(s.read_all(sep, timeout=DELAY + 8))
        finally:
            s.close()
        by_msg = {e["message"]: t for e, t in entries}
        assert {"first words", "last words"} <= set(by_msg), [e["message"] for e, _ in entries]
        assert by_msg["first words"] < t_exec + DELAY - 0.2, "'first words' came only after the delay"
        assert by_msg["last words"] >= t_exec + DELAY - 0.05, "'last words' before the delay ended?"
        assert [int(e["sequence"]) for e, _ in entries] == sorted(int(e["sequence"]) for e, _ in entries)
        assert [e for e, _ in entries] == fs.all_logs(u, wid, eid), "the tail is the whole log, in order"


# ---------------------------------------------------------------------------
# Live over HTTP/2
# ---------------------------------------------------------------------------


def h2_get(client: wh.H2Client, path: str, token: str, accept: str | None = None) -> int:
    headers = [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", client.authority),
               ("authorization", f"Bearer {token}")]
    if accept:
        headers.append(("accept", accept))
    return client.start_call(path, headers=headers)


def h2_lines(client: wh.H2Client, sid: int, timeout: float) -> list:
    """[(line, arrival)] of stream `sid` until it ends."""
    r = client.results[sid]
    deadline = time.monotonic() + timeout
    marks = []  # (bytes received so far, time)
    while not (r.ended or r.reset_code is not None or client.closed):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"HTTP/2 stream not ended within {timeout}s; data {r.data[:500]!r}"
        before = len(r.data)
        client.pump(min(remaining, 0.05))
        if len(r.data) > before:
            marks.append((len(r.data), time.monotonic()))
    assert r.ended and r.reset_code is None, r
    out, pos = [], 0
    for line in r.data.split(b"\n")[:-1]:
        pos += len(line) + 1
        out.append((line, next(t for n, t in marks if n >= pos)))
    assert r.data.endswith(b"\n"), r.data[-200:]
    return out


def test_watch_over_http2_sends_data_frames_as_events_happen(srv):
    u = user(srv)
    wid, eid, t_exec = start(u, LIVE)
    with wh.H2Client(srv, timeout=TIMEOUT) as client:
        client.handshake()
        sent = time.monotonic()
        sid = h2_get(client, watch_path(wid, eid), u.token)
        lines = h2_lines(client, sid, DELAY + 8)
        r = client.results[sid]
        assert r.header(":status") == "200", r.headers
        assert (r.header("content-type") or "").startswith("application/x-ndjson"), r.headers
    assert_live(ndjson_events(lines), t_exec, sent, "HTTP/2 watch")


def test_a_watch_ends_when_its_execution_is_cancelled(srv):
    u = user(srv)
    wid, eid, _ = start(u, LONG)
    s = Http1Stream(srv, watch_path(wid, eid), u.token)
    try:
        assert s.head()[0] == 200
        first, _ = s.next_unit(b"\n", timeout=2)
        assert json.loads(first)["status"] == "Running"
        t = time.monotonic()
        cancel(u, wid, eid)
        rest = ndjson_events(s.read_all(b"\n", timeout=5))
        assert time.monotonic() - t < 3, "the watch did not end soon after the cancel"
    finally:
        s.close()
    assert rest and rest[-1][0]["status"] == "Cancelled", rest


# ---------------------------------------------------------------------------
# The per-user cap, and clients that leave
# ---------------------------------------------------------------------------


def open_rest(srv, u, path, accept=None) -> Http1Stream:
    """A REST stream that was admitted: 200 and its first message read."""
    s = Http1Stream(srv, path, u.token, accept=accept)
    status, headers = s.head()
    if status != 200:
        s.close()
        raise AssertionError(f"stream refused: {status} {headers} {s.raw[:300]!r}")
    assert s.next_unit(b"\n\n" if accept else b"\n", timeout=2) is not None
    return s


def refused_rest(srv, u, path, accept=None) -> dict:
    """A REST stream refused by the cap: 429 JSON with retry-after."""
    s = Http1Stream(srv, path, u.token, accept=accept)
    try:
        status, headers = s.head()
        doc = assert_json_error(status, headers, s.read_body(5), 429, 8)
        retry_after(headers.get("retry-after"))
        assert "stream" in doc["message"], doc
        return doc
    finally:
        s.close()


def admitted_again(srv, u, path, timeout: float = 5.0) -> Http1Stream:
    """Polls until a new stream of `u` is admitted (the returned one stays open)."""
    def attempt():
        s = Http1Stream(srv, path, u.token)
        status, _ = s.head()
        if status == 200:
            assert s.next_unit(b"\n", timeout=2) is not None
            return s
        assert status == 429, (status, s.raw[:300])
        s.close()
        return None

    return wh.wait_until(attempt, timeout, interval=0.1,
                         message="a new stream admitted after one of the user's streams went away")


def grpc_watch(v1, ch, u, wid, eid):
    stub = v1.executions_pb2_grpc.ExecutionServiceStub(ch)
    return stub.WatchExecution(v1.executions_pb2.WatchExecutionRequest(workflow_id=wid, execution_id=eid),
                               metadata=wh.grpc_auth(u), timeout=120)


def test_the_cap_refuses_a_third_stream_and_a_closed_socket_gives_its_place_back(srv, v1):
    u, other = user(srv, "Capped"), user(srv, "Other")
    wid, eid, _ = start(u, LONG)
    owid, oeid, _ = start(other, LONG)
    held = []
    try:
        held.append(open_rest(srv, u, watch_path(wid, eid)))
        held.append(open_rest(srv, u, tail_path(wid, eid)))
        # Third: refused, whatever the kind or the format.
        refused_rest(srv, u, watch_path(wid, eid))
        refused_rest(srv, u, tail_path(wid, eid))
        refused_rest(srv, u, watch_path(wid, eid), accept="text/event-stream")
        ch = wh.new_channel(srv.target)
        try:
            with pytest.raises(grpc.RpcError) as info:
                next(grpc_watch(v1, ch, u, wid, eid))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value
            assert "stream" in info.value.details(), info.value.details()
            assert any(k == "retry-after" for k, _ in info.value.trailing_metadata() or ()), \
                info.value.trailing_metadata()
        finally:
            ch.close()
        # Another user is not affected.
        theirs = [open_rest(srv, other, watch_path(owid, oeid)), open_rest(srv, other, tail_path(owid, oeid))]
        for s in theirs:
            s.close()

        # The client of the first stream goes away: its place comes back.
        held.pop(0).close()
        held.append(admitted_again(srv, u, watch_path(wid, eid)))
        refused_rest(srv, u, watch_path(wid, eid))
        held.pop(0).close()  # the tail
        held.append(admitted_again(srv, u, tail_path(wid, eid)))
        refused_rest(srv, u, tail_path(wid, eid))
        # The execution was never disturbed by the watchers leaving.
        assert fs.get_exec(u, wid, eid)["status"] == "Running"
    finally:
        for s in held:
            s.close()
        cancel(u, wid, eid)
        cancel(other, owid, oeid)


def test_a_reset_http2_stream_and_a_cancelled_grpc_call_give_their_place_back(srv, v1):
    u = user(srv, "Leaver")
    wid, eid, _ = start(u, LONG)
    held = []
    ch = wh.new_channel(srv.target)
    try:
        # An HTTP/2 stream and a gRPC call hold the two places.
        client = wh.H2Client(srv, timeout=TIMEOUT)
        held.append(client)
        client.handshake()
        sid = h2_get(client, watch_path(wid, eid), u.token)
        wh.wait_until(lambda: client.pump(0.05) and b"\n" in client.results[sid].data, 3,
                      message="the first line over HTTP/2")
        assert client.results[sid].header(":status") == "200"
        call = grpc_watch(v1, ch, u, wid, eid)
        first = next(call)
        assert first.sequence == 1
        refused_rest(srv, u, watch_path(wid, eid))

        # RST_STREAM(CANCEL) on the HTTP/2 stream (the connection stays open).
        client.conn.reset_stream(sid, error_code=wh.CANCEL)
        client.flush()
        held.append(admitted_again(srv, u, watch_path(wid, eid)))
        refused_rest(srv, u, watch_path(wid, eid))

        # The gRPC client cancels its call.
        call.cancel()
        held.append(admitted_again(srv, u, tail_path(wid, eid)))
        refused_rest(srv, u, watch_path(wid, eid))
        assert fs.get_exec(u, wid, eid)["status"] == "Running"
    finally:
        for h in held:
            h.close()
        ch.close()
        cancel(u, wid, eid)


def test_streams_that_end_normally_give_their_place_back(srv):
    u = user(srv, "Finisher")
    wf = fs.create_wf(u, [{"key": "a", "name": "A", "action": "log", "config": {"message": "only words"}}])
    eid = fs.execute(u, wf["id"])
    fs.wait_status(u, wf["id"], eid)
    for _ in range(3 * CAP):  # each watch / tail of a finished execution ends by itself
        for path in (watch_path(wf["id"], eid), tail_path(wf["id"], eid)):
            r = u.rest.get(path)
            assert r.status == 200 and r.body.endswith(b"\n"), r
    held = [open_rest(srv, u, watch_path(*start(u, LONG)[:2])) for _ in range(CAP)]
    for s in held:
        s.close()


# ---------------------------------------------------------------------------
# Errors before the first message
# ---------------------------------------------------------------------------


def _get(srv, path, token, accept=None):
    s = Http1Stream(srv, path, token, accept=accept)
    try:
        status, headers = s.head()
        return status, headers, s.read_body(5)
    finally:
        s.close()


def test_errors_before_the_first_message_are_plain_json(srv):
    u, stranger = user(srv, "Errant"), user(srv, "Stranger")
    wid, eid, _ = start(u, LONG)
    missing_exe = "exe_01M00000000000000000000000"
    try:
        for accept in (None, "text/event-stream", "application/x-ndjson"):
            for path in (watch_path(wid, missing_exe), tail_path(wid, missing_exe),
                         watch_path("wf_01M00000000000000000000000", eid), tail_path("wf_missing", eid)):
                assert_json_error(*_get(srv, path, u.token, accept), 404, 5)
            for path in (watch_path(wid, eid), tail_path(wid, eid)):
                assert_json_error(*_get(srv, path, stranger.token, accept), 404, 5)
                assert_json_error(*_get(srv, path, None, accept), 401, 16)
            assert_json_error(*_get(srv, tail_path(wid, eid) + "?afterSequence=-1", u.token, accept), 400, 3)
        # None of those held a place: the user still gets CAP streams.
        held = [open_rest(srv, u, watch_path(wid, eid)) for _ in range(CAP)]
        refused_rest(srv, u, watch_path(wid, eid))
        for s in held:
            s.close()
    finally:
        cancel(u, wid, eid)


def test_grpc_errors_before_the_first_message(srv, v1):
    u = user(srv, "Grpc Errant")
    wid, eid, _ = start(u, LONG)
    ch = wh.new_channel(srv.target)
    try:
        with pytest.raises(grpc.RpcError) as info:
            next(grpc_watch(v1, ch, u, wid, "exe_01M00000000000000000000000"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value
        calls = [grpc_watch(v1, ch, u, wid, eid) for _ in range(CAP)]
        assert [next(c).sequence for c in calls] == [1] * CAP
        with pytest.raises(grpc.RpcError) as info:
            next(grpc_watch(v1, ch, u, wid, eid))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value
        for c in calls:
            c.cancel()
    finally:
        ch.close()
        cancel(u, wid, eid)
