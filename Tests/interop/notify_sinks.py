"""Receivers for the notification tests (test_notifications.py).

* `HookSink`: a threaded HTTP/1.1 server on 127.0.0.1 that records every
  request (method, path, lower-case headers, raw body, parsed JSON, arrival
  and answer times) and answers with a status chosen per request
  (`respond(record) -> (status, delay_seconds)`; default 200 at once).  It
  can be started on a given port (a port that refused connections before).
* `SmtpSink`: an aiosmtpd server on 127.0.0.1 that requires STARTTLS (with
  the certificate it is given) and AUTH over TLS for the users it knows,
  and records every message with the facts of its session (TLS, the
  authenticated login, the AUTH mechanism), parsed with the `email`
  package (policy.default).
* `NdjsonStream`: a live REST stream (NDJSON over chunked HTTP/1.1) read in
  a background thread, each message with its arrival time.

Nothing here sleeps to synchronise: waiting is `wh.wait_until`.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import http.server
import json
import socket
import ssl
import threading
import time
import urllib.parse

import weft_helpers as wh


def free_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# HTTP receiver
# ---------------------------------------------------------------------------


class HookSink:
    """Records webhook / Slack POSTs.  `respond(record)` returns (status,
    delay): the answer's status and how long to wait before sending it."""

    def __init__(self, port: int = 0, respond=None):
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.respond = respond or (lambda rec: (200, 0.0))
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(body.decode()) if body else None
                except ValueError:
                    parsed = None
                rec = {
                    "method": self.command,
                    "path": urllib.parse.urlsplit(self.path).path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "json": parsed,
                    "at": time.time(),
                    "answered_at": None,
                }
                with sink.lock:
                    sink.records.append(rec)
                status, delay = sink.respond(rec)
                if delay:
                    time.sleep(delay)
                payload = json.dumps({"received": rec["headers"].get("x-weft-delivery-id", "")}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                    rec["answered_at"] = time.time()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the sender went away (a killed server)

            do_GET = do_PUT = do_DELETE = do_POST

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self, path: str | None = None, prefix: str | None = None) -> list[dict]:
        with self.lock:
            recs = list(self.records)
        if path is not None:
            recs = [r for r in recs if r["path"] == path]
        if prefix is not None:
            recs = [r for r in recs if r["path"].startswith(prefix)]
        return recs

    def wait(self, count: int, path: str | None = None, prefix: str | None = None, timeout: float = 10,
             why: str = "") -> list[dict]:
        """At least `count` requests (to `path` / under `prefix`); returns them all."""
        return wh.wait_until(
            lambda: (lambda got: got if len(got) >= count else None)(self.posts(path, prefix)), timeout,
            interval=0.05,
            message=lambda: f"{count} POST(s) to {path or prefix or 'the sink'} {why}; got "
                            f"{[(r['path'], r['headers'].get('x-weft-event')) for r in self.posts()]}")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------
# SMTP receiver
# ---------------------------------------------------------------------------


class SmtpSink:
    """An SMTP server (aiosmtpd) requiring STARTTLS, and AUTH over TLS for
    `users` ({login: password}, changeable while it runs).  Every accepted
    message is recorded as a dict: mail_from, rcpt_tos, raw (bytes), msg
    (email.message.EmailMessage), tls (the session used STARTTLS), login
    (the authenticated login or None), at.  `auths` records every AUTH
    attempt: (mechanism, login, password, success)."""

    def __init__(self, cert, key, users: dict | None = None, port: int | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.lock = threading.Lock()
        self.messages: list[dict] = []
        self.auths: list[tuple] = []
        self.users = dict(users or {})
        sink = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = False
            login = password = None
            if isinstance(auth_data, LoginPassword):
                login = auth_data.login.decode(errors="replace")
                password = auth_data.password.decode(errors="replace")
                ok = login in sink.users and sink.users[login] == password
            with sink.lock:
                sink.auths.append((mechanism, login, password, ok, session.ssl is not None))
            if ok:
                return AuthResult(success=True, auth_data=auth_data)
            return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                raw = envelope.original_content or envelope.content
                if isinstance(raw, str):
                    raw = raw.encode()
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                with sink.lock:
                    sink.messages.append({
                        "mail_from": envelope.mail_from,
                        "rcpt_tos": list(envelope.rcpt_tos),
                        "raw": raw,
                        "msg": msg,
                        "tls": session.ssl is not None,
                        "authenticated": bool(getattr(session, "authenticated", False)),
                        "login": (session.auth_data.login.decode(errors="replace")
                                  if isinstance(getattr(session, "auth_data", None), LoginPassword) else None),
                        "helo": session.host_name,
                        "at": time.time(),
                    })
                return "250 2.0.0 Message accepted"

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        self.port = port or free_port()
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, ready_timeout=10,
            tls_context=ctx, require_starttls=True, auth_require_tls=True, auth_required=True,
            authenticator=authenticator, decode_data=False)
        self.controller.start()

    def received(self, rcpt: str | None = None) -> list[dict]:
        with self.lock:
            got = list(self.messages)
        return [m for m in got if rcpt is None or rcpt in m["rcpt_tos"]]

    def wait(self, count: int, rcpt: str | None = None, timeout: float = 15, why: str = "") -> list[dict]:
        return wh.wait_until(
            lambda: (lambda got: got if len(got) >= count else None)(self.received(rcpt)), timeout, interval=0.05,
            message=lambda: f"{count} message(s) to {rcpt or 'anyone'} {why}; got "
                            f"{[(m['rcpt_tos'], str(m['msg']['subject'])) for m in self.received()]}, "
                            f"auths {[a[:2] + a[3:] for a in self.auths]}")

    def close(self):
        try:
            self.controller.stop()
        except Exception:  # noqa: BLE001 - already stopped
            pass


# ---------------------------------------------------------------------------
# A live REST stream
# ---------------------------------------------------------------------------


class NdjsonStream:
    """GET `path` with a bearer token and read NDJSON messages as they come,
    in a background thread.  `items` holds (arrival time, message)."""

    def __init__(self, server: wh.WeftServer, path: str, token: str, timeout: float = 60):
        self.items: list[tuple[float, dict]] = []
        self.status: int | None = None
        self.headers: dict = {}
        self.error: BaseException | None = None
        self.ended = False
        self.lock = threading.Lock()
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        self.sock = self.conn.sock
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            resp = self.conn.getresponse()
            self.status = resp.status
            self.headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.status != 200:
                self.body = resp.read()
                self.ended = True
                return
            while True:
                line = resp.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                with self.lock:
                    self.items.append((time.time(), json.loads(line)))
        except Exception as exc:  # noqa: BLE001 - closed by the test, or a broken stream
            self.error = exc
        self.ended = True

    def messages(self) -> list[dict]:
        with self.lock:
            return [m for _, m in self.items]

    def close(self):
        try:
            if self.sock is not None:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.thread.join(5)
