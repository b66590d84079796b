"""Helpers for test_engine_flags.py and test_http_limits.py.

* `Target`: a threaded `http.server` on 127.0.0.1 for http tasks, which
  records every request (path, arrival time) and can hold requests until the
  test releases them (`/hold/<tag>`), answer 503 (`/fail503/<tag>`), redirect
  (`/redirect/<n>/<tag>`, `/loop/<a|b>/<tag>`) or send a body of a chosen size
  (`/bytes/<n>/<tag>`).
* `Restartable`: `weft serve` processes started one after another on one data
  directory (restarts, SIGKILL), each stopped at teardown and required to exit 0
  after SIGTERM unless the test killed it on purpose.
* Small REST helpers (workflows, executions, logs) and read-only access to the
  server's SQLite files.

Nothing here sleeps to synchronise: waits go through `wh.wait_until`.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import json
import signal
import sqlite3
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import weft_helpers as wh

TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
# Longest a held request waits for its release, so a failing test can never
# leave a handler thread (or a server draining it) stuck.
HOLD_LIMIT = 30.0


def uid() -> str:
    return uuid.uuid4().hex[:10]


# ---------------------------------------------------------------------------
# The local HTTP target
# ---------------------------------------------------------------------------


class Target:
    """A threaded HTTP/1.1 server on 127.0.0.1 for http tasks.

    /hold/<tag>          waits until `release(tag)` (or `release_all()`), then
                         200 JSON {"held": tag}; in-flight holds are counted
    /fail503/<tag>       503 JSON {"error": "unavailable"}
    /redirect/<n>/<tag>  302 to /redirect/<n-1>/<tag>; n == 0 answers 200 JSON
                         {"final": true, "tag": tag} with header X-Final: yes
    /loop/<a|b>/<tag>    302 to the other one of /loop/a, /loop/b (a cycle)
    /bytes/<n>/<tag>     200 text/plain, n bytes of "x"
    /ok/<tag>            200 JSON {"ok": tag}

    Every request is recorded with its arrival time (time.monotonic()).
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.gates: dict[str, threading.Event] = {}
        self.inflight: dict[str, int] = {}
        self.max_inflight: dict[str, int] = {}
        self.all_released = False
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                path = urllib.parse.urlsplit(self.path).path
                parts = path.strip("/").split("/")
                with target.lock:
                    target.records.append({"path": path, "at": time.monotonic()})
                kind = parts[0] if parts else ""
                if kind == "hold" and len(parts) == 2:
                    tag = parts[1]
                    gate = target._gate(tag)
                    with target.lock:
                        n = target.inflight.get(tag, 0) + 1
                        target.inflight[tag] = n
                        target.max_inflight[tag] = max(target.max_inflight.get(tag, 0), n)
                    try:
                        gate.wait(HOLD_LIMIT)
                    finally:
                        with target.lock:
                            target.inflight[tag] -= 1
                    self._reply(200, {"held": tag})
                elif kind == "fail503":
                    self._reply(503, {"error": "unavailable"})
                elif kind == "redirect" and len(parts) == 3:
                    n, tag = int(parts[1]), parts[2]
                    if n > 0:
                        self._redirect(f"/redirect/{n - 1}/{tag}")
                    else:
                        self._reply(200, {"final": True, "tag": tag}, headers={"X-Final": "yes"})
                elif kind == "loop" and len(parts) == 3:
                    other = "b" if parts[1] == "a" else "a"
                    self._redirect(f"/loop/{other}/{parts[2]}")
                elif kind == "bytes" and len(parts) == 3:
                    self._reply(200, b"x" * int(parts[1]), ctype="text/plain")
                elif kind == "ok":
                    self._reply(200, {"ok": parts[-1]})
                else:
                    self._reply(404, {"error": "no such path"})

            do_POST = do_PUT = do_DELETE = do_GET

            def _redirect(self, location):
                try:
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _reply(self, status, payload, headers=None, ctype="application/json"):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a killed server, a too-large response)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _gate(self, tag: str) -> threading.Event:
        with self.lock:
            gate = self.gates.get(tag)
            if gate is None:
                gate = self.gates[tag] = threading.Event()
                if self.all_released:
                    gate.set()
            return gate

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self, tag: str):
        self._gate(tag).set()

    def release_all(self):
        with self.lock:
            self.all_released = True
            gates = list(self.gates.values())
        for gate in gates:
            gate.set()

    def arrivals(self, path: str) -> list[float]:
        """Arrival times of the requests for `path`, in order."""
        with self.lock:
            return [r["at"] for r in self.records if r["path"] == path]

    def holding(self, tag: str) -> int:
        with self.lock:
            return self.inflight.get(tag, 0)

    def most_held(self, tag: str) -> int:
        with self.lock:
            return self.max_inflight.get(tag, 0)

    def close(self):
        self.release_all()
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------
# Servers restarted on one data directory
# ---------------------------------------------------------------------------


class Restartable:
    """Starts `weft serve` on one data dir, one process after another."""

    def __init__(self, base: Path, name: str):
        self.data = base / "data"
        self.logs = base / "logs"
        self.name = name
        self.started: list[wh.WeftServer] = []

    def start(self, *args: str, tag: str = "") -> wh.WeftServer:
        srv = wh.WeftServer(wh.weft_bin(), self.data, self.logs, args=(*wh.API_SERVER_ARGS, *args),
                            name=f"{self.name}-{len(self.started)}{tag}")
        self.started.append(srv)
        srv.start(timeout=30)
        return srv

    def stop_clean(self, srv: wh.WeftServer):
        """SIGTERM and require a clean exit now (as the suite's fixtures do at
        teardown): code 0 within the drain timeout, no crash report."""
        srv.stop_checked()

    def teardown(self):
        """The suite's checked stop for every process (exit 0 after SIGTERM
        within its drain timeout, no crash report); one killed on purpose
        (`first.kill()` in a crash test) is marked and only reaped."""
        for srv in self.started:
            if srv.killed:
                srv.expect_unclean = True
        wh.finish_servers(self.started)


# ---------------------------------------------------------------------------
# REST helpers
# ---------------------------------------------------------------------------


def on(user: wh.ApiUser, server: wh.WeftServer) -> wh.ApiUser:
    """The same account (and token) talking to another server process."""
    return dataclasses.replace(user, rest=wh.RestClient(server, user.token))


def create_wf(user: wh.ApiUser, tasks, name: str | None = None) -> dict:
    r = user.rest.post("/workflows", {"name": name or f"flags {uid()}", "tasks": tasks})
    assert r.status == 201, r
    return r.json


def execute(user: wh.ApiUser, wid: str, **body) -> str:
    r = user.rest.post(f"/workflows/{wid}/execute", body)
    assert r.status == 202, r
    return r.json["executionId"]


def get_exec(user: wh.ApiUser, wid: str, eid: str) -> dict:
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
    assert r.status == 200, r
    return r.json


def wait_status(user: wh.ApiUser, wid: str, eid: str, statuses=TERMINAL, timeout: float = 15) -> dict:
    last = {}

    def check():
        last["e"] = get_exec(user, wid, eid)
        return last["e"] if last["e"]["status"] in statuses else None

    return wh.wait_until(check, timeout, interval=0.03,
                         message=lambda: f"execution {eid} to reach {sorted(statuses)}; last: {last.get('e')}")


def run(user: wh.ApiUser, wid: str, timeout: float = 15, **body) -> dict:
    return wait_status(user, wid, execute(user, wid, **body), timeout=timeout)


def by_key(execution: dict) -> dict:
    return {t["taskKey"]: t for t in execution.get("tasks", [])}


def wait_task(user, wid, eid, key, statuses, timeout: float = 10) -> dict:
    def check():
        e = get_exec(user, wid, eid)
        return e if by_key(e)[key]["status"] in statuses else None

    return wh.wait_until(check, timeout, interval=0.03, message=f"task {key} of {eid} to reach {statuses}")


def all_logs(user: wh.ApiUser, wid: str, eid: str) -> list:
    return wh.all_pages(user.rest, f"/workflows/{wid}/executions/{eid}/logs", "entries", pageSize=1000)


def breakdown(execution: dict) -> dict:
    """costBreakdown with its int64 counters (proto3 JSON strings) as ints."""
    b = execution.get("costBreakdown")
    assert b, execution
    return {k: (int(v) if k in ("taskAttempts", "requests", "egressBytes") else v) for k, v in b.items()}


def metric(server: wh.WeftServer, name: str, **labels) -> float:
    return wh.fetch_metrics(server).total(name, **labels)


# ---------------------------------------------------------------------------
# The server's SQLite files
# ---------------------------------------------------------------------------


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection (WAL lets it read while the server writes)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


def store_time(text: str) -> datetime.datetime:
    """A store timestamp ('YYYY-MM-DD HH:MM:SS.SSS', UTC) as an aware datetime."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)


def store_text(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
